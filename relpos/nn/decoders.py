"""The light decoder of masked autoencoding (MAE): visible-token features plus learned mask
tokens at the masked positions, sin-cos positions of every token, a few transformer blocks, and
a linear map back to the token's values."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from relpos.core.spans import Spans
from relpos.nn.vit import Block, sincos_encoding

__all__ = ["MAEDecoder"]


class MAEDecoder(nn.Module):
    """Reconstruct every token from the encoder's features of the visible ones.

    Args:
        in_dim: the encoder's width.
        token_dim: values per token (``C * prod(token_shape)``), the output width.
        dim, depth, heads: the decoder's width, blocks and attention heads (MAE keeps it light:
            narrower and shallower than the encoder).
        pos_unit: input samples per position unit of the sin-cos encoding of span centres.
    """

    def __init__(
        self,
        in_dim: int,
        token_dim: int,
        dim: int = 128,
        depth: int = 2,
        heads: int = 4,
        pos_unit: float = 1.0,
    ) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"decoder dim ({dim}) must be divisible by its heads ({heads})")
        self.pos_unit = float(pos_unit)
        self.embed = nn.Linear(in_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.out = nn.Linear(dim, token_dim)
        nn.init.normal_(self.mask_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, visible: Tensor, keep: Tensor, spans: Spans) -> Tensor:
        """Predicted token values ``(B, N, token_dim)``.

        Args:
            visible: ``(B, V, in_dim)`` features of the visible tokens (prefix tokens removed).
            keep: ``(B, V)`` long, the index (in ``0..N-1``) of each visible token.
            spans: ``(B, N, D)`` spans of every token (their centres place the mask tokens).
        """
        b, n = spans.batch, spans.num
        x = self.mask_token.to(visible.dtype).expand(b, n, -1).clone()
        x = x.scatter(1, keep[..., None].expand(-1, -1, x.shape[-1]), self.embed(visible))
        pos = sincos_encoding(spans.centre.to(x.device) / self.pos_unit, x.shape[-1])
        x = x + pos.to(x.dtype)
        for block in self.blocks:
            x = block(x)
        return self.out(self.norm(x))
