"""notebooks/spectrogram.ipynb runs top to bottom on a tiny budget: the transform, the spans,
pretraining, finetuning and kappa on both inputs."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SMALL = {
    "RECORDS, UNLABELLED, HOURS = 12, 2, 1.0": "RECORDS, UNLABELLED, HOURS = 4, 1, 0.1",
    "FINETUNE_SUBJECTS, TEST_SUBJECTS = 4, 4": "FINETUNE_SUBJECTS, TEST_SUBJECTS = 1, 1",
    "PRETRAIN_STEPS, FINETUNE_STEPS, BATCH = 300, 300, 32": (
        "PRETRAIN_STEPS, FINETUNE_STEPS, BATCH = 3, 3, 4"
    ),
}


@pytest.mark.slow
def test_spectrogram_notebook_runs(run_notebook):
    scope = run_notebook("spectrogram.ipynb", SMALL)
    assert tuple(scope["spec"].shape) == (6, 32, 121)
    assert set(scope["results"]) == {"raw signal", "spectrogram"}
    assert all(-1 <= r["kappa"] <= 1 or math.isnan(r["kappa"]) for r in scope["results"].values())


def test_notebook_budgets_are_the_ones_replaced(code_cells):
    """The strings the test replaces are in the notebook (a renamed setting fails here)."""
    text = "".join("".join(c["source"]) for c in code_cells("spectrogram.ipynb"))
    assert all(old in text for old in SMALL)
