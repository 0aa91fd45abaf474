"""The sleep EEG store as a training data source (``eeg_store`` in :mod:`relpos.train.data`):
``relpos pretrain --store S`` is ``relpos pretrain --data-source eeg_store --data S``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from relpos.sleep.store import EpochDataset, EpochStore, load_splits
from relpos.train.data import SourceData

__all__ = ["eeg_store", "provenance", "store_dataset", "trained_subjects"]


def store_dataset(
    store: str | Path,
    split: str,
    labelled: bool,
    splits: str | Path | None = None,
    context: int = 1,
    complete: bool | None = None,
) -> EpochDataset:
    """The epochs of the subjects in ``split`` of a prepared store (``splits``: the splits
    file, default ``STORE/splits.json``); ``labelled``: only the scored epochs (as anchors).

    ``context`` > 1 serves windows of that many consecutive epochs of one record (see
    :class:`EpochDataset`); ``complete`` keeps only whole windows (default: True for unlabelled
    data, i.e. pretraining, False for labelled data, whose edge epochs get zero-filled
    neighbours so that the same epochs are scored as with one epoch).
    """
    path = Path(splits or Path(store) / "splits.json")
    data = EpochStore(store)
    if not path.exists():
        raise FileNotFoundError(f"splits file {path} not found: run `relpos splits {store}` first")
    named = load_splits(path)
    if split not in named:
        raise ValueError(f"split {split!r} not in {path}; it has {', '.join(named)}")
    whole = not labelled if complete is None else complete
    return EpochDataset(data, named[split], labelled_only=labelled, context=context, complete=whole)


def eeg_store(
    path: str | Path,
    split: str,
    labelled: bool,
    context: int = 1,
    complete: bool | None = None,
    **kwargs: Any,
) -> SourceData:
    """A store's split, grouped by record, with its stage labels (for class weights);
    ``context``/``complete`` as in :func:`store_dataset` (``--data-option context=5``)."""
    data = store_dataset(path, split, labelled, context=context, complete=complete, **kwargs)
    return SourceData(
        data, groups=data.record_index, labels=data.labels, provenance=provenance(data, split)
    )


def provenance(data: EpochDataset, split: str | None = None) -> dict[str, Any]:
    """What a run trained on, for its checkpoints: the store, the split's name, the subjects
    whose epochs ``data`` serves (so that ``relpos evaluate`` can warn about test leakage) and
    the store's preprocessing (for model cards)."""
    present = np.unique(data.store.subject_index[data.indices])
    config = data.store.config
    return {
        "store": str(data.store.root),
        "split": split,
        "subjects": [str(data.store.subjects[i]) for i in present],
        "preprocessing": {
            k: config.get(k) for k in ("channels", "fs", "epoch_seconds", "pipeline")
        },
    }


def trained_subjects(prov: dict[str, Any]) -> dict[str, set[str]]:
    """``{role: subjects}`` of a checkpoint's provenance: ``trained`` (its own run) and
    ``pretrained`` (the run its ``finetune.init`` came from, and so on down the chain)."""
    out: dict[str, set[str]] = {}
    role = "trained"
    while isinstance(prov, dict) and prov:
        if prov.get("subjects"):
            out.setdefault(role, set()).update(map(str, prov["subjects"]))
        prov, role = prov.get("init") or {}, "pretrained"
    return out
