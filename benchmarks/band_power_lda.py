"""Band-power LDA baseline: how separable are the sleep stages from spectra alone?

Features per 30-s epoch: log relative power in the five bands of
:data:`relpos.sleep.synthetic.realism.BANDS` on every store channel (6 x 5 = 30); scikit-learn
LDA trained on the fine-tuning subjects and scored (Cohen's kappa, accuracy) on the test
subjects of a splits file. Without ``--splits`` the demo preset's subject split is drawn
(``relpos.sleep.experiment.write_splits``) and written next to the store.

Usage::

    python benchmarks/band_power_lda.py STORE [--splits SPLITS.json] [--preset physionet2018-demo]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def features(store, subjects: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(N, C * 5) log relative band powers and (N,) labels of the labelled epochs of
    ``subjects``."""
    from relpos.sleep.format import UNLABELLED
    from relpos.sleep.synthetic.realism import epoch_band_powers

    sub = np.asarray(store.subjects)[store.subject_index]
    idx = np.flatnonzero(np.isin(sub, subjects) & (store.labels != UNLABELLED))
    fs = float(store.fs or 100.0)
    out = []
    for a in range(0, len(idx), 2048):
        x = store.read(idx[a : a + 2048]).astype(np.float32)  # (n, C, S)
        rel = epoch_band_powers(x.reshape(-1, x.shape[-1]), fs).reshape(len(x), -1)
        out.append(np.log(rel + 1e-6))
    return np.concatenate(out), store.labels[idx].astype(np.int64)


def band_power_lda(store_dir: str | Path, splits: dict[str, list[str]]) -> dict[str, float]:
    """Kappa and accuracy of LDA on log relative band powers (train: finetune, test: test)."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.metrics import accuracy_score, cohen_kappa_score

    from relpos.sleep.store import EpochStore

    store = EpochStore(store_dir)
    xtr, ytr = features(store, splits["finetune"])
    xte, yte = features(store, splits["test"])
    lda = LinearDiscriminantAnalysis().fit(xtr, ytr)
    pred = lda.predict(xte)
    return {
        "kappa": float(cohen_kappa_score(yte, pred)),
        "accuracy": float(accuracy_score(yte, pred)),
        "train_epochs": len(ytr),
        "test_epochs": len(yte),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("store")
    p.add_argument("--splits", default=None, help="splits JSON (default: draw the preset's)")
    p.add_argument("--preset", default="physionet2018-demo")
    args = p.parse_args(argv)
    if args.splits:
        from relpos.sleep.store import load_splits

        splits = load_splits(args.splits)
    else:
        from relpos.sleep.experiment import load_sleep_config, write_splits
        from relpos.sleep.store import EpochStore

        cfg = load_sleep_config(args.preset, {})
        path = Path(args.store).parent / "band_power_lda_splits.json"
        splits = write_splits(EpochStore(args.store), cfg.splits, path)
    print(json.dumps(band_power_lda(args.store, splits), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
