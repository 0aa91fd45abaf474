"""Tests of the prepared-epoch store, the torch dataset and the subject splits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
import wfdb
from hypothesis import given, settings
from hypothesis import strategies as st

from relpos.core.atomic import TMP_MARK
from relpos.sleep.physionet2018 import EEG_CHANNELS
from relpos.sleep.preprocess import Bandpass, Epochs, Pipeline, Resample, default_pipeline
from relpos.sleep.store import (
    EpochDataset,
    EpochStore,
    StoreMismatchError,
    load_splits,
    make_splits,
    prepare_store,
    save_splits,
)
from relpos.sleep.store.layout import clean_temporaries, is_temporary
from relpos.train.order import EpochSampler

ALL_CHANNELS = (*EEG_CHANNELS, "E1-M2", "Chin1-Chin2", "ABD", "CHEST", "AIRFLOW", "SaO2", "ECG")
EPOCH = 6000  # samples per 30 s at 200 Hz


def write_record(
    directory: Path,
    record_id: str,
    n_samples: int,
    *,
    stages: list[tuple[int, str]] | None = None,
    channels: tuple[str, ...] = ALL_CHANNELS,
    digital: np.ndarray | None = None,
    seed: int = 0,
) -> None:
    """A small record in the challenge format (see tests/data/physionet2018/README.md)."""
    directory.mkdir(parents=True, exist_ok=True)
    C = len(channels)
    if digital is None:
        rng = np.random.default_rng(seed)
        t = np.arange(n_samples) / 200
        eeg = 40 * np.sin(2 * np.pi * (8 + seed % 5) * t) + 15 * rng.standard_normal((C, n_samples))
        digital = np.round(eeg * 2).astype(np.int16)
    scipy.io.savemat(directory / f"{record_id}.mat", {"val": digital}, format="4")
    lines = [f"{record_id} {C} 200 {n_samples}"]
    lines += [f"{record_id}.mat 16+24 2(-3)/uV 16 0 0 0 0 {c}" for c in channels]
    (directory / f"{record_id}.hea").write_text("\n".join(lines) + "\n")
    if stages:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wfdb.wrann(
                record_id,
                "arousal",
                np.array([s for s, _ in stages], np.int64),
                symbol=['"'] * len(stages),
                aux_note=[n for _, n in stages],
                fs=200,
                write_dir=str(directory),
            )


STAGE_PLAN = [
    (2 * EPOCH, "W"),
    (4 * EPOCH, "N1"),
    (6 * EPOCH, "N2"),
    (9 * EPOCH, "N3"),
    (11 * EPOCH, "R"),
]


@pytest.fixture(scope="module")
def src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four good labelled records (13 or 14 epochs), one unlabelled, and bad ones."""
    root = tmp_path_factory.mktemp("src")
    for i in range(4):
        write_record(
            root / "training" / f"tr00-000{i}",
            f"tr00-000{i}",
            15 * EPOCH + 100 * i,
            stages=STAGE_PLAN,
            seed=i,
        )
    write_record(root / "test" / "te00-0001", "te00-0001", 5 * EPOCH + 17, seed=9)
    return root


def add_bad_records(root: Path) -> None:
    bad = root / "bad"
    write_record(bad, "zz-missing-chan", 3 * EPOCH, channels=ALL_CHANNELS[1:], stages=[(0, "W")])
    write_record(bad, "zz-short", EPOCH - 1, stages=[(0, "W")])
    write_record(bad, "zz-truncated", 3 * EPOCH, stages=[(0, "W")])
    with open(bad / "zz-truncated.mat", "r+b") as f:
        f.truncate(24 + 2 * 13 * 3 * EPOCH - 100)
    # NaN (format-16 invalid sample) in epoch 1, flat channel in epoch 3
    d = np.round(np.random.default_rng(5).standard_normal((13, 6 * EPOCH)) * 30).astype(np.int16)
    d[2, EPOCH + 10] = -32768
    d[4, 3 * EPOCH : 4 * EPOCH] = 12
    write_record(bad, "zz-nanflat", 6 * EPOCH, digital=d, stages=[(0, "N2")])


