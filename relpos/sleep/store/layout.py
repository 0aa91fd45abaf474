"""The on-disk layout of an epoch store, shared by its writer and its reader.

Layout::

    store_dir/
      store.json                 format, version, dtype, channels, fs, epoch samples, pipeline
      records/<record_id>.npy    (n_epochs, C, S) float16|float32 (np.save; mmap on read)
      records/<record_id>.json   record meta: subject, labels, epoch numbers, onsets (s),
                                 dropped NaN/flat counts, ... -- the COMPLETION MARKER
      skipped/<record_id>.json   why a record was skipped
      index.npz                  cached per-epoch index (rebuilt when the metas change)
      summary.json               summary of the last prepare run
      .lock                      flock'ed while a prepare runs

Every file is replaced atomically by :func:`relpos.core.atomic.atomic_path`: written under a
temporary name holding :data:`~relpos.core.atomic.TMP_MARK`, fsynced, then renamed. Such names
are never data (:func:`is_temporary`); :func:`clean_temporaries` removes the ones a killed run
left behind.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from relpos.core.atomic import TMP_MARK, atomic_write_text
from relpos.sleep.format import STAGES

logger = logging.getLogger(__name__)

__all__ = [
    "CLASS_NAMES",
    "FORMAT",
    "INDEX_FILE",
    "LOCK_FILE",
    "RECORDS_DIR",
    "SKIPPED_DIR",
    "STORE_FILE",
    "SUMMARY_FILE",
    "VERSION",
    "StoreMismatchError",
    "clean_temporaries",
    "is_temporary",
    "read_json",
    "record_meta_path",
    "record_npy_path",
    "skipped_path",
    "write_json",
]

FORMAT = "relpos-epoch-store"
VERSION = 1
#: Class names of the summary's counts: the stages, then the unlabelled epochs.
CLASS_NAMES: tuple[str, ...] = (*STAGES, "unlabelled")

STORE_FILE = "store.json"
INDEX_FILE = "index.npz"
SUMMARY_FILE = "summary.json"
LOCK_FILE = ".lock"
RECORDS_DIR = "records"
SKIPPED_DIR = "skipped"


class StoreMismatchError(ValueError):
    """The store exists with other settings (pipeline, dtype, channels, version)."""


def record_npy_path(root: Path, record_id: str) -> Path:
    """The epochs of a record: ``root/records/<record_id>.npy``."""
    return root / RECORDS_DIR / f"{record_id}.npy"


def record_meta_path(root: Path, record_id: str) -> Path:
    """The meta (completion marker) of a record: ``root/records/<record_id>.json``."""
    return root / RECORDS_DIR / f"{record_id}.json"


def skipped_path(root: Path, record_id: str) -> Path:
    """Why a record was skipped: ``root/skipped/<record_id>.json``."""
    return root / SKIPPED_DIR / f"{record_id}.json"


def is_temporary(name: str) -> bool:
    """Whether a file name is an unfinished atomic write (never data)."""
    return TMP_MARK in name


def read_json(path: Path) -> Any:
    """The JSON value in ``path``."""
    with open(path) as f:
        return json.load(f)


def write_json(path: Path, obj: Any) -> None:
    """Replace ``path`` atomically with ``obj`` as compact JSON (record metas hold per-epoch
    lists, which indentation would blow up to one line per epoch)."""
    atomic_write_text(path, json.dumps(obj, separators=(",", ":")))


def clean_temporaries(root: Path) -> int:
    """Remove the temporary files of interrupted writes in the store; returns their number."""
    n = 0
    for d in (root, root / RECORDS_DIR, root / SKIPPED_DIR):
        for p in d.glob(f"*{TMP_MARK}*"):
            p.unlink(missing_ok=True)
            n += 1
    if n:
        logger.info("removed %d temporary file(s) left by an interrupted run", n)
    return n
