"""Write the epoch store: ``relpos prepare`` (layout in :mod:`relpos.sleep.store.layout`).

Each file is replaced atomically (:mod:`relpos.core.atomic`); a record's ``.npy`` first, its
meta ``.json`` last. A killed run therefore leaves at most temporary files (removed by the next
run) or an ``.npy`` without meta (redone by the next run); a record counts as finished only
when its meta parses and its ``.npy`` header and size match it
(:func:`~relpos.sleep.store.layout.check_record`); anything else is redone. Re-running skips
finished and skipped records and touches none of their files. Records are prepared in worker
processes, one record per worker in memory; workers die with the main process.

A problem of the record itself (unreadable or inconsistent source files, too short, all epochs
bad) skips it with its reason (``skipped/<id>.json``). A failing disk is not the record's fault:
an ``OSError`` while writing the store stops the run with a one-line
:class:`~relpos.sleep.store.layout.StoreWriteError` naming the file, after removing its
temporary files, and marks nothing skipped, so that a rerun prepares those records.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from relpos.core.atomic import atomic_path
from relpos.core.workers import worker_pool
from relpos.sleep.edf import EdfNaming
from relpos.sleep.format import UNLABELLED
from relpos.sleep.physionet2018 import Record, RecordError
from relpos.sleep.preprocess import (
    EpochedSignal,
    Pipeline,
    default_pipeline,
    drop_bad_epochs,
    implausible_signal,
)
from relpos.sleep.recordings import (
    SourceFormat,
    SourceRecord,
    default_channels,
    find_sleep_records,
    read_record,
)
from relpos.sleep.store.layout import (
    FORMAT,
    RECORDS_DIR,
    SKIPPED_DIR,
    STORE_FILE,
    SUMMARY_FILE,
    VERSION,
    StoreMismatchError,
    StoreWriteError,
    check_record,
    clean_temporaries,
    read_json,
    record_meta_path,
    record_npy_path,
    skipped_path,
    store_lock,
    write_json,
    writing,
)
from relpos.sleep.store.summary import PrepareSummary, store_totals

logger = logging.getLogger(__name__)

__all__ = ["PrepareSummary", "prepare_store"]

#: A finished worker's report: ``{"record_id", "status": "done"|"skipped"|"failed", ...}``.
Result = dict[str, Any]


# --------------------------------------------------------------------------------------------
# store config
# --------------------------------------------------------------------------------------------


def _store_config(pipeline: Pipeline, channels: Sequence[str], dtype: str) -> dict[str, Any]:
    from relpos.train.export import relpos_version

    fs = next((s.sfreq for s in pipeline.continuous_steps if s.name == "resample"), None)
    created_by = f"relpos {relpos_version()}"
    return {
        "format": FORMAT,
        "version": VERSION,
        "dtype": dtype,
        "channels": list(channels),
        "fs": fs,
        "epoch_samples": None if fs is None else pipeline.epochs_step.samples(fs),
        "epoch_seconds": pipeline.epochs_step.seconds,
        "pipeline": pipeline.model_dump(mode="json"),
        "created_by": created_by,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


_COMPARED = ("format", "version", "dtype", "channels", "pipeline")


def _differences(have: Any, want: Any, where: str) -> Iterator[str]:
    """``"<where>.<key>[i]: store has X, requested Y"`` for each differing leaf."""
    if isinstance(have, dict) and isinstance(want, dict):
        for k in [*have, *(k for k in want if k not in have)]:
            if have.get(k) != want.get(k):
                yield from _differences(have.get(k), want.get(k), f"{where}.{k}")
    elif isinstance(have, list) and isinstance(want, list):
        for i, (a, b) in enumerate(zip(have, want)):
            if a != b:
                yield from _differences(a, b, f"{where}[{i}]")
        for i in range(min(len(have), len(want)), max(len(have), len(want))):
            a, b = (have[i], "nothing") if i < len(have) else ("nothing", want[i])
            yield f"{where}[{i}]: store has {a}, requested {b}"
    elif have != want:
        yield f"{where}: store has {have!r}, requested {want!r}"


def _check_config(path: Path, have: Any, want: dict[str, Any]) -> None:
    """Raise a one-line :class:`StoreMismatchError` naming each differing setting."""
    if not isinstance(have, dict):
        raise StoreMismatchError(f"{path}: not a store config (a JSON object expected)")
    diffs = [d for k in _COMPARED for d in _differences(have.get(k), want.get(k), k)]
    if diffs:
        more = f"; and {len(diffs) - 4} more" if len(diffs) > 4 else ""
        raise StoreMismatchError(
            f"{path} was prepared with other settings ({'; '.join(diffs[:4])}{more}); use "
            f"another store directory or delete it (stores are never mixed)"
        )


def _open_store(root: Path, pipeline: Pipeline, channels: Sequence[str], dtype: str) -> None:
    """Write ``store.json`` or check it against the request; create the folders; remove the
    temporary files of an interrupted run (call under the store lock)."""
    cfg = _store_config(pipeline, channels, dtype)
    cfg_path = root / STORE_FILE
    if cfg_path.exists():
        _check_config(cfg_path, read_json(cfg_path), cfg)
    else:
        write_json(cfg_path, cfg)
    for d in (root / RECORDS_DIR, root / SKIPPED_DIR):
        with writing(d):
            d.mkdir(exist_ok=True)
    clean_temporaries(root)


# --------------------------------------------------------------------------------------------
# one record (in a worker process)
# --------------------------------------------------------------------------------------------


def _epochs(
    rec: SourceRecord,
    pipeline: Pipeline,
    channels: tuple[str, ...],
    require_labels: bool,
    timings: dict[str, float],
) -> tuple[Record, EpochedSignal, int]:
    """Read a record and run the pipeline: (record without its signal, epochs, record length
    in samples)."""
    t0 = time.perf_counter()
    record = read_record(rec, channels, require_labels=require_labels)
    timings["read"] = time.perf_counter() - t0
    T = record.signal.shape[1]
    S0 = pipeline.epochs_step.samples(record.fs)
    if T - record.onset < S0:
        raise RecordError(
            f"{rec.path}: record shorter than one epoch: {T - record.onset} samples "
            f"after onset sample {record.onset} < {S0} ({pipeline.epochs_step.seconds} s "
            f"at {record.fs:g} Hz)"
        )
    n_lab = None if record.labels is None else len(record.labels)
    ep = pipeline.run(record.signal, record.fs, record.onset, n_lab, timings=timings)
    record.signal = np.empty((0, 0), np.float32)  # free the samples
    return record, ep, T


def _to_dtype(epochs: np.ndarray, dtype: str) -> tuple[np.ndarray, int]:
    """Epochs in the store dtype, float16 values beyond +-65504 clipped; (array, n clipped)."""
    n_clipped = 0
    lim = float(np.finfo(np.float16).max)
    if dtype == "float16" and (epochs.max() > lim or epochs.min() < -lim):
        n_clipped = int(np.count_nonzero(np.abs(epochs) > lim))
        np.clip(epochs, -lim, lim, out=epochs)
    return epochs.astype(dtype, copy=False), n_clipped


def _prepare_record(
    rec: SourceRecord,
    pipeline: Pipeline,
    channels: tuple[str, ...],
    dtype: str,
    require_labels: bool,
    timings: dict[str, float],
) -> tuple[np.ndarray, dict[str, Any]]:
    """Prepare one record in memory: (epochs (n, C, S) in ``dtype``, its meta).

    The meta's ``warning`` (absent when all is well) says why the signal looks implausible
    (:func:`~relpos.sleep.preprocess.implausible_signal`).
    """
    record, ep, T = _epochs(rec, pipeline, channels, require_labels, timings)
    n = ep.epochs.shape[0]
    labels = np.full(n, UNLABELLED, np.int8) if record.labels is None else record.labels[:n]
    t0 = time.perf_counter()
    kept, kept_labels, keep, dropped = drop_bad_epochs(ep.epochs, labels)
    timings["drop"] = time.perf_counter() - t0
    if kept.shape[0] == 0:
        raise RecordError(
            f"{rec.path}: all {n} epochs are bad (NaN: {dropped['nan']}, flat: {dropped['flat']})"
        )
    assert kept_labels is not None
    warning = implausible_signal(kept, dropped, n)
    arr, n_clipped = _to_dtype(kept, dtype)
    meta = {
        "record_id": rec.record_id,
        "subject_id": rec.subject_id,
        "n_epochs": int(arr.shape[0]),
        "shape": list(arr.shape),
        "dtype": dtype,
        "fs": ep.fs,
        "source_fs": record.fs,
        "source_samples": int(T),
        "onset_sample": int(record.onset),
        "labelled": record.labels is not None,
        "labels": kept_labels.astype(int).tolist(),
        "epoch_index": ep.epoch_index[keep].astype(int).tolist(),
        "onset_s": np.round(ep.onsets[keep], 6).tolist(),
        "dropped": dropped,
        "n_clipped": n_clipped,
        "source": str(rec.path.parent),
    }
    if warning:
        meta["warning"] = warning
    return arr, meta


def _save_record(root: Path, arr: np.ndarray, meta: dict[str, Any]) -> None:
    """Write a record's ``.npy``, then its meta (the completion marker); on a write error
    remove what was written and raise :class:`StoreWriteError`."""
    rid = meta["record_id"]
    npy = record_npy_path(root, rid)
    try:
        with writing(npy), atomic_path(npy) as tmp, open(tmp, "wb") as f:
            np.save(f, arr, allow_pickle=False)
        write_json(record_meta_path(root, rid), meta)
        with writing(skipped_path(root, rid)):
            skipped_path(root, rid).unlink(missing_ok=True)
    except StoreWriteError:
        with contextlib.suppress(OSError):  # an .npy without meta is redone anyway
            npy.unlink(missing_ok=True)
        raise


def _skip(rec: SourceRecord, root: Path, e: Exception, timings: dict[str, float]) -> Result:
    """Mark a record skipped for a problem of its own (``skipped/<id>.json``)."""
    rid = rec.record_id
    reason = str(e) if isinstance(e, RecordError) else f"{type(e).__name__}: {e}"
    reason = " ".join(reason.split())
    logger.warning("skipping %s: %s", rid, reason)
    npy = record_npy_path(root, rid)
    with writing(npy):
        npy.unlink(missing_ok=True)
    info = {"record_id": rid, "reason": reason, "source": str(rec.path.parent)}
    write_json(skipped_path(root, rid), info)
    return {"record_id": rid, "status": "skipped", "reason": reason, "timings": timings}


#: Problems of a record itself: unreadable or inconsistent source files (RecordError is a
#: ValueError, so are the pipeline's complaints about a record's rate or length).
_RECORD_PROBLEMS = (ValueError, OSError)


def _process_record(
    rec: SourceRecord,
    store_dir: str,
    pipeline_json: str,
    channels: tuple[str, ...],
    dtype: str,
    require_labels: bool,
) -> Result:
    """Prepare one record and write its files (runs in a worker process).

    Returns a small dict: ``{"record_id", "status": "done"|"skipped"|"failed", "reason",
    "n_epochs", "warning", "timings"}``. A problem of the record itself skips it; any other
    error in preparing it (out of memory, a bug) fails it without a mark (retried next run).

    Raises:
        StoreWriteError: writing the store failed; nothing of the record is left and it is
            not marked skipped.
    """
    rid = rec.record_id
    root = Path(store_dir)
    timings: dict[str, float] = {}
    # a record being (re)done has no valid meta: drop a stale one first
    with writing(record_meta_path(root, rid)):
        record_meta_path(root, rid).unlink(missing_ok=True)
    try:
        pipeline = Pipeline.model_validate_json(pipeline_json)
        arr, meta = _prepare_record(rec, pipeline, channels, dtype, require_labels, timings)
    except StoreWriteError:
        raise
    except _RECORD_PROBLEMS as e:
        return _skip(rec, root, e, timings)
    except Exception as e:
        logger.exception("%s: unexpected error; not marked, retried by the next run", rid)
        reason = " ".join(f"{type(e).__name__}: {e}".split())
        return {"record_id": rid, "status": "failed", "reason": reason, "timings": timings}
    t0 = time.perf_counter()
    _save_record(root, arr, meta)
    timings["write"] = time.perf_counter() - t0
    if "warning" in meta:
        logger.warning("%s: %s", rid, meta["warning"])
    res = {"record_id": rid, "status": "done", "n_epochs": int(arr.shape[0]), "timings": timings}
    return {**res, "warning": meta.get("warning")}


# --------------------------------------------------------------------------------------------
# prepare
# --------------------------------------------------------------------------------------------


def _check_count(name: str, value: Any) -> int:
    """``value`` as an int, or a one-line ``ValueError`` naming ``name`` unless it is >= 1."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
    return int(value)


