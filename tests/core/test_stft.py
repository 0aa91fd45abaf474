"""The on-the-fly spectrogram: scipy's STFT in dB, log-mel, folded strips, the modality."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.signal
import torch

from relpos.core.modality import get_modality
from relpos.core.stft import Spectrogram, SpectrogramConfig, mel_filterbank, spectrogram

FS = 100.0


def _signal(b: int = 2, c: int = 3, t: int = 3000, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, c, t, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    ("window", "n_fft", "hop", "center"),
    [("hann", 100, 25, True), ("hamming", 128, 32, True), ("hann", 64, 16, False)],
)
def test_matches_scipy_stft_in_db(window, n_fft, hop, center):
    x = _signal()
    cfg = SpectrogramConfig(
        fs=FS, n_fft=n_fft, hop=hop, window=window, center=center, pad_mode="constant"
    )
    ours = Spectrogram(cfg)(x).numpy()
    _, _, z = scipy.signal.stft(
        x.numpy().astype(np.float64), fs=FS, window=window, nperseg=n_fft,
        noverlap=n_fft - hop, boundary="zeros" if center else None, padded=center,
        scaling="spectrum",
    )  # fmt: skip
    ref = 20 * np.log10(np.maximum(np.abs(z), cfg.amin))
    frames = Spectrogram(cfg).frames(3000)
    assert ours.shape == (2, 3, n_fft // 2 + 1, frames)
    # scipy's padded=True adds one zero-padded frame where hop does not divide T
    assert ref.shape[-1] == frames + (center and 3000 % hop != 0)
    ref = ref[..., :frames]
    # dB, float32 against float64: 0.01 dB within 60 dB of the peak, 0.1 dB in the deep nulls
    loud = ref > ref.max() - 60
    np.testing.assert_allclose(ours[loud], ref[loud], atol=0.01)
    np.testing.assert_allclose(ours, ref, atol=0.1)


def test_band_crop_frames_and_a_sinusoid_peak():
    t = torch.arange(3000) / FS
    x = torch.sin(2 * math.pi * 12.0 * t).expand(1, 2, -1).contiguous()
    spec = Spectrogram(SpectrogramConfig(fs=FS, n_fft=100, hop=25, fmax=31.0))
    out = spec(x)
    assert spec.n_freq == 32 and spec.frequencies[-1] == 31.0
    assert out.shape == (1, 2, 32, 121) == (1, *spec.output_shape(2, 3000))
    assert int(out[0, 0, :, 60].argmax()) == 12  # 1-Hz bins from 0 Hz
    # a sinusoid of amplitude 1 reads -6 dB with scipy's "spectrum" scaling (|X| / sum(w) = 1/2)
    assert float(out[0, 0, 12, 60]) == pytest.approx(-6.02, abs=0.05)


def test_log_mel_bands_peak_at_the_tone():
    t = torch.arange(4096) / 256.0
    x = torch.sin(2 * math.pi * 40.0 * t)[None, None]
    spec = Spectrogram(SpectrogramConfig(fs=256.0, n_fft=256, hop=64, n_mels=24, fmin=1.0))
    out = spec(x)
    assert out.shape == (1, 1, 24, 65) and spec.n_freq == 24
    peak = int(out[0, 0, :, 30].argmax())
    assert abs(float(spec.frequencies[peak]) - 40.0) < 6.0
    weights, centres = mel_filterbank(torch.arange(129) * 1.0, 24, 1.0, 128.0)
    assert weights.shape == (24, 129) and bool((weights.max(1).values <= 1.0).all())
    assert bool((centres[1:] > centres[:-1]).all())
    with pytest.raises(ValueError, match="mel band 0 .* holds no FFT bin"):
        Spectrogram(SpectrogramConfig(fs=FS, n_fft=16, n_mels=64))


def test_fold_instance_norm_top_db_and_autocast():
    x = _signal(2, 3, 800)
    base = SpectrogramConfig(fs=FS, n_fft=64, hop=16, norm="instance", top_db=40.0)
    image, strips = Spectrogram(base)(x), Spectrogram(base, fold=True)(x)
    assert (
        strips.shape == (2, 3 * 33, 51) == (2, *Spectrogram(base, fold=True).output_shape(3, 800))
    )
    assert torch.equal(strips, image.flatten(1, 2))
    assert torch.allclose(image.mean((-2, -1)), torch.zeros(2, 3), atol=1e-4)
    assert torch.allclose(image.std((-2, -1)), torch.ones(2, 3), atol=1e-4)
    raw = Spectrogram(SpectrogramConfig(fs=FS, n_fft=64, hop=16, top_db=40.0))(x)
    assert float((raw.amax((-2, -1)) - raw.amin((-2, -1))).max()) <= 40.0 + 1e-4
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert Spectrogram(base)(x).dtype == torch.float32


def test_options_are_bounded_one_line_errors():
    with pytest.raises(ValueError, match="fmax 80.0 Hz is above the Nyquist frequency 50.0 Hz"):
        SpectrogramConfig(fs=FS, fmax=80.0)
    with pytest.raises(ValueError, match="win_length 200 exceeds n_fft 100"):
        SpectrogramConfig(win_length=200)
    with pytest.raises(ValueError, match="spectrogram options: n_fft: Input should be greater"):
        get_modality("spectrogram", n_fft=1)
    with pytest.raises(ValueError, match="spectrogram options: nope: Extra inputs"):
        get_modality("spectrogram", n_fft=64, nope=3)
    with pytest.raises(ValueError, match="strips and transform options need n_fft"):
        spectrogram(spans="strips")
    with pytest.raises(ValueError, match="too few for n_fft 100"):
        Spectrogram(SpectrogramConfig(center=False))(torch.randn(1, 1, 40))
    with pytest.raises(ValueError, match=r"expected a signal \(B, C, T\)"):
        Spectrogram()(torch.randn(4, 40))


def test_registered_modality_boxes_and_strips():
    x = _signal(2, 6, 3000)
    opts = {"fs": FS, "n_fft": 100, "hop": 25, "fmax": 31.0}
    boxes = get_modality("spectrogram", channels=6, freq_patch=8, time_patch=8, count=10, **opts)
    assert boxes.ndim == 2 and boxes.data_source == "eeg_store"
    assert boxes.preset == "physionet2018-spectrogram"
    tokens, spans = boxes.tokenize(boxes.prepare(x), generator=torch.Generator())
    assert tokens.shape == (2, 10, 6, 8, 8) and spans.centre.shape == (2, 10, 2)
    assert boxes.num_grid_tokens((32, 121)) == 4 * 15
    strips = get_modality("spectrogram", channels=6, time_patch=4, count=12, spans="strips", **opts)
    assert strips.ndim == 1 and strips.channels == 6 * 32
    tokens, spans = strips.tokenize(strips.prepare(x), generator=torch.Generator())
    assert tokens.shape == (2, 12, 192, 4) and spans.centre.shape == (2, 12, 1)
    assert get_modality("spectrogram").transform is None  # spectrograms given as data
