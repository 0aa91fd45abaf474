"""Realism of the synthetic records (issue 9): per-stage relative band powers on C3-M2 within
±0.05 of real sleep EEG, montage consistency, REM close to N1 but told apart by eyes and chin,
between-subject and within-night variability, and the report functions."""

from __future__ import annotations

import numpy as np
import pytest

from relpos.sleep.synthetic import (
    SyntheticConfig,
    synthesize_dataset,
    synthesize_record,
    write_record,
)
from relpos.sleep.synthetic.hypnograms import as_hypnogram, plan_record
from relpos.sleep.synthetic.physiology import FEATURE_INDEX, draw_subject
from relpos.sleep.synthetic.realism import (
    BANDS,
    REAL_BAND_POWERS,
    band_power_table,
    epoch_band_powers,
    format_table,
)
from relpos.sleep.synthetic.timeline import build_timeline, night_drift

TOL = 0.05
FS = 200
EPOCH = 30 * FS


@pytest.fixture(scope="module")
def records() -> list[dict]:
    """16 one-hour windows of 16 subjects (fixed seeds): ~1,700 scored epochs."""
    return [synthesize_record(f"v{i}", 7 + i, max_hours=1.0) for i in range(16)]


@pytest.fixture(scope="module")
def tables(records):
    return {ch: band_power_table(records, ch) for ch in ("C3-M2", "F3-M2", "O1-M2")}


def test_band_powers_match_real_sleep_eeg(tables):
    t = tables["C3-M2"]
    for stage, real in REAL_BAND_POWERS.items():
        assert t.counts[stage] >= 100, t.counts
        dev = np.abs(t.powers[stage] - np.asarray(real))
        assert dev.max() <= TOL, (stage, dict(zip(BANDS, t.powers[stage].round(3))))
    assert t.max_deviation() <= TOL


def test_montage_consistency(tables):
    alpha, delta = list(BANDS).index("alpha"), list(BANDS).index("delta")
    assert tables["O1-M2"].powers["W"][alpha] > 1.5 * tables["C3-M2"].powers["W"][alpha]
    assert tables["F3-M2"].powers["N3"][delta] > tables["C3-M2"].powers["N3"][delta]


def test_rem_is_low_voltage_mixed_frequency_close_to_n1(tables):
    p = tables["C3-M2"].powers
    assert np.abs(p["R"] - p["N1"]).max() < 0.08, (p["R"], p["N1"])
    theta = list(BANDS).index("theta")
    assert p["R"][theta] < p["N1"][theta] + 0.03  # not "more theta"


def _stage_medians(records, fn) -> dict[str, float]:
    vals: dict[str, list[float]] = {s: [] for s in "W123R"}
    for rec in records:
        first, stages = rec["first_scored_sample"], rec["epoch_stages"]
        for k, s in enumerate(stages):
            vals[s].append(fn(rec, first + k * EPOCH))
    return {s: float(np.median(v)) for s, v in vals.items() if v}


def test_rem_told_apart_by_eye_movements_and_chin_atonia(records):
    def chin_rms(rec: dict, a: int) -> float:
        return float(rec["signal"][7, a : a + EPOCH].std() / rec["gains"][7])

    def e1_fast(rec: dict, a: int) -> float:  # steep deflections: rapid eye movements
        x = rec["signal"][6, a : a + EPOCH].astype(np.float64) / rec["gains"][6]
        return float(np.abs(np.diff(x[::4])).max())

    chin = _stage_medians(records, chin_rms)
    eye = _stage_medians(records, e1_fast)
    assert chin["R"] < 0.6 * chin["1"] and chin["R"] < chin["2"], chin
    assert eye["R"] > 2 * eye["1"] and eye["R"] > 2 * eye["2"], eye


def test_subjects_differ_age_like():
    rng = np.random.default_rng(0)
    subs = [draw_subject(rng, SyntheticConfig()) for _ in range(300)]
    age = np.array([s.age for s in subs])
    assert np.corrcoef(age, np.log([s.delta_amp for s in subs]))[0, 1] < -0.3
    assert np.corrcoef(age, np.log([s.spindle_density for s in subs]))[0, 1] < -0.5
    assert 0.1 < np.mean([s.sweat > 0 for s in subs]) < 0.5
    flat = [draw_subject(rng, SyntheticConfig(subject_variability=0)) for _ in range(3)]
    assert {(s.age, s.delta_amp, s.spindle_density) for s in flat} == {(0.0, 1.0, 1.0)}


