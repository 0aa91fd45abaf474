"""Faults of ``relpos prepare``, the epoch store and ``relpos synth`` (issue 12).

Every failure is one line naming the file or argument; a failing disk stops the run without
marking any record skipped and leaves no temporary file; damaged store files are redone or
rebuilt; workers die with their parent; a SIGKILL at any point resumes to the same bytes.

Processes are killed with real SIGKILLs: the killed ``prepare`` runs in a forked child (no
interpreter start-up, so the default run stays fast); the slow variants start ``python -m
relpos`` itself.
"""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import relpos.sleep.store.writer as writer_mod
from relpos.core.atomic import TMP_MARK
from relpos.sleep.preprocess import PLAUSIBLE_STD_UV, implausible_signal
from relpos.sleep.store import (
    EpochStore,
    StoreLockedError,
    StoreMismatchError,
    StoreWriteError,
    prepare_store,
)
from relpos.sleep.store.layout import check_record, store_lock
from relpos.sleep.synthetic import synthesize_dataset

FORK = multiprocessing.get_context("fork")
REPO = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def one_line(exc: BaseException, *names: str) -> str:
    """The message of ``exc``; asserts it is one line naming each of ``names``."""
    msg = str(exc)
    assert msg and "\n" not in msg, msg
    for name in names:
        assert name in msg, f"{name!r} not in {msg!r}"
    return msg


def store_files(root: Path) -> dict[str, bytes]:
    """The bytes of every record and skipped file (the store's data; no timestamps)."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for d in ("records", "skipped")
        for p in sorted((root / d).glob("*"))
        if p.is_file()
    }


def temporaries(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if TMP_MARK in p.name]


def proc_state(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of a process from /proc, or None when it is gone."""
    try:
        rest = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return rest[0], int(rest[1])


def alive(pid: int) -> bool:
    st = proc_state(pid)
    return st is not None and st[0] not in ("Z", "X")


def children(pid: int) -> list[int]:
    return [
        int(d)
        for d in os.listdir("/proc")
        if d.isdigit() and (st := proc_state(int(d))) is not None and st[1] == pid
    ]