def file_states(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_mtime_ns, p.stat().st_size)
        for p in root.rglob("*")
        if p.is_file() and p.name not in ("summary.json", ".lock")  # the lock records its pid
    }


# --------------------------------------------------------------------------------------------
# prepare
# --------------------------------------------------------------------------------------------


def test_prepare_layout_labels_and_index(src: Path, tmp_path: Path) -> None:
    out = tmp_path / "store"
    s = prepare_store(src, out, progress=False)
    assert (s.n_found, s.n_new, s.n_skipped_new, s.n_records) == (5, 5, 0, 5)
    cfg = json.loads((out / "store.json").read_text())
    assert cfg["dtype"] == "float16" and cfg["channels"] == list(EEG_CHANNELS)
    assert cfg["fs"] == 100 and cfg["epoch_samples"] == 3000
    assert Pipeline.model_validate(cfg["pipeline"]) == default_pipeline()
    meta = json.loads((out / "records" / "tr00-0001.json").read_text())
    # labels on the grid from the first note at 2 epochs: 13 epochs (15 - 2)
    assert meta["onset_sample"] == 2 * EPOCH and meta["n_epochs"] == 13
    assert meta["labels"] == [0, 0, 1, 1, 2, 2, 2, 3, 3, 4, 4, 4, 4]
    np.testing.assert_allclose(meta["onset_s"], 60 + 30 * np.arange(13))
    arr = np.load(out / "records" / "tr00-0001.npy")
    assert arr.shape == (13, 6, 3000) and arr.dtype == np.float16
    unl = json.loads((out / "records" / "te00-0001.json").read_text())
    assert unl["labelled"] is False and unl["labels"] == [-1] * 5 and unl["onset_sample"] == 0
    store = EpochStore(out)
    assert len(store) == s.n_epochs == 4 * 13 + 5
    assert store.subjects == sorted(
        ["tr00-0000", "tr00-0001", "tr00-0002", "tr00-0003", "te00-0001"]
    )
    assert s.class_counts == {"W": 8, "N1": 8, "N2": 12, "N3": 8, "R": 16, "unlabelled": 5}
    assert json.loads((out / "summary.json").read_text())["n_epochs"] == len(store)
    assert "epochs in store" in s.format()
    assert s.warnings == {} and s.repaired == {} and "warnings" not in s.format()
    assert (out / "index.npz").is_file()


def test_bad_records_skipped_with_reasons_and_dropped_counted(src: Path, tmp_path: Path) -> None:
    root = tmp_path / "src"
    add_bad_records(root)
    out = tmp_path / "store"
    s = prepare_store(root, out, progress=False)
    assert s.n_new == 1 and s.n_skipped_new == 3
    assert "missing channel" in s.skipped["zz-missing-chan"]
    assert "'F4-M1'" in s.skipped["zz-missing-chan"]
    assert "shorter than one epoch" in s.skipped["zz-short"]
    assert (
        "zz-truncated.mat" in s.skipped["zz-truncated"] and "truncated" in s.skipped["zz-truncated"]
    )
    for rid in ("zz-missing-chan", "zz-short", "zz-truncated"):
        assert json.loads((out / "skipped" / f"{rid}.json").read_text())["reason"]
        assert not (out / "records" / f"{rid}.npy").exists()
    meta = json.loads((out / "records" / "zz-nanflat.json").read_text())
    assert meta["dropped"] == {"nan": 1, "flat": 1}
    assert meta["epoch_index"] == [0, 2, 4, 5] and meta["n_epochs"] == 4
    assert s.dropped == {"nan": 1, "flat": 1}
    # skipped records stay skipped on a rerun, unless retried
    s2 = prepare_store(root, out, progress=False)
    assert (s2.n_new, s2.n_existing, s2.n_skipped_existing) == (0, 1, 3)
    s3 = prepare_store(root, out, progress=False, retry_skipped=True)
    assert s3.n_skipped_new == 3 and s3.n_existing == 1


