"""The grid pretexts (MAE, MP3, DropPos, RP): what each encoder sees, their labels, and that each
one learns on a toy input where its task can be learned by construction."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from relpos import ViT
from relpos.core.extract import tokenize
from relpos.core.mae import MAE
from relpos.core.positions import MP3, DropPos, affinity_labels
from relpos.core.pretext import random_keep, smoothed_labels, take, take_spans
from relpos.core.rp import RelativePositioning, sample_window_pairs
from relpos.core.samplers import Grid
from relpos.nn.decoders import MAEDecoder


def _vit(token_dim: int, pos_embed: str = "sincos", pos_unit: float = 1.0, **kw) -> ViT:
    torch.manual_seed(0)
    return ViT(token_dim, dim=32, depth=1, heads=2, pos_embed=pos_embed, pos_unit=pos_unit, **kw)


def _fit(model: torch.nn.Module, batch, steps: int, lr: float = 3e-3) -> None:
    """``steps`` AdamW steps on ``batch(i) -> (tokens, spans)``."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(1)
    model.train()
    for i in range(steps):
        tokens, spans = batch(i)
        loss = model(tokens, spans, generator=g).loss
        opt.zero_grad()
        loss.backward()
        opt.step()


@torch.no_grad()
def _score(model: torch.nn.Module, batch, seed: int = 123) -> dict[str, float]:
    model.eval()
    tokens, spans = batch(10_000 + seed)
    out = model(tokens, spans, generator=torch.Generator().manual_seed(seed))
    return {k: float(v) for k, v in out.errors.items()}


# ---------------------------------------------------------------------- shared pieces
@settings(max_examples=40, deadline=None)
@given(
    b=st.integers(1, 4), n=st.integers(1, 40), ratio=st.floats(0.0, 0.99), seed=st.integers(0, 99)
)
def test_random_keep_keeps_sorted_distinct_tokens(b, n, ratio, seed):
    keep, masked = random_keep(b, n, ratio, generator=torch.Generator().manual_seed(seed))
    v = max(1, n - round(ratio * n))
    assert keep.shape == (b, v) and masked.shape == (b, n)
    assert bool((keep[:, 1:] > keep[:, :-1]).all())  # increasing, so distinct
    assert int((~masked).sum()) == b * v
    assert bool((~masked).gather(1, keep).all())


def test_random_keep_rejects_a_full_mask():
    with pytest.raises(ValueError, match=r"mask ratio must lie in \[0, 1\)"):
        random_keep(2, 10, 1.0)


def test_take_spans_follows_the_index():
    tokens = torch.arange(2 * 5 * 3, dtype=torch.float).reshape(2, 5, 3)
    x = torch.randn(2, 1, 50)
    _, spans = tokenize(x, Grid(10), 10)
    idx = torch.tensor([[4, 0], [1, 3]])
    assert torch.equal(take(tokens, idx)[1, 0], tokens[1, 1])
    assert torch.equal(take_spans(spans, idx).centre[0, 0], spans.centre[0, 4])


@settings(max_examples=20, deadline=None)
@given(h=st.integers(1, 4), w=st.integers(2, 5), sigma=st.floats(0.05, 3.0))
def test_smoothed_labels_are_distributions_peaked_on_the_true_cell(h, w, sigma):
    _, spans = tokenize(torch.zeros(1, 1, 4 * h, 4 * w), Grid(4), 4)
    soft = smoothed_labels(spans, sigma)
    n = h * w
    assert soft.shape == (1, n, n)
    assert torch.allclose(soft.sum(-1), torch.ones(1, n), atol=1e-5)
    assert torch.equal(soft.argmax(-1)[0], torch.arange(n))


def test_smoothing_gives_the_hard_label_when_its_width_goes_to_zero():
    _, spans = tokenize(torch.zeros(2, 1, 12, 16), Grid(4), 4)
    hard = torch.eye(12).expand(2, 12, 12)
    assert torch.equal(smoothed_labels(spans, 0.0), hard)
    gaps = [(smoothed_labels(spans, s) - hard).abs().max().item() for s in (1.0, 0.3, 0.1)]
    assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 1e-12
    with pytest.raises(ValueError, match="sigma"):
        smoothed_labels(spans, -1.0)


