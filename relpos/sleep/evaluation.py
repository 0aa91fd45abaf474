"""Scoring a finetuned sleep model: Cohen's kappa, accuracy, macro-F1, per-class and
per-subject scores, confusion and hypnogram plots (``relpos evaluate``), and the test-leakage
check against the subjects its checkpoints say it trained on."""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from relpos.core.atomic import atomic_write_json
from relpos.sleep.format import STAGES
from relpos.sleep.sources import provenance, trained_subjects
from relpos.sleep.store import EpochDataset
from relpos.train.api import predict
from relpos.train.checkpoint import load_model, read_provenance
from relpos.train.metrics import UndefinedMetricWarning, classification_report, json_safe

if TYPE_CHECKING:  # pragma: no cover
    from relpos.sleep.plots import Night

log = logging.getLogger(__name__)

__all__ = [
    "choose_subjects",
    "evaluate_checkpoint",
    "leaked_subjects",
    "nights",
    "per_subject_scores",
]


#: what ``hypnograms`` may be: a count (subjects spread from the best kappa to the worst),
#: ``"all"``, or subject ids
HypnogramChoice = int | str | Sequence[str]


def evaluate_checkpoint(
    checkpoint: str | Path,
    data: EpochDataset,
    out: Path | None = None,
    *,
    batch_size: int = 512,
    plots: bool = True,
    hypnograms: HypnogramChoice = 4,
    progress: bool = False,
) -> dict[str, Any]:
    """Kappa, accuracy, macro-F1, per-class F1, confusion and per-subject scores of a finetuned
    checkpoint on ``data``.

    ``per_subject_kappa`` maps each subject to its kappa (``nan`` where undefined: a subject
    with one stage, predicted perfectly; logged once), ``per_subject`` to its kappa, macro-F1,
    accuracy and epoch count. With ``out``: ``metrics.json`` (valid JSON: ``nan`` is written
    as ``null``), ``confusion.png``, ``hypnogram.png`` (true vs predicted on clock time for the
    subjects ``hypnograms`` picks: a count spread from the best kappa to the worst, ``"all"``,
    or subject ids; one panel per record) and ``per_subject_kappa.png``. ``progress`` shows a
    bar over the prediction batches.
    """
    model, cfg = load_model(checkpoint)
    if cfg.task != "finetune":
        raise ValueError(f"{checkpoint}: a pretraining checkpoint cannot be evaluated on stages")
    overlap = leaked_subjects(checkpoint, data)
    if plots and out is not None:  # a wrong subject id fails before the predictions, not after
        evaluated = np.asarray(data.store.subjects)[np.unique(data.subject_index)]
        choose_subjects(dict.fromkeys(evaluated.tolist(), 0.0), hypnograms)
    pred = predict(
        model, cfg, data, batch_size=batch_size, progress="evaluate" if progress else None
    )
    report = classification_report(pred["label"], pred["pred"], STAGES)
    report["per_subject"] = per_subject_scores(pred, np.asarray(data.store.subjects))
    report["per_subject_kappa"] = {s: r["kappa"] for s, r in report["per_subject"].items()}
    report["checkpoint"] = str(checkpoint)
    report["overlap"] = overlap
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        if plots:
            report["hypnogram_subjects"] = choose_subjects(report["per_subject_kappa"], hypnograms)
        atomic_write_json(out / "metrics.json", json_safe(report))
        if plots:
            _plots(report, pred, data, out)
    return report


