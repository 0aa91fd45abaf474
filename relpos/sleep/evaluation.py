"""Scoring a finetuned sleep model: Cohen's kappa, accuracy, macro-F1, per-class and
per-subject scores, confusion and hypnogram plots (``relpos evaluate``), and the test-leakage
check against the subjects its checkpoints say it trained on."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from relpos.core.atomic import atomic_write_json
from relpos.sleep.format import STAGES
from relpos.sleep.sources import provenance, trained_subjects
from relpos.sleep.store import EpochDataset
from relpos.train.api import predict
from relpos.train.checkpoint import load_model, read_provenance
from relpos.train.metrics import classification_report

log = logging.getLogger(__name__)

__all__ = ["evaluate_checkpoint", "leaked_subjects"]


def evaluate_checkpoint(
    checkpoint: str | Path,
    data: EpochDataset,
    out: Path | None = None,
    *,
    batch_size: int = 512,
    plots: bool = True,
) -> dict[str, Any]:
    """Kappa, accuracy, macro-F1, per-class F1 and confusion of a finetuned checkpoint on
    ``data``; with ``out``: ``metrics.json``, ``confusion.png`` and ``hypnogram.png`` (one
    subject, true vs predicted)."""
    model, cfg = load_model(checkpoint)
    if cfg.task != "finetune":
        raise ValueError(f"{checkpoint}: a pretraining checkpoint cannot be evaluated on stages")
    overlap = leaked_subjects(checkpoint, data)
    pred = predict(model, cfg, data, batch_size=batch_size)
    report = classification_report(pred["label"], pred["pred"], STAGES)
    subjects = np.asarray(data.store.subjects)
    per_subject = {}
    for s in np.unique(pred["group"]):
        m = pred["group"] == s
        per_subject[str(subjects[s])] = classification_report(
            pred["label"][m], pred["pred"][m], STAGES
        )["kappa"]
    report["per_subject_kappa"] = per_subject
    report["checkpoint"] = str(checkpoint)
    report["overlap"] = overlap
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "metrics.json", report)
        if plots:
            _plots(report, pred, data, out)
    return report


def leaked_subjects(checkpoint: str | Path, data: EpochDataset) -> dict[str, list[str]]:
    """``{role: subjects}`` of ``data`` that the checkpoint's run (``trained``) or the
    pretraining run behind its ``finetune.init`` (``pretrained``) already trained on, from the
    provenance its checkpoints carry; each non-empty overlap is logged as a warning (test
    leakage: a splits file was replaced, or the wrong split evaluated)."""
    evaluated = set(provenance(data)["subjects"])
    overlap = {
        role: sorted(evaluated & seen)
        for role, seen in trained_subjects(read_provenance(checkpoint)).items()
        if evaluated & seen
    }
    for role, subjects in overlap.items():
        log.warning(
            "%s: %d of the %d evaluated subjects were %s on (%s%s): the score is not a held-out "
            "score",
            checkpoint, len(subjects), len(evaluated),
            "finetuned" if role == "trained" else "pretrained",
            ", ".join(subjects[:5]), ", ..." if len(subjects) > 5 else "",
        )  # fmt: skip
    return overlap


def _plots(
    report: dict[str, Any], pred: dict[str, np.ndarray], data: EpochDataset, out: Path
) -> None:
    try:
        from relpos.analysis.plots import plot_confusion
        from relpos.sleep.plots import plot_hypnogram
    except ImportError as exc:  # matplotlib is an extra
        log.warning("plots skipped (%s); install relpos[plot]", exc)
        return
    plot_confusion(np.asarray(report["confusion"]), STAGES, path=out / "confusion.png")
    first = pred["group"][0]
    m = pred["group"] == first
    order = np.argsort(data.store.epoch_index[data.indices[m]], kind="stable")
    plot_hypnogram(
        pred["label"][m][order], pred["pred"][m][order], STAGES, path=out / "hypnogram.png"
    )
    report["hypnogram_subject"] = str(np.asarray(data.store.subjects)[first])


# ---------------------------------------------------------------------- the whole experiment
#: the table label of the spectral floor (band powers + LDA)
