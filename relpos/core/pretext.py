"""What the grid pretexts (MAE, MP3, DropPos, relative positioning) share: their output, random
token masking, gathering tokens and spans by index, and grid-position labels (hard, or smoothed
with a Gaussian over the distance between grid cells).

Every pretext model is called as ``model(tokens (B, N, ...), spans (B, N, D), generator=g)`` and
returns an object with a scalar ``loss`` and a dict of detached ``errors``; the training loop and
:func:`relpos.train.pretext_eval.pretext_scores` need nothing else. Headline metrics come with
their chance level: ``"<name>"`` beside ``"zero_<name>"`` for errors (the no-information
prediction's error) and ``"chance_<name>"`` for accuracies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, cast

import torch
from torch import Tensor, nn

from relpos.core.random import draw
from relpos.core.spans import Spans

__all__ = [
    "Encoder",
    "PretextOutput",
    "as_encoder",
    "grid_labels",
    "random_keep",
    "smoothed_labels",
    "take",
    "take_spans",
]


class Encoder(Protocol):
    """What the grid pretexts need of an encoder (a :class:`~relpos.nn.vit.ViT` has it all):
    its width, its prefix-token count, ``forward_features(tokens (B, N, ...), spans, pos_keep,
    key_keep) -> (B, P + N, dim)`` and ``forward_head(features, pre_logits=True) -> (B, dim)``."""

    dim: int
    num_prefix_tokens: int

    def forward_features(
        self,
        tokens: Tensor,
        spans: Spans | None = None,
        pos_keep: Tensor | None = None,
        key_keep: Tensor | None = None,
    ) -> Tensor: ...

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor: ...


def as_encoder(module: nn.Module) -> Encoder:
    """``module`` seen through the :class:`Encoder` protocol (for the type checker)."""
    return cast(Encoder, module)


@dataclass
class PretextOutput:
    """A pretext's result: the scalar ``loss`` and detached scalar ``errors`` (metrics)."""

    loss: Tensor
    errors: dict[str, Tensor] = field(default_factory=dict)


def random_keep(
    batch: int,
    num: int,
    ratio: float,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    """Mask ``ratio`` of ``num`` tokens per example at random, keeping at least one.

    Returns:
        ``keep (B, V)`` long, the kept token indices in increasing order, with
        ``V = max(1, num - round(ratio * num))``; ``masked (B, N)`` bool, True where masked.
    """
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"mask ratio must lie in [0, 1); got {ratio}")
    if num < 1:
        raise ValueError(f"cannot mask tokens of an empty set (N={num})")
    visible = max(1, num - round(ratio * num))
    noise = draw(torch.rand, (batch, num), generator=generator, device=device)
    keep = noise.argsort(dim=1)[:, :visible].sort(dim=1).values
    masked = torch.ones(batch, num, dtype=torch.bool, device=keep.device)
    masked.scatter_(1, keep, False)
    return keep, masked


def take(values: Tensor, index: Tensor) -> Tensor:
    """Gather along the token axis: ``values (B, N, ...)``, ``index (B, M)`` -> ``(B, M, ...)``."""
    idx = index.reshape(*index.shape, *(1,) * (values.ndim - 2))
    return torch.gather(values, 1, idx.expand(-1, -1, *values.shape[2:]))


def take_spans(spans: Spans, index: Tensor) -> Spans:
    """The spans at ``index (B, M)``: ``(B, M, D)``."""
    index = index.to(spans.device)
    return Spans(take(spans.centre, index), take(spans.size, index))


def grid_labels(spans: Spans, num_positions: int) -> Tensor:
    """``(B, N)`` long: the grid index of each token, which is its order among the grid's spans.

    Raises:
        ValueError: the spans are not the ``num_positions`` cells the position head classifies.
    """
    if spans.num != num_positions:
        raise ValueError(
            f"the position head classifies {num_positions} grid positions; got {spans.num} "
            "tokens (grid pretexts need the grid sampler over the configured extent)"
        )
    return torch.arange(spans.num, device=spans.device).expand(spans.batch, -1)


def smoothed_labels(spans: Spans, sigma: float) -> Tensor:
    """``(B, N, N)`` soft position labels: row ``i`` is a Gaussian over the grid cells, centred
    on token ``i``'s own cell, ``softmax_j(-d_ij^2 / (2 sigma^2))`` with ``d_ij`` the distance
    between the centres of spans ``i`` and ``j`` in units of span ``i``'s size.

    ``sigma = 0`` gives the hard labels (the identity); the soft labels tend to them as
    ``sigma -> 0``.
    """
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0; got {sigma}")
    b, n = spans.batch, spans.num
    if sigma == 0:
        return torch.eye(n, device=spans.device).expand(b, n, n)
    delta = (spans.centre[:, None, :, :] - spans.centre[:, :, None, :]) / spans.size[:, :, None]
    d2 = (delta.float() ** 2).sum(-1)  # (B, N, N): squared distance from cell i to cell j
    return torch.softmax(-d2 / (2.0 * sigma**2), dim=-1)
