"""The night on a 2-Hz control grid: physiological stage and feature levels per tick, and the
annotated respiratory events and RERAs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import uniform_filter1d
from scipy.signal import lfilter
from scipy.special import ndtri

from relpos.sleep.format import STAGE_TO_INDEX
from relpos.sleep.synthetic.hypnograms import Plan
from relpos.sleep.synthetic.physiology import (
    EVENT_JITTER_SD,
    FEATURE_INDEX,
    FEATURES,
    JITTER_SD,
    RERA_MULT,
    RESP_EVENT_MULT,
    STAGE_LEVELS,
    SubjectParams,
    SyntheticConfig,
)
from relpos.sleep.synthetic.signals import event_onsets, smooth_noise

_W, _N1, _N3 = STAGE_TO_INDEX["W"], STAGE_TO_INDEX["N1"], STAGE_TO_INDEX["N3"]

# --------------------------------------------------------------------------------------
# Synthesis
# --------------------------------------------------------------------------------------


@dataclass
class Timeline:
    n: int
    fs: int
    h: int  # samples per control tick (ctrl rate 2 Hz)
    n_ctrl: int
    phys: np.ndarray  # (n_ctrl,) physiological stage per tick
    scored_start: int  # first scored sample
    levels: np.ndarray  # (n_ctrl, n_features) smoothed, jittered feature levels
    eyes_open: np.ndarray  # (n_ctrl,) bool


CTRL_HZ = 2


def build_timeline(
    plan: Plan, subj: SubjectParams, rng: np.random.Generator, cfg: SyntheticConfig
) -> Timeline:
    """Physiological stage and feature strengths on a 2-Hz control grid.

    The physiological stage follows the epoch stages, but every stage change is shifted by
    up to ``transition_jitter_s`` from the epoch boundary (the majority of the epoch keeps
    its scored stage); epochs next to a stage change are, with ``transition_mix_prob``, a
    mixture of both stages; feature levels (:data:`STAGE_LEVELS`) drift across the night
    (:func:`night_drift`), get per-epoch AR(1) log-normal factors, cross-fade over
    ``transition_smooth_s`` and a few-second flicker.
    """
    fs = cfg.fs
    epoch = 30 * fs
    h = fs // CTRL_HZ
    tpe = 30 * CTRL_HZ  # ticks per epoch
    n = (len(plan.lead_codes) + len(plan.codes)) * epoch + plan.tail
    n_ctrl = -(-n // h) + 2
    all_codes = np.concatenate([plan.lead_codes, plan.codes, [plan.tail_code]]).astype(np.int64)
    n_ep = len(all_codes)
    # physiological stage per tick: epoch stages, changes shifted around the boundaries
    change = np.flatnonzero(all_codes[1:] != all_codes[:-1]) + 1
    jit = round(cfg.transition_jitter_s * CTRL_HZ)
    bounds = change * tpe + rng.integers(-jit, jit + 1, size=len(change))
    seg_code = all_codes[np.concatenate([[0], change])]
    ticks = np.arange(n_ctrl)
    phys = seg_code[np.searchsorted(bounds, ticks, side="right")]
    ep_of_tick = np.minimum(ticks // tpe, n_ep - 1)

    raw = _mixed_stage_levels(all_codes, phys, ep_of_tick, rng, cfg)  # (n_ctrl, F)
    # eyes open/closed in wake: thresholded smooth noise (~10-s states)
    g = smooth_noise(rng, n_ctrl, 20 * CTRL_HZ // 2)
    p_open = float(np.clip(cfg.eyes_open_prob, 1e-6, 1 - 1e-6))
    eyes_open = (g > ndtri(1.0 - p_open)) & (phys == _W)
    eo = eyes_open.astype(np.float64)
    raw[:, FEATURE_INDEX["alpha"]] *= 1.0 - 0.75 * eo
    raw[:, FEATURE_INDEX["beta"]] *= 1.0 + 0.4 * eo
    raw[:, FEATURE_INDEX["saccade"]] *= 0.2 + 2.5 * eo
    raw[:, FEATURE_INDEX["blink"]] *= 0.3 + 1.7 * eo
    # alpha fades out over the first minutes of N1 after wake
    last_w = np.maximum.accumulate(np.where(phys == _W, ticks, -(10**9)))
    since_w = (ticks - last_w) / CTRL_HZ
    n1 = phys == _N1
    raw[n1, FEATURE_INDEX["alpha"]] *= 0.5 + 1.5 * np.exp(-since_w[n1] / 60.0)
    # lights-on lead-in: more movement
    lead_ticks = len(plan.lead_codes) * tpe
    raw[:lead_ticks, FEATURE_INDEX["movement"]] *= 2.0
    t_h = (ticks / CTRL_HZ + plan.night_offset_s) / 3600.0
    raw *= night_drift(t_h, phys, subj, cfg.night_drift)
    levels = _vary_levels(raw, ep_of_tick, n_ep, rng, cfg)
    return Timeline(n, fs, h, n_ctrl, phys, len(plan.lead_codes) * epoch, levels, eyes_open)


def _mixed_stage_levels(
    codes: np.ndarray,
    phys: np.ndarray,
    ep_of_tick: np.ndarray,
    rng: np.random.Generator,
    cfg: SyntheticConfig,
) -> np.ndarray:
    """Stage feature levels per tick (n_ctrl, F); an epoch next to a stage change is, with
    ``cfg.transition_mix_prob``, a mixture of its stage and the neighbouring one (weight
    0.15-0.45 of the neighbour), as scored epochs near transitions often are."""
    table = np.array([STAGE_LEVELS[f] for f in FEATURES]).T  # (5, F)
    raw = table[phys]
    n_ep = len(codes)
    nxt = np.concatenate([codes[1:], codes[-1:]])
    prv = np.concatenate([codes[:1], codes[:-1]])
    neighbour = np.where(nxt != codes, nxt, prv)  # (n_ep,)
    draw = rng.random((n_ep, 2))
    w = np.where(
        (neighbour != codes) & (draw[:, 0] < cfg.transition_mix_prob), 0.15 + 0.3 * draw[:, 1], 0
    )
    w_t = w[ep_of_tick][:, None]
    return (1.0 - w_t) * raw + w_t * table[neighbour[ep_of_tick]]


def night_drift(
    t_h: np.ndarray, phys: np.ndarray, subj: SubjectParams, strength: float = 1.0
) -> np.ndarray:
    """Multiplicative drift of the feature levels across the night, (n_ctrl, F).

    Slow-wave (delta) power falls from cycle to cycle (most in N3), spindle density rises
    (scaled by the subject's spindle density) and REM grows denser in eye movements and
    sawtooth waves, as in real nights; ``strength`` 0 leaves only the subject factors.

    Args:
        t_h: (n_ctrl,) hours since the start of the recording.
        phys: (n_ctrl,) physiological stage per tick.
        subj: the subject (``spindle_density``).
        strength: scale of the within-night drift.
    """
    out = np.ones((len(t_h), len(FEATURES)))
    s = strength
    n3 = (phys == _N3).astype(np.float64)
    delta_fall = 1.0 + s * ((0.45 + 0.35 * n3) * np.exp(-t_h / 2.5) - 0.25)
    out[:, FEATURE_INDEX["delta"]] = np.clip(delta_fall, 0.3, None)
    out[:, FEATURE_INDEX["spindle"]] = subj.spindle_density * (1.0 + s * (0.06 * t_h - 0.2))
    rem = 1.0 + s * (0.08 * t_h - 0.25)
    out[:, FEATURE_INDEX["rem_burst"]] = rem
    out[:, FEATURE_INDEX["sawtooth"]] = rem
    return out


def _vary_levels(
    raw: np.ndarray,
    ep_of_tick: np.ndarray,
    n_ep: int,
    rng: np.random.Generator,
    cfg: SyntheticConfig,
) -> np.ndarray:
    """Within-stage variability (epoch-level AR(1) log-normal factors), cross-fade over the
    stage boundaries and few-second flicker of the levels (n_ctrl, F)."""
    n_ctrl = len(raw)
    sds = (
        np.array([JITTER_SD.get(f, EVENT_JITTER_SD) for f in FEATURES])
        * cfg.within_stage_variability
    )
    rho = 0.6
    eps = rng.standard_normal((n_ep, len(FEATURES)))
    z = lfilter([np.sqrt(1 - rho**2)], [1.0, -rho], eps, axis=0)
    raw = raw * np.exp(sds * z[ep_of_tick] - 0.5 * sds**2)
    # cross-fade over the stage boundaries
    width = max(1, round(cfg.transition_smooth_s * CTRL_HZ))
    levels = uniform_filter1d(raw, width, axis=0, mode="nearest")
    # fast (few-second) fluctuations of the strength
    fast = uniform_filter1d(rng.standard_normal((n_ctrl, len(FEATURES))), 8, axis=0) * np.sqrt(8)
    levels *= np.exp(0.4 * sds * fast)
    return levels


@dataclass
class RespEvents:
    kind: list[str]
    start: np.ndarray  # samples
    end: np.ndarray  # samples
    arousal: np.ndarray  # bool


def place_resp_events(
    tl: Timeline, subj: SubjectParams, rng: np.random.Generator, cfg: SyntheticConfig
) -> RespEvents:
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
            mult, per_hour = RERA_MULT[tl.phys], subj.rera_rate
        else:
            mult, per_hour = RESP_EVENT_MULT[tl.phys], subj.ahi * subj.resp_mix[i]
        norm = mult[sleep].mean() if sleep.any() else 1.0
        rate = per_hour / 3600.0 / CTRL_HZ * mult / norm * scored
        on = event_onsets(rng, rate, h)
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
    return RespEvents(kind_list, s, e, aro)


def event_rate(lv: np.ndarray, name: str) -> np.ndarray:
    """Per-tick event rate (events per control tick) from a level in events/min."""
    return lv[:, FEATURE_INDEX[name]] / (60.0 * CTRL_HZ)
