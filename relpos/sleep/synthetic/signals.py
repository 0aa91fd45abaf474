"""Signal helpers of the generator: FFT-shaped noise, upsampling, vectorised event placement
and rendering (no per-sample Python loops)."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.fft as sfft
from scipy.ndimage import uniform_filter1d

# --------------------------------------------------------------------------------------
# Signal helpers
# --------------------------------------------------------------------------------------


def spectral_noise(
    rng: np.random.Generator,
    n: int,
    fs: float,
    amp_fn: Any,
    fmin: float,
    fmax: float,
) -> np.ndarray:
    """Stationary noise with amplitude spectrum ``amp_fn(f)`` on [fmin, fmax] (FFT synthesis).

    Random phases with the exact amplitude per bin: a sum of very many sinusoids, hence
    Gaussian in the time domain, and cheaper than complex normal coefficients.

    Returns:
        float32 array of shape (n,), unit variance.
    """
    nfft = sfft.next_fast_len(n, real=True)
    nb = nfft // 2 + 1
    k0 = max(1, int(np.ceil(fmin * nfft / fs)))
    k1 = min(nb - 1, int(fmax * nfft / fs) + 1)
    f = np.arange(k0, k1) * (fs / nfft)
    amp = np.asarray(amp_fn(f), dtype=np.float64)
    amp *= nfft / (2.0 * np.sqrt(np.sum(amp**2)))  # unit variance of the irfft output
    phase = rng.random(k1 - k0, dtype=np.float32)
    phase *= np.float32(2 * np.pi)
    spec = np.zeros(nb, dtype=np.complex64)
    amp32 = amp.astype(np.float32) * np.float32(np.sqrt(2.0))
    spec.real[k0:k1] = np.cos(phase) * amp32
    spec.imag[k0:k1] = np.sin(phase) * amp32
    return sfft.irfft(spec, nfft)[:n]


def smooth_noise(rng: np.random.Generator, n: int, width: int) -> np.ndarray:
    """Unit-variance low-pass noise (moving average of ``width`` white samples), (n,)."""
    w = max(1, int(width))
    x = uniform_filter1d(rng.standard_normal(n + 2 * w), w, mode="wrap")[w : w + n]
    return x * np.sqrt(w)


def upsample_linear(v: np.ndarray, r: int, n: int) -> np.ndarray:
    """Linear interpolation of control values ``v[k]`` at samples ``k*r`` to (n,) float32."""
    m = -(-n // r)
    v = np.asarray(v, dtype=np.float32)
    if len(v) < m + 1:
        v = np.concatenate([v, np.full(m + 1 - len(v), v[-1], np.float32)])
    frac = np.arange(r, dtype=np.float32) / np.float32(r)
    out = v[:m, None] + (v[1 : m + 1] - v[:m])[:, None] * frac
    return out.reshape(-1)[:n]


def upsample2(x: np.ndarray, n: int) -> np.ndarray:
    """Upsample by 2 with a 4-tap cubic (Keys) midpoint interpolator, (m,) -> (n,) float32."""
    m = len(x)
    xp = np.empty(m + 3, dtype=np.float32)
    xp[1 : m + 1] = x
    xp[0] = x[0]
    xp[m + 1 :] = x[-1]
    out = np.empty((m, 2), dtype=np.float32)
    out[:, 0] = x
    mid = out[:, 1]
    np.add(xp[1 : m + 1], xp[2 : m + 2], out=mid)
    mid *= np.float32(9.0 / 16.0)
    mid -= np.float32(1.0 / 16.0) * (xp[0:m] + xp[3 : m + 3])
    return out.reshape(-1)[:n]


def add_events(out: np.ndarray, onsets: np.ndarray, waves: np.ndarray) -> None:
    """Add waveforms ``waves`` (n_events, L) starting at sample ``onsets`` into ``out`` (n,)."""
    if len(onsets) == 0:
        return
    idx = onsets[:, None].astype(np.int64) + np.arange(waves.shape[1])
    ok = (idx >= 0) & (idx < len(out)) & (waves != 0)
    np.add.at(out, idx[ok], waves[ok].astype(out.dtype))


def event_onsets(rng: np.random.Generator, rate_per_tick: np.ndarray, step: float) -> np.ndarray:
    """Poisson event times from a rate per control tick; returns sorted positions in samples
    of a grid with ``step`` samples per tick (float64)."""
    counts = rng.poisson(np.clip(rate_per_tick, 0, None))
    ticks = np.repeat(np.arange(len(rate_per_tick)), counts)
    return (ticks + rng.random(len(ticks))) * step


def windows(
    n: int,
    starts: np.ndarray,
    lengths: np.ndarray,
    amps: np.ndarray,
    ramp: float,
) -> np.ndarray:
    """Sum of trapezoid windows on a grid of n ticks, (n,) float64.

    Window i rises linearly over ``ramp`` ticks before ``starts[i]``, holds ``amps[i]`` for
    ``lengths[i]`` ticks and falls over ``ramp`` ticks.
    """
    out = np.zeros(n)
    if len(starts) == 0:
        return out
    starts = np.asarray(starts, dtype=np.float64)
    lengths = np.asarray(lengths, dtype=np.float64)
    ramp = max(float(ramp), 1e-9)
    a0 = np.floor(starts - ramp).astype(np.int64)
    t = a0[:, None] + np.arange(int(np.ceil(lengths.max() + 2 * ramp)) + 2)
    rise = (t - (starts - ramp)[:, None]) / ramp
    fall = ((starts + lengths + ramp)[:, None] - t) / ramp
    w = np.clip(np.minimum(rise, fall), 0.0, 1.0) * np.asarray(amps, dtype=np.float64)[:, None]
    add_events(out, a0, w)
    return out


def saturation_dips(
    n: int, starts: np.ndarray, lengths: np.ndarray, depth: np.ndarray
) -> np.ndarray:
    """SaO2 dips (in %) on the control grid: asymmetric (fast fall, slow recovery)."""
    out = np.zeros(n)
    if len(starts) == 0:
        return out
    lmax = int(np.ceil(lengths.max())) + 1
    t = np.arange(lmax)[None, :] / lengths[:, None]
    shape = np.where(
        t < 0.6, np.sin(0.5 * np.pi * t / 0.6) ** 2, np.cos(0.5 * np.pi * (t - 0.6) / 0.4) ** 2
    )
    shape = np.where(t <= 1.0, shape, 0.0) * depth[:, None]
    add_events(out, np.round(starts).astype(np.int64), shape)
    return out


def hp_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """Unit-variance high-pass (EMG-like, mostly 20-100 Hz at 200 Hz) noise, (n,) float32.

    First difference of uniform white noise (power ~ sin^2(pi f / fs)).
    """
    w = rng.random(n + 1, dtype=np.float32)
    d = w[1:] - w[:-1]
    d *= np.float32(np.sqrt(6.0))
    return d


def white(rng: np.random.Generator, n: int, rms: float) -> np.ndarray:
    """Uniform white noise with the given rms (a cheap measurement-noise floor), (n,)."""
    x = rng.random(n, dtype=np.float32)
    x -= np.float32(0.5)
    x *= np.float32(rms * np.sqrt(12.0))
    return x
