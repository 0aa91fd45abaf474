"""The public training API: ``train`` (build the model of a config and run the loop) and
``predict`` (batched class probabilities), ``validation_metrics`` (what early stopping watches),
plus ``build_finetune_model``."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from relpos.nn.vit import ViT
from relpos.train.callbacks import Callback
from relpos.train.checkpoint import (
    check_provenance,
    load_encoder,
    load_encoder_weights,
    read_provenance,
)
from relpos.train.config import TrainConfig, build_model
from relpos.train.loop import EvalFn, ValFn, fit
from relpos.train.metrics import classification_report
from relpos.train.state import FitResult
from relpos.train.tasks import Augment, FinetuneTask, Task, make_task, split_batch

log = logging.getLogger(__name__)

__all__ = ["build_finetune_model", "predict", "train", "validation_metrics"]


def build_finetune_model(cfg: TrainConfig) -> ViT:
    """The finetuning classifier of ``cfg``, initialised from ``cfg.finetune.init`` when set
    (a PART/finetune checkpoint or an ``encoder.safetensors`` export)."""
    if cfg.task != "finetune":
        raise ValueError("build_finetune_model needs a config with task='finetune'")
    model = build_model(cfg)
    assert isinstance(model, ViT)
    if cfg.finetune.init:
        pretrained = load_encoder(cfg.finetune.init)
        load_encoder_weights(model, pretrained.state_dict(), source=cfg.finetune.init)
        log.info("initialised the encoder from %s", cfg.finetune.init)
    return model


def train(
    cfg: TrainConfig,
    dataset: Dataset,
    out_dir: str | Path,
    *,
    groups: np.ndarray | None = None,
    class_weights: torch.Tensor | None = None,
    augment: Augment | None = None,
    eval_fn: EvalFn | None = None,
    resume: bool = True,
    callbacks: Iterable[Callback] = (),
    val_dataset: Dataset | None = None,
    force_new: bool = False,
    provenance: dict[str, Any] | None = None,
) -> tuple[nn.Module, FitResult]:
    """Build the model of ``cfg`` and run the training loop on ``dataset``.

    See ``relpos.train.loop.fit`` for the arguments and outputs; ``callbacks``
    (``relpos.train.callbacks.Callback``) observe the run on rank 0. ``val_dataset``
    (finetuning only: labelled ``(x, y, [group])``) is scored with :func:`validation_metrics`
    at each epoch end (``split: "val"`` records), or as ``finetune.early_stopping`` says.
    ``force_new`` starts over in place instead of resuming. ``provenance`` (a JSON-able dict,
    e.g. the subjects trained on) is stored in every checkpoint, ``final.pt`` and
    ``encoder.json``; when finetuning from ``finetune.init``, that file's own provenance is
    carried along under ``provenance["init"]``.
    """
    if val_dataset is not None and cfg.task != "finetune":
        raise ValueError("val_dataset is only used for finetuning (task='finetune')")
    prov = check_provenance(provenance)
    torch.manual_seed(cfg.runtime.seed)
    task: Task
    val_fn: ValFn | None = None
    if val_dataset is not None:
        vset = val_dataset

        def val_fn(m: nn.Module) -> dict[str, float]:
            return validation_metrics(m, cfg, vset, batch_size=cfg.optim.batch_size)

    if cfg.task == "finetune":
        model: nn.Module = build_finetune_model(cfg)
        task = FinetuneTask(cfg, class_weights=class_weights, augment=augment)
        if cfg.finetune.init:
            prov["init"] = read_provenance(cfg.finetune.init)
    else:
        model = build_model(cfg)
        task = make_task(cfg, augment=augment)
    result = fit(
        cfg,
        model,
        task,
        dataset,
        out_dir,
        groups=groups,
        resume=resume,
        eval_fn=eval_fn,
        callbacks=callbacks,
        val_fn=val_fn,
        force_new=force_new,
        provenance=prov,
    )
    return model, result


@torch.no_grad()
def predict(
    model: nn.Module,
    cfg: TrainConfig,
    dataset: Dataset,
    *,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    num_workers: int = 0,
    progress: bool | str | None = None,
) -> dict[str, np.ndarray]:
    """Class probabilities of a finetuned classifier over a dataset of ``(x, y, [group])``.

    Returns ``{"prob": (n, K), "pred": (n,), "label": (n,), "group": (n,)}``. ``progress``
    shows a bar over the batches (a string: its label); it stays when done.
    """
    device = torch.device(device or next(model.parameters()).device)
    model = model.to(device).eval()
    task = FinetuneTask(cfg)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=getattr(dataset, "collate_fn", None),
    )
    probs, labels, groups = [], [], []
    bar = tqdm(
        loader,
        desc=progress if isinstance(progress, str) else "predict",
        unit="batch",
        disable=not progress,
        dynamic_ncols=True,
    )
    for batch in bar:
        x, y = split_batch(batch)
        x = task.modality.prepare(x.to(device).float())
        logits = task.logits(model, x)
        probs.append(logits.float().softmax(-1).cpu())
        labels.append(y.cpu() if y is not None else torch.full((x.shape[0],), -1))
        g = batch[2] if isinstance(batch, (tuple, list)) and len(batch) > 2 else None
        groups.append(g.cpu() if isinstance(g, torch.Tensor) else torch.full((x.shape[0],), -1))
    prob = torch.cat(probs).numpy()
    return {
        "prob": prob,
        "pred": prob.argmax(-1),
        "label": torch.cat(labels).numpy(),
        "group": torch.cat(groups).numpy(),
    }


def validation_metrics(
    model: nn.Module, cfg: TrainConfig, dataset: Dataset, *, batch_size: int = 256
) -> dict[str, float]:
    """A finetuned classifier on a labelled dataset of ``(x, y, [group])``: ``loss`` (mean
    cross-entropy, no class weights or smoothing), ``accuracy``, ``kappa`` (Cohen's) and
    ``macro_f1`` (classes ``0 .. num_classes - 1``). Examples labelled ``-1`` are skipped."""
    out = predict(model, cfg, dataset, batch_size=batch_size)
    keep = out["label"] >= 0
    if not keep.any():
        raise ValueError("the validation set holds no labelled examples")
    y = out["label"][keep].astype(np.int64)
    p_true = out["prob"][keep][np.arange(len(y)), y].astype(np.float64)
    names = [str(k) for k in range(cfg.finetune.num_classes)]
    report = classification_report(y, out["pred"][keep], names)
    return {
        "loss": float(-np.log(np.clip(p_true, 1e-12, None)).mean()),
        "accuracy": float(report["accuracy"]),
        "kappa": float(report["kappa"]),
        "macro_f1": float(report["macro_f1"]),
    }
