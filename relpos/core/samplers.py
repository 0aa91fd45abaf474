"""Span samplers: where the N spans of each example lie.

Every sampler maps ``(extent, batch)`` to :class:`~relpos.core.spans.Spans` of shape ``(B, N, D)``,
drawn fresh per example and per call, vectorised (no Python loop over examples or spans),
reproducible from a ``torch.Generator``, and always entirely inside ``[0, extent)``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch
from torch import Tensor

from relpos.core.random import draw
from relpos.core.spans import Spans

__all__ = ["Grid", "RandomBoxes", "RandomWindows", "SpanSampler"]

Range = tuple[float, float]


def _extent(extent: int | Sequence[int], ndim: int | None, who: str) -> tuple[int, ...]:
    ext = (int(extent),) if isinstance(extent, int) else tuple(int(e) for e in extent)
    if ndim is not None and len(ext) != ndim:
        raise ValueError(f"{who}: extent must have {ndim} axis/axes; got {ext}")
    if any(e < 1 for e in ext):
        raise ValueError(f"{who}: extent must be positive; got {ext}")
    return ext


def _rand(shape: tuple[int, ...], generator: torch.Generator | None, device) -> Tensor:
    """Uniform [0, 1) floats drawn on the generator's device and moved to ``device``."""
    return draw(torch.rand, shape, generator=generator, device=device)


def _check_count(count: int, who: str) -> int:
    if int(count) != count or count < 2:
        raise ValueError(
            f"{who}: count must be an integer >= 2 (pairs need two spans); got {count}"
        )
    return int(count)


def _check_range(value: Range, field: str, who: str, positive: bool = True) -> Range:
    if len(value) != 2:
        raise ValueError(f"{who}: {field} must be a (min, max) pair; got {value!r}")
    lo, hi = float(value[0]), float(value[1])
    if lo > hi:
        raise ValueError(f"{who}: {field} has min > max: ({lo}, {hi})")
    if positive and lo <= 0:
        raise ValueError(f"{who}: {field} must be positive; got ({lo}, {hi})")
    return lo, hi


def _place(size: Tensor, extent: tuple[int, ...], snap: bool, generator, device) -> Tensor:
    """Uniform start corners for spans of ``size (B, N, D)`` inside ``extent``; returns centres."""
    ext = torch.tensor(extent, dtype=size.dtype, device=size.device)
    u = _rand(tuple(size.shape), generator, size.device)
    if snap:
        start = torch.floor(u * (ext - size + 1)).clamp_max(ext - size)
    else:
        start = u * (ext - size)
    return start + size / 2


class SpanSampler(ABC):
    """Abstract sampler: ``sampler(extent, batch, generator=..., device=...) -> Spans``."""

    #: number of spatial axes this sampler produces (``None``: taken from the extent)
    ndim: int | None = None

    @abstractmethod
    def __call__(
        self,
        extent: int | Sequence[int],
        batch: int,
        *,
        generator: torch.Generator | None = None,
        device=None,
    ) -> Spans:
        """Draw spans for ``batch`` examples of spatial shape ``extent``."""

    @abstractmethod
    def num_spans(self, extent: int | Sequence[int]) -> int:
        """N, the number of spans per example for inputs of spatial shape ``extent``."""

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"


