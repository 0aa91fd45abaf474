"""Hypnogram annotations -> 30-s epoch labels.

EDF+ hypnograms (Sleep-EDF's ``*-Hypnogram.edf``) and ``mne.io.Raw`` annotations hold stages
as runs ``(onset, duration, description)``, each spanning many 30-s epochs. The runs are
mapped to stages by :func:`relpos.sleep.format.stage_of_annotation` (R&K to AASM) and expanded
into one label per epoch on the grid that starts at the first stage run, as the PhysioNet
reader does with its stage notes:

* an epoch is labelled when one stage run covers it whole;
* epochs in a gap between runs, or straddling a stage change off the 30-s grid, are
  :data:`~relpos.sleep.format.UNLABELLED` (the second case warns once per record);
* "Sleep stage ?" and movement time are unlabelled; other annotations (events, lights off)
  are ignored;
* a run of zero duration lasts until the next stage run (the last one to the signal's end),
  for hypnograms written as stage changes.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np

from relpos.sleep.format import EPOCH_SECONDS, UNKNOWN_STAGE, UNLABELLED, stage_of_annotation
from relpos.sleep.physionet2018 import StageLabels

__all__ = ["StageRuns", "epoch_labels", "stage_runs"]

#: Seconds of slack when deciding whether a run covers an epoch (float onsets).
_SLACK_S = 1e-6

#: Stage runs: (start seconds (n,), end seconds (n,), stage codes (n,)), sorted by start.
StageRuns = tuple[np.ndarray, np.ndarray, np.ndarray]


def stage_runs(
    onsets: Sequence[float] | np.ndarray,
    durations: Sequence[float] | np.ndarray,
    descriptions: Sequence[str],
    *,
    where: str = "annotations",
) -> StageRuns:
    """The stage runs among annotations, sorted by onset.

    Args:
        onsets: (n,) seconds from the start of the signal.
        durations: (n,) seconds (0: until the next stage run).
        descriptions: (n,) annotation texts.
        where: what to name in warnings (a file).

    Returns:
        ``(start_s, end_s, code)``: float64, float64 (``inf`` for a last run of zero
        duration), int64 stage index or :data:`UNLABELLED`.
    """
    codes = [stage_of_annotation(str(d)) for d in descriptions]
    keep = np.array([c is not None for c in codes], dtype=bool)
    start = np.asarray(onsets, np.float64)[keep]
    dur = np.asarray(durations, np.float64)[keep]
    code = np.array([c for c in codes if c is not None], dtype=np.int64)
    order = np.argsort(start, kind="stable")
    start, dur, code = start[order], dur[order], code[order]
    unknown = code == UNKNOWN_STAGE
    if unknown.any():
        names = sorted({str(d) for d, c in zip(descriptions, codes) if c == UNKNOWN_STAGE})
        warnings.warn(
            f"{where}: unknown stage(s) {names}; their epochs are unlabelled", stacklevel=2
        )
        code[unknown] = UNLABELLED
    nxt = np.append(start[1:], np.inf)
    end = np.where(dur > 0, start + dur, nxt)
    return start, end, code


def epoch_labels(
    runs: StageRuns,
    n_samples: int,
    fs: float,
    *,
    epoch_seconds: float = EPOCH_SECONDS,
    where: str = "annotations",
) -> StageLabels | None:
    """One label per epoch of ``epoch_seconds`` from stage runs (rules in the module docstring).

    Args:
        runs: from :func:`stage_runs` (seconds from the signal's start).
        n_samples: length of the signal (samples at ``fs``).
        fs: sampling rate (Hz).
        epoch_seconds: epoch length.
        where: what to name in warnings and errors.

    Returns:
        :class:`~relpos.sleep.physionet2018.StageLabels` whose grid starts at the first stage
        run (moved forward by whole epochs if that run starts before the signal), or None
        when there are no stage runs.

    Raises:
        ValueError: ``epoch_seconds`` is not a whole number of samples at ``fs``.
    """
    start, end, code = runs
    if start.size == 0:
        return None
    E = epoch_seconds * fs
    if abs(E - round(E)) > 1e-6:
        raise ValueError(f"{where}: {epoch_seconds} s is not a whole number of samples at {fs} Hz")
    E = round(E)
    first = float(start[0])
    lead = max(0, math.ceil(-first / epoch_seconds - _SLACK_S))  # epochs before the signal
    grid0 = first + lead * epoch_seconds  # seconds where epoch 0 starts
    onset = round(grid0 * fs)
    n = max((int(n_samples) - onset) // E, 0)
    labels = np.full(n, UNLABELLED, np.int8)
    seen = np.zeros(n, bool)
    conflict = np.zeros(n, bool)
    # first whole epoch in each run and the epoch after its last whole one
    k0 = np.ceil((start - grid0) / epoch_seconds - _SLACK_S)
    k1 = np.floor(np.minimum(end - grid0, n * epoch_seconds) / epoch_seconds + _SLACK_S)
    k0, k1 = np.clip(k0, 0, n).astype(np.int64), np.clip(k1, 0, n).astype(np.int64)
    for a, b, c in zip(k0, k1, code):  # one slice per run (runs, not epochs)
        if b > a:
            conflict[a:b] |= seen[a:b] & (labels[a:b] != c)
            labels[a:b], seen[a:b] = c, True
    labels[conflict] = UNLABELLED
    off = ((start[1:] - grid0) / epoch_seconds) % 1.0
    off_grid = int(np.count_nonzero((off > _SLACK_S) & (off < 1 - _SLACK_S)))
    if off_grid:
        warnings.warn(
            f"{where}: {off_grid} stage run(s) start off the {epoch_seconds:g}-s grid of the "
            f"first one; the epochs they cut are unlabelled",
            stacklevel=2,
        )
    if conflict.any():
        warnings.warn(
            f"{where}: overlapping stage runs disagree on {int(conflict.sum())} epoch(s); "
            f"they are unlabelled",
            stacklevel=2,
        )
    return StageLabels(onset, labels, fs, E, int(start.size))
