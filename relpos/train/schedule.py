"""The optimiser's side of a run: parameter groups (no weight decay on biases, norms and
position tables), the learning-rate schedule (linear warm-up, cosine decay), the step budget
(epochs, ``min_steps``, ``max_steps``), the autocast dtype and the checkpoint size estimate."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from relpos.train.config import OptimConfig
from relpos.train.order import EpochSampler

__all__ = ["amp_dtype", "budget", "checkpoint_bytes", "lr_at", "param_groups"]


def lr_at(step: int, total: int, warmup: int, lr: float, min_lr: float) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to ``min_lr`` at ``total``."""
    if warmup > 0 and step < warmup:
        return lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_lr + (lr - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on biases, norms, [CLS] and position tables."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name.endswith(("cls_token", "pos_embed")) else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``runtime.amp`` on ``device`` (``None``: full precision)."""
    if amp == "none":
        return None
    if amp == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return None
    return torch.bfloat16 if amp == "bf16" else torch.float16


def checkpoint_bytes(model: nn.Module) -> int:
    """About how many bytes one checkpoint of ``model`` takes (for the free-space check)."""
    n = sum(p.numel() * p.element_size() for p in model.parameters())
    return 3 * n + (1 << 20)  # weights + two AdamW moments + headroom


def budget(opt: OptimConfig, sampler: EpochSampler) -> tuple[int, int, int, int]:
    """``(steps_per_epoch, total_steps, warmup_steps, epochs)`` for this rank's share of the
    data; ``epochs`` is ``optim.epochs``, raised to reach ``optim.min_steps`` steps."""
    per_step = opt.batch_size * opt.accum_steps
    steps_per_epoch = sampler.epoch_length(0) // per_step
    if steps_per_epoch < 1:
        raise ValueError(
            f"dataset too small: {sampler.epoch_length(0)} examples per rank cannot fill one step of "
            f"batch_size={opt.batch_size} x accum_steps={opt.accum_steps}"
        )
    epochs = opt.epochs
    if opt.min_steps is not None:
        epochs = max(epochs, math.ceil(opt.min_steps / steps_per_epoch))
    total_steps = steps_per_epoch * epochs
    if opt.max_steps is not None:
        total_steps = min(total_steps, opt.max_steps)
    return steps_per_epoch, total_steps, int(opt.warmup_epochs * steps_per_epoch), epochs
