"""Samplers: spans inside the input, vectorised, reproducible, per-example."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from relpos import Grid, RandomBoxes, RandomWindows

SETTINGS = settings(max_examples=60, deadline=None)


@SETTINGS
@given(
    n=st.integers(8, 5000),
    frac=st.floats(0.01, 1.0),
    count=st.integers(2, 64),
    batch=st.integers(1, 8),
    snap=st.booleans(),
    ranged=st.booleans(),
    seed=st.integers(0, 10_000),
)
def test_windows_inside(n, frac, count, batch, snap, ranged, seed):
    length = max(1.0, frac * n)
    spec = (max(1.0, length / 2), length) if ranged else length
    spans = RandomWindows(spec, count, snap=snap)(
        n, batch, generator=torch.Generator().manual_seed(seed)
    )
    assert spans.centre.shape == (batch, count, 1)
    assert bool(spans.inside((n,)).all())
    if ranged:
        assert bool((spans.size >= spec[0] - 1e-4).all()) and bool(
            (spans.size <= spec[1] + 1e-4).all()
        )
    if snap:
        assert spans.is_integer()


@SETTINGS
@given(
    h=st.integers(4, 300),
    w=st.integers(4, 300),
    count=st.integers(2, 50),
    batch=st.integers(1, 4),
    mode=st.sampled_from(["fixed", "scale", "hw"]),
    snap=st.booleans(),
    seed=st.integers(0, 10_000),
)
def test_boxes_inside(h, w, count, batch, mode, snap, seed):
    side = max(1, min(h, w) // 3)
    if mode == "fixed":
        sampler = RandomBoxes(size=(side, max(1, side // 2 + 1)), count=count, snap=snap)
    elif mode == "scale":
        sampler = RandomBoxes(size=side, count=count, scale=(0.5, 2.0), ratio=(0.5, 2.0), snap=snap)
    else:
        sampler = RandomBoxes.multiscale(side, count, snap=snap)
    spans = sampler((h, w), batch, generator=torch.Generator().manual_seed(seed))
    assert spans.centre.shape == (batch, count, 2)
    assert bool(spans.inside((h, w)).all())
    assert bool((spans.size > 0).all())


@SETTINGS
@given(st.lists(st.integers(1, 40), min_size=1, max_size=3), st.integers(1, 5), st.integers(1, 3))
def test_grid_tiles(extent, tok, stride):
    tok = min(tok, *extent)
    grid = Grid((tok,) * len(extent), stride=stride)
    spans = grid(tuple(extent), 2)
    assert spans.num == grid.num_spans(extent)
    assert bool(spans.inside(extent).all())
    assert spans.is_integer((tok,) * len(extent))
    assert torch.equal(spans.centre[0], spans.centre[1])


def test_grid_tiles_image_row_major():
    spans = Grid((4, 4))((8, 12), 1)
    assert spans.num == 6
    starts = spans.start[0].tolist()
    assert starts == [[0, 0], [0, 4], [0, 8], [4, 0], [4, 4], [4, 8]]
    assert Grid(4)((8, 8), 1).num == 4 and Grid(100)((3000,), 1).num == 30
    assert Grid(100, stride=50)((3000,), 1).num == 59


def test_reproducible_and_fresh():
    s = RandomBoxes(size=8, count=16)
    a = s((32, 32), 4, generator=torch.Generator().manual_seed(1))
    b = s((32, 32), 4, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a.centre, b.centre)
    g = torch.Generator().manual_seed(1)
    c, d = s((32, 32), 4, generator=g), s((32, 32), 4, generator=g)
    assert not torch.equal(c.centre, d.centre)  # fresh per call
    assert not torch.equal(c.centre[0], c.centre[1])  # fresh per example


def test_windows_uniform_placement():
    spans = RandomWindows(100, 40)(3000, 500, generator=torch.Generator().manual_seed(0))
    start = spans.start.flatten()
    assert abs(float(start.mean()) - 1450) < 15
    hist = torch.histc(start, bins=10, min=0, max=2900)
    assert float(hist.min() / hist.max()) > 0.9


def test_bad_input_names_the_field():
    with pytest.raises(ValueError, match="count must be an integer >= 2"):
        RandomWindows(100, 1)
    with pytest.raises(ValueError, match="count must be an integer >= 2"):
        RandomBoxes(size=4, count=1)
    with pytest.raises(ValueError, match=r"length has min > max"):
        RandomWindows((200, 100), 4)
    with pytest.raises(ValueError, match=r"height has min > max"):
        RandomBoxes(count=4, height=(8, 4), width=(2, 4))
    with pytest.raises(ValueError, match=r"scale has min > max"):
        RandomBoxes(size=4, count=4, scale=(2.0, 1.0))
    with pytest.raises(ValueError, match="length 400.0 is larger than the extent 300"):
        RandomWindows(400, 4)(300, 1)
    with pytest.raises(ValueError, match="larger than the extent"):
        RandomBoxes(size=(40, 4), count=4)((32, 32), 1)
    with pytest.raises(ValueError, match="larger than the extent"):
        Grid(8)((4, 16), 1)
    with pytest.raises(ValueError, match="extent must have 1 axis"):
        RandomWindows(10, 4)((32, 32), 1)
