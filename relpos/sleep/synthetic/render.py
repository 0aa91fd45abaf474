"""Rendering a planned night into the 13 int16 signals of a challenge record."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.ndimage import uniform_filter1d

from relpos.sleep.format import SIGNAL_NAMES
from relpos.sleep.synthetic.events import (
    render_brain_events,
    render_channel_artefacts,
    render_ecg,
    render_emg_bursts,
)
from relpos.sleep.synthetic.hypnograms import Plan
from relpos.sleep.synthetic.physiology import (
    EMG_LEAK_TOPO,
    FEATURE_INDEX,
    HR_STAGE,
    N_BRAIN_CH,
    RESP_AMP_STAGE,
    RESP_IRREG_STAGE,
    RESP_RATE_STAGE,
    SOURCES,
    TOPO,
    SubjectParams,
    SyntheticConfig,
)
from relpos.sleep.synthetic.signals import (
    hp_noise,
    saturation_dips,
    smooth_noise,
    spectral_noise,
    upsample2,
    upsample_linear,
    white,
    windows,
)
from relpos.sleep.synthetic.timeline import (
    CTRL_HZ,
    RespEvents,
    Timeline,
    build_timeline,
    place_resp_events,
)

_CHIN, _ABD, _CHEST, _AIRFLOW, _SAO2, _ECG = (
    SIGNAL_NAMES.index(s) for s in ("Chin1-Chin2", "ABD", "CHEST", "AIRFLOW", "SaO2", "ECG")
)
SAO2_GAIN, SAO2_BASELINE = 655.35, -32768
ECG_GAIN = 1000.0


@dataclass
class _Modulations:
    """Event-driven modulations on the control grid, each (n_ctrl,)."""

    arousal: np.ndarray  # 0..1 arousal strength
    flow_mod: np.ndarray  # airflow factor
    effort_mod: np.ndarray  # effort factor
    paradox: np.ndarray  # 0..1 paradoxical chest effort (obstructive apneas)
    recovery: np.ndarray  # breathing overshoot after events
    dips: np.ndarray  # SaO2 dips in %


@dataclass
class _Cardioresp:
    """Breathing and heart on the control grid, each (n_ctrl,)."""

    resp_phase: np.ndarray  # breathing phase (rad)
    resp_amp: np.ndarray  # relative breathing amplitude
    hr: np.ndarray  # heart rate (bpm)
    spo2: np.ndarray  # SaO2 (%)


def synthesize(
    plan: Plan, subj: SubjectParams, rng: np.random.Generator, cfg: SyntheticConfig
) -> tuple[np.ndarray, RespEvents, Timeline]:
    """Physical-unit signals quantised to int16.

    Returns:
        ``(digital, resp_events, timeline)`` where ``digital`` is int16 of shape (13, N).
    """
    tl = build_timeline(plan, subj, rng, cfg)
    ev = place_resp_events(tl, subj, rng, cfg)
    mod = _event_modulations(tl, ev, subj, rng)
    lv = _aroused_levels(tl.levels, mod.arousal)
    cr = _breathing_and_heart(tl, subj, mod, rng)
    # ECG first (mV): it leaks into the EEG, EOG and chin channels
    ecg = render_ecg(tl.n, tl.fs, tl.h, cr.hr, cr.resp_phase, subj, rng)
    src, mv_on, mv_dur = _brain_sources(lv, tl, subj, ecg, rng)
    mix = _project_sources(src, subj, rng, cfg)
    del src
    _add_independent_noise(mix, tl.fs // 2, subj, rng)
    render_channel_artefacts(mix, tl, subj, rng, tl.fs // 2)
    digital = np.empty((len(SIGNAL_NAMES), tl.n), dtype=np.int16)
    put = functools.partial(_put, digital, channel_gains(subj), channel_baselines())
    _assemble_eeg_emg(put, mix, lv, tl, subj, ecg, mv_on, mv_dur, rng)
    del mix
    _assemble_respiration(put, tl, subj, mod, cr, rng)
    # SaO2 (%)
    n, h = tl.n, tl.h
    sat = upsample_linear(cr.spo2, h, n)
    sat += white(rng, n, 0.03)
    np.clip(sat, 0.0, 100.0, out=sat)
    put(_SAO2, sat)
    # ECG: baseline wander with breathing
    ecg += upsample_linear(0.05 * np.sin(cr.resp_phase), h, n)
    put(_ECG, ecg)
    return digital, ev, tl


def _put(
    digital: np.ndarray, gains: list[float], baselines: list[int], c: int, x: np.ndarray
) -> None:
    """Quantise physical ``x`` (n,) float32 (modified in place) into row ``c`` of ``digital``."""
    x *= np.float32(gains[c])
    if baselines[c]:
        x += np.float32(baselines[c])
    np.rint(x, out=x)
    np.clip(x, -32768, 32767, out=x)
    digital[c] = x


def _event_modulations(
    tl: Timeline, ev: RespEvents, subj: SubjectParams, rng: np.random.Generator
) -> _Modulations:
    """Arousals after events, airflow/effort reductions, recovery breaths and SaO2 dips."""
    h, n_ctrl = tl.h, tl.n_ctrl
    st = ev.start / h
    en = ev.end / h
    kinds = np.array(ev.kind, dtype=object)

    def sel(*names: str) -> np.ndarray:
        return np.isin(kinds, names) if len(kinds) else np.zeros(0, bool)

    aro_start = en[ev.arousal] - 1.0 * CTRL_HZ
    aro_len = rng.uniform(3.0, 12.0, int(ev.arousal.sum())) * CTRL_HZ
    arousal = np.clip(windows(n_ctrl, aro_start, aro_len, np.ones(len(aro_start)), 1.0), 0.0, 1.0)
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
    flow_mod = np.clip(1.0 - windows(n_ctrl, st, dur, flow_depth, 2.0), 0.03, None)
    effort_mod = np.clip(1.0 - windows(n_ctrl, st, dur, effort_depth, 2.0), 0.05, None)
    obstr = sel("resp_obstructiveapnea")
    paradox = np.clip(windows(n_ctrl, st[obstr], dur[obstr], np.ones(obstr.sum()), 4.0), 0, 1)
    rec_len = rng.uniform(6.0, 12.0, len(st)) * CTRL_HZ
    recovery = windows(n_ctrl, en, rec_len, np.full(len(st), 0.6), 2.0)
    desat = ~sel("arousal_rera")
    dip_depth = (
        np.where(
            sel("resp_hypopnea"), rng.uniform(2.0, 5.0, len(st)), rng.uniform(3.0, 9.0, len(st))
        )
        * subj.desat_scale
        * np.clip(dur / (25.0 * CTRL_HZ), 0.5, 1.6)
    )
    dips = saturation_dips(
        n_ctrl, st[desat] + 10.0 * CTRL_HZ, dur[desat] + 15.0 * CTRL_HZ, dip_depth[desat]
    )
    return _Modulations(arousal, flow_mod, effort_mod, paradox, recovery, dips)


def _aroused_levels(levels: np.ndarray, arousal: np.ndarray) -> np.ndarray:
    """Feature levels (n_ctrl, F) with arousals: alpha/beta/EMG up, delta and spindles down."""
    lv = levels.copy()
    lv[:, FEATURE_INDEX["alpha"]] = np.maximum(lv[:, FEATURE_INDEX["alpha"]], 0.8 * arousal)
    lv[:, FEATURE_INDEX["beta"]] = np.maximum(lv[:, FEATURE_INDEX["beta"]], 0.9 * arousal)
    lv[:, FEATURE_INDEX["emg"]] += 0.8 * arousal
    lv[:, FEATURE_INDEX["delta"]] *= 1.0 - 0.5 * arousal
    for f in ("spindle", "kcomplex"):
        lv[:, FEATURE_INDEX[f]] *= 1.0 - arousal
    lv[:, FEATURE_INDEX["movement"]] += 0.5 * arousal  # per minute, while aroused
    return lv


def _breathing_and_heart(
    tl: Timeline, subj: SubjectParams, mod: _Modulations, rng: np.random.Generator
) -> _Cardioresp:
    """Breathing phase and amplitude, heart rate and SaO2 on the control grid."""
    n_ctrl, phys = tl.n_ctrl, tl.phys
    fast = smooth_noise(rng, n_ctrl, 6)
    slow = smooth_noise(rng, n_ctrl, 120 * CTRL_HZ)
    slow2 = smooth_noise(rng, n_ctrl, 300 * CTRL_HZ)
    irreg = uniform_filter1d(RESP_IRREG_STAGE[phys], 16, mode="nearest")
    f_resp = (
        subj.resp_rate
        * uniform_filter1d(RESP_RATE_STAGE[phys], 16, mode="nearest")
        * np.exp(0.05 * slow + irreg * fast)
    )
    resp_phase_c = 2 * np.pi * np.cumsum(f_resp) / CTRL_HZ
    resp_amp = (
        uniform_filter1d(RESP_AMP_STAGE[phys], 16, mode="nearest")
        * np.exp(0.1 * slow2 + 1.2 * irreg * smooth_noise(rng, n_ctrl, 10))
        * (1.0 + mod.recovery)
    )
    hr = (
        subj.hr_bpm
        * uniform_filter1d(HR_STAGE[phys], 60, mode="nearest")
        * np.exp(0.03 * slow2 + 0.01 * fast)
        * (1.0 + subj.rsa * np.sin(resp_phase_c))
        * (1.0 + 0.15 * mod.arousal)
    )
    spo2 = np.clip(subj.spo2_base + 0.4 * slow - mod.dips, 60.0, 100.0)
    return _Cardioresp(resp_phase_c, resp_amp, hr, spo2)


def _rolled_pink(f: np.ndarray, beta: float, corner: float) -> np.ndarray:
    """1/f^(2 beta) power spectrum (amplitude f^-beta) with a smooth roll-off at ``corner`` Hz."""
    return f ** (-beta) / np.sqrt(1.0 + (f / corner) ** 16)


def _band_spectra(subj: SubjectParams) -> dict[str, tuple[Any, float, float, float]]:
    """Rhythm sources: name -> (amplitude spectrum, fmin, fmax, rms at level 1 in uV)."""
    return {
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
            lambda f: (
                f**-1.2 / (1.0 + np.exp(-(f - 12.5) / 1.0)) / (1.0 + np.exp((f - 30.0) / 2.0))
            ),
            9.0,
            45.0,
            2.5 * subj.beta_amp,
        ),
    }


def _brain_sources(
    lv: np.ndarray, tl: Timeline, subj: SubjectParams, ecg: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Brain (and artefact) source rows at fs/2, (n_sources, n2) float32.

    Returns:
        ``(src, mv_on, mv_dur)``: the sources and the movement artefacts' full-rate onsets
        and durations (s).
    """
    fs2 = tl.fs // 2
    n2 = -(-tl.n // 2)
    h2 = tl.h // 2
    amp = subj.eeg_amp
    src = np.empty((len(SOURCES), n2), dtype=np.float32)
    beta_pink = subj.pink_exponent / 2.0
    for i in range(3):  # pink_a, pink_b, pink_c
        src[i] = spectral_noise(
            rng, n2, fs2, lambda f: _rolled_pink(f, beta_pink, 42.0), 0.3, 0.5 * fs2
        )
        src[i] *= (8.0, 4.0, 4.0)[i] * amp
    pink_env = upsample_linear(lv[:, FEATURE_INDEX["pink"]], h2, n2)
    src[:3] *= pink_env
    del pink_env
    for name, (fn, lo, hi, a) in _band_spectra(subj).items():
        i = SOURCES.index(name)
        src[i] = spectral_noise(rng, n2, fs2, fn, lo, hi)
        src[i] *= upsample_linear(lv[:, FEATURE_INDEX[name]] * (a * amp), h2, n2)
    # micro-events (rendered at fs/2)
    for name in ("spindle", "kcomplex", "vertex", "sawtooth", "eye", "movement"):
        src[SOURCES.index(name)] = 0.0
    mv_on, mv_dur = render_brain_events(src, lv, tl, subj, rng, fs2, h2, amp)
    src[SOURCES.index("ecg")] = ecg[::2][:n2]
    return src, mv_on, mv_dur


def _project_sources(
    src: np.ndarray, subj: SubjectParams, rng: np.random.Generator, cfg: SyntheticConfig
) -> np.ndarray:
    """Sources (n_sources, n2) through per-subject topographies -> (N_BRAIN_CH, n2) float32.

    Topographies get per-subject jitter, random signs of movement artefacts, ECG leakage
    weights and electrode gains.
    """
    topo = TOPO * np.exp(cfg.subject_variability * 0.12 * rng.standard_normal(TOPO.shape))
    topo[:, SOURCES.index("movement")] *= rng.choice([-1.0, 1.0], N_BRAIN_CH) * rng.uniform(
        0.5, 1.5, N_BRAIN_CH
    )
    topo[:, SOURCES.index("ecg")] = rng.normal(0.0, 4.0, N_BRAIN_CH)  # uV per mV of ECG
    topo *= np.asarray(subj.electrode_gain)[:, None]
    topo = topo.astype(np.float32)
    n2 = src.shape[1]
    mix = np.empty((N_BRAIN_CH, n2), dtype=np.float32)
    chunk = 1 << 15
    for a0 in range(0, n2, chunk):
        np.matmul(topo, src[:, a0 : a0 + chunk], out=mix[:, a0 : a0 + chunk])
    return mix


def _add_independent_noise(
    mix: np.ndarray, fs2: int, subj: SubjectParams, rng: np.random.Generator
) -> None:
    """Add per-channel 1/f noise, synthesised at fs/4 (up to 20 Hz), into ``mix`` (C, n2) at
    rate ``fs2``."""
    n2 = mix.shape[1]
    n4 = -(-n2 // 2)
    beta_pink = subj.pink_exponent / 2.0
    for c in range(N_BRAIN_CH):
        ind = upsample2(
            spectral_noise(
                rng, n4, fs2 / 2, lambda f: _rolled_pink(f, beta_pink, 18.0), 0.3, 0.25 * fs2
            ),
            n2,
        )
        ind *= np.float32(3.0 * subj.eeg_amp * subj.noise_level)
        mix[c] += ind


def _assemble_eeg_emg(
    put: Callable[[int, np.ndarray], None],
    mix: np.ndarray,
    lv: np.ndarray,
    tl: Timeline,
    subj: SubjectParams,
    ecg: np.ndarray,
    mv_on: np.ndarray,
    mv_dur: np.ndarray,
    rng: np.random.Generator,
) -> None:
    """Full-rate EEG, E1 (from ``mix``) and chin: EMG envelope with REM twitches and movement
    bursts, muscle leakage and the amplifier noise floor."""
    n, h = tl.n, tl.h
    # EMG envelope (uV rms) with REM twitches and movement bursts
    emg_env = upsample_linear(lv[:, FEATURE_INDEX["emg"]] * (10.0 * subj.emg_amp), h, n)
    render_emg_bursts(emg_env, lv, tl, subj, rng, mv_on, mv_dur)
    floor = 0.8 * subj.noise_level  # amplifier noise, uV rms
    for c in range(N_BRAIN_CH):
        y = upsample2(mix[c], n)
        # muscle leakage (modulated like the chin EMG) plus the amplifier noise floor
        lev = emg_env * np.float32(EMG_LEAK_TOPO[c] * 0.6 * subj.electrode_gain[c])
        lev += np.float32(floor)
        hp = hp_noise(rng, n)
        hp *= lev
        y += hp
        put(c, y)
    del y, lev, hp
    # chin EMG
    chin = hp_noise(rng, n)
    emg_env += np.float32(0.5)
    chin *= emg_env
    chin *= np.float32(subj.chin_gain)
    chin += np.float32(rng.normal(0.0, 15.0)) * ecg
    put(_CHIN, chin)


def _assemble_respiration(
    put: Callable[[int, np.ndarray], None],
    tl: Timeline,
    subj: SubjectParams,
    mod: _Modulations,
    cr: _Cardioresp,
    rng: np.random.Generator,
) -> None:
    """ABD, CHEST and AIRFLOW, synthesised on a ~fs/8 grid and interpolated."""
    n, h = tl.n, tl.h
    q = next(d for d in (4, 5, 2, 1) if h % d == 0)  # sub-ticks per control tick
    step = h // q
    nq = -(-n // step) + 1
    ph = upsample_linear(cr.resp_phase, q, nq)
    eff = upsample_linear(subj.effort_amp * cr.resp_amp * mod.effort_mod, q, nq)
    flow = upsample_linear(subj.flow_amp * cr.resp_amp * mod.flow_mod, q, nq)
    par = upsample_linear(mod.paradox, q, nq)
    drift = upsample_linear(smooth_noise(rng, tl.n_ctrl, 40), q, nq)
    abd = eff * (np.sin(ph) + 0.2 * np.sin(2.0 * ph + 0.5)) + 0.08 * subj.effort_amp * drift
    chest = 0.8 * eff * np.sin(ph + 0.25 + np.pi * par) - 0.06 * subj.effort_amp * drift
    air = flow * (np.cos(ph) + 0.15 * np.cos(2.0 * ph)) + 0.05 * subj.flow_amp * drift
    for c, x, noise in ((_ABD, abd, 3.0), (_CHEST, chest, 3.0), (_AIRFLOW, air, 2.0)):
        y = upsample_linear(x, step, n)
        y += white(rng, n, noise)
        put(c, y)


def channel_gains(subj: SubjectParams) -> list[float]:
    """ADC gains (adu per physical unit) of the 13 signals of a record."""
    g_eeg, g_aux, g_resp = subj.uv_gains
    return [g_eeg] * 6 + [g_aux, g_aux] + [g_resp] * 3 + [SAO2_GAIN, ECG_GAIN]


def channel_baselines() -> list[int]:
    """ADC baselines of the 13 signals (only SaO2 has one)."""
    return [0] * 11 + [SAO2_BASELINE, 0]
