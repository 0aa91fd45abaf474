"""Modalities: a modality is one registered object naming an input kind's axes, channels, token
shape, span samplers, optional on-the-fly transform and default data source.

Configs name a modality (``modality: {name: spectrogram, ...}``), and training, the command
line and the experiments build from it. Adding one (spectrograms, video, ...) needs no change
to relpos: write a factory returning a :class:`Modality` and register it with
:func:`register_modality`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from relpos.core.checks import int_shape, positive_int
from relpos.core.extract import tokenize
from relpos.core.registry import Registry
from relpos.core.samplers import Grid, RandomBoxes, RandomCuboids, RandomWindows, SpanSampler
from relpos.core.spans import Spans
from relpos.core.tokenizer import Tokenizer

__all__ = [
    "MODALITIES",
    "Modality",
    "RandomCuboids",
    "get_modality",
    "image",
    "list_modalities",
    "register_modality",
    "signal",
    "video",
]

Transform = Callable[[Tensor], Tensor]


@dataclass
class Modality:
    """What the spine needs to know about an input kind.

    Attributes:
        name: the registered name (configs, logs).
        channels: C of the input ``(B, C, *extent)`` that tokens are cut from.
        token_shape: per-axis token size (D entries).
        sampler: spans for PART pretraining (off-grid).
        grid: on-grid spans for finetuning and PART-grid.
        transform: optional ``x -> x`` applied to each batch on the training device before
            tokens are cut (e.g. a raw signal ``(B, C, T)`` to a spectrogram
            ``(B, C, F, T')``); ``None``: the data is already ``(B, C, *extent)``.
        data_source: the data source (``relpos.train.data``) the command line uses for this
            modality when none is named.
        preset: a shipped preset whose ``pretrain``/``finetune`` sections are this modality's
            default training configs on the command line (``None``: built from this object).
        tokenizer: how spans become tokens (band limit, standardisation), the same for
            pretraining, finetuning and prediction; its ``token_shape`` must be this
            modality's. ``None``: the plain resize (:func:`~relpos.core.extract.extract`).
    """

    name: str
    channels: int
    token_shape: tuple[int, ...]
    sampler: SpanSampler
    grid: Grid
    transform: Transform | None = None
    data_source: str | None = None
    preset: str | None = None
    tokenizer: Tokenizer | None = None

    def __post_init__(self) -> None:
        if isinstance(self.token_shape, int):  # D is not known from one number
            raise ValueError(f"{self.name}: token_shape must hold one size per axis")
        self.token_shape = int_shape(self.token_shape, f"{self.name}: token_shape")
        self.channels = positive_int(self.channels, f"{self.name}: channels")
        if self.tokenizer is not None and self.tokenizer.token_shape != tuple(self.token_shape):
            raise ValueError(
                f"{self.name}: tokenizer token_shape {self.tokenizer.token_shape} differs from "
                f"the modality's {tuple(self.token_shape)}"
            )

    @property
    def effective_tokenizer(self) -> Tokenizer:
        """The :class:`~relpos.core.tokenizer.Tokenizer` tokens are cut with (the plain resize
        to ``token_shape`` when ``tokenizer`` is ``None``)."""
        if self.tokenizer is None:
            return Tokenizer(tuple(self.token_shape))
        return self.tokenizer

    @property
    def ndim(self) -> int:
        """D, the number of spatial axes."""
        return len(self.token_shape)

    @property
    def token_dim(self) -> int:
        """Flattened token size ``C * prod(token_shape)`` (the encoder's ``token_dim``)."""
        return self.channels * math.prod(self.token_shape)

    def prepare(self, x: Tensor) -> Tensor:
        """``x`` after the modality's transform (the identity without one)."""
        return x if self.transform is None else self.transform(x)

    def tokenize(
        self,
        x: Tensor,
        sampler: SpanSampler | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Spans]:
        """Sample spans on ``x (B, C, *extent)`` and cut tokens ``(B, N, C, *token_shape)``
        with the modality's tokenizer."""
        if x.ndim != self.ndim + 2 or x.shape[1] != self.channels:
            raise ValueError(
                f"{self.name}: expected input (B, {self.channels}, <{self.ndim} axes>); "
                f"got {tuple(x.shape)}"
            )
        return tokenize(x, sampler or self.sampler, self.effective_tokenizer, generator=generator)

    def num_grid_tokens(self, extent: Sequence[int]) -> int:
        return self.grid.num_spans(extent)


def _pair(v: int | Sequence[int]) -> tuple[int, int]:
    h, w = int_shape(v, "image: patch", 2)
    return h, w


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
    return Modality(
        "image", channels, (ph, pw), sampler, Grid((ph, pw)),
        data_source="images", preset="mnist5k-demo",
    )  # fmt: skip


def signal(channels: int = 6, window: int = 100, count: int = 40, *, snap: bool = True) -> Modality:
    """1D multichannel signals ``(B, C, T)``: ``count`` windows of ``window`` samples."""
    return Modality(
        "signal", channels, (window,), RandomWindows(window, count, snap=snap), Grid((window,)),
        data_source="eeg_store", preset="physionet2018-demo",
    )  # fmt: skip


def video(channels: int = 3, tubelet: Sequence[int] = (2, 16, 16), count: int = 196) -> Modality:
    """Videos ``(B, C, T, H, W)``: tubelets of ``tubelet`` frames x pixels."""
    ts = int_shape(tubelet, "video: tubelet", 3)
    return Modality("video", channels, ts, RandomCuboids(ts, count), Grid(ts), data_source="arrays")


#: modality name -> ``factory(**options) -> Modality``
MODALITIES: Registry[Callable[..., Modality]] = Registry("modality")
for _name, _factory in (
    ("image", image),
    ("signal", signal),
    ("video", video),
):
    MODALITIES.register(_name, _factory)
#: spectrograms of raw signals, made on the fly (dB, log-mel; boxes or time strips); imported
#: on first use (relpos.core.stft imports this module)
MODALITIES.register("spectrogram", "relpos.core.stft:spectrogram")


def register_modality(name: str, factory: Callable[..., Modality]) -> None:
    """Make ``factory(**options) -> Modality`` available by name (configs, CLI)."""
    MODALITIES.register(name, factory)


def list_modalities() -> list[str]:
    return MODALITIES.names()


def get_modality(name: str, **kwargs: Any) -> Modality:
    """Build a registered modality by name, e.g. ``get_modality("signal", channels=6)``."""
    modality = MODALITIES.get(name)(**kwargs)
    if not isinstance(modality, Modality):
        raise ValueError(f"modality {name!r}: its factory returned {type(modality).__name__}")
    return modality
