"""Spans (continuous boxes/windows in input-sample units), pair sampling and relative targets.

Coordinates are continuous: sample (pixel) ``i`` covers ``[i, i + 1)``, so a span starting at
``a`` with size ``s`` covers ``[a, a + s)`` and has centre ``a + s / 2``. The last axis of every
tensor here (``D``) follows the order of the input's spatial axes: ``(t,)`` for signals,
``(y, x)`` for images of shape ``(H, W)``, ``(t, y, x)`` for videos.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from relpos.core.random import draw

Scale = Literal["ratio", "log"] | None

__all__ = ["Spans", "axis_names", "relative_targets", "sample_pairs", "target_names"]


def axis_names(ndim: int) -> tuple[str, ...]:
    """Conventional names of the span axes: ``("t",)``, ``("y", "x")``, ``("t", "y", "x")``."""
    if ndim == 1:
        return ("t",)
    if ndim == 2:
        return ("y", "x")
    if ndim == 3:
        return ("t", "y", "x")
    return tuple(f"a{i}" for i in range(ndim))


def target_names(ndim: int, scale: Scale = None) -> tuple[str, ...]:
    """Names of the target components returned by :func:`relative_targets`.

    ``("t",)`` / ``("y", "x")`` for translations, plus ``("s_y", "s_x")`` (size terms) when
    ``scale`` is set.
    """
    names = axis_names(ndim)
    if scale is None:
        return names
    return names + tuple(f"s_{n}" for n in names)


@dataclass(frozen=True)
class Spans:
    """A batch of N spans per example in D dimensions.

    Attributes:
        centre: ``(B, N, D)`` float tensor, span centres in input-sample units.
        size: ``(B, N, D)`` float tensor, span sizes (extent along each axis), all > 0.
    """

    centre: Tensor
    size: Tensor

    def __post_init__(self) -> None:
        c, s = self.centre, self.size
        if not isinstance(c, Tensor) or not isinstance(s, Tensor):
            raise TypeError("Spans.centre and Spans.size must be torch tensors")
        if c.ndim != 3:
            raise ValueError(f"Spans.centre must have shape (B, N, D); got {tuple(c.shape)}")
        if s.shape != c.shape:
            raise ValueError(
                f"Spans.size shape {tuple(s.shape)} differs from Spans.centre shape {tuple(c.shape)}"
            )
        if not (c.is_floating_point() and s.is_floating_point()):
            raise ValueError("Spans.centre and Spans.size must be floating-point tensors")
        # one host sync for both checks; NaN and inf fail them too
        if c.numel() and not bool(((s > 0) & s.isfinite()).all() & c.isfinite().all()):
            _raise_bad(c, s)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_corners(cls, start: Tensor, end: Tensor) -> Spans:
        """Build spans from start and (exclusive) end corners, each ``(B, N, D)``."""
        start = torch.as_tensor(start)
        end = torch.as_tensor(end)
        return cls(centre=(start + end) / 2, size=end - start)

    @classmethod
    def cat(cls, spans: Sequence[Spans], dim: int = 1) -> Spans:
        """Concatenate spans along the batch (``dim=0``) or token (``dim=1``) axis."""
        return cls(
            torch.cat([s.centre for s in spans], dim=dim),
            torch.cat([s.size for s in spans], dim=dim),
        )

    # ------------------------------------------------------------------ shape helpers
    @property
    def batch(self) -> int:
        """B, the number of examples."""
        return self.centre.shape[0]

    @property
    def num(self) -> int:
        """N, the number of spans per example."""
        return self.centre.shape[1]

    @property
    def ndim(self) -> int:
        """D, the number of spatial axes."""
        return self.centre.shape[2]

    @property
    def device(self) -> torch.device:
        return self.centre.device

    @property
    def dtype(self) -> torch.dtype:
        return self.centre.dtype

    def __len__(self) -> int:
        return self.batch

    def __getitem__(self, index: Any) -> Spans:
        """Index the (B, N) axes; an integer batch index keeps a batch axis of one.

        ``spans[3]`` -> spans of example 3 as ``(1, N, D)``; ``spans[:, :10]`` -> first ten
        spans of every example; ``spans[mask]`` with a ``(B,)`` boolean mask selects examples.
        """
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        c, s = self.centre[index], self.size[index]
        if c.ndim != 3:
            raise IndexError(
                "Spans indexing must keep the (B, N, D) layout; index the batch and token "
                f"axes with slices, tensors or a single batch integer (got result {tuple(c.shape)})"
            )
        return Spans(c, s)

    def to(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> Spans:
        """Move (and optionally cast) both tensors."""
        return Spans(
            self.centre.to(device=device, dtype=dtype), self.size.to(device=device, dtype=dtype)
        )

    # ------------------------------------------------------------------ geometry
    def corners(self) -> tuple[Tensor, Tensor]:
        """Start and (exclusive) end per axis, each ``(B, N, D)``."""
        half = self.size / 2
        return self.centre - half, self.centre + half

    @property
    def start(self) -> Tensor:
        """``(B, N, D)`` start corner."""
        return self.centre - self.size / 2

    def inside(self, extent: Sequence[int], atol: float = 1e-4) -> Tensor:
        """``(B, N)`` bool: whether each span lies entirely inside ``[0, extent)``."""
        lo, hi = self.corners()
        ext = torch.as_tensor(list(extent), dtype=self.dtype, device=self.device)
        return ((lo >= -atol) & (hi <= ext + atol)).all(-1)

    def is_integer(self, token_shape: Sequence[int] | None = None) -> bool:
        """True when every start is an integer (and, if given, every size equals ``token_shape``)."""
        start = self.start
        ok = bool(torch.equal(start, start.round()))
        if ok and token_shape is not None:
            ts = torch.as_tensor(list(token_shape), dtype=self.dtype, device=self.device)
            ok = bool((self.size == ts).all())
        return ok

    def snap(self) -> Spans:
        """Round starts and sizes to whole samples (sizes at least 1)."""
        start = self.start.round()
        size = self.size.round().clamp_min(1)
        return Spans(start + size / 2, size)

    def __repr__(self) -> str:
        return f"Spans(B={self.batch}, N={self.num}, D={self.ndim}, device={self.device})"


def _raise_bad(centre: Tensor, size: Tensor) -> None:
    """The ValueError of spans with a non-finite centre or a size that is not positive and
    finite, naming a few of the bad values."""
    bad_size = ~((size > 0) & size.isfinite())
    if bool(bad_size.any()):
        values = size[bad_size].flatten()[:3].tolist()
        raise ValueError(f"Spans.size must be positive and finite; got values such as {values}")
    values = centre[~centre.isfinite()].flatten()[:3].tolist()
    raise ValueError(f"Spans.centre must be finite; got values such as {values}")


def _randint(
    high: int,
    shape: tuple[int, ...],
    generator: torch.Generator | None,
    device: torch.device | str | None,
) -> Tensor:
    """Uniform integers in [0, high), drawn on the generator's device, returned on ``device``."""
    return draw(torch.randint, high, shape, generator=generator, device=device)