# ---------------------------------------------------------------------- MAE
def _smooth_signals(i: int, b: int = 32) -> tuple[torch.Tensor, object]:
    """Slow sinusoids of random frequency and phase: masked tokens follow from their
    neighbours. 8 tokens of 16 samples."""
    g = torch.Generator().manual_seed(i)
    t = torch.arange(128.0)
    f = 0.5 + torch.rand(b, 1, 1, generator=g)  # 0.5-1.5 cycles per 128 samples
    phase = 2 * math.pi * torch.rand(b, 1, 1, generator=g)
    x = torch.sin(2 * math.pi * f * t / 128 + phase)
    return tokenize(x, Grid(16), 16)


def _mae(mask_ratio: float = 0.5) -> MAE:
    enc = _vit(16, pos_unit=16.0)
    torch.manual_seed(0)
    return MAE(enc, MAEDecoder(32, 16, dim=32, depth=1, heads=2, pos_unit=16.0), mask_ratio)


def test_mae_encoder_never_sees_masked_tokens():
    mae = _mae(0.75).eval()
    tokens, spans = _smooth_signals(0, b=4)
    feats, keep, masked = mae.encode(tokens, spans, torch.Generator().manual_seed(5))
    changed = tokens.clone()
    changed[masked] = 1e3 * torch.randn_like(changed[masked])  # every masked token
    again, keep2, _ = mae.encode(changed, spans, torch.Generator().manual_seed(5))
    assert torch.equal(keep, keep2) and torch.equal(feats, again)
    assert feats.shape[1] == 2 == keep.shape[1]  # 8 tokens, 75% masked: 2 visible
    # a visible token does change the output
    changed[0, keep[0, 0]] += 1.0
    assert not torch.equal(mae.encode(changed, spans, torch.Generator().manual_seed(5))[0], feats)


def test_mae_learns_to_fill_in_smooth_signals():
    mae = _mae()
    before = _score(mae, _smooth_signals)
    assert before["recon"] == pytest.approx(before["zero_recon"], rel=0.3)
    _fit(mae, _smooth_signals, 300)
    after = _score(mae, _smooth_signals)
    assert after["recon"] < 0.4 * after["zero_recon"], after
    assert after["mask_frac"] == pytest.approx(0.5)


def test_mae_refuses_learned_positions_and_bad_ratios():
    with pytest.raises(ValueError, match="sincos"):
        MAE(ViT(16, dim=32, depth=1, heads=2, pos_embed="learned", num_tokens=8), _mae().decoder)
    with pytest.raises(ValueError, match="mask_ratio"):
        MAE(_vit(16), _mae().decoder, mask_ratio=1.0)


# ---------------------------------------------------------------------- MP3 and DropPos
def _textured_images(i: int, b: int = 32) -> tuple[torch.Tensor, object]:
    """2 x 16 x 16 images whose texture reveals the position: channel 0 ramps down the rows,
    channel 1 across the columns, plus noise. 16 grid cells of 4 x 4."""
    g = torch.Generator().manual_seed(i)
    ramp = torch.linspace(-1, 1, 16)
    x = torch.stack([ramp[:, None].expand(16, 16), ramp[None, :].expand(16, 16)])
    x = x + 0.1 * torch.randn(b, 2, 16, 16, generator=g)
    return tokenize(x, Grid(4), 4)


def test_mp3_leaves_masked_tokens_out_of_keys_and_values():
    enc = _vit(32, pos_embed="none").eval()
    tokens, _ = _textured_images(0, b=2)
    keep = torch.ones(2, 16, dtype=torch.bool)
    keep[:, :5] = False
    out = enc.forward_features(tokens, None, key_keep=keep)
    changed = tokens.clone()
    changed[:, 2] += 5.0  # a token outside the keys: only its own (query) row may change
    again = enc.forward_features(changed, None, key_keep=keep)
    rows = torch.ones(17, dtype=torch.bool)
    rows[1 + 2] = False  # prefix [CLS] first
    assert torch.allclose(out[:, rows], again[:, rows], atol=1e-6)
    assert not torch.allclose(out[:, 3], again[:, 3])
    changed = tokens.clone()
    changed[:, 9] += 5.0  # a kept token changes everyone
    assert not torch.allclose(enc.forward_features(changed, None, key_keep=keep)[:, 0], out[:, 0])


def test_mp3_learns_positions_from_a_position_revealing_texture():
    mp3 = MP3(_vit(32, pos_embed="none"), 16, mask_ratio=0.75)
    _fit(mp3, _textured_images, 120)
    s = _score(mp3, _textured_images)
    assert s["chance_pos_acc"] == pytest.approx(1 / 16)
    assert s["pos_acc"] > 0.6, s


