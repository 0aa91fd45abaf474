"""Worker processes that die with their parent: a killed command (SIGKILL included) leaves no
orphan holding a record, a model or a GPU. Every process pool in relpos comes from
:func:`worker_pool`."""

from __future__ import annotations

import concurrent.futures as cf
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time

__all__ = ["die_with_parent", "worker_pool"]


def die_with_parent(parent_pid: int) -> None:
    """Make this (worker) process end when ``parent_pid`` does, even by SIGKILL.

    Linux: ``prctl(PR_SET_PDEATHSIG, SIGKILL)``; elsewhere a daemon thread that exits the
    process once its parent changes. The initializer of :func:`worker_pool`'s processes.
    """
    armed = False
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            pr_set_pdeathsig = 1
            armed = libc.prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0) == 0
        except (OSError, AttributeError):  # pragma: no cover - no usable libc
            armed = False
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(1)
    if armed:
        return

    def watch() -> None:  # pragma: no cover - non-Linux
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()


def worker_pool(jobs: int, mp_context: str | None = None) -> cf.ProcessPoolExecutor:
    """A ``ProcessPoolExecutor`` of ``jobs`` processes (start method ``mp_context``, default the
    platform's) whose workers end when this process does (:func:`die_with_parent`)."""
    ctx = multiprocessing.get_context(mp_context) if mp_context else None
    return cf.ProcessPoolExecutor(jobs, ctx, initializer=die_with_parent, initargs=(os.getpid(),))