def sample_pairs(
    batch: int,
    num_tokens: int,
    num_pairs: int,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    self_pairs: bool = False,
) -> Tensor:
    """Draw ``num_pairs`` random (reference, target) index pairs per example.

    Pairs are drawn independently per example (with replacement across the M pairs); without
    ``self_pairs`` the target is never the reference.

    Returns:
        ``(B, M, 2)`` long tensor; ``[..., 0]`` is the reference, ``[..., 1]`` the target.
    """
    if num_pairs < 1:
        raise ValueError(f"num_pairs must be >= 1; got {num_pairs}")
    if self_pairs and num_tokens < 1:
        raise ValueError(
            f"num_tokens must be >= 1 to form pairs (self pairs allowed); got {num_tokens}"
        )
    if not self_pairs and num_tokens < 2:
        raise ValueError(
            f"num_tokens must be >= 2 to form pairs of distinct tokens; got {num_tokens}"
        )
    ref = _randint(num_tokens, (batch, num_pairs), generator, device)
    if self_pairs:
        tgt = _randint(num_tokens, (batch, num_pairs), generator, device)
    else:
        # draw from the N - 1 other tokens and step over the reference
        tgt = _randint(num_tokens - 1, (batch, num_pairs), generator, device)
        tgt = tgt + (tgt >= ref).long()
    return torch.stack([ref, tgt], dim=-1)


def _check_pairs(pairs: Tensor, spans: Spans) -> None:
    if pairs.ndim != 3 or pairs.shape[-1] != 2 or pairs.shape[0] != spans.batch:
        raise ValueError(
            f"pairs must have shape (B, M, 2) with B={spans.batch}; got {tuple(pairs.shape)}"
        )
    if pairs.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"pairs must be an integer tensor; got dtype {pairs.dtype}")
    if pairs.numel() and (int(pairs.min()) < 0 or int(pairs.max()) >= spans.num):
        raise ValueError(
            f"pairs index out of range: values must lie in [0, {spans.num}) for N={spans.num} "
            f"spans; got min {int(pairs.min())}, max {int(pairs.max())}"
        )


def gather_tokens(values: Tensor, index: Tensor) -> Tensor:
    """Gather along the token axis: ``values (B, N, F)``, ``index (B, M)`` -> ``(B, M, F)``."""
    return torch.gather(values, 1, index.unsqueeze(-1).expand(-1, -1, values.shape[-1]))


def relative_targets(spans: Spans, pairs: Tensor, scale: Scale = None) -> Tensor:
    """Relative position of each target span in the frame of its reference span.

    For pair (r, t) and axis a: ``(c_t,a - c_r,a) / s_r,a``; with ``scale="ratio"`` the size
    ratios ``s_t,a / s_r,a`` follow, with ``scale="log"`` their logarithms.

    Args:
        spans: N spans per example.
        pairs: ``(B, M, 2)`` long (reference, target) indices into the N spans.
        scale: ``None``, ``"ratio"`` or ``"log"``.

    Returns:
        ``(B, M, D)``, or ``(B, M, 2D)`` when ``scale`` is set.
    """
    if scale not in (None, "ratio", "log"):
        raise ValueError(f"scale must be None, 'ratio' or 'log'; got {scale!r}")
    _check_pairs(pairs, spans)
    pairs = pairs.long()
    c_ref = gather_tokens(spans.centre, pairs[..., 0])
    c_tgt = gather_tokens(spans.centre, pairs[..., 1])
    s_ref = gather_tokens(spans.size, pairs[..., 0])
    delta = (c_tgt - c_ref) / s_ref
    if scale is None:
        return delta
    ratio = gather_tokens(spans.size, pairs[..., 1]) / s_ref
    return torch.cat([delta, ratio if scale == "ratio" else ratio.log()], dim=-1)
