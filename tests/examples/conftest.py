"""The scripts in examples/ are imported as modules by their tests (the ``load_example``
fixture)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load_example(name: str, register: bool = False) -> ModuleType:
    """Import ``examples/<name>.py``; ``register`` also puts it in ``sys.modules`` (as
    ``relpos --plugin`` does)."""
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    if register:
        sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(name="load_example")
def load_example_fixture() -> object:
    """:func:`load_example`, for the tests."""
    return load_example


@pytest.fixture(autouse=True)
def _restore_registries():
    """Examples register heads, methods, modalities and data sources; undo it after each test,
    so that the rest of the suite (same process under xdist) sees relpos's own names only."""
    from relpos.core.modality import MODALITIES
    from relpos.core.sampler_configs import SAMPLERS
    from relpos.nn.heads import HEADS
    from relpos.nn.vit import MODELS
    from relpos.train import methods
    from relpos.train.data import DATA_SOURCES

    registries = [MODALITIES, SAMPLERS, HEADS, MODELS, DATA_SOURCES]
    saved = [dict(r._entries) for r in registries]
    saved_methods = dict(methods._METHODS)
    yield
    for registry, entries in zip(registries, saved):
        registry._entries.clear()
        registry._entries.update(entries)
    methods._METHODS.clear()
    methods._METHODS.update(saved_methods)
