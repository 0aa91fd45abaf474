"""Synthetic polysomnography records in the PhysioNet/CinC Challenge 2018 file format.

The real challenge signals (100–400 MB per record) cannot be downloaded everywhere, so the
library ships a generator that writes records *exactly* in the challenge's on-disk format and
replays the **real** 30-s hypnograms of the 993 training records (bundled table
``resources/hypnograms.tsv.gz``), so that stage durations, transitions and class balance are
realistic while the signals are synthetic.

Files written per record ``<rec>`` (checked against the real ``tr03-0005`` files):

``<rec>.hea``
    WFDB header ``<rec> 13 200 <N>`` and 13 signal lines
    ``<rec>.mat 16+24 <gain>[(<baseline>)]/<unit> 16 0 <initval> <checksum> 0 <name>``
    with the real channel names in the real order (:data:`SIG_NAMES`).
``<rec>.mat``
    MAT-v4 file (variable ``val``, int16, 13 x N) whose 24-byte header precedes the data;
    on disk the data are channel-interleaved per sample, i.e. WFDB format 16 at byte offset
    24 (byte-identical to ``scipy.io.savemat(path, {"val": val}, format="4")``).
``<rec>.arousal``
    WFDB annotation file (fs 200, symbol ``"``), written with :func:`wfdb.wrann` with the
    same ``subtype``/``chan`` codes as the real files (a re-write of the real
    ``tr03-0005.arousal`` through the same path is byte-identical).  ``aux_note`` holds
    sleep stages ``W N1 N2 N3 R`` only where the stage changes, at absolute sample positions
    that are multiples of 6000 (the first at the first scored sample), and paired event
    markers ``(arousal_rera``/``arousal_rera)``, ``(resp_hypopnea``/``resp_hypopnea)``,
    ``(resp_obstructiveapnea``/..., ``(resp_centralapnea``/....  Unlabelled records (the
    challenge's test set) have no ``.arousal``.

Undefined (``?``) epochs
    In the real data ``?`` only arises from the ``undefined`` one-hot of ``-arousal.mat``:
    before the first scored sample (lights on, set-up) and in the trailing partial epoch.
    The bundled table contains no ``?`` at all.  For user-supplied hypnograms, leading ``?``
    epochs become part of the unlabelled lead-in (the first stage note moves later), and the
    record is **truncated at the first ``?`` after a defined epoch** (no trailing partial
    epoch then): writing no note would silently continue the previous stage, and the
    annotation format has no "undefined" stage note.

Physiology (per 30-s epoch, features bleed over epoch boundaries, see :data:`STAGE_LEVELS`)
    EEG (6 channels, uV) is a mix of shared sources with per-channel topographies plus
    independent noise: 1/f background, delta (frontal), theta (central), alpha at a
    per-subject peak frequency (occipital), beta, sleep spindles and vertex sharp waves
    (central), K-complexes (frontal), REM sawtooth waves (central), eye-movement and muscle
    leakage (frontal), ECG leakage and movement artefacts.  E1-M2 carries blinks and
    saccades (W), slow rolling eye movements (N1), rapid eye movements in bursts (REM) and
    frontal EEG leakage; Chin1-Chin2 broadband EMG (W > N1 > N2 > N3 > REM, twitches in
    REM).  ABD/CHEST/AIRFLOW breathe at 0.2–0.3 Hz (irregular in REM) and are reduced during
    annotated apneas/hypopneas (paradoxical effort in obstructive apneas), SaO2 dips after
    them, ECG has ~60 bpm PQRST beats with respiratory sinus arrhythmia (slower in N3).
    Every record draws a per-subject parameter set (amplitudes, alpha peak 8.5–11.5 Hz,
    spindle frequency, EMG tone, noise, electrode gains, AHI, ...) from its seed.

Speed: signals are generated with FFT-shaped noise (brain sources at fs/2, cubic
upsampling), vectorised event placement and rendering, and no per-sample Python loops.

Example::

    from relpos.sleep.synthetic import synthesize_dataset
    paths = synthesize_dataset("data/synthetic2018", 20, seed=0, max_hours=2.0, jobs=2)
"""

from __future__ import annotations

import functools
import gzip
import logging
import os
import shutil
import struct
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import scipy.fft as sfft
from pydantic import BaseModel, ConfigDict, Field, field_validator
from scipy.ndimage import uniform_filter1d
from scipy.signal import lfilter
from scipy.special import ndtri

from relpos.sleep.format import (
    EVENT_SUBTYPE,
    EVENT_TYPES,
    SIGNAL_NAMES,
    SIGNAL_UNITS,
    STAGE_SUBTYPE,
    STAGES,
)

__all__ = [
    "EVENT_TYPES",
    "SIG_NAMES",
    "STAGES",
    "UNITS",
    "Hypnogram",
    "SyntheticConfig",
    "load_hypnograms",
    "stages_from_notes",
    "synthesize_dataset",
    "synthesize_record",
    "write_record",
]

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------
# Format constants (from the real tr03-0005.hea / tr03-0005.arousal)
# --------------------------------------------------------------------------------------

SIG_NAMES, UNITS = SIGNAL_NAMES, SIGNAL_UNITS  # names kept for the record writer
N_SIG = len(SIG_NAMES)
_E1, _CHIN, _ABD, _CHEST, _AIRFLOW, _SAO2, _ECG = 6, 7, 8, 9, 10, 11, 12
SAO2_GAIN, SAO2_BASELINE = 655.35, -32768
ECG_GAIN = 1000.0
MAT_HEADER_BYTES = 24

_HYPNO_CHARS = "W123R"  # the table's alphabet, same order as STAGES
_W, _N1, _N2, _N3, _R = range(5)
_TABLE_FS = 200  # sample positions in the hypnogram table are at 200 Hz

# --------------------------------------------------------------------------------------
# Physiology tables.  Rows: W, N1, N2, N3, R.  Continuous features are relative amplitudes
# (multiplied by per-subject base amplitudes); event features are rates per minute.
# --------------------------------------------------------------------------------------

_FEATURES = (
    "pink",  # 1/f background
    "delta",  # 0.5-2 Hz, frontal
    "theta",  # 4-7 Hz, central
    "alpha",  # subject alpha peak, occipital (W eyes closed = 1)
    "beta",  # 15-30 Hz
    "emg",  # chin EMG tone
    "spindle",
    "kcomplex",
    "vertex",
    "sawtooth",
    "rem_burst",
    "saccade",
    "blink",
    "sem",
    "twitch",
    "movement",
)
_F = {name: i for i, name in enumerate(_FEATURES)}
STAGE_LEVELS: dict[str, tuple[float, float, float, float, float]] = {
    #            W     N1    N2    N3    R
    "pink": (0.85, 1.0, 1.1, 1.2, 0.9),
    "delta": (0.3, 0.55, 1.0, 3.0, 0.5),
    "theta": (0.45, 1.3, 1.0, 0.9, 1.15),
    "alpha": (1.0, 0.35, 0.12, 0.08, 0.3),
    "beta": (1.0, 0.6, 0.45, 0.35, 0.7),
    "emg": (1.0, 0.65, 0.5, 0.45, 0.15),
    "spindle": (0.0, 0.4, 5.0, 2.0, 0.1),
    "kcomplex": (0.0, 0.3, 1.5, 0.8, 0.0),
    "vertex": (0.1, 3.0, 0.5, 0.0, 0.2),
    "sawtooth": (0.0, 0.1, 0.0, 0.0, 1.5),
    "rem_burst": (0.0, 0.1, 0.0, 0.0, 3.0),
    "saccade": (12.0, 1.0, 0.0, 0.0, 0.0),
    "blink": (12.0, 1.5, 0.0, 0.0, 0.0),
    "sem": (0.5, 3.0, 0.4, 0.0, 0.3),
    "twitch": (0.2, 0.5, 0.3, 0.2, 6.0),
    "movement": (0.4, 0.1, 0.03, 0.01, 0.05),
}
# log-sd of the per-epoch (within-stage) variation of each feature
_JITTER_SD = {
    "pink": 0.12,
    "delta": 0.3,
    "theta": 0.3,
    "alpha": 0.45,
    "beta": 0.3,
    "emg": 0.35,
}
_EVENT_JITTER_SD = 0.5
# respiratory events per stage (relative), breathing and heart-rate stage factors
_RESP_EVENT_MULT = np.array([0.05, 1.2, 1.0, 0.35, 1.8])
_RERA_MULT = np.array([0.05, 1.0, 1.0, 0.5, 1.2])
_RESP_RATE_STAGE = np.array([1.1, 1.0, 0.97, 0.95, 1.05])
_RESP_IRREG_STAGE = np.array([0.1, 0.08, 0.05, 0.04, 0.25])
_RESP_AMP_STAGE = np.array([1.1, 1.0, 1.0, 1.05, 0.85])
_HR_STAGE = np.array([1.08, 1.02, 0.97, 0.94, 1.04])

