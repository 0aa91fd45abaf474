"""Realism report: per-stage relative band powers of synthetic records next to real sleep EEG.

The measure (issue 9): the store's preprocessing (by default bandpass 0.1-30 Hz, resample to
100 Hz, 30-s epochs), Welch PSD of every epoch (4-s Hann windows, half overlap), power in
each of :data:`BANDS` relative to 0.5-30 Hz, averaged over the epochs of each stage.
:data:`REAL_BAND_POWERS` holds the same measure on real overnight EEG (8 subjects, C3/Cz
against a mastoid or ear reference), kept outside the repository; it has too few REM epochs
for a REM row.

Example::

    from relpos.sleep.synthetic.realism import band_power_table, format_table
    print(format_table(band_power_table("data/store")))
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.signal

from relpos.sleep.format import STAGES, UNLABELLED
from relpos.sleep.preprocess import Pipeline, default_pipeline

__all__ = [
    "BANDS",
    "REAL_BAND_POWERS",
    "BandPowerTable",
    "band_power_table",
    "epoch_band_powers",
    "format_table",
    "record_band_powers",
    "stage_table",
]

#: Frequency bands (Hz, [lo, hi)); together they tile 0.5-30 Hz.
BANDS: dict[str, tuple[float, float]] = {
    "delta": (0.5, 4.0),
    "theta": (4.0, 8.0),
    "alpha": (8.0, 12.0),
    "sigma": (12.0, 16.0),
    "beta": (16.0, 30.0),
}
#: Mean relative band power per stage of real overnight sleep EEG (C3/Cz, mastoid or ear
#: reference, 8 subjects; issue 9), in the order of :data:`BANDS`.
REAL_BAND_POWERS: dict[str, tuple[float, float, float, float, float]] = {
    "W": (0.645, 0.109, 0.113, 0.065, 0.067),
    "N1": (0.623, 0.165, 0.142, 0.036, 0.035),
    "N2": (0.768, 0.127, 0.052, 0.038, 0.016),
    "N3": (0.882, 0.074, 0.026, 0.013, 0.004),
}


@dataclass
class BandPowerTable:
    """Per-stage mean relative band powers.

    Attributes:
        channel: the channel measured.
        powers: stage -> (5,) mean relative power per band (stages without epochs absent).
        counts: stage -> number of epochs.
    """

    channel: str
    powers: dict[str, np.ndarray]
    counts: dict[str, int]

    def max_deviation(self, reference: Mapping[str, Sequence[float]] = REAL_BAND_POWERS) -> float:
        """Largest |synthetic - reference| over the stages both have and all bands."""
        devs = [
            np.abs(self.powers[s] - np.asarray(ref)).max()
            for s, ref in reference.items()
            if s in self.powers
        ]
        return float(max(devs)) if devs else float("nan")


def epoch_band_powers(epochs: np.ndarray, fs: float) -> np.ndarray:
    """Relative band powers of epochs.

    Args:
        epochs: (N, S) signal epochs at ``fs``.
        fs: sampling rate (Hz).

    Returns:
        (N, len(BANDS)) power in each band over the power in 0.5-30 Hz.
    """
    x = np.asarray(epochs, dtype=np.float64)
    nper = min(x.shape[-1], round(4 * fs))
    f, pxx = scipy.signal.welch(x, fs=fs, nperseg=nper, noverlap=nper // 2, axis=-1)
    bands = np.stack(
        [pxx[..., (f >= lo) & (f < hi)].sum(-1) for lo, hi in BANDS.values()], axis=-1
    )  # (N, B)
    return bands / np.maximum(bands.sum(-1, keepdims=True), 1e-30)


def stage_table(rel: np.ndarray, labels: np.ndarray, channel: str) -> BandPowerTable:
    """Average (N, B) relative powers by stage label (index into STAGES; others ignored)."""
    labels = np.asarray(labels)
    powers, counts = {}, {}
    for k, s in enumerate(STAGES):
        sel = labels == k
        counts[s] = int(sel.sum())
        if counts[s]:
            powers[s] = rel[sel].mean(0)
    return BandPowerTable(channel, powers, counts)


def record_band_powers(
    rec: dict[str, Any], channel: str = "C3-M2", pipeline: Pipeline | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Relative band powers of the scored epochs of an in-memory record.

    Args:
        rec: a :func:`~relpos.sleep.synthetic.synthesize_record` result.
        channel: signal name.
        pipeline: preprocessing (default: :func:`~relpos.sleep.preprocess.default_pipeline`).

    Returns:
        ``(rel (N, B), labels (N,))`` for the N scored epochs.
    """
    c = list(rec["sig_names"]).index(channel)
    x = (rec["signal"][c : c + 1].astype(np.float32) - rec["baselines"][c]) / rec["gains"][c]
    n_ep = len(rec["epoch_stages"])
    ep = (pipeline or default_pipeline()).run(
        x, rec["fs"], onset=rec["first_scored_sample"], n_epochs=n_ep
    )
    labels = np.array(["W123R".index(s) for s in rec["epoch_stages"]])[: len(ep.epochs)]
    return epoch_band_powers(ep.epochs[:, 0], ep.fs), labels


