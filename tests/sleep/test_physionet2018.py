"""Tests of the PhysioNet/CinC 2018 reader, on the real files of tr03-0005 and small written
records."""

from __future__ import annotations

import gzip
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import wfdb

from relpos.sleep.physionet2018 import (
    EEG_CHANNELS,
    STAGES,
    UNLABELLED,
    RecordError,
    RecordFiles,
    find_records,
    read_header,
    read_record,
    read_signals,
    read_stage_labels,
)

DATA = Path(__file__).parents[1] / "data" / "physionet2018"
HYPNOGRAMS = Path(__file__).parents[2] / "relpos" / "sleep" / "resources" / "hypnograms.tsv.gz"
ALL_CHANNELS = (
    "F3-M2",
    "F4-M1",
    "C3-M2",
    "C4-M1",
    "O1-M2",
    "O2-M1",
    "E1-M2",
    "Chin1-Chin2",
    "ABD",
    "CHEST",
    "AIRFLOW",
    "SaO2",
    "ECG",
)


# --------------------------------------------------------------------------------------------
# writing small records in the challenge format
# --------------------------------------------------------------------------------------------


def write_record(
    directory: Path,
    record_id: str,
    n_samples: int,
    *,
    fs: int = 200,
    channels: tuple[str, ...] = ALL_CHANNELS,
    gains: np.ndarray | None = None,
    baselines: np.ndarray | None = None,
    digital: np.ndarray | None = None,
    stages: list[tuple[int, str]] | None = None,
    header_samples: int | None = None,
    seed: int = 0,
) -> RecordFiles:
    """Write ``<id>.hea`` + ``<id>.mat`` (format 16 after a 24-byte MAT-v4 header) and, when
    ``stages`` is given, ``<id>.arousal`` with those notes plus event markers."""
    directory.mkdir(parents=True, exist_ok=True)
    C = len(channels)
    rng = np.random.default_rng(seed)
    if digital is None:
        digital = rng.integers(-300, 300, size=(C, n_samples), dtype=np.int16)
    gains = np.arange(1, C + 1, dtype=float) if gains is None else gains
    baselines = np.arange(C) * 7 - 20 if baselines is None else baselines
    scipy.io.savemat(directory / f"{record_id}.mat", {"val": digital.astype(np.int16)}, format="4")
    lines = [f"{record_id} {C} {fs} {header_samples or n_samples}"]
    for c, name in enumerate(channels):
        lines.append(
            f"{record_id}.mat 16+24 {gains[c]:g}({int(baselines[c])})/uV 16 0 0 0 0 {name}"
        )
    (directory / f"{record_id}.hea").write_text("\n".join(lines) + "\n")
    if stages is not None:
        notes = list(stages)
        if notes:  # event markers that must be ignored
            s0 = notes[0][0]
            notes += [
                (s0 + 1234, "(arousal_rera"),
                (s0 + 2345, "arousal_rera)"),
                (s0 + 50, "(resp_hypopnea"),
                (s0 + 7000, "resp_hypopnea)"),
            ]
        notes.sort(key=lambda t: t[0])
        with warnings.catch_warnings():  # pandas deprecation noise inside wfdb
            warnings.simplefilter("ignore")
            wfdb.wrann(
                record_id,
                "arousal",
                np.array([s for s, _ in notes], dtype=np.int64),
                symbol=['"'] * len(notes),
                aux_note=[n for _, n in notes],
                fs=fs,
                write_dir=str(directory),
            )
    return find_records(directory / f"{record_id}.hea")[0]


# --------------------------------------------------------------------------------------------
# real files
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real() -> RecordFiles:
    recs = find_records(DATA)
    assert [r.record_id for r in recs] == ["tr03-0005"]
    return recs[0]


