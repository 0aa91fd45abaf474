"""notebooks/sleep_staging.ipynb runs top to bottom on a tiny budget and ends with a kappa and
the evaluation pictures (the committed copy carries its outputs)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "sleep_staging.ipynb"
SMALL = {
    "NIGHTS, HOURS = 10, 1.0": "NIGHTS, HOURS = 9, 0.5",
    "PRETRAIN_EPOCHS, FINETUNE_EPOCHS = 3, 40": "PRETRAIN_EPOCHS, FINETUNE_EPOCHS = 1, 1",
}


@pytest.mark.slow
def test_sleep_staging_notebook_runs(run_notebook):
    scope = run_notebook("sleep_staging.ipynb", SMALL)
    report = scope["report"]
    assert -1 <= report["kappa"] <= 1 and not math.isnan(report["kappa"])
    assert (scope["OUT"] / "eval-part" / "hypnogram.png").exists()


def test_committed_notebook_has_light_outputs(code_cells):
    code = code_cells("sleep_staging.ipynb")
    assert all(c.get("outputs") for c in code[1:]), "run it with nbclient before committing"
    assert NOTEBOOK.stat().st_size < 400_000
