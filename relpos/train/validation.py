"""Validation during finetuning: score a validation set on rank 0, log it, and drive early
stopping (the best value, ``best.pt``, the count of evaluations without improvement)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from relpos.train.callbacks import Callback
from relpos.train.checkpoint import atomic_save
from relpos.train.state import RunState

__all__ = ["ValFn", "validate", "weights_payload"]

#: ``val_fn(model) -> metrics`` (``loss``, ``accuracy``, ``kappa``, ``macro_f1``, ...)
ValFn = Callable[[nn.Module], dict[str, float]]


def weights_payload(state: RunState) -> dict[str, Any]:
    """The ``final.pt``/``best.pt`` payload: config, model weights, step (and the run's
    ``provenance`` when it has one)."""
    payload: dict[str, Any] = {
        "config": state.cfg.model_dump(mode="json"),
        "model": state.model.state_dict(),
        "step": state.step,
    }
    if state.provenance:
        payload["provenance"] = state.provenance
    return payload


def validate(state: RunState, val_fn: ValFn, callbacks: Callback) -> None:
    """Rank 0 runs ``val_fn`` (eval mode, no gradients, the training RNG streams untouched) and
    logs a ``split: "val"`` record. With early stopping it updates the best value (writing
    ``best.pt`` atomically on improvement) and the count of evaluations without one, then
    broadcasts that progress to every rank (a collective: all ranks call it)."""
    es = state.early_stopping
    if state.dist.is_main:
        training = state.model.training
        state.model.eval()
        cuda = [state.device.index or 0] if state.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda), torch.no_grad():
            metrics = {k: float(v) for k, v in val_fn(state.model).items()}
        state.model.train(training)
        record: dict[str, Any] = {"step": state.step, "epoch": state.epoch, "split": "val"}
        record.update(metrics)
        if es is not None:
            if es.cfg.metric not in metrics:
                raise KeyError(
                    f"finetune.early_stopping.metric={es.cfg.metric!r} is not a validation "
                    f"metric; the validation function returns {sorted(metrics)}"
                )
            if es.update(metrics[es.cfg.metric], state.step):
                atomic_save(weights_payload(state), state.out_dir / "best.pt")
            record.update(best=es.best, best_step=es.best_step, bad_evals=es.bad_evals)
        callbacks.on_log(state, {**record, "time": time.time()})
    if es is not None and state.dist.distributed:
        es.broadcast(state.device)