def per_subject_scores(
    pred: dict[str, np.ndarray], subjects: np.ndarray
) -> dict[str, dict[str, float]]:
    """``{subject: {kappa, macro_f1, accuracy, n}}`` of :func:`relpos.train.api.predict`'s
    output (``group`` indexes ``subjects``); undefined kappas are ``nan``, logged once."""
    scores: dict[str, dict[str, float]] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        for g in np.unique(pred["group"]):  # one report per subject
            m = pred["group"] == g
            r = classification_report(pred["label"][m], pred["pred"][m], STAGES)
            scores[str(subjects[g])] = {k: r[k] for k in ("kappa", "macro_f1", "accuracy", "n")}
    undefined = [s for s, r in scores.items() if math.isnan(r["kappa"])]
    if undefined:
        log.warning(
            "kappa is undefined (nan; null in metrics.json) for %d subject(s) whose truth and "
            "prediction are one single stage: %s",
            len(undefined), ", ".join(undefined[:5]) + (", ..." if len(undefined) > 5 else ""),
        )  # fmt: skip
    return scores


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
    report: dict[str, Any],
    pred: dict[str, np.ndarray],
    data: EpochDataset,
    out: Path,
) -> None:
    try:
        from relpos.analysis.plots import plot_confusion
        from relpos.sleep.plots import plot_hypnograms, plot_subject_kappa
    except ImportError as exc:  # matplotlib is an extra
        log.warning("plots skipped (%s); install relpos[plot]", exc)
        return
    plot_confusion(np.asarray(report["confusion"]), STAGES, path=out / "confusion.png")
    if report["per_subject_kappa"]:
        plot_subject_kappa(report["per_subject_kappa"], path=out / "per_subject_kappa.png")
    if report["hypnogram_subjects"]:
        nights_ = nights(pred, data, report["hypnogram_subjects"])
        plot_hypnograms(nights_, STAGES, path=out / "hypnogram.png")


def choose_subjects(kappas: dict[str, float], choice: HypnogramChoice) -> list[str]:
    """The subjects to draw: ``"all"``; a count ``N`` (or ``"N"``) spread evenly over the
    subjects sorted from the best kappa to the worst (undefined last); or subject ids (a list,
    or one comma-separated string), each of which must have been evaluated."""
    if not kappas:
        return []
    ranked = sorted(kappas, key=lambda s: (math.isnan(kappas[s]), -np.nan_to_num(kappas[s])))
    if isinstance(choice, str) and choice.strip().isdigit():
        choice = int(choice)
    if isinstance(choice, int):
        if choice < 1:
            raise ValueError(f"hypnograms: a count must be >= 1, got {choice}")
        picks = np.unique(np.linspace(0, len(ranked) - 1, min(choice, len(ranked))).round())
        return [ranked[int(i)] for i in picks]
    if isinstance(choice, str) and choice.strip() == "all":
        return ranked
    wanted = [s.strip() for s in choice.split(",")] if isinstance(choice, str) else list(choice)
    unknown = [s for s in wanted if s not in kappas]
    if unknown or not wanted:
        raise ValueError(
            f"hypnograms: subject(s) {', '.join(unknown) or '(none)'} not among the "
            f"{len(kappas)} evaluated (e.g. {', '.join(ranked[:3])}); give ids, a count or 'all'"
        )
    return wanted


def nights(pred: dict[str, np.ndarray], data: EpochDataset, subjects: Sequence[str]) -> list[Night]:
    """One :class:`relpos.sleep.plots.Night` per record of each subject in ``subjects``, with
    the store's epoch onsets (so dropped epochs leave gaps) and the subject's kappa in its
    name."""
    from relpos.sleep.plots import Night

    store = data.store
    names = np.asarray(store.subjects)
    onsets = store.onsets[data.indices]
    out = []
    for subject in subjects:
        g = int(np.flatnonzero(names == subject)[0])
        in_subject = pred["group"] == g
        records = np.unique(data.record_index[in_subject])
        for r in records:  # one panel per night
            m = in_subject & (data.record_index == r)
            rid = str(store.record_ids[r])
            name = subject if rid == subject else f"{subject} / {rid}"
            out.append(Night(pred["label"][m], pred["pred"][m], onsets[m], name))
    return out


# ---------------------------------------------------------------------- the whole experiment
#: the table label of the spectral floor (band powers + LDA)
