"""EDF and mne.io.Raw input: R&K/AASM stage names, annotation runs -> 30-s labels, Sleep-EDF
pairing, format detection, the no-records answer, and the EDF round trip into the store
(labels and samples against what went in)."""

from __future__ import annotations

import datetime as dt
import json
import warnings
from pathlib import Path

import mne
import numpy as np
import pytest
from edfio import Edf, EdfAnnotation, Recording
from edfio import read_edf as read_edf_header

from relpos import cli
from relpos.sleep import from_array, from_raw
from relpos.sleep.annotations import epoch_labels, stage_runs
from relpos.sleep.edf import EdfNaming, find_edf_records, read_edf, record_from_raw, write_edf
from relpos.sleep.format import UNKNOWN_STAGE, UNLABELLED, stage_of_annotation
from relpos.sleep.physionet2018 import RecordError
from relpos.sleep.preprocess import default_pipeline, drop_bad_epochs
from relpos.sleep.recordings import detect_format, find_sleep_records
from relpos.sleep.store import EpochStore, prepare_store

FS = 100
EPOCH = 30 * FS
CHANNELS = ["EEG Fpz-Cz", "EEG Pz-Oz", "EOG horizontal"]
START = dt.datetime(1989, 4, 24, 16, 13, tzinfo=dt.timezone.utc)


def eeg(n_samples: int, seed: int = 0, channels: int = 3) -> np.ndarray:
    """(C, T) µV: alpha-ish sine plus noise, a different mix per channel."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_samples) / FS
    return 40 * np.sin(2 * np.pi * (8 + seed % 4) * t) + 15 * rng.standard_normal(
        (channels, n_samples)
    )


def hypnogram(
    path: Path, notes: list[tuple[float, float, str]], start: dt.datetime = START
) -> None:
    """An EDF+ file with annotations only, as Sleep-EDF's ``*-Hypnogram.edf``."""
    edf = Edf(
        [],
        annotations=[EdfAnnotation(o, d, t) for o, d, t in notes],
        starttime=start.time().replace(tzinfo=None),
        recording=Recording(startdate=start.date()),
    )
    edf.write(path)


def sleep_edf_pair(
    folder: Path, psg_id: str, hyp_id: str, labels: list[int], *, seed: int = 0, extra: int = 0
) -> np.ndarray:
    """``<psg_id>-PSG.edf`` + ``<hyp_id>-Hypnogram.edf`` (labels from sample 0); the signal."""
    folder.mkdir(parents=True, exist_ok=True)
    x = eeg(len(labels) * EPOCH + extra, seed)
    write_edf(
        folder / f"{psg_id}-PSG.edf", x, FS, CHANNELS, labels=np.array(labels),
        hypnogram=folder / f"{hyp_id}-Hypnogram.edf",
    )  # fmt: skip
    return x


# --------------------------------------------------------------------------------------------
# stage names and annotation runs
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("Sleep stage W", 0), ("Sleep stage 1", 1), ("Sleep stage 2", 2), ("Sleep stage 3", 3),
        ("Sleep stage 4", 3), ("Sleep stage R", 4), ("Sleep stage ?", UNLABELLED),
        ("Movement time", UNLABELLED), ("sleep  stage n2", 2), ("Sleep stage N3", 3),
        ("W", 0), ("N1", 1), ("REM", 4), ("Stage 2", 2),
        ("Sleep stage 5", UNKNOWN_STAGE), ("Lights off", None), ("1", None), ("?", None),
        ("Arousal", None),
    ],
)  # fmt: skip
def test_stage_names_rk_to_aasm(text: str, code: int | None) -> None:
    assert stage_of_annotation(text) == code