# Topographies over (F3-M2, F4-M1, C3-M2, C4-M1, O1-M2, O2-M1, E1-M2) of the brain-source
# rows, in this order (rows of the 100-Hz source matrix).
_SOURCES = (
    "pink_a",
    "pink_b",
    "pink_c",
    "delta",
    "theta",
    "alpha",
    "beta",
    "spindle",
    "kcomplex",
    "vertex",
    "sawtooth",
    "eye",
    "movement",
    "ecg",  # ECG artefact (weights drawn per subject)
)
_TOPO = np.array(
    [
        [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.6],  # pink_a (global)
        [0.8, 0.8, 0.2, 0.2, -0.6, -0.6, 0.5],  # pink_b (anterior-posterior)
        [0.5, -0.5, 0.5, -0.5, 0.5, -0.5, 0.3],  # pink_c (left-right)
        [1.0, 1.0, 0.8, 0.8, 0.55, 0.55, 0.6],  # delta: frontal
        [0.8, 0.8, 1.0, 1.0, 0.7, 0.7, 0.35],  # theta: central
        [0.35, 0.35, 0.5, 0.5, 1.0, 1.0, 0.15],  # alpha: occipital
        [1.0, 1.0, 0.8, 0.8, 0.6, 0.6, 0.4],  # beta
        [0.6, 0.6, 1.0, 1.0, 0.4, 0.4, 0.25],  # spindles: central
        [1.0, 1.0, 0.85, 0.85, 0.45, 0.45, 0.6],  # K-complexes: frontal
        [0.6, 0.6, 1.0, 1.0, 0.35, 0.35, 0.3],  # vertex sharp waves: central
        [0.6, 0.6, 1.0, 1.0, 0.5, 0.5, 0.3],  # sawtooth waves: central
        [0.15, 0.08, 0.04, 0.02, 0.01, 0.01, 1.0],  # eye movements / blinks
        [1.0, 1.0, 0.8, 0.8, 1.0, 1.0, 1.2],  # movement artefacts (signs drawn per subject)
        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],  # ECG artefact (drawn per subject)
    ],
    dtype=np.float64,
).T  # (7, n_sources)
_EMG_LEAK_TOPO = np.array([0.35, 0.35, 0.12, 0.12, 0.2, 0.2, 0.3])
_N_BRAIN_CH = 7  # six EEG channels + E1-M2


# --------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------


class SyntheticConfig(BaseModel):
    """Parameters of the synthetic PSG generator (pydantic v2, serialisable in configs).

    Amplitude-like fields are multipliers of built-in defaults; ``*_variability`` fields
    scale the spread of the per-subject (between-record) and per-epoch (within-stage)
    random factors (0 removes that randomness).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    fs: int = Field(200, description="sampling rate in Hz (the challenge uses 200)")
    uv_gain_choices: tuple[float, ...] = Field(
        (1.0, 2.0, 5.0, 10.0),
        description="header ADC gains (adu/uV) drawn per record for each uV channel group "
        "(EEG; E1+chin; ABD+CHEST+AIRFLOW); the real tr03-0005 uses 1",
    )
    eeg_amplitude: float = Field(1.0, gt=0, description="global EEG/EOG amplitude multiplier")
    subject_variability: float = Field(1.0, ge=0)
    within_stage_variability: float = Field(1.0, ge=0)
    transition_jitter_s: float = Field(
        6.0,
        ge=0,
        le=14,
        description="max shift of a physiological stage change from the epoch boundary",
    )
    transition_smooth_s: float = Field(
        8.0, ge=0, description="width of the ramp over which stage features cross-fade"
    )
    eyes_open_prob: float = Field(0.35, ge=0, le=1, description="share of wake time with eyes open")
    alpha_freq_range: tuple[float, float] = (8.5, 11.5)
    ahi_median: float = Field(10.0, ge=0, description="median apnea-hypopnea index (/h of sleep)")
    rera_per_hour: float = Field(6.0, ge=0)
    arousal_after_resp_prob: float = Field(0.6, ge=0, le=1)
    max_lead_in_s: float = Field(
        600.0, ge=0, description="cap of the unlabelled lead-in when a record is cropped"
    )
    hypnogram_path: str | None = Field(None, description="hypnogram table (default: bundled)")
    labelled_prefix: str = Field("tr90", description="record id prefix of labelled records")
    unlabelled_prefix: str = Field("tr91", description="record id prefix of unlabelled records")

    @field_validator("fs")
    @classmethod
    def _check_fs(cls, v: int) -> int:
        if v < 100 or v % 4:
            raise ValueError("fs must be a multiple of 4 and >= 100")
        return v

    @field_validator("uv_gain_choices")
    @classmethod
    def _check_gains(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if not v or any(g <= 0 for g in v):
            raise ValueError("uv_gain_choices must be non-empty and positive")
        return v


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
def _load_table(path: str | None) -> tuple[Hypnogram, ...]:
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
    return list(_load_table(None if path is None else str(path)))


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
    return first, "".join(_HYPNO_CHARS[c] for c in codes[idx])


# --------------------------------------------------------------------------------------
# Record plan: which epochs are replayed, lead-in and tail
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    source: str
    lead_codes: np.ndarray  # physiology of the unlabelled lead-in epochs
    codes: np.ndarray  # scored epochs (0..4)
    tail: int  # samples after the last scored epoch (< one epoch)
    tail_code: int
    window_start: int  # first replayed epoch in the source hypnogram
    night_offset_s: float  # time of sample 0 since the source recording's start


def _codes(stages: str) -> np.ndarray:
    lut = np.full(256, -1, dtype=np.int64)
    for i, c in enumerate(_HYPNO_CHARS):
        lut[ord(c)] = i
    lut[ord("?")] = -1
    return lut[np.frombuffer(stages.encode("ascii"), dtype=np.uint8)]


def _as_hypnogram(hypnogram: Any, rng: np.random.Generator, cfg: SyntheticConfig) -> Hypnogram:
    table = _load_table(cfg.hypnogram_path)
    if hypnogram is None:
        return table[int(rng.integers(len(table)))]
    if isinstance(hypnogram, int | np.integer):
        return table[int(hypnogram) % len(table)]
    if isinstance(hypnogram, str):
        if set(hypnogram) <= set(_HYPNO_CHARS + "?"):
            n = 6000 * len(hypnogram)
            return Hypnogram("custom", n, 0, hypnogram)
        for row in table:
            if row.record == hypnogram:
                return row
        raise KeyError(f"no hypnogram for record {hypnogram!r}")
    rec, n, first, stages = hypnogram
    return Hypnogram(str(rec), int(n), int(first), str(stages))


def _plan_record(
    row: Hypnogram, max_hours: float | None, rng: np.random.Generator, cfg: SyntheticConfig
) -> _Plan:
    fs = cfg.fs
    epoch = 30 * fs
    codes = _codes(row.stages)
    lead_ep = row.first_scored_sample // (30 * _TABLE_FS)
    defined = np.flatnonzero(codes >= 0)
    if defined.size == 0:
        raise ValueError(f"hypnogram {row.record} has no defined epoch")
    # leading '?' belong to the unlabelled lead-in; truncate at the first later '?'
    lead_ep += int(defined[0])
    codes = codes[defined[0] :]
    undefined = np.flatnonzero(codes < 0)
    tail = (row.n_samples - row.first_scored_sample) - 30 * _TABLE_FS * len(row.stages)
    tail = int(np.clip(tail, 0, 30 * _TABLE_FS - 1)) * fs // _TABLE_FS
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
            start = _choose_window(codes, n_win, rng)
            # lead-in physiology: the real preceding epochs (or lights-on wake)
            before = np.concatenate([all_lead, codes[:start]])
            lead = before[len(before) - n_lead :] if n_lead else before[:0]
            night_offset_s = (len(before) - n_lead) * 30.0
            tail_code = int(codes[start + n_win]) if start + n_win < n_full else int(codes[-1])
            return _Plan(
                row.record,
                lead.astype(np.int64),
                codes[start : start + n_win].copy(),
                tail,
                tail_code,
                start,
                night_offset_s,
            )
    return _Plan(row.record, all_lead, codes.copy(), tail, int(codes[-1]), 0, night_offset_s)


def _choose_window(codes: np.ndarray, n_win: int, rng: np.random.Generator) -> int:
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


# --------------------------------------------------------------------------------------
# Per-subject parameters
# --------------------------------------------------------------------------------------


@dataclass
class SubjectParams:
    """Per-record (between-subject) parameters, drawn from the record's seed."""

    eeg_amp: float
    electrode_gain: list[float]  # 7 brain channels (EEG + E1)
    chin_gain: float
    alpha_freq: float
    alpha_amp: float
    theta_freq: float
    delta_amp: float
    beta_amp: float
    spindle_freq: float
    spindle_amp: float
    kc_amp: float
    eog_amp: float
    emg_amp: float
    noise_level: float
    pink_exponent: float
    resp_rate: float
    effort_amp: float
    flow_amp: float
    hr_bpm: float
    rsa: float
    ecg_amp: float
    spo2_base: float
    desat_scale: float
    ahi: float
    resp_mix: list[float]  # hypopnea, obstructive, central
    rera_rate: float
    uv_gains: list[float]  # EEG, E1+chin, respiration


