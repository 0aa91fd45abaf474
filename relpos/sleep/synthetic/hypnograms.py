"""Replayed real hypnograms: the bundled table, decoding stage notes, and the record plan
(which epochs of a night are replayed, with their lead-in and tail)."""

from __future__ import annotations

import functools
import gzip
import os
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from relpos.sleep.format import STAGE_SUBTYPE, STAGES
from relpos.sleep.synthetic.physiology import SyntheticConfig

HYPNO_CHARS = "W123R"  # the table's alphabet, same order as STAGES
TABLE_FS = 200  # sample positions in the hypnogram table are at 200 Hz

# --------------------------------------------------------------------------------------
# Hypnogram table
# --------------------------------------------------------------------------------------


class Hypnogram(NamedTuple):
    """One row of the hypnogram table (sample positions at 200 Hz)."""

    record: str
    n_samples: int
    first_scored_sample: int
    stages: str  # one of W,1,2,3,R,? per 30-s epoch from first_scored_sample on


@functools.lru_cache(maxsize=4)
def load_table(path: str | None) -> tuple[Hypnogram, ...]:
    if path is None:
        ref = resources.files("relpos.sleep").joinpath("resources/hypnograms.tsv.gz")
        raw = ref.read_bytes()
    else:
        raw = Path(path).read_bytes()
    text = gzip.decompress(raw).decode() if raw[:2] == b"\x1f\x8b" else raw.decode()
    rows = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#") or line.startswith("record\t"):
            continue
        rec, n, first, stages = line.split("\t")
        rows.append(Hypnogram(rec, int(n), int(first), stages.strip()))
    return tuple(rows)


def load_hypnograms(path: str | os.PathLike | None = None) -> list[Hypnogram]:
    """Real 30-s hypnograms of the PhysioNet/CinC 2018 training records.

    Returns a list of ``(record_name, n_samples, first_scored_sample, stages_str)`` named
    tuples (:class:`Hypnogram`); ``stages_str`` has one character ``W,1,2,3,R,?`` per
    30-s epoch starting at ``first_scored_sample`` (200-Hz sample index).
    """
    return list(load_table(None if path is None else str(path)))


def stages_from_notes(
    samples: Sequence[int] | np.ndarray,
    notes: Sequence[str],
    sig_len: int,
    fs: int = 200,
) -> tuple[int, str]:
    """Decode ``.arousal`` stage notes back to a 30-s hypnogram.

    Args:
        samples: annotation sample indices (any notes; non-stage notes are ignored).
        notes: the annotations' ``aux_note`` strings.
        sig_len: record length in samples.
        fs: sampling rate.

    Returns:
        ``(first_scored_sample, stages)`` where ``stages`` has one character of ``W123R``
        for every *full* 30-s epoch from the first stage note on.
    """
    epoch = 30 * fs
    pos = [(int(s), n) for s, n in zip(samples, notes) if n in STAGE_SUBTYPE]
    if not pos:
        return -1, ""
    first = pos[0][0]
    n_ep = (sig_len - first) // epoch
    starts = np.array([p[0] for p in pos])
    codes = np.array([STAGES.index(p[1]) for p in pos])
    ep_start = first + epoch * np.arange(n_ep)
    idx = np.searchsorted(starts, ep_start, side="right") - 1
    return first, "".join(HYPNO_CHARS[c] for c in codes[idx])


# --------------------------------------------------------------------------------------
# Record plan: which epochs are replayed, lead-in and tail
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    source: str
    lead_codes: np.ndarray  # physiology of the unlabelled lead-in epochs
    codes: np.ndarray  # scored epochs (0..4)
    tail: int  # samples after the last scored epoch (< one epoch)
    tail_code: int
    window_start: int  # first replayed epoch in the source hypnogram
    night_offset_s: float  # time of sample 0 since the source recording's start


def _codes(stages: str) -> np.ndarray:
    lut = np.full(256, -1, dtype=np.int64)
    for i, c in enumerate(HYPNO_CHARS):
        lut[ord(c)] = i
    lut[ord("?")] = -1
    return lut[np.frombuffer(stages.encode("ascii"), dtype=np.uint8)]


