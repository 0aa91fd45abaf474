"""The one training loop, for PART pretraining and supervised finetuning alike.

``fit(cfg, model, task, dataset, out_dir)`` trains for ``cfg.optim.epochs`` epochs with AdamW,
linear warm-up and cosine decay, gradient accumulation and clipping, mixed precision, optional
``torch.compile`` and DDP (under ``torchrun``). It writes

- ``config.yaml``: the run's config;
- ``metrics.jsonl``: one JSON record per logged step (loss, lr, samples/s, task metrics);
- ``checkpoints/ckpt-<step>.pt``: model, optimiser, scheduler, scaler, step, epoch, RNG states
  and config, atomically, every ``runtime.checkpoint_every`` steps and at each epoch end;
- ``final.pt`` and ``encoder.safetensors`` (+ ``encoder.json``) at the end;
- ``.lock``: locked (``flock``) while the run goes on.

With a validation function (``val_fn``) it also logs ``split: "val"`` records; with
``finetune.early_stopping`` it keeps the best weights in ``best.pt``, stops once the metric has
not improved for ``patience`` evaluations, and ``final.pt``/``encoder.safetensors`` then hold
the best weights (see :func:`relpos.train.validation.validate`).

Restarted on the same ``out_dir`` it continues from the newest complete checkpoint, replaying
the data order and random draws of an uninterrupted run. Before writing anything it locks
``out_dir`` against a second run and checks that the config matches the checkpoint's
(:mod:`relpos.train.rundir`: budget changes continue with a warning, others are an error;
``force_new=True`` starts over in place), and it cuts ``metrics.jsonl`` back to the checkpoint
so that the log holds each step once.

``fit`` is a sequence of named steps around one :class:`~relpos.train.state.RunState`:
:func:`setup`, :func:`restore`, :func:`wrap`, then per epoch :func:`train_epoch` (which calls
:func:`forward_backward`, :func:`optimizer_step`, :func:`log_step` and
:func:`save_checkpoint`) and :func:`end_epoch`, and finally :func:`finish`. Callbacks
(``relpos.train.callbacks``) observe every step without changing the loop.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable, Sized
from contextlib import nullcontext
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from relpos.train import distributed as D
from relpos.train.callbacks import Callback, CallbackList, MetricsWriter
from relpos.train.checkpoint import (
    CheckpointManager,
    atomic_save,
    capture_rng,
    check_provenance,
    encoder_of,
    export_encoder,
    load_checkpoint,
    restore_rng,
)
from relpos.train.config import TrainConfig
from relpos.train.order import EpochSampler
from relpos.train.rundir import RunDir, open_run_dir
from relpos.train.schedule import amp_dtype, budget, checkpoint_bytes, lr_at, param_groups
from relpos.train.state import EarlyStopping, FitResult, LogWindow, Meter, RunState
from relpos.train.tasks import Task
from relpos.train.validation import ValFn, validate, weights_payload

log = logging.getLogger(__name__)

__all__ = [
    "EvalFn",
    "ValFn",
    "end_epoch",
    "finish",
    "fit",
    "forward_backward",
    "log_step",
    "optimizer_step",
    "restore",
    "save_checkpoint",
    "setup",
    "train_epoch",
    "validate",
    "wrap",
]

EvalFn = Callable[[nn.Module, int], dict[str, float]]


def _seed(seed: int) -> torch.Generator:
    """Seed torch, numpy and python with ``seed``; return the span generator seeded alike."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - user code may draw from it
    random.seed(seed)
    return torch.Generator().manual_seed(seed)


def setup(
    cfg: TrainConfig,
    model: nn.Module,
    task: Task,
    dataset: Dataset,
    out_dir: str | Path,
    *,
    groups: np.ndarray | None = None,
    resume: bool = True,
    force_new: bool = False,
) -> RunState:
    """Join the process group, check the budget, prepare ``out_dir`` (rank 0: lock it, decide
    where to start, write ``config.yaml``; see :func:`relpos.train.rundir.open_run_dir`), seed
    every RNG with ``seed + rank``, move the model to its device, let the task prepare it (e.g.
    freeze the encoder for a linear probe), and build optimiser, schedule and scaler."""
    rt, opt = cfg.runtime, cfg.optim
    dist = D.setup(rt.device)
    out = Path(out_dir)
    sampler = EpochSampler(
        len(cast(Sized, dataset)),
        seed=rt.seed,
        rank=dist.rank,
        world_size=dist.world_size,
        groups=groups,
    )
    steps_per_epoch, total_steps, warmup, epochs = budget(opt, sampler)
    span_gen = _seed(rt.seed + dist.rank)
    model.to(dist.device)
    prepare = getattr(task, "prepare", None)
    if prepare is not None:
        prepare(model)
    optimizer = torch.optim.AdamW(param_groups(model, opt.weight_decay), lr=opt.lr, betas=opt.betas)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_at(s, total_steps, warmup, opt.lr, opt.min_lr) / opt.lr
    )
    autocast = amp_dtype(rt.amp, dist.device)
    scaler = torch.amp.GradScaler(
        "cuda", enabled=autocast == torch.float16 and dist.device.type == "cuda"
    )
    checkpoints = CheckpointManager(out / "checkpoints", keep=rt.keep_checkpoints)
    run_dir = RunDir(out)
    if dist.is_main:  # the first write into out_dir, and nothing can fail after it here
        need = checkpoint_bytes(model) * (rt.keep_checkpoints + 2)
        run_dir = open_run_dir(
            cfg, out, checkpoints, need_bytes=need, resume=resume, force_new=force_new
        )
    D.barrier()
    return RunState(
        cfg=cfg,
        out_dir=out,
        dist=dist,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=scaler,
        span_gen=span_gen,
        sampler=sampler,
        checkpoints=checkpoints,
        amp_dtype=autocast,
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        num_epochs=epochs,
        run_dir=run_dir,
        metrics_records=run_dir.records,
    )