def prepare_store(
    src_dir: str | os.PathLike | Sequence[SourceRecord],
    store_dir: str | os.PathLike,
    *,
    pipeline: Pipeline | None = None,
    channels: Sequence[str] | None = None,
    dtype: str = "float16",
    jobs: int = 1,
    progress: bool = True,
    require_labels: bool = False,
    limit: int | None = None,
    retry_skipped: bool = False,
    mp_context: str | None = "spawn",
    source_format: SourceFormat = "auto",
    naming: EdfNaming | None = None,
) -> PrepareSummary:
    """Preprocess the records under ``src_dir`` into the epoch store ``store_dir``.

    Idempotent and resumable: finished records (meta and ``.npy`` that check out) and skipped
    records are not redone; damaged ones are; temporary files of an interrupted run are
    removed. Bad records (missing channel, truncated file, shorter than one epoch, ...) are
    skipped with their reason (``skipped/<id>.json``, logged) -- they never stop the run; a
    failing disk does (see the module docstring). Records whose signal looks implausible are
    kept and listed in ``summary.warnings``.

    Epochs of a labelled record start at its label onset (the unscored lead-in before the
    first stage note is not stored) and stop at its last whole label epoch; unlabelled
    records are cut from sample 0 with label -1. NaN and flat epochs are dropped and counted
    (:func:`relpos.sleep.preprocess.drop_bad_epochs`); ``epoch_index`` in the record meta keeps
    each stored epoch's number in the 30-s grid.

    Args:
        src_dir: a folder (or file) of records in ``source_format`` -- the challenge download
            or any tree/flat directory of records, EDF recordings with hypnograms -- or
            records already found (:mod:`relpos.sleep.recordings`).
        store_dir: output directory (created).
        pipeline: preprocessing (default :func:`default_pipeline`); stored in store.json.
        channels: signals to keep, in this order (store.json holds them; default: the six
            EEG derivations of PhysioNet 2018; EDF recordings need them named).
        dtype: ``"float16"`` (half the disk; values beyond +-65504 are clipped and counted)
            or ``"float32"``.
        jobs: worker processes, >= 1 (1: in this process). Each worker holds one record at a
            time (~0.6 GB for an 8-h record), at most ``jobs`` records are in flight.
        progress: show a tqdm bar.
        require_labels: skip records without stage labels (``.arousal``, hypnogram) instead
            of storing them unlabelled.
        limit: only the first ``limit`` (>= 1) records (by id).
        retry_skipped: redo records skipped by an earlier run.
        mp_context: multiprocessing start method for ``jobs > 1``.
        source_format: ``auto`` (detect), ``physionet2018`` or ``edf``.
        naming: how EDF recordings and hypnograms pair (default: Sleep-EDF's naming).

    Returns:
        :class:`PrepareSummary` (also written to ``store_dir/summary.json``).

    Raises:
        StoreMismatchError: the store exists with another pipeline/dtype/channels.
        StoreLockedError: another prepare run is writing the store.
        StoreWriteError: writing the store failed (the run stopped; nothing marked skipped).
        ValueError: bad ``dtype``, ``jobs`` or ``limit``; damaged ``store.json``; no records
            in ``src_dir`` (the message lists what it holds); EDF without ``channels``.
    """
    t_start = time.perf_counter()
    if dtype not in ("float16", "float32"):
        raise ValueError(f"dtype must be float16 or float32, not {dtype!r}")
    jobs = _check_count("jobs", jobs)
    limit = None if limit is None else _check_count("limit", limit)
    pipeline = pipeline or default_pipeline()
    if isinstance(src_dir, (str, os.PathLike)):
        records = find_sleep_records(src_dir, source_format, naming)[:limit]
    else:
        records = list(src_dir)[:limit]
    channels = tuple(channels) if channels is not None else default_channels(records)
    root = Path(store_dir)
    with writing(root):
        root.mkdir(parents=True, exist_ok=True)
    summary = PrepareSummary(store_dir=str(root), n_found=len(records))
    with store_lock(root):
        _open_store(root, pipeline, channels, dtype)
        todo = _plan(records, root, retry_skipped, summary)
        args = (str(root), pipeline.model_dump_json(), channels, dtype, require_labels)
        try:
            _run(todo, args, jobs, mp_context, progress, summary)
        except StoreWriteError:
            clean_temporaries(root)
            raise
        summary.__dict__.update(store_totals(root))
        summary.elapsed_s = time.perf_counter() - t_start
        write_json(root / SUMMARY_FILE, summary.to_dict())
    if summary.n_new or summary.n_skipped_new:
        logger.info("prepare done:\n%s", summary.format())
    return summary


