"""What a training run carries from step to step (``RunState``) and what it returns
(``FitResult``).

The loop (``relpos.train.loop``) is a handful of named steps that read and advance one
``RunState``; callbacks (``relpos.train.callbacks``) receive the same object, so a logger sees
the step, epoch, learning rate, model and optimiser without reaching into the loop.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from relpos.train.checkpoint import CheckpointManager
from relpos.train.config import EarlyStoppingConfig, TrainConfig
from relpos.train.distributed import DistInfo
from relpos.train.order import EpochSampler
from relpos.train.rundir import RunDir

__all__ = ["EarlyStopping", "FitResult", "Meter", "RunState"]


@dataclass
class FitResult:
    """What ``fit`` returns: where the run wrote, how far it went, its last logged metrics."""

    out_dir: Path
    steps: int
    epochs: int
    final_checkpoint: Path | None
    encoder_path: Path | None
    last_metrics: dict[str, float] = field(default_factory=dict)
    samples_per_s: float = float("nan")
    resumed_from: Path | None = None
    best_step: int | None = None  # early stopping: the step of the best validation value
    best_metric: float | None = None  # early stopping: the best validation value


@dataclass
class EarlyStopping:
    """Early stopping's progress: the best validation value, its step, the evaluations since
    it last improved, and whether the run stopped (all checkpointed, so a resumed run goes on
    counting where it was killed)."""

    cfg: EarlyStoppingConfig
    best: float | None = None
    best_step: int | None = None
    bad_evals: int = 0
    stopped: bool = False

    def update(self, value: float, step: int) -> bool:
        """Record one evaluation's ``value`` at ``step``; ``True`` if it is the new best. Sets
        ``stopped`` once ``patience`` evaluations in a row did not improve (NaN never does)."""
        c = self.cfg
        better = not math.isnan(value) and (
            self.best is None
            or (
                value < self.best - c.min_delta
                if c.mode == "min"
                else value > self.best + c.min_delta
            )
        )
        if better:
            self.best, self.best_step, self.bad_evals = value, step, 0
        else:
            self.bad_evals += 1
            self.stopped = self.bad_evals >= c.patience
        return better

    def state_dict(self) -> dict[str, Any]:
        return {
            "best": self.best,
            "best_step": self.best_step,
            "bad_evals": self.bad_evals,
            "stopped": self.stopped,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the progress; ``stopped`` follows this config's ``patience`` (a resumed run
        may have raised or lowered it)."""
        self.best, self.best_step = state["best"], state["best_step"]
        self.bad_evals = int(state["bad_evals"])
        self.stopped = self.bad_evals >= self.cfg.patience

    def broadcast(self, device: torch.device) -> None:
        """Take rank 0's progress on every rank, so that all stop together (a collective;
        a no-op without a process group)."""
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return
        best = math.nan if self.best is None else self.best
        step = -1 if self.best_step is None else self.best_step
        t = torch.tensor(
            [best, step, self.bad_evals, float(self.stopped)], dtype=torch.float64, device=device
        )
        torch.distributed.broadcast(t, src=0)
        best, step, bad, stopped = t.tolist()
        self.best = None if math.isnan(best) else best
        self.best_step = None if step < 0 else int(step)
        self.bad_evals, self.stopped = int(bad), bool(stopped)


class Meter:
    """Running sums of scalar metrics over micro-batches, averaged on demand."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.count = 0

    def add(self, values: dict[str, float]) -> None:
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.count += 1

    def mean(self) -> dict[str, float]:
        return {k: v / self.count for k, v in self.sums.items()}


@dataclass
class LogWindow:
    """Metrics and throughput since the last logged record (reset at each log and epoch)."""

    meter: Meter = field(default_factory=Meter)
    started: float = field(default_factory=time.perf_counter)
    samples: int = 0


@dataclass
class RunState:
    """Everything one run advances: position, model, optimiser, schedule, random streams.

    ``model`` is the bare module (checkpointed, exported); ``train_model`` is what the forward
    pass calls (``model`` itself, or its ``DistributedDataParallel`` wrapper under ``torchrun``).
    """

    cfg: TrainConfig
    out_dir: Path
    dist: DistInfo
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    span_gen: torch.Generator
    sampler: EpochSampler
    checkpoints: CheckpointManager
    amp_dtype: torch.dtype | None
    steps_per_epoch: int
    total_steps: int
    train_model: nn.Module | None = None
    # epochs the budget allows: ``optim.epochs``, raised by ``optim.min_steps`` (None: the former)
    num_epochs: int | None = None
    early_stopping: EarlyStopping | None = None
    step: int = 0
    epoch: int = 0
    step_in_epoch: int = 0
    resumed_from: Path | None = None
    last: dict[str, float] = field(default_factory=dict)
    step_metrics: dict[str, float] = field(default_factory=dict)
    throughput: list[float] = field(default_factory=list)
    # rank 0: the run directory's lock and resume decision (relpos.train.rundir)
    run_dir: RunDir | None = None
    # records in metrics.jsonl (rank 0; the MetricsWriter counts them, checkpoints carry it)
    metrics_records: int = 0
    # a JSON-able dict stored in checkpoints, final.pt, best.pt and encoder.json
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        return self.dist.device

    @property
    def per_step(self) -> int:
        """Examples per rank and optimiser step (``batch_size * accum_steps``)."""
        return self.cfg.optim.batch_size * self.cfg.optim.accum_steps

    @property
    def lr(self) -> float:
        return float(self.scheduler.get_last_lr()[0])

    @property
    def done(self) -> bool:
        """The step budget (``epochs`` or ``max_steps``) is spent."""
        return self.step >= self.total_steps

    @property
    def epoch_complete(self) -> bool:
        return self.step_in_epoch >= self.steps_per_epoch

    @property
    def epochs(self) -> int:
        """Epochs in the budget (``optim.epochs``, or more to make ``optim.min_steps``)."""
        return self.cfg.optim.epochs if self.num_epochs is None else self.num_epochs

    @property
    def stopped(self) -> bool:
        """Early stopping ended the run."""
        return self.early_stopping is not None and self.early_stopping.stopped

    @property
    def finished(self) -> bool:
        return self.done or self.stopped or self.epoch >= self.epochs

    def checkpoint_state(self, rngs: Any) -> dict[str, Any]:
        """The checkpoint payload (``rngs``: the RNG states of every rank), with the count of
        ``metrics.jsonl`` records so far (``metrics_records``), the ``provenance`` when there is
        one, and the early stopping progress under ``early_stopping`` when the run uses it."""
        payload = {
            "config": self.cfg.model_dump(mode="json"),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "step": self.step,
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "rng": rngs,
            "world_size": self.dist.world_size,
            "metrics_records": self.metrics_records,
        }
        if self.provenance:
            payload["provenance"] = self.provenance
        if self.early_stopping is not None:
            payload["early_stopping"] = self.early_stopping.state_dict()
        return payload