def test_require_labels_skips_unlabelled(src: Path, tmp_path: Path) -> None:
    s = prepare_store(src, tmp_path / "store", progress=False, require_labels=True, limit=None)
    assert s.n_new == 4 and s.n_skipped_new == 1
    assert "te00-0001.arousal" in s.skipped["te00-0001"]


def test_idempotent_rerun_writes_nothing(src: Path, tmp_path: Path) -> None:
    out = tmp_path / "store"
    prepare_store(src, out, progress=False, limit=2)
    before = file_states(out)
    s = prepare_store(src, out, progress=False, limit=2)
    assert (s.n_new, s.n_existing) == (0, 2)
    assert file_states(out) == before
    EpochStore(out)  # opening does not rebuild a fresh index
    assert file_states(out) == before


def test_resume_after_kill(src: Path, tmp_path: Path) -> None:
    out = tmp_path / "store"
    ref = prepare_store(src, tmp_path / "ref", progress=False)
    prepare_store(src, out, progress=False, limit=3)
    # a kill of the 3rd record after its npy was moved in (meta not yet), and one while the
    # 4th was written (temporary files)
    assert (out / "records" / "tr00-0001.npy").exists()
    (out / "records" / "tr00-0001.json").unlink()
    (out / "records" / f".tr00-0002.npy{TMP_MARK}99999.npy").write_bytes(b"partial")
    (out / "records" / f".tr00-0002.json{TMP_MARK}99999.json").write_text("{")
    (out / "records" / f"tr00-0003.npy{TMP_MARK}99999").write_bytes(b"old-style name")
    s = prepare_store(src, out, progress=False)
    assert (s.n_new, s.n_existing) == (3, 2)
    assert not list(out.rglob(f"*{TMP_MARK}*"))
    store = EpochStore(out)
    assert len(store.record_ids) == len(set(store.record_ids.tolist())) == 5
    assert len(store) == ref.n_epochs == s.n_epochs
    np.testing.assert_array_equal(store.labels, EpochStore(tmp_path / "ref").labels)


_KILLED_WRITES = """
import os, sys
from relpos.core.atomic import atomic_path
a, b, c = sys.argv[1:]
with atomic_path(a) as ta, atomic_path(b) as tb, atomic_path(c) as tc:
    for t in (ta, tb, tc):
        t.write_bytes(b"{partial")
    os._exit(9)  # killed mid-write: no rename happens
"""


def test_killed_writes_leave_nothing_taken_as_data(src: Path, tmp_path: Path) -> None:
    out = tmp_path / "store"
    prepare_store(src, out, progress=False, limit=2)
    ref = EpochStore(out)
    targets = [out / "records" / "tr00-0002.npy", out / "records" / "tr00-0002.json"]
    targets.append(out / "index.npz")
    r = subprocess.run([sys.executable, "-c", _KILLED_WRITES, *map(str, targets)], check=False)
    assert r.returncode == 9
    left = [p for p in out.rglob("*") if is_temporary(p.name)]
    assert len(left) == 3 and not any(t.exists() for t in targets[:2])
    # a temporary meta ends with .json: the index must not take it for a record
    assert any(p.name.endswith(".json") for p in left)
    store = EpochStore(out, rebuild_index=True)
    assert store.record_ids.tolist() == ref.record_ids.tolist()
    np.testing.assert_array_equal(store.labels, ref.labels)
    s = prepare_store(src, out, progress=False, limit=3)
    assert (s.n_new, s.n_existing, s.n_records) == (1, 2, 3)
    assert not [p for p in out.rglob("*") if is_temporary(p.name)]
    assert clean_temporaries(out) == 0


def test_mismatched_settings_refused(src: Path, tmp_path: Path) -> None:
    out = tmp_path / "store"
    prepare_store(src, out, progress=False, limit=1)
    with pytest.raises(StoreMismatchError, match="dtype"):
        prepare_store(src, out, progress=False, dtype="float32")
    other = Pipeline(steps=[Bandpass(l_freq=0.3), Resample(sfreq=100), Epochs()])
    with pytest.raises(StoreMismatchError, match="pipeline"):
        prepare_store(src, out, progress=False, pipeline=other)
    with pytest.raises(StoreMismatchError, match="channels"):
        prepare_store(src, out, progress=False, channels=EEG_CHANNELS[:2])