def test_real_record_files(real: RecordFiles) -> None:
    assert real.signal is None  # the .mat signal file is not shipped
    assert real.arousal == DATA / "tr03-0005.arousal"
    assert real.subject_id == "tr03-0005"
    h = read_header(real)
    assert (h.n_sig, h.fs, h.sig_len) == (13, 200, 5_147_000)
    assert list(h.sig_name[:6]) == list(EEG_CHANNELS)


def test_real_stage_notes(real: RecordFiles) -> None:
    ann = wfdb.rdann(str(DATA / "tr03-0005"), "arousal")
    stage = [(s, n) for s, n in zip(ann.sample, ann.aux_note) if n in STAGES]
    assert len(stage) == 100
    assert stage[0] == (72000, "W")
    lab = read_stage_labels(real, 5_147_000)
    assert lab is not None
    assert lab.onset == 72000 and lab.n_stage_notes == 100
    assert len(lab.labels) == (5_147_000 - 72000) // 6000 == 845
    # no shift by the onset: the note at absolute sample s labels epoch (s - onset) / 6000
    for s, n in stage:
        assert lab.labels[(s - 72000) // 6000] == STAGES.index(n)
    assert (lab.labels != UNLABELLED).all()


def test_real_labels_equal_onehot_mat(real: RecordFiles) -> None:
    """Labels from .arousal == labels from the one-hot arrays of -arousal.mat.

    The one-hot arrays are one sample early: one-hot index j holds the stage of sample j + 1
    (the 'undefined' array switches off at index 71999 while the first note is at sample
    72000). Epoch k = samples [onset + 6000k, onset + 6000k + 6000) is therefore one-hot
    indices [onset + 6000k - 1, onset + 6000k + 5999); every one of them must carry the
    epoch's label. Taking the sample itself (index onset + 6000k + 5999, the next epoch's
    first sample) instead disagrees at each stage change.
    """
    h5py = pytest.importorskip("h5py")
    lab = read_stage_labels(real, 5_147_000)
    assert lab is not None
    with h5py.File(DATA / "tr03-0005-arousal.mat", "r") as f:
        g = f["data/sleep_stages"]
        onehot = np.stack(
            [g[k][0] for k in ("wake", "nonrem1", "nonrem2", "nonrem3", "rem", "undefined")]
        )
    assert (onehot.sum(axis=0) == 1).all()
    per_sample = np.where(onehot[5] == 1, UNLABELLED, onehot[:5].argmax(axis=0)).astype(np.int8)
    assert per_sample[71998] == UNLABELLED and per_sample[71999] == 0  # one sample early
    n, o = len(lab.labels), lab.onset
    blocks = per_sample[o - 1 : o - 1 + 6000 * n].reshape(n, 6000)
    assert (blocks == blocks[:, :1]).all()  # constant within each epoch
    np.testing.assert_array_equal(blocks[:, 0], lab.labels)
    # e.g. the value at sample onset + 6000k + 1 (one-hot index onset + 6000k) agrees too
    np.testing.assert_array_equal(per_sample[o + 6000 * np.arange(n)], lab.labels)
    # the unscored part before the onset has no label
    assert (per_sample[: o - 1] == UNLABELLED).all()
    # the one-sample-late reading differs wherever the stage changes
    late = per_sample[o + 5999 + 6000 * np.arange(n - 1)]
    assert (late != lab.labels[:-1]).sum() == (np.diff(lab.labels) != 0).sum() > 0


def test_real_labels_equal_hypnogram_resource(real: RecordFiles) -> None:
    with gzip.open(HYPNOGRAMS, "rt") as f:
        rows = [line.rstrip("\n").split("\t") for line in f if not line.startswith("#")]
    row = next(r for r in rows if r[0] == "tr03-0005")
    n_samples, first = int(row[1]), int(row[2])
    lab = read_stage_labels(real, n_samples)
    assert lab is not None and lab.onset == first
    code = {"W": 0, "1": 1, "2": 2, "3": 3, "R": 4, "?": UNLABELLED}
    np.testing.assert_array_equal(lab.labels, np.array([code[c] for c in row[3]], np.int8))


# --------------------------------------------------------------------------------------------
# finding records
# --------------------------------------------------------------------------------------------


def test_find_records_tree_and_flat(tmp_path: Path) -> None:
    tree = tmp_path / "tree" / "training"
    write_record(tree / "tr01-0002", "tr01-0002", 1000, stages=[(0, "W")])
    write_record(tree / "tr00-0001", "tr00-0001", 1000)
    recs = find_records(tmp_path / "tree")
    assert [r.record_id for r in recs] == ["tr00-0001", "tr01-0002"]
    assert recs[0].arousal is None and recs[1].arousal is not None
    assert recs[1].signal == tree / "tr01-0002" / "tr01-0002.mat"
    flat = tmp_path / "flat"
    for rid in ("b", "a", "c"):
        write_record(flat, rid, 500)
    assert [r.record_id for r in find_records(flat)] == ["a", "b", "c"]
    write_record(tmp_path / "flat" / "sub", "a", 500)
    with pytest.raises(ValueError, match="found twice"):
        find_records(flat)


# --------------------------------------------------------------------------------------------
# signals
# --------------------------------------------------------------------------------------------


def test_read_signals_physical_units(tmp_path: Path) -> None:
    C, n = len(ALL_CHANNELS), 4000
    rng = np.random.default_rng(1)
    d = rng.integers(-2000, 2000, size=(C, n), dtype=np.int16)
    d[2, 17] = -32768  # format 16 invalid-sample marker
    gains = rng.uniform(0.5, 20, C).round(3)
    base = rng.integers(-500, 500, C)
    rec = write_record(tmp_path, "r", n, digital=d, gains=gains, baselines=base)
    chans = ("O2-M1", "F3-M2", "C3-M2")
    x, fs = read_signals(rec, chans)
    assert fs == 200 and x.dtype == np.float32 and x.shape == (3, n) and x.flags.c_contiguous
    idx = [ALL_CHANNELS.index(c) for c in chans]
    want = (d[idx].astype(np.float64) - base[idx, None]) / gains[idx, None]
    want[2, 17] = np.nan
    np.testing.assert_allclose(x, want, rtol=1e-6, equal_nan=True)


def test_missing_channel_lists_header_channels(tmp_path: Path) -> None:
    rec = write_record(tmp_path, "r", 1000, channels=ALL_CHANNELS[:4] + ALL_CHANNELS[6:])
    with pytest.raises(RecordError) as e:
        read_signals(rec)
    msg = str(e.value)
    assert "r.hea" in msg and "O1-M2" in msg and "O2-M1" in msg
    assert "'ECG'" in msg and "'F3-M2'" in msg  # the channels the header has


def test_header_longer_than_mat(tmp_path: Path) -> None:
    rec = write_record(tmp_path, "r", 1000, header_samples=1200)
    with pytest.raises(RecordError, match=r"r\.mat.*truncated.*1200 samples"):
        read_signals(rec)


def test_header_shorter_than_mat(tmp_path: Path) -> None:
    rec = write_record(tmp_path, "r", 1000, header_samples=900)
    with pytest.raises(RecordError, match=r"r\.mat.*longer than its header.*mismatch"):
        read_signals(rec)


def test_truncated_mat(tmp_path: Path) -> None:
    rec = write_record(tmp_path, "r", 1000)
    with open(rec.signal, "r+b") as f:
        f.truncate(24 + 2 * 13 * 1000 - 7)
    with pytest.raises(RecordError, match=r"r\.mat.*truncated"):
        read_record(rec)


def test_missing_mat(tmp_path: Path) -> None:
    rec = write_record(tmp_path, "r", 1000)
    rec.signal.unlink()
    with pytest.raises(RecordError, match=r"r\.mat.*not found"):
        read_signals(rec)


def test_unreadable_header(tmp_path: Path) -> None:
    rec = write_record(tmp_path, "r", 1000)
    rec.header.write_text("this is not a header\n\x00garbage 1 2\n")
    with pytest.raises(RecordError, match=r"r\.hea"):
        read_signals(rec)


# --------------------------------------------------------------------------------------------
# labels
# --------------------------------------------------------------------------------------------


def test_labels_grid_hold_and_unscored_part(tmp_path: Path) -> None:
    n = 6000 * 10 + 4321
    rec = write_record(tmp_path, "r", n, stages=[(12000, "N1"), (24000, "N2"), (48000, "R")])
    lab = read_stage_labels(rec, n)
    assert lab is not None and lab.onset == 12000 and lab.epoch_samples == 6000
    assert len(lab.labels) == (n - 12000) // 6000 == 8
    np.testing.assert_array_equal(lab.labels, [1, 1, 2, 2, 2, 2, 4, 4])
    r = read_record(rec)
    assert r.onset == 12000 and r.labels is not None and r.signal.shape == (6, n)


def test_missing_arousal_unlabelled_or_error(tmp_path: Path) -> None:
    rec = write_record(tmp_path, "r", 7000)
    assert rec.arousal is None
    assert read_stage_labels(rec, 7000) is None
    r = read_record(rec)
    assert r.labels is None and r.onset == 0 and r.signal.shape == (6, 7000)
    with pytest.raises(RecordError, match=r"r\.arousal"):
        read_record(rec, require_labels=True)


def test_unknown_stage_note_warns_and_unlabels(tmp_path: Path) -> None:
    n = 6000 * 6
    rec = write_record(tmp_path, "r", n, stages=[(0, "W"), (12000, "N4"), (24000, "N2")])
    with pytest.warns(UserWarning, match="N4"):
        lab = read_stage_labels(rec, n)
    assert lab is not None
    np.testing.assert_array_equal(lab.labels, [0, 0, UNLABELLED, UNLABELLED, 2, 2])


def test_event_markers_ignored_no_warning(tmp_path: Path) -> None:
    rec = write_record(tmp_path, "r", 6000 * 3, stages=[(0, "N3")])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lab = read_stage_labels(rec, 6000 * 3)
    assert lab is not None
    np.testing.assert_array_equal(lab.labels, [3, 3, 3])


def test_off_grid_note_unlabels_mixed_epoch(tmp_path: Path) -> None:
    rec = write_record(tmp_path, "r", 6000 * 4, stages=[(0, "W"), (9000, "N1")])
    with pytest.warns(UserWarning, match="off the"):
        lab = read_stage_labels(rec, 6000 * 4)
    assert lab is not None
    np.testing.assert_array_equal(lab.labels, [0, UNLABELLED, 1, 1])


def test_annotation_fs_mismatch(tmp_path: Path) -> None:
    rec = write_record(tmp_path, "r", 6000, stages=[(0, "W")])
    with pytest.raises(RecordError, match=r"r\.arousal"):
        read_stage_labels(rec, 3000, fs=100)


def test_real_header_copy_with_missing_mat(tmp_path: Path, real: RecordFiles) -> None:
    shutil.copy(real.header, tmp_path / "tr03-0005.hea")
    rec = find_records(tmp_path)[0]
    with pytest.raises(RecordError, match="tr03-0005.mat"):
        read_signals(rec)


def test_stage_note_at_sample_zero_is_kept(tmp_path: Path) -> None:
    """wfdb.rdann drops NOTE annotations at sample 0; 3 training records start scoring there."""
    rec = write_record(tmp_path, "r", 6000 * 3, stages=[(0, "R"), (6000, "N2")])
    lab = read_stage_labels(rec, 6000 * 3)
    assert lab is not None and lab.onset == 0
    np.testing.assert_array_equal(lab.labels, [4, 2, 2])