def test_runs_expand_into_epochs() -> None:
    """Grid from the first run; a run labels the epochs it covers whole; a gap and a change
    off the grid leave epochs unlabelled; zero duration lasts until the next run."""
    notes = [
        (60, 60, "Sleep stage W"),  # epochs 0-1
        (120, 90, "Sleep stage 4"),  # 2-4 -> N3
        (210, 30, "Movement time"),  # 5
        (240, 30, "Lights on"),  # not a stage: epoch 6 is a gap
        (270, 45, "Sleep stage 2"),  # 7 whole, 8 cut at 315 s
        (315, 0, "Sleep stage R"),  # 8 mixed; 9.. R until the signal ends
    ]
    o, d, t = zip(*notes)
    with pytest.warns(UserWarning, match="off the 30-s grid"):
        lab = epoch_labels(stage_runs(o, d, t), 60 * FS + 12 * EPOCH + 50, FS)
    assert lab is not None and lab.onset == 60 * FS and lab.epoch_samples == EPOCH
    assert lab.labels.tolist() == [0, 0, 3, 3, 3, -1, -1, 2, -1, 4, 4, 4]
    assert epoch_labels(stage_runs([5.0], [30.0], ["Lights off"]), 10 * EPOCH, FS) is None


def test_runs_before_the_signal_and_unknown_stages() -> None:
    with pytest.warns(UserWarning, match="unknown stage"):
        runs = stage_runs([-45, 15, 75], [60, 60, 60], ["Sleep stage W", "Sleep stage 5", "N2"])
    lab = epoch_labels(runs, 5 * EPOCH, FS)
    # the grid of the first run (-45 s) moved forward to 15 s; epoch 0 = 15-45 s
    assert lab is not None and lab.onset == 15 * FS
    assert lab.labels.tolist() == [-1, -1, 2, 2]


# --------------------------------------------------------------------------------------------
# the EDF round trip into the store
# --------------------------------------------------------------------------------------------


def test_edf_labels_and_samples_match_what_went_in(tmp_path: Path) -> None:
    """A PSG + hypnogram pair written with MNE's export and edfio, prepared into a store, gives
    the labels of the hypnogram and the samples of the same pipeline run on the original
    array, within EDF's 16-bit quantisation (half a step per sample, spread by the filter)."""
    src = tmp_path / "src"
    src.mkdir()
    n_epochs, lead = 14, 2 * EPOCH  # 60 s unscored before the first stage
    x = eeg(lead + n_epochs * EPOCH + 2 * FS)  # whole 1-s EDF data records, a partial epoch
    write_edf(src / "SC4011E0-PSG.edf", x, FS, CHANNELS)
    rk = ["Sleep stage W", "Sleep stage 1", "Sleep stage 2", "Sleep stage 3", "Sleep stage 4",
          "Sleep stage R", "Movement time", "Sleep stage ?", "Sleep stage 2"]  # fmt: skip
    runs = [2, 1, 2, 1, 2, 2, 1, 1, 2]  # epochs per annotation
    onsets = 60 + 30 * np.concatenate([[0], np.cumsum(runs)[:-1]])
    hypnogram(src / "SC4011EH-Hypnogram.edf", [(float(o), 30.0 * k, t) for o, k, t in zip(onsets, runs, rk)])  # fmt: skip
    want = [0, 0, 1, 2, 2, 3, 3, 3, 4, 4, -1, -1, 2, 2]

    s = prepare_store(
        src, tmp_path / "store", channels=CHANNELS[:2], dtype="float32", progress=False
    )
    assert (s.n_found, s.n_new, s.n_records) == (1, 1, 1)
    meta = json.loads((tmp_path / "store" / "records" / "SC4011E0.json").read_text())
    assert meta["subject_id"] == "SC401" and meta["onset_sample"] == lead
    assert meta["labels"] == want and meta["labelled"] is True
    cfg = json.loads((tmp_path / "store" / "store.json").read_text())
    assert cfg["channels"] == CHANNELS[:2]

    ref = default_pipeline().run(x[:2].astype(np.float32), FS, lead, len(want))
    kept, kept_labels, _, _ = drop_bad_epochs(ref.epochs, np.array(want))
    got = np.load(tmp_path / "store" / "records" / "SC4011E0.npy")
    assert got.shape == kept.shape == (14, 2, EPOCH) and kept_labels.tolist() == want
    # µV per digital step, from the file's header (mne picks the physical range)
    sig = read_edf_header(src / "SC4011E0-PSG.edf").signals[:2]
    step = np.array([np.ptp(s.physical_range) / np.ptp(s.digital_range) for s in sig])
    err = np.abs(got - kept).max(axis=(0, 2))
    assert (err <= step).all(), (err, step)
    raw_err = np.abs(read_edf(find_edf_records(src)[0], CHANNELS[:2]).signal - x[:2]).max(axis=1)
    assert (raw_err <= 0.51 * step).all(), (raw_err, step)  # half a step (+ 8-char header)


