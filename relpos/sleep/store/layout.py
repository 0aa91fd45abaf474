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

import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from relpos.core.atomic import TMP_MARK, atomic_write_text
from relpos.core.locks import LOCK_FILE, DirLock, LockedError
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
    "StoreLockedError",
    "StoreMismatchError",
    "StoreWriteError",
    "check_record",
    "clean_temporaries",
    "is_temporary",
    "read_json",
    "record_meta_path",
    "record_npy_path",
    "skipped_path",
    "store_lock",
    "write_json",
    "writing",
]

FORMAT = "relpos-epoch-store"
VERSION = 1
#: Class names of the summary's counts: the stages, then the unlabelled epochs.
CLASS_NAMES: tuple[str, ...] = (*STAGES, "unlabelled")

STORE_FILE = "store.json"
INDEX_FILE = "index.npz"
SUMMARY_FILE = "summary.json"
RECORDS_DIR = "records"
SKIPPED_DIR = "skipped"


class StoreMismatchError(ValueError):
    """The store exists with other settings (pipeline, dtype, channels, version)."""


class StoreLockedError(LockedError):
    """Another ``relpos prepare`` holds the store's lock (the message names the store)."""


class StoreWriteError(OSError):
    """Writing a store file failed (full disk, file-size limit, permissions, ...): the run
    stops instead of marking records skipped (the message names the file)."""


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """Turn an ``OSError`` raised in the block into a one-line :class:`StoreWriteError`
    naming ``path``."""
    try:
        yield
    except StoreWriteError:
        raise
    except OSError as e:
        why = e.strerror or f"{' '.join(str(e).split())}: disk full or file-size limit?"
        raise StoreWriteError(
            f"{path}: write failed ({why}); prepare stopped and marked no record skipped: "
            f"free space (or raise the file-size limit) and rerun"
        ) from e


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
    """The JSON value in ``path``.

    Raises:
        ValueError: the file is not valid UTF-8 JSON (one line naming the file).
        OSError: it cannot be read.
    """
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
        detail = " ".join(str(e).split())
        raise ValueError(f"{path}: damaged JSON file ({detail})") from e


def write_json(path: Path, obj: Any) -> None:
    """Replace ``path`` atomically with ``obj`` as compact JSON (record metas hold per-epoch
    lists, which indentation would blow up to one line per epoch).

    Raises:
        StoreWriteError: the write failed (names ``path``).
    """
    with writing(path):
        atomic_write_text(path, json.dumps(obj, separators=(",", ":")))


def _npy_problem(path: Path, shape: tuple[int, ...], dtype: str) -> str | None:
    """Why the ``.npy`` at ``path`` is not an array of ``shape`` and ``dtype`` whose data are
    all on disk (header read only), or None."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                have, fortran, dt = np.lib.format.read_array_header_1_0(f)
            else:
                have, fortran, dt = np.lib.format.read_array_header_2_0(f)
            data_start = f.tell()
        size = path.stat().st_size
    except FileNotFoundError:
        return "its .npy is missing"
    except (OSError, ValueError) as e:
        return f"unreadable .npy header ({e})"
    if tuple(have) != shape or dt != np.dtype(dtype) or fortran:
        return f".npy holds {tuple(have)} {dt}, the meta says {shape} {dtype}"
    want = data_start + int(np.prod(shape, dtype=np.int64)) * dt.itemsize
    if size != want:
        return f".npy is {size} bytes, its header implies {want} (truncated or damaged)"
    return None


def check_record(root: Path, record_id: str) -> str | None:
    """Why a record's files in the store are not a finished record, or None when its meta
    parses and its ``.npy`` matches the meta's shape and dtype with all data bytes present
    (cheap: the ``.npy`` header and size only)."""
    meta_path = record_meta_path(root, record_id)
    if not meta_path.is_file():
        return "no meta"
    try:
        m = read_json(meta_path)
    except (OSError, ValueError) as e:
        return " ".join(str(e).split())
    try:
        shape = tuple(int(v) for v in m["shape"])
        dtype = str(m["dtype"])
        n = int(m["n_epochs"])
        lengths = {len(m[k]) for k in ("labels", "epoch_index", "onset_s")}
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"damaged meta ({' '.join(str(e).split())})"
    if not shape or shape[0] != n or lengths != {n}:
        return f"inconsistent meta (n_epochs {n}, shape {shape}, per-epoch lists {lengths})"
    return _npy_problem(record_npy_path(root, record_id), shape, dtype)


def store_lock(store_dir: Path) -> DirLock:
    """The store's :class:`~relpos.core.locks.DirLock` (``STORE/.lock``), so that two prepare
    runs never share a store (use as a context manager; released when the process dies).

    Raises:
        StoreLockedError: another process holds it (one line naming the store).
    """
    return DirLock(
        store_dir, "relpos prepare", "wait for it to finish or stop it", StoreLockedError
    )


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