def wait_until(cond: Callable[[], bool], timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def in_fork(target: Callable[..., Any], *args: Any) -> multiprocessing.process.BaseProcess:
    """Start ``target(*args)`` in a forked child (which inherits the test's monkeypatches)."""
    proc = FORK.Process(target=target, args=args, daemon=False)
    proc.start()
    return proc


def kill_all(pids: list[int]) -> None:
    """Clean up processes this test started, should a check have failed."""
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def assert_same_as_ref(store: Path, ref: Path) -> None:
    assert not temporaries(store)
    got, want = store_files(store), store_files(ref)
    assert sorted(got) == sorted(want)
    assert all(got[k] == want[k] for k in want), [k for k in want if got[k] != want[k]]


# --------------------------------------------------------------------------------------------
# a failing disk: stop, clean up, mark nothing skipped, and the rerun prepares everything
# --------------------------------------------------------------------------------------------


def _prepare_with_fsize_limit(src: Path, store: Path, limit: int, jobs: int, out: Path) -> None:
    """(forked child) prepare under RLIMIT_FSIZE; the error goes to ``out``."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        prepare_store(src, store, jobs=jobs, progress=False, mp_context="fork")
    except BaseException as e:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        out.write_text(json.dumps({"type": type(e).__name__, "msg": str(e)}))
        os._exit(3)
    os._exit(0)


@pytest.mark.parametrize("jobs", [1, 2])
def test_file_size_limit_aborts_marks_nothing_and_rerun_prepares_all(
    prep_src: Path, prep_ref: tuple[Path, Any], tmp_path: Path, jobs: int
) -> None:
    """The issue's ``ulimit -f`` reproduction: today every record was "skipped" for ever."""
    store, err = tmp_path / "store", tmp_path / "err.json"
    proc = in_fork(_prepare_with_fsize_limit, prep_src, store, 100_000, jobs, err)
    proc.join(60)
    assert proc.exitcode == 3
    e = json.loads(err.read_text())
    assert e["type"] == "StoreWriteError"
    assert "\n" not in e["msg"] and ".npy: write failed (" in e["msg"]
    assert str(store / "records") in e["msg"] and "marked no record skipped" in e["msg"]
    assert not list((store / "skipped").iterdir())
    assert not list((store / "records").glob("*.npy")) and not temporaries(store)
    assert not (store / "summary.json").exists()
    s = prepare_store(prep_src, store, progress=False)
    assert (s.n_new, s.n_skipped_new, s.n_skipped_existing, s.skipped) == (5, 0, 0, {})
    assert_same_as_ref(store, prep_ref[0])


def _enospc_on(k: int, real: Callable[..., Any]) -> Callable[..., Any]:
    """``real`` raising OSError(ENOSPC) on its ``k``-th call."""
    calls = [0]

    def patched(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == k:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(*args, **kwargs)

    return patched


@pytest.mark.parametrize(
    ("target", "k", "names", "n_done"),
    [
        ("np.save", 2, ("records", "tr90-0002.npy"), 1),  # the 2nd record's epochs
        ("write_text", 3, ("records", "tr90-0002.json"), 1),  # store.json, meta 1, meta 2
        ("write_text", 7, ("summary.json",), 5),  # store.json, 5 metas, summary
    ],
)
def test_patched_writer_enospc(
    prep_src: Path,
    prep_ref: tuple[Path, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    target: str,
    k: int,
    names: tuple[str, ...],
    n_done: int,
) -> None:
    import relpos.sleep.store.layout as layout

    if target == "np.save":
        monkeypatch.setattr(np, "save", _enospc_on(k, np.save))
    else:
        monkeypatch.setattr(layout, "atomic_write_text", _enospc_on(k, layout.atomic_write_text))
    store = tmp_path / "store"
    with pytest.raises(StoreWriteError) as ei:
        prepare_store(prep_src, store, progress=False)
    one_line(ei.value, *names, "No space left on device", "marked no record skipped")
    assert isinstance(ei.value, OSError)
    assert not list((store / "skipped").iterdir()) and not temporaries(store)
    done = [p.stem for p in (store / "records").glob("*.json")]
    assert len(done) == n_done and all(check_record(store, r) is None for r in done)
    assert len(list((store / "records").glob("*.npy"))) == n_done  # the failed one removed
    monkeypatch.undo()
    s = prepare_store(prep_src, store, progress=False)
    assert (s.n_new, s.n_existing, s.n_skipped_new) == (5 - n_done, n_done, 0)
    assert_same_as_ref(store, prep_ref[0])


def test_write_error_in_a_worker_stops_the_pool(
    prep_src: Path, prep_ref: tuple[Path, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """jobs=2: the worker raises, the parent cancels the rest, cleans up and raises."""
    real = np.save

    def save(f: Any, arr: np.ndarray, **kw: Any) -> None:
        if "tr90-0002" in str(getattr(f, "name", f)):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(f, arr, **kw)

    monkeypatch.setattr(np, "save", save)  # inherited by the forked workers
    store = tmp_path / "store"
    with pytest.raises(StoreWriteError) as ei:
        prepare_store(prep_src, store, progress=False, jobs=2, mp_context="fork")
    one_line(ei.value, "tr90-0002.npy", "No space left on device")
    assert not list((store / "skipped").iterdir()) and not temporaries(store)
    assert not (store / "records" / "tr90-0002.npy").exists()
    monkeypatch.undo()
    s = prepare_store(prep_src, store, progress=False)
    assert s.n_skipped_new == 0 and s.n_records == 5
    assert_same_as_ref(store, prep_ref[0])


def test_a_bad_record_is_still_skipped(prep_src: Path, tmp_path: Path) -> None:
    """Problems of the record itself keep their old treatment: skipped with the reason."""
    src = Path(shutil.copytree(prep_src, tmp_path / "src"))
    with open(src / "tr90-0003.mat", "r+b") as f:
        f.truncate(1000)
    s = prepare_store(src, tmp_path / "store", progress=False)
    assert s.n_skipped_new == 1 and "tr90-0003.mat" in s.skipped["tr90-0003"]
    assert "truncated" in s.skipped["tr90-0003"] and "\n" not in s.skipped["tr90-0003"]


def test_unexpected_error_fails_the_record_without_a_mark(
    prep_src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug or a MemoryError is not the record's fault: not marked, retried next run."""

    def boom(*a: Any, **k: Any) -> Any:
        raise MemoryError("cannot allocate")

    monkeypatch.setattr(writer_mod, "read_record", boom)
    store = tmp_path / "store"
    s = prepare_store(prep_src, store, progress=False, limit=2)
    assert (s.n_failed, s.n_skipped_new) == (2, 0) and not list((store / "skipped").iterdir())
    assert "MemoryError: cannot allocate" in s.failed["tr90-0001"]
    monkeypatch.undo()
    assert prepare_store(prep_src, store, progress=False, limit=2).n_new == 2


# --------------------------------------------------------------------------------------------
# damaged store files: redone or rebuilt, else one line naming the file
# --------------------------------------------------------------------------------------------


def _truncate(p: Path, n: int) -> None:
    with open(p, "r+b") as f:
        f.truncate(n)


def _edit_meta(p: Path, **changes: Any) -> None:
    m = json.loads(p.read_text())
    m.update(changes)
    p.write_text(json.dumps(m))


DAMAGES: dict[str, Callable[[Path], None]] = {
    "truncated npy": lambda r: _truncate(r / "tr90-0002.npy", 5000),
    "npy header only": lambda r: _truncate(r / "tr90-0002.npy", 128),
    "empty npy": lambda r: _truncate(r / "tr90-0002.npy", 0),
    "npy longer": lambda r: (r / "tr90-0002.npy").open("ab").write(b"\0" * 64),
    "garbage meta": lambda r: (r / "tr90-0002.json").write_text("{garbage"),
    "empty meta": lambda r: (r / "tr90-0002.json").write_text(""),
    "meta is a list": lambda r: (r / "tr90-0002.json").write_text("[]"),
    "meta shape": lambda r: _edit_meta(r / "tr90-0002.json", shape=[3, 6, 3000]),
    "meta dtype": lambda r: _edit_meta(r / "tr90-0002.json", dtype="float32"),
    "meta labels": lambda r: _edit_meta(r / "tr90-0002.json", labels=[0]),
    "meta without npy": lambda r: (r / "tr90-0002.npy").unlink(),
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_damaged_record_files_are_redone(
    prep_store: Path, prep_src: Path, prep_ref: tuple[Path, Any], damage: str
) -> None:
    """Today a truncated .npy was "already prepared" and never redone."""
    DAMAGES[damage](prep_store / "records")
    assert check_record(prep_store, "tr90-0002") is not None
    s = prepare_store(prep_src, prep_store, progress=False)
    assert (s.n_new, s.n_existing) == (1, 4)
    if damage != "meta without npy":
        assert list(s.repaired) == ["tr90-0002"] and "\n" not in s.repaired["tr90-0002"]
        assert "prepared again" in s.format()
    assert_same_as_ref(prep_store, prep_ref[0])
    assert len(EpochStore(prep_store)) == prep_ref[1].n_epochs


INDEX_DAMAGES: dict[str, Callable[[Path], None]] = {
    "truncated": lambda p: _truncate(p, 100),  # BadZipFile today
    "cut in the middle": lambda p: _truncate(p, p.stat().st_size // 2),
    "empty": lambda p: _truncate(p, 0),  # EOFError today
    "garbage": lambda p: p.write_bytes(b"PK\x03\x04" + os.urandom(300)),
    "arrays missing": lambda p: zipfile.ZipFile(p, "w").close(),
}


@pytest.mark.parametrize("damage", sorted(INDEX_DAMAGES))
def test_damaged_index_is_rebuilt(
    prep_store: Path, prep_ref: tuple[Path, Any], damage: str
) -> None:
    ref = EpochStore(prep_ref[0])
    INDEX_DAMAGES[damage](prep_store / "index.npz")
    store = EpochStore(prep_store)
    np.testing.assert_array_equal(store.labels, ref.labels)
    assert store.record_ids.tolist() == ref.record_ids.tolist()
    with np.load(prep_store / "index.npz") as z:  # and cached again, whole
        assert "labels" in z.files


@pytest.mark.parametrize(
    "text", ["{not json", "", "[1, 2]", b"\xff\xfe\x00garbage", '{"format": "other"}']
)
def test_bad_store_json_is_one_line_naming_it(
    prep_store: Path, prep_src: Path, text: str | bytes
) -> None:
    cfg = prep_store / "store.json"
    cfg.write_bytes(text if isinstance(text, bytes) else text.encode())
    for call in (lambda: EpochStore(prep_store), lambda: prepare_store(prep_src, prep_store)):
        with pytest.raises(ValueError) as ei:
            call()
        one_line(ei.value, str(cfg))


@pytest.mark.parametrize("damage", ["garbage meta", "meta is a list", "meta labels"])
def test_bad_record_meta_is_one_line_naming_it(prep_store: Path, damage: str) -> None:
    DAMAGES[damage](prep_store / "records")
    with pytest.raises(ValueError) as ei:
        EpochStore(prep_store)
    one_line(ei.value, str(prep_store / "records" / "tr90-0002.json"), "rerun relpos prepare")


def test_truncated_npy_on_read_is_one_line_naming_it(prep_store: Path) -> None:
    store = EpochStore(prep_store)
    _truncate(prep_store / "records" / "tr90-0002.npy", 5000)
    with pytest.raises(StoreMismatchError) as ei:
        store.read(np.arange(len(store)))
    one_line(ei.value, str(prep_store / "records" / "tr90-0002.npy"))


def test_mismatched_settings_one_line_naming_the_field(prep_store: Path, prep_src: Path) -> None:
    with pytest.raises(StoreMismatchError) as ei:
        prepare_store(prep_src, prep_store, progress=False, dtype="float32")
    one_line(ei.value, "store.json", "dtype: store has 'float16', requested 'float32'")
    from relpos.sleep.preprocess import Bandpass, Epochs, Pipeline, Resample

    other = Pipeline(steps=[Bandpass(l_freq=0.3), Resample(sfreq=100), Epochs()])
    with pytest.raises(StoreMismatchError) as ei:
        prepare_store(prep_src, prep_store, progress=False, pipeline=other)
    one_line(ei.value, "pipeline.steps[0].l_freq: store has 0.1, requested 0.3")
    one_line(ei.value, "pipeline.steps[3]: store has {'name': 'instance_norm'")


def test_store_lock_is_one_line_naming_the_store(prep_store: Path, prep_src: Path) -> None:
    with store_lock(prep_store):  # another run holds it (a second open file takes no flock)
        with pytest.raises(StoreLockedError) as ei:
            prepare_store(prep_src, prep_store, progress=False)
    assert isinstance(ei.value, OSError)  # RuntimeError before issue 12
    one_line(ei.value, str(prep_store), "another relpos prepare")
    assert prepare_store(prep_src, prep_store, progress=False).n_existing == 5


# --------------------------------------------------------------------------------------------
# numbers
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"jobs": 0}, "jobs"),
        ({"jobs": -3}, "jobs"),
        ({"jobs": True}, "jobs"),
        ({"jobs": 1.5}, "jobs"),
        ({"limit": 0}, "limit"),
        ({"limit": -1}, "limit"),  # silently dropped the last record before
    ],
)
def test_prepare_numbers_checked(
    prep_src: Path, tmp_path: Path, kwargs: dict[str, Any], name: str
) -> None:
    with pytest.raises(ValueError) as ei:
        prepare_store(prep_src, tmp_path / "store", progress=False, **kwargs)
    one_line(ei.value, name, repr(next(iter(kwargs.values()))))
    assert not (tmp_path / "store").exists()


@pytest.mark.parametrize(
    ("step", "kwargs"),
    [
        ("Bandpass", {"l_freq": 0.0}),
        ("Bandpass", {"h_freq": -30.0}),
        ("Bandpass", {"h_freq": float("nan")}),
        ("Bandpass", {"iir_order": 0}),
        ("Resample", {"sfreq": 0.0}),
        ("Resample", {"sfreq": float("inf")}),
        ("Epochs", {"seconds": -30.0}),
        ("InstanceNorm", {"eps": -1.0}),
    ],
)
def test_pipeline_numbers_checked(step: str, kwargs: dict[str, Any]) -> None:
    import relpos.sleep.preprocess as pre

    with pytest.raises(ValueError, match=next(iter(kwargs))):
        getattr(pre, step)(**kwargs)


@pytest.mark.parametrize(
    ("args", "kwargs", "name"),
    [
        ((-2,), {}, "n_records"),  # wrote 0 records with exit 0 before
        ((2,), {"unlabelled": -1}, "unlabelled"),
        ((0,), {}, "no record"),
        ((2,), {"max_hours": 0}, "max_hours"),
        ((2,), {"max_hours": -1.0}, "max_hours"),
        ((2,), {"max_hours": float("nan")}, "max_hours"),
        ((2,), {"jobs": 0}, "jobs"),
        ((2.5,), {}, "n_records"),
    ],
)
def test_synth_numbers_checked(
    tmp_path: Path, args: tuple[Any, ...], kwargs: dict[str, Any], name: str
) -> None:
    with pytest.raises(ValueError) as ei:
        synthesize_dataset(tmp_path / "out", *args, progress=False, **kwargs)
    one_line(ei.value, name)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("where", ["out", "out/below"])
def test_synth_onto_a_file_is_one_line(tmp_path: Path, where: str) -> None:
    (tmp_path / "out").write_text("a file")
    with pytest.raises(NotADirectoryError) as ei:
        synthesize_dataset(tmp_path / where, 1, max_hours=0.1, progress=False)
    one_line(ei.value, str(tmp_path / where), "not a directory")
    assert (tmp_path / "out").read_text() == "a file"


def test_synth_write_error_names_the_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import relpos.sleep.synthetic.writer as synth_writer

    def full(*a: Any, **k: Any) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(synth_writer, "_write_mat", full)
    with pytest.raises(OSError) as ei:
        synthesize_dataset(tmp_path / "out", 1, max_hours=0.1, layout="flat", progress=False)
    one_line(ei.value, str(tmp_path / "out" / "tr90-0001"), "No space left on device")
    assert not list((tmp_path / "out").iterdir())  # no partial record, no temporary folder


# --------------------------------------------------------------------------------------------
# implausible signals: a warning per record
# --------------------------------------------------------------------------------------------


def test_random_bytes_record_gets_a_warning(prep_src: Path, tmp_path: Path) -> None:
    """The issue's .mat full of random bytes: stored silently with std 5,406 uV before."""
    src = Path(shutil.copytree(prep_src, tmp_path / "src"))
    mat = src / "tr90-0002.mat"
    rng = np.random.default_rng(0)
    mat.write_bytes(mat.read_bytes()[:24] + rng.bytes(mat.stat().st_size - 24))
    s = prepare_store(src, tmp_path / "store", progress=False)
    assert list(s.warnings) == ["tr90-0002"], s.warnings
    why = s.warnings["tr90-0002"]
    assert "\n" not in why and "median epoch std" in why and "uV" in why
    assert "tr90-0002" in s.format() and "implausible" in s.format()
    saved = json.loads((tmp_path / "store" / "summary.json").read_text())
    assert saved["warnings"] == s.warnings
    meta = json.loads((tmp_path / "store" / "records" / "tr90-0002.json").read_text())
    assert meta["warning"] == why


def test_no_warning_on_synthetic_records(prep_ref: tuple[Path, Any]) -> None:
    assert prep_ref[1].warnings == {} and prep_ref[1].repaired == {}


def test_implausible_signal_rules() -> None:
    rng = np.random.default_rng(0)
    eeg = rng.standard_normal((10, 6, 300)).astype(np.float32) * 20
    assert implausible_signal(eeg, {"nan": 0, "flat": 0}, 10) is None
    assert implausible_signal(eeg, {"nan": 5, "flat": 0}, 15) is None  # a third dropped
    hi = PLAUSIBLE_STD_UV[1]
    assert "median epoch std" in str(implausible_signal(eeg * hi, {"nan": 0, "flat": 0}, 10))
    assert "median epoch std" in str(implausible_signal(eeg * 1e-6, {}, 10))  # volts
    why = implausible_signal(eeg[:3], {"nan": 6, "flat": 1}, 10)
    assert why == "7 of 10 epochs dropped (NaN 6, flat 1)"


# --------------------------------------------------------------------------------------------
# workers die with their parent
# --------------------------------------------------------------------------------------------


def _slow_read(*a: Any, **k: Any) -> Any:
    time.sleep(60)
    raise AssertionError("unreachable in the test")


def _run_prepare(src: Path, store: Path, jobs: int) -> None:
    """(forked child) prepare with forked workers; exits 0 when done."""
    prepare_store(src, store, jobs=jobs, progress=False, mp_context="fork")
    os._exit(0)


def test_workers_die_with_a_killed_parent(
    prep_src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGKILL of the main prepare left its workers running (~390 MB each) before."""
    monkeypatch.setattr(writer_mod, "read_record", _slow_read)  # busy workers
    proc = in_fork(_run_prepare, prep_src, tmp_path / "store", 2)
    assert proc.pid is not None
    workers: list[int] = []
    try:
        assert wait_until(lambda: len(children(proc.pid)) >= 2, 20), "no workers started"
        workers = children(proc.pid)
        time.sleep(0.3)  # inside their record by now
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(10)
        assert wait_until(lambda: not any(alive(w) for w in workers), 30), [
            (w, proc_state(w)) for w in workers if alive(w)
        ]
    finally:
        kill_all([proc.pid, *workers])


# --------------------------------------------------------------------------------------------
# SIGKILL at seeded random points, rerun, compare bitwise
# --------------------------------------------------------------------------------------------

#: os.replace calls of an uninterrupted prepare of prep_src: store.json, 5 x (npy, meta),
#: index.npz, summary.json
N_WRITES = 13


def _prepare_killed_at_write(src: Path, store: Path, k: int, after: bool) -> None:
    """(forked child) prepare, SIGKILLed just before (or after) its ``k``-th file rename."""
    real = os.replace
    calls = [0]

    def replace(a: Any, b: Any) -> None:
        calls[0] += 1
        if calls[0] == k and not after:
            os.kill(os.getpid(), signal.SIGKILL)
        real(a, b)
        if calls[0] == k and after:
            os.kill(os.getpid(), signal.SIGKILL)

    os.replace = replace  # type: ignore[assignment]  # this child only
    prepare_store(src, store, jobs=1, progress=False)
    os._exit(0)


def _kill_resume(
    src: Path, ref: Path, store: Path, start: Callable[[], multiprocessing.process.BaseProcess]
) -> bool:
    """Kill a prepare (``start`` returns the process, which ends by SIGKILL or exits), wait
    for its workers, rerun it here and tell whether the store is bitwise the reference."""
    proc = start()
    assert proc.pid is not None
    seen: list[int] = []
    try:
        while proc.is_alive():
            seen = sorted({*seen, *children(proc.pid)})
            time.sleep(0.01)
        proc.join()
        assert proc.exitcode in (0, -signal.SIGKILL), proc.exitcode
        assert wait_until(lambda: not any(alive(w) for w in seen), 30), "orphaned workers"
    finally:
        kill_all([proc.pid, *seen])
    s = prepare_store(src, store, progress=False)
    assert s.n_records == 5 and s.n_skipped_new == s.n_skipped_existing == 0
    try:
        assert_same_as_ref(store, ref)
    except AssertionError:
        return False
    return True


def _write_points(n: int, seed: int) -> list[tuple[int, bool]]:
    points = [(k, after) for k in range(1, N_WRITES + 1) for after in (False, True)]
    rng = np.random.default_rng(seed)
    return [points[i] for i in sorted(rng.choice(len(points), size=n, replace=False))]


def _kill_points_at_writes(
    src: Path, ref: Path, tmp: Path, points: list[tuple[int, bool]]
) -> tuple[int, int]:
    same = 0
    for i, (k, after) in enumerate(points):
        store = tmp / f"k{i}"
        args = (src, store, k, after)
        same += _kill_resume(src, ref, store, lambda a=args: in_fork(_prepare_killed_at_write, *a))
    return len(points), same


def _kill_points_after_delay(
    src: Path, ref: Path, tmp: Path, delays: list[float], jobs: int
) -> tuple[int, int]:
    same = 0
    for i, delay in enumerate(delays):
        store = tmp / f"d{jobs}-{i}"

        def start(store: Path = store, delay: float = delay) -> Any:
            proc = in_fork(_run_prepare, src, store, jobs)
            time.sleep(delay)
            if proc.pid is not None and proc.is_alive():
                os.kill(proc.pid, signal.SIGKILL)
            return proc

        same += _kill_resume(src, ref, store, start)
    return len(delays), same


def test_n_writes_is_what_a_prepare_does(
    prep_src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kill points below cover every rename of a whole run."""
    calls = []
    real = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (calls.append(b), real(a, b)))
    prepare_store(prep_src, tmp_path / "store", progress=False)
    assert len(calls) == N_WRITES


def test_sigkill_at_random_points_resumes_bitwise(
    prep_src: Path, prep_ref: tuple[Path, Any], tmp_path: Path
) -> None:
    """3 seeded kill points at file renames (jobs=1) and one after a seeded delay (jobs=2)."""
    ref = prep_ref[0]
    tried, same = _kill_points_at_writes(prep_src, ref, tmp_path, _write_points(3, seed=12))
    delay = float(np.random.default_rng(12).uniform(0.05, 0.5))
    t2, s2 = _kill_points_after_delay(prep_src, ref, tmp_path, [delay], jobs=2)
    print(f"prepare kill points: {tried + t2} tried, {same + s2} bit-identical after the rerun")
    assert (same + s2, tried + t2) == (4, 4)


@pytest.mark.slow
def test_sigkill_at_every_write_and_random_delays_resumes_bitwise(
    prep_src: Path, prep_ref: tuple[Path, Any], tmp_path: Path
) -> None:
    ref = prep_ref[0]
    tried, same = _kill_points_at_writes(prep_src, ref, tmp_path, _write_points(2 * N_WRITES, 0))
    rng = np.random.default_rng(7)
    for jobs in (1, 2):
        delays = rng.uniform(0.02, 0.8, size=6).tolist()
        t, s = _kill_points_after_delay(prep_src, ref, tmp_path, delays, jobs)
        tried, same = tried + t, same + s
    print(f"prepare kill points: {tried} tried, {same} bit-identical after the rerun")
    assert same == tried == 2 * N_WRITES + 12


# --------------------------------------------------------------------------------------------
# the command line, as a user runs it (slow: each `python -m relpos` imports torch)
# --------------------------------------------------------------------------------------------


def _relpos(*args: str, fsize: int | None = None, **kw: Any) -> subprocess.Popen:
    def limit() -> None:
        if fsize is not None:
            hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, hard))

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "relpos", *args]
    return subprocess.Popen(cmd, env=env, preexec_fn=limit, text=True, **kw)


@pytest.mark.slow
def test_cli_ulimit_reproduction(prep_src: Path, tmp_path: Path) -> None:
    """``(ulimit -f ...; relpos prepare src st); relpos prepare src st``: all prepared."""
    store = str(tmp_path / "st")
    pipe = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    p = _relpos("prepare", str(prep_src), store, "--jobs", "1", fsize=100_000, **pipe)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 2, err
    line = [ln for ln in err.splitlines() if ln.startswith("relpos: error: ")]
    assert len(line) == 1 and ".npy: write failed (" in line[0], err
    p = _relpos("prepare", str(prep_src), store, "--jobs", "1", **pipe)
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    assert re.search(r"prepared now +5\n", out) and re.search(r"skipped now +0\n", out), out


@pytest.mark.slow
def test_cli_sigkill_leaves_no_process(prep_src: Path, tmp_path: Path) -> None:
    """Spawned workers and the resource tracker end with a SIGKILLed ``relpos prepare``."""
    p = _relpos("prepare", str(prep_src), str(tmp_path / "st"), "--jobs", "2")
    kids: list[int] = []
    try:
        assert wait_until(lambda: len(children(p.pid)) >= 2, 60)
        time.sleep(1.0)
        kids = children(p.pid)
        p.kill()
        p.wait(10)
        assert wait_until(lambda: not any(alive(c) for c in kids), 60), [
            (c, proc_state(c)) for c in kids if alive(c)
        ]
    finally:
        kill_all([p.pid, *kids])
