"""Modalities and registries: one registered object per input kind, names checked."""

from __future__ import annotations

import pytest
import torch

import relpos
from relpos.core.extract import extract
from relpos.core.modality import Modality, get_modality, list_modalities
from relpos.core.registry import Registry
from relpos.core.samplers import Grid, RandomSpans, RandomWindows
from relpos.core.tokenizer import Tokenizer


def test_registry_register_get_names():
    reg: Registry[int] = Registry("widget", normalize=str.lower)
    reg.register("One", 1)

    @reg.register("two")
    def two() -> int:
        return 2

    assert reg.get("ONE") == 1 and reg.get("two")() == 2
    assert reg.names() == ["one", "two"] and "one" in reg and "three" not in reg
    assert len(reg) == 2 and list(reg) == ["one", "two"]
    with pytest.raises(ValueError, match=r"unknown widget 'three'; known: one, two"):
        reg.get("three")
    with pytest.raises(ValueError, match="non-empty string"):
        reg.register("", 3)


def test_registry_lazy_entries_import_on_first_use():
    reg: Registry[object] = Registry("thing")
    reg.register("dumps", "json:dumps")
    import json

    assert reg.get("dumps") is json.dumps
    reg.register("missing", "relpos_no_such_module:x")
    with pytest.raises(ModuleNotFoundError):
        reg.get("missing")


def test_builtin_modalities():
    assert {"image", "signal", "spectrogram", "video"} <= set(list_modalities())
    sig = get_modality("signal", channels=6)
    assert sig.ndim == 1 and sig.token_dim == 600 and sig.data_source == "eeg_store"
    img = get_modality("image", channels=1, patch=4, count=9)
    tokens, spans = img.tokenize(torch.randn(2, 1, 16, 16), generator=torch.Generator())
    assert tokens.shape == (2, 9, 1, 4, 4) and spans.centre.shape == (2, 9, 2)
    vid = get_modality("video", channels=3, tubelet=(2, 4, 4), count=5)
    tokens, _ = vid.tokenize(torch.randn(1, 3, 4, 8, 8))
    assert tokens.shape == (1, 5, 3, 2, 4, 4) and vid.data_source == "arrays"
    with pytest.raises(ValueError, match=r"expected input \(B, 1, <2 axes>\)"):
        img.tokenize(torch.randn(2, 3, 16, 16))


def test_unknown_modality_lists_known():
    with pytest.raises(ValueError, match=r"unknown modality 'audio'; known: .*image.*signal"):
        get_modality("audio")


def test_register_modality_from_outside():
    def heat(channels: int = 2) -> Modality:
        return Modality("heat_test", channels, (2, 2), RandomSpans(2, 4, ndim=2), Grid((2, 2)))

    relpos.register_modality("heat_test", heat)
    m = relpos.get_modality("heat_test", channels=3)
    assert m.channels == 3 and m.ndim == 2 and m.prepare(torch.ones(1)) is not None

    relpos.register_modality("broken_test", lambda: 3)
    with pytest.raises(ValueError, match="its factory returned int"):
        relpos.get_modality("broken_test")


def test_spectrogram_is_registered_lazily_and_tokenizes():
    """The registered ``spectrogram`` is relpos.core.stft's (tested against scipy in
    tests/core/test_stft.py): raw signals in, boxes over (frequency, time) out."""
    x = torch.randn(2, 3, 256)
    m = get_modality(
        "spectrogram", channels=3, freq_patch=3, time_patch=4, count=6, n_fft=16, hop=4
    )
    spec = m.prepare(x)
    assert spec.ndim == 4 and spec.shape[:2] == (2, 3)
    tokens, _ = m.tokenize(spec)
    assert tokens.shape == (2, 6, 3, 3, 4)
    assert get_modality("spectrogram").transform is None  # spectrograms given as data


def test_modality_tokenizer_cuts_every_token():
    x = torch.randn(2, 3, 400, generator=torch.Generator().manual_seed(0))
    plain = relpos.get_modality("signal", channels=3, window=40, count=5)
    assert plain.tokenizer is None and plain.effective_tokenizer == Tokenizer((40,))
    tokens, spans = plain.tokenize(x, generator=torch.Generator().manual_seed(1))
    assert torch.equal(tokens, extract(x, spans, (40,)))  # unchanged default
    tok = Tokenizer((40,), oversample=4, band=8, standardize=True)
    m = Modality("s", 3, (40,), RandomWindows(40, 5, scale=(0.5, 2.0)), Grid((40,)), tokenizer=tok)
    assert m.effective_tokenizer is tok
    for sampler in (None, m.grid):  # pretext sampler and on-grid spans alike
        tokens, spans = m.tokenize(x, sampler, generator=torch.Generator().manual_seed(1))
        assert torch.allclose(tokens, tok(x, spans))
        assert tokens.mean(-1).abs().max() < 1e-5
    with pytest.raises(ValueError, match="tokenizer token_shape"):
        Modality("s", 3, (40,), m.sampler, m.grid, tokenizer=Tokenizer((20,)))
