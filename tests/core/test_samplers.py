"""Samplers: spans inside the input, vectorised, reproducible, per-example."""

from __future__ import annotations

import hashlib
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from relpos import Grid, RandomBoxes, RandomCuboids, RandomSpans, RandomWindows

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


# Span draws of the samplers as they were before RandomSpans replaced the per-D classes
# (sha256 of centres and sizes, two calls on one seeded generator): the presets must keep
# giving bit-identical spans for the same seeds.
BEFORE = {
    "windows_fixed": "8189d02091bdf875adb35a02815b9b1a",
    "windows_fixed_snap": "5a79d473785f294e62d7f923d66d2f09",
    "windows_frac_snap": "065676fa3b46168e9d615cc010cdb09c",
    "windows_range": "ee4f2af5d1284ac58dc460207788dd7a",
    "windows_range_snap": "a6e934bc204fd59d7bc3f34d7f3f64a4",
    "boxes_fixed": "9df00acf18126b8973d5bd7eafdc18e5",
    "boxes_fixed_hw_snap": "70a6b3876f0e25b420ec432211e2fdd2",
    "boxes_scale_ratio": "480897dad06ecbbc357efc27de5bbb99",
    "boxes_scale_snap": "47f16a8fd619287c8212c4127d798e69",
    "boxes_ratio": "5e6e2574b4276aecc63c84aa363b485a",
    "boxes_multiscale": "e189d4729c25a81717e5ec769ee5fd01",
    "boxes_hw": "70a42c8b136c5aa2b839e786d521d39f",
    "boxes_hw_snap": "030c071b6b807f6cac7ac3eb7b00ac36",
    "cuboids": "b5bf63827bd2facacfb1c46cb90521be",
    "grid2": "8346e3a181b33b005797c376d96a48e0",
    "grid1": "d7997aebc2fa5a06f55370e18257c817",
}
CASES = {
    "windows_fixed": (lambda: RandomWindows(100, 40), (3000,)),
    "windows_fixed_snap": (lambda: RandomWindows(100, 40, snap=True), (3000,)),
    "windows_frac_snap": (lambda: RandomWindows(37.6, 9, snap=True), (250,)),
    "windows_range": (lambda: RandomWindows((30.3, 170.7), 12), (160,)),
    "windows_range_snap": (lambda: RandomWindows((30.3, 170.7), 12, snap=True), (160,)),
    "boxes_fixed": (lambda: RandomBoxes(size=4, count=49), (28, 28)),
    "boxes_fixed_hw_snap": (lambda: RandomBoxes(size=(5.5, 3.2), count=16, snap=True), (19, 23)),
    "boxes_scale_ratio": (
        lambda: RandomBoxes(size=6, count=20, scale=(0.5, 2.0), ratio=(0.75, 1.33)),
        (32, 40),
    ),
    "boxes_scale_snap": (
        lambda: RandomBoxes(size=6, count=20, scale=(0.5, 3.0), snap=True),
        (32, 40),
    ),
    "boxes_ratio": (lambda: RandomBoxes(size=(8, 4), count=20, ratio=(0.3, 3.0)), (32, 40)),
    "boxes_multiscale": (lambda: RandomBoxes.multiscale(16, 196), (224, 224)),
    "boxes_hw": (lambda: RandomBoxes(count=16, height=(1.3, 4.7), width=(0.9, 40.1)), (8, 30)),
    "boxes_hw_snap": (
        lambda: RandomBoxes(count=16, height=(1.3, 4.7), width=(0.9, 40.1), snap=True),
        (8, 30),
    ),
    "cuboids": (lambda: RandomCuboids((2, 16, 16), 30), (8, 64, 48)),
    "grid2": (lambda: Grid((4, 4), stride=3), (28, 30)),
    "grid1": (lambda: Grid(100), (3000,)),
}


