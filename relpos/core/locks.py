"""The one directory lock: an exclusive ``fcntl.flock`` on ``DIR/.lock`` that the kernel drops
when the process dies (even by SIGKILL), so a killed command never leaves a stale lock. A
training run holds its run directory, ``prepare`` its store; a second writer fails at once
with one line naming the directory and the holder's pid. Where ``fcntl`` (or the file
system's locking, e.g. some network mounts) is missing the lock is a no-op, with a warning.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

try:  # pragma: no cover - always there on POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

__all__ = ["LOCK_FILE", "DirLock", "LockedError"]

LOCK_FILE = ".lock"


class LockedError(BlockingIOError):
    """Another process holds the directory's lock."""


class DirLock:
    """An exclusive lock on ``directory/.lock``, held until :meth:`release` or process death.

    Args:
        directory: the directory to guard (must exist).
        holder: who takes it, for the message (e.g. ``"relpos run"``).
        advice: what the second writer should do (e.g. ``"choose another --out"``).
        error: the :class:`LockedError` subclass to raise.
    """

    def __init__(
        self,
        directory: str | Path,
        holder: str = "relpos process",
        advice: str = "wait for it to finish",
        error: type[LockedError] = LockedError,
    ) -> None:
        self.directory = Path(directory)
        self.path = self.directory / LOCK_FILE
        self.holder, self.advice, self.error = holder, advice, error
        self._fd: int | None = None

    def acquire(self) -> DirLock:
        """Take the lock or raise ``error`` naming the directory and the holder (no waiting);
        an ``OSError`` naming the lock file when it cannot even be created."""
        if fcntl is None:
            return self
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            msg = f"cannot create the lock ({exc.strerror})"
            raise OSError(exc.errno, msg, str(self.path)) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise self.error(
                f"{self.directory}: another {self.holder} (pid {pid}) is writing this directory; "
                f"{self.advice}"
            ) from None
        except OSError as exc:
            log.warning(
                "%s: cannot lock (%s); not guarding against a second writer", self.path, exc
            )
            os.close(fd)
            return self
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None and fcntl is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
        self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> DirLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
