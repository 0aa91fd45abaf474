"""The one training loop, for PART pretraining and supervised finetuning alike.

``fit(cfg, model, task, dataset, out_dir)`` trains for ``cfg.optim.epochs`` epochs with AdamW,
linear warm-up and cosine decay, gradient accumulation and clipping, mixed precision, optional
``torch.compile`` and DDP (under ``torchrun``). It writes

- ``config.yaml``: the run's config;
- ``metrics.jsonl``: one JSON record per logged step (loss, lr, samples/s, task metrics);
- ``checkpoints/ckpt-<step>.pt``: model, optimiser, scheduler, scaler, step, epoch, RNG states
  and config, atomically, every ``runtime.checkpoint_every`` steps and at each epoch end;
- ``final.pt`` and ``encoder.safetensors`` (+ ``encoder.json``) at the end.

Restarted on the same ``out_dir`` it continues from the newest complete checkpoint, replaying
the data order and random draws of an uninterrupted run.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from relpos.train import distributed as D
from relpos.train.checkpoint import (
    CheckpointManager,
    atomic_save,
    capture_rng,
    check_writable,
    encoder_of,
    export_encoder,
    restore_rng,
)
from relpos.train.config import TrainConfig, save_config
from relpos.train.order import EpochSampler
from relpos.train.tasks import Task

log = logging.getLogger(__name__)

__all__ = ["FitResult", "fit", "lr_at"]

EvalFn = Callable[[nn.Module, int], dict[str, float]]


@dataclass
class FitResult:
    out_dir: Path
    steps: int
    epochs: int
    final_checkpoint: Path | None
    encoder_path: Path | None
    last_metrics: dict[str, float] = field(default_factory=dict)
    samples_per_s: float = float("nan")
    resumed_from: Path | None = None


def lr_at(step: int, total: int, warmup: int, lr: float, min_lr: float) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to ``min_lr`` at ``total``."""
    if warmup > 0 and step < warmup:
        return lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_lr + (lr - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on biases, norms, [CLS] and position tables."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name.endswith(("cls_token", "pos_embed")) else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def _amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    if amp == "none":
        return None
    if amp == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return None
    return torch.bfloat16 if amp == "bf16" else torch.float16


def _estimate_checkpoint_bytes(model: nn.Module) -> int:
    n = sum(p.numel() * p.element_size() for p in model.parameters())
    return 3 * n + (1 << 20)  # weights + two AdamW moments + headroom


def fit(
    cfg: TrainConfig,
    model: nn.Module,
    task: Task,
    dataset: Dataset,
    out_dir: str | Path,
    *,
    groups: np.ndarray | None = None,
    resume: bool = True,
    eval_fn: EvalFn | None = None,
    collate_fn: Callable[[Any], Any] | None = None,
) -> FitResult:
    """Train ``model`` on ``dataset`` with ``task``; see the module docstring for the outputs.

    Args:
        groups: optional ``(len(dataset),)`` record id per example, for contiguous chunked
            reads and per-record sharding under DDP.
        resume: continue from ``out_dir/checkpoints`` if it holds a checkpoint.
        eval_fn: ``eval_fn(model, epoch) -> metrics`` called on rank 0 after every epoch.
    """
    rt, opt = cfg.runtime, cfg.optim
    dist = D.setup(rt.device)
    out = Path(out_dir)
    ckpt_dir = out / "checkpoints"
    if dist.is_main:
        check_writable(
            out, need_bytes=_estimate_checkpoint_bytes(model) * (rt.keep_checkpoints + 2)
        )
        save_config(cfg, out / "config.yaml")
    D.barrier()

    torch.manual_seed(rt.seed + dist.rank)
    np.random.seed((rt.seed + dist.rank) % 2**32)  # noqa: NPY002 - user code may draw from it
    random.seed(rt.seed + dist.rank)
    span_gen = torch.Generator().manual_seed(rt.seed + dist.rank)

    device = dist.device
    model.to(device)
    if cfg.task == "finetune" and cfg.finetune.linear_probe:
        enc = encoder_of(model)
        for name, p in enc.named_parameters():
            p.requires_grad = name.startswith("head.")
    optimizer = torch.optim.AdamW(
        _param_groups(model, opt.weight_decay), lr=opt.lr, betas=opt.betas
    )

    sampler = EpochSampler(
        len(dataset), seed=rt.seed, rank=dist.rank, world_size=dist.world_size, groups=groups
    )
    per_step = opt.batch_size * opt.accum_steps
    steps_per_epoch = sampler.epoch_length(0) // per_step
    if steps_per_epoch < 1:
        raise ValueError(
            f"dataset too small: {sampler.epoch_length(0)} examples per rank cannot fill one step of "
            f"batch_size={opt.batch_size} x accum_steps={opt.accum_steps}"
        )
    total_steps = steps_per_epoch * opt.epochs
    if opt.max_steps is not None:
        total_steps = min(total_steps, opt.max_steps)
    warmup = int(opt.warmup_epochs * steps_per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_at(s, total_steps, warmup, opt.lr, opt.min_lr) / opt.lr
    )
    amp_dtype = _amp_dtype(rt.amp, device)
    scaler = torch.amp.GradScaler(
        "cuda", enabled=amp_dtype == torch.float16 and device.type == "cuda"
    )

    manager = CheckpointManager(ckpt_dir, keep=rt.keep_checkpoints)
    step, epoch, step_in_epoch, resumed_from = 0, 0, 0, None
    if resume:
        found = manager.latest(map_location="cpu")  # RNG states must stay on the CPU
        if found is not None:
            resumed_from, ck = found
            model.load_state_dict(ck["model"])
            optimizer.load_state_dict(ck["optimizer"])
            scheduler.load_state_dict(ck["scheduler"])
            scaler.load_state_dict(ck["scaler"])
            step, epoch, step_in_epoch = ck["step"], ck["epoch"], ck["step_in_epoch"]
            rngs = ck["rng"] if isinstance(ck["rng"], list) else [ck["rng"]]
            if len(rngs) != dist.world_size:
                log.warning(
                    "checkpoint written by %d process(es), resuming with %d: random streams differ",
                    len(rngs),
                    dist.world_size,
                )
            rng = rngs[dist.rank % len(rngs)]
            restore_rng(rng, span_gen)
            if dist.is_main:
                log.info("resumed from %s (step %d, epoch %d)", resumed_from, step, epoch)

    train_model: nn.Module = model
    if dist.distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [device.index] if device.type == "cuda" else None
        train_model = DDP(model, device_ids=ids)
    if rt.compile:
        # compile the transformer blocks in place: the bulk of the compute, no data-dependent
        # control flow, and parameter names (checkpoints) stay unchanged
        for block in encoder_of(model).blocks:
            block.compile()

    metrics_path = out / "metrics.jsonl"
    throughput: list[float] = []
    last: dict[str, float] = {}

    def save(tag_step: int) -> Path | None:
        rngs = capture_rng(span_gen)
        if dist.distributed:
            gathered: list[Any] = [None] * dist.world_size
            torch.distributed.all_gather_object(gathered, rngs)
            rngs = gathered
        if not dist.is_main:
            return None
        state = {
            "config": cfg.model_dump(mode="json"),
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "step": step,
            "epoch": epoch,
            "step_in_epoch": step_in_epoch,
            "rng": rngs,
            "world_size": dist.world_size,
        }
        return manager.save(state, tag_step)

    done = step >= total_steps
    while not done and epoch < opt.epochs:
        sampler.set_epoch(epoch, start=step_in_epoch * per_step)
        loader = DataLoader(
            dataset,
            batch_size=opt.batch_size,
            sampler=sampler,
            drop_last=True,
            num_workers=rt.num_workers,
            collate_fn=collate_fn or getattr(dataset, "collate_fn", None),
            pin_memory=device.type == "cuda",
            persistent_workers=False,
        )
        bar = tqdm(
            total=steps_per_epoch,
            initial=step_in_epoch,
            desc=f"{cfg.task} epoch {epoch + 1}/{opt.epochs}",
            disable=not (rt.progress and dist.is_main),
            leave=False,
            dynamic_ncols=True,
        )
        model.train()
        window_t, window_n = time.perf_counter(), 0
        acc_metrics: dict[str, float] = {}
        acc_count = 0
        micro = 0
        for batch in loader:
            sync = (micro + 1) % opt.accum_steps == 0
            ctx = (
                train_model.no_sync()
                if (dist.distributed and not sync and hasattr(train_model, "no_sync"))
                else nullcontext()
            )
            with ctx:
                with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                    loss, metrics = task(train_model, batch, span_gen)
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"non-finite loss {float(loss)} at step {step} (epoch {epoch})"
                    )
                scaler.scale(loss / opt.accum_steps).backward()
            for k, v in {"loss": loss, **metrics}.items():
                acc_metrics[k] = acc_metrics.get(k, 0.0) + float(
                    v.detach() if isinstance(v, torch.Tensor) else v
                )
            acc_count += 1
            window_n += len(batch[0]) if isinstance(batch, (tuple, list)) else len(batch)
            micro += 1
            if not sync:
                continue
            if opt.clip_grad:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), opt.clip_grad)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            step += 1
            step_in_epoch += 1
            bar.update(1)
            if step % rt.log_every == 0 or step_in_epoch == steps_per_epoch or step == total_steps:
                elapsed = time.perf_counter() - window_t
                local_rate = window_n / max(elapsed, 1e-9)
                record = {k: v / acc_count for k, v in acc_metrics.items()}
                record = D.all_reduce_mean(record, device)
                rate = D.all_reduce_sum(local_rate, device)
                throughput.append(rate)
                last = {**record, "samples_per_s": rate}
                if dist.is_main:
                    entry = {
                        "step": step,
                        "epoch": epoch,
                        "lr": scheduler.get_last_lr()[0],
                        **last,
                        "time": time.time(),
                    }
                    with metrics_path.open("a") as f:
                        f.write(json.dumps(entry) + "\n")
                    bar.set_postfix(loss=f"{record['loss']:.4f}", sps=f"{rate:.0f}")
                acc_metrics, acc_count = {}, 0
                window_t, window_n = time.perf_counter(), 0
            if step >= total_steps:
                done = True
            if rt.checkpoint_every and step % rt.checkpoint_every == 0 and not done:
                save(step)
            if done or step_in_epoch >= steps_per_epoch:
                break
        bar.close()
        if step_in_epoch >= steps_per_epoch:
            epoch += 1
            step_in_epoch = 0
        if eval_fn is not None and dist.is_main:
            model.eval()
            ev = eval_fn(model, epoch)
            with metrics_path.open("a") as f:
                f.write(
                    json.dumps(
                        {"step": step, "epoch": epoch, "split": "eval", **ev, "time": time.time()}
                    )
                    + "\n"
                )
        save(step)

    final, encoder_path = out / "final.pt", out / "encoder.safetensors"
    if dist.is_main:
        atomic_save(
            {"config": cfg.model_dump(mode="json"), "model": model.state_dict(), "step": step},
            final,
        )
        export_encoder(model, encoder_path, extra={"modality": cfg.modality.model_dump()})
    D.barrier()  # every rank returns the paths once rank 0 has written them
    return FitResult(
        out_dir=out,
        steps=step,
        epochs=epoch,
        final_checkpoint=final,
        encoder_path=encoder_path,
        last_metrics=last,
        samples_per_s=float(np.median(throughput)) if throughput else float("nan"),
        resumed_from=resumed_from,
    )