def test_sleep_edf_pairing_and_subjects(tmp_path: Path) -> None:
    """SC4ssN / ST7ssN: hypnograms share the first 7 characters; the nights of a subject share
    its id; a PSG without hypnogram is unlabelled (or skipped with require_labels)."""
    sc = tmp_path / "sleep-cassette"
    sleep_edf_pair(sc, "SC4001E0", "SC4001EC", [0, 1, 2])
    sleep_edf_pair(sc, "SC4002E0", "SC4002EH", [0, 2, 2], seed=1)
    sleep_edf_pair(tmp_path / "sleep-telemetry", "ST7011J0", "ST7011JP", [4, 4, 2], seed=2)
    write_edf(sc / "SC4011E0-PSG.edf", eeg(3 * EPOCH, 3), FS, CHANNELS)  # no hypnogram
    recs = find_edf_records(tmp_path)
    assert [(r.record_id, r.subject_id) for r in recs] == [
        ("SC4001E0", "SC400"), ("SC4002E0", "SC400"), ("SC4011E0", "SC401"), ("ST7011J0", "ST701"),
    ]  # fmt: skip
    assert [r.hypnogram.name if r.hypnogram else None for r in recs] == [
        "SC4001EC-Hypnogram.edf", "SC4002EH-Hypnogram.edf", None, "ST7011JP-Hypnogram.edf",
    ]  # fmt: skip
    s = prepare_store(tmp_path, tmp_path / "store", channels=["EEG Fpz-Cz"], progress=False)
    assert s.n_new == 4 and s.class_counts["unlabelled"] == 3
    store = EpochStore(tmp_path / "store")
    assert store.subjects == ["SC400", "SC401", "ST701"]
    s = prepare_store(
        tmp_path, tmp_path / "store2", channels=["EEG Fpz-Cz"], require_labels=True, progress=False
    )
    assert s.n_new == 3 and "no sleep-stage annotations" in s.skipped["SC4011E0"]


def test_own_pairing_rule_with_a_text_hypnogram(tmp_path: Path) -> None:
    """--psg '*.edf' --hypnogram '{stem}-stages.txt': any file mne.read_annotations reads."""
    write_edf(tmp_path / "night_a.edf", eeg(4 * EPOCH), FS, CHANNELS)
    mne.Annotations([0, 60], [60, 60], ["W", "N2"]).save(tmp_path / "night_a-stages.txt")
    naming = EdfNaming(hypnogram="{stem}-stages.txt", subject=r"^night_(\w)")
    assert naming.psg == "*.edf"
    (rec,) = find_edf_records(tmp_path, naming)
    assert (rec.record_id, rec.subject_id, rec.hypnogram.name if rec.hypnogram else "") == (
        "night_a", "a", "night_a-stages.txt",
    )  # fmt: skip
    r = rec.read(["EEG Pz-Oz"])
    assert (
        r.labels is not None and r.labels.tolist() == [0, 0, 2, 2] and r.channels == ("EEG Pz-Oz",)
    )