class RandomWindows(SpanSampler):
    """``count`` 1D windows per example, uniformly placed.

    Args:
        length: fixed window length (samples), or a ``(min, max)`` range drawn uniformly per
            window.
        count: windows per example (>= 2).
        snap: integer starts and lengths (then extraction of fixed-length windows is an exact
            copy of the samples).
    """

    ndim = 1

    def __init__(self, length: float | Range, count: int, *, snap: bool = False) -> None:
        who = "RandomWindows"
        self.count = _check_count(count, who)
        if isinstance(length, (tuple, list)):
            self.length: float | Range = _check_range(length, "length", who)
        else:
            if length <= 0:
                raise ValueError(f"{who}: length must be positive; got {length}")
            self.length = float(length)
        self.snap = bool(snap)

    def _max_length(self) -> float:
        return self.length[1] if isinstance(self.length, tuple) else self.length

    def num_spans(self, extent) -> int:
        return self.count

    def __call__(self, extent, batch, *, generator=None, device=None) -> Spans:
        (n,) = _extent(extent, 1, "RandomWindows")
        lo_needed = self.length[0] if isinstance(self.length, tuple) else self.length
        if lo_needed > n:
            raise ValueError(f"RandomWindows: length {self.length} is larger than the extent {n}")
        shape = (batch, self.count, 1)
        if isinstance(self.length, tuple):
            lo, hi = self.length[0], min(self.length[1], n)
            if self.snap:
                lo, hi = math.ceil(lo), math.floor(hi)
                size = torch.floor(_rand(shape, generator, device) * (hi - lo + 1)) + lo
                size = size.clamp_max(hi)
            else:
                size = lo + _rand(shape, generator, device) * (hi - lo)
        else:
            length = float(round(self.length)) if self.snap else self.length
            size = torch.full(shape, length, device=device)
        return Spans(_place(size, (n,), self.snap, generator, device), size)


class RandomBoxes(SpanSampler):
    """``count`` 2D boxes per example, uniformly placed.

    Sizes are ``(height, width)`` in pixels, chosen in one of three ways:

    - fixed ``size`` (int or ``(h, w)``), the PART default;
    - ``size`` plus ``scale=(lo, hi)`` (side multiplier, log-uniform) and/or
      ``ratio=(lo, hi)`` (aspect ratio w/h, log-uniform), like a random-resized crop;
    - independent ``height=(lo, hi)`` and ``width=(lo, hi)`` uniform ranges, as in the
      authors' released code for the scale/aspect extension (sides between half and twice
      the token size: ``RandomBoxes.multiscale(token=16, count=196)``).

    Sides are clipped to the image.
    """

    ndim = 2

    def __init__(
        self,
        size: int | tuple[float, float] | None = None,
        count: int = 64,
        *,
        scale: Range | None = None,
        ratio: Range | None = None,
        height: Range | None = None,
        width: Range | None = None,
        snap: bool = False,
    ) -> None:
        who = "RandomBoxes"
        self.count = _check_count(count, who)
        if (height is None) != (width is None):
            raise ValueError(f"{who}: give both height and width ranges, or neither")
        if height is not None and (scale is not None or ratio is not None):
            raise ValueError(f"{who}: height/width ranges exclude scale/ratio")
        if size is None and height is None:
            raise ValueError(f"{who}: give a size, or height and width ranges")
        self.size: tuple[float, float] | None = None
        if size is not None:
            hw = (size, size) if isinstance(size, (int, float)) else tuple(size)
            if len(hw) != 2 or min(hw) <= 0:
                raise ValueError(f"{who}: size must be a positive int or (h, w); got {size!r}")
            self.size = (float(hw[0]), float(hw[1]))
        self.scale = _check_range(scale, "scale", who) if scale is not None else None
        self.ratio = _check_range(ratio, "ratio", who) if ratio is not None else None
        self.height = _check_range(height, "height", who) if height is not None else None
        self.width = _check_range(width, "width", who) if width is not None else None
        self.snap = bool(snap)

    @classmethod
    def multiscale(
        cls, token: int | tuple[int, int], count: int, low: float = 0.5, high: float = 2.0, **kw
    ) -> RandomBoxes:
        """Boxes whose height and width are drawn independently in ``[low, high] * token``."""
        th, tw = (token, token) if isinstance(token, int) else token
        return cls(count=count, height=(low * th, high * th), width=(low * tw, high * tw), **kw)

    def num_spans(self, extent) -> int:
        return self.count

    def _min_sides(self) -> tuple[float, float]:
        if self.height is not None:
            return self.height[0], self.width[0]
        h, w = self.size
        if self.scale is None and self.ratio is None:
            return h, w
        return 0.0, 0.0  # random-resized sizes are clipped to the image

    def __call__(self, extent, batch, *, generator=None, device=None) -> Spans:
        ext = _extent(extent, 2, "RandomBoxes")
        mh, mw = self._min_sides()
        if mh > ext[0] or mw > ext[1]:
            raise ValueError(f"RandomBoxes: box size ({mh}, {mw}) is larger than the extent {ext}")
        b, n = batch, self.count
        limit = torch.tensor(ext, dtype=torch.float32, device=device)
        if self.height is not None:
            lo = torch.tensor([self.height[0], self.width[0]], device=device)
            hi = torch.tensor([self.height[1], self.width[1]], device=device)
            size = lo + _rand((b, n, 2), generator, device) * (hi - lo)
        else:
            size = torch.tensor(self.size, device=device).expand(b, n, 2).clone()
            if self.scale is not None or self.ratio is not None:
                u = _rand((b, n, 2), generator, device)
                s_lo, s_hi = self.scale or (1.0, 1.0)
                r_lo, r_hi = self.ratio or (1.0, 1.0)
                log_s = math.log(s_lo) + u[..., 0] * (math.log(s_hi) - math.log(s_lo))
                log_r = math.log(r_lo) + u[..., 1] * (math.log(r_hi) - math.log(r_lo))
                factor = torch.stack([log_s - log_r / 2, log_s + log_r / 2], -1).exp()
                size = size * factor
        if self.snap:
            size = size.round().clamp_min(1)
        size = torch.minimum(size, limit)
        return Spans(_place(size, ext, self.snap, generator, device), size)