def test_float16_and_float32_stores_agree(src: Path, tmp_path: Path) -> None:
    a = prepare_store(src, tmp_path / "f16", progress=False, dtype="float16", limit=2)
    b = prepare_store(src, tmp_path / "f32", progress=False, dtype="float32", limit=2)
    assert a.n_epochs == b.n_epochs
    s16, s32 = EpochStore(tmp_path / "f16"), EpochStore(tmp_path / "f32")
    x16, x32 = s16.read(np.arange(len(s16))), s32.read(np.arange(len(s32)))
    assert x16.dtype == np.float16 and x32.dtype == np.float32
    np.testing.assert_allclose(x16.astype(np.float32), x32, rtol=2e-3, atol=2e-2)


def test_parallel_prepare_equals_serial(src: Path, tmp_path: Path) -> None:
    a = prepare_store(src, tmp_path / "serial", progress=False)
    b = prepare_store(src, tmp_path / "parallel", progress=False, jobs=2)
    assert (b.n_new, b.n_epochs) == (a.n_new, a.n_epochs)
    sa, sb = EpochStore(tmp_path / "serial"), EpochStore(tmp_path / "parallel")
    np.testing.assert_array_equal(sa.read(np.arange(len(sa))), sb.read(np.arange(len(sb))))


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def store(src: Path, tmp_path_factory: pytest.TempPathFactory) -> EpochStore:
    out = tmp_path_factory.mktemp("store")
    prepare_store(src, out, progress=False)
    return EpochStore(out)


def test_store_read_any_order(store: EpochStore) -> None:
    full = np.concatenate([np.load(store.root / "records" / f"{r}.npy") for r in store.record_ids])
    assert full.shape == (len(store), 6, 3000)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(store), 100)  # repeats, any order
    np.testing.assert_array_equal(store.read(idx), full[idx])
    np.testing.assert_array_equal(store.read([5, 6, 7]), full[5:8])
    np.testing.assert_array_equal(store.read([-1]), full[-1:])
    assert store.read([]).shape == (0, 6, 3000)
    with pytest.raises(IndexError):
        store.read([len(store)])
    few = EpochStore(store.root, max_open=2)  # LRU of open memmaps
    np.testing.assert_array_equal(few.read(idx), full[idx])
    assert len(few._mm) == 2


def test_index_rebuilt_when_stale(store: EpochStore, tmp_path: Path) -> None:
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(store.root, out)
    meta = out / "records" / "te00-0001.json"
    m = json.loads(meta.read_text())
    m["labels"] = [3] * m["n_epochs"]
    meta.write_text(json.dumps(m))
    os.utime(meta, ns=(1, 1))
    s = EpochStore(out)
    assert (s.labels[s.record_index == list(s.record_ids).index("te00-0001")] == 3).all()


def test_dataset_items_shapes_and_normalisation(store: EpochStore) -> None:
    ds = EpochDataset(store)
    assert len(ds) == len(store)
    x, y, s = ds[3]
    assert x.shape == (6, 3000) and x.dtype == torch.float32
    assert isinstance(y, int) and isinstance(s, int)
    xb, yb, sb = ds[np.arange(len(ds))]
    assert xb.shape == (len(ds), 6, 3000)
    torch.testing.assert_close(xb.mean(-1), torch.zeros(len(ds), 6), atol=1e-4, rtol=0)
    torch.testing.assert_close(xb.std(-1, correction=0), torch.ones(len(ds), 6), atol=1e-3, rtol=0)
    raw = EpochDataset(store, normalize=False)[3][0]
    torch.testing.assert_close(raw, torch.from_numpy(store.read([3])[0].astype(np.float32)))
    assert set(yb.tolist()) == {-1, 0, 1, 2, 3, 4}
    assert sb.max().item() == len(store.subjects) - 1


