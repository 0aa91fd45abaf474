"""Sleep-staging plots: the hypnogram of true against predicted stages (matplotlib, imported
lazily; the confusion matrix is the generic :func:`relpos.analysis.plots.plot_confusion`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from torch import Tensor

from relpos.analysis.plots import as_numpy, new_figure, save_figure

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["STAGE_ORDER", "plot_hypnogram"]

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


def _stage_rows(class_names: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Row of each class on the hypnogram (0 = top): W, R, N1, N2, N3, then any others."""
    canon = [_STAGE_ALIASES.get(str(c).strip().lower(), str(c)) for c in class_names]
    known = [s for s in STAGE_ORDER if s in canon]
    extra = [c for c in canon if c not in STAGE_ORDER]
    labels = known + extra
    rows = np.array([labels.index(c) for c in canon], dtype=float)
    return rows, labels


def plot_hypnogram(
    true: Tensor | np.ndarray | Sequence[int],
    pred: Tensor | np.ndarray | Sequence[int],
    class_names: Sequence[str],
    epoch_seconds: float = 30,
    path: str | Path | None = None,
    *,
    title: str | None = None,
) -> Figure:
    """True (top) and predicted (bottom) sleep stage over time as step plots.

    Stages are rows from the top in the conventional order W, R, N1, N2, N3 (aliases such as
    ``"Wake"``, ``"REM"`` are recognised; other class names go below). Labels are indices into
    ``class_names``; negative labels (unscored) leave gaps. Time is in hours.
    """
    t_lab, p_lab = as_numpy(true).astype(int).ravel(), as_numpy(pred).astype(int).ravel()
    if t_lab.shape != p_lab.shape:
        raise ValueError(f"true and pred must have the same length; got {t_lab.size}, {p_lab.size}")
    k = len(class_names)
    if max(t_lab.max(initial=-1), p_lab.max(initial=-1)) >= k:
        raise ValueError(f"labels must index the {k} class names")
    rows, labels = _stage_rows(class_names)
    n = t_lab.size
    hours = np.arange(n + 1) * epoch_seconds / 3600.0

    def level(lab: np.ndarray) -> np.ndarray:
        y = np.where(lab >= 0, rows[np.clip(lab, 0, k - 1)], np.nan)
        return np.append(y, y[-1] if n else np.nan)  # closing step for where="post"

    fig = new_figure((12, 4.6))
    axes = fig.subplots(2, 1, sharex=True, sharey=True)
    for ax, (name, lab, colour) in zip(
        axes, (("true", t_lab, "k"), ("predicted", p_lab, "tab:blue"))
    ):
        ax.step(hours, level(lab), where="post", color=colour, lw=1.0)
        ax.set_yticks(range(len(labels)), labels)
        ax.set_ylim(len(labels) - 0.5, -0.5)
        ax.set_ylabel(name)
        ax.grid(axis="y", alpha=0.3)
    axes[-1].set_xlabel("time (h)")
    axes[-1].set_xlim(0, hours[-1] if n else 1)
    scored = (t_lab >= 0) & (p_lab >= 0)
    acc = float((t_lab[scored] == p_lab[scored]).mean()) if scored.any() else float("nan")
    fig.suptitle(title or f"hypnogram: {n} epochs of {epoch_seconds:g} s, agreement {acc:.3f}")
    return save_figure(fig, path)
