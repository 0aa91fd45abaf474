"""Synthetic PSG records in the PhysioNet/CinC 2018 format: exact file format, replayed
hypnograms, measurable physiology, determinism and idempotent dataset writing."""

from __future__ import annotations

import itertools
import struct
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import wfdb
from scipy.signal import find_peaks

from relpos.sleep.format import STAGES
from relpos.sleep.synthetic import (
    EVENT_TYPES,
    SIGNAL_NAMES,
    SyntheticConfig,
    load_hypnograms,
    stages_from_notes,
    synthesize_dataset,
    synthesize_record,
    write_record,
)
from relpos.sleep.synthetic.writer import write_annotations

REAL = Path(__file__).parents[1] / "data" / "physionet2018"
FS = 200
EPOCH = 30 * FS


def _files(hea: Path) -> dict[str, Path]:
    base = hea.with_suffix("")
    return {e: base.with_suffix(f".{e}") for e in ("hea", "mat", "arousal")}


def _tree_state(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_mtime_ns, p.stat().st_size)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# ------------------------------------------------------------------------------------------
# hypnogram table and the real annotation conventions
# ------------------------------------------------------------------------------------------


def test_load_hypnograms_table():
    rows = load_hypnograms()
    assert len(rows) == 993
    assert rows[0].record == "tr03-0005" and rows[0].first_scored_sample == 72000
    for rec, n, first, stages in rows[::50]:
        assert rec.startswith("tr") and set(stages) <= set("W123R?")
        assert first % EPOCH == 0
        assert first + EPOCH * len(stages) <= n < first + EPOCH * (len(stages) + 1)


def test_stage_decoding_reproduces_real_table():
    ann = wfdb.rdann(str(REAL / "tr03-0005"), "arousal")
    hdr = wfdb.rdheader(str(REAL / "tr03-0005"))
    first, stages = stages_from_notes(ann.sample, ann.aux_note, hdr.sig_len)
    row = next(r for r in load_hypnograms() if r.record == "tr03-0005")
    assert (first, stages) == (row.first_scored_sample, row.stages)


def test_annotation_writer_is_byte_identical_to_real_file(tmp_path):
    """Re-writing the real tr03-0005.arousal through our writer gives the same bytes."""
    ann = wfdb.rdann(str(REAL / "tr03-0005"), "arousal")
    stage = np.array([n in STAGES for n in ann.aux_note])
    rec = {
        "record_name": "tr03-0005",
        "fs": 200,
        "stage_notes": (ann.sample[stage], [n for n, s in zip(ann.aux_note, stage) if s]),
        "events": (ann.sample[~stage], [n for n, s in zip(ann.aux_note, stage) if not s]),
    }
    write_annotations(tmp_path, rec)
    assert (tmp_path / "tr03-0005.arousal").read_bytes() == (
        REAL / "tr03-0005.arousal"
    ).read_bytes()


# ------------------------------------------------------------------------------------------
# file format
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def flat_record(tmp_path_factory):
    out = tmp_path_factory.mktemp("flat")
    hea = write_record(out, "tr90-0001", 11, max_hours=0.5)
    rec = synthesize_record("tr90-0001", 11, max_hours=0.5)
    return hea, rec


def test_header_text_and_mat_layout(flat_record):
    hea, rec = flat_record
    lines = hea.read_text().splitlines()
    n = rec["sig_len"]
    assert lines[0] == f"tr90-0001 13 200 {n}"
    assert len(lines) == 14
    for c, line in enumerate(lines[1:]):
        f = line.split(" ")
        assert f[0] == "tr90-0001.mat" and f[1] == "16+24"
        assert f[3:5] == ["16", "0"] and f[7] == "0" and f[8] == SIGNAL_NAMES[c]
    assert lines[12].split(" ")[2] == "655.35(-32768)/%"
    assert lines[13].split(" ")[2] == "1000/mV"
    raw = _files(hea)["mat"].read_bytes()
    assert len(raw) == 24 + 2 * 13 * n
    assert struct.unpack("<5i", raw[:20]) == (30, 13, n, 0, 4) and raw[20:24] == b"val\x00"
    # channel-interleaved int16 after the 24-byte header == scipy's MAT-v4 writer
    data = np.frombuffer(raw, dtype="<i2", offset=24).reshape(n, 13)
    assert np.array_equal(data.T, rec["signal"])
    ref = hea.parent / "scipy_ref.mat"
    scipy.io.savemat(ref, {"val": np.asarray(rec["signal"])}, format="4")
    assert ref.read_bytes() == raw
    ref.unlink()


