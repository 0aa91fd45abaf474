"""Masked autoencoding (MAE, He et al. 2022) over grid tokens of any dimensionality.

A random ``mask_ratio`` of the tokens is masked per example; the encoder sees only the visible
tokens (with their positions); a light decoder gets the visible features plus mask tokens at the
masked positions and reconstructs every token; the loss is the MSE on the masked tokens, against
per-token normalised targets (each token's values minus their mean, over their standard
deviation) by default.
"""

from __future__ import annotations

from typing import Protocol, cast

import torch
from einops import rearrange
from torch import Tensor, nn

from relpos.core.pretext import PretextOutput, as_encoder, random_keep, take, take_spans
from relpos.core.spans import Spans

__all__ = ["MAE", "normalized_targets"]


class Decoder(Protocol):
    """``decoder(visible (B, V, d), keep (B, V), spans (B, N, D)) -> (B, N, token_dim)``."""

    def __call__(self, visible: Tensor, keep: Tensor, spans: Spans) -> Tensor: ...


def normalized_targets(tokens: Tensor, eps: float = 1e-6) -> Tensor:
    """``(B, N, F)`` -> each token's values standardised over its own ``F`` values."""
    mean = tokens.mean(-1, keepdim=True)
    var = tokens.var(-1, keepdim=True, unbiased=False)
    return (tokens - mean) / (var + eps).sqrt()


class MAE(nn.Module):
    """Masked autoencoder.

    Args:
        encoder: a :class:`~relpos.nn.vit.ViT` with position encodings computed from the spans
            (``pos_embed="sincos"``), so that a subset of tokens keeps its positions.
        decoder: ``decoder(visible, keep, spans) -> (B, N, token_dim)``
            (:class:`~relpos.nn.decoders.MAEDecoder`).
        mask_ratio: the fraction of tokens masked per example (at least one stays visible).
        norm_targets: reconstruct per-token normalised values (MAE's ``norm_pix_loss``).
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        mask_ratio: float = 0.75,
        norm_targets: bool = True,
    ) -> None:
        super().__init__()
        if not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must lie in (0, 1); got {mask_ratio}")
        if getattr(encoder, "pos_embed_type", "sincos") == "learned":
            raise ValueError("MAE needs positions computed from the spans: pos_embed='sincos'")
        self.encoder = encoder
        self.decoder = decoder
        self.mask_ratio = float(mask_ratio)
        self.norm_targets = bool(norm_targets)

    def encode(
        self, tokens: Tensor, spans: Spans, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Mask, then encode the visible tokens only.

        Returns:
            ``features (B, V, d)`` of the visible tokens (prefix tokens removed), ``keep (B, V)``
            their indices and ``masked (B, N)`` bool.
        """
        b, n = tokens.shape[:2]
        keep, masked = random_keep(b, n, self.mask_ratio, generator=generator, device=tokens.device)
        feats = as_encoder(self.encoder).forward_features(
            take(tokens, keep), take_spans(spans, keep)
        )
        return feats[:, getattr(self.encoder, "num_prefix_tokens", 0) :], keep, masked

    def forward(
        self, tokens: Tensor, spans: Spans, *, generator: torch.Generator | None = None
    ) -> PretextOutput:
        """Loss and errors for ``tokens (B, N, ...)`` cut at ``spans (B, N, D)``.

        Errors: ``"recon"`` (the loss: MSE on the masked tokens), ``"zero_recon"`` (predicting
        each masked token's mean: the MSE of zeros against normalised targets, or of the batch's
        mean token without normalisation) and ``"mask_frac"``.
        """
        feats, keep, masked = self.encode(tokens, spans, generator)
        pred = cast(Decoder, self.decoder)(feats, keep, spans.to(tokens.device))
        flat = rearrange(tokens, "b n ... -> b n (...)").float()
        target = normalized_targets(flat) if self.norm_targets else flat
        w = masked.float()
        count = w.sum().clamp_min(1.0)
        loss = (((pred.float() - target) ** 2).mean(-1) * w).sum() / count
        with torch.no_grad():
            mean = 0.0 if self.norm_targets else target.mean((0, 1), keepdim=True)
            zero = (((mean - target) ** 2).mean(-1) * w).sum() / count
        errors = {"recon": loss.detach(), "zero_recon": zero, "mask_frac": w.mean()}
        return PretextOutput(loss, errors)