def test_getitems_equals_getitem(store: EpochStore) -> None:
    ds = EpochDataset(store)
    idx = [7, 0, 30, 7, len(ds) - 1, 12]
    batch = ds.__getitems__(idx)
    assert len(batch) == len(idx)
    for i, (x, y, s) in zip(idx, batch):
        x1, y1, s1 = ds[i]
        torch.testing.assert_close(x, x1)
        assert (y, s) == (y1, s1)


def test_dataset_subject_and_label_filters(store: EpochStore) -> None:
    ds = EpochDataset(store, subjects=["tr00-0001", "te00-0001"])
    assert len(ds) == 13 + 5
    assert {store.subjects[s] for s in ds.subject_index} == {"tr00-0001", "te00-0001"}
    lab = EpochDataset(store, subjects=["tr00-0001", "te00-0001"], labelled_only=True)
    assert len(lab) == 13 and (lab.labels >= 0).all()
    with pytest.warns(UserWarning, match="not in the store"):
        EpochDataset(store, subjects=["nobody"])


def test_dataloaders(store: EpochStore) -> None:
    ds = EpochDataset(store)
    seen = []
    for x, y, s in torch.utils.data.DataLoader(ds, batch_size=8, shuffle=True):
        assert x.shape[1:] == (6, 3000) and y.dtype == torch.int64 and s.shape == y.shape
        seen.append(len(y))
    assert sum(seen) == len(ds)
    # the training loop's per-record order (relpos.train.order) over the dataset
    got = []
    sampler = EpochSampler(len(ds), groups=ds.record_index)
    for x, y, _ in torch.utils.data.DataLoader(ds, batch_size=16, sampler=sampler):
        assert x.shape[0] == y.shape[0] <= 16
        got.append(y)
    assert torch.cat(got).sort().values.tolist() == sorted(ds.labels.tolist())


