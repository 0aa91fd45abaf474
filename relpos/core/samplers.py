"""Span samplers: where the N spans of each example lie.

Every sampler maps ``(extent, batch)`` to :class:`~relpos.core.spans.Spans` of shape ``(B, N, D)``,
drawn fresh per example and per call, vectorised (no Python loop over examples or spans),
reproducible from a ``torch.Generator``, and always entirely inside ``[0, extent)``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from relpos.core.checks import int_shape
from relpos.core.random import draw
from relpos.core.spans import Spans

__all__ = ["Grid", "RandomBoxes", "RandomCuboids", "RandomSpans", "RandomWindows", "SpanSampler"]

Range = tuple[float, float]
Gen = torch.Generator | None
Device = torch.device | str | None
Extent = int | Sequence[int]


def _extent(extent: int | Sequence[int], ndim: int | None, who: str) -> tuple[int, ...]:
    ext = (int(extent),) if isinstance(extent, int) else tuple(int(e) for e in extent)
    if ndim is not None and len(ext) != ndim:
        raise ValueError(f"{who}: extent must have {ndim} axis/axes; got {ext}")
    if any(e < 1 for e in ext):
        raise ValueError(f"{who}: extent must be positive; got {ext}")
    return ext


def _rand(shape: tuple[int, ...], generator: Gen, device: Device) -> Tensor:
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
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"{who}: {field} must be finite; got ({lo}, {hi})")
    if lo > hi:
        raise ValueError(f"{who}: {field} has min > max: ({lo}, {hi})")
    if positive and lo <= 0:
        raise ValueError(f"{who}: {field} must be positive; got ({lo}, {hi})")
    return lo, hi


def _place(
    size: Tensor, extent: tuple[int, ...], snap: bool, generator: Gen, device: Device
) -> Tensor:
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
        generator: Gen = None,
        device: Device = None,
    ) -> Spans:
        """Draw spans for ``batch`` examples of spatial shape ``extent``."""

    @abstractmethod
    def num_spans(self, extent: int | Sequence[int]) -> int:
        """N, the number of spans per example for inputs of spatial shape ``extent``."""

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"


class RandomSpans(SpanSampler):
    """``count`` N-D spans per example, uniformly placed; any number of axes.

    Span sizes (input units, one per axis) are chosen in one of three ways:

    - fixed ``size`` (a number for every axis, or one per axis);
    - ``size`` plus ``scale=(lo, hi)`` (a side multiplier, log-uniform) and, for 2-D spans,
      ``ratio=(lo, hi)`` (aspect ratio of the last axis to the first, log-uniform), like a
      random-resized crop;
    - independent per-axis ``ranges=[(lo, hi), ...]``, drawn uniformly.

    Sizes are clipped to the input. ``ndim`` fixes the number of axes; by default it follows
    ``size``/``ranges`` (a single number: any extent). :class:`RandomBoxes` (2-D) and
    :class:`RandomCuboids` (3-D) are presets of it; :class:`RandomWindows` (1-D) shares its
    placement.
    """

    def __init__(
        self,
        size: float | Sequence[float] | None = None,
        count: int = 64,
        *,
        ranges: Sequence[Range] | None = None,
        scale: Range | None = None,
        ratio: Range | None = None,
        snap: bool = False,
        ndim: int | None = None,
    ) -> None:
        who = type(self).__name__
        self.count = _check_count(count, who)
        if ranges is not None and (scale is not None or ratio is not None):
            raise ValueError(f"{who}: per-axis ranges exclude scale/ratio")
        if size is None and ranges is None:
            raise ValueError(f"{who}: give a size, or per-axis ranges")
        self.size: tuple[float, ...] | float | None = None
        if size is not None:
            vals = [size] if isinstance(size, (int, float)) else list(size)
            if not vals or not all(0 < float(v) < math.inf for v in vals):
                raise ValueError(f"{who}: size must be positive and finite; got {size!r}")
            self.size = float(size) if isinstance(size, (int, float)) else tuple(map(float, vals))
        self.ranges = (
            None
            if ranges is None
            else tuple(_check_range(r, f"ranges[{i}]", who) for i, r in enumerate(ranges))
        )
        self.scale = _check_range(scale, "scale", who) if scale is not None else None
        self.ratio = _check_range(ratio, "ratio", who) if ratio is not None else None
        self.snap = bool(snap)
        axes = {len(v) for v in (self.size, self.ranges) if isinstance(v, tuple)}
        if ndim is not None:
            axes.add(int(ndim))
        if len(axes) > 1:
            raise ValueError(f"{who}: size, ranges and ndim disagree on the number of axes")
        self.ndim = axes.pop() if axes else None
        if self.ratio is not None and self.ndim not in (2, None):
            raise ValueError(f"{who}: ratio needs 2-D spans; got {self.ndim} axes")

    def num_spans(self, extent: Extent) -> int:
        return self.count

    def _min_size(self, d: int) -> tuple[float, ...]:
        if self.ranges is not None:
            return tuple(r[0] for r in self.ranges)
        if self.scale is None and self.ratio is None:
            return self._fixed(d)
        return (0.0,) * d  # random-resized sizes are clipped to the input

    def _fixed(self, d: int) -> tuple[float, ...]:
        assert self.size is not None
        return self.size if isinstance(self.size, tuple) else (self.size,) * d

    def _check_fits(self, ext: tuple[int, ...]) -> None:
        low = self._min_size(len(ext))
        if any(m > e for m, e in zip(low, ext)):
            raise ValueError(
                f"{type(self).__name__}: span size {low} is larger than the extent {ext}"
            )

    def _sizes(self, ext: tuple[int, ...], batch: int, generator: Gen, device: Device) -> Tensor:
        """Span sizes ``(B, N, D)`` for inputs of spatial shape ``ext``."""
        b, n, d = batch, self.count, len(ext)
        limit = torch.tensor(ext, dtype=torch.float32, device=device)
        if self.ranges is not None:
            lo = torch.tensor([r[0] for r in self.ranges], device=device)
            hi = torch.tensor([r[1] for r in self.ranges], device=device)
            size = lo + _rand((b, n, d), generator, device) * (hi - lo)
        else:
            size = torch.tensor(self._fixed(d), device=device).expand(b, n, d).clone()
            if self.scale is not None or self.ratio is not None:
                size = size * self._resize_factor(b, n, d, generator, device)
        if self.snap:
            size = size.round().clamp_min(1)
        return torch.minimum(size, limit)

    def _resize_factor(self, b: int, n: int, d: int, generator: Gen, device: Device) -> Tensor:
        """Per-axis multipliers ``(B, N, D)``: log-uniform scale, and aspect ratio in 2-D."""
        u = _rand((b, n, 2 if d == 2 else 1), generator, device)
        s_lo, s_hi = self.scale or (1.0, 1.0)
        log_s = math.log(s_lo) + u[..., 0] * (math.log(s_hi) - math.log(s_lo))
        if d != 2:
            return torch.stack([log_s] * d, -1).exp()
        r_lo, r_hi = self.ratio or (1.0, 1.0)
        log_r = math.log(r_lo) + u[..., 1] * (math.log(r_hi) - math.log(r_lo))
        return torch.stack([log_s - log_r / 2, log_s + log_r / 2], -1).exp()

    def __call__(
        self, extent: Extent, batch: int, *, generator: Gen = None, device: Device = None
    ) -> Spans:
        ext = _extent(extent, self.ndim, type(self).__name__)
        self._check_fits(ext)
        size = self._sizes(ext, batch, generator, device)
        return Spans(_place(size, ext, self.snap, generator, device), size)


class RandomWindows(RandomSpans):
    """``count`` 1D windows per example, uniformly placed.

    Args:
        length: fixed window length (samples), or a ``(min, max)`` range drawn uniformly per
            window (the part of the range that fits the extent).
        count: windows per example (>= 2).
        snap: integer starts and lengths (then extraction of fixed-length windows is an exact
            copy of the samples).
        scale: ``(lo, hi)``: multiply the fixed ``length`` by a log-uniform factor per window
            (multi-scale windows, the same code as :class:`RandomSpans`' ``scale``); lengths
            are clipped to the input.
    """

    def __init__(
        self, length: float | Range, count: int, *, snap: bool = False, scale: Range | None = None
    ) -> None:
        who = "RandomWindows"
        if isinstance(length, (tuple, list)):
            if scale is not None:
                raise ValueError(f"{who}: scale needs a fixed length, not a range {length!r}")
            self.length: float | Range = _check_range(length, "length", who)
            super().__init__(count=count, ranges=[self.length], snap=snap)
        else:
            if not 0 < length < math.inf:
                raise ValueError(f"{who}: length must be positive and finite; got {length}")
            self.length = float(length)
            super().__init__(self.length, count, snap=snap, ndim=1, scale=scale)

    def _check_fits(self, ext: tuple[int, ...]) -> None:
        if self.scale is not None:
            return  # multi-scale lengths are clipped to the input
        lo_needed = self.length[0] if isinstance(self.length, tuple) else self.length
        if lo_needed > ext[0]:
            raise ValueError(
                f"RandomWindows: length {self.length} is larger than the extent {ext[0]}"
            )

    def _sizes(self, ext: tuple[int, ...], batch: int, generator: Gen, device: Device) -> Tensor:
        if self.scale is not None:  # the N-D random-resized path, in 1-D
            return super()._sizes(ext, batch, generator, device)
        (n,) = ext
        shape = (batch, self.count, 1)
        if isinstance(self.length, tuple):
            lo, hi = self.length[0], min(self.length[1], n)
            if self.snap:
                lo, hi = math.ceil(lo), math.floor(hi)
                size = torch.floor(_rand(shape, generator, device) * (hi - lo + 1)) + lo
                return size.clamp_max(hi)
            return lo + _rand(shape, generator, device) * (hi - lo)
        length = float(round(self.length)) if self.snap else self.length
        return torch.full(shape, length, device=device)


class RandomBoxes(RandomSpans):
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

    def __init__(
        self,
        size: float | tuple[float, float] | None = None,
        count: int = 64,
        *,
        scale: Range | None = None,
        ratio: Range | None = None,
        height: Range | None = None,
        width: Range | None = None,
        snap: bool = False,
    ) -> None:
        who = "RandomBoxes"
        if (height is None) != (width is None):
            raise ValueError(f"{who}: give both height and width ranges, or neither")
        if height is not None and (scale is not None or ratio is not None):
            raise ValueError(f"{who}: height/width ranges exclude scale/ratio")
        if size is None and height is None:
            raise ValueError(f"{who}: give a size, or height and width ranges")
        if size is not None:
            hw = (size, size) if isinstance(size, (int, float)) else tuple(size)
            if len(hw) != 2 or min(hw) <= 0:
                raise ValueError(f"{who}: size must be a positive int or (h, w); got {size!r}")
            size = (float(hw[0]), float(hw[1]))
        ranges = None
        if height is not None and width is not None:
            ranges = [_check_range(height, "height", who), _check_range(width, "width", who)]
        super().__init__(size, count, ranges=ranges, scale=scale, ratio=ratio, snap=snap, ndim=2)

    @classmethod
    def multiscale(
        cls,
        token: int | tuple[int, int],
        count: int,
        low: float = 0.5,
        high: float = 2.0,
        **kw: Any,
    ) -> RandomBoxes:
        """Boxes whose height and width are drawn independently in ``[low, high] * token``."""
        th, tw = (token, token) if isinstance(token, int) else token
        return cls(count=count, height=(low * th, high * th), width=(low * tw, high * tw), **kw)


class RandomCuboids(RandomSpans):
    """3D spans ``(t, y, x)`` of a fixed size, uniformly placed (videos)."""

    def __init__(self, size: Sequence[float], count: int) -> None:
        super().__init__(tuple(float(s) for s in size), count, ndim=3)


def _grid_arg(value: int | Sequence[int], name: str) -> int | tuple[int, ...]:
    """A Grid argument checked: an int stays an int (every axis), a sequence a tuple."""
    shape = int_shape(value, f"Grid: {name}")
    return shape[0] if isinstance(value, int) and not isinstance(value, bool) else shape


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
        self.token_shape = _grid_arg(token_shape, "token_shape")
        self.size = None if size is None else _grid_arg(size, "size")
        self.stride = None if stride is None else _grid_arg(stride, "stride")
        self.ndim = None if isinstance(self.token_shape, int) else len(self.token_shape)

    def _per_axis(self, value: int | tuple[int, ...], d: int, field: str) -> tuple[int, ...]:
        if isinstance(value, int):
            return (value,) * d
        if len(value) != d:
            raise ValueError(f"Grid: {field} {value!r} does not match the {d}-D extent")
        return tuple(value)

    def _layout(self, extent: Extent) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        ext = _extent(extent, self.ndim, "Grid")
        d = len(ext)
        size = self._per_axis(self.size if self.size is not None else self.token_shape, d, "size")
        stride = self._per_axis(self.stride if self.stride is not None else size, d, "stride")
        if any(s > e for s, e in zip(size, ext)):
            raise ValueError(f"Grid: span size {size} is larger than the extent {ext}")
        counts = tuple((e - s) // st + 1 for e, s, st in zip(ext, size, stride))
        return size, stride, counts

    def num_spans(self, extent: Extent) -> int:
        return math.prod(self._layout(extent)[2])

    def __call__(
        self, extent: Extent, batch: int, *, generator: Gen = None, device: Device = None
    ) -> Spans:
        size, stride, counts = self._layout(extent)
        axes = [
            torch.arange(c, device=device, dtype=torch.float32) * st
            for c, st in zip(counts, stride)
        ]
        starts = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, len(size))
        sz = torch.tensor(size, dtype=torch.float32, device=device)
        centre = (starts + sz / 2).unsqueeze(0).expand(batch, -1, -1)
        return Spans(centre, sz.expand_as(centre))