def restore(state: RunState) -> None:
    """Continue from the newest checkpoint that loads, if any (rank 0: the one
    :func:`setup` chose and checked): weights, optimiser, schedule, scaler, position and the RNG
    states of this rank."""
    run_dir = state.run_dir
    if run_dir is not None and run_dir.lock is not None:
        found, run_dir.found = run_dir.found, None
    else:  # RNG states must stay on the CPU
        found = state.checkpoints.latest(map_location="cpu")
    if found is None:
        return
    state.resumed_from, ck = found
    state.model.load_state_dict(ck["model"])
    state.optimizer.load_state_dict(ck["optimizer"])
    state.scheduler.load_state_dict(ck["scheduler"])
    state.scaler.load_state_dict(ck["scaler"])
    state.step, state.epoch, state.step_in_epoch = ck["step"], ck["epoch"], ck["step_in_epoch"]
    if state.early_stopping is not None and "early_stopping" in ck:
        state.early_stopping.load_state_dict(ck["early_stopping"])
    rngs = ck["rng"] if isinstance(ck["rng"], list) else [ck["rng"]]
    dist = state.dist
    if len(rngs) != dist.world_size:
        log.warning(
            "checkpoint written by %d process(es), resuming with %d: random streams differ",
            len(rngs),
            dist.world_size,
        )
    restore_rng(rngs[dist.rank % len(rngs)], state.span_gen)
    if dist.is_main:
        log.info("resumed from %s (step %d, epoch %d)", state.resumed_from, state.step, state.epoch)


def wrap(state: RunState) -> None:
    """Set ``state.train_model``: DDP under ``torchrun``; compile the transformer blocks in place
    with ``runtime.compile`` (the bulk of the compute, no data-dependent control flow, and
    parameter names, hence checkpoints, stay unchanged)."""
    model = state.model
    state.train_model = model
    if state.dist.distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [state.device.index] if state.device.type == "cuda" else None
        state.train_model = DDP(model, device_ids=ids)
    if state.cfg.runtime.compile:
        for block in encoder_of(model).blocks:
            block.compile()


def forward_backward(state: RunState, task: Task, batch: Any, sync: bool) -> dict[str, float]:
    """One micro-batch: forward under autocast, backward of ``loss / accum_steps`` (gradients
    synchronised across ranks only when ``sync``). Returns ``loss`` and the task's metrics."""
    model = state.train_model
    assert model is not None, "call wrap(state) first"
    no_sync = state.dist.distributed and not sync and hasattr(model, "no_sync")
    with model.no_sync() if no_sync else nullcontext():  # type: ignore[operator]
        amp = state.amp_dtype
        with torch.autocast(state.device.type, dtype=amp, enabled=amp is not None):
            loss, metrics = task(model, batch, state.span_gen)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"non-finite loss {float(loss)} at step {state.step} (epoch {state.epoch})"
            )
        state.scaler.scale(loss / state.cfg.optim.accum_steps).backward()
    return {
        k: float(v.detach() if isinstance(v, torch.Tensor) else v)
        for k, v in {"loss": loss, **metrics}.items()
    }


def optimizer_step(state: RunState) -> None:
    """Clip, step the optimiser through the scaler, advance the schedule and the position."""
    clip = state.cfg.optim.clip_grad
    if clip:
        state.scaler.unscale_(state.optimizer)
        torch.nn.utils.clip_grad_norm_(state.model.parameters(), clip)
    state.scaler.step(state.optimizer)
    state.scaler.update()
    state.optimizer.zero_grad(set_to_none=True)
    state.scheduler.step()
    state.step += 1
    state.step_in_epoch += 1


