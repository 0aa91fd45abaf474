"""Tests of the preprocessing steps and pipeline."""

from __future__ import annotations

import warnings

import numpy as np
import pydantic
import pytest
import torch
import yaml

from relpos.sleep import filters
from relpos.sleep.filters import fir_design
from relpos.sleep.preprocess import (
    Bandpass,
    Epochs,
    InstanceNorm,
    Pipeline,
    Resample,
    default_pipeline,
    drop_bad_epochs,
    fir_filter,
    instance_norm,
)

FS = 200.0


def sine(freq: float, seconds: float, fs: float = FS, amp: float = 1.0) -> np.ndarray:
    t = np.arange(round(seconds * fs)) / fs
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def middle_rms(x: np.ndarray, fs: float, margin_s: float) -> float:
    m = round(margin_s * fs)
    return float(np.sqrt(np.mean(x[..., m:-m] ** 2)))


@pytest.mark.parametrize("method", ["fir", "iir"])
def test_bandpass_attenuates_50hz_and_001hz_passes_10hz(method: str) -> None:
    bp = Bandpass(l_freq=0.1, h_freq=30.0, method=method)
    seconds = 600.0  # long enough for 0.01 Hz (6 periods)
    x = np.stack([sine(50, seconds), sine(0.01, seconds), sine(10, seconds)])
    y, fs = bp.apply(x, FS)
    assert fs == FS and y.shape == x.shape and y.dtype == np.float32
    ref = middle_rms(x[2], FS, 60)
    assert middle_rms(y[0], FS, 60) < 1e-2 * ref  # 50 Hz: > 40 dB down
    assert middle_rms(y[1], FS, 60) < 5e-2 * ref  # 0.01 Hz: > 26 dB down
    assert middle_rms(y[2], FS, 60) == pytest.approx(ref, rel=0.02)  # 10 Hz passes


@pytest.mark.parametrize("n", [50, 3001, 6601, 40_000])
def test_fast_fir_equals_mne_filter_data(n: int) -> None:
    rng = np.random.default_rng(n)
    x = (rng.standard_normal((3, n)) + np.linspace(0, 40, n)).astype(np.float32)
    fast, _ = Bandpass().apply(x, FS)
    with warnings.catch_warnings():  # mne warns that the filter is longer than short signals
        warnings.simplefilter("ignore")
        ref, _ = Bandpass(engine="mne").apply(x, FS)
    np.testing.assert_allclose(fast, ref, atol=2e-5 * np.abs(ref).max())


def test_fir_filter_block_grouping_irrelevant() -> None:
    x = np.random.default_rng(0).standard_normal((2, 30_000)).astype(np.float32)
    h = np.hanning(301)
    h /= h.sum()
    a = fir_filter(x, h, group=1)
    b = fir_filter(x, h, group=16)
    c = fir_filter(x[0], h)
    np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_allclose(c, b[0], atol=1e-6)


def test_fir_design_is_mnes_cached_and_read_only() -> None:
    h = fir_design(200.0, 0.1, 30.0)
    assert h.shape == (6601,) and not h.flags.writeable  # the length the docstrings quote
    assert fir_design(200.0, 0.1, 30.0) is h  # designed once per (fs, band)
    np.testing.assert_allclose(h, h[::-1])  # linear phase: symmetric taps
    assert filters.fir_filter is fir_filter  # the same function, re-exported by preprocess


def test_bandpass_validation() -> None:
    with pytest.raises(pydantic.ValidationError):
        Bandpass(l_freq=30, h_freq=10)
    with pytest.raises(pydantic.ValidationError):
        Bandpass(l_freq=None, h_freq=None)
    with pytest.raises(ValueError, match="Nyquist"):
        Bandpass(h_freq=60).apply(np.zeros((1, 1000), np.float32), 100.0)


@pytest.mark.parametrize(("fs_in", "fs_out"), [(200.0, 100.0), (256.0, 100.0), (100.0, 100.0)])
def test_resample_keeps_5hz_sine(fs_in: float, fs_out: float) -> None:
    x = sine(5, 60, fs_in)[None]
    y, fs = Resample(sfreq=fs_out).apply(x, fs_in)
    assert fs == fs_out and y.dtype == np.float32
    assert y.shape[1] == int(np.ceil(x.shape[1] * fs_out / fs_in))
    want = sine(5, 60, fs_out)[None]
    m = round(2 * fs_out)
    np.testing.assert_allclose(y[:, m:-m], want[:, m : y.shape[1] - m], atol=2e-3)


def test_resample_ratio() -> None:
    assert Resample(sfreq=100).ratio(200) == (1, 2)
    assert Resample(sfreq=100).ratio(256) == (25, 64)
    assert Resample(sfreq=128).ratio(100) == (32, 25)