def _plan(
    records: list[SourceRecord], root: Path, retry_skipped: bool, summary: PrepareSummary
) -> list[SourceRecord]:
    """The records still to prepare; counts the finished and skipped ones in ``summary``
    and notes the damaged ones it will redo in ``summary.repaired``."""
    todo: list[SourceRecord] = []
    for rec in records:
        rid = rec.record_id
        meta, npy = record_meta_path(root, rid), record_npy_path(root, rid)
        problem = check_record(root, rid) if meta.exists() or npy.exists() else "no files"
        if problem is None:
            summary.n_existing += 1
            continue
        if meta.exists():  # a finished record's files that do not check out
            logger.warning("%s: %s; preparing it again", meta, problem)
            summary.repaired[rid] = problem
        if skipped_path(root, rid).exists() and not retry_skipped and rid not in summary.repaired:
            summary.n_skipped_existing += 1
        else:
            todo.append(rec)
    logger.info(
        "%d records: %d to prepare, %d done, %d skipped before",
        len(records),
        len(todo),
        summary.n_existing,
        summary.n_skipped_existing,
    )
    return todo


def _run(
    todo: list[SourceRecord],
    args: tuple[Any, ...],
    jobs: int,
    mp_context: str | None,
    progress: bool,
    summary: PrepareSummary,
) -> None:
    """Prepare ``todo`` (in this process for ``jobs <= 1``), counting results in ``summary``."""
    from tqdm.auto import tqdm

    bar = tqdm(total=len(todo), disable=not progress, unit="rec", desc="prepare")

    def collect(res: Result) -> None:
        for k, v in res.get("timings", {}).items():
            summary.timings[k] = summary.timings.get(k, 0.0) + v
        if res["status"] == "done":
            summary.n_new += 1
            if res.get("warning"):
                summary.warnings[res["record_id"]] = res["warning"]
        elif res["status"] == "skipped":
            summary.n_skipped_new += 1
        else:
            summary.n_failed += 1
            summary.failed[res["record_id"]] = res["reason"]
        bar.update(1)

    try:
        if jobs <= 1 or len(todo) <= 1:
            for rec in todo:
                collect(_process_record(rec, *args))
        else:
            _run_pool(todo, args, jobs, mp_context, collect)
    finally:
        bar.close()


