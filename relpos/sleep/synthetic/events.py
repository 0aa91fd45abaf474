"""Transient events: spindles, K-complexes, vertex and sawtooth waves, eye movements and
movement artefacts (brain sources at fs/2), chin twitches and the ECG."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from relpos.sleep.format import EEG_CHANNELS, STAGE_TO_INDEX
from relpos.sleep.synthetic.physiology import SOURCES, SubjectParams
from relpos.sleep.synthetic.signals import add_events, event_onsets, white
from relpos.sleep.synthetic.timeline import CTRL_HZ, Timeline, event_rate

#: ``onsets(feature)``: event onsets (samples at fs/2) drawn from a feature's rate.
Onsets = Callable[[str], np.ndarray]


def render_brain_events(
    src: np.ndarray,
    lv: np.ndarray,
    tl: Timeline,
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
        return event_onsets(rng, event_rate(lv, name), h2)

    _render_graphoelements(src, onsets, subj, rng, fs2, amp)
    _render_eye_events(src[SOURCES.index("eye")], onsets, subj, rng, fs2, amp)
    mv_on, dur_s = _render_movements(src[SOURCES.index("movement")], onsets, rng, fs2)
    return np.asarray(mv_on * (tl.h / h2)).astype(np.int64), dur_s


def _render_graphoelements(
    src: np.ndarray,
    onsets: Onsets,
    subj: SubjectParams,
    rng: np.random.Generator,
    fs2: int,
    amp: float,
) -> None:
    """K-complexes, spindles, vertex sharp waves and sawtooth waves into their rows of
    ``src`` (n_sources, n2) at rate ``fs2``; ``onsets(feature)`` draws event onsets."""
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
    add_events(src[SOURCES.index("kcomplex")], kc_on.astype(np.int64), kc)
    # spindles (waxing-waning 11-16 Hz bursts, central)
    sp_on = np.concatenate([onsets("spindle"), kc_on[rng.random(m) < 0.3] + 0.6 * fs2])
    m = len(sp_on)
    dur = rng.uniform(0.5, 2.0, m)[:, None] * fs2
    t = np.arange(int(2.0 * fs2) + 1)[None, :]
    f = np.clip(subj.spindle_freq + 0.5 * rng.standard_normal(m), 11.0, 16.0)[:, None]
    a = rng.uniform(10.0, 25.0, m)[:, None] * subj.spindle_amp * amp
    win = np.where(t < dur, np.sin(np.pi * t / dur) ** 2, 0.0)
    sp = a * win * np.sin(2 * np.pi * f * t / fs2 + rng.uniform(0, 2 * np.pi, (m, 1)))
    add_events(src[SOURCES.index("spindle")], sp_on.astype(np.int64), sp)
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
    add_events(src[SOURCES.index("vertex")], vx_on.astype(np.int64), vx)
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
    add_events(src[SOURCES.index("sawtooth")], sw_on.astype(np.int64), a * win * tri)


def _render_eye_events(
    eye: np.ndarray,
    onsets: Onsets,
    subj: SubjectParams,
    rng: np.random.Generator,
    fs2: int,
    amp: float,
) -> None:
    """Blinks, saccades, rapid and slow rolling eye movements into the eye row (n2,)."""
    # eye events on E1 (and leaking frontally)
    eog = subj.eog_amp * amp
    # blinks
    bl_on = onsets("blink")
    m = len(bl_on)
    dur = rng.uniform(0.2, 0.4, m)[:, None] * fs2
    t = np.arange(int(0.4 * fs2) + 1)[None, :]
    a = rng.uniform(60.0, 200.0, m)[:, None] * eog
    add_events(eye, bl_on.astype(np.int64), a * np.where(t < dur, np.sin(np.pi * t / dur) ** 2, 0))
    # saccades (wake) and rapid eye movements (REM, in bursts): step + AC-coupling decay
    rb_on = onsets("rem_burst")
    n_in = 1 + rng.poisson(3.0, len(rb_on))
    gaps = rng.uniform(0.3, 1.2, int(n_in.sum())) * fs2
    csum = np.cumsum(gaps)
    first = np.concatenate([[0], np.cumsum(n_in)[:-1]]).astype(np.int64)
    rem_on: np.ndarray = (
        np.repeat(rb_on, n_in) + csum - np.repeat(csum[first], n_in) if len(rb_on) else rb_on
    )
    sc_on = onsets("saccade")
    on = np.concatenate([sc_on, rem_on])
    big = np.concatenate([np.zeros(len(sc_on), bool), np.ones(len(rem_on), bool)])
    m = len(on)
    ts = np.arange(int(2.5 * fs2))[None, :] / fs2
    a = np.where(big, rng.uniform(80.0, 250.0, m), rng.uniform(20.0, 80.0, m))
    a = (a * rng.choice([-1.0, 1.0], m) * eog)[:, None]
    tau = rng.uniform(0.4, 0.8, m)[:, None]
    rise = np.where(big, 0.012, 0.02)[:, None]
    wave = a / (1.0 + np.exp(-(ts - 0.06) / rise)) * np.exp(-np.maximum(ts - 0.06, 0.0) / tau)
    add_events(eye, on.astype(np.int64), wave)
    # slow rolling eye movements (N1)
    se_on = onsets("sem")
    m = len(se_on)
    dur = rng.uniform(2.0, 6.0, m)[:, None] * fs2
    t = np.arange(int(6.0 * fs2) + 1)[None, :]
    a = (rng.uniform(40.0, 120.0, m) * rng.choice([-1.0, 1.0], m))[:, None] * eog
    ph = np.pi * t / dur
    add_events(eye, se_on.astype(np.int64), a * np.where(t < dur, np.sin(ph) * np.sin(2 * ph), 0))


def _render_movements(
    out: np.ndarray, onsets: Onsets, rng: np.random.Generator, fs2: int
) -> tuple[np.ndarray, np.ndarray]:
    """Movement artefacts into the movement row (n2,); returns their onsets (at fs2) and
    durations (s)."""
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
    add_events(out, mv_on.astype(np.int64), mv)
    return mv_on, dur[:, 0] / fs2


def render_emg_bursts(
    emg_env: np.ndarray,
    lv: np.ndarray,
    tl: Timeline,
    subj: SubjectParams,
    rng: np.random.Generator,
    mv_on: np.ndarray,
    mv_dur: np.ndarray,
) -> None:
    """Add REM twitches and movement EMG bursts into the full-rate EMG envelope (uV rms)."""
    fs, h = tl.fs, tl.h
    tw_on = event_onsets(rng, event_rate(lv, "twitch"), h)
    m = len(tw_on)
    dur = rng.uniform(0.1, 0.5, m)[:, None] * fs
    t = np.arange(int(0.5 * fs) + 1)[None, :]
    a = rng.uniform(10.0, 30.0, m)[:, None] * subj.emg_amp
    add_events(
        emg_env, tw_on.astype(np.int64), a * np.where(t < dur, np.sin(np.pi * t / dur) ** 2, 0)
    )
    m = len(mv_on)
    dur = mv_dur[:, None] * fs
    t = np.arange(int(5.0 * fs) + 1)[None, :]
    a = rng.uniform(20.0, 60.0, m)[:, None] * subj.emg_amp
    add_events(emg_env, mv_on, a * np.where(t < dur, np.sin(np.pi * t / dur), 0))


def render_ecg(
    n: int,
    fs: int,
    h: int,
    hr: np.ndarray,
    resp_phase_c: np.ndarray,
    subj: SubjectParams,
    rng: np.random.Generator,
) -> np.ndarray:
    """ECG in mV, (n,) float32: PQRST template at beat times from the heart-rate curve."""
    cum = np.cumsum(hr / 60.0 / CTRL_HZ)  # beats
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
    tpl = np.asarray(sum(a * np.exp(-0.5 * ((t - mu) / s) ** 2) for a, mu, s in comps))
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
    ecg += white(rng, n, 0.008)
    return ecg


def render_channel_artefacts(
    mix: np.ndarray, tl: Timeline, subj: SubjectParams, rng: np.random.Generator, fs2: int
) -> None:
    """Electrode pops and sweat sway into the EEG rows of ``mix`` (N_BRAIN_CH, n2) at ``fs2``.

    Pops: a sudden step on one channel decaying over 0.2-1 s (``subj.pop_rate`` per hour).
    Sweat sway: minutes-long 0.15-0.5 Hz oscillations on all EEG channels with channel
    weights, starting in N2/N3 (``subj.sweat`` episodes per hour of sleep). Both pass the
    0.1-30 Hz bandpass of the store.
    """
    n2 = mix.shape[1]
    n_eeg = len(EEG_CHANNELS)
    m = int(rng.poisson(subj.pop_rate * tl.n / tl.fs / 3600.0))
    on = rng.integers(0, n2, m)
    ch = rng.integers(0, n_eeg, m)
    t = np.arange(int(3.0 * fs2))[None, :]
    tau = rng.uniform(0.2, 1.0, m)[:, None] * fs2
    a = (rng.uniform(50.0, 300.0, m) * rng.choice([-1.0, 1.0], m))[:, None]
    pops = a * np.exp(-t / tau)
    for c in range(n_eeg):  # six channels, all pops of a channel at once
        add_events(mix[c], on[ch == c], pops[ch == c])
    sleep = np.isin(tl.phys, (STAGE_TO_INDEX["N2"], STAGE_TO_INDEX["N3"]))
    sw_on = event_onsets(rng, subj.sweat / 3600.0 / CTRL_HZ * sleep, tl.h // 2).astype(np.int64)
    m = len(sw_on)
    dur = rng.uniform(180.0, 600.0, m) * fs2
    f = rng.uniform(0.15, 0.5, m)
    ph = rng.uniform(0.0, 2 * np.pi, m)
    a = rng.uniform(15.0, 50.0, m)
    w = rng.uniform(0.3, 1.0, (m, n_eeg))
    for k in range(m):  # a few episodes per night at most
        s, e = int(sw_on[k]), min(n2, int(sw_on[k] + dur[k]))
        if e <= s:
            continue
        tt = np.arange(e - s)
        wave = a[k] * np.sin(np.pi * tt / dur[k]) * np.sin(2 * np.pi * f[k] * tt / fs2 + ph[k])
        mix[:n_eeg, s:e] += (w[k][:, None] * wave).astype(np.float32)
