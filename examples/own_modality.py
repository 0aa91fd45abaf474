"""Pretrain PART on a modality of your own, without touching relpos.

The toy input is a bank of chirps, ``(N, 1, 512)``: each example's frequency rises along time,
so where a window sits can be read from its content, and PART's relative-position pretext is
learnable by construction. The script registers a ``chirp`` modality and a data source, trains
from Python with ``relpos.train``, and prints the held-out pretext error against the
predict-zero baseline. The same registrations make ``relpos pretrain --plugin own_modality
--modality chirp --out runs/chirp`` work on the command line.

    python examples/own_modality.py --steps 200
"""

from __future__ import annotations

import argparse
import math
import tempfile
from contextlib import nullcontext

import torch
from torch.utils.data import TensorDataset

import relpos
from relpos.core.modality import Modality

LENGTH, WINDOW = 512, 32


def chirps(n: int, seed: int = 0) -> torch.Tensor:
    """``(n, 1, LENGTH)`` chirps with random start frequency and phase."""
    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 1, LENGTH)
    f0 = 2 + 4 * torch.rand(n, 1, generator=g)
    phase = 2 * math.pi * torch.rand(n, 1, generator=g)
    x = torch.sin(phase + 2 * math.pi * (f0 * t + 20 * t**2))
    return x.unsqueeze(1)


def chirp_modality(channels: int = 1, window: int = WINDOW, count: int = 16) -> Modality:
    """1-D windows of ``window`` samples at random positions; on-grid windows for finetuning."""
    return Modality(
        "chirp",
        channels,
        (window,),
        relpos.RandomWindows(window, count),
        relpos.Grid((window,)),
        data_source="chirps",
    )


def chirp_source(path: str | None, split: str, labelled: bool, **kwargs: object) -> TensorDataset:
    """A data source: ``path`` is ignored, the split picks the seed."""
    return TensorDataset(chirps(512, seed=0 if split == "pretrain" else 1))


relpos.register_modality("chirp", chirp_modality)
relpos.register_data_source("chirps", chirp_source)


def main(steps: int = 200, out: str | None = None) -> dict[str, float]:
    cfg = relpos.TrainConfig.model_validate(
        {
            "modality": {
                "name": "chirp",
                "channels": 1,
                "extent": [LENGTH],
                "token_shape": [WINDOW],
            },
            "encoder": {"preset": "vit_eeg_mini", "dim": 64, "depth": 2, "heads": 4},
            "pretext": {"sampler": {"kind": "modality"}, "num_pairs": 64},
            "optim": {"epochs": 1000, "max_steps": steps, "batch_size": 32, "lr": 1e-3},
            "runtime": {"progress": False, "checkpoint_every": 0, "log_every": 50},
        }
    )
    with tempfile.TemporaryDirectory() if out is None else nullcontext(out) as run_dir:
        model, result = relpos.train(cfg, chirp_source(None, "pretrain", False), run_dir)
    model.eval()
    held_out = chirps(256, seed=1)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        out = model.forward_raw(held_out, cfg.pretext_sampler(), (WINDOW,), generator=g)
    mse, zero = float(out.errors["t"]), float(out.errors["baseline"])
    print(f"{result.steps} steps: held-out pretext MSE {mse:.3f} vs predict-zero {zero:.3f}")
    return {"mse": mse, "mse_zero": zero}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--out", default=None, help="keep the run directory here")
    args = parser.parse_args()
    main(args.steps, args.out)
