"""Normalisation and batched augmentation of images ``(B, C, H, W)``.

:func:`channel_stats` and :func:`normalize` give and apply per-channel statistics.
Augmentation works on a whole batch with a ``torch.Generator``, vectorised (no Python loop over
images): :func:`random_flip`, :func:`random_crop`, composed by :func:`make_augment` into the
``augment(x, generator)`` callable the training loop calls. Random numbers are drawn on the
generator's device and moved to ``x``'s device (:func:`relpos.core.random.draw`), so a CPU
generator can drive augmentation of a CUDA batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from relpos.core.random import draw
from relpos.core.registry import unknown_name

__all__ = [
    "Augment",
    "channel_stats",
    "channel_vector",
    "make_augment",
    "normalize",
    "random_crop",
    "random_flip",
]


# ---------------------------------------------------------------------------- normalisation
def channel_vector(value: Any, channels: int, field: str) -> Tensor:
    """``value`` (a scalar or ``channels`` numbers) as a float32 ``(channels,)`` vector; a
    ValueError names ``field`` when the count is wrong."""
    v = torch.as_tensor(value, dtype=torch.float32).reshape(-1)
    if v.numel() == 1:
        v = v.expand(channels).clone()
    if v.numel() != channels:
        raise ValueError(f"{field}: expected 1 or {channels} values; got {v.numel()}")
    return v


def channel_stats(images: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel mean and standard deviation of ``images (N, C, H, W)`` -> two ``(C,)``.

    Computed in float64 (two-pass) and returned as float32; a zero std is replaced by 1.
    """
    x = torch.as_tensor(images)
    if x.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W); got shape {tuple(x.shape)}")
    flat = rearrange(x.double(), "n c h w -> c (n h w)")
    mean = flat.mean(1)
    std = flat.std(1, correction=0)
    std = torch.where(std > 0, std, torch.ones_like(std))
    return mean.float(), std.float()


def normalize(x: Tensor, mean: Any, std: Any) -> Tensor:
    """``(x - mean) / std`` per channel for ``x (..., C, H, W)``; ``mean``/``std`` ``(C,)``."""
    c = x.shape[-3]
    m = channel_vector(mean, c, "mean").to(x.device, x.dtype)
    s = channel_vector(std, c, "std").to(x.device, x.dtype)
    return (x - m[:, None, None]) / s[:, None, None]


# ---------------------------------------------------------------------------- augmentation
Augment = Callable[[Tensor, torch.Generator], Tensor]


def _check_batch(x: Tensor, who: str) -> None:
    if x.ndim != 4:
        raise ValueError(f"{who}: x must be a batch (B, C, H, W); got shape {tuple(x.shape)}")


def random_flip(x: Tensor, generator: torch.Generator | None = None, p: float = 0.5) -> Tensor:
    """Flip each image of ``x (B, C, H, W)`` horizontally with probability ``p``."""
    _check_batch(x, "random_flip")
    flip = draw(torch.rand, x.shape[0], generator=generator, device=x.device) < p
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def random_crop(
    x: Tensor,
    generator: torch.Generator | None = None,
    padding: int = 2,
    padding_mode: Literal["constant", "reflect", "replicate"] = "constant",
) -> Tensor:
    """Pad every side by ``padding`` and crop back to ``(H, W)`` at a random offset per image.

    Vectorised: one ``F.pad`` and one advanced-indexing gather for the whole batch. With
    ``padding_mode="constant"`` the border is 0 (the mean, if ``x`` is normalised).

    Args:
        x: ``(B, C, H, W)``.
        padding: pixels per side; offsets are uniform in ``[0, 2 * padding]`` per axis.

    Returns:
        ``(B, C, H, W)``, same dtype and device.
    """
    _check_batch(x, "random_crop")
    if padding < 0:
        raise ValueError(f"padding must be >= 0; got {padding}")
    if padding == 0:
        return x
    b, _, h, w = x.shape
    pad = (padding,) * 4
    xp = F.pad(x, pad) if padding_mode == "constant" else F.pad(x, pad, mode=padding_mode)
    span = 2 * padding + 1
    uy = draw(torch.rand, b, generator=generator, device=x.device)
    ux = draw(torch.rand, b, generator=generator, device=x.device)
    oy = (uy * span).long().clamp_max(span - 1)
    ox = (ux * span).long().clamp_max(span - 1)
    rows = oy[:, None] + torch.arange(h, device=x.device)  # (B, H)
    cols = ox[:, None] + torch.arange(w, device=x.device)  # (B, W)
    bidx = torch.arange(b, device=x.device)[:, None, None]
    out = xp.permute(0, 2, 3, 1)[bidx, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return rearrange(out, "b h w c -> b c h w").contiguous()


class _Compose:
    """``augment(x, generator)`` applying named steps in order (picklable, with a repr)."""

    def __init__(self, steps: list[tuple[str, Callable[..., Tensor], dict[str, Any]]]) -> None:
        self.steps = steps

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        for _, fn, kw in self.steps:
            x = fn(x, generator, **kw)
        return x

    def __repr__(self) -> str:
        parts = [
            f"{name}({', '.join(f'{k}={v}' for k, v in kw.items())})" for name, _, kw in self.steps
        ]
        return f"augment[{', '.join(parts)}]"


#: name -> (function, its parameter, the parameter's type, its lowest and highest value)
_AUGMENTS: dict[str, tuple[Callable[..., Tensor], str, Callable[[str], Any], float, float]] = {
    "flip": (random_flip, "p", float, 0.0, 1.0),
    "crop": (random_crop, "padding", int, 0, 1024),
}


def make_augment(names: Sequence[str] | None) -> Augment:
    """Compose batch augmentations by name, applied in the given order.

    Names: ``"flip"`` (horizontal, p = 0.5; ``"flip:0.3"`` sets p) and ``"crop"`` (pad-and-crop,
    padding 2; ``"crop:4"`` sets the padding). An empty list gives the identity. Whether to flip
    is the caller's choice (do not flip digits).

    Returns:
        ``augment(x (B, C, H, W), generator) -> (B, C, H, W)``.
    """
    steps = []
    for raw in names or []:
        name, _, arg = str(raw).partition(":")
        name = name.strip().lower()
        if name not in _AUGMENTS:
            raise unknown_name("augmentation", raw, _AUGMENTS)
        fn, param, cast, lo, hi = _AUGMENTS[name]
        kw = {}
        if arg:
            try:
                kw[param] = cast(arg)
            except ValueError as err:
                raise ValueError(f"augmentation {raw!r}: bad {param} {arg!r}") from err
            if not lo <= kw[param] <= hi:  # NaN fails too
                raise ValueError(f"augmentation {raw!r}: {param} must lie in [{lo}, {hi}]")
        steps.append((name, fn, kw))
    return _Compose(steps)