def _draw_subject(rng: np.random.Generator, cfg: SyntheticConfig) -> SubjectParams:
    v = cfg.subject_variability

    def ln(sd: float) -> float:
        return float(np.exp(v * sd * rng.standard_normal()))

    def uni(lo: float, hi: float) -> float:
        mid = 0.5 * (lo + hi)
        return float(mid + v * (rng.uniform(lo, hi) - mid))

    sign = 1.0 if rng.random() < 0.9 else -1.0
    return SubjectParams(
        eeg_amp=ln(0.25) * cfg.eeg_amplitude,
        electrode_gain=[float(np.exp(v * 0.12 * z)) for z in rng.standard_normal(7)],
        chin_gain=ln(0.2),
        alpha_freq=uni(*cfg.alpha_freq_range),
        alpha_amp=ln(0.45),
        theta_freq=uni(5.0, 6.5),
        delta_amp=ln(0.2),
        beta_amp=ln(0.3),
        spindle_freq=uni(12.0, 14.5),
        spindle_amp=ln(0.3),
        kc_amp=ln(0.2),
        eog_amp=ln(0.3),
        emg_amp=ln(0.45),
        noise_level=ln(0.3),
        pink_exponent=uni(1.2, 2.0),
        resp_rate=uni(0.2, 0.3),
        effort_amp=300.0 * ln(0.4),
        flow_amp=250.0 * ln(0.4),
        hr_bpm=uni(55.0, 75.0),
        rsa=uni(0.01, 0.05),
        ecg_amp=sign * uni(0.6, 1.6),
        spo2_base=uni(94.0, 98.0),
        desat_scale=ln(0.3),
        ahi=cfg.ahi_median * ln(0.8),
        resp_mix=[float(x) for x in rng.dirichlet([3.0, 2.0, 1.0])],
        rera_rate=cfg.rera_per_hour * ln(0.6),
        uv_gains=[float(rng.choice(cfg.uv_gain_choices)) for _ in range(3)],
    )


# --------------------------------------------------------------------------------------
# Signal helpers
# --------------------------------------------------------------------------------------


def _spectral_noise(
    rng: np.random.Generator,
    n: int,
    fs: float,
    amp_fn: Any,
    fmin: float,
    fmax: float,
) -> np.ndarray:
    """Stationary noise with amplitude spectrum ``amp_fn(f)`` on [fmin, fmax] (FFT synthesis).

    Random phases with the exact amplitude per bin: a sum of very many sinusoids, hence
    Gaussian in the time domain, and cheaper than complex normal coefficients.

    Returns:
        float32 array of shape (n,), unit variance.
    """
    nfft = sfft.next_fast_len(n, real=True)
    nb = nfft // 2 + 1
    k0 = max(1, int(np.ceil(fmin * nfft / fs)))
    k1 = min(nb - 1, int(fmax * nfft / fs) + 1)
    f = np.arange(k0, k1) * (fs / nfft)
    amp = np.asarray(amp_fn(f), dtype=np.float64)
    amp *= nfft / (2.0 * np.sqrt(np.sum(amp**2)))  # unit variance of the irfft output
    phase = rng.random(k1 - k0, dtype=np.float32)
    phase *= np.float32(2 * np.pi)
    spec = np.zeros(nb, dtype=np.complex64)
    amp32 = amp.astype(np.float32) * np.float32(np.sqrt(2.0))
    spec.real[k0:k1] = np.cos(phase) * amp32
    spec.imag[k0:k1] = np.sin(phase) * amp32
    return sfft.irfft(spec, nfft)[:n]


def _smooth_noise(rng: np.random.Generator, n: int, width: int) -> np.ndarray:
    """Unit-variance low-pass noise (moving average of ``width`` white samples), (n,)."""
    w = max(1, int(width))
    x = uniform_filter1d(rng.standard_normal(n + 2 * w), w, mode="wrap")[w : w + n]
    return x * np.sqrt(w)