def test_night_drift():
    t_h = np.array([0.5, 2.5, 4.5, 6.5])
    subj = draw_subject(np.random.default_rng(1), SyntheticConfig(subject_variability=0))
    n3 = night_drift(t_h, np.full(4, 3), subj)
    assert np.all(np.diff(n3[:, FEATURE_INDEX["delta"]]) < 0)  # SWA falls across cycles
    assert np.all(np.diff(n3[:, FEATURE_INDEX["spindle"]]) > 0)  # spindle density rises
    rem = night_drift(t_h, np.full(4, 4), subj)
    assert np.all(np.diff(rem[:, FEATURE_INDEX["rem_burst"]]) > 0)  # denser REM later
    assert np.allclose(night_drift(t_h, np.full(4, 3), subj, strength=0.0), 1.0)


def test_transition_epochs_are_mixtures():
    def delta_per_epoch(prob: float) -> np.ndarray:
        cfg = SyntheticConfig(transition_mix_prob=prob, transition_jitter_s=0.0)
        rng = np.random.default_rng(5)
        plan = plan_record(as_hypnogram("2" * 10 + "3" * 10, rng, cfg), None, rng, cfg)
        subj = draw_subject(rng, cfg)
        tl = build_timeline(plan, subj, rng, cfg)
        lv = tl.levels[: 20 * 60, FEATURE_INDEX["delta"]]
        return lv.reshape(20, 60).mean(1)  # (epochs,)

    pure, mixed = delta_per_epoch(0.0), delta_per_epoch(1.0)
    # the last N2 epoch mixes in N3 (more delta), the first N3 epoch N2 (less delta)
    assert mixed[9] > 1.1 * pure[9] and mixed[10] < 0.95 * pure[10]
    np.testing.assert_allclose(mixed[:8], pure[:8])  # epochs far from the change: unchanged
    np.testing.assert_allclose(mixed[12:], pure[12:])


def test_artefacts_pass_the_bandpass():
    cfg = SyntheticConfig(pops_per_hour=60.0, sweat_prob=1.0, subject_variability=0.0)
    quiet = SyntheticConfig(pops_per_hour=0.0, sweat_prob=0.0, subject_variability=0.0)
    a = synthesize_record("a", 3, hypnogram="2" * 60, config=cfg)
    b = synthesize_record("a", 3, hypnogram="2" * 60, config=quiet)
    ptp = [np.ptp(r["signal"][:6].astype(np.float64) / r["gains"][0], axis=1) for r in (a, b)]
    assert (ptp[0] > ptp[1]).sum() >= 4  # pops and sway on most EEG channels


def test_epoch_band_powers_of_pure_tones():
    t = np.arange(3000) / 100.0
    tones = np.stack([np.sin(2 * np.pi * f * t) for f in (2.0, 6.0, 10.0, 14.0, 22.0)])
    rel = epoch_band_powers(tones, 100.0)  # (5 tones, 5 bands)
    assert rel.shape == (5, 5) and np.all(np.diag(rel) > 0.98)


def test_report_from_files_and_failure_paths(tmp_path, records):
    write_record(tmp_path, "tr90-0001", 3, max_hours=0.25)
    t = band_power_table(tmp_path)
    assert t.channel == "C3-M2" and sum(t.counts.values()) > 0
    for p in t.powers.values():
        assert p.shape == (5,) and abs(p.sum() - 1.0) < 1e-6
    text = format_table(band_power_table(records[:2]))
    assert "| W real | | 0.645 | 0.109 | 0.113 | 0.065 | 0.067 |" in text
    assert "W synthetic" in text and "largest" in text
    with pytest.raises(FileNotFoundError, match="no-such"):
        band_power_table(tmp_path / "no-such")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no labelled records"):
        band_power_table(tmp_path / "empty")


def test_cli_synth_report(tmp_path, capsys):
    from relpos import cli

    args = ["synth", str(tmp_path / "r"), "--records", "1", "--max-hours", "0.25", "--jobs", "1"]
    assert cli.main([*args, "--report"]) == 0
    out = capsys.readouterr().out
    assert "1 records in" in out and "| N2 real | | 0.768 |" in out and "C3-M2" in out


@pytest.mark.slow
def test_band_powers_match_real_sleep_eeg_on_demo_sized_records(tmp_path):
    """The demo's record set (60 labelled 2-h windows, seed 0) read back from disk."""
    synthesize_dataset(tmp_path, 60, seed=0, max_hours=2.0, jobs=2, progress=False)
    t = band_power_table(tmp_path)
    assert t.max_deviation() <= TOL, format_table(t)
