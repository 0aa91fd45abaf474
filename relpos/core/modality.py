"""Modalities: a modality is only a choice of axes, channels, token shape and samplers.

Adding a new modality (spectrograms, video, ...) needs no change to the core: write a factory
returning a :class:`Modality` and, to make it nameable from configs and the CLI, register it
with :func:`register_modality`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from relpos.core.extract import extract
from relpos.core.samplers import Grid, RandomBoxes, RandomWindows, SpanSampler
from relpos.core.spans import Spans

__all__ = [
    "Modality",
    "get_modality",
    "image",
    "list_modalities",
    "register_modality",
    "signal",
    "spectrogram",
    "video",
]


@dataclass
class Modality:
    """What the spine needs to know about an input kind.

    Attributes:
        name: a label for logs.
        channels: C of the input ``(B, C, *extent)``.
        token_shape: per-axis token size (D entries).
        sampler: spans for PART pretraining (off-grid).
        grid: on-grid spans for finetuning and PART-grid.
    """

    name: str
    channels: int
    token_shape: tuple[int, ...]
    sampler: SpanSampler
    grid: Grid

    @property
    def ndim(self) -> int:
        return len(self.token_shape)

    @property
    def token_dim(self) -> int:
        """Flattened token size ``C * prod(token_shape)`` (the encoder's ``token_dim``)."""
        return self.channels * math.prod(self.token_shape)

    def tokenize(
        self,
        x: Tensor,
        sampler: SpanSampler | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Spans]:
        """Sample spans on ``x (B, C, *extent)`` and extract tokens ``(B, N, C, *token_shape)``."""
        if x.ndim != self.ndim + 2 or x.shape[1] != self.channels:
            raise ValueError(
                f"{self.name}: expected input (B, {self.channels}, <{self.ndim} axes>); "
                f"got {tuple(x.shape)}"
            )
        sampler = sampler or self.sampler
        spans = sampler(tuple(x.shape[2:]), x.shape[0], generator=generator, device=x.device)
        return extract(x, spans, self.token_shape), spans

    def num_grid_tokens(self, extent: Sequence[int]) -> int:
        return self.grid.num_spans(extent)


def _pair(v: int | Sequence[int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def image(
    channels: int = 3,
    patch: int | Sequence[int] = 16,
    count: int = 196,
    *,
    multiscale: bool = False,
    snap: bool = False,
) -> Modality:
    """2D images ``(B, C, H, W)``: square-ish boxes of ``patch`` pixels resized to ``patch``.

    ``multiscale=True`` draws box sides in ``[0.5, 2] * patch`` (the scale/aspect extension).
    """
    ph, pw = _pair(patch)
    if multiscale:
        sampler: SpanSampler = RandomBoxes.multiscale((ph, pw), count, snap=snap)
    else:
        sampler = RandomBoxes(size=(ph, pw), count=count, snap=snap)
    return Modality("image", channels, (ph, pw), sampler, Grid((ph, pw)))


def signal(channels: int = 6, window: int = 100, count: int = 40, *, snap: bool = True) -> Modality:
    """1D multichannel signals ``(B, C, T)``: ``count`` windows of ``window`` samples."""
    return Modality(
        "signal", channels, (window,), RandomWindows(window, count, snap=snap), Grid((window,))
    )


def spectrogram(
    channels: int = 1,
    freq_patch: int = 16,
    time_patch: int = 16,
    count: int = 64,
    *,
    snap: bool = False,
) -> Modality:
    """Spectrograms ``(B, C, F, T)``: boxes of ``freq_patch x time_patch`` bins."""
    return Modality(
        "spectrogram",
        channels,
        (freq_patch, time_patch),
        RandomBoxes(size=(freq_patch, time_patch), count=count, snap=snap),
        Grid((freq_patch, time_patch)),
    )


class RandomCuboids(SpanSampler):
    """3D spans ``(t, y, x)`` of fixed size, uniformly placed (used by :func:`video`)."""

    ndim = 3

    def __init__(self, size: Sequence[int], count: int) -> None:
        if count < 2:
            raise ValueError(f"RandomCuboids: count must be >= 2; got {count}")
        self.size = tuple(float(s) for s in size)
        self.count = int(count)

    def num_spans(self, extent) -> int:
        return self.count

    def __call__(self, extent, batch, *, generator=None, device=None) -> Spans:
        ext = torch.tensor(list(extent), dtype=torch.float32, device=device)
        size = torch.tensor(self.size, device=device).expand(batch, self.count, 3)
        if bool((size[0, 0] > ext).any()):
            raise ValueError(
                f"RandomCuboids: size {self.size} is larger than the extent {tuple(extent)}"
            )
        gdev = generator.device if generator is not None else device
        u = torch.rand((batch, self.count, 3), generator=generator, device=gdev).to(size.device)
        return Spans(u * (ext - size) + size / 2, size.clone())


def video(channels: int = 3, tubelet: Sequence[int] = (2, 16, 16), count: int = 196) -> Modality:
    """Videos ``(B, C, T, H, W)``: tubelets of ``tubelet`` frames x pixels."""
    ts = tuple(int(t) for t in tubelet)
    return Modality("video", channels, ts, RandomCuboids(ts, count), Grid(ts))


_MODALITIES: dict[str, Callable[..., Modality]] = {
    "image": image,
    "signal": signal,
    "spectrogram": spectrogram,
    "video": video,
}


def register_modality(name: str, factory: Callable[..., Modality]) -> None:
    """Make ``factory(**kwargs) -> Modality`` available by name (configs, CLI)."""
    _MODALITIES[name] = factory


def list_modalities() -> list[str]:
    return sorted(_MODALITIES)


def get_modality(name: str, **kwargs: Any) -> Modality:
    """Build a registered modality by name, e.g. ``get_modality("signal", channels=6)``."""
    if name not in _MODALITIES:
        raise ValueError(f"unknown modality {name!r}; known: {', '.join(list_modalities())}")
    return _MODALITIES[name](**kwargs)
