"""Tests of the sleep-staging plots (hypnograms on clock time, grids, per-subject kappa, the
confusion title) and of what ``relpos evaluate`` draws (subject choice, nights, scores)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from relpos.sleep.evaluation import choose_subjects, nights, per_subject_scores
from relpos.sleep.format import STAGES
from relpos.sleep.plots import (
    STAGE_ORDER,
    Night,
    plot_hypnogram,
    plot_hypnograms,
    plot_subject_kappa,
)
from relpos.train.metrics import json_safe


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


# ---------------------------------------------------------------------- clock time, grids
def _segments(fig) -> list[tuple[float, float]]:
    """``(start h, end h)`` of the connected stretches of the first trace (between nans)."""
    x = np.asarray(fig.axes[0].lines[0].get_xdata(), dtype=float)
    breaks = np.flatnonzero(np.isnan(x))
    pieces = np.split(x, breaks)
    return [(float(np.nanmin(p)), float(np.nanmax(p))) for p in pieces if np.isfinite(p).any()]


def test_hypnogram_on_clock_time_shows_gaps() -> None:
    pytest.importorskip("matplotlib")
    # 10 epochs kept of 14: epochs 4..7 were dropped; the record starts 60 s after its onset
    epoch = np.r_[0:4, 8:14]
    onsets = 60.0 + 30.0 * epoch
    lab = np.array([0, 0, 1, 2, 2, 3, 3, 2, 4, 0])
    fig = plot_hypnogram(lab, lab, STAGES, onsets=onsets)
    segs = _segments(fig)
    assert len(segs) == 2
    assert segs[0] == pytest.approx((60 / 3600, (60 + 4 * 30) / 3600))
    assert segs[1] == pytest.approx(((60 + 8 * 30) / 3600, (60 + 14 * 30) / 3600))
    assert fig.axes[0].get_xlim()[1] == pytest.approx((60 + 14 * 30) / 3600)
    title = fig._suptitle.get_text()
    assert "kappa 1.000" in title and "macro-F1 1.000" in title and "1 gaps, grey" in title
    # the same epochs without onsets are taken as consecutive: one stretch
    assert len(_segments(plot_hypnogram(lab, lab, STAGES))) == 1
    with pytest.raises(ValueError, match="one entry per epoch"):
        plot_hypnogram(lab, lab, STAGES, onsets=onsets[:3])


def test_hypnogram_title_scores_match_the_metrics() -> None:
    pytest.importorskip("matplotlib")
    from relpos.train.metrics import classification_report

    rng = np.random.default_rng(1)
    t = rng.integers(0, 5, 200)
    p = np.where(rng.random(200) < 0.7, t, rng.integers(0, 5, 200))
    rep = classification_report(t, p, STAGES)
    title = plot_hypnogram(t, p, STAGES)._suptitle.get_text()
    assert f"kappa {rep['kappa']:.3f}" in title and f"macro-F1 {rep['macro_f1']:.3f}" in title
    # a single-stage night predicted perfectly: kappa undefined, drawn without a warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        title = plot_hypnogram([2] * 5, [2] * 5, STAGES)._suptitle.get_text()
    assert "kappa nan" in title


def test_grid_of_nights_and_subject_kappa(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    rng = np.random.default_rng(2)
    nights = [
        Night(rng.integers(0, 5, 40), rng.integers(0, 5, 40), 30.0 * np.arange(40), f"s{i}")
        for i in range(3)
    ]
    fig = plot_hypnograms(nights, STAGES, path=tmp_path / "grid.png", cols=2)
    _png(tmp_path / "grid.png")
    assert len(fig.axes) == 6  # true and predicted per night
    titles = [sf._suptitle.get_text() for sf in fig.subfigs if sf._suptitle is not None]
    assert [t.split(":")[0] for t in titles] == ["s0", "s1", "s2"]
    assert all("kappa" in t for t in titles)
    with pytest.raises(ValueError, match="at least one night"):
        plot_hypnograms([], STAGES)
    fig = plot_subject_kappa(
        {"a": 0.2, "b": float("nan"), "c": 0.8, "d": None}, path=tmp_path / "k.png"
    )
    _png(tmp_path / "k.png")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["c", "a", "b", "d"]  # best first
    assert "2 of 4 defined" in ax.get_title()
    assert "mean 0.500" in [t.get_text() for t in ax.get_legend().get_texts()]


# ---------------------------------------------------------------------- evaluate's choices
def test_choose_subjects_spreads_over_the_kappa_range() -> None:
    kappas = {"a": 0.1, "b": 0.9, "c": float("nan"), "d": 0.5, "e": 0.7}
    assert choose_subjects(kappas, "all") == ["b", "e", "d", "a", "c"]
    assert choose_subjects(kappas, 3) == ["b", "d", "c"]
    assert choose_subjects(kappas, "1") == ["b"]
    assert choose_subjects(kappas, 99) == ["b", "e", "d", "a", "c"]
    assert choose_subjects(kappas, "d, a") == ["d", "a"]
    assert choose_subjects(kappas, ["e"]) == ["e"]
    with pytest.raises(ValueError, match="zz not among the 5 evaluated"):
        choose_subjects(kappas, "a,zz")
    with pytest.raises(ValueError, match=">= 1"):
        choose_subjects(kappas, 0)


def test_per_subject_scores_and_nights() -> None:
    # two subjects; s1 has two records, s0 is one stage predicted perfectly (kappa undefined)
    group = np.array([0, 0, 0, 1, 1, 1, 1, 1, 1])
    record = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2])
    label = np.array([2, 2, 2, 0, 1, 2, 0, 1, 2])
    pred = {"group": group, "label": label, "pred": np.array([2, 2, 2, 0, 1, 1, 0, 2, 2])}
    store = SimpleNamespace(
        subjects=["s0", "s1"],
        record_ids=np.array(["s0", "s1-n1", "s1-n2"]),
        onsets=30.0 * np.array([0, 1, 3, 0, 1, 2, 0, 1, 2, 9]),  # s0 lost its epoch 2
    )
    data = SimpleNamespace(store=store, indices=np.arange(9), record_index=record)
    scores = per_subject_scores(pred, np.asarray(store.subjects))
    assert np.isnan(scores["s0"]["kappa"]) and scores["s0"]["n"] == 3
    assert scores["s1"]["accuracy"] == pytest.approx(4 / 6)
    assert json.loads(json.dumps(json_safe(scores)))["s0"]["kappa"] is None
    got = nights(pred, data, ["s1", "s0"])  # type: ignore[arg-type]
    assert [n.name for n in got] == ["s1 / s1-n1", "s1 / s1-n2", "s0"]
    assert list(got[2].onsets) == [0.0, 30.0, 90.0]
    assert (
        len(_segments(plot_hypnogram(got[2].true, got[2].pred, STAGES, onsets=got[2].onsets))) == 2
    )


# ---------------------------------------------------------------------- relpos evaluate
@pytest.fixture(scope="module")
def finetuned(tmp_path_factory: pytest.TempPathFactory):
    """A store of three short synthetic nights and a finetuned checkpoint of two steps."""
    from relpos.sleep.experiment import QUICK, finetune_config, load_sleep_config, run_finetune
    from relpos.sleep.store import EpochDataset, prepare_store
    from relpos.sleep.synthetic import synthesize_dataset

    root = tmp_path_factory.mktemp("eval")
    synthesize_dataset(root / "src", 3, seed=0, max_hours=0.1)
    prepare_store(root / "src", root / "store", progress=False)
    cfg = load_sleep_config("physionet2018-demo", QUICK)
    ft = finetune_config(cfg, "supervised_pos")
    ft.optim.max_steps, ft.optim.batch_size, ft.runtime.progress = 2, 8, False
    data = EpochDataset(root / "store", labelled_only=True)
    ckpt, _ = run_finetune(ft, data, root / "ft")
    return root, ckpt, data


@pytest.mark.slow  # ~10 s on a busy 2-core machine: a store and a finetuning run
def test_evaluate_writes_scores_and_plots(finetuned, capsys) -> None:
    pytest.importorskip("matplotlib")
    from relpos.sleep.evaluation import evaluate_checkpoint

    root, ckpt, data = finetuned
    out = root / "eval"
    rep = evaluate_checkpoint(ckpt, data, out, hypnograms=2, progress=True)
    assert "evaluate" in capsys.readouterr().err  # the progress bar
    for png in ("confusion.png", "hypnogram.png", "per_subject_kappa.png"):
        _png(out / png)

    def refuse(name: str) -> None:
        raise ValueError(f"metrics.json holds {name}: not valid JSON")

    saved = json.loads((out / "metrics.json").read_text(), parse_constant=refuse)
    assert set(saved["per_subject_kappa"]) == set(data.store.subjects)
    assert len(saved["hypnogram_subjects"]) == 2 == len(rep["hypnogram_subjects"])
    assert saved["per_subject"][data.store.subjects[0]]["n"] > 0
    with pytest.raises(ValueError, match="not among"):
        evaluate_checkpoint(ckpt, data, root / "e2", hypnograms="nobody")
