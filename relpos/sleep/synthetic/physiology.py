"""Physiology of the synthetic records: per-stage feature levels, source topographies, the
generator's configuration and the per-subject (between-record) parameters.

Rows of the stage tables are W, N1, N2, N3, R.  Continuous features are relative amplitudes
(multiplied by per-subject base amplitudes); event features are rates per minute.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

# --------------------------------------------------------------------------------------
# Physiology tables.  Rows: W, N1, N2, N3, R.  Continuous features are relative amplitudes
# (multiplied by per-subject base amplitudes); event features are rates per minute.
# --------------------------------------------------------------------------------------

FEATURES = (
    "pink",  # 1/f background
    "delta",  # 0.5-2 Hz, frontal
    "theta",  # 4-7 Hz, central
    "alpha",  # subject alpha peak, occipital (W eyes closed = 1)
    "beta",  # 12-30 Hz, falling like 1/f (fills the sigma and beta bands)
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
FEATURE_INDEX = {name: i for i, name in enumerate(FEATURES)}
#: Feature levels per stage. The delta, theta, alpha, beta and spindle rows are calibrated
#: (issue 9) so that the mean relative band powers of every stage on C3-M2 match real sleep
#: EEG within 0.05 (:mod:`relpos.sleep.synthetic.realism`); REM is set close to N1 (mixed
#: frequency, not "more theta") and told apart by sawtooth waves, rapid eye movements on E1
#: and chin atonia (``sawtooth``, ``rem_burst``, ``emg``, ``twitch``).
STAGE_LEVELS: dict[str, tuple[float, float, float, float, float]] = {
    #            W     N1    N2    N3    R
    "pink": (0.85, 1.0, 1.1, 1.2, 0.9),
    "delta": (0.27, 0.59, 1.09, 2.92, 0.585),
    "theta": (0.247, 0.592, 0.694, 0.948, 0.504),
    "alpha": (0.53, 0.82, 0.38, 0.46, 0.44),
    "beta": (1.1, 0.797, 0.228, 0.025, 1.11),
    "emg": (1.0, 0.65, 0.5, 0.45, 0.15),
    "spindle": (0.0, 0.4, 4.1, 4.1, 0.1),
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
JITTER_SD = {
    "pink": 0.12,
    "delta": 0.3,
    "theta": 0.3,
    "alpha": 0.35,
    "beta": 0.3,
    "emg": 0.35,
}
EVENT_JITTER_SD = 0.5
# respiratory events per stage (relative), breathing and heart-rate stage factors
RESP_EVENT_MULT = np.array([0.05, 1.2, 1.0, 0.35, 1.8])
RERA_MULT = np.array([0.05, 1.0, 1.0, 0.5, 1.2])
RESP_RATE_STAGE = np.array([1.1, 1.0, 0.97, 0.95, 1.05])
RESP_IRREG_STAGE = np.array([0.1, 0.08, 0.05, 0.04, 0.25])
RESP_AMP_STAGE = np.array([1.1, 1.0, 1.0, 1.05, 0.85])
HR_STAGE = np.array([1.08, 1.02, 0.97, 0.94, 1.04])

# Topographies over (F3-M2, F4-M1, C3-M2, C4-M1, O1-M2, O2-M1, E1-M2) of the brain-source
# rows, in this order (rows of the 100-Hz source matrix).
SOURCES = (
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
TOPO = np.array(
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
EMG_LEAK_TOPO = np.array([0.35, 0.35, 0.12, 0.12, 0.2, 0.2, 0.3])
N_BRAIN_CH = 7  # six EEG channels + E1-M2


# --------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------


class SyntheticConfig(BaseModel):
    """Parameters of the synthetic PSG generator (pydantic v2, serialisable in configs).

    Amplitude-like fields are multipliers of built-in defaults; ``*_variability`` fields
    scale the spread of the per-subject (between-record) and per-epoch (within-stage)
    random factors (0 removes that randomness).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    fs: int = Field(
        default=200, ge=100, le=2000, description="sampling rate in Hz (the challenge uses 200)"
    )
    uv_gain_choices: tuple[float, ...] = Field(
        default=(1.0, 2.0, 5.0, 10.0),
        description="header ADC gains (adu/uV) drawn per record for each uV channel group "
        "(EEG; E1+chin; ABD+CHEST+AIRFLOW); the real tr03-0005 uses 1",
    )
    eeg_amplitude: float = Field(
        default=1.0, gt=0, le=100, description="global EEG/EOG amplitude multiplier"
    )
    subject_variability: float = Field(default=1.0, ge=0, le=3)
    within_stage_variability: float = Field(default=1.0, ge=0, le=3)
    transition_jitter_s: float = Field(
        default=6.0,
        ge=0,
        le=14,
        description="max shift of a physiological stage change from the epoch boundary",
    )
    transition_smooth_s: float = Field(
        default=8.0,
        ge=0,
        le=60,
        description="width of the ramp over which stage features cross-fade",
    )
    transition_mix_prob: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="probability that an epoch next to a stage change mixes in the other stage",
    )
    night_drift: float = Field(
        default=1.0,
        ge=0,
        le=3,
        description="strength of the drift across the night (delta falls, spindles rise)",
    )
    pops_per_hour: float = Field(
        default=1.5, ge=0, le=60, description="median electrode pops per hour (all EEG channels)"
    )
    sweat_prob: float = Field(
        default=0.3, ge=0, le=1, description="share of subjects with sweat sway episodes"
    )
    eyes_open_prob: float = Field(
        default=0.35, ge=0, le=1, description="share of wake time with eyes open"
    )
    alpha_freq_range: tuple[float, float] = Field(
        default=(8.5, 11.5), description="range of the per-subject alpha peak (Hz), in 4..20"
    )
    ahi_median: float = Field(
        default=10.0, ge=0, le=150, description="median apnea-hypopnea index (/h of sleep)"
    )
    rera_per_hour: float = Field(default=6.0, ge=0, le=100)
    arousal_after_resp_prob: float = Field(default=0.6, ge=0, le=1)
    max_lead_in_s: float = Field(
        default=600.0,
        ge=0,
        le=36000,
        description="cap of the unlabelled lead-in when a record is cropped",
    )
    hypnogram_path: str | None = Field(
        default=None, description="hypnogram table (default: bundled)"
    )
    labelled_prefix: str = Field(default="tr90", description="record id prefix of labelled records")
    unlabelled_prefix: str = Field(
        default="tr91", description="record id prefix of unlabelled records"
    )

    @field_validator("fs")
    @classmethod
    def _check_fs(cls, v: int) -> int:
        if v < 100 or v % 4:
            raise ValueError("fs must be a multiple of 4 and >= 100")
        return v

    @field_validator("alpha_freq_range")
    @classmethod
    def _check_alpha(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 4.0 <= v[0] <= v[1] <= 20.0:
            raise ValueError(
                f"alpha_freq_range must be (lo, hi) with 4 <= lo <= hi <= 20 Hz, got {v}"
            )
        return v

    @field_validator("uv_gain_choices")
    @classmethod
    def _check_gains(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if not v or any(not 0 < g <= 100 for g in v):
            raise ValueError(f"uv_gain_choices must be non-empty, each in (0, 100] adu/uV, got {v}")
        return v


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
    age: float = 0.0  # age-like z-score: older -> less delta, fewer and weaker spindles
    spindle_density: float = 1.0  # multiplier of the spindle rate
    pop_rate: float = 0.0  # electrode pops per hour
    sweat: float = 0.0  # sweat-sway episodes per hour (0 for most subjects)


def draw_subject(rng: np.random.Generator, cfg: SyntheticConfig) -> SubjectParams:
    """Per-record parameters: log-normal amplitude factors (clipped at 2 sd), uniform
    frequencies, an age-like z-score shifting delta and spindles, artefact rates; the spread
    scales with ``cfg.subject_variability`` (0: every subject is the median one)."""
    v = cfg.subject_variability

    def ln(sd: float) -> float:  # log-normal factor, clipped at 2 sd (no extreme subjects)
        return float(np.exp(v * sd * np.clip(rng.standard_normal(), -2.0, 2.0)))

    def uni(lo: float, hi: float) -> float:
        mid = 0.5 * (lo + hi)
        return float(mid + v * (rng.uniform(lo, hi) - mid))

    sign = 1.0 if rng.random() < 0.9 else -1.0
    p = SubjectParams(
        eeg_amp=ln(0.25) * cfg.eeg_amplitude,
        electrode_gain=[float(np.exp(v * 0.12 * z)) for z in rng.standard_normal(7)],
        chin_gain=ln(0.2),
        alpha_freq=uni(*cfg.alpha_freq_range),
        alpha_amp=ln(0.3),
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
    # age-like shifts: older subjects have less slow-wave power and fewer, weaker spindles
    p.age = v * float(rng.standard_normal())
    p.delta_amp *= float(np.exp(-0.2 * p.age))
    p.spindle_amp *= float(np.exp(-0.12 * p.age))
    p.spindle_density = float(np.exp(-0.25 * p.age + v * 0.2 * rng.standard_normal()))
    p.pop_rate = cfg.pops_per_hour * ln(0.8)
    p.sweat = float(rng.uniform(0.5, 2.0)) if rng.random() < cfg.sweat_prob else 0.0
    return p
