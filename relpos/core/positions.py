"""Absolute position prediction on the grid: MP3 (Zhai et al. 2022) and DropPos (Wang et al.
2023). Each token classifies which of the N grid cells it came from (cross-entropy over N).

- :class:`MP3`: the encoder has no position encodings; a random ``mask_ratio`` of the tokens is
  left out of attention's keys and values (they still query), and every token predicts its
  position.
- :class:`DropPos`: a random ``mask_ratio`` of the tokens is removed (the encoder sees only the
  visible ones, MAE-style); of those, ``pos_mask_ratio`` lose their position encoding, and each
  of them predicts its position. Options: position smoothing (Gaussian soft labels over the
  distance between cells, width ``sigma`` in cells; 0: hard labels) and attentive
  reconstruction (``attentive`` > 0: the label mixes in the content affinity between the token
  and every cell's token, so positions whose content looks alike are not penalised as much).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from relpos.core.pretext import (
    PretextOutput,
    as_encoder,
    grid_labels,
    random_keep,
    smoothed_labels,
    take,
    take_spans,
)
from relpos.core.spans import Spans

__all__ = ["MP3", "DropPos", "affinity_labels"]


def _position_head(encoder: nn.Module, num_positions: int) -> nn.Linear:
    if num_positions < 2:
        raise ValueError(
            f"position prediction needs at least 2 grid positions; got {num_positions}"
        )
    head = nn.Linear(as_encoder(encoder).dim, num_positions)
    nn.init.trunc_normal_(head.weight, std=0.02)
    nn.init.zeros_(head.bias)
    return head


def _accuracy(logits: Tensor, labels: Tensor, weight: Tensor) -> Tensor:
    hit = (logits.argmax(-1) == labels).float()
    return (hit * weight).sum() / weight.sum().clamp_min(1.0)


class MP3(nn.Module):
    """Masked position prediction without position encodings.

    Args:
        encoder: a :class:`~relpos.nn.vit.ViT` with ``pos_embed="none"``.
        num_positions: N, the grid cells (tokens per example).
        mask_ratio: the fraction of tokens left out of keys and values.
    """

    def __init__(self, encoder: nn.Module, num_positions: int, mask_ratio: float = 0.75) -> None:
        super().__init__()
        if getattr(encoder, "pos_embed_type", "none") != "none":
            raise ValueError("MP3 encodes tokens without position encodings: pos_embed='none'")
        if not 0.0 <= mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must lie in [0, 1); got {mask_ratio}")
        self.encoder = encoder
        self.num_positions = int(num_positions)
        self.mask_ratio = float(mask_ratio)
        self.head = _position_head(encoder, num_positions)

    def forward(
        self, tokens: Tensor, spans: Spans, *, generator: torch.Generator | None = None
    ) -> PretextOutput:
        """Errors: ``"pos_acc"`` (top-1 over every token) and ``"chance_pos_acc"`` (1/N)."""
        b, n = tokens.shape[:2]
        labels = grid_labels(spans.to(tokens.device), self.num_positions)
        _, masked = random_keep(b, n, self.mask_ratio, generator=generator, device=tokens.device)
        feats = as_encoder(self.encoder).forward_features(tokens, None, key_keep=~masked)
        logits = self.head(feats[:, getattr(self.encoder, "num_prefix_tokens", 0) :]).float()
        loss = F.cross_entropy(rearrange(logits, "b n k -> (b n) k"), labels.reshape(-1))
        with torch.no_grad():
            ones = torch.ones_like(masked, dtype=torch.float)
            errors = {
                "pos_acc": _accuracy(logits, labels, ones),
                "chance_pos_acc": torch.tensor(1.0 / self.num_positions),
            }
        return PretextOutput(loss, errors)


def affinity_labels(tokens: Tensor, keep: Tensor, tau: float) -> Tensor:
    """``(B, V, N)``: for each kept token, ``softmax_j(cos(x_i, x_j) / tau)`` over the content
    ``x_j`` of every token of its example (``tokens (B, N, ...)``, ``keep (B, V)``)."""
    flat = F.normalize(rearrange(tokens, "b n ... -> b n (...)").float(), dim=-1)
    sim = torch.einsum("bvf,bnf->bvn", take(flat, keep), flat)
    return torch.softmax(sim / tau, dim=-1)


class DropPos(nn.Module):
    """Reconstruct dropped positions.

    Args:
        encoder: a :class:`~relpos.nn.vit.ViT` with ``pos_embed="sincos"``.
        num_positions: N, the grid cells.
        mask_ratio: the fraction of tokens removed before the encoder.
        pos_mask_ratio: the fraction of the visible tokens whose position is dropped (at least
            one keeps it); they are the ones scored.
        sigma: position smoothing width in grid cells (0: hard labels).
        attentive: weight in [0, 1] of the content affinity in the label (0: off).
        attentive_tau: temperature of the content affinity.
    """

    def __init__(
        self,
        encoder: nn.Module,
        num_positions: int,
        mask_ratio: float = 0.75,
        pos_mask_ratio: float = 0.75,
        sigma: float = 0.0,
        attentive: float = 0.0,
        attentive_tau: float = 0.1,
    ) -> None:
        super().__init__()
        if getattr(encoder, "pos_embed_type", "sincos") != "sincos":
            raise ValueError("DropPos needs positions computed from the spans: pos_embed='sincos'")
        for name, value in (("mask_ratio", mask_ratio), ("pos_mask_ratio", pos_mask_ratio)):
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must lie in [0, 1); got {value}")
        if sigma < 0 or not 0.0 <= attentive <= 1.0 or attentive_tau <= 0:
            raise ValueError(
                f"need sigma >= 0, attentive in [0, 1], attentive_tau > 0; got {sigma}, "
                f"{attentive}, {attentive_tau}"
            )
        self.encoder = encoder
        self.num_positions = int(num_positions)
        self.mask_ratio, self.pos_mask_ratio = float(mask_ratio), float(pos_mask_ratio)
        self.sigma, self.attentive, self.attentive_tau = (
            float(sigma),
            float(attentive),
            attentive_tau,
        )
        self.head = _position_head(encoder, num_positions)

    def targets(self, tokens: Tensor, spans: Spans, keep: Tensor) -> Tensor:
        """``(B, V, N)`` soft labels of the kept tokens: smoothed, then (optionally) mixed with
        the content affinity."""
        soft = take(smoothed_labels(spans, self.sigma), keep)
        if self.attentive > 0:
            aff = affinity_labels(tokens, keep, self.attentive_tau)
            soft = (1.0 - self.attentive) * soft + self.attentive * aff
        return soft

    def forward(
        self, tokens: Tensor, spans: Spans, *, generator: torch.Generator | None = None
    ) -> PretextOutput:
        """Errors: ``"pos_acc"`` (top-1 over the tokens whose position was dropped),
        ``"chance_pos_acc"`` (1/N) and ``"scored_frac"`` (those tokens' share of all N)."""
        b, n = tokens.shape[:2]
        spans = spans.to(tokens.device)
        labels = grid_labels(spans, self.num_positions)
        keep, _ = random_keep(b, n, self.mask_ratio, generator=generator, device=tokens.device)
        v = keep.shape[1]
        _, dropped = random_keep(
            b, v, self.pos_mask_ratio, generator=generator, device=tokens.device
        )
        feats = as_encoder(self.encoder).forward_features(
            take(tokens, keep), take_spans(spans, keep), pos_keep=~dropped
        )
        logits = self.head(feats[:, getattr(self.encoder, "num_prefix_tokens", 0) :]).float()
        soft = self.targets(tokens, spans, keep)
        w = dropped.float()
        per = -(soft * F.log_softmax(logits, dim=-1)).sum(-1)  # (B, V)
        loss = (per * w).sum() / w.sum().clamp_min(1.0)
        with torch.no_grad():
            errors = {
                "pos_acc": _accuracy(logits, take(labels, keep), w),
                "chance_pos_acc": torch.tensor(1.0 / self.num_positions),
                "scored_frac": w.sum() / (b * n),
            }
        return PretextOutput(loss, errors)
