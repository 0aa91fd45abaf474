"""A run directory's guard rails: one writer at a time, resume only into the same run, and a
metrics log that holds each step once. :func:`open_run_dir` runs on rank 0 before the loop
writes anything into ``OUT``.

**Lock.** ``OUT/.lock`` holds an exclusive ``fcntl.flock`` for the whole run (only rank 0
takes it under DDP). The kernel drops it when the process dies, even by SIGKILL, so a killed
run never leaves a stale lock; a second run on the same ``OUT`` fails at once with
:class:`RunLockedError`. Where ``fcntl`` (or the file system's locking) is missing the lock is
a no-op.

**Resume checks.** Before anything is written, the new config is compared field by field with
the config inside the newest checkpoint that loads:

- *budget* fields (:data:`BUDGET_FIELDS`) may change; the run continues with a warning that
  lists them: ``optim.epochs``, ``optim.max_steps``, ``optim.min_steps`` (the learning-rate
  schedule is recomputed over the new total of steps), ``finetune.early_stopping.patience``
  (the evaluations without improvement so far count against the new patience), and the
  execution settings ``runtime.device``, ``runtime.amp``, ``runtime.compile``,
  ``runtime.num_workers``, ``runtime.checkpoint_every``, ``runtime.keep_checkpoints``,
  ``runtime.log_every`` and ``runtime.progress``;
- every other field is an error (:class:`ResumeMismatchError`, naming each differing field as
  ``path (old -> new)``): ``task``, ``modality.*`` and ``encoder.*`` (the data and the
  architecture: the weights would not fit), ``pretext.*`` and ``finetune.*`` (the method),
  ``optim.batch_size``, ``optim.accum_steps`` and ``runtime.seed`` (the position in the data
  order and the random streams), and ``optim.lr``, ``min_lr``, ``weight_decay``, ``betas``,
  ``warmup_epochs`` and ``clip_grad`` (the optimiser and schedule state in the checkpoint
  would silently keep the old values). ``finetune.init`` is compared as an absolute path.

``force_new=True`` starts over in place: it removes relpos's own files of the run
(:data:`RUN_FILES`, ``checkpoints/``), never anything else, after taking the lock.

**Checkpoints that do not load** are renamed ``<name>.damaged`` (kept, never deleted) once
the check passed, so that the pruning of old checkpoints cannot keep them in place of good
ones. When none loads, the run says so and deliberately starts fresh from step 0.

**metrics.jsonl.** A checkpoint records how many records ``metrics.jsonl`` held when it was
written (``metrics_records``). On resume the log is cut back to that many records (older
checkpoints without the count: to the records of steps up to the checkpoint's), and an
unparsable or unterminated last line (a write cut by a kill) is dropped, atomically. The run
then logs the steps after the checkpoint once more, so the log holds each step once. On a fresh
start an existing ``metrics.jsonl`` (records of steps that will be redone) is moved aside to
``metrics.jsonl.old``, replacing an older one.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from relpos.core.atomic import TMP_MARK, atomic_write_text
from relpos.core.locks import DirLock, LockedError
from relpos.train.checkpoint import CheckpointManager, check_writable
from relpos.train.config import TrainConfig, save_config

log = logging.getLogger(__name__)

__all__ = [
    "BUDGET_FIELDS",
    "RUN_FILES",
    "ResumeMismatchError",
    "RunDir",
    "RunLock",
    "RunLockedError",
    "check_resume",
    "clear_run",
    "config_changes",
    "open_run_dir",
    "repair_metrics",
]

#: fields a resumed run may change (with a warning); any other change is an error
BUDGET_FIELDS = frozenset(
    {
        "optim.epochs",
        "optim.max_steps",
        "optim.min_steps",
        "finetune.early_stopping.patience",
        "runtime.device",
        "runtime.amp",
        "runtime.compile",
        "runtime.num_workers",
        "runtime.checkpoint_every",
        "runtime.keep_checkpoints",
        "runtime.log_every",
        "runtime.progress",
    }
)
_SCHEDULE = ("optim.epochs", "optim.max_steps", "optim.min_steps")
#: relpos's own files in a run directory (besides ``checkpoints/``), removed by ``force_new``
RUN_FILES = (
    "config.yaml",
    "metrics.jsonl",
    "metrics.jsonl.old",
    "final.pt",
    "best.pt",
    "encoder.safetensors",
    "encoder.json",
    "report.png",
)
DAMAGED = ".damaged"


class RunLockedError(LockedError):
    """Another process holds the run directory's lock."""


