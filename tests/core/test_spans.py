"""Spans, pairs and relative targets: geometry as properties."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from relpos import Spans, relative_targets, sample_pairs
from relpos.core.spans import target_names

SETTINGS = settings(max_examples=60, deadline=None)


@st.composite
def random_spans(draw, max_d: int = 3):
    b = draw(st.integers(1, 3))
    n = draw(st.integers(2, 6))
    d = draw(st.integers(1, max_d))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    centre = torch.rand(b, n, d, generator=g, dtype=torch.float64) * 100
    size = torch.rand(b, n, d, generator=g, dtype=torch.float64) * 20 + 0.5
    pairs = sample_pairs(b, n, draw(st.integers(1, 8)), generator=g)
    return Spans(centre, size), pairs, g


@SETTINGS
@given(random_spans(), st.floats(-500, 500))
def test_targets_invariant_to_translation(case, shift):
    spans, pairs, g = case
    offset = torch.rand(spans.ndim, generator=g, dtype=torch.float64) * shift
    moved = Spans(spans.centre + offset, spans.size)
    for scale in (None, "ratio", "log"):
        torch.testing.assert_close(
            relative_targets(moved, pairs, scale), relative_targets(spans, pairs, scale)
        )


@SETTINGS
@given(random_spans(), st.floats(0.05, 20))
def test_targets_invariant_to_scaling_spans_and_centres(case, factor):
    spans, pairs, g = case
    per_axis = factor * (0.5 + torch.rand(spans.ndim, generator=g, dtype=torch.float64))
    scaled = Spans(spans.centre * per_axis, spans.size * per_axis)
    for scale in (None, "ratio", "log"):
        torch.testing.assert_close(
            relative_targets(scaled, pairs, scale), relative_targets(spans, pairs, scale)
        )


@SETTINGS
@given(random_spans())
def test_swapping_ref_and_tgt(case):
    spans, pairs, _ = case
    delta = relative_targets(spans, pairs)
    swapped = relative_targets(spans, pairs.flip(-1))
    s_ref = torch.gather(spans.size, 1, pairs[..., :1].expand(-1, -1, spans.ndim))
    s_tgt = torch.gather(spans.size, 1, pairs[..., 1:].expand(-1, -1, spans.ndim))
    # (c_r - c_t) / s_t  ==  -delta * s_ref / s_tgt
    torch.testing.assert_close(swapped, -delta * s_ref / s_tgt)
    ratio = relative_targets(spans, pairs, "ratio")[..., spans.ndim :]
    ratio_swapped = relative_targets(spans, pairs.flip(-1), "ratio")[..., spans.ndim :]
    torch.testing.assert_close(ratio * ratio_swapped, torch.ones_like(ratio))


def test_targets_hand_computed():
    # two 2D spans: ref at (y, x) = (10, 20) of size (4, 8); tgt at (14, 4) of size (2, 16)
    spans = Spans(
        torch.tensor([[[10.0, 20.0], [14.0, 4.0]]]), torch.tensor([[[4.0, 8.0], [2.0, 16.0]]])
    )
    pairs = torch.tensor([[[0, 1], [1, 0]]])
    t = relative_targets(spans, pairs, "ratio")
    expected = torch.tensor([[[1.0, -2.0, 0.5, 2.0], [-2.0, 1.0, 2.0, 0.5]]])
    torch.testing.assert_close(t, expected)
    torch.testing.assert_close(
        relative_targets(spans, pairs, "log")[..., 2:], expected[..., 2:].log()
    )
    assert relative_targets(spans, pairs).shape == (1, 2, 2)
    assert target_names(2, "ratio") == ("y", "x", "s_y", "s_x")


def test_spans_helpers():
    start = torch.tensor([[[0.0, 2.0], [5.0, 1.0]]])
    end = torch.tensor([[[4.0, 6.0], [9.0, 3.0]]])
    spans = Spans.from_corners(start, end)
    torch.testing.assert_close(spans.centre, torch.tensor([[[2.0, 4.0], [7.0, 2.0]]]))
    lo, hi = spans.corners()
    torch.testing.assert_close(lo, start)
    torch.testing.assert_close(hi, end)
    both = Spans.cat([spans, spans], dim=0)
    assert both.batch == 2 and len(both) == 2
    assert both[1].centre.shape == (1, 2, 2)
    assert both[:, :1].num == 1
    assert spans.to(dtype=torch.float64).dtype == torch.float64
    assert spans.is_integer((4, 4)) is False and spans.is_integer() is True
    assert bool(spans.inside((9, 6)).all()) and not bool(spans.inside((8, 6)).all())
    snapped = Spans(torch.tensor([[[2.3]]]), torch.tensor([[[3.6]]])).snap()
    assert snapped.start.item() == 0.0 and snapped.size.item() == 4.0


def test_spans_validation_names_the_field():
    with pytest.raises(ValueError, match="size must be positive"):
        Spans(torch.zeros(1, 2, 1), torch.tensor([[[1.0], [0.0]]]))
    with pytest.raises(ValueError, match=r"Spans.centre must have shape \(B, N, D\)"):
        Spans(torch.zeros(2, 1), torch.ones(2, 1))
    with pytest.raises(ValueError, match="Spans.size shape"):
        Spans(torch.zeros(1, 2, 1), torch.ones(1, 3, 1))


@SETTINGS
@given(st.integers(1, 5), st.integers(2, 9), st.integers(1, 40), st.booleans(), st.integers(0, 999))
def test_sample_pairs_properties(b, n, m, self_pairs, seed):
    g = torch.Generator().manual_seed(seed)
    pairs = sample_pairs(b, n, m, generator=g, self_pairs=self_pairs)
    assert pairs.shape == (b, m, 2) and pairs.dtype == torch.long
    assert int(pairs.min()) >= 0 and int(pairs.max()) < n
    if not self_pairs:
        assert bool((pairs[..., 0] != pairs[..., 1]).all())
    again = sample_pairs(
        b, n, m, generator=torch.Generator().manual_seed(seed), self_pairs=self_pairs
    )
    assert torch.equal(pairs, again)


def test_sample_pairs_independent_per_example_and_uniform():
    g = torch.Generator().manual_seed(0)
    pairs = sample_pairs(2000, 5, 16, generator=g)
    assert not torch.equal(pairs[0], pairs[1])
    # every ordered pair (r != t) equally likely: 20 cells, 32000 draws each
    flat = (pairs[..., 0] * 5 + pairs[..., 1]).flatten()
    counts = torch.bincount(flat, minlength=25).float()
    counts = counts[counts > 0]
    assert counts.numel() == 20
    assert float(counts.std() / counts.mean()) < 0.05


def test_pairs_out_of_range_raises():
    spans = Spans(torch.zeros(1, 3, 1), torch.ones(1, 3, 1))
    with pytest.raises(ValueError, match="pairs index out of range"):
        relative_targets(spans, torch.tensor([[[0, 3]]]))
    with pytest.raises(ValueError, match=r"pairs must have shape \(B, M, 2\)"):
        relative_targets(spans, torch.tensor([[0, 1]]))
    with pytest.raises(ValueError, match="num_tokens must be >= 2"):
        sample_pairs(1, 1, 4)
    with pytest.raises(ValueError, match="scale must be"):
        relative_targets(spans, torch.tensor([[[0, 1]]]), scale="area")
