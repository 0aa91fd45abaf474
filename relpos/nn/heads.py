"""Relative heads: map token embeddings and (reference, target) pairs to relative positions.

Every head has the signature ``head(features (B, N, d), pairs (B, M, 2)) -> (B, M, out_dim)``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from relpos.core.checks import positive_int
from relpos.core.registry import Registry
from relpos.core.spans import gather_tokens

__all__ = [
    "HEADS",
    "CrossAttentionHead",
    "MLPHead",
    "PairwiseMLPHead",
    "RelativeHead",
    "create_head",
    "list_heads",
    "register_head",
]


class RelativeHead(nn.Module):
    """Base class of the relative heads; ``out_dim`` is the number of values per pair (PART
    checks it against its targets)."""

    out_dim: int

    def forward(self, features: Tensor, pairs: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


def _sizes(who: str, **sizes: int) -> list[int]:
    """The sizes as ints, each checked to be a whole number >= 1 (the error names it)."""
    return [positive_int(v, f"{who}: {name}") for name, v in sizes.items()]


def _pair_features(features: Tensor, pairs: Tensor) -> Tensor:
    """``(B, N, d)``, ``(B, M, 2)`` -> ``concat(ref, tgt)`` of shape ``(B, M, 2d)``."""
    return torch.cat(
        [gather_tokens(features, pairs[..., 0]), gather_tokens(features, pairs[..., 1])], dim=-1
    )


class CrossAttentionHead(RelativeHead):
    """The paper's relative encoder.

    ``q = Linear(2d, d)(concat(x_ref, x_tgt))``; multi-head cross-attention of the M pair
    queries over all N token embeddings (keys and values), with a residual connection; then
    ``Linear(d, out_dim)``.

    Args:
        dim: token embedding width d.
        out_dim: targets per pair (2 for (Δy, Δx), 1 for Δt, 2D with the scale terms).
        heads: attention heads (default ``max(1, dim // 64)``).
    """

    def __init__(self, dim: int, out_dim: int = 2, heads: int | None = None) -> None:
        super().__init__()
        dim, self.out_dim = _sizes("CrossAttentionHead", dim=dim, out_dim=out_dim)
        heads = positive_int(heads or max(1, dim // 64), "CrossAttentionHead: heads")
        if dim % heads:
            raise ValueError(
                f"CrossAttentionHead: dim ({dim}) must be divisible by heads ({heads})"
            )
        self.heads = heads
        self.query = nn.Linear(2 * dim, dim)
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.q_proj = nn.Linear(dim, dim)
        self.kv_proj = nn.Linear(dim, 2 * dim)
        self.o_proj = nn.Linear(dim, dim)
        self.norm_out = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, out_dim)

    def forward(self, features: Tensor, pairs: Tensor) -> Tensor:
        q = self.query(_pair_features(features, pairs))  # (B, M, d)
        k, v = rearrange(
            self.kv_proj(self.norm_kv(features)),
            "b n (two h e) -> two b h n e",
            two=2,
            h=self.heads,
        )
        qh = rearrange(self.q_proj(self.norm_q(q)), "b m (h e) -> b h m e", h=self.heads)
        a = F.scaled_dot_product_attention(qh, k, v)
        h = q + self.o_proj(rearrange(a, "b h m e -> b m (h e)"))
        return self.out(self.norm_out(h))


class PairwiseMLPHead(RelativeHead):
    """MLP on ``concat(x_ref, x_tgt)`` only: sees the two tokens of the pair and nothing else."""

    def __init__(self, dim: int, out_dim: int = 2, hidden: int | None = None) -> None:
        super().__init__()
        dim, self.out_dim = _sizes("PairwiseMLPHead", dim=dim, out_dim=out_dim)
        hidden = positive_int(hidden or dim, "PairwiseMLPHead: hidden")
        self.net = nn.Sequential(
            nn.LayerNorm(2 * dim), nn.Linear(2 * dim, hidden), nn.GELU(), nn.Linear(hidden, out_dim)
        )

    def forward(self, features: Tensor, pairs: Tensor) -> Tensor:
        return self.net(_pair_features(features, pairs))


class MLPHead(RelativeHead):
    """The paper's "MLP" ablation: all N tokens concatenated -> the targets of all N x N pairs.

    ``concat(x_1..x_N) (N d) -> hidden -> N * N * out_dim``, then the requested pairs are read
    out. Needs a fixed token count ``num_tokens``.
    """

    def __init__(
        self, dim: int, out_dim: int = 2, num_tokens: int | None = None, hidden: int = 512
    ) -> None:
        super().__init__()
        if not num_tokens:
            raise ValueError("MLPHead needs num_tokens (the fixed number of tokens N)")
        dim, self.out_dim, self.num_tokens, hidden = _sizes(
            "MLPHead", dim=dim, out_dim=out_dim, num_tokens=num_tokens, hidden=hidden
        )
        self.net = nn.Sequential(
            nn.LayerNorm(num_tokens * dim),
            nn.Linear(num_tokens * dim, hidden),
            nn.GELU(),
            nn.Linear(hidden, num_tokens * num_tokens * out_dim),
        )

    def forward(self, features: Tensor, pairs: Tensor) -> Tensor:
        n = features.shape[1]
        if n != self.num_tokens:
            raise ValueError(f"MLPHead was built for {self.num_tokens} tokens; got {n}")
        table = rearrange(
            self.net(rearrange(features, "b n d -> b (n d)")), "b (p t) -> b p t", t=self.out_dim
        )
        return gather_tokens(table, pairs[..., 0] * n + pairs[..., 1])


#: relative head name -> head class (names are case- and dash-insensitive)
HEADS: Registry[type[RelativeHead]] = Registry(
    "head", normalize=lambda name: name.replace("-", "_").lower()
)
HEADS.register("cross_attention", CrossAttentionHead)
HEADS.register("pairwise_mlp", PairwiseMLPHead)
HEADS.register("mlp", MLPHead)


def register_head(name: str, cls: type[RelativeHead]) -> None:
    """Make a custom head available to :func:`create_head` and configs under ``name``."""
    HEADS.register(name, cls)


def list_heads() -> list[str]:
    return HEADS.names()


def create_head(name: str, dim: int, out_dim: int, **kwargs: Any) -> RelativeHead:
    """Build a head by name: ``cross_attention``, ``pairwise_mlp`` or ``mlp``."""
    return HEADS.get(name)(dim=dim, out_dim=out_dim, **kwargs)
