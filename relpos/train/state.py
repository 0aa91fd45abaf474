"""What a training run carries from step to step (``RunState``) and what it returns
(``FitResult``).

The loop (``relpos.train.loop``) is a handful of named steps that read and advance one
``RunState``; callbacks (``relpos.train.callbacks``) receive the same object, so a logger sees
the step, epoch, learning rate, model and optimiser without reaching into the loop.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from relpos.train.checkpoint import CheckpointManager
from relpos.train.config import TrainConfig
from relpos.train.distributed import DistInfo
from relpos.train.order import EpochSampler

__all__ = ["FitResult", "Meter", "RunState"]


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
    step: int = 0
    epoch: int = 0
    step_in_epoch: int = 0
    resumed_from: Path | None = None
    last: dict[str, float] = field(default_factory=dict)
    step_metrics: dict[str, float] = field(default_factory=dict)
    throughput: list[float] = field(default_factory=list)

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
    def finished(self) -> bool:
        return self.done or self.epoch >= self.cfg.optim.epochs

    def checkpoint_state(self, rngs: Any) -> dict[str, Any]:
        """The checkpoint payload (``rngs``: the RNG states of every rank)."""
        return {
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
        }
