"""Classification metrics with scikit-learn's semantics: Cohen's kappa, accuracy, macro-F1,
per-class F1 and the confusion matrix.

- Macro-F1 averages over the union of the labels present in the truth or the prediction
  (``sklearn.metrics.f1_score(average="macro")``): a class that is predicted but absent from
  the truth counts with F1 0.
- Kappa is ``nan`` with a :class:`UndefinedMetricWarning` when it is undefined: a subject whose
  truth and prediction are one and the same class (chance agreement 1), or no examples.
- :func:`json_safe` turns those ``nan`` into ``null``, so ``metrics.json`` stays valid JSON.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "UndefinedMetricWarning",
    "classification_report",
    "cohen_kappa",
    "confusion_matrix",
    "format_report",
    "json_safe",
    "report_from_confusion",
]


class UndefinedMetricWarning(RuntimeWarning):
    """A metric is undefined on these labels (e.g. kappa of a single-class subject): ``nan``."""


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
    """Cohen's kappa from a confusion matrix: ``(p_o - p_e) / (1 - p_e)``.

    ``nan`` with an :class:`UndefinedMetricWarning` where it is undefined (as
    ``sklearn.metrics.cohen_kappa_score``): no examples, or a chance agreement ``p_e`` of 1
    (truth and prediction are all one and the same class).
    """
    cm = np.asarray(cm, dtype=np.float64)
    n = cm.sum()
    if n == 0:
        warnings.warn("kappa of no examples is undefined: nan", UndefinedMetricWarning, 2)
        return float("nan")
    p_o = np.trace(cm) / n
    p_e = float((cm.sum(0) * cm.sum(1)).sum()) / n**2
    if np.isclose(p_e, 1.0, rtol=0.0, atol=1e-12):
        warnings.warn(
            "kappa is undefined when truth and prediction are one and the same class: nan",
            UndefinedMetricWarning,
            2,
        )
        return float("nan")
    return float((p_o - p_e) / (1 - p_e))


def classification_report(
    y_true: Sequence[int] | np.ndarray,
    y_pred: Sequence[int] | np.ndarray,
    class_names: Sequence[str],
) -> dict[str, Any]:
    """Kappa, accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix.

    Macro-F1 is the mean F1 over the classes present in ``y_true`` or ``y_pred``; precision,
    recall and F1 are 0 where undefined (scikit-learn's ``zero_division=0``).
    """
    return report_from_confusion(confusion_matrix(y_true, y_pred, len(class_names)), class_names)


def report_from_confusion(cm: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """:func:`classification_report` of a ``(K, K)`` confusion matrix (rows true, columns
    predicted)."""
    cm = np.asarray(cm, dtype=np.int64)
    k = len(class_names)
    if cm.shape != (k, k):
        raise ValueError(f"confusion matrix {cm.shape} does not fit {k} class names")
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(1).astype(np.float64)
    predicted = cm.sum(0).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    seen = (support > 0) | (predicted > 0)
    n = cm.sum()
    return {
        "kappa": cohen_kappa(cm),
        "accuracy": float(tp.sum() / n) if n else float("nan"),
        "macro_f1": float(f1[seen].mean()) if seen.any() else float("nan"),
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


def json_safe(obj: Any) -> Any:
    """``obj`` with every non-finite float (``nan``, ``inf``) replaced by ``None``, recursively
    through dicts, lists and tuples, so that ``json.dumps`` writes valid JSON (``null``)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        return json_safe(obj.item())
    return obj


def format_report(report: dict[str, Any]) -> str:
    """A printable table of a :func:`classification_report` (``nan``/``None`` print as nan)."""

    def num(v: Any) -> str:
        return f"{float('nan') if v is None else v:.3f}"

    names = report["class_names"]
    lines = [
        f"kappa {num(report['kappa'])}   accuracy {num(report['accuracy'])}   "
        f"macro-F1 {num(report['macro_f1'])}   (n={report['n']})",
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
