"""Spectrograms computed on the fly in torch, and the ``spectrogram`` modality.

:class:`Spectrogram` turns raw signals ``(B, C, T)`` into STFT magnitudes in dB
``(B, C, F, T')`` on the training device (``torch.stft``; the same frames, window and
``scaling="spectrum"`` as :func:`scipy.signal.stft`), with a log-mel filterbank as an option.
:func:`spectrogram` is the registered modality: 2-D boxes over frequency x time (targets
``(Δf, Δt)``), or time strips spanning every frequency (``spans="strips"``: the frequencies
fold into channels, ``(B, C * F, T')``, and the targets are ``Δt`` alone).

Nothing here knows a domain: the sampling rate and the frequency band are options.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import torch
from einops import einsum, rearrange
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from torch import Tensor

from relpos.core.modality import Modality
from relpos.core.samplers import Grid, RandomBoxes, RandomWindows, SpanSampler

__all__ = ["Spectrogram", "SpectrogramConfig", "mel_filterbank", "spectrogram"]

Samples = Annotated[int, Field(ge=1, le=1_048_576)]
Hertz = Annotated[float, Field(ge=0.0, le=10_000_000.0)]


class SpectrogramConfig(BaseModel):
    """The transform's options; every number bounded.

    ``fs`` (Hz) gives the frequency axis its units (``fmin``/``fmax``, mel). ``hop`` defaults to
    ``n_fft // 4`` and ``win_length`` to ``n_fft``. ``center`` pads ``n_fft // 2`` samples at
    both ends (``pad_mode``: ``constant`` zeros as scipy's default ``boundary="zeros"``, or
    ``reflect``, slower on CPU), so ``T' = 1 + T // hop``. Magnitudes are scaled as scipy's
    ``scaling="spectrum"`` (divided by the window's sum) and given in dB, floored at ``amin``
    (and at ``top_db`` below each map's maximum when set). Linear bins outside
    ``[fmin, fmax]`` are dropped; ``n_mels`` pools the power into that many triangular mel
    bands (HTK scale) over ``[fmin, fmax]``. ``norm="instance"`` standardises each example's
    channel map (zero mean, unit variance over frequency and time).
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    fs: Annotated[float, Field(gt=0.0, le=10_000_000.0)] = 100.0
    n_fft: Annotated[int, Field(ge=2, le=65_536)] = 100
    hop: Samples | None = None
    win_length: Samples | None = None
    window: Literal["hann", "hamming", "blackman", "boxcar"] = "hann"
    center: bool = True
    pad_mode: Literal["constant", "reflect"] = "constant"
    fmin: Hertz = 0.0
    fmax: Hertz | None = None
    n_mels: Annotated[int, Field(ge=2, le=1024)] | None = None
    amin: Annotated[float, Field(gt=0.0, le=1.0)] = 1e-6
    top_db: Annotated[float, Field(gt=0.0, le=400.0)] | None = None
    norm: Literal["none", "instance"] = "none"

    @model_validator(mode="after")
    def _check(self) -> SpectrogramConfig:
        if self.win_length is not None and self.win_length > self.n_fft:
            raise ValueError(f"win_length {self.win_length} exceeds n_fft {self.n_fft}")
        top = self.fs / 2
        if self.fmax is not None and self.fmax > top:
            raise ValueError(f"fmax {self.fmax} Hz is above the Nyquist frequency {top} Hz")
        if self.fmin >= (self.fmax if self.fmax is not None else top):
            raise ValueError(f"fmin {self.fmin} Hz must be below fmax ({self.fmax or top} Hz)")
        return self

    @property
    def hop_length(self) -> int:
        return self.hop or max(1, self.n_fft // 4)

    @property
    def top(self) -> float:
        """The highest frequency kept (``fmax``, default Nyquist)."""
        return self.fmax if self.fmax is not None else self.fs / 2


def _hz_to_mel(f: Tensor) -> Tensor:
    return 2595.0 * torch.log10(1.0 + f / 700.0)


def _mel_to_hz(m: Tensor) -> Tensor:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def mel_filterbank(freqs: Tensor, n_mels: int, fmin: float, fmax: float) -> tuple[Tensor, Tensor]:
    """Triangular mel filters over the FFT bin frequencies ``freqs (K,)`` (HTK mel scale, peak
    1, as ``torchaudio.functional.melscale_fbanks(norm=None)``).

    Returns ``(weights (n_mels, K), centres (n_mels,) in Hz)``.

    Raises:
        ValueError: a band holds no FFT bin (fewer mels, a wider band or a larger n_fft).
    """
    edges = _mel_to_hz(
        torch.linspace(float(_hz_to_mel(torch.tensor(fmin))), float(_hz_to_mel(torch.tensor(fmax))),
                       n_mels + 2, dtype=torch.float64)
    )  # fmt: skip
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    f = freqs.to(torch.float64)[None]
    up, down = (f - lo) / (mid - lo), (hi - f) / (hi - mid)
    weights = torch.clamp(torch.minimum(up, down), min=0.0)
    empty = (weights.sum(1) == 0).nonzero().flatten().tolist()
    if empty:
        raise ValueError(
            f"spectrogram: mel band {empty[0]} ({float(lo[empty[0]]):.2f}-"
            f"{float(hi[empty[0]]):.2f} Hz) holds no FFT bin: use fewer n_mels or a larger n_fft"
        )
    return weights.float(), mid.flatten().float()


class Spectrogram:
    """STFT magnitude in dB (or log-mel), computed in torch on the input's device.

    ``(B, C, T) -> (B, C, F, T')``, or ``(B, C * F, T')`` with ``fold=True`` (each channel's
    frequencies become channels of their own: the input of time strips). ``F`` is
    :attr:`n_freq`, ``T'`` is :meth:`frames`.
    """

    def __init__(self, config: SpectrogramConfig | None = None, *, fold: bool = False) -> None:
        self.config = c = config or SpectrogramConfig()
        self.fold = bool(fold)
        self.win_length = c.win_length or c.n_fft
        bins = torch.arange(c.n_fft // 2 + 1, dtype=torch.float64) * c.fs / c.n_fft
        self.mel: Tensor | None = None
        if c.n_mels is None:  # the bins in [fmin, fmax]: a contiguous run of rows
            keep = ((bins >= c.fmin - 1e-9) & (bins <= c.top + 1e-9)).nonzero().flatten()
            if not len(keep):
                raise ValueError(f"spectrogram: no FFT bin between {c.fmin} and {c.top} Hz")
            self.lo, self.hi = int(keep[0]), int(keep[-1]) + 1
            self.frequencies = bins[self.lo : self.hi].float()
        else:
            self.lo, self.hi = 0, len(bins)
            self.mel, self.frequencies = mel_filterbank(bins, c.n_mels, c.fmin, c.top)

    @property
    def n_freq(self) -> int:
        """F, the frequency rows of the output (kept linear bins, or mel bands)."""
        return len(self.frequencies)

    def frames(self, samples: int) -> int:
        """T', the frames of a signal of ``samples`` samples."""
        c = self.config
        if c.center:
            return 1 + samples // c.hop_length
        return 1 + (samples - c.n_fft) // c.hop_length

    def output_shape(self, channels: int, samples: int) -> tuple[int, ...]:
        """The output of one example ``(channels, samples)``: ``(C, F, T')`` or ``(C * F, T')``."""
        if self.fold:
            return (channels * self.n_freq, self.frames(samples))
        return (channels, self.n_freq, self.frames(samples))

    def window(self, device: torch.device) -> Tensor:
        """The periodic analysis window (scipy's ``get_window(name, win_length)``)."""
        n, name = self.win_length, self.config.window
        if name == "boxcar":
            return torch.ones(n, device=device)
        make = {"hann": torch.hann_window, "hamming": torch.hamming_window,
                "blackman": torch.blackman_window}[name]  # fmt: skip
        return make(n, periodic=True, device=device, dtype=torch.float32)

    def __call__(self, x: Tensor) -> Tensor:
        c = self.config
        if x.ndim != 3:
            raise ValueError(f"spectrogram: expected a signal (B, C, T); got {tuple(x.shape)}")
        if (c.center and c.pad_mode == "reflect" and x.shape[-1] <= c.n_fft // 2) or (
            not c.center and x.shape[-1] < c.n_fft
        ):
            raise ValueError(f"spectrogram: {x.shape[-1]} samples are too few for n_fft {c.n_fft}")
        with torch.autocast(x.device.type, enabled=False):
            window = self.window(x.device)
            spec = torch.stft(
                rearrange(x.float(), "b c t -> (b c) t"), c.n_fft, c.hop_length, self.win_length,
                window=window, center=c.center, pad_mode=c.pad_mode, return_complex=True,
            )  # fmt: skip
            # power |X|^2 / sum(w)^2 of the kept rows (no square root: dB = 10 log10 power)
            power = torch.view_as_real(spec[:, self.lo : self.hi]).square().sum(-1)
            power = power / window.sum().square()
            if self.mel is not None:
                power = einsum(self.mel.to(x.device), power, "m k, n k t -> n m t")
            db = 10.0 * torch.log10(power.clamp_min(c.amin**2))
            if c.top_db is not None:
                db = torch.maximum(db, db.amax((-2, -1), keepdim=True) - c.top_db)
            if c.norm == "instance":
                std, mean = torch.std_mean(db, (-2, -1), keepdim=True)
                db = (db - mean) / std.clamp_min(1e-6)
        pattern = "(b c) f t -> b (c f) t" if self.fold else "(b c) f t -> b c f t"
        return rearrange(db, pattern, b=x.shape[0])

    def __repr__(self) -> str:
        c = self.config
        kind = f"n_mels={c.n_mels}" if c.n_mels else f"F={self.n_freq}"
        return (
            f"Spectrogram(fs={c.fs}, n_fft={c.n_fft}, hop={c.hop_length}, {kind}, fold={self.fold})"
        )


def _config(options: dict[str, Any]) -> SpectrogramConfig:
    try:
        return SpectrogramConfig.model_validate(options)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'options'}: {e['msg']}" for e in exc.errors()
        )
        raise ValueError(f"spectrogram options: {problems}") from None


def spectrogram(
    channels: int = 1,
    freq_patch: int = 16,
    time_patch: int = 16,
    count: int = 64,
    *,
    snap: bool = False,
    n_fft: int | None = None,
    hop: int | None = None,
    spans: Literal["boxes", "strips"] = "boxes",
    **options: Any,
) -> Modality:
    """Spectrograms cut into boxes of ``freq_patch x time_patch`` bins, or into time strips.

    With ``n_fft``, the data are raw signals ``(B, channels, T)`` and :class:`Spectrogram`
    (``options``: the other :class:`SpectrogramConfig` fields, e.g. ``fs``, ``fmax``,
    ``n_mels``, ``norm``) makes the spectrograms on the training device; the default data
    source is then the EEG store and the template config ``physionet2018-spectrogram``.
    Without, the data are spectrograms already, ``(B, channels, F, T)``.

    ``spans="boxes"``: 2-D boxes over (frequency, time), targets ``(Δf, Δt)``.
    ``spans="strips"`` (needs ``n_fft``): windows of ``time_patch`` frames spanning every
    frequency; the transform folds the frequencies into channels (``channels * F``) and the
    modality is 1-D, targets ``Δt``.
    """
    if spans not in ("boxes", "strips"):
        raise ValueError(f"spectrogram: spans must be 'boxes' or 'strips'; got {spans!r}")
    if n_fft is None:
        if spans == "strips" or options or hop is not None:
            raise ValueError(
                "spectrogram: strips and transform options need n_fft (a raw-signal input)"
            )
        return Modality(
            "spectrogram", channels, (freq_patch, time_patch),
            RandomBoxes(size=(freq_patch, time_patch), count=count, snap=snap),
            Grid((freq_patch, time_patch)), data_source="arrays",
        )  # fmt: skip
    cfg = _config({**options, "n_fft": n_fft, "hop": hop})
    transform = Spectrogram(cfg, fold=spans == "strips")
    # raw EEG epochs from a store by default; the template config is the sleep one
    source, preset = "eeg_store", "physionet2018-spectrogram"
    if spans == "strips":
        sampler: SpanSampler = RandomWindows(time_patch, count, snap=snap)
        return Modality(
            "spectrogram", channels * transform.n_freq, (time_patch,), sampler,
            Grid((time_patch,)), transform=transform, data_source=source, preset=preset,
        )  # fmt: skip
    sampler = RandomBoxes(size=(freq_patch, time_patch), count=count, snap=snap)
    return Modality(
        "spectrogram", channels, (freq_patch, time_patch), sampler,
        Grid((freq_patch, time_patch)), transform=transform, data_source=source, preset=preset,
    )  # fmt: skip
