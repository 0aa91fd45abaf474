"""PART options: position dropping drawn by PART, DropPos-style scoring, the Gaussian NLL, and
the errors an ablation table reads."""

from __future__ import annotations

import pytest
import torch

from relpos import PART, CrossAttentionHead, RandomWindows, ViT, extract
from relpos.core.part import pair_mask
from relpos.core.spans import Spans, sample_pairs


def _signal_batch(b: int = 2, n: int = 6, seed: int = 0) -> tuple[torch.Tensor, Spans]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, 2, 200, generator=g)
    spans = RandomWindows(10, n)(200, b, generator=g)
    return extract(x, spans, 10), spans


def _part(pos_embed: str = "sincos", pos_drop: float = 0.2, out_dim: int = 1, **kwargs) -> PART:
    torch.manual_seed(0)
    enc = ViT(token_dim=20, dim=32, depth=1, heads=2, pos_embed=pos_embed, pos_drop=pos_drop)
    return PART(enc, CrossAttentionHead(32, out_dim), num_pairs=12, **kwargs)


KEEP = torch.tensor([[True, False, True, True, False, True], [False, True, True, True, True, True]])
PAIRS = torch.tensor(
    [
        [[0, 1], [1, 0], [2, 3], [4, 1], [5, 4], [3, 2]],
        [[0, 1], [1, 0], [2, 3], [4, 5], [5, 4], [3, 0]],
    ]
)
# (ref dropped, target dropped) read off KEEP by hand
TARGET = torch.tensor([[1, 0, 0, 1, 1, 0], [0, 1, 0, 0, 0, 1]], dtype=torch.bool)
EITHER = torch.tensor([[1, 1, 0, 1, 1, 0], [1, 1, 0, 0, 0, 1]], dtype=torch.bool)


def test_pair_mask_matches_hand_count():
    assert torch.equal(pair_mask(KEEP, PAIRS, "dropped_target"), TARGET)
    assert torch.equal(pair_mask(KEEP, PAIRS, "dropped_either"), EITHER)
    assert pair_mask(KEEP, PAIRS, "all").all()
    with pytest.raises(ValueError, match="score must be"):
        pair_mask(KEEP, PAIRS, "kept")  # type: ignore[arg-type]


@pytest.mark.parametrize("score,mask", [("dropped_target", TARGET), ("dropped_either", EITHER)])
def test_droppos_scoring_counts_only_its_pairs(score, mask):
    tokens, spans = _signal_batch()
    model = _part(score=score).eval()
    out = model(tokens, spans, pairs=PAIRS, pos_keep=KEEP)
    assert torch.equal(out.scored, mask) and torch.equal(out.pos_keep, KEEP)
    sq = (out.pred - out.target) ** 2  # (B, M, 1)
    torch.testing.assert_close(out.loss, sq[mask].mean())
    assert not torch.allclose(out.loss, sq.mean())
    # only the scored pairs carry gradient to the predictions
    (grad,) = torch.autograd.grad(out.loss, out.pred)
    assert torch.equal(grad[..., 0] != 0, mask)
    # the @dropped errors cover the same pairs; the all-pairs errors stay all-pairs
    torch.testing.assert_close(out.errors["t@dropped"], sq[mask].mean())
    torch.testing.assert_close(out.errors["zero_t@dropped"], (out.target[mask] ** 2).mean())
    torch.testing.assert_close(out.errors["t"], sq.mean())
    torch.testing.assert_close(out.errors["scored_frac"], mask.float().mean())


def test_score_all_reports_dropped_targets():
    tokens, spans = _signal_batch()
    out = _part().eval()(tokens, spans, pairs=PAIRS, pos_keep=KEEP)
    sq = (out.pred - out.target) ** 2
    torch.testing.assert_close(out.loss, sq.mean())
    assert out.scored.all()
    (grad,) = torch.autograd.grad(out.loss, out.pred)
    assert (grad != 0).all()
    torch.testing.assert_close(out.errors["t@dropped"], sq[TARGET].mean())
    torch.testing.assert_close(out.errors["scored_frac"], TARGET.float().mean())


def test_no_scored_pair_gives_zero_loss_with_grad():
    tokens, spans = _signal_batch()
    model = _part(score="dropped_either")
    out = model(tokens, spans, pairs=PAIRS, pos_keep=torch.ones(2, 6, dtype=torch.bool))
    assert float(out.loss.detach()) == 0.0 and out.loss.requires_grad
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert float(out.errors["t@dropped"]) == 0.0 and float(out.errors["scored_frac"]) == 0.0


def test_scoring_needs_dropping():
    tokens, spans = _signal_batch()
    with pytest.raises(ValueError, match="needs position dropping"):
        _part(pos_embed="none", pos_drop=0.0, score="dropped_target")(tokens, spans)
    with pytest.raises(ValueError, match="score must be"):
        _part(score="kept")
    with pytest.raises(ValueError, match="loss must be"):
        _part(loss="l1")