def as_hypnogram(hypnogram: Any, rng: np.random.Generator, cfg: SyntheticConfig) -> Hypnogram:
    table = load_table(cfg.hypnogram_path)
    if hypnogram is None:
        return table[int(rng.integers(len(table)))]
    if isinstance(hypnogram, int | np.integer):
        return table[int(hypnogram) % len(table)]
    if isinstance(hypnogram, str):
        if set(hypnogram) <= set(HYPNO_CHARS + "?"):
            n = 6000 * len(hypnogram)
            return Hypnogram("custom", n, 0, hypnogram)
        for row in table:
            if row.record == hypnogram:
                return row
        raise KeyError(f"no hypnogram for record {hypnogram!r}")
    rec, n, first, stages = hypnogram
    return Hypnogram(str(rec), int(n), int(first), str(stages))


def plan_record(
    row: Hypnogram, max_hours: float | None, rng: np.random.Generator, cfg: SyntheticConfig
) -> Plan:
    fs = cfg.fs
    epoch = 30 * fs
    codes = _codes(row.stages)
    lead_ep = row.first_scored_sample // (30 * TABLE_FS)
    defined = np.flatnonzero(codes >= 0)
    if defined.size == 0:
        raise ValueError(f"hypnogram {row.record} has no defined epoch")
    # leading '?' belong to the unlabelled lead-in; truncate at the first later '?'
    lead_ep += int(defined[0])
    codes = codes[defined[0] :]
    undefined = np.flatnonzero(codes < 0)
    tail = (row.n_samples - row.first_scored_sample) - 30 * TABLE_FS * len(row.stages)
    tail = int(np.clip(tail, 0, 30 * TABLE_FS - 1)) * fs // TABLE_FS
    if undefined.size:
        codes = codes[: undefined[0]]
        tail = 0
    n_full = len(codes)
    all_lead = np.zeros(lead_ep, dtype=np.int64)  # lights-on wake
    start = 0
    night_offset_s = 0.0
    if max_hours is not None:
        max_samples = round(max_hours * 3600 * fs)
        if lead_ep * epoch + n_full * epoch + tail > max_samples:
            lead_cap = int(min(cfg.max_lead_in_s * fs, 0.1 * max_samples)) // epoch
            n_lead = min(lead_ep, lead_cap)
            n_win = max(1, min(n_full, (max_samples - n_lead * epoch - tail) // epoch))
            tail = int(np.clip(max_samples - (n_lead + n_win) * epoch, 0, tail))
            start = choose_window(codes, n_win, rng)
            # lead-in physiology: the real preceding epochs (or lights-on wake)
            before = np.concatenate([all_lead, codes[:start]])
            lead = before[len(before) - n_lead :] if n_lead else before[:0]
            night_offset_s = (len(before) - n_lead) * 30.0
            tail_code = int(codes[start + n_win]) if start + n_win < n_full else int(codes[-1])
            return Plan(
                row.record,
                lead.astype(np.int64),
                codes[start : start + n_win].copy(),
                tail,
                tail_code,
                start,
                night_offset_s,
            )
    return Plan(row.record, all_lead, codes.copy(), tail, int(codes[-1]), 0, night_offset_s)


def choose_window(codes: np.ndarray, n_win: int, rng: np.random.Generator) -> int:
    """Start epoch of a contiguous window of ``n_win`` epochs with a realistic stage mix.

    Eligible starts are those whose window contains the most distinct stages and, among
    them, the best 10% by total-variation distance between the window's and the whole
    night's stage distribution; one is drawn at random.  Stage runs stay real (the window
    is a contiguous piece of the real hypnogram).
    """
    n = len(codes)
    if n_win >= n:
        return 0
    onehot = np.zeros((n + 1, 5))
    onehot[np.arange(1, n + 1), codes] = 1.0
    cum = np.cumsum(onehot, axis=0)
    counts = cum[n_win:] - cum[: n - n_win + 1]  # (n_starts, 5)
    night = cum[-1] / n
    dist = 0.5 * np.abs(counts / n_win - night).sum(axis=1)
    present = (counts > 0).sum(axis=1)
    cand = np.flatnonzero(present == present.max())
    thresh = np.quantile(dist[cand], 0.1)
    eligible = cand[dist[cand] <= thresh + 1e-12]
    return int(rng.choice(eligible))