def _log_due(state: RunState) -> bool:
    return (
        state.step % state.cfg.runtime.log_every == 0
        or state.step_in_epoch == state.steps_per_epoch
        or state.step == state.total_steps
    )


def log_step(state: RunState, window: LogWindow, callbacks: Callback) -> dict[str, float]:
    """Average the window's metrics over ranks, sum the throughput, and (rank 0) hand the
    record to the callbacks (``metrics.jsonl`` among them). Returns the averaged metrics."""
    elapsed = time.perf_counter() - window.started
    local_rate = window.samples / max(elapsed, 1e-9)
    record = D.all_reduce_mean(window.meter.mean(), state.device)
    rate = D.all_reduce_sum(local_rate, state.device)
    state.throughput.append(rate)
    state.last = {**record, "samples_per_s": rate}
    if state.dist.is_main:
        entry = {
            "step": state.step,
            "epoch": state.epoch,
            "lr": state.scheduler.get_last_lr()[0],
            **state.last,
            "time": time.time(),
        }
        callbacks.on_log(state, entry)
    return record


def save_checkpoint(state: RunState, callbacks: Callback) -> Path | None:
    """Gather every rank's RNG states (a collective: all ranks call it); rank 0 writes
    ``checkpoints/ckpt-<step>.pt`` and returns its path, the other ranks ``None``."""
    rngs: Any = capture_rng(state.span_gen)
    if state.dist.distributed:
        gathered: list[Any] = [None] * state.dist.world_size
        torch.distributed.all_gather_object(gathered, rngs)
        rngs = gathered
    if not state.dist.is_main:
        return None
    path = state.checkpoints.save(state.checkpoint_state(rngs), state.step)
    callbacks.on_checkpoint(state, path)
    return path


def _samples(batch: Any) -> int:
    return len(batch[0]) if isinstance(batch, (tuple, list)) else len(batch)


def train_epoch(
    state: RunState,
    task: Task,
    dataset: Dataset,
    callbacks: Callback,
    collate_fn: Callable[[Any], Any] | None = None,
    val_fn: ValFn | None = None,
) -> None:
    """Train from ``state``'s position to the end of its epoch (or of the step budget), logging,
    validating (``early_stopping.every``) and checkpointing on schedule; stop early when
    early stopping says so."""
    cfg, rt = state.cfg, state.cfg.runtime
    state.sampler.set_epoch(state.epoch, start=state.step_in_epoch * state.per_step)
    loader = DataLoader(
        dataset,
        batch_size=cfg.optim.batch_size,
        sampler=state.sampler,
        drop_last=True,
        num_workers=rt.num_workers,
        collate_fn=collate_fn or getattr(dataset, "collate_fn", None),
        pin_memory=state.device.type == "cuda",
        persistent_workers=False,
    )
    bar = tqdm(
        total=state.steps_per_epoch,
        initial=state.step_in_epoch,
        desc=f"{cfg.task} epoch {state.epoch + 1}/{state.epochs}",
        disable=not (rt.progress and state.dist.is_main),
        leave=True,  # one finished bar per epoch stays on screen
        dynamic_ncols=True,
    )
    state.model.train()
    window, step_meter = LogWindow(), Meter()
    for micro, batch in enumerate(loader):
        sync = (micro + 1) % cfg.optim.accum_steps == 0
        values = forward_backward(state, task, batch, sync)
        window.meter.add(values)
        step_meter.add(values)
        window.samples += _samples(batch)
        if not sync:
            continue
        optimizer_step(state)
        bar.update(1)
        state.step_metrics, step_meter = step_meter.mean(), Meter()
        callbacks.on_step_end(state, state.step_metrics)
        if _log_due(state):
            record = log_step(state, window, callbacks)
            if state.dist.is_main:
                bar.set_postfix(
                    loss=f"{record['loss']:.4f}", sps=f"{state.last['samples_per_s']:.0f}"
                )
            window = LogWindow()
        every = state.early_stopping.cfg.every if state.early_stopping is not None else None
        if val_fn is not None and every and state.step % every == 0:
            validate(state, val_fn, callbacks)
        ended = state.done or state.stopped
        if rt.checkpoint_every and state.step % rt.checkpoint_every == 0 and not ended:
            save_checkpoint(state, callbacks)
        if ended or state.epoch_complete:
            break
    bar.close()


def end_epoch(
    state: RunState,
    callbacks: Callback,
    eval_fn: EvalFn | None = None,
    val_fn: ValFn | None = None,
) -> None:
    """Close a pass of the epoch loop: advance the epoch if it was completed, evaluate
    (``eval_fn`` on rank 0, logged as a ``split: "eval"`` record), validate (``val_fn``, unless
    early stopping validates every ``every`` steps instead), checkpoint."""
    if state.epoch_complete:
        state.epoch += 1
        state.step_in_epoch = 0
    if eval_fn is not None and state.dist.is_main:
        state.model.eval()
        ev = eval_fn(state.model, state.epoch)
        record = {"step": state.step, "epoch": state.epoch, "split": "eval", **ev}
        callbacks.on_log(state, {**record, "time": time.time()})
    es = state.early_stopping
    if val_fn is not None and not state.stopped and (es is None or es.cfg.every is None):
        validate(state, val_fn, callbacks)
    callbacks.on_epoch_end(state)
    save_checkpoint(state, callbacks)