def test_epochs_aligned_to_onset() -> None:
    # a signal whose value is its own time in seconds
    T = 200 * 400
    x = np.tile(np.arange(T, dtype=np.float32) / FS, (2, 1))
    onset = 200 * 35  # 35 s, in original samples
    ep = Epochs(seconds=30).apply(x, FS, onset_seconds=onset / FS)
    assert ep.epochs.shape == ((T - onset) // 6000, 2, 6000) == (12, 2, 6000)
    np.testing.assert_allclose(ep.onsets, 35 + 30 * np.arange(12))
    np.testing.assert_allclose(ep.epochs[:, 0, 0], ep.onsets)
    np.testing.assert_array_equal(ep.epoch_index, np.arange(12))
    assert Epochs().apply(x, FS, onset / FS, n_epochs=5).epochs.shape[0] == 5


def test_pipeline_run_converts_onset_to_new_rate() -> None:
    T = 200 * 400
    t = np.arange(T, dtype=np.float32) / FS
    x = np.stack([t, 2 * t])
    p = Pipeline(steps=[Resample(sfreq=100), Epochs(seconds=30)])
    onset = 200 * 35  # in original samples (35 s)
    ep = p.run(x, FS, onset=onset)
    assert ep.fs == 100 and ep.epochs.shape == (12, 2, 3000)
    # first sample of each epoch at 100 Hz is at time onset + 30 k
    np.testing.assert_allclose(ep.epochs[:, 0, 0], 35 + 30 * np.arange(12), atol=1e-3)
    np.testing.assert_allclose(ep.epochs[:, 0, 1], 35.01 + 30 * np.arange(12), atol=1e-3)


def test_pipeline_json_and_yaml_round_trip() -> None:
    p = default_pipeline()
    assert [s.name for s in p.steps] == ["bandpass", "resample", "epochs", "instance_norm"]
    assert Pipeline.model_validate_json(p.model_dump_json()) == p
    assert Pipeline.model_validate(yaml.safe_load(yaml.safe_dump(p.model_dump()))) == p
    q = Pipeline.model_validate(
        {
            "steps": [
                {"name": "bandpass", "l_freq": 0.5, "h_freq": 35, "method": "iir"},
                {"name": "resample", "sfreq": 128},
                {"name": "epochs", "seconds": 30},
            ]
        }
    )
    assert isinstance(q.steps[0], Bandpass) and q.steps[0].method == "iir"
    assert q.normalize is None and q.output_fs(200) == 128
    assert p.epoch_samples(200) == 3000


def test_pipeline_order_validated() -> None:
    with pytest.raises(pydantic.ValidationError, match="before"):
        Pipeline(steps=[Epochs(), Bandpass()])
    with pytest.raises(pydantic.ValidationError, match="after"):
        Pipeline(steps=[InstanceNorm(), Epochs()])
    with pytest.raises(pydantic.ValidationError, match="exactly one"):
        Pipeline(steps=[Bandpass()])
    with pytest.raises(pydantic.ValidationError):
        Pipeline.model_validate({"steps": [{"name": "nope"}, {"name": "epochs"}]})


def test_apply_continuous_default() -> None:
    x = np.random.default_rng(0).standard_normal((3, 200 * 120)).astype(np.float32)
    timings: dict[str, float] = {}
    y, fs = default_pipeline().apply_continuous(x, FS, timings)
    assert fs == 100 and y.shape == (3, 100 * 120) and y.dtype == np.float32
    assert set(timings) == {"bandpass", "resample"}


def test_drop_bad_epochs_counts() -> None:
    rng = np.random.default_rng(0)
    ep = rng.standard_normal((6, 2, 100)).astype(np.float32)
    labels = np.arange(6, dtype=np.int8)
    ep[1, 0, 5] = np.nan
    ep[3, 1] = 4.2  # flat channel
    ep[4, 0] = 0.0  # flat channel ...
    ep[4, 1, 0] = np.nan  # ... and NaN: counted as NaN
    kept, kl, keep, counts = drop_bad_epochs(ep, labels)
    assert counts == {"nan": 2, "flat": 1}
    np.testing.assert_array_equal(keep, [True, False, True, False, False, True])
    np.testing.assert_array_equal(kl, [0, 2, 5])
    assert kept.shape == (3, 2, 100)
    _, none, _, _ = drop_bad_epochs(ep[:1])
    assert none is None


def test_pipeline_run_marks_nan_and_flat_raw_epochs() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 200 * 30 * 8)).astype(np.float32) * 20
    onset = 200 * 30
    x[0, onset + 6000 * 2 + 100 : onset + 6000 * 2 + 110] = np.nan  # epoch 2
    x[1, onset + 6000 * 4 : onset + 6000 * 5] = 7.0  # epoch 4 flat in channel 1
    ep = default_pipeline().run(x, FS, onset=onset)
    assert ep.epochs.shape == (7, 2, 3000)
    _, _, keep, counts = drop_bad_epochs(ep.epochs)
    assert counts == {"nan": 1, "flat": 1}
    np.testing.assert_array_equal(np.flatnonzero(~keep), [2, 4])
    # the NaN did not spread into the neighbours through the filter
    assert np.isfinite(ep.epochs[[1, 3]]).all()


def test_instance_norm_numpy_and_torch() -> None:
    x = (np.random.default_rng(0).standard_normal((4, 3, 500)) * 30 + 5).astype(np.float32)
    x0, t = x.copy(), torch.from_numpy(x.copy())
    a = instance_norm(x)
    b = InstanceNorm().apply(t)
    np.testing.assert_array_equal(x, x0)  # inputs untouched
    np.testing.assert_array_equal(t.numpy(), x0)
    c = instance_norm(t.clone(), inplace=True)
    torch.testing.assert_close(b, c)
    np.testing.assert_allclose(a, b.numpy(), atol=1e-5)
    np.testing.assert_allclose(a.mean(-1), 0, atol=1e-5)
    np.testing.assert_allclose(a.std(-1), 1, atol=1e-4)
