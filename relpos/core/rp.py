"""Relative positioning (RP, Banville et al. 2021): are two windows of one recording close in
time or far apart?

Each example is a long input cut into grid tokens along one axis (e.g. several consecutive
sleep epochs). RP draws ``pairs`` pairs of windows of ``window`` consecutive tokens per
example, labelled close (``1 <= |Δ| <= tau_pos`` tokens between their starts) or far
(``|Δ| >= tau_neg``), half of each on average; both windows are encoded on their own (positions
relative to the window's start) and a contrastive head, a linear map of ``|h_a - h_b|``, tells
the two apart with a logistic loss. Every draw is vectorised over examples and pairs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import Tensor, nn

from relpos.core.pretext import PretextOutput, as_encoder, take, take_spans
from relpos.core.random import draw
from relpos.core.spans import Spans

__all__ = ["RelativePositioning", "sample_window_pairs"]


def _pick(weights: Tensor, generator: torch.Generator | None) -> Tensor:
    """One index per row of ``weights (R, L)`` (non-negative, every row with a positive entry),
    drawn in proportion to the weights with ``generator``."""
    where = generator.device if generator is not None else weights.device
    return (
        torch.multinomial(weights.to(where), 1, generator=generator).squeeze(1).to(weights.device)
    )


def sample_window_pairs(
    rows: int,
    starts: int,
    tau_pos: int,
    tau_neg: int,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """``rows`` (anchor, other) window starts in ``[0, starts)`` and their labels.

    A label is drawn first (close or far with probability 1/2), then an anchor among the starts
    that have a partner at that label, then the partner: close partners lie ``1..tau_pos``
    starts away, far ones at least ``tau_neg``.

    Returns:
        ``anchor (R,)``, ``other (R,)`` long and ``label (R,)`` float (1: close, 0: far).
    """
    if not 1 <= tau_pos < tau_neg <= starts - 1:
        raise ValueError(
            f"relative positioning needs 1 <= tau_pos ({tau_pos}) < tau_neg ({tau_neg}) <= "
            f"window starts - 1 ({starts - 1}): make the input longer or the window shorter"
        )
    label = (draw(torch.rand, (rows,), generator=generator, device=device) < 0.5).float()
    pos = torch.arange(starts, device=label.device)
    gap = (pos[None, :] - pos[:, None]).abs()  # (L, L): distance between starts a and b
    close, far = (gap >= 1) & (gap <= tau_pos), gap >= tau_neg
    partner = torch.where(label[:, None, None] > 0, close, far)  # (R, L, L)
    anchor = _pick(partner.any(-1).float(), generator)
    other = _pick(partner[torch.arange(rows, device=label.device), anchor].float(), generator)
    return anchor, other, label


class RelativePositioning(nn.Module):
    """The RP pretext over 1-D grid tokens.

    Args:
        encoder: a :class:`~relpos.nn.vit.ViT` (its pooled features embed one window).
        window: tokens per window.
        tau_pos: close pairs start at most this many tokens apart.
        tau_neg: far pairs start at least this many tokens apart.
        pairs: window pairs drawn per example.
    """

    def __init__(
        self, encoder: nn.Module, window: int, tau_pos: int, tau_neg: int, pairs: int = 2
    ) -> None:
        super().__init__()
        if window < 1 or pairs < 1:
            raise ValueError(f"window and pairs must be >= 1; got {window}, {pairs}")
        if not 1 <= tau_pos < tau_neg:
            raise ValueError(f"need 1 <= tau_pos < tau_neg; got {tau_pos}, {tau_neg}")
        self.encoder = encoder
        self.window, self.tau_pos, self.tau_neg, self.pairs = window, tau_pos, tau_neg, pairs
        self.head = nn.Linear(as_encoder(encoder).dim, 1)

    def embed(self, tokens: Tensor, spans: Spans, start: Tensor) -> Tensor:
        """Pooled features ``(R, d)`` of the windows of ``window`` tokens starting at
        ``start (B, P)`` in each example of ``tokens (B, N, ...)``; positions are relative to
        each window's first token."""
        idx = start[..., None] + torch.arange(self.window, device=start.device)  # (B, P, W)
        flat = rearrange(idx, "b p w -> b (p w)")
        win = rearrange(take(tokens, flat), "b (p w) ... -> (b p) w ...", w=self.window)
        sp = take_spans(spans, flat)
        origin = sp.start[:, :: self.window]  # (B, P, D): each window's first corner
        centre = sp.centre - repeat(origin, "b p d -> b (p w) d", w=self.window)
        local = Spans(
            rearrange(centre, "b (p w) d -> (b p) w d", w=self.window),
            rearrange(sp.size, "b (p w) d -> (b p) w d", w=self.window),
        )
        enc = as_encoder(self.encoder)
        return enc.forward_head(enc.forward_features(win, local), pre_logits=True)

    def forward(
        self, tokens: Tensor, spans: Spans, *, generator: torch.Generator | None = None
    ) -> PretextOutput:
        """Errors: ``"rp_acc"`` (close/far accuracy), ``"chance_rp_acc"`` (the majority
        label's share) and ``"close_frac"``."""
        b, n = tokens.shape[:2]
        if spans.ndim != 1:
            raise ValueError(
                f"relative positioning pairs windows along one axis; got D={spans.ndim}"
            )
        spans = spans.to(tokens.device)
        anchor, other, label = sample_window_pairs(
            b * self.pairs, n - self.window + 1, self.tau_pos, self.tau_neg,
            generator=generator, device=tokens.device,
        )  # fmt: skip
        starts = torch.cat([anchor.reshape(b, self.pairs), other.reshape(b, self.pairs)], dim=1)
        h = self.embed(tokens, spans, starts)  # both windows of every pair in one pass
        h_a, h_b = rearrange(h, "(b two p) d -> two (b p) d", two=2, p=self.pairs)
        logit = self.head((h_a - h_b).abs()).squeeze(-1).float()
        loss = F.binary_cross_entropy_with_logits(logit, label)
        with torch.no_grad():
            close = label.mean()
            errors = {
                "rp_acc": ((logit > 0).float() == label).float().mean(),
                "chance_rp_acc": torch.maximum(close, 1 - close),
                "close_frac": close,
            }
        return PretextOutput(loss, errors)