def _upsample_linear(v: np.ndarray, r: int, n: int) -> np.ndarray:
    """Linear interpolation of control values ``v[k]`` at samples ``k*r`` to (n,) float32."""
    m = -(-n // r)
    v = np.asarray(v, dtype=np.float32)
    if len(v) < m + 1:
        v = np.concatenate([v, np.full(m + 1 - len(v), v[-1], np.float32)])
    frac = np.arange(r, dtype=np.float32) / np.float32(r)
    out = v[:m, None] + (v[1 : m + 1] - v[:m])[:, None] * frac
    return out.reshape(-1)[:n]


def _upsample2(x: np.ndarray, n: int) -> np.ndarray:
    """Upsample by 2 with a 4-tap cubic (Keys) midpoint interpolator, (m,) -> (n,) float32."""
    m = len(x)
    xp = np.empty(m + 3, dtype=np.float32)
    xp[1 : m + 1] = x
    xp[0] = x[0]
    xp[m + 1 :] = x[-1]
    out = np.empty((m, 2), dtype=np.float32)
    out[:, 0] = x
    mid = out[:, 1]
    np.add(xp[1 : m + 1], xp[2 : m + 2], out=mid)
    mid *= np.float32(9.0 / 16.0)
    mid -= np.float32(1.0 / 16.0) * (xp[0:m] + xp[3 : m + 3])
    return out.reshape(-1)[:n]


def _add_events(out: np.ndarray, onsets: np.ndarray, waves: np.ndarray) -> None:
    """Add waveforms ``waves`` (n_events, L) starting at sample ``onsets`` into ``out`` (n,)."""
    if len(onsets) == 0:
        return
    idx = onsets[:, None].astype(np.int64) + np.arange(waves.shape[1])
    ok = (idx >= 0) & (idx < len(out)) & (waves != 0)
    np.add.at(out, idx[ok], waves[ok].astype(out.dtype))


def _event_onsets(rng: np.random.Generator, rate_per_tick: np.ndarray, step: float) -> np.ndarray:
    """Poisson event times from a rate per control tick; returns sorted positions in samples
    of a grid with ``step`` samples per tick (float64)."""
    counts = rng.poisson(np.clip(rate_per_tick, 0, None))
    ticks = np.repeat(np.arange(len(rate_per_tick)), counts)
    return (ticks + rng.random(len(ticks))) * step


def _windows(
    n: int,
    starts: np.ndarray,
    lengths: np.ndarray,
    amps: np.ndarray,
    ramp: float,
) -> np.ndarray:
    """Sum of trapezoid windows on a grid of n ticks, (n,) float64.

    Window i rises linearly over ``ramp`` ticks before ``starts[i]``, holds ``amps[i]`` for
    ``lengths[i]`` ticks and falls over ``ramp`` ticks.
    """
    out = np.zeros(n)
    if len(starts) == 0:
        return out
    starts = np.asarray(starts, dtype=np.float64)
    lengths = np.asarray(lengths, dtype=np.float64)
    ramp = max(float(ramp), 1e-9)
    a0 = np.floor(starts - ramp).astype(np.int64)
    t = a0[:, None] + np.arange(int(np.ceil(lengths.max() + 2 * ramp)) + 2)
    rise = (t - (starts - ramp)[:, None]) / ramp
    fall = ((starts + lengths + ramp)[:, None] - t) / ramp
    w = np.clip(np.minimum(rise, fall), 0.0, 1.0) * np.asarray(amps, dtype=np.float64)[:, None]
    _add_events(out, a0, w)
    return out


# --------------------------------------------------------------------------------------
# Synthesis
# --------------------------------------------------------------------------------------


@dataclass
class _Timeline:
    n: int
    fs: int
    h: int  # samples per control tick (ctrl rate 2 Hz)
    n_ctrl: int
    phys: np.ndarray  # (n_ctrl,) physiological stage per tick
    scored_start: int  # first scored sample
    levels: np.ndarray  # (n_ctrl, n_features) smoothed, jittered feature levels
    eyes_open: np.ndarray  # (n_ctrl,) bool


_CTRL_HZ = 2


def _build_timeline(plan: _Plan, rng: np.random.Generator, cfg: SyntheticConfig) -> _Timeline:
    """Physiological stage and feature strengths on a 2-Hz control grid.

    The physiological stage follows the epoch stages, but every stage change is shifted by
    up to ``transition_jitter_s`` from the epoch boundary (the majority of the epoch keeps
    its scored stage); feature levels (:data:`STAGE_LEVELS`) get per-epoch AR(1) log-normal
    factors, cross-fade over ``transition_smooth_s`` and a few-second flicker.
    """
    fs = cfg.fs
    epoch = 30 * fs
    h = fs // _CTRL_HZ
    tpe = 30 * _CTRL_HZ  # ticks per epoch
    n = (len(plan.lead_codes) + len(plan.codes)) * epoch + plan.tail
    n_ctrl = -(-n // h) + 2
    all_codes = np.concatenate([plan.lead_codes, plan.codes, [plan.tail_code]]).astype(np.int64)
    n_ep = len(all_codes)
    # physiological stage per tick: epoch stages, changes shifted around the boundaries
    change = np.flatnonzero(all_codes[1:] != all_codes[:-1]) + 1
    jit = round(cfg.transition_jitter_s * _CTRL_HZ)
    bounds = change * tpe + rng.integers(-jit, jit + 1, size=len(change))
    seg_code = all_codes[np.concatenate([[0], change])]
    ticks = np.arange(n_ctrl)
    phys = seg_code[np.searchsorted(bounds, ticks, side="right")]
    ep_of_tick = np.minimum(ticks // tpe, n_ep - 1)

    # feature levels per tick
    table = np.array([STAGE_LEVELS[f] for f in _FEATURES]).T  # (5, F)
    raw = table[phys].copy()  # (n_ctrl, F)
    # eyes open/closed in wake: thresholded smooth noise (~10-s states)
    g = _smooth_noise(rng, n_ctrl, 20 * _CTRL_HZ // 2)
    p_open = float(np.clip(cfg.eyes_open_prob, 1e-6, 1 - 1e-6))
    eyes_open = (g > ndtri(1.0 - p_open)) & (phys == _W)
    eo = eyes_open.astype(np.float64)
    raw[:, _F["alpha"]] *= 1.0 - 0.75 * eo
    raw[:, _F["beta"]] *= 1.0 + 0.4 * eo
    raw[:, _F["saccade"]] *= 0.2 + 2.5 * eo
    raw[:, _F["blink"]] *= 0.3 + 1.7 * eo
    # alpha fades out over the first minutes of N1 after wake
    last_w = np.maximum.accumulate(np.where(phys == _W, ticks, -(10**9)))
    since_w = (ticks - last_w) / _CTRL_HZ
    n1 = phys == _N1
    raw[n1, _F["alpha"]] *= 0.5 + 1.5 * np.exp(-since_w[n1] / 60.0)
    # lights-on lead-in: more movement
    lead_ticks = len(plan.lead_codes) * tpe
    raw[:lead_ticks, _F["movement"]] *= 2.0
    # slow-wave activity declines over the night
    t_h = (ticks / _CTRL_HZ + plan.night_offset_s) / 3600.0
    raw[:, _F["delta"]] *= 0.75 + 0.6 * np.exp(-t_h / 2.5)
    # within-stage variability: epoch-level AR(1) factors (correlated across epochs)
    sds = (
        np.array([_JITTER_SD.get(f, _EVENT_JITTER_SD) for f in _FEATURES])
        * cfg.within_stage_variability
    )
    rho = 0.6
    eps = rng.standard_normal((n_ep, len(_FEATURES)))
    z = lfilter([np.sqrt(1 - rho**2)], [1.0, -rho], eps, axis=0)
    raw *= np.exp(sds * z[ep_of_tick] - 0.5 * sds**2)
    # cross-fade over the stage boundaries
    width = max(1, round(cfg.transition_smooth_s * _CTRL_HZ))
    levels = uniform_filter1d(raw, width, axis=0, mode="nearest")
    # fast (few-second) fluctuations of the strength
    fast = uniform_filter1d(rng.standard_normal((n_ctrl, len(_FEATURES))), 8, axis=0) * np.sqrt(8)
    levels *= np.exp(0.4 * sds * fast)
    return _Timeline(n, fs, h, n_ctrl, phys, len(plan.lead_codes) * epoch, levels, eyes_open)


@dataclass
class _RespEvents:
    kind: list[str]
    start: np.ndarray  # samples
    end: np.ndarray  # samples
    arousal: np.ndarray  # bool


def _place_resp_events(
    tl: _Timeline, subj: SubjectParams, rng: np.random.Generator, cfg: SyntheticConfig
) -> _RespEvents:
    """Annotated respiratory events and RERAs: Poisson candidates (stage-dependent rates,
    scored part only), then greedily made non-overlapping with >= 10 s gaps."""
    fs, h = tl.fs, tl.h
    sleep = tl.phys != _W
    kinds = ("resp_hypopnea", "resp_obstructiveapnea", "resp_centralapnea", "arousal_rera")
    durations = {  # seconds
        "resp_hypopnea": (15.0, 40.0),
        "resp_obstructiveapnea": (10.0, 40.0),
        "resp_centralapnea": (10.0, 30.0),
        "arousal_rera": (12.0, 35.0),
    }
    cand_start: list[np.ndarray] = []
    cand_dur: list[np.ndarray] = []
    cand_kind: list[np.ndarray] = []
    scored = np.arange(tl.n_ctrl) * h >= tl.scored_start
    for i, kind in enumerate(kinds):
        if kind == "arousal_rera":
            mult, per_hour = _RERA_MULT[tl.phys], subj.rera_rate
        else:
            mult, per_hour = _RESP_EVENT_MULT[tl.phys], subj.ahi * subj.resp_mix[i]
        norm = mult[sleep].mean() if sleep.any() else 1.0
        rate = per_hour / 3600.0 / _CTRL_HZ * mult / norm * scored
        on = _event_onsets(rng, rate, h)
        lo, hi = durations[kind]
        cand_start.append(on)
        cand_dur.append(rng.uniform(lo, hi, len(on)) * fs)
        cand_kind.append(np.full(len(on), i))
    starts = np.concatenate(cand_start)
    durs = np.concatenate(cand_dur)
    kind_idx = np.concatenate(cand_kind)
    order = np.argsort(starts, kind="stable")
    starts, durs, kind_idx = starts[order], durs[order], kind_idx[order]
    keep: list[int] = []
    last_end = -np.inf
    min_gap = 10.0 * fs
    end_limit = tl.n - 5 * fs
    for j in range(len(starts)):  # a few hundred candidates at most
        if starts[j] >= last_end + min_gap and starts[j] + durs[j] < end_limit:
            keep.append(j)
            last_end = starts[j] + durs[j]
    k = np.array(keep, dtype=np.int64)
    s = np.round(starts[k]).astype(np.int64)
    e = s + np.round(durs[k]).astype(np.int64)
    kind_list = [kinds[i] for i in kind_idx[k]]
    aro = np.array(
        [kk == "arousal_rera" or rng.random() < cfg.arousal_after_resp_prob for kk in kind_list],
        dtype=bool,
    )
    return _RespEvents(kind_list, s, e, aro)


def _synthesize(
    plan: _Plan, subj: SubjectParams, rng: np.random.Generator, cfg: SyntheticConfig
) -> tuple[np.ndarray, _RespEvents, _Timeline]:
    """Physical-unit signals quantised to int16.

    Returns:
        ``(digital, resp_events, timeline)`` where ``digital`` is int16 of shape (13, N).
    """
    tl = _build_timeline(plan, rng, cfg)
    fs, h, n, n_ctrl = tl.fs, tl.h, tl.n, tl.n_ctrl
    lv = tl.levels
    ev = _place_resp_events(tl, subj, rng, cfg)

    # ---- event-driven modulations on the control grid ---------------------------------
    st = ev.start / h
    en = ev.end / h
    kinds = np.array(ev.kind, dtype=object)

    def sel(*names: str) -> np.ndarray:
        return np.isin(kinds, names) if len(kinds) else np.zeros(0, bool)

    aro_start = en[ev.arousal] - 1.0 * _CTRL_HZ
    aro_len = rng.uniform(3.0, 12.0, int(ev.arousal.sum())) * _CTRL_HZ
    arousal = np.clip(_windows(n_ctrl, aro_start, aro_len, np.ones(len(aro_start)), 1.0), 0.0, 1.0)
    flow_depth = np.select(
        [sel("resp_centralapnea"), sel("resp_obstructiveapnea"), sel("resp_hypopnea")],
        [0.95, 0.92, 0.55],
        0.3,
    )
    effort_depth = np.select(
        [sel("resp_centralapnea"), sel("resp_obstructiveapnea"), sel("resp_hypopnea")],
        [0.9, -0.2, 0.3],
        -0.15,
    )
    dur = en - st
    flow_mod = np.clip(1.0 - _windows(n_ctrl, st, dur, flow_depth, 2.0), 0.03, None)
    effort_mod = np.clip(1.0 - _windows(n_ctrl, st, dur, effort_depth, 2.0), 0.05, None)
    obstr = sel("resp_obstructiveapnea")
    paradox = np.clip(_windows(n_ctrl, st[obstr], dur[obstr], np.ones(obstr.sum()), 4.0), 0, 1)
    rec_len = rng.uniform(6.0, 12.0, len(st)) * _CTRL_HZ
    recovery = _windows(n_ctrl, en, rec_len, np.full(len(st), 0.6), 2.0)
    desat = ~sel("arousal_rera")
    dip_depth = (
        np.where(
            sel("resp_hypopnea"), rng.uniform(2.0, 5.0, len(st)), rng.uniform(3.0, 9.0, len(st))
        )
        * subj.desat_scale
        * np.clip(dur / (25.0 * _CTRL_HZ), 0.5, 1.6)
    )
    dips = _dips(
        n_ctrl, st[desat] + 10.0 * _CTRL_HZ, dur[desat] + 15.0 * _CTRL_HZ, dip_depth[desat]
    )

    # arousals: alpha/beta/EMG up, delta and spindles down
    lv = lv.copy()
    lv[:, _F["alpha"]] = np.maximum(lv[:, _F["alpha"]], 0.8 * arousal)
    lv[:, _F["beta"]] = np.maximum(lv[:, _F["beta"]], 0.9 * arousal)
    lv[:, _F["emg"]] += 0.8 * arousal
    lv[:, _F["delta"]] *= 1.0 - 0.5 * arousal
    for f in ("spindle", "kcomplex"):
        lv[:, _F[f]] *= 1.0 - arousal
    lv[:, _F["movement"]] += 0.5 * arousal  # per minute, while aroused

    # ---- breathing and heart on the control grid ----------------------------------------
    phys = tl.phys
    fast = _smooth_noise(rng, n_ctrl, 6)
    slow = _smooth_noise(rng, n_ctrl, 120 * _CTRL_HZ)
    slow2 = _smooth_noise(rng, n_ctrl, 300 * _CTRL_HZ)
    irreg = uniform_filter1d(_RESP_IRREG_STAGE[phys], 16, mode="nearest")
    f_resp = (
        subj.resp_rate
        * uniform_filter1d(_RESP_RATE_STAGE[phys], 16, mode="nearest")
        * np.exp(0.05 * slow + irreg * fast)
    )
    resp_phase_c = 2 * np.pi * np.cumsum(f_resp) / _CTRL_HZ
    resp_amp = (
        uniform_filter1d(_RESP_AMP_STAGE[phys], 16, mode="nearest")
        * np.exp(0.1 * slow2 + 1.2 * irreg * _smooth_noise(rng, n_ctrl, 10))
        * (1.0 + recovery)
    )
    hr = (
        subj.hr_bpm
        * uniform_filter1d(_HR_STAGE[phys], 60, mode="nearest")
        * np.exp(0.03 * slow2 + 0.01 * fast)
        * (1.0 + subj.rsa * np.sin(resp_phase_c))
        * (1.0 + 0.15 * arousal)
    )
    spo2 = np.clip(subj.spo2_base + 0.4 * slow - dips, 60.0, 100.0)

    # ---- ECG first (mV): it leaks into the EEG, EOG and chin channels ------------------
    ecg = _ecg(n, fs, h, hr, resp_phase_c, subj, rng)

    # ---- brain sources at fs/2 ------------------------------------------------------------
    fs2 = fs // 2
    n2 = -(-n // 2)
    h2 = h // 2
    amp = subj.eeg_amp
    src = np.empty((len(_SOURCES), n2), dtype=np.float32)
    beta_pink = subj.pink_exponent / 2.0

    def pink(f: np.ndarray) -> np.ndarray:  # 1/f^beta power, smooth roll-off near 45 Hz
        return f ** (-beta_pink) / np.sqrt(1.0 + (f / 42.0) ** 16)

    def pink_ind(f: np.ndarray) -> np.ndarray:  # roll-off near 20 Hz
        return f ** (-beta_pink) / np.sqrt(1.0 + (f / 18.0) ** 16)

    for i in range(3):  # pink_a, pink_b, pink_c
        src[i] = _spectral_noise(rng, n2, fs2, pink, 0.3, 0.5 * fs2)
        src[i] *= (8.0, 4.0, 4.0)[i] * amp
    pink_env = _upsample_linear(lv[:, _F["pink"]], h2, n2)
    src[:3] *= pink_env
    del pink_env
    band = {  # name: (amplitude spectrum, fmin, fmax, rms at level 1 in uV)
        "delta": (
            lambda f: np.exp(-0.5 * ((f - 1.0) / 0.45) ** 2),
            0.3,
            3.5,
            12.0 * subj.delta_amp,
        ),
        "theta": (lambda f: np.exp(-0.5 * ((f - subj.theta_freq) / 1.2) ** 2), 2.0, 10.0, 6.0),
        "alpha": (
            lambda f: np.exp(-0.5 * ((f - subj.alpha_freq) / 0.45) ** 2),
            6.5,
            14.5,
            12.0 * subj.alpha_amp,
        ),
        "beta": (
            lambda f: 1.0 / (1.0 + np.exp(-(f - 15.0) / 1.0)) / (1.0 + np.exp((f - 30.0) / 2.0)),
            12.0,
            45.0,
            2.5 * subj.beta_amp,
        ),
    }
    for name, (fn, lo, hi, a) in band.items():
        i = _SOURCES.index(name)
        src[i] = _spectral_noise(rng, n2, fs2, fn, lo, hi)
        src[i] *= _upsample_linear(lv[:, _F[name]] * (a * amp), h2, n2)
    # micro-events (rendered at fs/2)
    for name in ("spindle", "kcomplex", "vertex", "sawtooth", "eye", "movement"):
        src[_SOURCES.index(name)] = 0.0
    mv_on, mv_dur = _render_brain_events(src, lv, tl, subj, rng, fs2, h2, amp)
    src[_SOURCES.index("ecg")] = ecg[::2][:n2]

    # topographies with per-subject jitter, signs of movement artefacts, electrode gains
    topo = _TOPO * np.exp(cfg.subject_variability * 0.12 * rng.standard_normal(_TOPO.shape))
    topo[:, _SOURCES.index("movement")] *= rng.choice([-1.0, 1.0], _N_BRAIN_CH) * rng.uniform(
        0.5, 1.5, _N_BRAIN_CH
    )
    topo[:, _SOURCES.index("ecg")] = rng.normal(0.0, 4.0, _N_BRAIN_CH)  # uV per mV of ECG
    topo *= np.asarray(subj.electrode_gain)[:, None]
    topo = topo.astype(np.float32)
    mix = np.empty((_N_BRAIN_CH, n2), dtype=np.float32)
    chunk = 1 << 15
    for a0 in range(0, n2, chunk):
        np.matmul(topo, src[:, a0 : a0 + chunk], out=mix[:, a0 : a0 + chunk])
    del src
    # independent (per-channel) 1/f noise, synthesised at fs/4 (up to 20 Hz)
    n4 = -(-n2 // 2)
    for c in range(_N_BRAIN_CH):
        ind = _upsample2(_spectral_noise(rng, n4, fs2 / 2, pink_ind, 0.3, 0.25 * fs2), n2)
        ind *= np.float32(3.0 * amp * subj.noise_level)
        mix[c] += ind
    del ind

    # ---- full-rate assembly ----------------------------------------------------------------
    digital = np.empty((N_SIG, n), dtype=np.int16)
    gains = _gains(subj)
    baselines = _baselines()

    def put(c: int, x: np.ndarray) -> None:
        x *= np.float32(gains[c])
        if baselines[c]:
            x += np.float32(baselines[c])
        np.rint(x, out=x)
        np.clip(x, -32768, 32767, out=x)
        digital[c] = x

    # EMG envelope (uV rms) with REM twitches and movement bursts
    emg_env = _upsample_linear(lv[:, _F["emg"]] * (10.0 * subj.emg_amp), h, n)
    _render_emg_bursts(emg_env, lv, tl, subj, rng, mv_on, mv_dur)
    floor = 0.8 * subj.noise_level  # amplifier noise, uV rms
    for c in range(_N_BRAIN_CH):
        y = _upsample2(mix[c], n)
        # muscle leakage (modulated like the chin EMG) plus the amplifier noise floor
        lev = emg_env * np.float32(_EMG_LEAK_TOPO[c] * 0.6 * subj.electrode_gain[c])
        lev += np.float32(floor)
        hp = _hp_noise(rng, n)
        hp *= lev
        y += hp
        put(c, y)
    del mix, y, lev, hp
    # chin EMG
    chin = _hp_noise(rng, n)
    emg_env += np.float32(0.5)
    chin *= emg_env
    chin *= np.float32(subj.chin_gain)
    chin += np.float32(rng.normal(0.0, 15.0)) * ecg
    put(_CHIN, chin)
    del emg_env, chin
    # respiration, synthesised on a ~fs/8 grid and interpolated
    q = next(d for d in (4, 5, 2, 1) if h % d == 0)  # sub-ticks per control tick
    step = h // q
    nq = -(-n // step) + 1
    ph = _upsample_linear(resp_phase_c, q, nq)
    eff = _upsample_linear(subj.effort_amp * resp_amp * effort_mod, q, nq)
    flow = _upsample_linear(subj.flow_amp * resp_amp * flow_mod, q, nq)
    par = _upsample_linear(paradox, q, nq)
    drift = _upsample_linear(_smooth_noise(rng, n_ctrl, 40), q, nq)
    abd = eff * (np.sin(ph) + 0.2 * np.sin(2.0 * ph + 0.5)) + 0.08 * subj.effort_amp * drift
    chest = 0.8 * eff * np.sin(ph + 0.25 + np.pi * par) - 0.06 * subj.effort_amp * drift
    air = flow * (np.cos(ph) + 0.15 * np.cos(2.0 * ph)) + 0.05 * subj.flow_amp * drift
    for c, x, noise in ((_ABD, abd, 3.0), (_CHEST, chest, 3.0), (_AIRFLOW, air, 2.0)):
        y = _upsample_linear(x, step, n)
        y += _white(rng, n, noise)
        put(c, y)
    # SaO2 (%)
    sat = _upsample_linear(spo2, h, n)
    sat += _white(rng, n, 0.03)
    np.clip(sat, 0.0, 100.0, out=sat)
    put(_SAO2, sat)
    # ECG: baseline wander with breathing
    ecg += _upsample_linear(0.05 * np.sin(resp_phase_c), h, n)
    put(_ECG, ecg)
    return digital, ev, tl


def _dips(n: int, starts: np.ndarray, lengths: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """SaO2 dips (in %) on the control grid: asymmetric (fast fall, slow recovery)."""
    out = np.zeros(n)
    if len(starts) == 0:
        return out
    lmax = int(np.ceil(lengths.max())) + 1
    t = np.arange(lmax)[None, :] / lengths[:, None]
    shape = np.where(
        t < 0.6, np.sin(0.5 * np.pi * t / 0.6) ** 2, np.cos(0.5 * np.pi * (t - 0.6) / 0.4) ** 2
    )
    shape = np.where(t <= 1.0, shape, 0.0) * depth[:, None]
    _add_events(out, np.round(starts).astype(np.int64), shape)
    return out


def _hp_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """Unit-variance high-pass (EMG-like, mostly 20-100 Hz at 200 Hz) noise, (n,) float32.

    First difference of uniform white noise (power ~ sin^2(pi f / fs)).
    """
    w = rng.random(n + 1, dtype=np.float32)
    d = w[1:] - w[:-1]
    d *= np.float32(np.sqrt(6.0))
    return d


def _white(rng: np.random.Generator, n: int, rms: float) -> np.ndarray:
    """Uniform white noise with the given rms (a cheap measurement-noise floor), (n,)."""
    x = rng.random(n, dtype=np.float32)
    x -= np.float32(0.5)
    x *= np.float32(rms * np.sqrt(12.0))
    return x


def _gains(subj: SubjectParams) -> list[float]:
    g_eeg, g_aux, g_resp = subj.uv_gains
    return [g_eeg] * 6 + [g_aux, g_aux] + [g_resp] * 3 + [SAO2_GAIN, ECG_GAIN]


def _baselines() -> list[int]:
    return [0] * 11 + [SAO2_BASELINE, 0]


def _rate(lv: np.ndarray, name: str) -> np.ndarray:
    """Per-tick event rate (events per control tick) from a level in events/min."""
    return lv[:, _F[name]] / (60.0 * _CTRL_HZ)


def _render_brain_events(
    src: np.ndarray,
    lv: np.ndarray,
    tl: _Timeline,
    subj: SubjectParams,
    rng: np.random.Generator,
    fs2: int,
    h2: int,
    amp: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Render spindles, K-complexes, vertex waves, sawtooth waves, eye events and movement
    artefacts into the rows of ``src`` (n_sources, n2) at rate ``fs2``.

    Returns:
        onsets (full-rate samples) and durations (s) of the movement artefacts.
    """

    def onsets(name: str) -> np.ndarray:
        return _event_onsets(rng, _rate(lv, name), h2)

    # K-complexes (biphasic, frontal), 30% followed by a spindle
    kc_on = onsets("kcomplex")
    m = len(kc_on)
    d = rng.uniform(0.6, 1.0, m)[:, None] * fs2
    t = np.arange(int(1.2 * fs2))[None, :]
    a = rng.uniform(70.0, 160.0, m)[:, None] * subj.kc_amp * amp
    kc = a * (
        -np.exp(-0.5 * ((t - 0.25 * d) / (0.09 * d)) ** 2)
        + 0.55 * np.exp(-0.5 * ((t - 0.6 * d) / (0.18 * d)) ** 2)
    )
    _add_events(src[_SOURCES.index("kcomplex")], kc_on.astype(np.int64), kc)
    # spindles (waxing-waning 11-16 Hz bursts, central)
    sp_on = np.concatenate([onsets("spindle"), kc_on[rng.random(m) < 0.3] + 0.6 * fs2])
    m = len(sp_on)
    dur = rng.uniform(0.5, 2.0, m)[:, None] * fs2
    t = np.arange(int(2.0 * fs2) + 1)[None, :]
    f = np.clip(subj.spindle_freq + 0.5 * rng.standard_normal(m), 11.0, 16.0)[:, None]
    a = rng.uniform(15.0, 40.0, m)[:, None] * subj.spindle_amp * amp
    win = np.where(t < dur, np.sin(np.pi * t / dur) ** 2, 0.0)
    sp = a * win * np.sin(2 * np.pi * f * t / fs2 + rng.uniform(0, 2 * np.pi, (m, 1)))
    _add_events(src[_SOURCES.index("spindle")], sp_on.astype(np.int64), sp)
    # vertex sharp waves (sharp negative transients, central)
    vx_on = onsets("vertex")
    m = len(vx_on)
    sig = rng.uniform(0.025, 0.045, m)[:, None] * fs2
    t = np.arange(int(0.45 * fs2))[None, :]
    a = rng.uniform(40.0, 110.0, m)[:, None] * amp
    vx = a * (
        -np.exp(-0.5 * ((t - 3 * sig) / sig) ** 2)
        + 0.25 * np.exp(-0.5 * ((t - 5.5 * sig) / (1.5 * sig)) ** 2)
    )
    _add_events(src[_SOURCES.index("vertex")], vx_on.astype(np.int64), vx)
    # sawtooth waves (REM, 2-5 Hz triangular bursts, central)
    sw_on = onsets("sawtooth")
    m = len(sw_on)
    dur = rng.uniform(2.0, 5.0, m)[:, None] * fs2
    t = np.arange(int(5.0 * fs2) + 1)[None, :]
    f = rng.uniform(2.0, 4.5, m)[:, None]
    a = rng.uniform(20.0, 45.0, m)[:, None] * amp
    frac = (f * t / fs2 + rng.random((m, 1))) % 1.0
    wdt = 0.85
    tri = np.where(frac < wdt, frac / wdt, (1.0 - frac) / (1.0 - wdt)) * 2.0 - 1.0
    win = np.where(t < dur, np.sin(np.pi * t / dur), 0.0)
    _add_events(src[_SOURCES.index("sawtooth")], sw_on.astype(np.int64), a * win * tri)

    # eye events on E1 (and leaking frontally)
    eye = src[_SOURCES.index("eye")]
    eog = subj.eog_amp * amp
    # blinks
    bl_on = onsets("blink")
    m = len(bl_on)
    dur = rng.uniform(0.2, 0.4, m)[:, None] * fs2
    t = np.arange(int(0.4 * fs2) + 1)[None, :]
    a = rng.uniform(60.0, 200.0, m)[:, None] * eog
    _add_events(eye, bl_on.astype(np.int64), a * np.where(t < dur, np.sin(np.pi * t / dur) ** 2, 0))
    # saccades (wake) and rapid eye movements (REM, in bursts): step + AC-coupling decay
    rb_on = onsets("rem_burst")
    n_in = 1 + rng.poisson(3.0, len(rb_on))
    gaps = rng.uniform(0.3, 1.2, int(n_in.sum())) * fs2
    csum = np.cumsum(gaps)
    first = np.concatenate([[0], np.cumsum(n_in)[:-1]]).astype(np.int64)
    rem_on = np.repeat(rb_on, n_in) + csum - np.repeat(csum[first], n_in) if len(rb_on) else rb_on
    sc_on = onsets("saccade")
    on = np.concatenate([sc_on, rem_on])
    big = np.concatenate([np.zeros(len(sc_on), bool), np.ones(len(rem_on), bool)])
    m = len(on)
    t = np.arange(int(2.5 * fs2))[None, :] / fs2
    a = np.where(big, rng.uniform(80.0, 250.0, m), rng.uniform(20.0, 80.0, m))
    a = (a * rng.choice([-1.0, 1.0], m) * eog)[:, None]
    tau = rng.uniform(0.4, 0.8, m)[:, None]
    rise = np.where(big, 0.012, 0.02)[:, None]
    wave = a / (1.0 + np.exp(-(t - 0.06) / rise)) * np.exp(-np.maximum(t - 0.06, 0.0) / tau)
    _add_events(eye, on.astype(np.int64), wave)
    # slow rolling eye movements (N1)
    se_on = onsets("sem")
    m = len(se_on)
    dur = rng.uniform(2.0, 6.0, m)[:, None] * fs2
    t = np.arange(int(6.0 * fs2) + 1)[None, :]
    a = (rng.uniform(40.0, 120.0, m) * rng.choice([-1.0, 1.0], m))[:, None] * eog
    ph = np.pi * t / dur
    _add_events(eye, se_on.astype(np.int64), a * np.where(t < dur, np.sin(ph) * np.sin(2 * ph), 0))
    # movement artefacts: slow large excursions on all channels
    mv_on = onsets("movement")
    m = len(mv_on)
    dur = rng.uniform(1.0, 5.0, m)[:, None] * fs2
    t = np.arange(int(5.0 * fs2) + 1)[None, :]
    a = rng.uniform(60.0, 250.0, m)[:, None]
    f1 = rng.uniform(0.3, 2.0, (m, 1))
    f2 = rng.uniform(2.0, 6.0, (m, 1))
    ph1 = rng.uniform(0, 2 * np.pi, (m, 1))
    ph2 = rng.uniform(0, 2 * np.pi, (m, 1))
    mv = (
        a
        * np.where(t < dur, np.sin(np.pi * t / dur), 0.0)
        * (np.sin(2 * np.pi * f1 * t / fs2 + ph1) + 0.5 * np.sin(2 * np.pi * f2 * t / fs2 + ph2))
    )
    _add_events(src[_SOURCES.index("movement")], mv_on.astype(np.int64), mv)
    return (mv_on * (tl.h / h2)).astype(np.int64), dur[:, 0] / fs2


def _render_emg_bursts(
    emg_env: np.ndarray,
    lv: np.ndarray,
    tl: _Timeline,
    subj: SubjectParams,
    rng: np.random.Generator,
    mv_on: np.ndarray,
    mv_dur: np.ndarray,
) -> None:
    """Add REM twitches and movement EMG bursts into the full-rate EMG envelope (uV rms)."""
    fs, h = tl.fs, tl.h
    tw_on = _event_onsets(rng, _rate(lv, "twitch"), h)
    m = len(tw_on)
    dur = rng.uniform(0.1, 0.5, m)[:, None] * fs
    t = np.arange(int(0.5 * fs) + 1)[None, :]
    a = rng.uniform(10.0, 30.0, m)[:, None] * subj.emg_amp
    _add_events(
        emg_env, tw_on.astype(np.int64), a * np.where(t < dur, np.sin(np.pi * t / dur) ** 2, 0)
    )
    m = len(mv_on)
    dur = mv_dur[:, None] * fs
    t = np.arange(int(5.0 * fs) + 1)[None, :]
    a = rng.uniform(20.0, 60.0, m)[:, None] * subj.emg_amp
    _add_events(emg_env, mv_on, a * np.where(t < dur, np.sin(np.pi * t / dur), 0))


def _ecg(
    n: int,
    fs: int,
    h: int,
    hr: np.ndarray,
    resp_phase_c: np.ndarray,
    subj: SubjectParams,
    rng: np.random.Generator,
) -> np.ndarray:
    """ECG in mV, (n,) float32: PQRST template at beat times from the heart-rate curve."""
    cum = np.cumsum(hr / 60.0 / _CTRL_HZ)  # beats
    k = np.arange(1, int(cum[-1]))
    beat_tick = np.interp(k, cum, np.arange(len(cum)))
    beat = np.round(beat_tick * h).astype(np.int64)
    pre = int(0.3 * fs)
    t = (np.arange(int(0.75 * fs)) - pre) / fs
    comps = (
        (0.15, -0.18, 0.025),
        (-0.12, -0.03, 0.008),
        (1.0, 0.0, 0.01),
        (-0.3, 0.03, 0.01),
        (0.3, 0.25, 0.045),
    )
    tpl = sum(a * np.exp(-0.5 * ((t - mu) / s) ** 2) for a, mu, s in comps)
    tpl = (tpl * subj.ecg_amp).astype(np.float32)
    scale = 1.0 + 0.08 * np.sin(np.interp(beat_tick, np.arange(len(resp_phase_c)), resp_phase_c))
    ecg = np.zeros(n, dtype=np.float32)
    # alternate beats never overlap (RR > 0.375 s): plain fancy-index adds are exact
    for par in (0, 1):
        b = beat[par::2]
        sc = scale[par::2].astype(np.float32)
        idx = (b - pre)[:, None] + np.arange(len(tpl))
        ok = (idx >= 0) & (idx < n)
        ecg[idx[ok]] += (sc[:, None] * tpl[None, :])[ok]
    ecg += _white(rng, n, 0.008)
    return ecg


# --------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------


def _seed_streams(
    seed: int,
) -> tuple[np.random.Generator, np.random.Generator, np.random.Generator]:
    ss = np.random.SeedSequence(int(seed))
    a, b, c = ss.spawn(3)
    return np.random.default_rng(a), np.random.default_rng(b), np.random.default_rng(c)


def synthesize_record(
    record_id: str,
    seed: int,
    *,
    hypnogram: Hypnogram | tuple | str | int | None = None,
    max_hours: float | None = None,
    config: SyntheticConfig | None = None,
) -> dict[str, Any]:
    """Synthesize one PSG record in memory.

    Args:
        record_id: record name (e.g. ``"tr90-0001"``).
        seed: seed of everything (hypnogram pick, subject parameters, signals).
        hypnogram: ``None`` (a table row picked by ``seed``), a table row index, a table
            record name (``"tr03-0005"``), a :class:`Hypnogram`/4-tuple, or a stage string
            of ``W123R?`` (then the scored part starts at sample 0).
        max_hours: crop to at most this many hours: a contiguous window of the hypnogram
            with as many distinct stages as possible and a stage mix close to the whole
            night's (see :func:`_choose_window`), after a lead-in of at most
            ``min(config.max_lead_in_s, 10% of max_hours)`` unlabelled seconds.
        config: generator parameters.

    Returns:
        dict with ``record_name``, ``signal`` (int16 digital values, shape (13, N),
        physical = (signal - baseline) / gain), ``gains``, ``baselines``,
        ``units``, ``sig_names``, ``fs``, ``sig_len``, ``first_scored_sample``,
        ``stage_notes`` (samples int64 array, list of notes), ``events`` (samples, notes;
        paired ``(type``/``type)`` markers), ``epoch_stages`` (``W123R`` string, one per
        30-s epoch from the first scored sample), ``source_record`` (replayed hypnogram),
        ``window_start_epoch``, ``subject`` (per-subject parameters) and ``seed``.
    """
    cfg = config or SyntheticConfig()
    t0 = time.perf_counter()
    rng_h, rng_s, rng_x = _seed_streams(seed)
    row = _as_hypnogram(hypnogram, rng_h, cfg)
    plan = _plan_record(row, max_hours, rng_h, cfg)
    subj = _draw_subject(rng_s, cfg)
    digital, ev, tl = _synthesize(plan, subj, rng_x, cfg)
    epoch = 30 * cfg.fs
    first = tl.scored_start
    codes = plan.codes
    change = np.flatnonzero(np.concatenate([[True], codes[1:] != codes[:-1]]))
    stage_samples = (first + change * epoch).astype(np.int64)
    stage_notes = [STAGES[c] for c in codes[change]]
    ev_samples = np.stack([ev.start, ev.end], axis=1).reshape(-1)
    ev_notes = [x for k in ev.kind for x in (f"({k}", f"{k})")]
    logger.debug(
        "synthesized %s (%d samples, %.2f h, hypnogram %s) in %.2f s",
        record_id,
        tl.n,
        tl.n / cfg.fs / 3600,
        plan.source,
        time.perf_counter() - t0,
    )
    return {
        "record_name": record_id,
        "signal": digital,
        "gains": _gains(subj),
        "baselines": _baselines(),
        "units": list(UNITS),
        "sig_names": list(SIG_NAMES),
        "fs": cfg.fs,
        "sig_len": tl.n,
        "first_scored_sample": int(first),
        "stage_notes": (stage_samples, stage_notes),
        "events": (ev_samples.astype(np.int64), ev_notes),
        "epoch_stages": "".join(_HYPNO_CHARS[c] for c in codes),
        "source_record": plan.source,
        "window_start_epoch": plan.window_start,
        "subject": asdict(subj),
        "seed": int(seed),
    }


def _fmt_gain(g: float) -> str:
    return f"{g:.10g}"


def _header_text(rec: dict[str, Any]) -> str:
    name = rec["record_name"]
    sig = rec["signal"]  # (13, N)
    lines = [f"{name} {N_SIG} {rec['fs']} {rec['sig_len']}"]
    for c in range(N_SIG):
        col = sig[c]
        init = int(col[0]) if len(col) else 0
        s = int(np.sum(col, dtype=np.int64))
        checksum = (s + 32768) % 65536 - 32768  # 16-bit signed, like the WFDB C library
        gain = _fmt_gain(rec["gains"][c])
        base = rec["baselines"][c]
        gain_s = f"{gain}({base})" if base else gain
        lines.append(
            f"{name}.mat 16+{MAT_HEADER_BYTES} {gain_s}/{rec['units'][c]} 16 0 {init} "
            f"{checksum} 0 {rec['sig_names'][c]}"
        )
    return "\n".join(lines) + "\n"


def _write_mat(path: Path, signal: np.ndarray, chunk: int = 1 << 16) -> None:
    """MAT-v4 file with int16 variable ``val`` = ``signal`` (13, N).

    MAT-v4 stores the matrix column-major, i.e. the 13 channels interleaved per sample:
    exactly WFDB format 16 after the 24-byte header (byte-identical to
    ``scipy.io.savemat(path, {"val": signal}, format="4")``).  Written in chunks, so no
    second full-size copy is made.
    """
    n_sig, n = signal.shape
    # type 30 = little-endian (0) * 1000 + int16 (3) * 10 + full matrix (0)
    header = struct.pack("<5i", 30, n_sig, n, 0, 4) + b"val\x00"
    assert len(header) == MAT_HEADER_BYTES
    with open(path, "wb") as fh:
        fh.write(header)
        for a0 in range(0, n, chunk):
            block = np.ascontiguousarray(signal[:, a0 : a0 + chunk].T, dtype="<i2")
            fh.write(block.tobytes())


def _write_annotations(directory: Path, rec: dict[str, Any]) -> None:
    import wfdb

    st_s, st_n = rec["stage_notes"]
    ev_s, ev_n = rec["events"]
    samples = np.concatenate([st_s, ev_s]).astype(np.int64)
    notes = list(st_n) + list(ev_n)
    subtype = [STAGE_SUBTYPE[x] for x in st_n] + [
        EVENT_SUBTYPE[x.strip("()")][0 if x.startswith("(") else 1] for x in ev_n
    ]
    chan = [0] * len(st_n) + [1] * len(ev_n)
    kind = np.array([0] * len(st_n) + [1] * len(ev_n))
    order = np.lexsort((kind, samples))
    wfdb.wrann(
        rec["record_name"],
        "arousal",
        samples[order],
        symbol=['"'] * len(order),
        subtype=np.asarray(subtype, dtype=np.int64)[order],
        chan=np.asarray(chan, dtype=np.int64)[order],
        num=np.zeros(len(order), dtype=np.int64),
        aux_note=[notes[i] for i in order],
        fs=rec["fs"],
        write_dir=str(directory),
    )


def _record_dir(out_dir: Path, record_id: str, labelled: bool, layout: str) -> Path:
    if layout == "nested":
        return Path(out_dir) / ("training" if labelled else "test") / record_id
    if layout == "flat":
        return Path(out_dir)
    raise ValueError(f"layout must be 'flat' or 'nested', not {layout!r}")


def _expected_files(directory: Path, record_id: str, labelled: bool) -> list[Path]:
    exts = (".mat", ".arousal", ".hea") if labelled else (".mat", ".hea")
    return [directory / f"{record_id}{e}" for e in exts]


def write_record(
    out_dir: str | os.PathLike,
    record_id: str,
    seed: int,
    *,
    labelled: bool = True,
    layout: Literal["flat", "nested"] = "flat",
    max_hours: float | None = None,
    config: SyntheticConfig | None = None,
    hypnogram: Hypnogram | tuple | str | int | None = None,
) -> Path:
    """Synthesize a record and write ``<rec>.hea``, ``<rec>.mat`` (and ``<rec>.arousal``).

    Files are first written into a hidden temporary folder next to the record and then
    moved into place with :func:`os.replace` (``.mat``, ``.arousal``, ``.hea`` last), so a
    killed run never leaves a record whose three files all exist but are incomplete; a
    leftover temporary folder is removed on the next write.

    Args:
        out_dir: dataset root.
        record_id: record name.
        seed: see :func:`synthesize_record`.
        labelled: write the ``.arousal`` annotation file (False: test-set style).
        layout: ``"flat"`` (``out_dir/<rec>.*``) or ``"nested"``
            (``out_dir/training/<rec>/<rec>.*``, unlabelled ones under ``test/``).
        max_hours, config, hypnogram: see :func:`synthesize_record`.

    Returns:
        Path of the ``.hea`` file.
    """
    directory = _record_dir(Path(out_dir), record_id, labelled, layout)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{record_id}.partial"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        rec = synthesize_record(
            record_id, seed, hypnogram=hypnogram, max_hours=max_hours, config=config
        )
        _write_mat(tmp / f"{record_id}.mat", rec["signal"])
        if labelled:
            _write_annotations(tmp, rec)
        (tmp / f"{record_id}.hea").write_text(_header_text(rec))
        stale = directory / f"{record_id}.arousal"
        if not labelled and stale.exists():
            stale.unlink()
        for final in _expected_files(directory, record_id, labelled):
            os.replace(tmp / final.name, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return directory / f"{record_id}.hea"


def _write_job(kwargs: dict[str, Any]) -> Path:
    return write_record(**kwargs)


def synthesize_dataset(
    out_dir: str | os.PathLike,
    n_records: int,
    *,
    seed: int = 0,
    max_hours: float | None = None,
    layout: Literal["flat", "nested"] = "nested",
    unlabelled: int = 0,
    jobs: int = 1,
    progress: bool = True,
    config: SyntheticConfig | None = None,
) -> list[Path]:
    """Write a synthetic challenge-style dataset (idempotent, optionally parallel).

    ``n_records`` labelled records ``<labelled_prefix>-0001...`` plus ``unlabelled``
    records without ``.arousal`` ``<unlabelled_prefix>-0001...`` (nested layout: under
    ``training/`` and ``test/``).  Each record replays a different real hypnogram (a
    seeded permutation of the table) and gets its own seed derived from ``seed``.  Records
    whose files all exist are skipped; a ``RECORDS`` list is (re)written only when its
    content changes.

    Returns:
        ``.hea`` paths of all records (labelled first), in record-id order.
    """
    cfg = config or SyntheticConfig()
    out = Path(out_dir)
    table = _load_table(cfg.hypnogram_path)
    perm = np.random.default_rng(np.random.SeedSequence([int(seed), 7])).permutation(len(table))
    jobs_kwargs: list[dict[str, Any]] = []
    for lab, count, prefix in (
        (True, n_records, cfg.labelled_prefix),
        (False, unlabelled, cfg.unlabelled_prefix),
    ):
        for i in range(count):
            j = i if lab else n_records + i
            rec_seed = int(np.random.SeedSequence([int(seed), int(lab), i]).generate_state(1)[0])
            jobs_kwargs.append(
                dict(
                    out_dir=out,
                    record_id=f"{prefix}-{i + 1:04d}",
                    seed=rec_seed,
                    labelled=lab,
                    layout=layout,
                    max_hours=max_hours,
                    config=cfg,
                    hypnogram=int(perm[j % len(table)]),
                )
            )
    paths = [
        _record_dir(out, kw["record_id"], kw["labelled"], layout) / f"{kw['record_id']}.hea"
        for kw in jobs_kwargs
    ]
    todo = []
    for kw in jobs_kwargs:
        d = _record_dir(out, kw["record_id"], kw["labelled"], layout)
        if all(p.exists() for p in _expected_files(d, kw["record_id"], kw["labelled"])):
            # complete; drop a temporary folder left by a run killed after the last move
            shutil.rmtree(d / f".{kw['record_id']}.partial", ignore_errors=True)
            continue
        todo.append(kw)
    logger.info("synthetic dataset %s: %d records, %d to write", out, len(jobs_kwargs), len(todo))
    if todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc="synthetic PSG", unit="rec", disable=not progress)
        t0 = time.perf_counter()
        if jobs > 1 and len(todo) > 1:
            with ProcessPoolExecutor(max_workers=min(jobs, len(todo))) as pool:
                futures = [pool.submit(_write_job, kw) for kw in todo]
                for fut in as_completed(futures):
                    fut.result()
                    bar.update(1)
        else:
            for kw in todo:
                _write_job(kw)
                bar.update(1)
        bar.close()
        logger.info("wrote %d records in %.1f s", len(todo), time.perf_counter() - t0)
    _write_records_lists(out, jobs_kwargs, layout)
    return paths


def _write_records_lists(out: Path, jobs_kwargs: list[dict[str, Any]], layout: str) -> None:
    """``RECORDS`` files like PhysioNet's (``training/RECORDS`` lists ``tr..-..../``)."""
    groups: dict[Path, list[str]] = {}
    for kw in jobs_kwargs:
        if layout == "nested":
            root = out / ("training" if kw["labelled"] else "test")
            groups.setdefault(root, []).append(f"{kw['record_id']}/")
        else:
            groups.setdefault(out, []).append(kw["record_id"])
    for root, names in groups.items():
        path = root / "RECORDS"
        existing = set(path.read_text().split()) if path.exists() else set()
        text = "\n".join(sorted(existing | set(names))) + "\n"
        if path.exists() and path.read_text() == text:
            continue
        tmp = root / ".RECORDS.partial"
        tmp.write_text(text)
        os.replace(tmp, path)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m relpos.sleep.synthetic OUT N [--seed S] [--max-hours H] [--jobs J] ...``"""
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out_dir")
    p.add_argument("n_records", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-hours", type=float, default=None)
    p.add_argument("--layout", choices=("nested", "flat"), default="nested")
    p.add_argument("--unlabelled", type=int, default=0)
    p.add_argument("--jobs", type=int, default=1)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    synthesize_dataset(
        args.out_dir,
        args.n_records,
        seed=args.seed,
        max_hours=args.max_hours,
        layout=args.layout,
        unlabelled=args.unlabelled,
        jobs=args.jobs,
    )


if __name__ == "__main__":
    main()
