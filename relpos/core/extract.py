"""Batched crop-and-resize of spans into fixed-shape tokens, for any number of axes.

``extract(x, spans, token_shape)`` resamples every span of every example to ``token_shape``
in one batched operation on ``x``'s device. Everything starts from one primitive: gathering
a window of samples per span as contiguous rows of the input (``index_select`` over a strided
row view), then

- **exact**: spans with integer starts and ``size == token_shape``: the window *is* the token
  (a copy of the samples, bit-identical to slicing);
- **shifted**: spans of exactly ``token_shape`` at fractional positions: a ``(t + 1)``-window
  per axis, linearly interpolated (``lerp``) by the fractional offset;
- **resampled**: otherwise each output sample is a weighted mean of the input samples around
  its centre, with a triangle (linear) kernel whose half-width is ``max(1, span / token)``
  input samples along each axis: linear interpolation when a span is smaller than its token,
  an antialiasing low-pass when it is larger. Only samples overlapping the span itself carry
  weight (weights are renormalised), so a span touching the border reads no padding and no
  content outside the span. Axes are separable: 1D uses ``K`` taps per output sample, 2D/3D
  contract the window with dense per-axis weights (``einsum``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from relpos.core.checks import int_shape
from relpos.core.spans import Spans

if TYPE_CHECKING:
    from relpos.core.samplers import SpanSampler
    from relpos.core.tokenizer import Tokenizer

__all__ = ["extract", "tokenize"]

_WIN_LETTERS = "dhw"  # window-axis letters for the einsum of the N-D path (D <= 3)
_OUT_LETTERS = "zyx"


def _token_shape(token_shape: int | Sequence[int], d: int) -> tuple[int, ...]:
    return int_shape(token_shape, "token_shape", d)


def _gather_windows(x: Tensor, starts: Tensor, window: Sequence[int]) -> Tensor:
    """Windows of shape ``window`` at integer ``starts (B, N, D)`` -> ``(B, N, C, *window)``.

    The last axis of a window is a contiguous row of ``x``; every row of every window of every
    span is fetched by one ``index_select`` over a strided view of ``x``'s rows, so the copy
    runs at memory speed in parallel.
    """
    x = x.contiguous()
    b, c = x.shape[:2]
    d = len(window)
    n = starts.shape[1]
    dev = x.device
    stride = torch.tensor(x.stride()[2:], device=dev)
    offset = (
        torch.arange(b, device=dev)[:, None, None] * x.stride(0)
        + torch.arange(c, device=dev)[None, None, :] * x.stride(1)
        + (starts * stride).sum(-1)[:, :, None]
    )  # (B, N, C): first sample of each window
    offset = offset.reshape(b, n, c, *([1] * (d - 1)))
    for a in range(d - 1):  # rows of the window along the leading axes
        shape = [1] * (d - 1)
        shape[a] = window[a]
        offset = offset + (torch.arange(window[a], device=dev) * x.stride(2 + a)).view(shape)
    flat = x.reshape(-1)
    rows = flat.as_strided((flat.numel() - window[-1] + 1, window[-1]), (1, 1))
    return rows.index_select(0, offset.reshape(-1)).view(b, n, c, *window)


def _axis_weights(start: Tensor, size: Tensor, t: int, first: Tensor, count: int) -> Tensor:
    """Resampling weights of one axis.

    Args:
        start, size: ``(B, N)`` span start and size along this axis.
        t: output samples (token length along this axis).
        first: ``(B, N, 1)`` or ``(B, N, t)`` long, first input sample index considered.
        count: input samples considered from ``first`` on.

    Returns:
        ``(B, N, t, count)`` weights; each output sample's weights sum to one.
    """
    r = size / t  # input samples per output sample
    h = r.clamp_min(1.0)[..., None, None]
    k = torch.arange(t, device=start.device, dtype=start.dtype) + 0.5
    p = start[..., None] + k * r[..., None]  # (B, N, t) output sample centres
    idx = first[..., None] + torch.arange(count, device=start.device)  # (B, N, t|1, count)
    ctr = idx.to(start.dtype) + 0.5
    w = (1.0 - (ctr - p[..., None]).abs() / h).clamp_min(0.0)
    lo = start[..., None, None]
    hi = (start + size)[..., None, None]
    w = w * ((ctr + 0.5 > lo) & (ctr - 0.5 < hi))  # only samples overlapping the span
    return w / w.sum(-1, keepdim=True).clamp_min(torch.finfo(w.dtype).tiny)


def _shift(x: Tensor, start: Tensor, ts: tuple[int, ...], extent: Tensor) -> Tensor:
    """Spans of exactly ``token_shape`` at fractional starts: separable linear interpolation.

    Along an axis with a span of ``t`` samples starting at ``a``, output sample ``k`` is
    ``(1 - f) x[w + k] + f x[w + k + 1]`` with ``w = floor(a)`` (kept inside the input) and
    ``f = a - w``; both taps always overlap the span.
    """
    t = torch.tensor(ts, device=x.device, dtype=start.dtype)
    wstart = torch.minimum(torch.floor(start), extent - t - 1).clamp_min(0)
    frac = start - wstart  # (B, N, D) in [0, 1]
    block = _gather_windows(x, wstart.long(), tuple(n + 1 for n in ts))  # (B, N, C, *(t + 1))
    d = len(ts)
    for a in range(d):
        f = frac[..., a].reshape(frac.shape[:2] + (1,) * (d + 1))
        axis = 3 + a
        block = torch.lerp(block.narrow(axis, 0, ts[a]), block.narrow(axis, 1, ts[a]), f)
    return block


def _resample(x: Tensor, spans: Spans, ts: tuple[int, ...], extent: tuple[int, ...]) -> Tensor:
    """General case: a window over every sample each span overlaps, then triangle weights."""
    d = len(ts)
    start, size = spans.start, spans.size
    window = tuple(min(math.ceil(float(size[..., a].max())) + 1, extent[a]) for a in range(d))
    wstart = torch.stack(
        [torch.floor(start[..., a]).clamp(0, extent[a] - window[a]) for a in range(d)], -1
    ).long()
    block = _gather_windows(x, wstart, window)  # (B, N, C, *window)
    if d == 1:
        # K taps per output sample, gathered from the window
        (t,), (w,) = ts, window
        s0, sz = start[..., 0], size[..., 0]
        r = sz / t
        h = r.clamp_min(1.0)
        taps = min(math.ceil(2 * float(h.max())), w)
        p = s0[..., None] + (torch.arange(t, device=x.device, dtype=s0.dtype) + 0.5) * r[..., None]
        first = (torch.floor(p - h[..., None] - 0.5) + 1).long()  # (B, N, t) absolute
        first = torch.minimum(first.clamp_min(wstart), wstart + w - taps)
        weights = _axis_weights(s0, sz, t, first, taps)  # (B, N, t, K)
        rel = (first - wstart)[..., None] + torch.arange(taps, device=x.device)  # (B, N, t, K)
        b, n, c = block.shape[:3]
        idx = rel.reshape(b, n, 1, t * taps).expand(b, n, c, t * taps)
        tapped = block.gather(-1, idx).view(b, n, c, t, taps)
        return (tapped * weights[:, :, None]).sum(-1)
    axis_weights = [
        _axis_weights(start[..., a], size[..., a], ts[a], wstart[..., a, None], window[a])
        for a in range(d)
    ]
    win, out = _WIN_LETTERS[3 - d :], _OUT_LETTERS[3 - d :]
    expr = f"bnc{win}," + ",".join(f"bn{o}{i}" for o, i in zip(out, win)) + f"->bnc{out}"
    return torch.einsum(expr, block, *axis_weights)


def extract(x: Tensor, spans: Spans, token_shape: int | Sequence[int]) -> Tensor:
    """Crop every span of every example and resize it to ``token_shape``.

    Args:
        x: ``(B, C, *extent)`` input (signals ``(B, C, T)``, images ``(B, C, H, W)``,
            videos ``(B, C, T, H, W)``).
        spans: ``(B, N, D)`` spans inside ``extent`` (``D = x.ndim - 2``).
        token_shape: output size per axis (an int applies to every axis).

    Returns:
        ``(B, N, C, *token_shape)`` on ``x``'s device; same dtype as a floating ``x``,
        float32 for integer inputs (e.g. uint8 images).
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor; got {type(x).__name__}")
    d = spans.ndim
    if x.ndim != d + 2:
        raise ValueError(
            f"x must have shape (B, C, *extent) with {d} spatial axis/axes to match spans "
            f"(D={d}), i.e. rank {d + 2}; got rank {x.ndim}, shape {tuple(x.shape)}"
        )
    if d > 3:
        raise ValueError(f"extract supports D <= 3 spatial axes; got D={d}")
    if spans.batch != x.shape[0]:
        raise ValueError(f"spans batch {spans.batch} differs from x batch {x.shape[0]}")
    ts = _token_shape(token_shape, d)
    extent = tuple(x.shape[2:])
    out_dtype = x.dtype if x.is_floating_point() else torch.float32
    work = torch.float64 if x.dtype == torch.float64 else torch.float32
    spans = spans.to(device=x.device, dtype=work)
    start, size = spans.start, spans.size
    ext = torch.tensor(extent, device=x.device, dtype=work)
    tok = torch.tensor(ts, device=x.device, dtype=work)
    # one host sync for all checks and the choice of path
    outside, integer, token_sized = torch.stack(
        [
            ((start < -1e-4) | (start + size > ext + 1e-4)).any(),
            (start == start.round()).all(),
            (size == tok).all(),
        ]
    ).tolist()
    if outside:
        raise ValueError(
            f"spans must lie inside the input extent {extent}: got starts down to "
            f"{start.amin((0, 1)).tolist()} and ends up to {(start + size).amax((0, 1)).tolist()}"
        )
    if x.numel() == 0 or spans.num == 0:  # no example, channel or span: nothing to gather
        return torch.zeros(
            (x.shape[0], spans.num, x.shape[1], *ts), dtype=out_dtype, device=x.device
        )
    if integer and token_sized:
        return _gather_windows(x, start.long(), ts).to(out_dtype)
    if token_sized:
        return _shift(x.to(work), start, ts, ext).to(out_dtype)
    return _resample(x.to(work), spans, ts, extent).to(out_dtype)


def tokenize(
    x: Tensor,
    sampler: SpanSampler,
    token_shape: int | Sequence[int] | Tokenizer,
    *,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Spans]:
    """Sample spans over ``x (B, C, *extent)`` with ``sampler`` and cut them into tokens.

    The one sampler -> extract step of the spine. ``token_shape`` is an output size per axis
    (an int applies to every axis: :func:`extract`) or a
    :class:`~relpos.core.tokenizer.Tokenizer` (band-limited, standardised tokens). Returns
    ``tokens (B, N, C, *token_shape)`` and the ``Spans`` they were cut from (centres and sizes
    ``(B, N, D)``).
    """
    spans = sampler(tuple(x.shape[2:]), x.shape[0], generator=generator, device=x.device)
    if isinstance(token_shape, (int, Sequence)):
        return extract(x, spans, token_shape), spans
    return token_shape(x, spans), spans
