"""Add a relative head and a pretraining method of your own, without touching relpos.

Two registrations, then training from Python on toy chirps ``(N, 1, 512)`` (each example's
frequency rises along time, so where a window sits can be read from its content):

- a relative head, ``difference``: each token gets a coordinate of its own and a pair's
  prediction is their difference (antisymmetric by construction: swapping the pair flips the
  sign). ``pretext.head: difference`` makes PART use it;
- a pretraining method, ``order``: which of two windows comes first, a logistic loss on the
  sign of Δt, built on the same encoder and span samplers as PART. ``pretext.method: order``
  trains it; its options (``pairs``) are validated like any method's.

The script prints the held-out pretext scores against chance. The same registrations make the
command line work: ``relpos pretrain --plugin own_method --method order ...``.

    python examples/own_method.py --steps 200
"""

import argparse
import math
import tempfile
from typing import Annotated, Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn
from torch.utils.data import TensorDataset

import relpos
from relpos.core.pretext import PretextOutput, as_encoder
from relpos.core.spans import Spans, gather_tokens
from relpos.train.methods import Method, NoOptions, get_method, register_method
from relpos.train.tasks import PretrainTask

LENGTH, WINDOW = 512, 32


def chirps(n: int, seed: int = 0) -> Tensor:
    """``(n, 1, LENGTH)`` chirps with random start frequency and phase."""
    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 1, LENGTH)
    f0 = 2 + 4 * torch.rand(n, 1, generator=g)
    phase = 2 * math.pi * torch.rand(n, 1, generator=g)
    return torch.sin(phase + 2 * math.pi * (f0 * t + 20 * t**2)).unsqueeze(1)


# ---------------------------------------------------------------------- a relative head
class DifferenceHead(relpos.RelativeHead):
    """``pred = g(x_tgt) - g(x_ref)``: an MLP ``g`` gives each token a coordinate.

    Every head takes ``features (B, N, d)`` and ``pairs (B, M, 2)`` and returns
    ``(B, M, out_dim)``; ``dim`` and ``out_dim`` come from relpos, other arguments from
    ``pretext.head_kwargs``.
    """

    def __init__(self, dim: int, out_dim: int = 1, hidden: int = 64) -> None:
        super().__init__()
        self.out_dim = out_dim
        self.g = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU(),
                               nn.Linear(hidden, out_dim))  # fmt: skip

    def forward(self, features: Tensor, pairs: Tensor) -> Tensor:
        coord = self.g(features)  # (B, N, out_dim)
        return gather_tokens(coord, pairs[..., 1]) - gather_tokens(coord, pairs[..., 0])


relpos.register_head("difference", DifferenceHead)


# ---------------------------------------------------------------------- a pretraining method
class OrderOptions(NoOptions):
    """``pretext.options`` of the order method (bounded, unknown keys refused)."""

    pairs: Annotated[int, Field(ge=1, le=4096)] = 64


class TemporalOrder(nn.Module):
    """Which of two windows comes first: ``Linear(concat(h_a, h_b)) -> logit(b after a)``.

    A pretraining model takes ``tokens (B, N, ...)``, their ``spans`` and a ``generator`` and
    returns a :class:`~relpos.core.pretext.PretextOutput` (a loss and detached metrics).
    """

    def __init__(self, encoder: nn.Module, pairs: int) -> None:
        super().__init__()
        self.encoder, self.pairs = encoder, pairs
        self.head = nn.Linear(2 * as_encoder(encoder).dim, 1)

    def forward(
        self, tokens: Tensor, spans: Spans, *, generator: torch.Generator | None = None
    ) -> PretextOutput:
        feats = as_encoder(self.encoder).forward_features(tokens, spans)
        feats = feats[:, getattr(self.encoder, "num_prefix_tokens", 0) :]  # (B, N, d)
        b, n = feats.shape[:2]
        pairs = relpos.sample_pairs(b, n, self.pairs, generator=generator, device=feats.device)
        a, c = pairs[..., 0], pairs[..., 1]
        logit = self.head(torch.cat([gather_tokens(feats, a), gather_tokens(feats, c)], -1))
        start = spans.centre[..., -1]  # (B, N): position along the last axis
        later = (torch.gather(start, 1, c) > torch.gather(start, 1, a)).float()
        loss = F.binary_cross_entropy_with_logits(logit.squeeze(-1), later)
        acc = ((logit.squeeze(-1) > 0).float() == later).float().mean()
        return PretextOutput(
            loss, {"order_acc": acc.detach(), "chance_order_acc": acc.new_tensor(0.5)}
        )


def build_order(cfg: relpos.TrainConfig, encoder: nn.Module) -> nn.Module:
    """A method's builder: the model from the run's config and its encoder."""
    options = get_method("order").parse_options(cfg.pretext.options)
    assert isinstance(options, OrderOptions)
    return TemporalOrder(encoder, options.pairs)


# sampler="pretext": it draws the run's own off-grid spans (as PART does)
register_method(Method("order", "temporal order of two windows", short="order",
                       sampler="pretext", build=build_order, options=OrderOptions))  # fmt: skip


# ---------------------------------------------------------------------- training both
def config(steps: int, depth: int = 2, **pretext: Any) -> relpos.TrainConfig:
    return relpos.TrainConfig.model_validate({
        "modality": {"name": "signal", "channels": 1, "extent": [LENGTH], "token_shape": [WINDOW]},
        "encoder": {"preset": "vit_eeg_mini", "dim": 64, "depth": depth, "heads": 4},
        "pretext": {"sampler": {"kind": "windows", "length": WINDOW, "count": 16}, **pretext},
        "optim": {"epochs": 1000, "max_steps": steps, "batch_size": 32, "lr": 1e-3},
        "runtime": {"progress": False, "checkpoint_every": 0, "log_every": 50, "device": "cpu"},
    })  # fmt: skip


@torch.no_grad()
def held_out(model: nn.Module, cfg: relpos.TrainConfig) -> dict[str, float]:
    """The pretext's metrics on unseen chirps, with seeded spans and pairs."""
    model.eval()
    task, g = PretrainTask(cfg), torch.Generator().manual_seed(0)
    _, errors = task(model, (chirps(256, seed=1),), g)
    return {k: float(v) for k, v in errors.items()}


def main(steps: int = 200, out: str | None = None, depth: int = 2) -> dict[str, float]:
    data = TensorDataset(chirps(512, seed=0))
    runs = {
        "part": config(steps, depth, head="difference", head_kwargs={"hidden": 64}, num_pairs=64),
        "order": config(steps, depth, method="order", options={"pairs": 64}),
    }
    scores: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, cfg in runs.items():
            model, result = relpos.train(cfg, data, f"{out or tmp}/{name}")
            errors = held_out(model, cfg)
            if name == "part":
                scores.update(mse=errors["t"], mse_zero=errors["baseline"])
                print(f"PART, difference head, {result.steps} steps: held-out Δt MSE "
                      f"{errors['t']:.3f} vs predict-zero {errors['baseline']:.3f}")  # fmt: skip
            else:
                scores.update(order_acc=errors["order_acc"])
                print(f"order method, {result.steps} steps: held-out accuracy "
                      f"{errors['order_acc']:.3f} vs chance 0.5")  # fmt: skip
    return scores


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--out", default=None, help="keep the run directories here")
    parser.add_argument("--depth", type=int, default=2, help="encoder blocks")
    args = parser.parse_args()
    main(args.steps, args.out, args.depth)