# --------------------------------------------------------------------------------------------
# splits
# --------------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(3, 400),
    seed=st.integers(0, 2**31),
    n_ft=st.integers(0, 30),
    n_test=st.integers(0, 250),
    n_val=st.integers(0, 20),
)
def test_splits_disjoint_and_complete(
    n: int, seed: int, n_ft: int, n_test: int, n_val: int
) -> None:
    subjects = [f"s{i:04d}" for i in range(n)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sp = make_splits(subjects, n_finetune=n_ft, n_test=n_test, n_val=n_val, seed=seed)
        again = make_splits(
            list(reversed(subjects)), n_finetune=n_ft, n_test=n_test, n_val=n_val, seed=seed
        )
    assert sp == again  # deterministic per seed, independent of input order
    parts = [set(v) for v in sp.values()]
    assert sum(len(p) for p in parts) == n and set().union(*parts) == set(subjects)
    assert len(sp["pretrain"]) >= 1
    for key, req in (("finetune", n_ft), ("test", n_test), ("val", n_val)):
        assert len(sp[key]) <= req
        assert (len(sp[key]) >= 1) == (req >= 1) or key == "val"
    if n_ft + n_test + n_val <= n - 1:
        assert (len(sp["finetune"]), len(sp["test"]), len(sp["val"])) == (n_ft, n_test, n_val)


def test_splits_shrink_warn_and_minimum() -> None:
    subs = [f"s{i}" for i in range(20)]
    with pytest.warns(UserWarning, match="only 20 subjects"):
        sp = make_splits(subs, n_finetune=10, n_test=200)
    assert len(sp["test"]) + len(sp["finetune"]) == 10 and len(sp["finetune"]) >= 1
    with pytest.raises(ValueError, match="at least 3"):
        make_splits(["a", "b", "b"])
    assert make_splits(subs, 2, 5, seed=1) != make_splits(subs, 2, 5, seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        three = make_splits(["a", "b", "c"])
    assert [len(three[k]) for k in ("pretrain", "finetune", "val", "test")] == [1, 1, 0, 1]


def test_splits_save_load(tmp_path: Path) -> None:
    sp = make_splits([f"s{i}" for i in range(30)], n_finetune=3, n_test=5, n_val=2, seed=4)
    save_splits(sp, tmp_path / "s" / "splits.json")
    assert load_splits(tmp_path / "s" / "splits.json") == sp
    bad = dict(sp, test=[*sp["test"], sp["pretrain"][0]])
    with pytest.raises(ValueError, match="both"):
        save_splits(bad, tmp_path / "bad.json")


def test_prepare_real_header_and_annotations(tmp_path: Path) -> None:
    """The real tr03-0005 header (sig_len cut to 160,000) and .arousal with written samples:
    stored labels = the first epochs of the record's real hypnogram, grid from sample 72000."""
    import gzip
    import shutil

    real = Path(__file__).parents[1] / "data" / "physionet2018"
    d = tmp_path / "src" / "tr03-0005"
    d.mkdir(parents=True)
    lines = (real / "tr03-0005.hea").read_text().splitlines()
    lines[0] = "tr03-0005 13 200 160000"
    (d / "tr03-0005.hea").write_text("\n".join(lines) + "\n")
    shutil.copy(real / "tr03-0005.arousal", d / "tr03-0005.arousal")
    val = np.round(np.random.default_rng(0).standard_normal((13, 160000)) * 20).astype(np.int16)
    scipy.io.savemat(d / "tr03-0005.mat", {"val": val}, format="4")
    s = prepare_store(tmp_path / "src", tmp_path / "store", progress=False)
    assert s.n_new == 1
    assert s.warnings == {}  # the real gains give a plausible EEG amplitude
    meta = json.loads((tmp_path / "store" / "records" / "tr03-0005.json").read_text())
    assert meta["onset_sample"] == 72000 and meta["n_epochs"] == (160000 - 72000) // EPOCH
    hyp = Path(__file__).parents[2] / "relpos" / "sleep" / "resources" / "hypnograms.tsv.gz"
    with gzip.open(hyp, "rt") as f:
        row = next(r.split("\t") for r in f if r.startswith("tr03-0005\t"))
    code = {"W": 0, "1": 1, "2": 2, "3": 3, "R": 4}
    assert meta["labels"] == [code[c] for c in row[3][: meta["n_epochs"]]]


# --------------------------------------------------------------------------------------------
# sources: no records, records already in memory
# --------------------------------------------------------------------------------------------


def test_prepare_without_records_fails_listing_the_folder(tmp_path: Path) -> None:
    """It exited 0 with "records found 0" before."""
    (tmp_path / "src").mkdir()
    for name in ("a.txt", "b.txt", "c.csv"):
        (tmp_path / "src" / name).write_text("x")
    with pytest.raises(ValueError) as ei:
        prepare_store(tmp_path / "src", tmp_path / "store", progress=False)
    assert str(ei.value).startswith(f"{tmp_path / 'src'}: no records found (2 .txt files, 1 .csv")
    assert "\n" not in str(ei.value) and not (tmp_path / "store").exists()


def test_records_in_memory_make_the_same_store(src: Path, tmp_path: Path) -> None:
    """The writer reads any source record: the same records read into memory first give the
    same epochs and metas as their files."""
    from relpos.sleep.physionet2018 import find_records, read_record
    from relpos.sleep.recordings import InMemoryRecord

    files = find_records(src / "training")
    prepare_store(src / "training", tmp_path / "a", progress=False, dtype="float32")
    mem = [InMemoryRecord(read_record(f), str(f.header)) for f in files]
    s = prepare_store(mem, tmp_path / "b", progress=False, dtype="float32")
    assert s.n_new == len(files) == 4
    for f in files:
        a, b = (np.load(tmp_path / d / "records" / f"{f.record_id}.npy") for d in "ab")
        np.testing.assert_array_equal(a, b)
        ma, mb = (json.loads((tmp_path / d / "records" / f"{f.record_id}.json").read_text()) for d in "ab")  # fmt: skip
        assert ma == mb
