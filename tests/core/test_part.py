"""The PART objective: outputs, loss form, and that it learns on a small synthetic task."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from relpos import PART, CrossAttentionHead, Grid, RandomBoxes, RandomWindows, ViT, extract


def smooth_images(b: int, g: torch.Generator, size: int = 16) -> torch.Tensor:
    """Random smooth 2-channel images: ramps along y and x with random gain and offset, plus
    low-pass noise. Position is readable only through the ramps' local content."""
    yy, xx = torch.meshgrid(
        torch.arange(size, dtype=torch.float32),
        torch.arange(size, dtype=torch.float32),
        indexing="ij",
    )
    gain = torch.rand(b, 2, 1, 1, generator=g) * 1.5 + 0.5
    offset = torch.randn(b, 2, 1, 1, generator=g)
    ramps = torch.stack([yy, xx])[None] / size * 4 * gain + offset
    noise = F.avg_pool2d(torch.randn(b, 2, size, size, generator=g), 5, stride=1, padding=2)
    return ramps + 0.5 * noise


def _model(out_dim: int = 2, scale=None) -> PART:
    enc = ViT(token_dim=32, dim=48, depth=2, heads=3)
    return PART(enc, CrossAttentionHead(48, out_dim), num_pairs=32, scale=scale)


def test_output_fields_and_loss_form():
    g = torch.Generator().manual_seed(0)
    model = _model()
    x = smooth_images(4, g)
    out = model.forward_raw(x, RandomBoxes(size=4, count=10), (4, 4), generator=g)
    assert out.pred.shape == out.target.shape == (4, 32, 2)
    assert out.pairs.shape == (4, 32, 2)
    # the paper's 1/(T*M) * sum, averaged over the batch
    manual = ((out.pred - out.target) ** 2).sum((1, 2)) / (2 * 32)
    torch.testing.assert_close(out.loss, manual.mean())
    assert set(out.errors) == {
        "y", "x", "euclidean", "baseline", "zero_y", "zero_x", "zero_euclidean"
    }  # fmt: skip
    torch.testing.assert_close(out.errors["baseline"], (out.target**2).mean())
    torch.testing.assert_close((out.errors["y"] + out.errors["x"]) / 2, out.loss.detach())
    euclid = (out.pred - out.target).norm(dim=-1).mean()
    torch.testing.assert_close(out.errors["euclidean"], euclid.detach())


def test_given_pairs_and_1d_and_scale_targets():
    g = torch.Generator().manual_seed(0)
    enc = ViT(token_dim=60, dim=32, depth=1, heads=2)
    model = PART(enc, CrossAttentionHead(32, 1), num_pairs=5)
    x = torch.randn(2, 6, 300, generator=g)
    spans = RandomWindows(10, 8)(300, 2, generator=g)
    pairs = torch.tensor([[[0, 1]] * 5, [[2, 3]] * 5])
    out = model(extract(x, spans, 10), spans, pairs=pairs)
    assert torch.equal(out.pairs, pairs) and set(out.errors) == {
        "t",
        "euclidean",
        "baseline",
        "zero_t",
        "zero_euclidean",
    }
    m4 = _model(out_dim=4, scale="ratio")
    out4 = m4.forward_raw(smooth_images(2, g), RandomBoxes.multiscale(4, 8), (4, 4), generator=g)
    assert out4.target.shape == (2, 32, 4) and "s_x" in out4.errors
    # constant baseline for ratios is 1, not 0
    torch.testing.assert_close(
        out4.errors["baseline"],
        torch.cat([out4.target[..., :2] ** 2, (out4.target[..., 2:] - 1) ** 2], -1).mean(),
    )
    with pytest.raises(ValueError, match="do not match tokens"):
        model(extract(x, spans, 10)[:, :4], spans)


def test_part_learns_on_smooth_images():
    """Pretext loss falls below half of the predict-zero baseline within 250 CPU steps."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    model = _model()
    sampler = RandomBoxes(size=4, count=12)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    for _ in range(250):
        out = model.forward_raw(smooth_images(32, g), sampler, (4, 4), generator=g)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        outs = [
            model.forward_raw(smooth_images(64, g), sampler, (4, 4), generator=g) for _ in range(4)
        ]
    loss = sum(float(o.loss) for o in outs) / 4
    baseline = sum(float(o.errors["baseline"]) for o in outs) / 4
    assert loss < 0.5 * baseline, (loss, baseline)


def test_grid_spans_work_too():
    """On a 4x4 grid of 4x4 tiles every target is a whole number of tiles: the offset between
    the two tiles' grid cells, read from the pair indices alone (row-major cells)."""
    g = torch.Generator().manual_seed(0)
    out = _model().forward_raw(smooth_images(2, g), Grid(4), (4, 4), generator=g)
    assert out.pred.shape == (2, 32, 2)
    cell = torch.stack([out.pairs // 4, out.pairs % 4], -1).float()  # (B, M, 2 tokens, (y, x))
    assert torch.equal(out.target, cell[:, :, 1] - cell[:, :, 0])
    assert (out.pairs[..., 0] != out.pairs[..., 1]).all() and out.target.abs().max() <= 3


def test_bad_arguments():
    with pytest.raises(ValueError, match="scale must be"):
        PART(ViT(4, 8, 1, 1), CrossAttentionHead(8, 2), 4, scale="area")
    with pytest.raises(ValueError, match="num_pairs must be >= 1"):
        PART(ViT(4, 8, 1, 1), CrossAttentionHead(8, 2), 0)
