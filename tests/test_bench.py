"""``relpos bench``: the per-span loop reference agrees with ``extract`` where both are exact, and
the benchmark pieces return complete results (times are measured, never compared to a clock)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from relpos.bench import (  # the pieces run() is made of
    BenchResult,
    extract_case,
    format_results,
    loop_extract,
    run,
    step_case,
)
from relpos.core.extract import extract
from relpos.core.samplers import RandomBoxes, RandomWindows

FAST = settings(max_examples=25, deadline=None)


@FAST
@given(
    seed=st.integers(0, 2**31 - 1),
    lo=st.integers(1, 12),
    span=st.integers(0, 8),
    token=st.integers(1, 6),
)
def test_loop_extract_equals_extract_on_integer_boxes(seed, lo, span, token):
    """2-D integer boxes of random sizes (up- and down-sampling): both are the same antialiased
    triangle filter, so they agree to rounding."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 2, 24, 20, generator=g)
    sampler = RandomBoxes(count=5, height=(lo, lo + span), width=(lo, lo + span), snap=True)
    spans = sampler((24, 20), 3, generator=g)
    ts = (token, token + 1)
    got = loop_extract(x, spans, ts)
    assert got.shape == (3, 5, 2, *ts)
    torch.testing.assert_close(got, extract(x, spans, ts), rtol=1e-5, atol=1e-5)


@FAST
@given(seed=st.integers(0, 2**31 - 1), length=st.integers(1, 10), token=st.integers(10, 16))
def test_loop_extract_equals_extract_on_integer_windows(seed, length, token):
    """1-D integer windows no longer than the token (the 1-D loop has no antialiasing, so it
    matches extract where no low-pass is needed); token-sized windows are bit-exact."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 3, 50, generator=g)
    spans = RandomWindows(length, 7, snap=True)((50,), 2, generator=g)
    torch.testing.assert_close(loop_extract(x, spans, (token,)), extract(x, spans, (token,)))
    exact = RandomWindows(token, 7, snap=True)((50,), 2, generator=g)
    assert torch.equal(loop_extract(x, exact, (token,)), extract(x, exact, (token,)))


def test_loop_extract_rounds_off_grid_spans_outward():
    """Off-grid spans: the loop crops the integer cover [floor(start), ceil(end)), which is what
    makes it a reference for speed, not for values."""
    x = torch.arange(10.0).view(1, 1, 10)
    spans = RandomWindows(3, 2)((10,), 1, generator=torch.Generator().manual_seed(0))[:, :1]
    start = float(spans.start[0, 0, 0])
    assert start != int(start)
    cover = x[0, 0, math.floor(start) : math.ceil(start + 3)]
    got = loop_extract(x, spans, (len(cover),))
    assert torch.equal(got.flatten(), cover)


def _check(results: list[BenchResult], count: int) -> None:
    assert len(results) == count
    for r in results:
        assert r.name and r.reference
        assert r.seconds > 0 and r.reference_seconds > 0
        assert r.ratio == pytest.approx(r.reference_seconds / r.seconds)
    table = format_results(results).splitlines()
    assert len(table) == 2 + count and table[0].split()[:2] == ["benchmark", "time"]
    assert all(r.name in line for r, line in zip(results, table[2:]))


@pytest.mark.parametrize(
    ("shape", "sampler", "ts"),
    [((2, 3, 16, 16), RandomBoxes(4, 6), (4, 4)), ((2, 6, 300), RandomWindows(10, 5), (10,))],
)
def test_extract_case_on_tiny_sizes(shape, sampler, ts):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=g)
    results = extract_case("tiny", x, sampler, ts, 1, 1, torch.device("cpu"), g)
    _check(results, 2)
    assert [r.reference for r in results] == ["loop", "extract"]
    assert results[1].reference_seconds == results[0].seconds  # extract's one median, twice


def test_step_case_on_a_tiny_batch():
    results = step_case(1, torch.device("cpu"), 1, torch.Generator().manual_seed(0))
    _check(results, 1)
    assert results[0].reference == "PART" and "B=1" in results[0].name


@pytest.mark.slow
def test_quick_run_gives_every_documented_result():
    results = run(quick=True, device="cpu")
    _check(results, 9)
    names = [r.name for r in results]
    assert sum("loop / extract" in n for n in names) == 4
    assert sum("extract / clone" in n for n in names) == 4
    assert "PART step / encoder-only step" in names[-1]
