"""The PART objective: encode off-grid tokens without positions, predict relative positions of
random (reference, target) pairs, regress them with MSE."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, cast

import torch
from torch import Tensor, nn

from relpos.core.extract import tokenize
from relpos.core.samplers import SpanSampler
from relpos.core.spans import Scale, Spans, relative_targets, sample_pairs, target_names

__all__ = ["PART", "PARTOutput", "pretext_errors"]


class Encoder(Protocol):
    """What PART needs of an encoder: ``forward_features(tokens (B, N, ...), spans)`` returning
    ``(B, P + N, d)``, where P is the encoder's ``num_prefix_tokens`` (0 when absent)."""

    def forward_features(self, tokens: Tensor, spans: Spans | None = None) -> Tensor: ...


@dataclass
class PARTOutput:
    """Result of a PART forward pass.

    Attributes:
        loss: scalar MSE, ``1 / (T M) * sum (theta - theta_hat)^2`` averaged over the batch.
        pred, target: ``(B, M, T)`` predicted and true relative positions.
        pairs: ``(B, M, 2)`` (reference, target) indices.
        errors: detached scalars: per-component MSE (``"t"``, ``"y"``, ``"x"``, ``"s_y"``, ...),
            ``"euclidean"`` (mean L2 distance over the translation components) and
            ``"baseline"`` (MSE of the constant predictor: 0 for translations and log-scales,
            1 for scale ratios).
    """

    loss: Tensor
    pred: Tensor
    target: Tensor
    pairs: Tensor
    errors: dict[str, Tensor] = field(default_factory=dict)


def _neutral(target: Tensor, ndim: int, scale: Scale) -> Tensor:
    """The constant no-information prediction for each target component."""
    neutral = torch.zeros_like(target)
    if scale == "ratio":
        neutral[..., ndim:] = 1.0
    return neutral


@torch.no_grad()
def pretext_errors(
    pred: Tensor, target: Tensor, ndim: int, scale: Scale = None
) -> dict[str, Tensor]:
    """Per-component MSE, Euclidean error of the translation part, and the constant baseline."""
    names = target_names(ndim, scale)
    sq = (pred.float() - target.float()) ** 2
    errors = {n: sq[..., i].mean() for i, n in enumerate(names)}
    errors["euclidean"] = sq[..., :ndim].sum(-1).sqrt().mean()
    errors["baseline"] = ((_neutral(target, ndim, scale).float() - target.float()) ** 2).mean()
    return errors


class PART(nn.Module):
    """PAirwise Relative Translations.

    Args:
        encoder: a :class:`~relpos.nn.vit.ViT` (or any module with ``forward_features(tokens,
            spans)`` returning ``(B, P + N, d)`` and a ``num_prefix_tokens`` attribute).
        head: a relative head ``(features (B, N, d), pairs (B, M, 2)) -> (B, M, T)``.
        num_pairs: M, pairs drawn per example.
        scale: ``None`` (translations), ``"ratio"`` or ``"log"`` (plus size terms).
        self_pairs: allow a token to be paired with itself.
    """

    def __init__(
        self,
        encoder: nn.Module,
        head: nn.Module,
        num_pairs: int,
        scale: Scale = None,
        self_pairs: bool = False,
    ) -> None:
        super().__init__()
        if scale not in (None, "ratio", "log"):
            raise ValueError(f"scale must be None, 'ratio' or 'log'; got {scale!r}")
        if num_pairs < 1:
            raise ValueError(f"num_pairs must be >= 1; got {num_pairs}")
        self.encoder = encoder
        self.head = head
        self.num_pairs = int(num_pairs)
        self.scale = scale
        self.self_pairs = self_pairs

    def predict(self, tokens: Tensor, spans: Spans | None, pairs: Tensor) -> Tensor:
        """Predicted relative positions ``(B, M, T)`` for given pairs (no targets, no loss)."""
        feats = cast(Encoder, self.encoder).forward_features(tokens, spans)
        feats = feats[:, getattr(self.encoder, "num_prefix_tokens", 0) :]
        return self.head(feats, pairs)

    def forward(
        self,
        tokens: Tensor,
        spans: Spans,
        *,
        pairs: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> PARTOutput:
        """Loss and predictions for ``tokens (B, N, ...)`` cut at ``spans (B, N, D)``.

        ``pairs (B, M, 2)`` are drawn (``num_pairs`` per example) unless given.
        """
        b, n = tokens.shape[:2]
        if spans.batch != b or spans.num != n:
            raise ValueError(
                f"spans (B={spans.batch}, N={spans.num}) do not match tokens (B={b}, N={n})"
            )
        if pairs is None:
            pairs = sample_pairs(
                b,
                n,
                self.num_pairs,
                generator=generator,
                device=tokens.device,
                self_pairs=self.self_pairs,
            )
        target = relative_targets(spans.to(tokens.device), pairs, self.scale)
        pred = self.predict(tokens, spans, pairs)
        loss = torch.mean((pred.float() - target.float()) ** 2)
        return PARTOutput(
            loss, pred, target, pairs, pretext_errors(pred, target, spans.ndim, self.scale)
        )

    def forward_raw(
        self,
        x: Tensor,
        sampler: SpanSampler,
        token_shape: int | Sequence[int],
        *,
        generator: torch.Generator | None = None,
    ) -> PARTOutput:
        """One line from a raw batch: sample spans, extract tokens, run PART.

        ``x`` is ``(B, C, *extent)``; e.g. ``model.forward_raw(images, RandomBoxes(8, 64), (4, 4))``.
        """
        tokens, spans = tokenize(x, sampler, token_shape, generator=generator)
        return self(tokens, spans, generator=generator)