def _run_pool(
    todo: list[SourceRecord],
    args: tuple[Any, ...],
    jobs: int,
    mp_context: str | None,
    collect: Callable[[Result], None],
) -> None:
    """Run :func:`_process_record` over ``todo`` with at most ``jobs`` records in flight; a
    crashed worker (e.g. killed for memory) fails its record and the pool is restarted. A
    :class:`StoreWriteError` in a worker cancels the rest and is raised here."""
    pending = list(reversed(todo))
    while pending:
        with worker_pool(jobs, mp_context) as pool:
            inflight: dict[cf.Future, SourceRecord] = {}
            broken = False
            while (pending or inflight) and not broken:
                while pending and len(inflight) < jobs:
                    rec = pending.pop()
                    inflight[pool.submit(_process_record, rec, *args)] = rec
                done, _ = cf.wait(inflight, return_when=cf.FIRST_COMPLETED)
                for fut in done:
                    rec = inflight.pop(fut)
                    try:
                        collect(fut.result())
                    except StoreWriteError:
                        pool.shutdown(wait=True, cancel_futures=True)
                        raise
                    except cf.process.BrokenProcessPool as e:
                        broken = True
                        msg = f"worker crashed ({e})"
                        logger.error("%s: %s", rec.record_id, msg)
                        collect({"record_id": rec.record_id, "status": "failed", "reason": msg})
            for rec in inflight.values():  # broken: the in-flight records are lost with it
                crashed = {"record_id": rec.record_id, "reason": "worker pool crashed"}
                collect({**crashed, "status": "failed"})
