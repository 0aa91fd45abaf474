"""Sleep-staging plots (matplotlib, imported lazily; the confusion matrix is the generic
:func:`relpos.analysis.plots.plot_confusion`):

- :func:`plot_hypnogram`: true against predicted stages of one night on clock time (hours from
  the record start), so dropped or unscored epochs show as gaps, titled with kappa and macro-F1;
- :func:`plot_hypnograms`: a grid of several nights (:class:`Night`), each titled with its kappa;
- :func:`plot_subject_kappa`: per-subject kappa as sorted bars, with the mean and median.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from torch import Tensor

from relpos.analysis.plots import as_numpy, new_figure, save_figure
from relpos.train.metrics import classification_report

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure, SubFigure

__all__ = ["STAGE_ORDER", "Night", "plot_hypnogram", "plot_hypnograms", "plot_subject_kappa"]

#: sleep stages from the top of a hypnogram down
STAGE_ORDER: tuple[str, ...] = ("W", "R", "N1", "N2", "N3")
_STAGE_ALIASES = {
    "w": "W",
    "wake": "W",
    "r": "R",
    "rem": "R",
    "n1": "N1",
    "s1": "N1",
    "n2": "N2",
    "s2": "N2",
    "n3": "N3",
    "s3": "N3",
    "s4": "N3",
}
Labels = Tensor | np.ndarray | Sequence[int]


@dataclass
class Night:
    """One recording to draw: stage indices ``true`` and ``pred`` ``(n,)`` (-1: unscored),
    ``onsets`` ``(n,)`` seconds from the record start (``None``: consecutive epochs) and a
    ``name`` (subject, record) for the title."""

    true: Labels
    pred: Labels
    onsets: Labels | None = None
    name: str = ""


def _stage_rows(class_names: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Row of each class on the hypnogram (0 = top): W, R, N1, N2, N3, then any others."""
    canon = [_STAGE_ALIASES.get(str(c).strip().lower(), str(c)) for c in class_names]
    known = [s for s in STAGE_ORDER if s in canon]
    extra = [c for c in canon if c not in STAGE_ORDER]
    labels = known + extra
    rows = np.array([labels.index(c) for c in canon], dtype=float)
    return rows, labels


