"""The one way relpos replaces a file: write a temporary sibling, fsync it, rename it over the
target, fsync the directory. A reader (or a restarted run) sees the old file or the complete
new one, never a partial write, even after a killed process or a power cut.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["TMP_MARK", "atomic_path", "atomic_write_json", "atomic_write_text", "fsync_dir"]

TMP_MARK = ".tmp-"
"""Every temporary file relpos writes has this in its name (``.<name>.tmp-<pid>``), so that
cleanup after a killed run can find them."""


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Flush a directory entry (a rename) to disk; a no-op where directories cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike[str], *, durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically.

    Write anything to the yielded path (``np.save``, ``torch.save``, ``safetensors``); if the
    block raises, the temporary file is removed and ``path`` is untouched. With ``durable``
    (the default) the file and the directory entry are fsynced.

    Example::

        with atomic_path(store / "index.npz") as tmp:
            np.savez(tmp, **arrays)
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}{path.suffix}")
    try:
        yield tmp
        if durable:
            _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike[str], text: str, *, durable: bool = True) -> Path:
    """Replace ``path`` with ``text`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path, durable=durable) as tmp:
        tmp.write_text(text)
    return Path(path)


def atomic_write_json(path: str | os.PathLike[str], obj: Any, *, durable: bool = True) -> Path:
    """Replace ``path`` with ``obj`` as indented JSON atomically (see :func:`atomic_path`)."""
    return atomic_write_text(path, json.dumps(obj, indent=2), durable=durable)
