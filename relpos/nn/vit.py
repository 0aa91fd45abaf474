"""Vision Transformer over a set of tokens of any dimensionality (ViT-1D for signals, ViT-2D for
images), with the position encodings PART needs: none, learned, or sin-cos of span centres."""

from __future__ import annotations

import math
from typing import Any, Literal, cast

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from relpos.core.checks import int_shape, positive_int
from relpos.core.registry import Registry
from relpos.core.spans import Spans

__all__ = [
    "MODELS",
    "ConvStem",
    "ViT",
    "create_model",
    "list_models",
    "register_model",
    "sincos_encoding",
]

PosEmbed = Literal["none", "learned", "sincos"]
Embed = Literal["linear", "conv"]


class DropPath(nn.Module):
    """Stochastic depth: drop the residual branch per example with probability ``p``."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = float(p)

    def forward(self, x: Tensor) -> Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Attention(nn.Module):
    """Multi-head self-attention on ``(B, L, d)`` using ``scaled_dot_product_attention``."""

    def __init__(
        self,
        dim: int,
        heads: int,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be divisible by heads ({heads})")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.attn_drop = attn_drop
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: Tensor, key_keep: Tensor | None = None) -> Tensor:
        """``x (B, L, d)`` -> ``(B, L, d)``; ``key_keep (B, L)`` bool, when given, says which
        tokens every query may attend to (the others are left out of keys and values)."""
        q, k, v = rearrange(self.qkv(x), "b l (three h e) -> three b h l e", three=3, h=self.heads)
        drop = self.attn_drop if self.training else 0.0
        mask = None if key_keep is None else rearrange(key_keep.to(torch.bool), "b l -> b 1 1 l")
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop)
        return self.proj_drop(self.proj(rearrange(y, "b h l e -> b l (h e)")))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.fc2(self.drop(F.gelu(self.fc1(x)))))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + DropPath(Attn(LN(x)))``, ``x + DropPath(MLP(LN(x)))``."""

    def __init__(
        self,
        dim: int,
        heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads, qkv_bias, attn_drop, drop)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor, key_keep: Tensor | None = None) -> Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), key_keep))
        return x + self.drop_path(self.mlp(self.norm2(x)))


_CONVS: dict[int, type[nn.Module]] = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}


