"""Notebooks are run by their tests cell by cell in one namespace (``run_notebook``), with the
budget lines replaced by small ones, and checked to be committed with light outputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def code_cells(name: str) -> list[dict[str, Any]]:
    nb = json.loads((NOTEBOOKS / name).read_text())
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def run_notebook(name: str, replace: dict[str, str]) -> dict[str, Any]:
    """Execute every code cell of ``notebooks/<name>`` (each ``old -> new`` of ``replace``
    applied first, each ``old`` required to be there; IPython magics skipped) and return the
    namespace."""
    import matplotlib

    matplotlib.use("Agg")
    cells = code_cells(name)
    text = "".join("".join(c["source"]) for c in cells)
    missing = [old for old in replace if old not in text]
    assert not missing, f"{name} no longer holds the budget lines {missing}"
    scope: dict[str, Any] = {}
    for cell in cells:
        src = "".join(cell["source"])
        for old, new in replace.items():
            src = src.replace(old, new)
        src = "\n".join(line for line in src.splitlines() if not line.startswith("%"))
        exec(compile(src, f"{name}:{cell.get('id', '?')}", "exec"), scope)
    return scope


@pytest.fixture(name="run_notebook")
def run_notebook_fixture() -> object:
    """:func:`run_notebook`, for the tests."""
    return run_notebook


@pytest.fixture(name="code_cells")
def code_cells_fixture() -> object:
    """:func:`code_cells`, for the tests."""
    return code_cells
