"""Tests of the sleep-staging plots (the hypnogram)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from relpos.sleep.format import STAGES
from relpos.sleep.plots import STAGE_ORDER, plot_hypnogram


def _png(path: Path) -> None:
    assert path.exists() and path.stat().st_size > 1000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _rows_top_first(fig) -> list[str]:
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    lo, hi = ax.get_ylim()
    return [lab for _, lab in sorted(zip(ax.get_yticks(), labels), reverse=bool(lo < hi))]


def test_hypnogram_stage_order(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    names = ("W", "N1", "N2", "N3", "REM")
    rng = np.random.default_rng(0)
    true = rng.integers(0, 5, 120)
    true[:3] = -1  # unscored epochs leave gaps
    pred = torch.as_tensor(rng.integers(0, 5, 120))
    fig = plot_hypnogram(true, pred, names, epoch_seconds=30, path=tmp_path / "hyp.png")
    _png(tmp_path / "hyp.png")
    assert _rows_top_first(fig) == ["W", "R", "N1", "N2", "N3"]
    with pytest.raises(ValueError, match="same length"):
        plot_hypnogram(true[:10], pred, names)


def test_hypnogram_of_the_format_stages_and_unknown_classes() -> None:
    pytest.importorskip("matplotlib")
    assert set(STAGE_ORDER) == set(STAGES)
    lab = np.arange(len(STAGES)).repeat(4)
    assert _rows_top_first(plot_hypnogram(lab, lab[::-1], STAGES)) == list(STAGE_ORDER)
    names = ("wake", "s1", "s2", "s4", "rem", "movement")
    lab6 = np.arange(6).repeat(2)
    assert _rows_top_first(plot_hypnogram(lab6, lab6, names))[-1] == "movement"
    with pytest.raises(ValueError, match="index"):
        plot_hypnogram([0, 5], [0, 0], STAGES)
