"""PART's capabilities: reconstruction, patch uncertainty, symmetry, and their plots.

An oracle model whose predictions are the ground truth must give exact reconstructions, zero
uncertainty and a perfect symmetry score; a noisy oracle must be measurably worse.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import relpos
from relpos import PART, CrossAttentionHead, Grid, RandomBoxes, RandomWindows, Spans, ViT
from relpos.analysis import (
    negative_symmetry_score,
    paste_tokens,
    patch_uncertainty,
    placements,
    plot_confusion,
    plot_reconstruction,
    plot_symmetry,
    plot_uncertainty,
    predict_all_pairs,
    reconstruct,
    symmetry_error,
    symmetry_matrices,
    true_all_pairs,
    uncertainty_all,
)
from relpos.core.spans import relative_targets


class Oracle(nn.Module):
    """Predicts the true relative positions, optionally plus seeded Gaussian noise."""

    def __init__(self, scale=None, noise: float = 0.0, seed: int = 0) -> None:
        super().__init__()
        self.scale, self.noise, self.seed = scale, noise, seed

    def predict(self, tokens, spans, pairs):
        out = relative_targets(spans, pairs, self.scale)
        if self.noise:
            g = torch.Generator().manual_seed(self.seed)
            out = out + self.noise * torch.randn(out.shape, generator=g)
        return out


def _image_case(n: int = 24, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 3, 20, 24, generator=g)
    spans = RandomBoxes(size=4, count=n, snap=True)((20, 24), 1, generator=g)
    return x, spans, relpos.extract(x, spans, (4, 4))


def _signal_case(n: int = 16, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 2, 200, generator=g)
    spans = RandomWindows(length=10, count=n, snap=True)(200, 1, generator=g)
    return x, spans, relpos.extract(x, spans, 10)


# ---------------------------------------------------------------------------- all pairs
def test_all_pairs_oracle_and_chunking():
    _, spans, tokens = _image_case(n=9)
    truth = true_all_pairs(spans)
    assert truth.shape == (1, 9, 9, 2)
    assert torch.equal(torch.diagonal(truth, dim1=1, dim2=2), torch.zeros(1, 2, 9))
    i, j = 2, 7
    expect = (spans.centre[0, j] - spans.centre[0, i]) / spans.size[0, i]
    torch.testing.assert_close(truth[0, i, j], expect)
    pred = predict_all_pairs(Oracle(), tokens, spans)
    torch.testing.assert_close(pred, truth)
    torch.testing.assert_close(predict_all_pairs(Oracle(), tokens, spans, max_pairs=7), truth)
    assert true_all_pairs(spans, scale="log").shape == (1, 9, 9, 4)


def test_predict_all_pairs_with_a_real_model_matches_predict():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    model = PART(ViT(token_dim=12, dim=32, depth=1, heads=2), CrossAttentionHead(32, 2), 8)
    model.train()
    x = torch.randn(2, 3, 12, 12, generator=g)
    spans = RandomBoxes(size=2, count=6)((12, 12), 2, generator=g)
    tokens = relpos.extract(x, spans, (2, 2))
    full = predict_all_pairs(model, tokens, spans)
    assert full.shape == (2, 6, 6, 2) and model.training  # mode restored
    chunked = predict_all_pairs(model, tokens, spans, max_pairs=5)
    torch.testing.assert_close(chunked, full, atol=1e-5, rtol=1e-5)
    pairs = torch.tensor([[[1, 4], [3, 3]], [[5, 0], [2, 1]]])
    model.eval()
    direct = model.predict(tokens, spans, pairs)
    torch.testing.assert_close(direct[0, 0], full[0, 1, 4], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(direct[1, 0], full[1, 5, 0], atol=1e-5, rtol=1e-5)
    # the reconstruction accepts the model itself
    res = reconstruct(tokens[1], spans[1], model, reference=2, extent=(12, 12))
    assert res.canvas.shape == (3, 12, 12) and res.placement_error > 0


# ---------------------------------------------------------------------------- reconstruction
def test_oracle_reconstruction_is_exact_2d():
    x, spans, tokens = _image_case()
    res = reconstruct(tokens[0], spans, true_all_pairs(spans)[0], reference=5, extent=(20, 24))
    assert res.placement_error == pytest.approx(0.0, abs=1e-6)
    assert res.placement_error_samples == pytest.approx(0.0, abs=1e-5)
    torch.testing.assert_close(res.pred_spans.centre, spans.centre)
    assert res.canvas.shape == (3, 20, 24) and res.coverage.shape == (20, 24)
    torch.testing.assert_close(res.canvas, res.true_canvas)
    assert torch.equal(res.coverage, res.true_coverage)
    covered = res.coverage > 0
    assert covered.float().mean() > 0.3
    # integer token-sized spans: the canvas is the input on covered pixels, 0 elsewhere
    torch.testing.assert_close(res.canvas[:, covered], x[0][:, covered], atol=1e-5, rtol=0)
    assert torch.equal(res.canvas[:, ~covered], torch.zeros_like(res.canvas[:, ~covered]))
    # coverage counts overlapping spans
    start = spans.start[0].long()
    expect = torch.zeros(20, 24)
    for y0, x0 in start.tolist():
        expect[y0 : y0 + 4, x0 : x0 + 4] += 1
    assert torch.equal(res.coverage, expect)


def test_oracle_reconstruction_is_exact_1d():
    x, spans, tokens = _signal_case()
    res = reconstruct(tokens[0], spans, predict_all_pairs(Oracle(), tokens, spans), reference=0)
    assert res.extent[0] <= 200 and res.canvas.shape == (2, res.extent[0])
    assert res.placement_error == pytest.approx(0.0, abs=1e-6)
    covered = res.coverage > 0
    torch.testing.assert_close(res.canvas[:, covered], x[0][:, : res.extent[0]][:, covered])
    torch.testing.assert_close(res.canvas, res.true_canvas)


def test_perturbed_reconstruction_is_worse():
    for _, spans, tokens in (_image_case(), _signal_case()):
        clean = reconstruct(tokens[0], spans, Oracle(), reference=1)
        noisy = reconstruct(tokens[0], spans, Oracle(noise=0.3), reference=1)
        assert clean.placement_error < 1e-6 < 0.05 < noisy.placement_error
        assert noisy.errors[1] == 0  # the reference anchors the frame
        assert float((noisy.canvas - noisy.true_canvas).abs().mean()) > 0.01
        # the error in reference units is the distance in samples divided by the size
        s_ref = spans.size[0, 1, 0]
        torch.testing.assert_close(noisy.errors * s_ref, noisy.errors_samples)


@pytest.mark.parametrize("scale", ["ratio", "log"])
def test_reconstruction_uses_predicted_sizes(scale):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 1, 32, 32, generator=g)
    spans = RandomBoxes(count=12, height=(2, 8), width=(2, 8))((32, 32), 1, generator=g)
    tokens = relpos.extract(x, spans, (4, 4))
    res = reconstruct(tokens[0], spans, Oracle(scale=scale), reference=3)
    torch.testing.assert_close(res.pred_spans.size, spans.size)
    assert res.size_error == pytest.approx(0.0, abs=1e-5)
    pred = true_all_pairs(spans, scale)[0]
    pred[..., 2:] = pred[..., 2:] * 1.5 if scale == "ratio" else pred[..., 2:] + 0.4
    bigger = reconstruct(tokens[0], spans, pred, reference=3, scale=scale)
    assert bigger.size_error == pytest.approx(0.4 if scale == "log" else np.log(1.5), rel=1e-4)
    assert bigger.placement_error == pytest.approx(0.0, abs=1e-6)
    same = reconstruct(tokens[0], spans, pred, reference=3, scale=scale, predicted_size=False)
    assert same.size_error == 0.0
    with pytest.raises(ValueError, match="scale"):
        reconstruct(tokens[0], spans, pred, reference=3)  # 2D components need a scale


def test_paste_tokens_3d():
    g = torch.Generator().manual_seed(0)
    v = torch.rand(1, 2, 6, 10, 10, generator=g)
    spans = Grid((2, 5, 5))((6, 10, 10), 1)
    tokens = relpos.extract(v, spans, (2, 5, 5))
    canvas, coverage = paste_tokens(tokens, spans, (6, 10, 10))
    torch.testing.assert_close(canvas, v)
    assert torch.equal(coverage, torch.ones(1, 6, 10, 10))


# ---------------------------------------------------------------------------- uncertainty
def test_oracle_uncertainty_is_zero_and_noise_raises_it():
    for _, spans, tokens in (_image_case(), _signal_case()):
        truth = true_all_pairs(spans)[0]
        res = patch_uncertainty(truth, spans, target=4)
        d = spans.ndim
        assert res.placements.shape == (spans.num - 1, d) and res.covariance.shape == (d, d)
        assert 4 not in res.references.tolist()
        assert res.uncertainty == pytest.approx(0.0, abs=1e-8)
        torch.testing.assert_close(res.mean, spans.centre[0, 4])
        assert res.bias == pytest.approx(0.0, abs=1e-5)
        assert float(uncertainty_all(truth, spans).abs().max()) < 1e-8
        noisy = predict_all_pairs(Oracle(noise=0.2), tokens, spans)[0]
        res = patch_uncertainty(noisy, spans, target=4)
        assert res.uncertainty > 0.1 and res.uncertainty_rel > 0.001
        everyone = uncertainty_all(noisy, spans)
        assert everyone.shape == (spans.num,) and bool((everyone > 0).all())
        assert float(everyone[4]) == pytest.approx(res.uncertainty, rel=1e-5)
        rel = uncertainty_all(noisy, spans, relative=True)
        assert float(rel[4]) == pytest.approx(res.uncertainty_rel, rel=1e-5)


def test_uncertainty_matches_numpy_covariance():
    _, spans, _ = _image_case(n=10)
    g = torch.Generator().manual_seed(3)
    pred = true_all_pairs(spans)[0] + 0.5 * torch.randn(10, 10, 2, generator=g)
    res = patch_uncertainty(pred, spans, target=7)
    c, s = spans.centre[0].numpy(), spans.size[0].numpy()
    refs = [i for i in range(10) if i != 7]
    pts = c[refs] + pred[refs, 7].numpy() * s[refs]
    np.testing.assert_allclose(res.placements.numpy(), pts, rtol=1e-5)
    cov = np.cov(pts.T, bias=True)
    np.testing.assert_allclose(res.covariance.numpy(), cov, rtol=1e-4)
    assert res.uncertainty == pytest.approx(np.trace(cov), rel=1e-4)
    # placements() is the same quantity for every pair
    torch.testing.assert_close(placements(pred, spans)[refs, 7], res.placements)
    batched = uncertainty_all(pred[None].expand(3, -1, -1, -1), Spans.cat([spans] * 3, dim=0))
    assert batched.shape == (3, 10)


# ---------------------------------------------------------------------------- symmetry
def test_symmetry_score_oracle_noise_random_and_positive():
    for _, spans, _ in (_image_case(), _signal_case()):
        truth = true_all_pairs(spans)[0]
        assert negative_symmetry_score(truth, spans) == pytest.approx(1.0, abs=1e-6)
        assert negative_symmetry_score(truth, spans, reduction="mean") == pytest.approx(1.0)
        assert symmetry_error(truth, spans) == pytest.approx(0.0, abs=1e-6)
        g = torch.Generator().manual_seed(0)
        noisy = truth + 0.5 * torch.randn(truth.shape, generator=g)
        assert 0.5 < negative_symmetry_score(noisy, spans) < 0.999
        assert symmetry_error(noisy, spans) > 0.1
        rand = torch.randn(truth.shape, generator=g)
        assert abs(negative_symmetry_score(rand, spans)) < 0.15
        # |Δ| is positively symmetric: a_ij = b_ij, the worst case
        assert negative_symmetry_score(truth.abs(), spans) == pytest.approx(-1.0, abs=1e-5)
        # a negated predictor is still perfectly (negatively) symmetric
        assert negative_symmetry_score(-truth, spans) == pytest.approx(1.0, abs=1e-6)


def test_symmetry_with_unequal_sizes():
    g = torch.Generator().manual_seed(0)
    spans = RandomBoxes(count=10, height=(2, 8), width=(2, 8))((32, 32), 1, generator=g)
    truth = true_all_pairs(spans, "ratio")[0]
    assert not torch.allclose(truth[..., :2], -truth[..., :2].transpose(0, 1))
    assert negative_symmetry_score(truth, spans) == pytest.approx(1.0, abs=1e-6)


def test_symmetry_matrices_order():
    spans = Grid(4)((12, 16), 1)  # 3 x 4 row-major grid
    perm = torch.randperm(12, generator=torch.Generator().manual_seed(0))
    shuffled = Spans(spans.centre[:, perm], spans.size[:, perm])
    truth = true_all_pairs(shuffled)[0]
    m = symmetry_matrices(truth, shuffled)
    assert m["axes"] == ("y", "x") and m["pred"].shape == (2, 12, 12)
    torch.testing.assert_close(m["centre"], spans.centre[0])  # row-major again
    torch.testing.assert_close(m["pred"], m["true"])
    torch.testing.assert_close(m["true"], -m["true"].transpose(1, 2))  # equal sizes
    torch.testing.assert_close(m["true"][1, 0, :4], torch.arange(4.0))  # x steps of one patch
    idx = symmetry_matrices(truth, shuffled, order="index")
    assert torch.equal(idx["order"], torch.arange(12))
    rnd = symmetry_matrices(truth, shuffled, order="random", seed=1)
    assert sorted(rnd["order"].tolist()) == list(range(12))
    _, sig, _ = _signal_case()
    m1 = symmetry_matrices(true_all_pairs(sig)[0], sig)
    assert m1["axes"] == ("t",) and bool((m1["centre"][1:, 0] >= m1["centre"][:-1, 0]).all())


def test_batched_symmetry_and_shape_errors():
    _, spans, _ = _image_case(n=6)
    both = Spans.cat([spans, spans], dim=0)
    truth = true_all_pairs(both)
    assert negative_symmetry_score(truth, both) == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match="pred_rel"):
        negative_symmetry_score(truth[:, :5], both)
    with pytest.raises(ValueError, match="B=1"):
        patch_uncertainty(truth[0], both, 0)


# ---------------------------------------------------------------------------- plots
def _png(path) -> None:
    assert path.exists() and path.stat().st_size > 1000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plots_write_pngs(tmp_path):
    pytest.importorskip("matplotlib")
    x, spans, tokens = _image_case()
    noisy = predict_all_pairs(Oracle(noise=0.2), tokens, spans)[0]
    rec = reconstruct(tokens[0], spans, noisy, reference=2, extent=(20, 24), image=x[0])
    fig = plot_reconstruction(rec, tmp_path / "rec2d.png")
    assert len(fig.axes) == 3
    _png(tmp_path / "rec2d.png")
    plot_uncertainty(patch_uncertainty(noisy, spans, 3), x[0], tmp_path / "unc2d.png")
    _png(tmp_path / "unc2d.png")
    plot_uncertainty(patch_uncertainty(noisy, spans, 3), path=tmp_path / "unc2d_bare.png")
    _png(tmp_path / "unc2d_bare.png")
    plot_symmetry(symmetry_matrices(noisy, spans), tmp_path / "sub" / "sym.png")
    _png(tmp_path / "sub" / "sym.png")

    s, sspans, stokens = _signal_case()
    snoisy = predict_all_pairs(Oracle(noise=0.2), stokens, sspans)[0]
    rec1 = reconstruct(stokens[0], sspans, snoisy, reference=0, extent=(200,), image=s[0])
    assert len(plot_reconstruction(rec1, tmp_path / "rec1d.png").axes) == 3
    _png(tmp_path / "rec1d.png")
    plot_uncertainty(patch_uncertainty(snoisy, sspans, 2), s[0], tmp_path / "unc1d.png")
    _png(tmp_path / "unc1d.png")
    plot_symmetry(symmetry_matrices(snoisy, sspans), tmp_path / "sym1d.png")
    _png(tmp_path / "sym1d.png")

    plot_confusion(
        np.array([[5, 1, 0], [2, 7, 1], [0, 0, 0]]), ["a", "b", "c"], tmp_path / "cm.png"
    )
    _png(tmp_path / "cm.png")
    with pytest.raises(ValueError, match="cm"):
        plot_confusion(np.eye(2), ["a", "b", "c"])


def test_capabilities_live_in_their_modules():
    import relpos.analysis as analysis
    from relpos.analysis import pairs, reconstruction, symmetry, uncertainty

    assert {"all_pairs", "predict_all_pairs", "true_all_pairs", "placements"} <= set(pairs.__all__)
    assert {"paste_tokens", "reconstruct", "ReconstructionResult"} <= set(reconstruction.__all__)
    assert {"patch_uncertainty", "uncertainty_all", "UncertaintyResult"} <= set(uncertainty.__all__)
    assert {"symmetry_matrices", "negative_symmetry_score", "symmetry_error"} <= set(
        symmetry.__all__
    )
    for module in (pairs, reconstruction, symmetry, uncertainty):
        for name in module.__all__:
            if name in analysis.__all__:  # the package re-exports the same objects
                assert getattr(analysis, name) is getattr(module, name)


# ---------------------------------------------------------------------------- predicted variance
def test_predicted_variance_of_a_gaussian_nll_model():
    from relpos.analysis.uncertainty import predicted_variance

    torch.manual_seed(0)
    model = PART(
        ViT(token_dim=20, dim=32, depth=1, heads=2),
        CrossAttentionHead(32, 2),
        8,
        loss="gaussian_nll",
    )
    _, spans, tokens = _signal_case(n=6)
    model.train()
    var = predicted_variance(model, tokens, spans, max_pairs=7)
    assert var.shape == (1, 6, 6, 1) and (var > 0).all() and model.training
    # the existing tools read the means only
    mean = predict_all_pairs(model, tokens, spans)
    assert mean.shape == (1, 6, 6, 1)
    assert uncertainty_all(mean[0], spans).shape == (6,)
    assert patch_uncertainty(mean[0], spans, 2).placements.shape == (5, 1)
    model.eval()
    pairs = torch.tensor([[[1, 4], [3, 3]]])
    m, logvar = model.predict_with_logvar(tokens, spans, pairs)
    torch.testing.assert_close(logvar.exp()[0, 0], var[0, 1, 4])
    torch.testing.assert_close(m[0, 0], mean[0, 1, 4])
    mse = PART(ViT(token_dim=20, dim=32, depth=1, heads=2), CrossAttentionHead(32, 1), 8)
    with pytest.raises(ValueError, match="predicts no variance"):
        predicted_variance(mse, tokens, spans)
    with pytest.raises(ValueError, match="no predict_with_logvar"):
        predicted_variance(Oracle(), tokens, spans)


def test_confusion_title_shows_kappa_and_macro_f1() -> None:
    pytest.importorskip("matplotlib")
    from relpos.train.metrics import confusion_matrix

    y, p = [0, 0, 0, 1, 1], [0, 0, 1, 1, 2]
    cm = confusion_matrix(y, p, 3)
    title = plot_confusion(cm, ["a", "b", "c"]).axes[0].get_title()
    assert "macro-F1 0.433" in title and "kappa 0.333" in title and "(n=5)" in title
    metrics = pytest.importorskip("sklearn.metrics")
    assert metrics.cohen_kappa_score(y, p) == pytest.approx(1 / 3)
