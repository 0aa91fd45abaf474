"""notebooks/images.ipynb runs top to bottom (on a reduced budget)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_images_notebook_runs(run_notebook):
    pytest.importorskip("skimage")
    scope = run_notebook("images.ipynb", {"STEPS = 400": "STEPS = 3"})
    assert scope["result"].steps == 3
    assert scope["rec"].canvas.shape[-2:] == (48, 48)
    assert math.isclose(float(scope["errors"][0]), scope["rec"].placement_error, rel_tol=1e-4)
    assert (
        scope["unc"].shape == (36,)
        and 0 <= scope["negative_symmetry_score"](scope["pred"], scope["spans"]) <= 1
    )


def test_images_notebook_is_committed_with_light_outputs(code_cells):
    code = code_cells("images.ipynb")
    assert all(c.get("outputs") for c in code[2:]), "execute the notebook before committing it"
    assert any("image/png" in o.get("data", {}) for c in code for o in c["outputs"])
    assert (ROOT / "notebooks" / "images.ipynb").stat().st_size < 400_000
