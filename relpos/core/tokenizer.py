"""Tokenizers: how the spans of a batch become tokens, for any number of axes (D <= 3).

The default :class:`Tokenizer` is :func:`relpos.core.extract.extract` (a crop resized to
``token_shape``). Two options make tokens whose *scale* can only be read from their content's
rhythms, not from generic artefacts of the resize (see ``docs/pretext-options.md``):

- ``band``: every token keeps the same band, ``|k| <= band`` cycles per token on every axis,
  whatever the size of its span. The span is extracted at ``oversample * token_shape`` samples
  (an upsampling for spans shorter than that, so no aliasing), transformed with ``rfftn`` over
  the token axes, every bin outside the band is dropped, and the inverse transform gives exactly
  ``token_shape`` samples. A low-pass edge of the input (a filter, the sampling rate) then never
  shows inside a token as long as it lies above ``band`` cycles per token for every span size.
- ``standardize``: each token is brought to zero mean and unit standard deviation per channel.
  In 1/f noise a longer span carries more power in a fixed band; standardising removes that cue.

With both, a scale-free input (1/f noise) gives tokens whose statistics do not depend on the
span size, so a relative-scale pretext can only be solved from rhythms (structure that departs
from a power law).

``TokenizerConfig`` is the pydantic side (``modality.tokenizer`` in a training config).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from relpos.core.checks import int_shape
from relpos.core.extract import extract
from relpos.core.spans import Spans

__all__ = ["Tokenizer", "TokenizerConfig", "band_limit", "standardize_tokens"]

_FFT_DTYPES = (torch.float32, torch.float64)


def _select(
    spec: Tensor, dim: int, freq: Tensor, n: int, t: int, out: int, gain: Tensor | None
) -> Tensor:
    """Bins ``freq`` (cycles per token) of ``spec`` along ``dim`` (``n`` source samples),
    moved to an axis of ``out`` bins for ``t`` output samples, times ``gain (B, N, F)``.

    The phase factor ``exp(i pi f (1/t - 1/n))`` puts output sample ``m`` at the centre
    ``(m + 0.5) / t`` of the token, as :func:`~relpos.core.extract.extract` does, rather than at
    source sample ``m * n / t``.
    """
    kept = spec.index_select(dim, freq % n)
    phase = torch.pi * freq.to(kept.real.dtype) * (1 / t - 1 / n)
    shape = [1] * kept.ndim
    shape[dim] = -1
    kept = kept * torch.polar(torch.ones_like(phase), phase).view(shape)
    if gain is not None:
        gain = gain.reshape(*gain.shape, *([1] * (kept.ndim - 3)))  # (B, N, F, 1, ...)
        kept = kept * gain.movedim(2, dim)
    size = list(kept.shape)
    size[dim] = out
    return kept.new_zeros(size).index_copy_(dim, freq % out, kept)


def _kernel_gain(freq: Tensor, size: Tensor, n: int) -> Tensor:
    """``(B, N, F)``: the inverse of the mean response of extract's triangle kernel.

    A span of ``L`` input samples resized to ``n`` samples is filtered by a triangle of
    half-width ``h = max(1, L / n)`` input samples (linear interpolation when upsampling): at
    ``f`` cycles per token its mean response is ``sinc(f h / L) ** 2``. Undoing it gives every
    span size the same flat band (the response is floored at 1/4; spans of exactly ``n``
    samples are copied by extract and left as they are).
    """
    per_sample = torch.maximum(1 / size, torch.full_like(size, 1 / n))  # h / L
    response = torch.sinc(freq.to(size.dtype) * per_sample[..., None]) ** 2
    exact = (size == n)[..., None]
    return torch.where(exact, 1.0, 1 / response.clamp_min(0.25))


def band_limit(
    tokens: Tensor, band: float, token_shape: tuple[int, ...], sizes: Tensor | None = None
) -> Tensor:
    """Keep the frequencies ``|k| <= band`` (cycles per token) of every token, resampled.

    The token axes are treated as periodic (a discrete Fourier transform over each token).

    Args:
        tokens: ``(B, N, C, *source_shape)`` (or ``(..., *source_shape)`` without ``sizes``)
            with ``D = len(token_shape)`` token axes, sample ``j`` of ``n`` centred at
            ``(j + 0.5) / n`` of the token.
        band: cycles per token kept on every axis (below half of every output size).
        token_shape: output samples per axis.
        sizes: ``(B, N, D)`` sizes (input samples) of the spans the tokens were extracted
            from: the kept bins are divided by extract's mean kernel response
            (:func:`_kernel_gain`), so the band is flat whatever the span size.

    Returns:
        ``(..., *token_shape)``, sample ``m`` of ``t`` centred at ``(m + 0.5) / t``; amplitudes
        are kept (a unit sinusoid at ``k <= band`` cycles per token stays a unit sinusoid).
    """
    d = len(token_shape)
    if tokens.numel() == 0:  # no token or no channel: nothing to transform (FFTs refuse it)
        return tokens.new_zeros((*tokens.shape[: tokens.ndim - d], *token_shape))
    dims = tuple(range(tokens.ndim - d, tokens.ndim))
    source = tuple(tokens.shape[-d:])
    dtype = tokens.dtype
    work = tokens if dtype in _FFT_DTYPES else tokens.float()
    spec = torch.fft.rfftn(work, dim=dims, norm="forward")
    k = math.floor(band)
    dev = spec.device
    full = torch.arange(-k, k + 1, device=dev)  # full-spectrum axes: bins -k..k
    half = torch.arange(k + 1, device=dev)  # the last (half-spectrum) axis: bins 0..k
    for a in range(d):
        freq, t = (full, token_shape[a]) if a < d - 1 else (half, token_shape[a])
        out = t if a < d - 1 else t // 2 + 1
        gain = None
        if sizes is not None:
            gain = _kernel_gain(freq, sizes[..., a].to(work.dtype), source[a])
        spec = _select(spec, dims[a], freq, source[a], t, out, gain)
    return torch.fft.irfftn(spec, s=token_shape, dim=dims, norm="forward").to(dtype)


def standardize_tokens(tokens: Tensor, d: int, eps: float = 1e-6) -> Tensor:
    """Zero mean and unit (population) std over the ``d`` trailing axes of ``tokens``.

    ``(B, N, C, *token_shape)`` -> the same shape; flat tokens become zeros (``eps``).
    """
    if tokens.numel() == 0:
        return tokens
    dims = tuple(range(tokens.ndim - d, tokens.ndim))
    centred = tokens - tokens.mean(dims, keepdim=True)
    return centred / (centred.std(dims, keepdim=True, correction=0) + eps)


@dataclass(frozen=True)
class Tokenizer:
    """Spans -> tokens: ``tokenizer(x (B, C, *extent), spans (B, N, D)) -> (B, N, C, *token_shape)``.

    Attributes:
        token_shape: output samples per axis (D entries).
        oversample: spans are first extracted at ``oversample * token_shape`` samples per
            axis (needs ``band``).
        band: cycles per token kept on every axis after the resize (``None``: no band limit);
            below half of the smallest ``token_shape`` entry.
        standardize: zero mean, unit std per token and channel over the token's samples.
        eps: added to the std when standardising (flat tokens become zeros).

    The defaults are exactly :func:`~relpos.core.extract.extract` (bit-identical).
    """

    token_shape: tuple[int, ...]
    oversample: int = 1
    band: float | None = None
    standardize: bool = False
    eps: float = 1e-6

    def __post_init__(self) -> None:
        ts = self.token_shape
        if isinstance(ts, int):  # D is not known from one number
            raise ValueError(f"Tokenizer: token_shape must hold one size per axis; got {ts!r}")
        object.__setattr__(self, "token_shape", int_shape(ts, "Tokenizer: token_shape"))
        if len(self.token_shape) > 3:
            raise ValueError(f"Tokenizer: token_shape supports D <= 3 axes; got {ts!r}")
        o, band = self.oversample, self.band
        if int(o) != o or not 1 <= o <= 64:
            raise ValueError(f"Tokenizer: oversample must be an integer in [1, 64]; got {o!r}")
        object.__setattr__(self, "oversample", int(o))
        limit = min(self.token_shape) / 2
        if band is not None and not 0 < band < limit:
            raise ValueError(
                f"Tokenizer: band must be in (0, {limit}) cycles per token; got {band!r}"
            )
        if o > 1 and band is None:
            raise ValueError("Tokenizer: oversample > 1 needs a band (to resize to token_shape)")
        if not self.eps > 0:
            raise ValueError(f"Tokenizer: eps must be positive; got {self.eps!r}")

    @property
    def ndim(self) -> int:
        """D, the number of token axes."""
        return len(self.token_shape)

    @property
    def is_plain(self) -> bool:
        """Whether this is :func:`~relpos.core.extract.extract` unchanged."""
        return self.band is None and not self.standardize

    def _on_grid(self, spans: Spans) -> bool:
        """Whether every span has exactly ``token_shape`` samples and an integer start."""
        tok = torch.tensor(self.token_shape, dtype=spans.size.dtype, device=spans.size.device)
        start = spans.start
        return bool(((spans.size == tok).all() & (start == start.round()).all()).item())

    def __call__(self, x: Tensor, spans: Spans) -> Tensor:
        """Tokens ``(B, N, C, *token_shape)`` of ``spans (B, N, D)`` over ``x (B, C, *extent)``."""
        if self.band is None:
            tokens = extract(x, spans, self.token_shape)
        elif self._on_grid(spans):
            # spans of exactly token_shape at integer starts (a grid): extract copies the
            # samples, so the band limit needs no upsampling and no kernel correction
            tokens = band_limit(extract(x, spans, self.token_shape), self.band, self.token_shape)
        else:
            source = tuple(self.oversample * t for t in self.token_shape)
            sizes = spans.size.to(x.device)
            tokens = band_limit(extract(x, spans, source), self.band, self.token_shape, sizes)
        if self.standardize:
            tokens = standardize_tokens(tokens, self.ndim, self.eps)
        return tokens


class TokenizerConfig(BaseModel):
    """The pydantic side of :class:`Tokenizer` (``modality.tokenizer`` in a training config).

    The defaults are the plain resize (:func:`~relpos.core.extract.extract`).
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    oversample: Annotated[int, Field(ge=1, le=16)] = 1
    band: Annotated[float, Field(gt=0)] | None = None
    standardize: bool = False

    def build(self, token_shape: tuple[int, ...] | list[int]) -> Tokenizer:
        """The tokenizer for tokens of ``token_shape`` (``ValueError`` if they do not fit)."""
        return Tokenizer(
            tuple(token_shape), self.oversample, self.band, standardize=self.standardize
        )
