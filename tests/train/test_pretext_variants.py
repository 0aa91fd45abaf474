"""Every pretext variant of the sleep ablation learns where its target is identifiable by
construction: the scored component's held-out error falls clearly below predicting nothing.

Signals: chirps (the local frequency rises along the signal, so a window's content tells where
it lies: Δt is identifiable) and fixed-frequency sinusoids (a rhythm fixes the time scale, so
the size of a window is identifiable from its content: the log size ratio is)."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch.utils.data import TensorDataset

from relpos.train.config import TrainConfig, build_model, merge
from relpos.train.pretext_eval import pretext_scores
from relpos.train.tasks import PretrainTask

EXTENT, TOKEN = 600, 20


def chirps(n: int, seed: int) -> torch.Tensor:
    """``(n, 1, EXTENT)`` chirps from 0.02 to 0.2 cycles per sample, random phase and gain."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(EXTENT, dtype=torch.float32)
    phase = 2 * math.pi * (0.02 * t + 0.18 * t**2 / (2 * EXTENT))
    x = torch.sin(phase + 2 * math.pi * torch.rand(n, 1, 1, generator=g))
    return x * (0.5 + torch.rand(n, 1, 1, generator=g))


def sinusoids(n: int, seed: int) -> torch.Tensor:
    """``(n, 1, EXTENT)`` sinusoids at 0.1 cycles per sample with a little noise."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(EXTENT, dtype=torch.float32)
    x = torch.sin(2 * math.pi * 0.1 * t + 2 * math.pi * torch.rand(n, 1, 1, generator=g))
    return x + 0.1 * torch.randn(n, 1, EXTENT, generator=g)


BASE: dict[str, Any] = {
    "modality": {"name": "signal", "channels": 1, "extent": [EXTENT], "token_shape": [TOKEN]},
    "encoder": {"preset": "vit_eeg_mini", "dim": 32, "depth": 1, "heads": 2},
    "pretext": {"sampler": {"kind": "windows", "length": TOKEN, "count": 16}, "num_pairs": 32},
}
RHYTHM: dict[str, Any] = {
    "modality": {"tokenizer": {"oversample": 4, "band": 6.0, "standardize": True}},
    "pretext": {
        "sampler": {"kind": "windows", "length": TOKEN, "count": 16, "scale": [0.5, 2.0]},
        "scale": "log",
        "normalize": True,
    },
}
DROP: dict[str, Any] = {"pretext": {"pos_embed": "sincos", "pos_drop": 0.2, "pos_unit": TOKEN}}

# (variant, overrides, signal, the component it is judged on)
VARIANTS = [
    ("part-1s", {}, chirps, "t"),
    ("part-paper", DROP, chirps, "t@dropped"),
    ("part-droppos", merge(DROP, {"pretext": {"score": "dropped_target"}}), chirps, "t@dropped"),
    ("part-conv", {"encoder": {"embed": "conv"}}, chirps, "t"),
    # the NLL learns its variance first: on raw Δt (variance ~150) it needs the weights
    ("part-nll", {"pretext": {"loss": "gaussian_nll", "normalize": True}}, chirps, "t"),
    ("part-rhythm", RHYTHM, sinusoids, "s_t"),
    ("part-rhythm-nll", merge(RHYTHM, {"pretext": {"loss": "gaussian_nll"}}), sinusoids, "s_t"),
]


@pytest.mark.parametrize("name,overrides,signal,component", VARIANTS, ids=[v[0] for v in VARIANTS])
def test_variant_learns_its_identifiable_target(name, overrides, signal, component):
    cfg = TrainConfig.model_validate(merge(BASE, overrides))
    torch.manual_seed(0)
    model = build_model(cfg)
    task = PretrainTask(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    x = signal(512, seed=1)
    for step in range(120):
        batch = x[(step * 16) % 512 :][:16]
        loss, _ = task(model, [batch], gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
    scores = pretext_scores(model, cfg, TensorDataset(signal(64, seed=2)), batch_size=32)
    assert scores["ratio"][component] < 0.5, (name, scores["ratio"])
