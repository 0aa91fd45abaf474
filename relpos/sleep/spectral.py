"""The spectral floor of sleep staging: LDA on log relative band powers.

Features per 30-s epoch are the log relative powers in the five bands of
:data:`relpos.sleep.synthetic.realism.BANDS` on every store channel (6 x 5 = 30 for the
default store). A linear discriminant fitted on the finetuning subjects and scored on the test
subjects is the row every learned sleep model has to beat: it needs no training budget and no
seed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from relpos.sleep.format import STAGES, UNLABELLED
from relpos.sleep.store import EpochStore

__all__ = ["band_power_features", "band_power_lda"]


def band_power_features(store: EpochStore, subjects: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(N, C * 5)`` log relative band powers and ``(N,)`` labels of the labelled epochs of
    ``subjects`` (read in chunks of 2048 epochs)."""
    from relpos.sleep.synthetic.realism import epoch_band_powers

    sub = np.asarray(store.subjects)[store.subject_index]
    idx = np.flatnonzero(np.isin(sub, subjects) & (store.labels != UNLABELLED))
    fs = float(store.fs or 100.0)
    out = [np.empty((0, len(store.channels) * 5), dtype=np.float64)]
    for a in range(0, len(idx), 2048):
        x = store.read(idx[a : a + 2048]).astype(np.float32)  # (n, C, S)
        rel = epoch_band_powers(x.reshape(-1, x.shape[-1]), fs).reshape(len(x), -1)
        out.append(np.log(rel + 1e-6))
    return np.concatenate(out), store.labels[idx].astype(np.int64)


def band_power_lda(store: EpochStore | str | Path, splits: dict[str, list[str]]) -> dict[str, Any]:
    """Kappa, accuracy, macro-F1, per-class scores and confusion (as
    :func:`~relpos.train.metrics.classification_report`) of LDA on log relative band powers,
    fitted on the ``finetune`` subjects and scored on the ``test`` subjects of ``splits``."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    from relpos.train.metrics import classification_report

    store = store if isinstance(store, EpochStore) else EpochStore(store)
    xtr, ytr = band_power_features(store, splits["finetune"])
    xte, yte = band_power_features(store, splits["test"])
    if len(ytr) == 0 or len(yte) == 0:
        raise ValueError("band_power_lda: the finetune and test splits need labelled epochs")
    pred = LinearDiscriminantAnalysis().fit(xtr, ytr).predict(xte)
    report = classification_report(yte, pred, STAGES)
    return {
        **{k: report[k] for k in ("kappa", "accuracy", "macro_f1", "per_class", "confusion")},
        "train_epochs": len(ytr),
        "test_epochs": len(yte),
    }
