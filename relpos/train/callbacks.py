"""Hooks into the training loop, so a logger (TensorBoard, W&B, a CSV file) plugs in without
forking ``fit``.

Subclass :class:`Callback`, override the hooks you need and pass instances to
``fit(..., callbacks=[...])`` or ``relpos.train.api.train(..., callbacks=[...])``. Every hook
receives the loop's :class:`~relpos.train.state.RunState` (step, epoch, model, optimiser, ...).
Callbacks run on rank 0 only, the process that logs and writes files, in the order given,
after the built-in :class:`MetricsWriter` (``metrics.jsonl``).

Example, a CSV log of the training loss (a TensorBoard ``SummaryWriter`` plugs in the same
way, in ``on_log``)::

    class LossCSV(Callback):
        def on_fit_start(self, state):
            self.file = open(state.out_dir / "loss.csv", "a")

        def on_step_end(self, state, record):
            self.file.write(f"{state.step},{state.lr},{record['loss']}\\n")

        def on_fit_end(self, state, result):
            self.file.close()
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from relpos.train.state import FitResult, RunState

__all__ = ["Callback", "CallbackList", "MetricsWriter"]


class Callback:
    """Base class: every hook does nothing until overridden."""

    def on_fit_start(self, state: RunState) -> None:
        """Once the model, optimiser and schedule are ready (after any resume), before step 1."""

    def on_step_end(self, state: RunState, record: dict[str, float]) -> None:
        """After every optimiser step; ``record`` averages this step's micro-batches on this
        rank (``loss`` and the task's metrics)."""

    def on_log(self, state: RunState, record: dict[str, Any]) -> None:
        """For every ``metrics.jsonl`` record: training records (``step``, ``epoch``, ``lr``,
        metrics averaged over ranks and over the steps since the last record, ``samples_per_s``,
        ``time``), evaluation records (``split: "eval"`` and what ``eval_fn`` returned) and
        validation records (``split: "val"``, the ``val_fn`` metrics and, with early stopping,
        ``best``, ``best_step`` and ``bad_evals``)."""

    def on_epoch_end(self, state: RunState) -> None:
        """After each pass of the epoch loop (a whole epoch, or the part that ``max_steps``
        allowed, or stopped early), once any ``eval_fn`` and ``val_fn`` have run and before the
        epoch's checkpoint."""

    def on_checkpoint(self, state: RunState, path: Path) -> None:
        """After ``checkpoints/ckpt-<step>.pt`` was written (atomically) to ``path``."""

    def on_fit_end(self, state: RunState, result: FitResult) -> None:
        """After ``final.pt`` and the encoder export were written (with early stopping: the
        best weights, which ``state.model`` then holds too)."""


class CallbackList(Callback):
    """Several callbacks called in order, as one."""

    def __init__(self, callbacks: Iterable[Callback] = ()) -> None:
        self.callbacks = list(callbacks)

    def on_fit_start(self, state: RunState) -> None:
        for cb in self.callbacks:
            cb.on_fit_start(state)

    def on_step_end(self, state: RunState, record: dict[str, float]) -> None:
        for cb in self.callbacks:
            cb.on_step_end(state, record)

    def on_log(self, state: RunState, record: dict[str, Any]) -> None:
        for cb in self.callbacks:
            cb.on_log(state, record)

    def on_epoch_end(self, state: RunState) -> None:
        for cb in self.callbacks:
            cb.on_epoch_end(state)

    def on_checkpoint(self, state: RunState, path: Path) -> None:
        for cb in self.callbacks:
            cb.on_checkpoint(state, path)

    def on_fit_end(self, state: RunState, result: FitResult) -> None:
        for cb in self.callbacks:
            cb.on_fit_end(state, result)


class MetricsWriter(Callback):
    """Appends every logged record to ``metrics.jsonl`` as one JSON line (the loop's own log;
    ``relpos report`` reads it) and counts them in ``state.metrics_records``, which each
    checkpoint carries, so that a resumed run cuts the log back to its checkpoint
    (:func:`relpos.train.rundir.repair_metrics`)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def on_log(self, state: RunState, record: dict[str, Any]) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if state is not None:
            state.metrics_records += 1