def test_pairing_errors(tmp_path: Path) -> None:
    sleep_edf_pair(tmp_path, "SC4001E0", "SC4001EC", [0, 1])
    hypnogram(tmp_path / "SC4001EJ-Hypnogram.edf", [(0, 60, "Sleep stage W")])
    with pytest.raises(ValueError, match=r"2 hypnograms match 'SC4001E\?-Hypnogram.edf'"):
        find_edf_records(tmp_path)
    with pytest.raises(ValueError, match="hypnogram template"):
        EdfNaming(hypnogram="{night}.edf")
    (tmp_path / "SC4001EJ-Hypnogram.edf").unlink()
    with pytest.raises(RecordError, match=r"missing channel\(s\) \['C3'\]; the file has"):
        read_edf(find_edf_records(tmp_path)[0], ["C3"])


def test_hypnogram_starting_later_is_aligned(tmp_path: Path) -> None:
    write_edf(tmp_path / "SC4001E0-PSG.edf", eeg(6 * EPOCH), FS, CHANNELS)
    later = START + dt.timedelta(seconds=60)
    hypnogram(tmp_path / "SC4001EC-Hypnogram.edf", [(0, 60, "Sleep stage 2"), (60, 60, "R")], later)
    r = find_edf_records(tmp_path)[0].read(["EEG Fpz-Cz"])
    assert r.onset == 60 * FS and r.labels is not None and r.labels.tolist()[:4] == [2, 2, 4, 4]


# --------------------------------------------------------------------------------------------
# formats and the no-records answer
# --------------------------------------------------------------------------------------------


def test_format_detection_and_no_records_errors(tmp_path: Path) -> None:
    edf = tmp_path / "edf"
    sleep_edf_pair(edf, "SC4001E0", "SC4001EC", [0, 1])
    assert detect_format(edf) == "edf" and len(find_sleep_records(edf)) == 1
    with pytest.raises(ValueError) as ei:
        prepare_store(edf, tmp_path / "s", source_format="physionet2018", progress=False)
    msg = str(ei.value)
    assert (
        "\n" not in msg
        and msg == f"{edf}: no records found (2 .edf files, no .hea: use --format edf)"
    )
    assert not (tmp_path / "s").exists()
    own = tmp_path / "own"
    write_edf(own / "night1.edf", eeg(EPOCH), FS, CHANNELS)
    with pytest.raises(ValueError, match=r"1 \.edf file, none matches --psg '\*-PSG.edf': give"):
        find_sleep_records(own)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=r"no records found \(empty directory\)"):
        prepare_store(empty, tmp_path / "s", progress=False)
    (empty / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match=r"no records found \(1 \.txt file\); prepare reads"):
        detect_format(empty)
    (empty / "a.hea").write_text("x")
    (empty / "b.edf").write_text("x")
    with pytest.raises(ValueError, match="both .hea and .edf files"):
        detect_format(empty)
    with pytest.raises(ValueError, match=r"name the channels to keep .* has EEG Fpz-Cz, EEG Pz-Oz"):
        prepare_store(edf, tmp_path / "s", progress=False)


# --------------------------------------------------------------------------------------------
# from Python: mne.io.Raw and arrays
# --------------------------------------------------------------------------------------------


