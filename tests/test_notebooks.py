"""The notebooks run top to bottom (on a reduced budget)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["quickstart.ipynb"])
def test_notebook_runs(name):
    matplotlib.use("Agg")
    nb = json.loads((ROOT / "notebooks" / name).read_text())
    scope: dict = {}
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        src = "".join(cell["source"]).replace("STEPS = 150", "STEPS = 3")
        exec(compile(src, f"{name}:{cell['id']}", "exec"), scope)
    assert "rec" in scope and scope["rec"].canvas.shape[-2:] == (48, 48)
