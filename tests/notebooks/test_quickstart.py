"""notebooks/quickstart.ipynb runs top to bottom (on a reduced budget)."""

from __future__ import annotations


def test_quickstart_runs(run_notebook):
    scope = run_notebook("quickstart.ipynb", {"STEPS = 150": "STEPS = 3"})
    assert scope["rec"].canvas.shape[-2:] == (48, 48)
    assert scope["eeg"].shape == (8, 6, 3000)  # epochs of a synthetic night, not noise


def test_quickstart_is_committed_with_outputs(code_cells):
    assert all(c.get("outputs") for c in code_cells("quickstart.ipynb")[1:])
