"""extract(): exact on integer spans, antialiased, border-safe, dtype/device preserving."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from relpos import Grid, RandomBoxes, RandomWindows, Spans, extract


def _slices(x, spans, ts):
    start = spans.start.long()
    out = []
    for b in range(spans.batch):
        row = []
        for n in range(spans.num):
            idx = tuple(slice(int(s), int(s) + t) for s, t in zip(start[b, n], ts))
            row.append(x[(b, slice(None), *idx)])
        out.append(torch.stack(row))
    return torch.stack(out)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from([torch.float32, torch.float64, torch.float16]))
def test_exact_on_integer_spans_1d_2d_3d(seed, dtype):
    g = torch.Generator().manual_seed(seed)
    x1 = torch.randn(3, 6, 500, generator=g).to(dtype)
    s1 = RandomWindows(100, 7, snap=True)(500, 3, generator=g)
    assert torch.equal(extract(x1, s1, 100), _slices(x1, s1, (100,)))
    x2 = torch.randn(2, 3, 32, 24, generator=g).to(dtype)
    s2 = RandomBoxes(size=(4, 6), count=9, snap=True)((32, 24), 2, generator=g)
    assert torch.equal(extract(x2, s2, (4, 6)), _slices(x2, s2, (4, 6)))
    x3 = torch.randn(2, 2, 6, 10, 10, generator=g).to(dtype)
    s3 = Grid((2, 5, 5))((6, 10, 10), 2)
    assert torch.equal(extract(x3, s3, (2, 5, 5)), _slices(x3, s3, (2, 5, 5)))


def test_grid_tokens_equal_patchify():
    x = torch.randn(2, 3, 8, 12)
    tokens = extract(x, Grid(4)((8, 12), 2), (4, 4))
    patches = x.unfold(2, 4, 4).unfold(3, 4, 4)  # (B, C, 2, 3, 4, 4)
    assert torch.equal(tokens, patches.permute(0, 2, 3, 1, 4, 5).reshape(2, 6, 3, 4, 4))


def _sinusoid(n, f=0.45):
    return torch.sin(2 * math.pi * f * torch.arange(n, dtype=torch.float64) + 0.3)


def test_antialias_1d():
    x = _sinusoid(3000)[None, None].float()  # std 0.71
    spans = RandomWindows(400, 64)(3000, 4, generator=torch.Generator().manual_seed(0))
    tokens = extract(x.expand(4, 1, -1), spans, 100)  # spans 4x the token
    assert float(tokens.std()) < 0.03
    assert float(tokens.abs().max()) < 0.15
    # plain strided sampling of the same spans would alias to a full-amplitude wave
    naive = x[0, 0, spans.start.long()[0, :, 0, None] + torch.arange(0, 400, 4)]
    assert float(naive.std()) > 0.5


def test_antialias_2d():
    wave = _sinusoid(96).float()
    for img in (wave[None, :].expand(96, 96), wave[:, None].expand(96, 96)):
        spans = RandomBoxes(size=16, count=64)(
            (96, 96), 1, generator=torch.Generator().manual_seed(1)
        )
        tokens = extract(img[None, None], spans, (4, 4))
        assert float(tokens.std()) < 0.05


def test_linear_interpolation_of_a_ramp():
    x = torch.arange(50, dtype=torch.float64)[None, None]
    spans = Spans(
        torch.tensor([[[10.5 + 5.0]]], dtype=torch.float64),
        torch.tensor([[[10.0]]], dtype=torch.float64),
    )
    out = extract(x, spans, 10)[0, 0, 0]
    torch.testing.assert_close(out, torch.arange(10, dtype=torch.float64) + 10.5)
    # upsampling a ramp 2x stays on the ramp away from the span ends
    spans = Spans(
        torch.tensor([[[20.0]]], dtype=torch.float64), torch.tensor([[[8.0]]], dtype=torch.float64)
    )
    out = extract(x, spans, 16)[0, 0, 0]
    torch.testing.assert_close(
        out[1:-1], 16.0 + 0.25 + 0.5 * torch.arange(1, 15, dtype=torch.float64) - 0.5
    )


def test_borders_read_no_padding():
    # spans touching every border, fractional sizes, up- and down-sampling
    x = torch.full((1, 2, 20, 30), 5.0)
    start = torch.tensor([[[0.0, 0.0], [20 - 7.3, 30 - 3.1], [0.0, 30 - 17.5], [20 - 2.5, 0.0]]])
    size = torch.tensor([[[7.3, 3.1], [7.3, 3.1], [13.0, 17.5], [2.5, 9.9]]])
    spans = Spans.from_corners(start, start + size)
    out = extract(x, spans, (4, 4))
    torch.testing.assert_close(out, torch.full_like(out, 5.0))
    x1 = torch.full((1, 1, 100), -2.0)
    s1 = Spans.from_corners(
        torch.tensor([[[0.0], [100 - 37.7]]]), torch.tensor([[[41.2], [100.0]]])
    )
    torch.testing.assert_close(extract(x1, s1, 10), torch.full((1, 2, 1, 10), -2.0))


def test_reads_nothing_outside_the_span():
    x = torch.zeros(1, 1, 40, 40)
    x[0, 0, :, 20:] = 1000.0  # a wall right of column 20
    spans = Spans.from_corners(torch.tensor([[[3.2, 4.7]]]), torch.tensor([[[15.2, 20.0]]]))
    assert float(extract(x, spans, (4, 4)).abs().max()) == 0.0
    x1 = torch.zeros(1, 1, 100)
    x1[..., 50:] = 1000.0
    s1 = Spans.from_corners(torch.tensor([[[10.4]]]), torch.tensor([[[50.0]]]))
    assert float(extract(x1, s1, 8).abs().max()) == 0.0


def test_batched_equals_one_span_at_a_time():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(3, 2, 40, 30, generator=g)
    spans = RandomBoxes(count=5, height=(2.0, 17.0), width=(3.0, 21.0))((40, 30), 3, generator=g)
    batched = extract(x, spans, (5, 4))
    for b in range(3):
        for n in range(5):
            single = extract(x[b : b + 1], spans[b][:, n : n + 1], (5, 4))
            torch.testing.assert_close(batched[b, n], single[0, 0], rtol=1e-5, atol=1e-5)


def test_dtype_and_device_preserved():
    g = torch.Generator().manual_seed(0)
    spans = RandomBoxes(size=5.5, count=4)((16, 16), 2, generator=g)
    for dtype in (torch.float32, torch.float64, torch.bfloat16):
        out = extract(torch.randn(2, 3, 16, 16).to(dtype), spans, (4, 4))
        assert out.dtype == dtype and out.device.type == "cpu"
        assert out.shape == (2, 4, 3, 4, 4)
    img = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    assert extract(img, spans, (4, 4)).dtype == torch.float32
    if torch.cuda.is_available():  # pragma: no cover - GPU machines only
        out = extract(torch.randn(2, 3, 16, 16, device="cuda"), spans, (4, 4))
        assert out.device.type == "cuda"


def test_bad_input():
    spans = Spans(torch.full((1, 2, 2), 4.0), torch.full((1, 2, 2), 4.0))
    with pytest.raises(ValueError, match="rank 4; got rank 3"):
        extract(torch.zeros(1, 3, 8), spans, 4)
    with pytest.raises(ValueError, match="token_shape"):
        extract(torch.zeros(1, 3, 8, 8), spans, (4, 4, 4))
    with pytest.raises(ValueError, match="inside the input extent"):
        extract(torch.zeros(1, 3, 5, 5), spans, 4)
    with pytest.raises(ValueError, match="batch"):
        extract(torch.zeros(2, 3, 8, 8), spans, 4)