def _arrays(
    night: Night, k: int, epoch_seconds: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(true, pred, onsets)`` of a night as checked arrays, sorted by onset."""
    t, p = as_numpy(night.true).astype(int).ravel(), as_numpy(night.pred).astype(int).ravel()
    if t.shape != p.shape:
        raise ValueError(f"true and pred must have the same length; got {t.size}, {p.size}")
    if max(t.max(initial=-1), p.max(initial=-1)) >= k:
        raise ValueError(f"labels must index the {k} class names")
    if night.onsets is None:
        on = np.arange(t.size, dtype=np.float64) * epoch_seconds
    else:
        on = as_numpy(night.onsets).astype(np.float64).ravel()
        if on.shape != t.shape:
            raise ValueError(f"onsets must have one entry per epoch; got {on.size} for {t.size}")
    order = np.argsort(on, kind="stable")
    return t[order], p[order], on[order]


def _scores(t: np.ndarray, p: np.ndarray, k: int) -> tuple[float, float]:
    """Kappa and macro-F1 over the epochs scored in both (``nan`` when undefined, silently)."""
    keep = (t >= 0) & (p >= 0)
    if not keep.any():
        return math.nan, math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = classification_report(t[keep], p[keep], [str(i) for i in range(k)])
    return float(r["kappa"]), float(r["macro_f1"])


def _trace(
    lab: np.ndarray, onsets: np.ndarray, rows: np.ndarray, epoch_seconds: float
) -> tuple[np.ndarray, np.ndarray]:
    """Step-plot points ``(x hours, y row)``: each epoch a flat segment over its 30 s, joined
    to the next one where it follows directly, broken (``nan``) across a gap."""
    y = np.where(lab >= 0, rows[np.clip(lab, 0, len(rows) - 1)], np.nan)
    start, end = onsets, onsets + epoch_seconds
    gap = np.append(start[1:] > end[:-1] + 1e-6, True)
    x = np.stack([start, end, np.where(gap, np.nan, end)], 1).ravel() / 3600.0
    return x, np.stack([y, y, np.where(gap, np.nan, y)], 1).ravel()


def _gaps(onsets: np.ndarray, epoch_seconds: float) -> list[tuple[float, float]]:
    """``(start h, width h)`` of the stretches between kept epochs (dropped or not stored)."""
    end = onsets[:-1] + epoch_seconds
    gap = onsets[1:] > end + 1e-6
    return list(zip(end[gap] / 3600.0, (onsets[1:][gap] - end[gap]) / 3600.0))


def _draw_night(
    panel: Figure | SubFigure,
    night: Night,
    class_names: Sequence[str],
    epoch_seconds: float,
    title: str | None,
) -> list[Axes]:
    """True (top) and predicted (bottom) stages of one night into ``panel``."""
    k = len(class_names)
    t, p, on = _arrays(night, k, epoch_seconds)
    rows, labels = _stage_rows(class_names)
    axes = panel.subplots(2, 1, sharex=True, sharey=True)
    gaps = _gaps(on, epoch_seconds)
    for ax, (name, lab, colour) in zip(axes, (("true", t, "k"), ("predicted", p, "tab:blue"))):
        if gaps:
            ax.broken_barh(gaps, (-0.5, len(labels)), color="0.88", lw=0)
        ax.plot(*_trace(lab, on, rows, epoch_seconds), color=colour, lw=1.0)
        ax.set_yticks(range(len(labels)), labels)
        ax.set_ylim(len(labels) - 0.5, -0.5)
        ax.set_ylabel(name)
        ax.grid(axis="y", alpha=0.3)
    axes[-1].set_xlabel("time from the record start (h)")
    end = (on[-1] + epoch_seconds) / 3600.0 if on.size else 1.0
    axes[-1].set_xlim(min(0.0, on[0] / 3600.0) if on.size else 0.0, end)
    kappa, mf1 = _scores(t, p, k)
    head = f"{night.name}: " if night.name else ""
    gap_note = f"; {len(gaps)} gaps, grey" if gaps else ""
    panel.suptitle(
        title
        or f"{head}kappa {kappa:.3f}, macro-F1 {mf1:.3f} ({t.size} epochs of "
        f"{epoch_seconds:g} s{gap_note})",
        fontsize=10,
    )
    return list(axes)


def plot_hypnogram(
    true: Labels,
    pred: Labels,
    class_names: Sequence[str],
    epoch_seconds: float = 30,
    path: str | Path | None = None,
    *,
    onsets: Labels | None = None,
    title: str | None = None,
) -> Figure:
    """True (top) and predicted (bottom) sleep stage of one night as step plots on clock time.

    Stages are rows from the top in the conventional order W, R, N1, N2, N3 (aliases such as
    ``"Wake"``, ``"REM"`` are recognised; other class names go below). Labels ``(n,)`` are
    indices into ``class_names``; negative labels (unscored) leave gaps. ``onsets`` ``(n,)``
    are each epoch's start in seconds from the record start (an :class:`EpochStore`'s
    ``onsets``): epochs missing between them (dropped, not stored) leave grey gaps; without
    them the epochs are taken as consecutive. The title shows kappa and macro-F1.
    """
    fig = new_figure((12, 4.6))
    _draw_night(fig, Night(true, pred, onsets), class_names, epoch_seconds, title)
    return save_figure(fig, path)


def plot_hypnograms(
    nights: Sequence[Night],
    class_names: Sequence[str],
    epoch_seconds: float = 30,
    path: str | Path | None = None,
    *,
    cols: int = 1,
    title: str | None = None,
) -> Figure:
    """A grid of :func:`plot_hypnogram` panels, one per :class:`Night` (``cols`` per row),
    each titled with its name, kappa and macro-F1."""
    if not nights:
        raise ValueError("plot_hypnograms needs at least one night")
    if cols < 1:
        raise ValueError(f"cols must be >= 1, got {cols}")
    cols = min(cols, len(nights))
    n_rows = math.ceil(len(nights) / cols)
    fig = new_figure((12 * cols**0.75, 3.6 * n_rows + (0.4 if title else 0)))
    panels = np.asarray(fig.subfigures(n_rows, cols, squeeze=False)).ravel()
    for panel, night in zip(panels, nights):
        _draw_night(panel, night, class_names, epoch_seconds, None)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def plot_subject_kappa(
    kappas: Mapping[str, float | None],
    path: str | Path | None = None,
    *,
    title: str | None = None,
) -> Figure:
    """Per-subject Cohen's kappa as horizontal bars sorted from best to worst, with the mean
    and median as lines; subjects whose kappa is undefined (``nan``/``None``: one stage only)
    are listed as "n/a" at the bottom."""
    if not kappas:
        raise ValueError("plot_subject_kappa needs at least one subject")
    names = list(kappas)
    vals = np.array([math.nan if v is None else float(v) for v in kappas.values()])
    order = np.argsort(np.where(np.isnan(vals), np.inf, -vals), kind="stable")
    names, vals = [names[i] for i in order], vals[order]
    fig = new_figure((7, 1.2 + 0.22 * len(names)))
    ax = fig.subplots()
    pos = np.arange(len(names))
    undefined = np.isnan(vals)
    ax.barh(pos, np.nan_to_num(vals), color=["0.8" if u else "tab:blue" for u in undefined])
    ok = vals[~undefined]
    for s in pos[undefined]:  # annotation only
        ax.text(0, s, " n/a", va="center", fontsize=8)
    stats: dict[str, Any] = {}
    if ok.size:
        stats = {"mean": float(ok.mean()), "median": float(np.median(ok))}
        ax.axvline(stats["mean"], color="k", lw=1, label=f"mean {stats['mean']:.3f}")
        ax.axvline(stats["median"], color="k", ls="--", lw=1, label=f"median {stats['median']:.3f}")
        ax.legend(loc="lower right", fontsize=8)
    ax.set_yticks(pos, names, fontsize=8 if len(names) < 40 else 6)
    ax.set_ylim(len(names) - 0.5, -0.5)
    ax.set_xlim(min(0.0, float(ok.min()) if ok.size else 0.0), 1.0)
    ax.set_xlabel("Cohen's kappa")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(title or f"per-subject kappa ({ok.size} of {len(names)} defined)", fontsize=10)
    return save_figure(fig, path)
