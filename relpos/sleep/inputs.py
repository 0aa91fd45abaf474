"""Recordings from Python into the epoch store: an ``mne.io.Raw`` with stage annotations
(:func:`from_raw`) or an array with per-epoch labels (:func:`from_array`).

Both go through the same pipeline, store, splits, evaluation and plots as ``relpos prepare``:
each call adds one recording to the store (a store accumulates; a recording already there is
not redone), and ``relpos splits STORE`` follows once all are in::

    import mne
    from relpos.sleep import from_raw

    raw = mne.io.read_raw_edf("SC4001E0-PSG.edf")
    raw.set_annotations(mne.read_annotations("SC4001EC-Hypnogram.edf"))
    from_raw(raw, "store", channels=["EEG Fpz-Cz", "EEG Pz-Oz"], subject_id="SC400")
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from relpos.sleep.edf import record_from_raw
from relpos.sleep.format import STAGES, UNLABELLED, stage_of_annotation
from relpos.sleep.physionet2018 import Record, RecordError
from relpos.sleep.preprocess import Pipeline
from relpos.sleep.recordings import InMemoryRecord
from relpos.sleep.store.summary import PrepareSummary
from relpos.sleep.store.writer import prepare_store

if TYPE_CHECKING:
    import mne

__all__ = ["from_array", "from_raw"]


def from_raw(
    raw: mne.io.BaseRaw,
    store_dir: str | os.PathLike,
    *,
    channels: Sequence[str] | None = None,
    annotations: mne.Annotations | None = None,
    record_id: str | None = None,
    subject_id: str | None = None,
    pipeline: Pipeline | None = None,
    dtype: str = "float16",
    require_labels: bool = False,
    progress: bool = False,
) -> PrepareSummary:
    """Preprocess an ``mne.io.Raw`` into the store ``store_dir`` (see
    :func:`relpos.sleep.edf.record_from_raw` for channels, units and labels, and
    :func:`relpos.sleep.store.prepare_store` for the store).

    Args:
        raw: the recording; stage annotations (R&K or AASM names) in ``raw.annotations`` or
            ``annotations``.
        store_dir: the store (created, or completed: same pipeline, dtype and channels).
        channels: channel names to keep (default: the raw's EEG channels).
        annotations: the hypnogram, when it is not attached to ``raw``.
        record_id: default: the raw's file name (less ``-PSG``).
        subject_id: default: the record id (give it when a subject has several nights).
        pipeline, dtype, require_labels, progress: as for ``prepare_store``.

    Returns:
        The store's :class:`~relpos.sleep.store.PrepareSummary` after adding the recording.

    Raises:
        RecordError: a missing channel, unusable annotations, no labels with
            ``require_labels``, a recording shorter than one epoch or all bad; the store's
            errors (``StoreMismatchError``, ...).
    """
    rec = record_from_raw(
        raw, channels, annotations=annotations, record_id=record_id, subject_id=subject_id
    )
    source = raw.filenames[0] if raw.filenames and raw.filenames[0] else rec.record_id
    return _write(
        InMemoryRecord(rec, str(source)), store_dir, pipeline, dtype, require_labels, progress
    )


def _or(code: int | None, text: str) -> int | None:
    return stage_of_annotation(text) if code is None else code


def _labels(labels: Sequence[int | str] | np.ndarray) -> np.ndarray:
    """Stage indices (int8) from indices or stage names; one-line ValueError otherwise."""
    arr = np.asarray(labels)
    if arr.dtype.kind in "US":
        # every value is a stage here: bare "1" or "?" mean Sleep stage 1 and ?
        codes = [_or(stage_of_annotation(str(v)), f"Sleep stage {v}") for v in arr]
        bad = sorted({str(v) for v, c in zip(arr, codes) if c is None or c < UNLABELLED})
        if bad:
            raise ValueError(f"labels: unknown stage name(s) {bad[:5]}; known: {', '.join(STAGES)}")
        return np.array(codes, np.int8)
    if arr.dtype.kind not in "iu" or (
        arr.size and (arr.min() < UNLABELLED or arr.max() >= len(STAGES))
    ):
        raise ValueError(
            f"labels must be stage indices in [{UNLABELLED}, {len(STAGES) - 1}] ({', '.join(STAGES)}; "
            f"{UNLABELLED}: unlabelled) or stage names, got {arr.dtype} values"
        )
    return arr.astype(np.int8)


def from_array(
    signal: np.ndarray,
    fs: float,
    store_dir: str | os.PathLike,
    *,
    channels: Sequence[str],
    record_id: str,
    labels: Sequence[int | str] | np.ndarray | None = None,
    onset: int = 0,
    subject_id: str | None = None,
    pipeline: Pipeline | None = None,
    dtype: str = "float16",
    progress: bool = False,
) -> PrepareSummary:
    """Preprocess a (C, T) array in µV into the store ``store_dir``.

    Args:
        signal: (C, T) samples in µV at ``fs`` Hz.
        fs: sampling rate (Hz).
        store_dir: the store.
        channels: the C channel names.
        record_id: the recording's id in the store.
        labels: (n_epochs,) one label per 30-s epoch from sample ``onset``: stage indices
            into ``STAGES`` (-1: unlabelled) or stage names (``"W"``, ``"N2"``, ``"Sleep stage
            4"``, ...); None: an unlabelled recording (pretraining only).
        onset: sample where epoch 0 of ``labels`` starts.
        subject_id: default: the record id.
        pipeline, dtype, progress: as for ``prepare_store``.

    Raises:
        ValueError: a signal that is not (C, T) with C = len(channels), bad labels or onset;
            a recording the store skips (:class:`RecordError`, e.g. shorter than one epoch).
    """
    x = np.asarray(signal, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] != len(channels):
        raise ValueError(
            f"signal must be (C, T) with C = len(channels) = {len(channels)}, got {x.shape}"
        )
    if not 0 <= onset < x.shape[1]:
        raise ValueError(f"onset must be a sample in [0, {x.shape[1]}), got {onset}")
    lab = None if labels is None else _labels(labels)
    rec = Record(record_id, subject_id or record_id, float(fs), x, tuple(channels), lab, onset)
    return _write(InMemoryRecord(rec, record_id), store_dir, pipeline, dtype, False, progress)


def _write(
    rec: InMemoryRecord,
    store_dir: str | os.PathLike,
    pipeline: Pipeline | None,
    dtype: str,
    require_labels: bool,
    progress: bool,
) -> PrepareSummary:
    """Add one recording to the store; a problem of the recording raises (a skipped mark
    left by an earlier call is retried)."""
    summary = prepare_store(
        [rec], store_dir, pipeline=pipeline, channels=rec.record.channels, dtype=dtype,
        require_labels=require_labels, progress=progress, retry_skipped=True,
    )  # fmt: skip
    if summary.n_skipped_new:
        raise RecordError(summary.skipped[rec.record_id])
    return summary