@pytest.mark.parametrize("train", [True, False])
def test_part_draws_the_position_mask_with_its_generator(train):
    tokens, spans = _signal_batch(b=64, n=20)
    model = _part().train(train)
    a = model(tokens, spans, generator=torch.Generator().manual_seed(3))
    b = model(tokens, spans, generator=torch.Generator().manual_seed(3))
    c = model(tokens, spans, generator=torch.Generator().manual_seed(4))
    assert a.pos_keep is not None and a.pos_keep.shape == (64, 20)
    assert torch.equal(a.pos_keep, b.pos_keep) and not torch.equal(a.pos_keep, c.pos_keep)
    assert 0.15 < 1 - a.pos_keep.float().mean().item() < 0.25
    # the mask reaches the encoder: the same mask reproduces the predictions
    model.eval()
    with torch.no_grad():
        again = model.predict(tokens, spans, a.pairs, pos_keep=a.pos_keep)
        unmasked = model.predict(tokens, spans, a.pairs)
    if not train:
        torch.testing.assert_close(again, a.pred)
        assert torch.equal(a.pred, b.pred)
    assert not torch.allclose(again, unmasked)
    for key in ("t@dropped", "zero_t@dropped", "scored_frac", "zero_t", "t", "baseline"):
        assert key in a.errors


def test_default_options_keep_the_loss_and_the_generator_stream():
    tokens, spans = _signal_batch(b=4, n=8)
    for pos_embed, pos_drop in (("none", 0.0), ("sincos", 0.0), ("none", 0.2)):
        model = _part(pos_embed=pos_embed, pos_drop=pos_drop)
        g = torch.Generator().manual_seed(1)
        out = model(tokens, spans, generator=g)
        assert out.pos_keep is None and out.logvar is None and out.scored.all()
        assert torch.equal(out.loss, torch.mean((out.pred.float() - out.target.float()) ** 2))
        assert not any("@" in k for k in out.errors) and "nll" not in out.errors
        # only the pairs were drawn from the generator
        ref = torch.Generator().manual_seed(1)
        assert torch.equal(out.pairs, sample_pairs(4, 8, 12, generator=ref))
        assert torch.equal(g.get_state(), ref.get_state())


def test_gaussian_nll_reduces_to_mse_at_zero_logvar():
    tokens, spans = _signal_batch()
    model = _part(pos_embed="none", pos_drop=0.0, out_dim=2, loss="gaussian_nll")
    with torch.no_grad():
        model.head.out.weight[1:].zero_()
        model.head.out.bias[1:].zero_()
    out = model(tokens, spans, pairs=PAIRS)
    assert out.pred.shape == out.logvar.shape == (2, 6, 1)
    assert torch.equal(out.logvar, torch.zeros_like(out.logvar))
    mse = torch.mean((out.pred - out.target) ** 2)
    torch.testing.assert_close(out.loss, mse)
    torch.testing.assert_close(out.errors["nll"], mse.detach())
    out.loss.backward()
    assert model.head.out.weight.grad is not None
    # predict gives the means only; the general formula holds for any log-variance
    assert torch.equal(model.predict(tokens, spans, PAIRS), out.pred)
    with torch.no_grad():
        model.head.out.bias[1:] = 0.7
    out = model(tokens, spans, pairs=PAIRS)
    manual = torch.exp(-out.logvar) * (out.pred - out.target) ** 2 + out.logvar
    torch.testing.assert_close(out.loss, manual.mean())
    with torch.no_grad():
        model.head.out.bias[1:] = 100.0
    mean, logvar = model.predict_with_logvar(tokens, spans, PAIRS)
    assert mean.shape == (2, 6, 1) and torch.equal(logvar, torch.full_like(logvar, 10.0))


def test_gaussian_nll_with_droppos_scoring():
    tokens, spans = _signal_batch()
    model = _part(out_dim=2, loss="gaussian_nll", score="dropped_target")
    out = model(tokens, spans, pairs=PAIRS, pos_keep=KEEP)
    per = torch.exp(-out.logvar) * (out.pred - out.target) ** 2 + out.logvar
    torch.testing.assert_close(out.loss, per[TARGET].mean())
    torch.testing.assert_close(out.errors["nll"], per.mean().detach())


@pytest.mark.parametrize("scale", [None, "log", "ratio"])
def test_normalize_weighs_every_component_by_its_neutral_error(scale):
    """normalize: each component's squared error is divided by the batch's neutral error for
    that component, so the loss is the mean of the per-component ratios (1 for no skill)."""
    tokens, spans = _signal_batch(b=3, n=8)
    spans = Spans(spans.centre, spans.size * torch.linspace(0.5, 1.5, 8)[:, None])
    t = 2 if scale else 1
    model = _part(pos_embed="none", pos_drop=0.0, out_dim=t, scale=scale, normalize=True).eval()
    out = model(tokens, spans, generator=torch.Generator().manual_seed(1))
    names = ["t", "s_t"][:t]
    ratios = torch.stack([out.errors[n] / out.errors[f"zero_{n}"] for n in names])
    torch.testing.assert_close(out.loss, ratios.mean())
    plain = _part(pos_embed="none", pos_drop=0.0, out_dim=t, scale=scale).eval()
    plain.load_state_dict(model.state_dict())
    ref = plain(tokens, spans, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(ref.pred, out.pred)
    assert not torch.allclose(ref.loss, out.loss)