def test_wfdb_reads_record_back(flat_record):
    hea, rec = flat_record
    base = str(hea.with_suffix(""))
    h = wfdb.rdheader(base)
    assert (h.n_sig, h.fs, h.sig_len) == (13, 200, rec["sig_len"])
    assert h.sig_name == list(SIGNAL_NAMES)
    assert h.units == ["uV"] * 11 + ["%", "mV"]
    assert h.fmt == ["16"] * 13 and h.byte_offset == [24] * 13
    assert h.file_name == ["tr90-0001.mat"] * 13
    assert h.adc_gain == rec["gains"] and h.baseline == rec["baselines"]
    assert h.adc_gain[11:] == [655.35, 1000.0] and h.baseline[11] == -32768
    drec = wfdb.rdrecord(base, physical=False)
    digital = drec.d_signal
    assert np.array_equal(digital, np.asarray(rec["signal"]).T)
    # initial values and 16-bit signed checksums (WFDB C convention; wfdb-python's mod 65536
    # value is congruent)
    sums = digital.astype(np.int64).sum(axis=0)
    assert h.init_value == digital[0].tolist()
    assert all(-32768 <= c <= 32767 for c in h.checksum)
    assert all((c - s) % 65536 == 0 for c, s in zip(h.checksum, sums))
    assert all((c - w) % 65536 == 0 for c, w in zip(h.checksum, drec.calc_checksum()))
    p = wfdb.rdrecord(base).p_signal
    expected = (digital - np.array(h.baseline)) / np.array(h.adc_gain)
    np.testing.assert_allclose(p, expected, rtol=1e-6, atol=1e-9)
    # physical ranges are plausible
    assert 90.0 < np.median(p[:, 11]) <= 100.0  # SaO2 %
    assert 0.3 < np.percentile(np.abs(p[:, 12]), 99.9) < 3.0  # ECG mV
    assert 3.0 < np.std(p[:, 2]) < 200.0  # EEG uV


def test_annotations_read_back(flat_record):
    hea, rec = flat_record
    ann = wfdb.rdann(str(hea.with_suffix("")), "arousal")
    assert ann.fs == 200 and set(ann.symbol) == {'"'}
    assert np.all(np.diff(ann.sample) >= 0)
    stage = np.array([n in STAGES for n in ann.aux_note])
    st_samples, st_notes = ann.sample[stage], [n for n, s in zip(ann.aux_note, stage) if s]
    assert st_samples[0] == rec["first_scored_sample"] > 0
    assert np.all(st_samples % EPOCH == 0)
    assert all(a != b for a, b in itertools.pairwise(st_notes))  # only where it changes
    assert np.array_equal(st_samples, rec["stage_notes"][0]) and st_notes == rec["stage_notes"][1]
    first, stages = stages_from_notes(ann.sample, ann.aux_note, rec["sig_len"])
    assert (first, stages) == (rec["first_scored_sample"], rec["epoch_stages"])
    # paired event markers, not stages, inside the scored part
    ev = [(int(s), n) for s, n in zip(ann.sample, ann.aux_note) if n not in STAGES]
    assert ev, "expected some respiratory/arousal events"
    assert len(ev) % 2 == 0
    for (s0, n0), (s1, n1) in zip(ev[0::2], ev[1::2]):
        assert n0.startswith("(") and n1 == n0[1:] + ")" and n0[1:] in EVENT_TYPES
        assert rec["first_scored_sample"] <= s0 < s1 < rec["sig_len"]
        assert 5 * FS <= s1 - s0 <= 60 * FS
    assert ann.chan[stage].max() == 0 and ann.chan[~stage].min() == 1


def test_replays_real_hypnogram_full_length():
    rows = load_hypnograms()
    i = int(np.argmin([r.n_samples for r in rows]))
    rec = synthesize_record("tr90-0002", 3, hypnogram=i)
    row = rows[i]
    assert rec["source_record"] == row.record
    assert rec["sig_len"] == row.n_samples == rec["signal"].shape[1]
    assert rec["first_scored_sample"] == row.first_scored_sample
    assert rec["epoch_stages"] == row.stages
    samples, notes = rec["stage_notes"]
    assert stages_from_notes(samples, notes, rec["sig_len"]) == (
        row.first_scored_sample,
        row.stages,
    )