class ConvStem(nn.Module):
    """A small conv tokenizer applied to each token's own samples, for tokens of 1 to 3 axes.

    ``L = clip(floor(log2(min(token_shape))), 1, 3)`` blocks of ``Conv(k=3, stride=2, pad=1)``,
    ``GroupNorm(1, c)`` (per token, never across examples) and GELU, widths ``w, 2w, 4w`` with
    ``w = max(8, dim // 8)``; then the flattened feature map goes through ``Linear(., dim)``.

    Args:
        channels: C, the token's channels.
        token_shape: the token's extent per axis (1 to 3 axes).
        dim: output width.
    """

    def __init__(self, channels: int, token_shape: tuple[int, ...], dim: int) -> None:
        super().__init__()
        if len(token_shape) not in _CONVS:
            raise ValueError(f"the conv stem takes tokens of 1 to 3 axes; got {token_shape}")
        self.channels, self.token_shape = channels, tuple(token_shape)
        conv = _CONVS[len(token_shape)]
        depth = min(3, max(1, int(math.log2(min(token_shape)))))
        width = max(8, dim // 8)
        layers: list[nn.Module] = []
        c_in, shape = channels, list(token_shape)
        for i in range(depth):
            c_out = width * 2**i
            layers += [conv(c_in, c_out, 3, stride=2, padding=1), nn.GroupNorm(1, c_out), nn.GELU()]
            c_in, shape = c_out, [(s - 1) // 2 + 1 for s in shape]
        self.convs = nn.Sequential(*layers)
        self.proj = nn.Linear(c_in * math.prod(shape), dim)

    def forward(self, tokens: Tensor) -> Tensor:
        """``(B, N, C * prod(token_shape))`` -> ``(B, N, dim)``."""
        b = tokens.shape[0]
        x = rearrange(tokens, "b n f -> (b n) f").unflatten(1, (self.channels, *self.token_shape))
        x = rearrange(self.convs(x), "bn c ... -> bn (c ...)")
        return rearrange(self.proj(x), "(b n) d -> b n d", b=b)


def sincos_encoding(pos: Tensor, dim: int, temperature: float = 10000.0) -> Tensor:
    """Sin-cos encoding of continuous coordinates (MAE-style, generalised to any D).

    Args:
        pos: ``(B, N, D)`` coordinates (any real values).
        dim: encoding width; each axis gets ``2 * (dim // (2 D))`` channels, the rest is zero.

    Returns:
        ``(B, N, dim)``.
    """
    d = pos.shape[-1]
    f = dim // (2 * d)
    if f < 1:
        raise ValueError(f"dim ({dim}) must be >= 2 * D ({2 * d}) for a sin-cos encoding")
    omega = temperature ** (-torch.arange(f, device=pos.device, dtype=torch.float32) / f)
    ang = pos.float()[..., None] * omega  # (B, N, D, f)
    enc = rearrange(torch.cat([ang.sin(), ang.cos()], -1), "b n d f -> b n (d f)")
    return F.pad(enc, (0, dim - enc.shape[-1])).to(
        pos.dtype if pos.is_floating_point() else enc.dtype
    )


def _token_layout(
    token_dim: int,
    token_shape: tuple[int, ...] | list[int] | None,
    channels: int | None,
    embed: str,
) -> tuple[tuple[int, ...] | None, int | None]:
    """Checked ``(token_shape, channels)``; ``channels`` is derived when only the shape is given."""
    if token_shape is None:
        if embed == "conv":
            raise ValueError("embed='conv' needs token_shape (the token's extent per axis)")
        return None, channels
    if isinstance(token_shape, int):  # D is not known from one number
        raise ValueError(f"ViT: token_shape must hold one size per axis; got {token_shape!r}")
    shape = int_shape(token_shape, "ViT: token_shape")
    if channels is None:
        channels = token_dim // math.prod(shape)
    if channels < 1 or channels * math.prod(shape) != token_dim:
        raise ValueError(
            f"token_dim ({token_dim}) must equal channels ({channels}) x prod(token_shape {shape})"
        )
    return shape, channels


def _check_sizes(
    token_dim: int, dim: int, depth: int, heads: int, num_classes: int
) -> tuple[int, int, int, int]:
    """``token_dim, dim, depth, heads`` checked (whole numbers >= 1, ``dim`` divisible by
    ``heads``) and ``num_classes >= 0``; each error names the argument."""
    sizes = dict(token_dim=token_dim, dim=dim, depth=depth, heads=heads)
    token_dim, dim, depth, heads = (positive_int(v, f"ViT: {k}") for k, v in sizes.items())
    if dim % heads:
        raise ValueError(f"ViT: dim ({dim}) must be divisible by heads ({heads})")
    if num_classes != 0:
        positive_int(num_classes, "ViT: num_classes (0: no head)")
    return token_dim, dim, depth, heads


def _check_rates(mlp_ratio: float, pos_unit: float, **rates: float) -> None:
    """``mlp_ratio`` and ``pos_unit`` positive and finite, every dropout rate in [0, 1)."""
    for name, v in dict(mlp_ratio=mlp_ratio, pos_unit=pos_unit).items():
        if not 0.0 < v < math.inf:
            raise ValueError(f"ViT: {name} must be positive and finite; got {v!r}")
    for name, v in rates.items():
        if not 0.0 <= v < 1.0:
            raise ValueError(f"ViT: {name} must lie in [0, 1); got {v!r}")


class ViT(nn.Module):
    """Transformer encoder over tokens ``(B, N, C, *token_shape)`` (or flat ``(B, N, token_dim)``).

    Args:
        token_dim: flattened token size, ``C * prod(token_shape)``.
        dim, depth, heads, mlp_ratio, qkv_bias: transformer width, blocks, heads.
        pos_embed: ``"none"`` (PART pretraining), ``"learned"`` (needs ``num_tokens``; finetuning)
            or ``"sincos"`` (computed from span centres divided by ``pos_unit``).
        num_tokens: token count for learned position embeddings.
        pos_drop: fraction of tokens whose position encoding is dropped (zeroed) while training
            (the paper drops 20% for its EEG run), unless ``forward`` gets an explicit
            ``pos_keep`` mask (PART draws one itself, with its generator).
        pos_unit: input samples per position unit for ``"sincos"`` (e.g. the token size).
        class_token: prepend a learned [CLS] token.
        num_classes: size of the classifier head; 0 means no head (identity).
        global_pool: ``"token"`` ([CLS]) or ``"avg"`` (mean of the tokens) for the head.
        drop, attn_drop, drop_path: dropout, attention dropout, max stochastic depth (linear
            over blocks).
        embed: the tokenizer: ``"linear"`` (one ``Linear(token_dim, dim)``, the paper's) or
            ``"conv"`` (a :class:`ConvStem` over each token's samples; needs ``token_shape``).
        token_shape: the token's extent per axis (1 to 3 axes), e.g. ``(100,)`` or ``(4, 4)``.
        channels: C; defaults to ``token_dim // prod(token_shape)``.
    """

    def __init__(
        self,
        token_dim: int,
        dim: int = 192,
        depth: int = 12,
        heads: int = 3,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        pos_embed: PosEmbed = "none",
        num_tokens: int | None = None,
        pos_drop: float = 0.0,
        pos_unit: float = 1.0,
        class_token: bool = True,
        num_classes: int = 0,
        global_pool: Literal["token", "avg"] = "token",
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        embed: Embed = "linear",
        token_shape: tuple[int, ...] | list[int] | None = None,
        channels: int | None = None,
    ) -> None:
        super().__init__()
        if embed not in ("linear", "conv"):
            raise ValueError(f"embed must be 'linear' or 'conv'; got {embed!r}")
        token_dim, dim, depth, heads = _check_sizes(token_dim, dim, depth, heads, num_classes)
        token_shape, channels = _token_layout(token_dim, token_shape, channels, embed)
        if pos_embed not in ("none", "learned", "sincos"):
            raise ValueError(f"pos_embed must be 'none', 'learned' or 'sincos'; got {pos_embed!r}")
        if pos_embed == "learned" and not num_tokens:
            raise ValueError("pos_embed='learned' needs num_tokens (the fixed token count)")
        if num_tokens is not None:
            num_tokens = positive_int(num_tokens, "ViT: num_tokens")
        _check_rates(
            mlp_ratio=mlp_ratio, pos_unit=pos_unit,
            pos_drop=pos_drop, drop=drop, attn_drop=attn_drop, drop_path=drop_path,
        )  # fmt: skip
        if global_pool == "token" and not class_token:
            global_pool = "avg"
        self.config: dict[str, Any] = dict(
            token_dim=token_dim, dim=dim, depth=depth, heads=heads, mlp_ratio=mlp_ratio,
            qkv_bias=qkv_bias, pos_embed=pos_embed, num_tokens=num_tokens, pos_drop=pos_drop,
            pos_unit=pos_unit, class_token=class_token, num_classes=num_classes,
            global_pool=global_pool, drop=drop, attn_drop=attn_drop, drop_path=drop_path,
            embed=embed, token_shape=token_shape, channels=channels,
        )  # fmt: skip
        self.token_dim = token_dim
        self.dim = self.embed_dim = self.num_features = dim
        self.pos_embed_type = pos_embed
        self.pos_drop = pos_drop
        self.pos_unit = pos_unit
        self.global_pool: str = global_pool
        self.num_prefix_tokens = 1 if class_token else 0
        self.num_classes = num_classes

        self.embed_type = embed
        self.embed: nn.Module = (
            nn.Linear(token_dim, dim)
            if embed == "linear"
            else ConvStem(cast(int, channels), cast(tuple[int, ...], token_shape), dim)
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if class_token else None
        self.pos_embed = (
            nn.Parameter(torch.zeros(1, num_tokens, dim))
            if pos_embed == "learned" and num_tokens
            else None
        )
        self.drop = nn.Dropout(drop)
        rates = torch.linspace(0, drop_path, depth).tolist()
        self.blocks = nn.ModuleList(
            Block(dim, heads, mlp_ratio, qkv_bias, drop, attn_drop, r) for r in rates
        )
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head: nn.Module = nn.Linear(dim, num_classes) if num_classes > 0 else nn.Identity()
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=0.02)
        if self.pos_embed is not None:
            nn.init.trunc_normal_(self.pos_embed, std=0.02)

    # ------------------------------------------------------------------ timm-style API
    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the classifier with a fresh ``Linear(dim, num_classes)`` (0: no head)."""
        self.num_classes = num_classes
        self.config["num_classes"] = num_classes
        if global_pool is not None:
            self.global_pool = global_pool
            self.config["global_pool"] = global_pool
        self.head = nn.Identity()
        if num_classes > 0:
            head = nn.Linear(self.dim, num_classes)
            nn.init.trunc_normal_(head.weight, std=0.02)
            nn.init.zeros_(head.bias)
            self.head = head

    def _position(
        self, x: Tensor, spans: Spans | None, pos_keep: Tensor | None = None
    ) -> Tensor | None:
        """Position encodings ``(B, N, dim)`` (or None), with dropped tokens' rows zeroed."""
        if self.pos_embed_type == "none":
            return None
        if self.pos_embed_type == "learned":
            assert self.pos_embed is not None  # pos_embed="learned" always builds the table
            if x.shape[1] != self.pos_embed.shape[1]:
                raise ValueError(
                    f"learned position embeddings expect {self.pos_embed.shape[1]} tokens; "
                    f"got {x.shape[1]}"
                )
            pos = self.pos_embed.expand(x.shape[0], -1, -1)
        else:
            if spans is None:
                raise ValueError("pos_embed='sincos' needs the spans (their centres) in forward")
            pos = sincos_encoding(spans.centre.to(x.device) / self.pos_unit, self.dim).to(x.dtype)
        if pos_keep is not None:
            if pos_keep.shape != x.shape[:2]:
                raise ValueError(
                    f"pos_keep must be (B, N) = {tuple(x.shape[:2])}; got {tuple(pos_keep.shape)}"
                )
            pos = pos * pos_keep.to(x.device)[..., None]
        elif self.training and self.pos_drop > 0:
            keep = torch.rand(x.shape[0], x.shape[1], 1, device=x.device) >= self.pos_drop
            pos = pos * keep
        return pos

    def embed_tokens(self, tokens: Tensor) -> Tensor:
        """``(B, N, C, *token_shape)`` or ``(B, N, token_dim)`` -> ``(B, N, dim)``."""
        if tokens.ndim < 3:
            raise ValueError(f"tokens must have shape (B, N, ...); got {tuple(tokens.shape)}")
        if tokens.ndim > 3:
            tokens = rearrange(tokens, "b n ... -> b n (...)")
        if tokens.shape[-1] != self.token_dim:
            raise ValueError(
                f"tokens flatten to {tokens.shape[-1]} values but the encoder's token_dim is "
                f"{self.token_dim}"
            )
        return self.embed(tokens)

    def forward_features(
        self,
        tokens: Tensor,
        spans: Spans | None = None,
        pos_keep: Tensor | None = None,
        key_keep: Tensor | None = None,
    ) -> Tensor:
        """Encode tokens: ``(B, N, ...)`` -> ``(B, num_prefix_tokens + N, dim)`` (after the norm).

        ``pos_keep (B, N)`` bool, when given, says which tokens keep their position encoding
        (in training and in eval alike); without it ``pos_drop`` drops positions at random while
        training only. ``key_keep (B, N)`` bool, when given, leaves the other tokens out of
        every block's keys and values (they are still queries; MP3); prefix tokens are always
        kept.
        """
        x = self.embed_tokens(tokens)
        pos = self._position(x, spans, pos_keep)
        if pos is not None:
            x = x + pos
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        if key_keep is not None:
            if key_keep.shape != tokens.shape[:2]:
                raise ValueError(
                    f"key_keep must be (B, N) = {tuple(tokens.shape[:2])}; "
                    f"got {tuple(key_keep.shape)}"
                )
            prefix = key_keep.new_ones(key_keep.shape[0], self.num_prefix_tokens)
            key_keep = torch.cat([prefix, key_keep.to(torch.bool)], dim=1).to(x.device)
        x = self.drop(x)
        for block in self.blocks:
            x = block(x, key_keep)
        return self.norm(x)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """Pool features ``(B, L, dim)`` ([CLS] or mean) and apply the head: ``(B, num_classes)``."""
        if self.global_pool == "token":
            x = x[:, 0]
        else:
            x = x[:, self.num_prefix_tokens :].mean(1)
        return x if pre_logits else self.head(x)

    def forward(
        self, tokens: Tensor, spans: Spans | None = None, pos_keep: Tensor | None = None
    ) -> Tensor:
        return self.forward_head(self.forward_features(tokens, spans, pos_keep))


# ---------------------------------------------------------------------- presets
_PRESETS: dict[str, dict[str, Any]] = {
    # 2D presets (token_dim defaults to 16x16 RGB patches; override for other patches)
    "vit_tiny": dict(token_dim=768, dim=192, depth=12, heads=3),
    "vit_small": dict(token_dim=768, dim=384, depth=12, heads=6),
    "vit_base": dict(token_dim=768, dim=768, depth=12, heads=12),
    # 1D EEG preset: 6 channels x 100-sample (1 s at 100 Hz) tokens; ~12.9M parameters with a
    # 30-token learned position embedding and a 5-class head, as in the paper's sleep staging
    "vit_eeg": dict(token_dim=600, dim=512, depth=4, heads=8),
    # CPU-sized presets for demos and tests
    "vit_eeg_mini": dict(token_dim=600, dim=128, depth=4, heads=4),
    "vit_mini": dict(token_dim=48, dim=128, depth=4, heads=4),
}

#: encoder preset name -> ``ViT`` keyword defaults
MODELS: Registry[dict[str, Any]] = Registry("model preset")
for _name, _defaults in _PRESETS.items():
    MODELS.register(_name, _defaults)


def register_model(name: str, **defaults: Any) -> None:
    """Add (or replace) a named preset for :func:`create_model`."""
    MODELS.register(name, dict(defaults))


def list_models() -> list[str]:
    """Names accepted by :func:`create_model`."""
    return MODELS.names()


def create_model(name: str, **overrides: Any) -> ViT:
    """Build a :class:`ViT` from a named preset, e.g. ``create_model("vit_small", token_dim=48)``."""
    kwargs = {**MODELS.get(name), **overrides}
    return ViT(**kwargs)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