def _store_band_powers(store_dir: Path, channel: str) -> tuple[np.ndarray, np.ndarray, float]:
    from relpos.sleep.store import EpochStore

    store = EpochStore(store_dir)
    c = store.channels.index(channel)
    keep = np.flatnonzero(store.labels != UNLABELLED)
    rel = np.empty((len(keep), len(BANDS)))
    for a in range(0, len(keep), 4096):
        idx = keep[a : a + 4096]
        rel[a : a + len(idx)] = epoch_band_powers(store.read(idx)[:, c], float(store.fs or 100))
    return rel, store.labels[keep], float(store.fs or 100)


def _records_band_powers(root: Path, channel: str) -> tuple[np.ndarray, np.ndarray]:
    from relpos.sleep.physionet2018 import find_records, read_record

    pipe = default_pipeline()
    rels, labs = [], []
    for files in find_records(root):
        r = read_record(files, channels=[channel])
        if r.labels is None:
            continue
        ep = pipe.run(r.signal, r.fs, onset=r.onset, n_epochs=len(r.labels))
        rels.append(epoch_band_powers(ep.epochs[:, 0], ep.fs))
        labs.append(r.labels[: len(ep.epochs)])
    if not rels:
        raise ValueError(f"{root}: no labelled records")
    return np.concatenate(rels), np.concatenate(labs)


def band_power_table(
    source: str | os.PathLike | Iterable[dict[str, Any]], channel: str = "C3-M2"
) -> BandPowerTable:
    """Per-stage relative band powers of a prepared store, a directory of records (prepared
    on the fly with the default pipeline) or in-memory records.

    Args:
        source: a store directory (with ``store.json``), a records directory, or an iterable
            of :func:`~relpos.sleep.synthetic.synthesize_record` results.
        channel: the channel to measure.
    """
    if isinstance(source, str | os.PathLike):
        root = Path(source)
        if not root.exists():
            raise FileNotFoundError(f"{root}: no such store or records directory")
        if (root / "store.json").is_file():
            rel, labels, _ = _store_band_powers(root, channel)
        else:
            rel, labels = _records_band_powers(root, channel)
        return stage_table(rel, labels, channel)
    pairs = [record_band_powers(rec, channel) for rec in source]
    return stage_table(
        np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs]), channel
    )


def format_table(
    table: BandPowerTable, reference: Mapping[str, Sequence[float]] = REAL_BAND_POWERS
) -> str:
    """Markdown table: each stage's synthetic row next to the reference (real) row."""
    head = " | ".join(f"{k} {lo:g}–{hi:g}" for k, (lo, hi) in BANDS.items())
    lines = [
        f"| stage ({table.channel}) | epochs | {head} |",
        "| --- | --- |" + " --- |" * len(BANDS),
    ]
    for s in STAGES:
        if s in reference:
            vals = " | ".join(f"{v:.3f}" for v in reference[s])
            lines.append(f"| {s} real | | {vals} |")
        if s in table.powers:
            vals = " | ".join(f"{v:.3f}" for v in table.powers[s])
            lines.append(f"| {s} synthetic | {table.counts[s]} | {vals} |")
    dev = table.max_deviation(reference)
    lines.append(f"\nlargest |synthetic - real| over stages and bands: {dev:.3f}")
    return "\n".join(lines)
