"""Zero-phase band-pass filtering of (C, T) signals: MNE's FIR design applied fast, or MNE.

The FIR is MNE's design (:func:`mne.filter.create_filter`, the one :func:`mne.filter.filter_data`
uses) applied by a float32 batched-FFT overlap-add with MNE's ``reflect_limited`` edge padding
(:func:`fir_filter`). It matches ``filter_data`` to ~3e-7 relative and takes 0.32 s instead of
1.40 s (float64, n_jobs=1) for 6 x 5.76 M samples (8 h at 200 Hz). :func:`mne_filter` calls
``filter_data`` itself (FIR or Butterworth IIR).
"""

from __future__ import annotations

import functools
from typing import Any, Literal

import numpy as np
import scipy.fft

__all__ = ["fir_design", "fir_filter", "mne_filter"]


@functools.lru_cache(maxsize=32)
def fir_design(fs: float, l_freq: float | None, h_freq: float | None) -> np.ndarray:
    """MNE's default zero-phase FIR (firwin, hamming, automatic length and transitions)."""
    import mne

    h = mne.filter.create_filter(
        None, fs, l_freq, h_freq, method="fir", phase="zero", fir_design="firwin", verbose=False
    )
    h = np.asarray(h, dtype=np.float64)
    h.setflags(write=False)
    return h


def _smart_pad_1d(x: np.ndarray, n_pad: int) -> np.ndarray:
    """MNE's ``reflect_limited`` padding of a 1-D signal: odd reflection, zeros beyond."""
    n = x.shape[-1]
    if n_pad == 0:
        return x
    z = np.zeros(max(n_pad - n + 1, 0), dtype=x.dtype)
    return np.concatenate(
        [z, 2 * x[:1] - x[n_pad:0:-1], x, 2 * x[-1:] - x[-2 : -n_pad - 2 : -1], z]
    )


def _mne_n_fft(n_h: int, n_x: int) -> int:
    """FFT block length chosen by MNE's cost model (``_overlap_add_filter``)."""
    min_fft = 2 * n_h - 1
    if n_x < min_fft:
        return scipy.fft.next_fast_len(min_fft)
    big = np.ceil(np.log2(n_x)) + 1
    N = 2 ** np.arange(np.ceil(np.log2(min_fft)), big, dtype=np.int64)
    cost = np.ceil(n_x / (N - n_h + 1).astype(np.float64)) * N * (np.log2(N) + 1)
    cost += 4e-5 * N * n_x
    return int(N[np.argmin(cost)])


def fir_filter(
    x: np.ndarray, h: np.ndarray, n_fft: int | None = None, group: int = 16
) -> np.ndarray:
    """Zero-phase FIR filtering like ``mne.filter.filter_data`` (overlap-add), in float32.

    Each channel is padded with MNE's ``reflect_limited`` edges (len(h) - 1 samples) and cut
    into blocks of ``n_fft - len(h) + 1`` samples; ``group`` blocks at a time are transformed
    together (batched rFFT into a reused ~2 MB buffer, which keeps the work in cache and
    avoids page faults), multiplied by the filter spectrum and overlap-added; the output is
    centred (delay (len(h) - 1) / 2 removed). Same block length as MNE by default.

    Args:
        x: (C, T) or (T,) signal.
        h: (L,) odd-length linear-phase FIR.
        n_fft: FFT block length (default: MNE's cost model, 32768 for L = 6601).
        group: blocks per batched FFT.

    Returns:
        Filtered signal, same shape as ``x``, float32.
    """
    x = np.asarray(x, dtype=np.float32)
    x2 = x.reshape(-1, x.shape[-1])
    n_h, T = len(h), x2.shape[-1]
    if n_h % 2 != 1:
        raise ValueError("zero-phase FIR needs an odd number of taps")
    n_edge = max(min(n_h, T) - 1, 0)
    shift = (n_h - 1) // 2 + n_edge
    n_x = T + 2 * n_edge
    if n_fft is None:
        n_fft = _mne_n_fft(n_h, n_x)
    seg = n_fft - n_h + 1
    nb = -(-n_x // seg)
    H = scipy.fft.rfft(np.asarray(h, np.float32), n_fft)
    out = np.empty(x2.shape, dtype=np.float32)
    G = max(min(group, nb), 1)
    buf = np.zeros((G, n_fft), dtype=np.float32)
    xp = np.zeros(nb * seg, dtype=np.float32)
    acc = np.zeros(nb * seg + n_fft, dtype=np.float32)
    for c in range(x2.shape[0]):  # channels, then groups of blocks (not epochs)
        xp[:n_x] = _smart_pad_1d(x2[c], n_edge) if n_edge else x2[c]
        blocks = xp.reshape(nb, seg)
        acc[:] = 0.0
        for b0 in range(0, nb, G):
            k = min(G, nb - b0)
            buf[:k, :seg] = blocks[b0 : b0 + k]
            spec = scipy.fft.rfft(buf[:k], axis=1)
            spec *= H
            yb = scipy.fft.irfft(spec, n_fft, axis=1)
            acc[b0 * seg : (b0 + k) * seg] += yb[:, :seg].reshape(-1)
            acc[(b0 + 1) * seg : (b0 + k + 1) * seg].reshape(k, seg)[:, : n_h - 1] += yb[:, seg:]
        out[c] = acc[shift : shift + T]
    return out.reshape(x.shape)


def mne_filter(
    x: np.ndarray,
    fs: float,
    l_freq: float | None,
    h_freq: float | None,
    method: Literal["fir", "iir"] = "fir",
    iir_order: int = 4,
) -> np.ndarray:
    """``mne.filter.filter_data`` on (C, T) ``x`` in float64: MNE's default zero-phase FIR, or a
    Butterworth of ``iir_order`` as second-order sections applied forward and backward.

    Returns:
        Filtered (C, T) float32.
    """
    import mne

    kwargs: dict[str, Any] = {}
    if method == "iir":
        kwargs = {
            "method": "iir",
            "iir_params": {"order": iir_order, "ftype": "butter", "output": "sos"},
        }
    y = mne.filter.filter_data(
        np.asarray(x, dtype=np.float64),
        fs,
        l_freq,
        h_freq,
        n_jobs=1,
        verbose=False,
        **kwargs,
    )
    return y.astype(np.float32)
