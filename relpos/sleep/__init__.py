"""Sleep staging: recordings (PhysioNet 2018, EDF, ``mne.io.Raw``, arrays) -> the epoch store ->
splits -> pretraining and finetuning -> kappa.

From Python, :func:`from_raw` and :func:`from_array` add a recording to a store and
:func:`prepare_store` fills one from a folder (what ``relpos prepare`` runs); they are
imported on first use, so that ``relpos.sleep.format`` and friends stay light.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["from_array", "from_raw", "prepare_store"]

_LAZY = {
    "from_array": "relpos.sleep.inputs",
    "from_raw": "relpos.sleep.inputs",
    "prepare_store": "relpos.sleep.store.writer",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'relpos.sleep' has no attribute {name!r}")