def test_mp3_needs_an_encoder_without_positions_and_the_grid():
    with pytest.raises(ValueError, match="pos_embed='none'"):
        MP3(_vit(32), 16)
    mp3 = MP3(_vit(32, pos_embed="none"), 9)
    tokens, spans = _textured_images(0, b=2)
    with pytest.raises(ValueError, match="classifies 9 grid positions; got 16"):
        mp3(tokens, spans)


@pytest.mark.parametrize("sigma,attentive", [(0.0, 0.0), (1.0, 0.5)])
def test_droppos_learns_dropped_positions_from_content(sigma, attentive):
    dp = DropPos(_vit(32, pos_unit=4.0), 16, 0.5, 0.75, sigma=sigma, attentive=attentive)
    _fit(dp, _textured_images, 120)
    s = _score(dp, _textured_images)
    assert s["pos_acc"] > 0.5, s
    # 16 cells, half masked; 6 of the 8 visible lose their position: 6 of 16 are scored
    assert s["scored_frac"] == pytest.approx(6 / 16)


def test_droppos_targets_mix_smoothing_and_content_affinity():
    tokens, spans = _textured_images(0, b=2)
    keep = torch.tensor([[0, 5, 10], [1, 2, 15]])
    hard = DropPos(_vit(32), 16, sigma=0.0).targets(tokens, spans, keep)
    assert torch.equal(hard.argmax(-1), keep) and torch.equal(hard.sum(-1), torch.ones(2, 3))
    aff = affinity_labels(tokens, keep, 0.1)
    mixed = DropPos(_vit(32), 16, sigma=0.0, attentive=0.25).targets(tokens, spans, keep)
    assert torch.allclose(mixed, 0.75 * hard + 0.25 * aff)
    assert torch.allclose(mixed.sum(-1), torch.ones(2, 3))


# ---------------------------------------------------------------------- RP
@settings(max_examples=25, deadline=None)
@given(starts=st.integers(4, 60), seed=st.integers(0, 999), data=st.data())
def test_window_pairs_respect_the_thresholds(starts, seed, data):
    tau_pos = data.draw(st.integers(1, starts - 3))
    tau_neg = data.draw(st.integers(tau_pos + 1, starts - 1))
    a, b, label = sample_window_pairs(
        64, starts, tau_pos, tau_neg, generator=torch.Generator().manual_seed(seed)
    )
    gap = (a - b).abs()
    assert bool(((a >= 0) & (a < starts) & (b >= 0) & (b < starts)).all())
    close = label > 0
    assert bool(((gap >= 1) & (gap <= tau_pos))[close].all())
    assert bool((gap >= tau_neg)[~close].all())


def test_window_pairs_need_room_for_far_pairs():
    with pytest.raises(ValueError, match="tau_neg"):
        sample_window_pairs(4, 5, 2, 5)


def _drifting_signals(i: int, b: int = 32) -> tuple[torch.Tensor, object]:
    """A slow drift plus noise: windows close in time have close levels. 10 windows of 4
    tokens of 8 samples."""
    g = torch.Generator().manual_seed(i)
    t = torch.linspace(0, 1, 320)
    slope = (1.0 + 2.0 * torch.rand(b, 1, 1, generator=g)) * torch.sign(
        torch.randn(b, 1, 1, generator=g)
    )
    x = 4 * slope * t + 0.3 * torch.randn(b, 1, 320, generator=g)
    return tokenize(x, Grid(8), 8)


def test_rp_learns_close_from_far_on_slow_drift():
    rp = RelativePositioning(_vit(8, pos_unit=8.0), window=4, tau_pos=4, tau_neg=12, pairs=4)
    before = _score(rp, _drifting_signals)
    _fit(rp, _drifting_signals, 300)
    after = _score(rp, _drifting_signals)
    assert after["rp_acc"] > 0.85 > before["rp_acc"], (before, after)
    assert 0.3 < after["close_frac"] < 0.7


def test_rp_windows_get_positions_relative_to_their_start():
    rp = RelativePositioning(_vit(8, pos_unit=8.0).eval(), window=4, tau_pos=4, tau_neg=12)
    tokens, spans = _drifting_signals(0, b=1)
    # the same content at two places embeds the same: positions are window-relative
    same = tokens.clone()
    same[0, 20:24] = same[0, 0:4]
    h = rp.embed(same, spans, torch.tensor([[0, 20]]))
    assert torch.allclose(h[0], h[1], atol=1e-5)


def test_rp_needs_one_axis():
    rp = RelativePositioning(_vit(32), window=2, tau_pos=1, tau_neg=2)
    tokens, spans = _textured_images(0, b=2)
    with pytest.raises(ValueError, match="one axis"):
        rp(tokens, spans)