class ResumeMismatchError(ValueError):
    """The config of a resumed run differs from its checkpoint's in more than the budget."""


# ---------------------------------------------------------------------- lock
class RunLock(DirLock):
    """The run directory's :class:`~relpos.core.locks.DirLock` (``OUT/.lock``)."""

    def __init__(self, directory: str | Path) -> None:
        super().__init__(directory, "relpos run", "wait for it to finish or choose another --out",
                         RunLockedError)  # fmt: skip


# ---------------------------------------------------------------------- config comparison
def config_changes(old: Any, new: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """``(dotted.path, old, new)`` for every leaf where two config dumps differ (mappings are
    compared key by key; anything else, lists included, as a whole)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[tuple[str, Any, Any]] = []
        for key in list(old) + [k for k in new if k not in old]:
            path = f"{prefix}.{key}" if prefix else str(key)
            out += config_changes(old.get(key, "<missing>"), new.get(key, "<missing>"), path)
        return out
    return [] if old == new else [(prefix, old, new)]


def _normalised(dump: dict[str, Any]) -> dict[str, Any]:
    """A config dump with defaults filled in (when it validates) and ``finetune.init`` as an
    absolute path."""
    try:
        dump = TrainConfig.model_validate(dump).model_dump(mode="json")
    except (ValidationError, ValueError, TypeError):
        dump = json.loads(json.dumps(dump, default=str))  # another version's config: as stored
    init = dump.get("finetune", {}).get("init")
    if isinstance(init, str):
        dump["finetune"]["init"] = os.path.abspath(init)
    return dump


def _show(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _listing(changes: list[tuple[str, Any, Any]]) -> str:
    return ", ".join(f"{p} ({_show(a)} -> {_show(b)})" for p, a, b in changes)


def check_resume(saved: dict[str, Any], cfg: TrainConfig, checkpoint: str | Path) -> list[str]:
    """Compare ``cfg`` with the config ``saved`` in ``checkpoint``: raise
    :class:`ResumeMismatchError` (one line naming every differing field) unless only
    :data:`BUDGET_FIELDS` differ; log those with a warning and return their paths."""
    changes = config_changes(_normalised(saved), _normalised(cfg.model_dump(mode="json")))
    fatal = [c for c in changes if c[0] not in BUDGET_FIELDS]
    if fatal:
        raise ResumeMismatchError(
            f"{checkpoint}: cannot resume, the config differs from the checkpoint's in "
            f"{_listing(fatal)}; rerun with the same settings, or start over in place with "
            "--force-new (force_new=True), or choose another --out"
        )
    if changes:
        note = (
            "; the learning-rate schedule is recomputed over the new total of steps"
            if any(p in _SCHEDULE for p, _, _ in changes)
            else ""
        )
        log.warning("%s: resuming with a changed budget: %s%s", checkpoint, _listing(changes), note)
    return [p for p, _, _ in changes]


# ---------------------------------------------------------------------- metrics.jsonl
def _parse(line: str) -> dict[str, Any] | None:
    try:
        rec = json.loads(line)
    except ValueError:
        return None
    return rec if isinstance(rec, dict) else None


def repair_metrics(path: str | Path, *, records: int | None = None, step: int | None = None) -> int:
    """Cut ``metrics.jsonl`` back to its first ``records`` records (else, with ``step``, to the
    records of steps ``<= step``), drop an unparsable or unterminated last line, and rewrite it
    atomically if anything changed. Returns the number of records kept."""
    path = Path(path)
    if not path.exists():
        return 0
    text = path.read_text(errors="replace")
    lines = text.splitlines()
    rewrite = bool(text) and not text.endswith("\n")  # an unterminated last line
    if lines and _parse(lines[-1]) is None:
        log.warning("%s: dropped a partial last line (a write cut off by a kill)", path)
        lines.pop()
        rewrite = True
    kept = lines
    if records is not None:
        kept = lines[:records]
    elif step is not None:
        kept = [x for x in lines if (r := _parse(x)) is None or int(r.get("step", 0)) <= step]
    if len(kept) < len(lines):
        n = len(lines) - len(kept)
        log.info("%s: dropped %d record(s) logged after the checkpoint", path, n)
    if rewrite or len(kept) < len(lines):
        atomic_write_text(path, "".join(x + "\n" for x in kept))
    return len(kept)


# ---------------------------------------------------------------------- the run directory
def clear_run(out: str | Path) -> list[str]:
    """Remove relpos's own files of the run in ``out`` (:data:`RUN_FILES`, the checkpoints,
    damaged ones and temporaries included); returns what was removed. Other files stay."""
    out = Path(out)
    removed = [n for n in RUN_FILES if (out / n).is_file()]
    for name in removed:
        (out / name).unlink()
    removed += [p.name for p in out.glob(f".*{TMP_MARK}*") if p.is_file()]
    for p in out.glob(f".*{TMP_MARK}*"):
        p.unlink(missing_ok=True)
    ckpts = out / "checkpoints"
    if ckpts.is_dir():
        for p in ckpts.iterdir():
            if p.name.startswith(("ckpt-", ".ckpt-")) and p.is_file():
                p.unlink()
                removed.append(f"checkpoints/{p.name}")
        if not any(ckpts.iterdir()):
            ckpts.rmdir()
    return removed


def _warn(msg: str) -> None:
    warnings.warn(msg, RuntimeWarning, stacklevel=3)
    log.warning(msg)


def _set_aside(damaged: list[tuple[Path, str]]) -> None:
    for path, _ in damaged:
        path.replace(path.with_name(path.name + DAMAGED))


def _fresh_metrics(out: Path) -> None:
    metrics = out / "metrics.jsonl"
    if metrics.exists():
        metrics.replace(out / "metrics.jsonl.old")
        log.warning("%s: starting from step 0; the old log is now metrics.jsonl.old", metrics)


@dataclass
class RunDir:
    """What :func:`open_run_dir` leaves for the loop: the held lock, the checkpoint to resume
    from (``(path, payload)``, or ``None`` for a fresh start) and the records in
    ``metrics.jsonl``."""

    path: Path
    lock: RunLock | None = None
    found: tuple[Path, dict[str, Any]] | None = None
    records: int = 0

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()


def _start(
    cfg: TrainConfig, out: Path, checkpoints: CheckpointManager, resume: bool, force_new: bool
) -> tuple[tuple[Path, dict[str, Any]] | None, int]:
    """The resume decision (see the module docstring): the checkpoint and the record count."""
    if force_new:
        removed = clear_run(out)
        if removed:
            log.warning("%s: --force-new: removed %s; starting over", out, ", ".join(removed))
        return None, 0
    if not resume:
        if checkpoints.paths():
            raise FileExistsError(
                f"{out} already holds checkpoints; resume them (resume=True), start over in "
                "place with --force-new (force_new=True), or choose another --out"
            )
        _fresh_metrics(out)
        return None, 0
    found, damaged = checkpoints.scan(map_location="cpu")
    report = checkpoints.damage_report(found, damaged)
    if found is None:
        if report is not None:
            _warn(f"{report}; starting fresh from step 0 (they are kept as *{DAMAGED})")
            _set_aside(damaged)
        _fresh_metrics(out)
        return None, 0
    path, ck = found
    if isinstance(ck.get("config"), dict):
        check_resume(ck["config"], cfg, path)
    if report is not None:
        _warn(f"{report} (the damaged ones are kept as *{DAMAGED})")
        _set_aside(damaged)
    count = ck.get("metrics_records")
    records = repair_metrics(
        out / "metrics.jsonl",
        records=int(count) if count is not None else None,
        step=int(ck.get("step", 0)),
    )
    return found, records


def open_run_dir(
    cfg: TrainConfig,
    out: str | Path,
    checkpoints: CheckpointManager,
    *,
    need_bytes: int = 0,
    resume: bool = True,
    force_new: bool = False,
) -> RunDir:
    """Rank 0's preparation of ``out`` before training: check it is writable with
    ``need_bytes`` free, take the lock, decide where to start (resume checks, ``force_new``,
    damaged checkpoints, ``metrics.jsonl`` repair), and only then write ``config.yaml``. The
    lock stays held in the returned :class:`RunDir` (release it when the run ends)."""
    out = check_writable(out, need_bytes=need_bytes)
    lock = RunLock(out)
    lock.acquire()
    try:
        found, records = _start(cfg, out, checkpoints, resume, force_new)
        save_config(cfg, out / "config.yaml")
    except BaseException:
        lock.release()
        raise
    return RunDir(out, lock, found, records)
