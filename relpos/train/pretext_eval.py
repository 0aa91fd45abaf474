"""Held-out pretext error: how far a pretrained model's pretext beats chance on data it never
saw (PART's relative positions against predicting zero; MAE's reconstruction against the mean;
MP3's and DropPos' position accuracy against 1/N; RP's close/far accuracy against 0.5).

:func:`pretext_scores` runs the pretraining task in eval mode over a held-out dataset (or a
seeded subset of it), with one seeded generator for the spans, pairs and dropped positions, so
every model evaluated with the same sampler, seed and data sees the same draws. Its errors are
those of :attr:`relpos.core.part.PARTOutput.errors`, averaged over examples; for each target
component (``"t"``, ``"s_t"``, ``"y"``, ...) :func:`pretext_ratios` divides the MSE by the MSE
of the constant no-information prediction (``zero_<name>``): 1.0 means nothing was learned.
Components scored on the pairs whose target lost its position carry the suffix ``@dropped``.
:func:`headline` picks a method's own pretext metric and its chance level from the errors.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from relpos.train.config import TrainConfig
from relpos.train.tasks import PretrainTask, split_batch

__all__ = ["HEADLINES", "headline", "mean_headline", "pretext_ratios", "pretext_scores"]

#: the headline pretext metrics, in order of preference: (key, chance key, name, chance name,
#: higher is better)
HEADLINES: tuple[tuple[str, str, str, str, bool], ...] = (
    ("recon", "zero_recon", "reconstruction MSE", "mean", False),
    ("pos_acc", "chance_pos_acc", "position accuracy", "1/N", True),
    ("rp_acc", "chance_rp_acc", "close/far accuracy", "majority", True),
    ("t@dropped", "zero_t@dropped", "Δt MSE (dropped)", "zero", False),
    ("euclidean", "zero_euclidean", "Euclidean error", "zero", False),
)


def headline(errors: dict[str, float]) -> dict[str, Any] | None:
    """A pretext's own metric and its chance level: ``{"key", "name", "value", "chance",
    "chance_name", "higher_better"}``, for the first of :data:`HEADLINES` in ``errors`` (None
    when none is)."""
    for key, chance, name, chance_name, higher in HEADLINES:
        if key in errors and chance in errors:
            return {
                "key": key, "name": name, "value": float(errors[key]),
                "chance": float(errors[chance]), "chance_name": chance_name,
                "higher_better": higher,
            }  # fmt: skip
    return None


def mean_headline(heads: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Several runs' :func:`headline` (seeds of one method): the value's mean and sd
    (``value_sd``) and the mean chance level; None when there is none."""
    if not heads:
        return None
    values = [h["value"] for h in heads]
    mean = sum(values) / len(values)
    sd = (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5
    chance = sum(h["chance"] for h in heads) / len(heads)
    return {**heads[0], "value": mean, "value_sd": sd, "chance": chance}


def pretext_ratios(errors: dict[str, float]) -> dict[str, float]:
    """``{name: errors[name] / errors["zero_" + name]}`` for every component that has a
    baseline (``"t"``, ``"t@dropped"``, ``"euclidean"``, ...)."""
    out = {}
    for key, zero in errors.items():
        if key.startswith("zero_"):
            name = key[len("zero_") :]
            if name in errors and zero > 0:
                out[name] = errors[name] / zero
    return out


@torch.no_grad()
def pretext_scores(
    model: nn.Module,
    cfg: TrainConfig,
    dataset: Dataset,
    *,
    batch_size: int = 256,
    max_examples: int | None = None,
    seed: int = 0,
    subset_seed: int | None = None,
) -> dict[str, Any]:
    """Mean pretext errors (and loss) of a pretrained ``model`` over a held-out ``dataset``.

    Args:
        model: the pretraining model built for ``cfg`` (PART, MAE, ...), on its device.
        cfg: its pretraining config (sampler, tokenizer, modality transform).
        dataset: held-out examples (``x`` or ``(x, y, ...)`` items).
        batch_size: examples per forward pass.
        max_examples: score a seeded random subset of this many examples (in dataset order);
            ``None``: every example.
        seed: seeds the generator of the spans, pairs and dropped positions.
        subset_seed: seeds the choice of the subset (default: ``seed``).

    Returns:
        ``{"errors": {key: example-weighted mean}, "ratio": pretext_ratios(errors),
        "examples": n}``.
    """
    if cfg.task != "pretrain":
        raise ValueError("pretext_scores needs a pretraining config (task='pretrain')")
    n = len(dataset)  # type: ignore[arg-type]
    if max_examples is not None and max_examples < n:
        pick = torch.Generator().manual_seed(seed if subset_seed is None else subset_seed)
        chosen = torch.randperm(n, generator=pick)[:max_examples].sort().values
        dataset, n = Subset(dataset, chosen.tolist()), max_examples
    if n == 0:
        raise ValueError("pretext_scores: the held-out dataset is empty")
    was_training = model.training
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    task = PretrainTask(cfg)
    sums: dict[str, float] = defaultdict(float)
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        loss, errors = task(model, batch, gen)
        size = split_batch(batch)[0].shape[0]
        for key, value in {**errors, "loss": loss}.items():
            sums[key] += float(value) * size
    model.train(was_training)
    mean = {k: v / n for k, v in sums.items()}
    return {"errors": mean, "ratio": pretext_ratios(mean), "examples": n}
