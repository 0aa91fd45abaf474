"""Classification metrics: Cohen's kappa, accuracy, macro-F1, per-class F1, confusion matrix."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["classification_report", "cohen_kappa", "confusion_matrix", "format_report"]


def confusion_matrix(
    y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, num_classes: int
) -> np.ndarray:
    """``(K, K)`` counts, rows = true class, columns = predicted class."""
    t = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(y_pred, dtype=np.int64)
    if t.shape != p.shape:
        raise ValueError(f"y_true {t.shape} and y_pred {p.shape} differ in shape")
    for name, v in (("y_true", t), ("y_pred", p)):
        if v.size and (v.min() < 0 or v.max() >= num_classes):
            raise ValueError(f"{name} holds labels outside [0, {num_classes})")
    return np.bincount(t * num_classes + p, minlength=num_classes**2).reshape(
        num_classes, num_classes
    )


def cohen_kappa(cm: np.ndarray) -> float:
    """Cohen's kappa from a confusion matrix: ``(p_o - p_e) / (1 - p_e)``."""
    cm = np.asarray(cm, dtype=np.float64)
    n = cm.sum()
    if n == 0:
        return float("nan")
    p_o = np.trace(cm) / n
    p_e = float((cm.sum(0) * cm.sum(1)).sum()) / n**2
    return float((p_o - p_e) / (1 - p_e)) if p_e < 1 else 1.0


def classification_report(
    y_true: Sequence[int] | np.ndarray,
    y_pred: Sequence[int] | np.ndarray,
    class_names: Sequence[str],
) -> dict[str, Any]:
    """Kappa, accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix."""
    k = len(class_names)
    cm = confusion_matrix(y_true, y_pred, k)
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(1).astype(np.float64)
    predicted = cm.sum(0).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    present = support > 0
    n = cm.sum()
    return {
        "kappa": cohen_kappa(cm),
        "accuracy": float(tp.sum() / n) if n else float("nan"),
        "macro_f1": float(f1[present].mean()) if present.any() else float("nan"),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(class_names)
        },
        "confusion": cm.tolist(),
        "class_names": list(class_names),
        "n": int(n),
    }


def format_report(report: dict[str, Any]) -> str:
    """A printable table of a :func:`classification_report`."""
    names = report["class_names"]
    lines = [
        f"kappa {report['kappa']:.3f}   accuracy {report['accuracy']:.3f}   "
        f"macro-F1 {report['macro_f1']:.3f}   (n={report['n']})",
        f"{'class':<6} {'prec':>6} {'recall':>6} {'F1':>6} {'support':>8}",
    ]
    for name in names:
        c = report["per_class"][name]
        lines.append(
            f"{name:<6} {c['precision']:>6.3f} {c['recall']:>6.3f} {c['f1']:>6.3f} {c['support']:>8}"
        )
    lines.append("confusion (rows true, columns predicted): " + " ".join(names))
    for name, row in zip(names, report["confusion"]):
        lines.append(f"{name:<6} " + " ".join(f"{v:>6}" for v in row))
    return "\n".join(lines)