def _digest(spans) -> str:
    h = hashlib.sha256()
    h.update(spans.centre.contiguous().numpy().tobytes())
    h.update(spans.size.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


@pytest.mark.parametrize("case", sorted(CASES))
def test_presets_draw_as_before(case):
    make, extent = CASES[case]
    sampler, g = make(), torch.Generator().manual_seed(7)
    first, second = sampler(extent, 5, generator=g), sampler(extent, 3, generator=g)
    assert _digest(first) + _digest(second) == BEFORE[case]


def test_presets_are_random_spans():
    """The familiar names are presets of the one N-D sampler: same draws as RandomSpans."""
    pairs = [
        (RandomBoxes(size=(4, 6), count=8, snap=True), RandomSpans((4, 6), 8, snap=True)),
        (RandomBoxes(count=8, height=(2, 5), width=(1, 3)), RandomSpans(count=8, ranges=[(2, 5), (1, 3)])),
        (RandomCuboids((2, 4, 4), 8), RandomSpans((2, 4, 4), 8)),
    ]  # fmt: skip
    for preset, generic in pairs:
        assert isinstance(preset, RandomSpans)
        ext = (8,) * generic.ndim
        a = preset(ext, 3, generator=torch.Generator().manual_seed(0))
        b = generic(ext, 3, generator=torch.Generator().manual_seed(0))
        assert torch.equal(a.centre, b.centre) and torch.equal(a.size, b.size)


@SETTINGS
@given(
    extent=st.lists(st.integers(4, 40), min_size=1, max_size=4),
    count=st.integers(2, 16),
    mode=st.sampled_from(["fixed", "scale", "ranges"]),
    snap=st.booleans(),
    seed=st.integers(0, 10_000),
)
def test_random_spans_any_dimension(extent, count, mode, snap, seed):
    d, side = len(extent), max(1, min(extent) // 2)
    if mode == "fixed":
        sampler = RandomSpans(side, count, snap=snap)
    elif mode == "scale":
        sampler = RandomSpans(side, count, scale=(0.5, 2.0), snap=snap)
    else:
        sampler = RandomSpans(count=count, ranges=[(1.0, float(e)) for e in extent], snap=snap)
    spans = sampler(tuple(extent), 2, generator=torch.Generator().manual_seed(seed))
    assert spans.centre.shape == (2, count, d)
    assert bool(spans.inside(tuple(extent)).all()) and bool((spans.size > 0).all())
    if snap:
        assert spans.is_integer()


def test_random_spans_bad_input():
    with pytest.raises(ValueError, match="give a size, or per-axis ranges"):
        RandomSpans(count=4)
    with pytest.raises(ValueError, match="disagree on the number of axes"):
        RandomSpans((2, 2), 4, ndim=3)
    with pytest.raises(ValueError, match="ratio needs 2-D spans"):
        RandomSpans((2, 2, 2), 4, ratio=(0.5, 2.0))
    with pytest.raises(ValueError, match="ranges exclude scale/ratio"):
        RandomSpans(count=4, ranges=[(1, 2)], scale=(1, 2))
    with pytest.raises(ValueError, match="extent must have 3 axis"):
        RandomCuboids((2, 4, 4), 4)((8, 8), 1)
    with pytest.raises(ValueError, match="larger than the extent"):
        RandomCuboids((2, 16, 16), 4)((8, 8, 8), 1)


@SETTINGS
@given(
    n=st.integers(20, 2000),
    length=st.floats(2.0, 400.0),
    lo=st.floats(0.2, 1.0),
    hi=st.floats(1.0, 4.0),
    snap=st.booleans(),
    seed=st.integers(0, 10_000),
)
def test_multiscale_windows_sizes_within_the_scale(n, length, lo, hi, snap, seed):
    """Multi-scale windows: length x a factor in [lo, hi], clipped to the input, inside it."""
    sampler = RandomWindows(length, 16, scale=(lo, hi), snap=snap)
    spans = sampler(n, 3, generator=torch.Generator().manual_seed(seed))
    assert spans.size.shape == (3, 16, 1) and bool(spans.inside((n,)).all())
    size = spans.size
    low, high = lo * length, hi * length
    if snap:
        assert spans.is_integer()
        low, high = max(1.0, round(low) - 1), round(high) + 1
    assert bool((size >= min(low, n) - 1e-3).all()) and bool((size <= min(high, n) + 1e-3).all())


def test_multiscale_windows_are_log_uniform_and_shared_with_random_spans():
    sampler = RandomWindows(100, 64, scale=(0.5, 2.0))
    spans = sampler(10_000, 64, generator=torch.Generator().manual_seed(0))
    log_f = (spans.size / 100).log()
    assert abs(log_f.mean().item()) < 0.02  # log-uniform on [-log 2, log 2]
    assert abs(log_f.std().item() - 2 * math.log(2) / math.sqrt(12)) < 0.02
    hist = torch.histc(log_f, bins=4, min=-math.log(2), max=math.log(2)) / log_f.numel()
    assert bool(((hist - 0.25).abs() < 0.02).all())
    # the same draw as the N-D random-resized path
    same = RandomSpans(100, 64, scale=(0.5, 2.0), ndim=1)(
        10_000, 64, generator=torch.Generator().manual_seed(0)
    )
    assert torch.equal(spans.size, same.size) and torch.equal(spans.centre, same.centre)
    with pytest.raises(ValueError, match="scale needs a fixed length"):
        RandomWindows((50, 200), 8, scale=(0.5, 2.0))
    with pytest.raises(ValueError, match="scale has min > max"):
        RandomWindows(100, 8, scale=(2.0, 0.5))
    with pytest.raises(ValueError, match="scale must be positive"):
        RandomWindows(100, 8, scale=(0.0, 2.0))