def finish(state: RunState, callbacks: Callback) -> FitResult:
    """Rank 0 writes ``final.pt`` and the encoder export; every rank returns the paths once
    they exist. With early stopping, every rank first loads the best weights (``best.pt``)."""
    out = state.out_dir
    final, encoder_path = out / "final.pt", out / "encoder.safetensors"
    es = state.early_stopping
    if es is not None and es.best_step is not None:
        D.barrier()
        best = load_checkpoint(out / "best.pt", map_location=state.device)
        state.model.load_state_dict(best["model"])
        if state.dist.is_main:
            log.info(
                "kept the best weights: step %d, %s %.6g", best["step"], es.cfg.metric, es.best
            )
    if state.dist.is_main:
        payload = weights_payload(state)
        if es is not None and es.best_step is not None:
            payload["step"] = es.best_step
        atomic_save(payload, final)
        extra: dict[str, Any] = {"modality": state.cfg.modality.model_dump()}
        if state.provenance:
            extra["provenance"] = state.provenance
        export_encoder(state.model, encoder_path, extra=extra)
    D.barrier()
    result = FitResult(
        out_dir=out,
        steps=state.step,
        epochs=state.epoch,
        final_checkpoint=final,
        encoder_path=encoder_path,
        last_metrics=state.last,
        samples_per_s=float(np.median(state.throughput)) if state.throughput else float("nan"),
        resumed_from=state.resumed_from,
        best_step=None if es is None else es.best_step,
        best_metric=None if es is None else es.best,
    )
    callbacks.on_fit_end(state, result)
    return result


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
    callbacks: Iterable[Callback] = (),
    val_fn: ValFn | None = None,
    force_new: bool = False,
    provenance: dict[str, Any] | None = None,
) -> FitResult:
    """Train ``model`` on ``dataset`` with ``task``; see the module docstring for the outputs.

    Args:
        task: a :class:`~relpos.train.tasks.Task`, or any callable
            ``task(model, batch, generator) -> (loss, metrics)``; its ``prepare(model)``, if it
            has one, runs once the model is on its device.
        groups: optional ``(len(dataset),)`` record id per example, for contiguous chunked
            reads and per-record sharding under DDP.
        resume: continue from ``out_dir/checkpoints`` if it holds a checkpoint (``False``:
            refuse a directory that holds checkpoints).
        force_new: start over in place: remove this run's checkpoints, logs and exports
            (:func:`relpos.train.rundir.clear_run`) instead of resuming.
        provenance: a JSON-able dict stored in every checkpoint, ``final.pt``, ``best.pt``
            and ``encoder.json`` (read back with :func:`relpos.train.checkpoint.read_provenance`).
        eval_fn: ``eval_fn(model, epoch) -> metrics`` called on rank 0 after every epoch.
        val_fn: ``val_fn(model) -> metrics`` on a validation set, run by :func:`validate` at
            each epoch end, or every ``finetune.early_stopping.every`` steps. Required by
            ``finetune.early_stopping`` (ignored when pretraining), which stops on one of its
            metrics and keeps the best weights.
        collate_fn: batch collation (default: the dataset's ``collate_fn`` attribute, if any).
        callbacks: :class:`~relpos.train.callbacks.Callback` objects called on rank 0, after
            the built-in ``metrics.jsonl`` writer.
    """
    es = cfg.finetune.early_stopping if cfg.task == "finetune" else None
    if es is not None and val_fn is None:
        raise ValueError(
            "finetune.early_stopping needs a validation set: pass val_dataset= to "
            "relpos.train.api.train (or val_fn= to fit)"
        )
    prov = check_provenance(provenance)
    state = setup(
        cfg, model, task, dataset, out_dir, groups=groups, resume=resume, force_new=force_new
    )
    try:
        state.provenance = prov
        state.early_stopping = EarlyStopping(es) if es is not None else None
        if resume:
            restore(state)
        wrap(state)
        main = state.dist.is_main
        hooks = CallbackList(
            [MetricsWriter(state.out_dir / "metrics.jsonl"), *callbacks] if main else []
        )
        hooks.on_fit_start(state)
        while not state.finished:
            train_epoch(state, task, dataset, hooks, collate_fn, val_fn)
            end_epoch(state, hooks, eval_fn, val_fn)
        return finish(state, hooks)
    finally:
        if state.run_dir is not None:
            state.run_dir.release()