@pytest.mark.parametrize("max_hours", [0.25, 1.0])
def test_max_hours_crops_a_contiguous_window(max_hours):
    for seed in range(3):
        rec = synthesize_record("tr90-0003", seed, max_hours=max_hours)
        row = next(r for r in load_hypnograms() if r.record == rec["source_record"])
        assert rec["sig_len"] <= max_hours * 3600 * FS
        k = rec["window_start_epoch"]
        assert rec["epoch_stages"] == row.stages[k : k + len(rec["epoch_stages"])]
        assert len(rec["epoch_stages"]) >= int(0.8 * max_hours * 120)
        assert rec["first_scored_sample"] <= 0.1 * max_hours * 3600 * FS
        assert len(set(rec["epoch_stages"])) >= 3


def test_undefined_epochs():
    rec = synthesize_record("tr90-0004", 1, hypnogram="??W12?22")
    # leading '?' are unlabelled lead-in; the record ends at the first later '?'
    assert rec["first_scored_sample"] == 2 * EPOCH
    assert rec["epoch_stages"] == "W12"
    assert rec["sig_len"] == 5 * EPOCH
    assert list(rec["stage_notes"][0]) == [2 * EPOCH, 3 * EPOCH, 4 * EPOCH]
    with pytest.raises(ValueError):
        synthesize_record("tr90-0004", 1, hypnogram="???")


def test_config_is_a_pydantic_model():
    cfg = SyntheticConfig(uv_gain_choices=(1.0,), eeg_amplitude=1.5)
    assert SyntheticConfig.model_validate(cfg.model_dump()) == cfg
    with pytest.raises(ValueError):
        SyntheticConfig(fs=201)
    rec = synthesize_record("tr90-0005", 2, hypnogram="W12", config=cfg)
    assert rec["gains"][:11] == [1.0] * 11


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("fs", 96),
        ("eeg_amplitude", float("nan")),
        ("eeg_amplitude", 0.0),
        ("pops_per_hour", float("inf")),
        ("transition_mix_prob", 1.5),
        ("alpha_freq_range", (11.5, 8.5)),
        ("alpha_freq_range", (0.0, 30.0)),
        ("uv_gain_choices", (1.0, 1e6)),
        ("uv_gain_choices", ()),
    ],
)
def test_config_numbers_are_bounded(field, value):
    """Issue 12: every number of the generator's config has physical bounds."""
    with pytest.raises(ValueError, match=field):
        SyntheticConfig(**{field: value})


# ------------------------------------------------------------------------------------------
# determinism, idempotent dataset writing
# ------------------------------------------------------------------------------------------


def test_determinism(tmp_path):
    a = write_record(tmp_path / "a", "tr90-0001", 5, max_hours=0.1)
    b = write_record(tmp_path / "b", "tr90-0001", 5, max_hours=0.1)
    c = write_record(tmp_path / "c", "tr90-0001", 6, max_hours=0.1)
    for ext in ("hea", "mat", "arousal"):
        assert _files(a)[ext].read_bytes() == _files(b)[ext].read_bytes()
    assert _files(a)["mat"].read_bytes() != _files(c)["mat"].read_bytes()
    gains = {tuple(synthesize_record("x", s, hypnogram="W")["gains"]) for s in range(8)}
    assert len(gains) > 1  # ADC gains vary between records


def test_dataset_idempotent_and_recovers_from_killed_run(tmp_path):
    out = tmp_path / "ds"
    kw = dict(seed=3, max_hours=0.1, unlabelled=1, progress=False)
    paths = synthesize_dataset(out, 2, **kw)
    assert [p.relative_to(out).as_posix() for p in paths] == [
        "training/tr90-0001/tr90-0001.hea",
        "training/tr90-0002/tr90-0002.hea",
        "test/tr91-0001/tr91-0001.hea",
    ]
    assert _files(paths[0])["arousal"].exists() and not _files(paths[2])["arousal"].exists()
    assert (out / "training" / "RECORDS").read_text() == "tr90-0001/\ntr90-0002/\n"
    srcs = set()
    for p in paths:
        ann_ok = wfdb.rdheader(str(p.with_suffix(""))).sig_len > 0
        assert ann_ok
    for p in paths[:2]:
        ann = wfdb.rdann(str(p.with_suffix("")), "arousal")
        srcs.add(tuple(ann.aux_note[:3]))
    state = _tree_state(out)
    snapshot = {k: (out / k).read_bytes() for k in state}
    # second call writes nothing
    assert synthesize_dataset(out, 2, **kw) == paths
    assert _tree_state(out) == state
    # simulate a run killed while writing record 2: header gone, truncated .mat, temp left
    files = _files(paths[1])
    files["hea"].unlink()
    files["mat"].write_bytes(b"garbage")
    tmp = paths[1].parent / ".tr90-0002.partial"
    tmp.mkdir()
    (tmp / "tr90-0002.mat").write_bytes(b"half")
    synthesize_dataset(out, 2, **kw)
    assert not tmp.exists()
    assert {k: (out / k).read_bytes() for k in _tree_state(out)} == snapshot
    # parallel writing gives the same bytes
    out2 = tmp_path / "ds2"
    synthesize_dataset(out2, 2, jobs=2, **kw)
    assert {k: (out2 / k).read_bytes() for k in _tree_state(out2)} == snapshot


