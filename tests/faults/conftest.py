"""Shared data of the fault-injection suite: tiny synthetic records and a prepared store, made
once per session and copied by the tests that damage them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def cli_records(tmp_path_factory) -> Path:
    """Six 15-minute synthetic records (PhysioNet 2018 layout), six subjects."""
    from relpos.sleep.synthetic import synthesize_dataset

    out = tmp_path_factory.mktemp("cli") / "records"
    synthesize_dataset(out, 6, seed=0, max_hours=0.25, jobs=1, progress=False)
    return out


@pytest.fixture(scope="session")
def cli_store_master(cli_records, tmp_path_factory) -> Path:
    from relpos.sleep.store import prepare_store

    store = tmp_path_factory.mktemp("cli") / "store"
    prepare_store(cli_records, store, jobs=1, progress=False)
    return store


@pytest.fixture
def cli_store(cli_store_master, tmp_path) -> Path:
    """A private copy of the prepared store, free to damage."""
    return Path(shutil.copytree(cli_store_master, tmp_path / "store"))


# -- prepare faults (tests/faults/test_prepare_faults.py) ------------------------------------


@pytest.fixture(scope="session")
def prep_src(tmp_path_factory) -> Path:
    """Four labelled 6-minute synthetic records and one unlabelled one, side by side."""
    from relpos.sleep.synthetic import synthesize_dataset

    out = tmp_path_factory.mktemp("prep") / "src"
    synthesize_dataset(out, 4, seed=3, max_hours=0.1, layout="flat", unlabelled=1, progress=False)
    return out


@pytest.fixture(scope="session")
def prep_ref(prep_src, tmp_path_factory):
    """An uninterrupted prepare of ``prep_src``: (store directory, its PrepareSummary)."""
    from relpos.sleep.store import prepare_store

    store = tmp_path_factory.mktemp("prep") / "ref"
    return store, prepare_store(prep_src, store, jobs=1, progress=False)


@pytest.fixture
def prep_store(prep_ref, tmp_path) -> Path:
    """A private copy of the reference store, free to damage."""
    return Path(shutil.copytree(prep_ref[0], tmp_path / "store"))