def test_from_raw_with_annotations_and_a_crop(tmp_path: Path) -> None:
    x = eeg(10 * EPOCH, channels=2)
    info = mne.create_info(["Fpz", "STI"], FS, ["eeg", "misc"])
    raw = mne.io.RawArray(x * np.array([[1e-6], [1.0]]), info, verbose="error")
    raw.set_meas_date(START)
    raw.set_annotations(mne.Annotations([60, 120, 240], [60, 120, 60], ["W", "N2", "R"]))
    rec = record_from_raw(raw, ["Fpz", "STI"], record_id="r1")
    np.testing.assert_allclose(rec.signal, x, rtol=1e-5, atol=1e-3)  # µV and as-is
    assert rec.onset == 60 * FS and rec.labels is not None
    assert rec.labels.tolist()[:8] == [0, 0, 2, 2, 2, 2, 4, 4]
    cropped = record_from_raw(raw.copy().crop(tmin=30), ["Fpz"])  # first_samp 3000
    assert cropped.onset == 30 * FS and cropped.labels is not None
    assert cropped.labels.tolist() == rec.labels.tolist()[: len(cropped.labels)]
    assert record_from_raw(raw).channels == ("Fpz",)  # default: the EEG channels

    s = from_raw(raw, tmp_path / "store", channels=["Fpz"], record_id="n1", subject_id="s1")
    assert s.n_records == 1 and s.class_counts["W"] == 2
    s = from_array(x[:1], FS, tmp_path / "store", channels=["Fpz"], record_id="n2",
                   labels=["W", "Sleep stage 4", "?"], onset=0)  # fmt: skip
    assert s.n_records == 2
    meta = json.loads((tmp_path / "store" / "records" / "n2.json").read_text())
    assert meta["labels"][:3] == [0, 3, -1] and meta["subject_id"] == "n2"
    with pytest.raises(RecordError, match="shorter than one epoch"):
        from_array(x[:1, :100], FS, tmp_path / "store", channels=["Fpz"], record_id="n3")
    with pytest.raises(ValueError, match="unknown stage name"):
        from_array(x[:1], FS, tmp_path / "store", channels=["Fpz"], record_id="n4", labels=["X"])


# --------------------------------------------------------------------------------------------
# the command line: prepare -> splits -> pretrain -> finetune -> evaluate, unchanged
# --------------------------------------------------------------------------------------------

TINY = [
    "--set",
    "optim.epochs=1",
    "--set",
    "optim.max_steps=2",
    "--set",
    "optim.batch_size=8",
    "--set",
    "encoder.dim=16",
    "--set",
    "encoder.depth=1",
    "--set",
    "encoder.heads=2",
    "--set",
    "runtime.progress=false",
    "--set",
    "runtime.checkpoint_every=0",
]  # fmt: skip  (the 2 channels come from the store)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.slow
def test_edf_store_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src, store, runs = tmp_path / "edf", tmp_path / "store", tmp_path / "runs"
    rng = np.random.default_rng(0)
    for i in range(4):
        sleep_edf_pair(src, f"SC40{i}1E0", f"SC40{i}1EC", rng.integers(0, 5, 12).tolist(), seed=i)
    code, _, err = run(capsys, "prepare", str(src), str(store))
    assert code == 2 and "name the channels to keep" in err and "\n" not in err.strip()
    code, out, err = run(capsys, "prepare", str(src), str(store), "--channels", "EEG Fpz-Cz,EEG Pz-Oz", "--jobs", "1")  # fmt: skip
    assert code == 0 and "records in store           4" in out, err
    code, out, _ = run(capsys, "splits", str(store), "--finetune", "2", "--test", "1")
    assert code == 0
    code, out, err = run(capsys, "pretrain", "--store", str(store), "--out", str(runs / "pt"), *TINY)  # fmt: skip
    assert code == 0, err
    code, out, err = run(
        capsys, "finetune", "--data-source", "eeg_store", "--data", str(store), "--init",
        str(runs / "pt" / "encoder.safetensors"), "--out", str(runs / "ft"), *TINY,
    )  # fmt: skip
    assert code == 0, err
    code, out, err = run(capsys, "evaluate", str(runs / "ft" / "final.pt"), "--store", str(store), "--no-plots")  # fmt: skip
    assert code == 0 and "kappa" in out, err
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code, _, err = run(capsys, "prepare", str(src), str(tmp_path / "s2"), "--format", "physionet2018")  # fmt: skip
    assert code == 2 and "no .hea: use --format edf" in err