def test_flat_unlabelled_record_has_no_arousal(tmp_path):
    hea = write_record(tmp_path, "tr91-0009", 1, labelled=False, max_hours=0.05)
    assert hea.exists() and _files(hea)["mat"].exists() and not _files(hea)["arousal"].exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tr91-0009.hea", "tr91-0009.mat"]


# ------------------------------------------------------------------------------------------
# physiology
# ------------------------------------------------------------------------------------------

_BANDS = {"delta": (0.5, 2.0), "theta": (4.0, 7.0), "alpha": (8.0, 12.0), "sigma": (11.0, 16.0)}
_BANDS |= {"beta": (16.0, 30.0), "total": (0.5, 30.0), "eog_low": (0.3, 2.0)}


def _epoch_features(rec: dict) -> dict[str, np.ndarray]:
    """Per-epoch band powers (uV^2) of the scored 30-s epochs of a synthesized record."""
    g = np.asarray(rec["gains"], dtype=np.float32)[:, None]
    b = np.asarray(rec["baselines"], dtype=np.float32)[:, None]
    first, stages = rec["first_scored_sample"], rec["epoch_stages"]
    ne = len(stages)
    x = (rec["signal"][:, first : first + ne * EPOCH].astype(np.float32) - b) / g
    seg = x.reshape(13, ne, EPOCH)
    f = np.fft.rfftfreq(EPOCH, 1 / FS)
    power = np.abs(np.fft.rfft(seg[:8], axis=-1)) ** 2 / EPOCH**2
    out = {"stage": np.array(list(stages))}
    for name, (lo, hi) in _BANDS.items():
        out[name] = power[..., (f >= lo) & (f < hi)].sum(-1)  # (8, n_epochs)
    out["chin_rms"] = seg[7].std(-1)
    out["f3_p2p"] = np.ptp(seg[0], axis=-1)
    # heart rate (beats/min) from R peaks of the ECG
    ecg = x[12] * np.sign(rec["subject"]["ecg_amp"])
    peaks, _ = find_peaks(ecg, height=0.5 * np.percentile(ecg, 99.5), distance=int(0.33 * FS))
    out["hr"] = np.bincount(peaks // EPOCH, minlength=ne)[:ne] * 2.0
    out["hr_rel"] = out["hr"] / np.median(out["hr"])  # within-subject
    return out


@pytest.fixture(scope="module")
def physiology():
    recs = [synthesize_record(f"tr90-{i:04d}", 100 + i, max_hours=1.5) for i in range(8)]
    feats = [_epoch_features(r) for r in recs]
    merged = {k: np.concatenate([f[k] for f in feats], axis=-1) for k in feats[0]}
    return feats, merged


def _med(m: dict, key: str, stage: str, ch: int | None = None) -> float:
    v = m[key] if ch is None else m[key][ch]
    return float(np.median(v[..., m["stage"] == stage]))


def test_all_stages_present(physiology):
    _, m = physiology
    counts = {s: int((m["stage"] == s).sum()) for s in "W123R"}
    assert all(c >= 20 for c in counts.values()), counts


def test_eeg_stage_signatures(physiology):
    _, m = physiology
    rel_alpha = {"alpha": m["alpha"] / m["total"], "stage": m["stage"]}
    o1, o2, c3, c4, f3 = 4, 5, 2, 3, 0
    for ch in (o1, o2):
        assert _med(rel_alpha, "alpha", "W", ch) > 2 * _med(rel_alpha, "alpha", "3", ch)
    # occipital alpha dominates frontal alpha in wake
    assert _med(m, "alpha", "W", o1) > _med(m, "alpha", "W", f3)
    # delta highest in N3, and frontal > occipital there
    for ch in (f3, c3):
        d3 = _med(m, "delta", "3", ch)
        assert all(d3 > 2 * _med(m, "delta", s, ch) for s in "W12R")
    assert _med(m, "delta", "3", f3) > _med(m, "delta", "3", o1)
    assert _med(m, "f3_p2p", "3") > 75.0
    # spindle band on central channels: N2 > N1, REM
    for ch in (c3, c4):
        assert _med(m, "sigma", "2", ch) > 1.3 * max(_med(m, "sigma", s, ch) for s in "1R")
    # theta: sleep > wake
    assert _med(m, "theta", "1", c3) > _med(m, "theta", "W", c3)


def test_heart_rate(physiology):
    _, m = physiology
    hr = {s: _med(m, "hr", s) for s in "W123R"}
    assert all(45 < v < 95 for v in hr.values()), hr
    rel = {s: float(np.mean(m["hr_rel"][m["stage"] == s])) for s in "W123R"}
    assert rel["3"] < rel["2"] < rel["W"], rel


def test_emg_and_eog_stage_signatures(physiology):
    _, m = physiology
    chin = {s: _med(m, "chin_rms", s) for s in "W123R"}
    assert chin["W"] > chin["2"] > chin["R"], chin
    e1 = 6
    assert _med(m, "eog_low", "R", e1) > _med(m, "eog_low", "2", e1)
    assert _med(m, "eog_low", "W", e1) > _med(m, "eog_low", "2", e1)


def test_breathing_drops_during_apneas():
    rec = synthesize_record("tr90-0010", 4, max_hours=2.0, config=SyntheticConfig(ahi_median=30))
    samples, notes = rec["events"]
    flow = rec["signal"][10].astype(np.float64) / rec["gains"][10]
    ratios = []
    for s0, s1, n in zip(samples[0::2], samples[1::2], notes[0::2]):
        if n in ("(resp_centralapnea", "(resp_obstructiveapnea") and s0 > 40 * FS:
            during = flow[s0 + 3 * FS : s1 - 3 * FS].std()
            before = flow[s0 - 35 * FS : s0 - 5 * FS].std()
            ratios.append(during / before)
    assert len(ratios) >= 3
    assert np.median(ratios) < 0.4


def test_band_power_classifier_is_neither_trivial_nor_impossible(physiology):
    """LDA on standardized log band powers of 30-s epochs: train on 5 records, test on 3.

    (Measured: kappa 0.52 for these seeds after the issue-9 recalibration; the band-power LDA
    of ``benchmarks/band_power_lda.py`` on the demo split fell from 0.61 to 0.52.)
    """
    feats, _ = physiology

    def xy(f: dict) -> tuple[np.ndarray, np.ndarray]:
        cols = [f[k][ch] for ch in (0, 2, 4) for k in ("delta", "theta", "alpha", "sigma", "beta")]
        cols += [f["eog_low"][6], f["chin_rms"] ** 2]
        return np.log(np.stack(cols, 1) + 1e-6), np.array(["W123R".index(s) for s in f["stage"]])

    xtr, ytr = map(np.concatenate, zip(*[xy(f) for f in feats[:5]]))
    xte, yte = map(np.concatenate, zip(*[xy(f) for f in feats[5:]]))
    mu, sd = xtr.mean(0), xtr.std(0)
    xtr, xte = (xtr - mu) / sd, (xte - mu) / sd
    cent = np.stack([xtr[ytr == k].mean(0) for k in range(5)])
    within = sum(np.cov(xtr[ytr == k].T) * ((ytr == k).sum() - 1) for k in range(5))
    prec = np.linalg.inv(within / (len(ytr) - 5) + 1e-3 * np.eye(xtr.shape[1]))
    prior = np.log(np.bincount(ytr, minlength=5) / len(ytr))
    score = xte @ prec @ cent.T - 0.5 * np.einsum("kf,fg,kg->k", cent, prec, cent) + prior
    pred = np.argmax(score, axis=1)
    conf = np.zeros((5, 5))
    np.add.at(conf, (yte, pred), 1)
    po = np.trace(conf) / conf.sum()
    pe = (conf.sum(0) * conf.sum(1)).sum() / conf.sum() ** 2
    kappa = (po - pe) / (1 - pe)
    assert 0.3 < kappa < 0.95, kappa
