"""Plots of PART's capabilities and of classification results (matplotlib, imported lazily).

Any classifier's confusion matrix is drawn here (:func:`plot_confusion`); plots tied to a
domain live with it (the sleep hypnogram: :mod:`relpos.sleep.plots`) and build on
:func:`new_figure`, :func:`save_figure` and :func:`as_numpy`.

Image panels are drawn in span coordinates: sample ``i`` covers ``[i, i + 1)``, so spans,
centres and placements are drawn exactly where :mod:`relpos.core.spans` puts them.

Figures are built with :class:`matplotlib.figure.Figure` directly (no pyplot state, Agg
rendering, safe in scripts, threads and headless machines). Every function returns the
``Figure`` and, given ``path``, also writes a PNG there (parent folders are created).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from torch import Tensor

from relpos.analysis.reconstruction import ReconstructionResult
from relpos.analysis.uncertainty import UncertaintyResult

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

__all__ = [
    "as_numpy",
    "confusion_title",
    "new_figure",
    "plot_confusion",
    "plot_reconstruction",
    "plot_symmetry",
    "plot_uncertainty",
    "save_figure",
]


def new_figure(figsize: tuple[float, float]) -> Figure:
    """A constrained-layout :class:`~matplotlib.figure.Figure` (no pyplot state)."""
    try:
        from matplotlib.figure import Figure
    except ImportError as err:  # pragma: no cover - matplotlib is installed in the test env
        raise ImportError(
            'plotting needs matplotlib; install it with: pip install "relpos[plot]"'
        ) from err
    return Figure(figsize=figsize, layout="constrained")


def save_figure(fig: Figure, path: str | Path | None, dpi: int = 120) -> Figure:
    """Write ``fig`` as a PNG to ``path`` (parent folders created) unless ``path`` is None;
    returns ``fig``."""
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png", dpi=dpi)
        log.info("wrote %s", path)
    return fig


def as_numpy(x: Any) -> np.ndarray:
    """A tensor (detached, float, on the CPU) or array-like as a numpy array."""
    if isinstance(x, Tensor):
        return x.detach().float().cpu().numpy()
    return np.asarray(x)


def _display(img: np.ndarray, lo: float, hi: float, mask: np.ndarray | None = None) -> np.ndarray:
    """``(C, H, W)`` -> RGBA ``(H, W, 4)`` in [0, 1]; grayscale replicated, uncovered gray."""
    x = np.clip((img - lo) / max(hi - lo, 1e-12), 0, 1)
    if x.shape[0] == 1:
        rgb = np.repeat(x, 3, axis=0)
    elif x.shape[0] >= 3:
        rgb = x[:3]
    else:  # 2 channels: show the first
        rgb = np.repeat(x[:1], 3, axis=0)
    rgb = np.moveaxis(rgb, 0, -1)
    alpha = np.ones((*rgb.shape[:2], 1))
    out = np.concatenate([rgb, alpha], -1)
    if mask is not None:
        out[~mask] = (0.85, 0.85, 0.85, 1.0)
    return out


def _rects(ax: Axes, centre: np.ndarray, size: np.ndarray, colour: Any, ref: int | None) -> None:
    from matplotlib.patches import Rectangle

    for k, ((cy, cx), (h, w)) in enumerate(zip(centre, size)):
        hl = k == ref
        ax.add_patch(
            Rectangle(
                (cx - w / 2, cy - h / 2),
                w,
                h,
                fill=False,
                lw=2.0 if hl else 0.8,
                ec="red" if hl else colour,
                alpha=1.0 if hl else 0.8,
            )
        )


def plot_reconstruction(
    result: ReconstructionResult, path: str | Path | None = None, *, title: str | None = None
) -> Figure:
    """Three panels: the input with its spans (reference in red), the tokens pasted at their
    true spans (ground truth), and at the predicted spans (PART's reconstruction).

    For 1D signals: three stacked traces (channels offset vertically) with the span intervals
    shaded. Uncovered canvas samples are gray (2D) or gaps (1D).
    """
    d = result.ndim
    tc, ts = as_numpy(result.true_spans.centre[0]), as_numpy(result.true_spans.size[0])
    pc, ps = as_numpy(result.pred_spans.centre[0]), as_numpy(result.pred_spans.size[0])
    truth, pred = as_numpy(result.true_canvas), as_numpy(result.canvas)
    tmask, pmask = as_numpy(result.true_coverage) > 0, as_numpy(result.coverage) > 0
    base = as_numpy(result.image) if result.image is not None else truth
    ref = result.reference
    err = (
        f"placement error {result.placement_error:.3f} ref. sizes "
        f"({result.placement_error_samples:.2f} samples)"
    )
    panels = [
        ("input spans", base, None, tc, ts),
        ("ground-truth placement", truth, tmask, tc, ts),
        ("predicted placement", pred, pmask, pc, ps),
    ]
    if d == 2:
        fig = new_figure((12, 4.4))
        axes = fig.subplots(1, 3)
        h, w = result.extent
        vals = np.concatenate([base.ravel(), truth[:, tmask].ravel()])
        lo, hi = float(np.percentile(vals, 0.5)), float(np.percentile(vals, 99.5))
        for ax, (name, img, mask, c, s) in zip(axes, panels):
            ax.imshow(_display(img, lo, hi, mask), interpolation="nearest", extent=(0, w, h, 0))
            _rects(ax, c, s, "yellow" if mask is None else "white", ref)
            ax.set_title(name)
            ax.set_xlim(0, w)
            ax.set_ylim(h, 0)
            ax.set_xticks([])
            ax.set_yticks([])
    elif d == 1:
        fig = new_figure((12, 6))
        axes = fig.subplots(3, 1, sharex=True)
        t = np.arange(result.extent[0]) + 0.5
        spread = float(np.nanmax(np.abs(base))) if base.size else 1.0
        step = 2.2 * max(spread, 1e-6)
        for ax, (name, sig, mask, c, s) in zip(axes, panels):
            y = sig.astype(float).copy()
            if mask is not None:
                y[:, ~mask] = np.nan
            for ch in range(y.shape[0]):
                ax.plot(t, y[ch] - ch * step, lw=0.8, color=f"C{ch % 10}")
            for k, (cc, ss) in enumerate(zip(c[:, 0], s[:, 0])):
                hl = k == ref
                ax.axvspan(
                    cc - ss / 2,
                    cc + ss / 2,
                    color="red" if hl else "tab:blue",
                    alpha=0.25 if hl else 0.08,
                    lw=0,
                )
            ax.set_title(name, loc="left", fontsize=10)
            ax.set_yticks([])
        axes[-1].set_xlabel("t (samples)")
        axes[-1].set_xlim(0, result.extent[0])
    else:
        raise ValueError(f"plot_reconstruction supports 1D and 2D; got D={d}")
    fig.suptitle(title or f"off-grid reconstruction (reference {ref}): {err}")
    return save_figure(fig, path)


def _ellipse(ax: Axes, mean: np.ndarray, cov: np.ndarray, nsig: float = 2.0) -> None:
    """Covariance ellipse of ``nsig`` standard deviations; ``mean``/``cov`` in (y, x) order."""
    from matplotlib.patches import Ellipse

    cov_xy = cov[::-1, ::-1]  # (x, y) order for drawing
    vals, vecs = np.linalg.eigh(cov_xy)
    vals = np.clip(vals, 0, None)
    angle = float(np.degrees(np.arctan2(vecs[1, -1], vecs[0, -1])))
    w, h = 2 * nsig * np.sqrt(vals[-1]), 2 * nsig * np.sqrt(vals[0])
    ax.add_patch(
        Ellipse(
            (mean[1], mean[0]),
            w,
            h,
            angle=angle,
            fill=False,
            ec="orange",
            lw=2,
            label=f"{nsig:g}σ covariance",
        )
    )


def _uncertainty_2d(
    pts: np.ndarray,
    mean: np.ndarray,
    cov: np.ndarray,
    true: np.ndarray,
    size: np.ndarray,
    image: Tensor | np.ndarray | None,
) -> Figure:
    """Placements (N, 2) over ``image (C, H, W)`` with the true box and the 2σ ellipse."""
    from matplotlib.patches import Rectangle

    fig = new_figure((6, 6))
    ax = fig.subplots()
    if image is not None:
        img = as_numpy(image)
        lo, hi = float(img.min()), float(img.max())
        ih, iw = img.shape[-2:]
        ax.imshow(_display(img, lo, hi), interpolation="nearest", extent=(0, iw, ih, 0))
    ax.scatter(pts[:, 1], pts[:, 0], s=12, c="tab:cyan", ec="k", lw=0.3, label="placements")
    ax.add_patch(
        Rectangle(
            (true[1] - size[1] / 2, true[0] - size[0] / 2),
            size[1],
            size[0],
            fill=False,
            ec="lime",
            lw=1.5,
        )
    )
    ax.plot(true[1], true[0], "o", color="lime", ms=8, mec="k", label="true centre")
    ax.plot(mean[1], mean[0], "x", color="orange", ms=10, mew=2, label="mean")
    _ellipse(ax, mean, cov)
    if image is None:
        ax.set_aspect("equal")
        ax.invert_yaxis()
    else:
        lo_x = min(0.0, float(pts[:, 1].min()) - 1)
        hi_x = max(float(iw), float(pts[:, 1].max()) + 1)
        lo_y = min(0.0, float(pts[:, 0].min()) - 1)
        hi_y = max(float(ih), float(pts[:, 0].max()) + 1)
        ax.set_xlim(lo_x, hi_x)
        ax.set_ylim(hi_y, lo_y)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.legend(loc="upper right", fontsize=8)
    return fig


def _uncertainty_1d(
    pts: np.ndarray,
    mean: np.ndarray,
    cov: np.ndarray,
    true: np.ndarray,
    size: np.ndarray,
    image: Tensor | np.ndarray | None,
) -> Figure:
    """Placements (N, 1) along t, under the signal ``(C, T)`` when given."""
    rows = 2 if image is not None else 1
    fig = new_figure((10, 2.2 + 1.8 * rows))
    axes = np.atleast_1d(fig.subplots(rows, 1, sharex=True))
    if image is not None:
        sig = as_numpy(image)
        sig = sig[None] if sig.ndim == 1 else sig
        step = 2.2 * max(float(np.abs(sig).max()), 1e-6)
        t = np.arange(sig.shape[-1]) + 0.5
        for ch in range(sig.shape[0]):
            axes[0].plot(t, sig[ch] - ch * step, lw=0.7, color=f"C{ch % 10}")
        axes[0].axvspan(true[0] - size[0] / 2, true[0] + size[0] / 2, color="lime", alpha=0.3)
        axes[0].set_yticks([])
    ax = axes[-1]
    jitter = np.random.default_rng(0).uniform(-0.3, 0.3, len(pts))
    ax.axvspan(true[0] - size[0] / 2, true[0] + size[0] / 2, color="lime", alpha=0.25)
    ax.scatter(pts[:, 0], jitter, s=14, c="tab:cyan", ec="k", lw=0.3, label="placements")
    ax.axvline(true[0], color="green", lw=2, label="true centre")
    sd = float(np.sqrt(max(cov[0, 0], 0.0)))
    ax.axvline(mean[0], color="orange", lw=2, label="mean")
    ax.axvspan(mean[0] - 2 * sd, mean[0] + 2 * sd, color="orange", alpha=0.15, label="±2σ")
    ax.set_ylim(-1, 1)
    ax.set_yticks([])
    ax.set_xlabel("t (samples)")
    ax.legend(loc="upper right", fontsize=8, ncols=4)
    return fig


def plot_uncertainty(
    result: UncertaintyResult,
    image: Tensor | np.ndarray | None = None,
    path: str | Path | None = None,
    *,
    title: str | None = None,
) -> Figure:
    """The target's placements from every reference around its true position.

    2D: the cloud of placements (dots), their mean, the true centre and box, and the 2σ
    covariance ellipse, over ``image (C, H, W)`` when given. 1D: the placements along t (with
    the signal ``(C, T)`` above when given), the true span shaded and mean ± 2σ marked.
    """
    pts, mean, cov = as_numpy(result.placements), as_numpy(result.mean), as_numpy(result.covariance)
    true, size = as_numpy(result.true), as_numpy(result.size)
    label = title or (
        f"target {result.target}: uncertainty {result.uncertainty:.3g} samples² "
        f"({result.uncertainty_rel:.3g} in target sizes²), bias {result.bias:.3g}"
    )
    args = (pts, mean, cov, true, size, image)
    if result.ndim == 2:
        fig = _uncertainty_2d(*args)
    elif result.ndim == 1:
        fig = _uncertainty_1d(*args)
    else:
        raise ValueError(f"plot_uncertainty supports 1D and 2D; got D={result.ndim}")
    fig.suptitle(label, fontsize=10)
    return save_figure(fig, path)


def plot_symmetry(
    matrices: dict[str, Any], path: str | Path | None = None, *, title: str | None = None
) -> Figure:
    """Predicted (top) and true (bottom) ``N x N`` matrices per axis from
    :func:`~relpos.analysis.symmetry.symmetry_matrices`, diverging colormap centred on 0
    (one symmetric colour range per axis)."""
    axes_names = tuple(matrices["axes"])
    pred, true = as_numpy(matrices["pred"]), as_numpy(matrices["true"])
    d = len(axes_names)
    fig = new_figure((3.6 * d + 1.0, 6.6))
    grid = np.atleast_2d(fig.subplots(2, d, squeeze=False))
    for a, name in enumerate(axes_names):
        vmax = float(max(np.abs(true[a]).max(), np.abs(pred[a]).max(), 1e-9))
        for row, (label, mat) in enumerate((("predicted", pred[a]), ("ground truth", true[a]))):
            ax = grid[row, a]
            im = ax.imshow(mat, cmap="RdBu_r", vmin=-vmax, vmax=vmax, interpolation="nearest")
            ax.set_title(f"{label} Δ{name}", fontsize=10)
            ax.set_xlabel("target j")
            ax.set_ylabel("reference i")
        fig.colorbar(im, ax=grid[:, a], shrink=0.8)
    fig.suptitle(title or "relative-position matrices (rows: reference, columns: target)")
    return save_figure(fig, path)


def plot_confusion(
    cm: Tensor | np.ndarray | Sequence[Sequence[int]],
    class_names: Sequence[str],
    path: str | Path | None = None,
    *,
    normalize: bool = True,
    title: str | None = None,
) -> Figure:
    """Confusion matrix ``cm (K, K)`` (rows: true class, columns: predicted).

    Colours show row-normalised fractions (recall per class) when ``normalize``; each cell is
    annotated with its count (and percentage of the row).
    """
    m = as_numpy(cm).astype(float)
    k = len(class_names)
    if m.shape != (k, k):
        raise ValueError(f"cm must be ({k}, {k}) for {k} class names; got {m.shape}")
    rows = m.sum(1, keepdims=True)
    frac = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    shown = frac if normalize else m
    fig = new_figure((1.0 + 0.75 * k, 0.6 + 0.7 * k))
    ax = fig.subplots()
    im = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else max(m.max(), 1))
    for i in range(k):  # K x K text labels: a tiny loop for annotation only
        for j in range(k):
            txt = f"{int(m[i, j])}\n{100 * frac[i, j]:.0f}%" if normalize else f"{int(m[i, j])}"
            ax.text(
                j,
                i,
                txt,
                ha="center",
                va="center",
                fontsize=8,
                color="white" if shown[i, j] > 0.6 * (shown.max() or 1) else "black",
            )
    ax.set_xticks(range(k), [str(c) for c in class_names])
    ax.set_yticks(range(k), [str(c) for c in class_names])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.colorbar(im, ax=ax, shrink=0.8)
    ax.set_title(title or confusion_title(m, class_names), fontsize=10)
    return save_figure(fig, path)


def confusion_title(cm: np.ndarray, class_names: Sequence[str]) -> str:
    """``"kappa 0.712  macro-F1 0.654  accuracy 0.803  (n=1200)"`` of a confusion matrix
    (``nan`` where a score is undefined, without a warning)."""
    from relpos.train.metrics import report_from_confusion

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = report_from_confusion(np.rint(as_numpy(cm)).astype(np.int64), class_names)
    return (
        f"kappa {r['kappa']:.3f}  macro-F1 {r['macro_f1']:.3f}  accuracy {r['accuracy']:.3f}  "
        f"(n={r['n']})"
    )