class Grid(SpanSampler):
    """On-grid tiling (PART-grid pretraining, finetuning): spans of ``size`` every ``stride``.

    Args:
        token_shape: span size per axis (an int applies to every axis of the extent).
        stride: step between spans (default: the span size, i.e. no overlap).
        size: span size if it differs from ``token_shape`` (spans are then resized to
            ``token_shape`` by :func:`relpos.core.extract`).

    Spans are ordered row-major (last axis fastest), identical for every example.
    """

    def __init__(
        self,
        token_shape: int | Sequence[int],
        stride: int | Sequence[int] | None = None,
        *,
        size: int | Sequence[int] | None = None,
    ) -> None:
        self.token_shape = token_shape if isinstance(token_shape, int) else tuple(token_shape)
        self.size = size if size is None or isinstance(size, int) else tuple(size)
        self.stride = stride if stride is None or isinstance(stride, int) else tuple(stride)
        for name in ("token_shape", "size", "stride"):
            v = getattr(self, name)
            vals = [v] if isinstance(v, int) else list(v or [])
            if any(int(x) != x or x < 1 for x in vals):
                raise ValueError(f"Grid: {name} must hold positive integers; got {v!r}")
        self.ndim = None if isinstance(self.token_shape, int) else len(self.token_shape)

    def _per_axis(self, value, d: int, field: str) -> tuple[int, ...]:
        if isinstance(value, int):
            return (value,) * d
        if len(value) != d:
            raise ValueError(f"Grid: {field} {value!r} does not match the {d}-D extent")
        return tuple(value)

    def _layout(self, extent) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        ext = _extent(extent, self.ndim, "Grid")
        d = len(ext)
        size = self._per_axis(self.size if self.size is not None else self.token_shape, d, "size")
        stride = self._per_axis(self.stride if self.stride is not None else size, d, "stride")
        if any(s > e for s, e in zip(size, ext)):
            raise ValueError(f"Grid: span size {size} is larger than the extent {ext}")
        counts = tuple((e - s) // st + 1 for e, s, st in zip(ext, size, stride))
        return size, stride, counts

    def num_spans(self, extent) -> int:
        return math.prod(self._layout(extent)[2])

    def __call__(self, extent, batch, *, generator=None, device=None) -> Spans:
        size, stride, counts = self._layout(extent)
        axes = [
            torch.arange(c, device=device, dtype=torch.float32) * st
            for c, st in zip(counts, stride)
        ]
        starts = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, len(size))
        sz = torch.tensor(size, dtype=torch.float32, device=device)
        centre = (starts + sz / 2).unsqueeze(0).expand(batch, -1, -1)
        return Spans(centre, sz.expand_as(centre))
