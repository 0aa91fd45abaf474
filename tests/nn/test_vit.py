"""ViT encoder: shapes for 1D/2D tokens, position modes, presets."""

from __future__ import annotations

import pytest
import torch

from relpos import Grid, RandomBoxes, RandomWindows, ViT, create_model, extract, list_models
from relpos.nn.vit import count_parameters, sincos_encoding


def _tiny(**kw):
    return ViT(**{"token_dim": 48, "dim": 32, "depth": 2, "heads": 2, **kw})


def test_shapes_1d_and_2d_tokens():
    x2 = torch.randn(2, 3, 16, 16)
    s2 = RandomBoxes(size=4, count=10)((16, 16), 2)
    enc = _tiny()
    feats = enc.forward_features(extract(x2, s2, (4, 4)), s2)
    assert feats.shape == (2, 11, 32)
    x1 = torch.randn(2, 6, 300)
    s1 = RandomWindows(8, 12)(300, 2)
    enc1 = _tiny(token_dim=48, class_token=False)
    assert enc1.forward_features(extract(x1, s1, 8), s1).shape == (2, 12, 32)
    assert enc1(torch.randn(2, 12, 48)).shape == (2, 32)  # no head: pooled features


@pytest.mark.parametrize("pos", ["none", "learned", "sincos"])
def test_position_modes(pos):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 16, 16, generator=g)
    spans = Grid(4)((16, 16), 2)
    tokens = extract(x, spans, (4, 4))
    enc = _tiny(pos_embed=pos, num_tokens=16, num_classes=5).eval()
    logits = enc(tokens, spans)
    assert logits.shape == (2, 5)
    perm = torch.randperm(16, generator=g)
    permuted = enc(tokens[:, perm], spans[:, perm])
    if pos == "learned":
        # learned positions are tied to the slot: permuting tokens changes the output
        assert not torch.allclose(logits, permuted, atol=1e-5)
    else:
        # no / span-derived positions: the set of (token, span) is what matters
        torch.testing.assert_close(logits, permuted, atol=1e-5, rtol=1e-4)


def test_sincos_depends_on_span_centres_and_drop_ratio():
    enc = _tiny(pos_embed="sincos", pos_unit=4.0, pos_drop=0.2).eval()
    tokens = torch.randn(1, 4, 48)
    spans = Grid(4)((8, 8), 1)
    shifted = type(spans)(spans.centre + 3.0, spans.size)
    assert not torch.allclose(
        enc.forward_features(tokens, spans), enc.forward_features(tokens, shifted)
    )
    enc.train()
    torch.manual_seed(0)
    a = enc._position(torch.zeros(500, 4, 32), Grid(4)((8, 8), 500))
    dropped = (a.abs().sum(-1) == 0).float().mean()
    assert 0.15 < float(dropped) < 0.25
    enc_sincos = sincos_encoding(torch.rand(2, 3, 3) * 10, 64)
    assert enc_sincos.shape == (2, 3, 64)


def test_timm_style_api():
    enc = _tiny(num_classes=0)
    assert isinstance(enc.head, torch.nn.Identity)
    enc.reset_classifier(7)
    feats = enc.forward_features(torch.randn(3, 5, 48))
    assert enc.forward_head(feats).shape == (3, 7)
    assert enc.forward_head(feats, pre_logits=True).shape == (3, 32)
    enc.reset_classifier(0)
    assert enc(torch.randn(3, 5, 48)).shape == (3, 32)
    avg = _tiny(class_token=False, num_classes=2)
    assert avg.global_pool == "avg" and avg(torch.randn(1, 5, 48)).shape == (1, 2)


def test_drop_path_only_in_training():
    enc = _tiny(drop_path=0.5)
    tokens = torch.randn(4, 6, 48)
    enc.eval()
    torch.testing.assert_close(enc.forward_features(tokens), enc.forward_features(tokens))
    enc.train()
    torch.manual_seed(1)
    assert not torch.allclose(enc.forward_features(tokens), enc.forward_features(tokens))


def test_preset_parameter_counts():
    counts = {
        name: count_parameters(create_model(name))
        for name in ("vit_tiny", "vit_small", "vit_base", "vit_eeg")
    }
    assert counts["vit_tiny"] == 5_486_592
    assert counts["vit_small"] == 21_590_016
    assert counts["vit_base"] == 85_647_360
    eeg = create_model("vit_eeg", pos_embed="learned", num_tokens=30, num_classes=5)
    assert abs(count_parameters(eeg) - 12.9e6) < 0.1e6  # the paper's 12.9M ViT-1D
    assert create_model("vit_small", token_dim=48).token_dim == 48
    assert {"vit_tiny", "vit_small", "vit_base", "vit_eeg"} <= set(list_models())


def test_bad_input():
    with pytest.raises(ValueError, match="unknown model preset 'vit_huge'"):
        create_model("vit_huge")
    with pytest.raises(ValueError, match="needs num_tokens"):
        _tiny(pos_embed="learned")
    with pytest.raises(ValueError, match="pos_embed must be"):
        _tiny(pos_embed="rope")
    enc = _tiny(pos_embed="learned", num_tokens=4)
    with pytest.raises(ValueError, match="expect 4 tokens; got 5"):
        enc(torch.randn(1, 5, 48))
    with pytest.raises(ValueError, match="token_dim is 48"):
        _tiny()(torch.randn(1, 5, 40))
    with pytest.raises(ValueError, match="needs the spans"):
        _tiny(pos_embed="sincos")(torch.randn(1, 5, 48))
