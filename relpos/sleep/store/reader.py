"""On-disk, memory-mapped store of prepared 30-s epochs (written by ``relpos prepare``).

Layout::

    store_dir/
      store.json                 format, version, dtype, channels, fs, epoch samples, pipeline
      records/<record_id>.npy    (n_epochs, C, S) float16|float32 (np.save; mmap on read)
      records/<record_id>.json   record meta: subject, labels, epoch numbers, onsets (s),
                                 dropped NaN/flat counts, ... -- the COMPLETION MARKER
      skipped/<record_id>.json   why a record was skipped
      index.npz                  cached per-epoch index (rebuilt when the metas change)
      summary.json               summary of the last prepare run
      .lock                      flock'ed while a prepare runs

Each file is written under a temporary name (``<name>.tmp-<pid>``) and moved into place with
``os.replace``; the ``.npy`` first, its meta ``.json`` last. A killed run therefore leaves at
most temporary files (removed by the next run) or an ``.npy`` without meta (redone by the next
run); a record counts as finished only when its meta exists. Re-running skips finished and
skipped records and touches none of their files.

:class:`EpochStore` opens the store (index as numpy arrays, one memmap per record file),
:class:`EpochDataset` serves instance-normalised epochs to PyTorch with a batched
``__getitems__`` and :class:`RecordChunkSampler` batches contiguous per-record chunks.
:func:`make_splits` makes subject-level splits.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import hashlib
import json
import logging
import math
import multiprocessing
import os
import time
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from relpos.sleep.physionet2018 import (
    EEG_CHANNELS,
    STAGES,
    UNLABELLED,
    RecordError,
    RecordFiles,
    find_records,
    read_record,
)
from relpos.sleep.preprocess import Pipeline, default_pipeline, drop_bad_epochs, instance_norm

logger = logging.getLogger(__name__)

__all__ = [
    "FORMAT",
    "VERSION",
    "EpochDataset",
    "EpochStore",
    "PrepareSummary",
    "RecordChunkSampler",
    "StoreMismatchError",
    "load_splits",
    "make_loader",
    "make_splits",
    "prepare_store",
    "save_splits",
]

FORMAT = "relpos-epoch-store"
VERSION = 1
_TMP = ".tmp-"
CLASS_NAMES: tuple[str, ...] = (*STAGES, "unlabelled")


class StoreMismatchError(ValueError):
    """The store exists with other settings (pipeline, dtype, channels, version)."""


# --------------------------------------------------------------------------------------------
# small file helpers
# --------------------------------------------------------------------------------------------


def _tmp_name(path: Path) -> Path:
    return path.with_name(f"{path.name}{_TMP}{os.getpid()}")


def _write_json_atomic(path: Path, obj: Any) -> None:
    tmp = _tmp_name(path)
    with open(tmp, "w") as f:
        json.dump(obj, f, separators=(",", ":"))
    os.replace(tmp, path)


def _write_npy_atomic(path: Path, arr: np.ndarray) -> None:
    tmp = _tmp_name(path)
    with open(tmp, "wb") as f:
        np.save(f, arr, allow_pickle=False)
    os.replace(tmp, path)


def _read_json(path: Path) -> Any:
    with open(path) as f:
        return json.load(f)


@contextlib.contextmanager
def _store_lock(store_dir: Path) -> Iterator[None]:
    """Exclusive advisory lock so that two prepare runs never share a store (released when
    the process dies)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX
        yield
        return
    fh = open(store_dir / ".lock", "a+")
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            raise RuntimeError(f"{store_dir}: another prepare run holds the store lock") from e
        yield
    finally:
        fh.close()


# --------------------------------------------------------------------------------------------
# store config
# --------------------------------------------------------------------------------------------


def _store_config(pipeline: Pipeline, channels: Sequence[str], dtype: str) -> dict[str, Any]:
    pkg = "relpos"
    fs = next((s.sfreq for s in pipeline.continuous_steps if s.name == "resample"), None)
    try:
        from importlib.metadata import version

        created_by = f"{pkg} {version(pkg)}"
    except Exception:
        created_by = pkg
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


def _check_config(path: Path, have: dict[str, Any], want: dict[str, Any]) -> None:
    diffs = [k for k in _COMPARED if have.get(k) != want.get(k)]
    if diffs:
        lines = [f"  {k}: store has {have.get(k)!r}, requested {want.get(k)!r}" for k in diffs]
        raise StoreMismatchError(
            f"{path} was prepared with other settings; use another store directory or delete "
            f"it (stores are never mixed):\n" + "\n".join(lines)
        )


# --------------------------------------------------------------------------------------------
# prepare
# --------------------------------------------------------------------------------------------


@dataclass
class PrepareSummary:
    """What a :func:`prepare_store` run did and what the store now holds.

    Run counts: ``n_found`` records found, ``n_new`` prepared now, ``n_existing`` finished
    before, ``n_skipped_new`` skipped now, ``n_skipped_existing`` skipped before, ``n_failed``
    lost to a crashed worker (not marked; retried next run). Store totals: ``n_records``,
    ``n_epochs``, ``class_counts`` (W N1 N2 N3 R unlabelled), ``dropped`` ({"nan", "flat"}
    epochs), ``skipped`` / ``failed`` (record id -> reason). ``timings``: seconds summed over
    this run's new records per phase (read, bandpass, resample, drop, write).
    """

    store_dir: str
    n_found: int = 0
    n_new: int = 0
    n_existing: int = 0
    n_skipped_new: int = 0
    n_skipped_existing: int = 0
    n_failed: int = 0
    n_records: int = 0
    n_epochs: int = 0
    class_counts: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=lambda: {"nan": 0, "flat": 0})
    skipped: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    elapsed_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def format(self) -> str:
        """Human-readable table."""
        rows = [
            ("store", self.store_dir),
            ("records found", self.n_found),
            ("  prepared now", self.n_new),
            ("  already prepared", self.n_existing),
            ("  skipped now", self.n_skipped_new),
            ("  skipped before", self.n_skipped_existing),
            ("  failed (retry)", self.n_failed),
            ("records in store", self.n_records),
            ("epochs in store", self.n_epochs),
        ]
        total = max(self.n_epochs, 1)
        for k in CLASS_NAMES:
            v = self.class_counts.get(k, 0)
            rows.append((f"  {k}", f"{v} ({100 * v / total:.1f}%)"))
        rows.append(("dropped NaN epochs", self.dropped.get("nan", 0)))
        rows.append(("dropped flat epochs", self.dropped.get("flat", 0)))
        for k, v in self.timings.items():
            rows.append((f"time {k} (s, summed)", f"{v:.2f}"))
        rows.append(("elapsed (s)", f"{self.elapsed_s:.2f}"))
        w = max(len(str(r[0])) for r in rows)
        out = [f"{k!s:<{w}}  {v}" for k, v in rows]
        for title, d in (("skipped", self.skipped), ("failed", self.failed)):
            if d:
                out.append(f"{title}:")
                out.extend(f"  {rid}: {reason}" for rid, reason in sorted(d.items()))
        return "\n".join(out)


def _process_record(
    rec: RecordFiles,
    store_dir: str,
    pipeline_json: str,
    channels: tuple[str, ...],
    dtype: str,
    require_labels: bool,
) -> dict[str, Any]:
    """Prepare one record and write its files (runs in a worker process).

    Returns a small dict: ``{"record_id", "status": "done"|"skipped", "reason", "n_epochs",
    "timings"}``. Never raises for problems of the record itself.
    """
    rid = rec.record_id
    root = Path(store_dir)
    timings: dict[str, float] = {}
    # a record being (re)done has no valid meta: drop a stale one first
    (root / "records" / f"{rid}.json").unlink(missing_ok=True)
    try:
        pipeline = Pipeline.model_validate_json(pipeline_json)
        t0 = time.perf_counter()
        record = read_record(rec, channels, require_labels=require_labels)
        timings["read"] = time.perf_counter() - t0
        T = record.signal.shape[1]
        S0 = pipeline.epochs_step.samples(record.fs)
        if T - record.onset < S0:
            raise RecordError(
                f"{rec.header}: record shorter than one epoch: {T - record.onset} samples "
                f"after onset sample {record.onset} < {S0} ({pipeline.epochs_step.seconds} s "
                f"at {record.fs:g} Hz)"
            )
        n_lab = None if record.labels is None else len(record.labels)
        ep = pipeline.run(record.signal, record.fs, record.onset, n_lab, timings=timings)
        record.signal = np.empty((0, 0), np.float32)
        n = ep.epochs.shape[0]
        labels = np.full(n, UNLABELLED, np.int8) if record.labels is None else record.labels[:n]
        t0 = time.perf_counter()
        kept, labels, keep, dropped = drop_bad_epochs(ep.epochs, labels)
        timings["drop"] = time.perf_counter() - t0
        if kept.shape[0] == 0:
            raise RecordError(
                f"{rec.header}: all {n} epochs are bad (NaN: {dropped['nan']}, flat: "
                f"{dropped['flat']})"
            )
        t0 = time.perf_counter()
        n_clipped = 0
        lim = float(np.finfo(np.float16).max)
        if dtype == "float16" and (kept.max() > lim or kept.min() < -lim):
            n_clipped = int(np.count_nonzero(np.abs(kept) > lim))
            np.clip(kept, -lim, lim, out=kept)
        arr = kept.astype(dtype, copy=False)
        _write_npy_atomic(root / "records" / f"{rid}.npy", arr)
        assert labels is not None
        meta = {
            "record_id": rid,
            "subject_id": rec.subject_id,
            "n_epochs": int(arr.shape[0]),
            "shape": list(arr.shape),
            "dtype": dtype,
            "fs": ep.fs,
            "source_fs": record.fs,
            "source_samples": int(T),
            "onset_sample": int(record.onset),
            "labelled": record.labels is not None,
            "labels": labels.astype(int).tolist(),
            "epoch_index": ep.epoch_index[keep].astype(int).tolist(),
            "onset_s": np.round(ep.onsets[keep], 6).tolist(),
            "dropped": dropped,
            "n_clipped": n_clipped,
            "source": str(rec.header.parent),
        }
        _write_json_atomic(root / "records" / f"{rid}.json", meta)  # completion marker
        with contextlib.suppress(FileNotFoundError):
            (root / "skipped" / f"{rid}.json").unlink()
        timings["write"] = time.perf_counter() - t0
        return {
            "record_id": rid,
            "status": "done",
            "n_epochs": int(arr.shape[0]),
            "timings": timings,
        }
    except Exception as e:
        reason = str(e) if isinstance(e, RecordError) else f"{type(e).__name__}: {e}"
        if isinstance(e, RecordError):
            logger.warning("skipping %s: %s", rid, reason)
        else:
            logger.exception("skipping %s after an unexpected error", rid)
        with contextlib.suppress(FileNotFoundError):
            (root / "records" / f"{rid}.npy").unlink()
        _write_json_atomic(
            root / "skipped" / f"{rid}.json",
            {"record_id": rid, "reason": reason, "source": str(rec.header.parent)},
        )
        return {"record_id": rid, "status": "skipped", "reason": reason, "timings": timings}


def _clean_temporaries(store_dir: Path) -> int:
    n = 0
    for d in (store_dir, store_dir / "records", store_dir / "skipped"):
        for p in d.glob(f"*{_TMP}*"):
            p.unlink(missing_ok=True)
            n += 1
    if n:
        logger.info("removed %d temporary file(s) left by an interrupted run", n)
    return n


def prepare_store(
    src_dir: str | os.PathLike,
    store_dir: str | os.PathLike,
    *,
    pipeline: Pipeline | None = None,
    channels: Sequence[str] = EEG_CHANNELS,
    dtype: str = "float16",
    jobs: int = 1,
    progress: bool = True,
    require_labels: bool = False,
    limit: int | None = None,
    retry_skipped: bool = False,
    mp_context: str | None = "spawn",
) -> PrepareSummary:
    """Preprocess the records under ``src_dir`` into the epoch store ``store_dir``.

    Idempotent and resumable: finished records (meta json present) and skipped records are
    not redone; temporary files of an interrupted run are removed. Bad records (missing
    channel, truncated file, shorter than one epoch, ...) are skipped with their reason
    (``skipped/<id>.json``, logged) -- they never stop the run.

    Epochs of a labelled record start at its label onset (the unscored lead-in before the
    first stage note is not stored) and stop at its last whole label epoch; unlabelled
    records are cut from sample 0 with label -1. NaN and flat epochs are dropped and counted
    (:func:`relpos.sleep.preprocess.drop_bad_epochs`); ``epoch_index`` in the record meta keeps
    each stored epoch's number in the 30-s grid.

    Args:
        src_dir: challenge download (or any tree/flat directory of records).
        store_dir: output directory (created).
        pipeline: preprocessing (default :func:`default_pipeline`); stored in store.json.
        channels: signals to keep, in this order.
        dtype: ``"float16"`` (half the disk; values beyond +-65504 are clipped and counted)
            or ``"float32"``.
        jobs: worker processes (1: in this process). Each worker holds one record at a time
            (~0.6 GB for an 8-h record), at most ``jobs`` records are in flight.
        progress: show a tqdm bar.
        require_labels: skip records without ``.arousal`` instead of storing them unlabelled.
        limit: only the first ``limit`` records (by id).
        retry_skipped: redo records skipped by an earlier run.
        mp_context: multiprocessing start method for ``jobs > 1``.

    Returns:
        :class:`PrepareSummary` (also written to ``store_dir/summary.json``).

    Raises:
        StoreMismatchError: the store exists with another pipeline/dtype/channels.
    """
    t_start = time.perf_counter()
    if dtype not in ("float16", "float32"):
        raise ValueError(f"dtype must be float16 or float32, not {dtype!r}")
    pipeline = pipeline or default_pipeline()
    channels = tuple(channels)
    root = Path(store_dir)
    records = find_records(src_dir)
    if limit is not None:
        records = records[: int(limit)]
    root.mkdir(parents=True, exist_ok=True)
    summary = PrepareSummary(store_dir=str(root), n_found=len(records))
    with _store_lock(root):
        cfg = _store_config(pipeline, channels, dtype)
        cfg_path = root / "store.json"
        if cfg_path.exists():
            _check_config(cfg_path, _read_json(cfg_path), cfg)
        else:
            _write_json_atomic(cfg_path, cfg)
        (root / "records").mkdir(exist_ok=True)
        (root / "skipped").mkdir(exist_ok=True)
        _clean_temporaries(root)

        todo: list[RecordFiles] = []
        for rec in records:
            rid = rec.record_id
            if (root / "records" / f"{rid}.json").exists() and (
                root / "records" / f"{rid}.npy"
            ).exists():
                summary.n_existing += 1
            elif (root / "skipped" / f"{rid}.json").exists() and not retry_skipped:
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
        pj = pipeline.model_dump_json()
        args = (str(root), pj, channels, dtype, require_labels)
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), disable=not progress, unit="rec", desc="prepare")

        def collect(res: dict[str, Any]) -> None:
            for k, v in res.get("timings", {}).items():
                summary.timings[k] = summary.timings.get(k, 0.0) + v
            if res["status"] == "done":
                summary.n_new += 1
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

        totals = _store_totals(root)
        summary.__dict__.update(totals)
        summary.elapsed_s = time.perf_counter() - t_start
        _write_json_atomic(root / "summary.json", summary.to_dict())
    if summary.n_new or summary.n_skipped_new:
        logger.info("prepare done:\n%s", summary.format())
    return summary


def _run_pool(
    todo: list[RecordFiles],
    args: tuple,
    jobs: int,
    mp_context: str | None,
    collect: Any,
) -> None:
    """Run :func:`_process_record` over ``todo`` with at most ``jobs`` records in flight; a
    crashed worker (e.g. killed for memory) fails its record and the pool is restarted."""
    ctx = multiprocessing.get_context(mp_context) if mp_context else None
    pending = list(reversed(todo))
    while pending:
        with cf.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
            inflight: dict[cf.Future, RecordFiles] = {}
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
                    except cf.process.BrokenProcessPool as e:
                        broken = True
                        msg = f"worker crashed ({e})"
                        logger.error("%s: %s", rec.record_id, msg)
                        collect({"record_id": rec.record_id, "status": "failed", "reason": msg})
            if broken:  # the remaining in-flight records are lost with the pool
                for rec in inflight.values():
                    collect(
                        {
                            "record_id": rec.record_id,
                            "status": "failed",
                            "reason": "worker pool crashed",
                        }
                    )


def _store_totals(root: Path) -> dict[str, Any]:
    """Totals over the finished records (via the cached index) and the skipped ones."""
    out: dict[str, Any] = {"skipped": {}}
    for p in sorted((root / "skipped").glob("*.json")):
        try:
            out["skipped"][p.stem] = _read_json(p).get("reason", "")
        except (OSError, ValueError):
            continue
    store = EpochStore(root)
    out["n_records"] = len(store.record_ids)
    out["n_epochs"] = len(store)
    cc = np.bincount(store.labels.astype(np.int64) + 1, minlength=len(STAGES) + 1)
    out["class_counts"] = {k: int(cc[i + 1]) for i, k in enumerate(STAGES)}
    out["class_counts"]["unlabelled"] = int(cc[0])
    out["dropped"] = {"nan": int(store.dropped[:, 0].sum()), "flat": int(store.dropped[:, 1].sum())}
    return out


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def _raise_nofile_limit(wanted: int) -> int:
    """Raise the soft limit of open files towards ``wanted`` (never above the hard limit);
    returns the soft limit now in force."""
    try:
        import resource
    except ImportError:  # pragma: no cover - non-POSIX
        return 512
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    inf = resource.RLIM_INFINITY
    if soft != inf and soft < wanted:
        new = wanted if hard == inf else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
            soft = new
        except (ValueError, OSError):
            pass
    return 1 << 20 if soft == inf else int(soft)


def _fingerprint(meta_files: list[os.DirEntry]) -> str:
    h = hashlib.sha1()
    for e in meta_files:
        st = e.stat()
        h.update(f"{e.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


class EpochStore:
    """Read access to a prepared store.

    Attributes (N epochs, R records):
        config: store.json contents.
        record_ids: (R,) str; record_subjects: (R,) str; offsets: (R + 1,) int64 -- epochs
            of record r are ``offsets[r]:offsets[r + 1]`` in the global order.
        subjects: sorted unique subject ids (list[str]).
        labels: (N,) int8 (-1 unlabelled); record_index: (N,) int32; epoch_index: (N,) int32
            (epoch number in the record's 30-s grid); onsets: (N,) float64 seconds;
            subject_index: (N,) int32 into ``subjects``.
        dropped: (R, 2) int64 dropped NaN / flat epochs per record.

    Args:
        store_dir: the store.
        rebuild_index: rebuild ``index.npz`` even if it is fresh.
        max_open: most record memmaps kept open (each holds a file descriptor; LRU). Default:
            the soft open-files limit (raised towards records + 256 where the hard limit
            allows) minus 128.
    """

    def __init__(
        self,
        store_dir: str | os.PathLike,
        *,
        rebuild_index: bool = False,
        max_open: int | None = None,
    ) -> None:
        self.root = Path(store_dir)
        cfg_path = self.root / "store.json"
        if not cfg_path.is_file():
            raise FileNotFoundError(f"{cfg_path}: not an epoch store (run `relpos prepare`)")
        self.config: dict[str, Any] = _read_json(cfg_path)
        if self.config.get("format") != FORMAT or self.config.get("version") != VERSION:
            raise StoreMismatchError(
                f"{cfg_path}: unsupported store format {self.config.get('format')!r} "
                f"version {self.config.get('version')!r} (this code reads {FORMAT} v{VERSION})"
            )
        idx = self._load_index(rebuild_index)
        self.record_ids: np.ndarray = idx["record_ids"]
        self.record_subjects: np.ndarray = idx["record_subjects"]
        self.offsets: np.ndarray = idx["offsets"]
        self.labels: np.ndarray = idx["labels"]
        self.record_index: np.ndarray = idx["record_index"]
        self.epoch_index: np.ndarray = idx["epoch_index"]
        self.onsets: np.ndarray = idx["onsets"]
        self.dropped: np.ndarray = idx["dropped"]
        shape = idx["epoch_shape"]
        self.epoch_shape: tuple[int, int] = (int(shape[0]), int(shape[1]))
        self.subjects: list[str] = sorted(set(self.record_subjects.tolist()))
        subj_of_rec = np.searchsorted(np.asarray(self.subjects), self.record_subjects)
        self.record_subject_index = subj_of_rec.astype(np.int32)
        self.subject_index: np.ndarray = self.record_subject_index[self.record_index]
        # Each memmap holds a file descriptor: keep at most `max_open` (LRU), after raising
        # the soft RLIMIT_NOFILE towards what the store needs.
        if max_open is None:
            soft = _raise_nofile_limit(len(self.record_ids) + 256)
            max_open = max(16, soft - 128)
        self.max_open = int(max_open)
        self._mm: OrderedDict[int, np.ndarray] = OrderedDict()

    # -- index ----------------------------------------------------------------------------

    def _load_index(self, rebuild: bool) -> dict[str, np.ndarray]:
        rec_dir = self.root / "records"
        metas = (
            sorted(
                (e for e in os.scandir(rec_dir) if e.name.endswith(".json") and _TMP not in e.name),
                key=lambda e: e.name,
            )
            if rec_dir.is_dir()
            else []
        )
        fp = _fingerprint(metas)
        path = self.root / "index.npz"
        if not rebuild and path.is_file():
            try:
                with np.load(path, allow_pickle=False) as z:
                    if str(z["fingerprint"]) == fp:
                        return {k: z[k] for k in z.files}
            except (OSError, ValueError, KeyError):
                logger.warning("%s unreadable; rebuilding", path)
        idx = self._build_index(metas)
        idx["fingerprint"] = np.asarray(fp)
        try:
            tmp = _tmp_name(path)
            with open(tmp, "wb") as f:
                np.savez(f, **idx)
            os.replace(tmp, path)
        except OSError as e:  # read-only store: keep the index in memory
            logger.info("cannot cache the index in %s (%s)", path, e)
        return idx

    def _build_index(self, metas: list[os.DirEntry]) -> dict[str, np.ndarray]:
        rids, subs, counts, labels, epochs, onsets, dropped = [], [], [], [], [], [], []
        shapes: dict[tuple[int, int], list[str]] = {}
        for e in metas:
            m = _read_json(Path(e.path))
            rid = m["record_id"]
            if not (self.root / "records" / f"{rid}.npy").is_file():
                logger.warning("%s: meta without .npy; ignored (re-run prepare)", rid)
                continue
            rids.append(rid)
            subs.append(m.get("subject_id", rid))
            counts.append(int(m["n_epochs"]))
            labels.append(np.asarray(m["labels"], np.int8))
            epochs.append(np.asarray(m["epoch_index"], np.int32))
            onsets.append(np.asarray(m["onset_s"], np.float64))
            dropped.append([m["dropped"].get("nan", 0), m["dropped"].get("flat", 0)])
            shapes.setdefault(tuple(m["shape"][1:]), []).append(rid)
        if len(shapes) > 1:
            detail = "; ".join(f"{k}: {v[:3]}" for k, v in shapes.items())
            raise StoreMismatchError(f"{self.root}: records have different epoch shapes: {detail}")
        shape = next(
            iter(shapes), (len(self.config["channels"]), int(self.config.get("epoch_samples") or 0))
        )
        R = len(rids)
        offsets = np.zeros(R + 1, np.int64)
        offsets[1:] = np.cumsum(counts)
        return {
            "record_ids": np.asarray(rids, dtype=str),
            "record_subjects": np.asarray(subs, dtype=str),
            "offsets": offsets,
            "labels": np.concatenate(labels) if R else np.zeros(0, np.int8),
            "record_index": np.repeat(np.arange(R, dtype=np.int32), counts),
            "epoch_index": np.concatenate(epochs) if R else np.zeros(0, np.int32),
            "onsets": np.concatenate(onsets) if R else np.zeros(0, np.float64),
            "dropped": np.asarray(dropped, np.int64).reshape(R, 2),
            "epoch_shape": np.asarray(shape, np.int64),
        }

    # -- properties -----------------------------------------------------------------------

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __repr__(self) -> str:
        return (
            f"EpochStore({str(self.root)!r}: {len(self.record_ids)} records, {len(self)} "
            f"epochs of {self.epoch_shape}, {self.dtype})"
        )

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.config["dtype"])

    @property
    def channels(self) -> list[str]:
        return list(self.config["channels"])

    @property
    def fs(self) -> float | None:
        return self.config.get("fs")

    @property
    def pipeline(self) -> Pipeline:
        return Pipeline.model_validate(self.config["pipeline"])

    def __getstate__(self) -> dict[str, Any]:  # memmaps are reopened after pickling
        d = self.__dict__.copy()
        d["_mm"] = OrderedDict()
        return d

    # -- reading --------------------------------------------------------------------------

    def _mmap(self, r: int) -> np.ndarray:
        mm = self._mm.get(r)
        if mm is not None:
            self._mm.move_to_end(r)
        else:
            while len(self._mm) >= self.max_open:
                self._mm.popitem(last=False)
            path = self.root / "records" / f"{self.record_ids[r]}.npy"
            mm = np.load(path, mmap_mode="r", allow_pickle=False)
            n = self.offsets[r + 1] - self.offsets[r]
            if mm.shape != (n, *self.epoch_shape):
                raise StoreMismatchError(
                    f"{path}: shape {mm.shape}, index says {(n, *self.epoch_shape)}"
                )
            self._mm[r] = mm
        return mm

    def read_record(self, r: int) -> np.ndarray:
        """All epochs of record ``r``: (n, C, S) memmap (store dtype, read-only)."""
        return self._mmap(int(r))

    def read(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Epochs at global ``indices`` (any order, repeats allowed).

        Indices are sorted and grouped by record; each record's rows are read as one
        contiguous memmap slice where they are contiguous (or span at most twice their count),
        else by fancy indexing.

        Returns:
            (n, C, S) array in the store dtype, in the order of ``indices``.
        """
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = idx.shape[0]
        out = np.empty((n, *self.epoch_shape), dtype=self.dtype)
        if n == 0:
            return out
        N = len(self)
        if idx.min() < -N or idx.max() >= N:
            raise IndexError(f"epoch index out of range for a store of {N} epochs")
        idx = np.where(idx < 0, idx + N, idx)
        order = np.argsort(idx, kind="stable")
        s = idx[order]
        rec = self.record_index[s]
        row = s - self.offsets[rec]
        cuts = np.flatnonzero(rec[1:] != rec[:-1]) + 1
        starts = np.concatenate([[0], cuts]).tolist()
        ends = np.concatenate([cuts, [n]]).tolist()
        for a, b in zip(starts, ends):  # one iteration per record touched, not per epoch
            mm = self._mmap(int(rec[a]))
            lo, hi = int(row[a]), int(row[b - 1]) + 1
            if hi - lo == b - a:
                block = mm[lo:hi]
            elif hi - lo <= 2 * (b - a):
                block = mm[lo:hi][row[a:b] - lo]
            else:
                block = mm[row[a:b]]
            dst = order[a:b]
            if dst[-1] - dst[0] == b - a - 1 and b - a > 1 and (np.diff(dst) == 1).all():
                out[dst[0] : dst[-1] + 1] = block
            else:
                out[dst] = block
        return out


# --------------------------------------------------------------------------------------------
# PyTorch
# --------------------------------------------------------------------------------------------


class EpochDataset(Dataset):
    """Epochs of a store as a torch Dataset.

    An item is ``(x, label, subject)``: x (C, S) float tensor (instance-normalised per channel
    when ``normalize``), label int (-1 unlabelled), subject int (index into
    ``store.subjects``).

    ``dataset[list_or_array]`` returns a whole batch ``(x (n, C, S), labels (n,) int64,
    subjects (n,) int64)`` from one vectorised read; :meth:`__getitems__` (used by
    ``DataLoader`` with ``batch_size``) does the same read and returns the list of items.

    Args:
        store: an :class:`EpochStore` or its directory.
        subjects: keep only epochs of these subject ids (unknown ids are warned about).
        labelled_only: keep only epochs with a stage label.
        normalize: instance-normalise (eps from the store pipeline's InstanceNorm, else 1e-6).
        dtype: tensor dtype of x.
    """

    def __init__(
        self,
        store: EpochStore | str | os.PathLike,
        subjects: Sequence[str] | None = None,
        labelled_only: bool = False,
        normalize: bool = True,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.store = store if isinstance(store, EpochStore) else EpochStore(store)
        mask = np.ones(len(self.store), dtype=bool)
        if subjects is not None:
            wanted = set(subjects)
            unknown = wanted - set(self.store.subjects)
            if unknown:
                warnings.warn(
                    f"{len(unknown)} subject(s) not in the store, e.g. {sorted(unknown)[:5]}",
                    stacklevel=2,
                )
            sel = np.isin(np.asarray(self.store.subjects), sorted(wanted))
            mask &= sel[self.store.subject_index]
        if labelled_only:
            mask &= self.store.labels >= 0
        self.indices: np.ndarray = np.flatnonzero(mask).astype(np.int64)
        self.labels: np.ndarray = self.store.labels[self.indices].astype(np.int64)
        self.subject_index: np.ndarray = self.store.subject_index[self.indices].astype(np.int64)
        self.record_index: np.ndarray = self.store.record_index[self.indices]
        self.normalize = normalize
        norm = self.store.pipeline.normalize
        self.eps = norm.eps if norm is not None else 1e-6
        self.dtype = dtype

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def batch(
        self, positions: Sequence[int] | np.ndarray | torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Batch at dataset ``positions``: (x (n, C, S), labels (n,), subjects (n,))."""
        if isinstance(positions, torch.Tensor):
            positions = positions.numpy()
        pos = np.asarray(positions, dtype=np.int64).reshape(-1)
        arr = self.store.read(self.indices[pos])
        x = torch.from_numpy(arr).to(self.dtype)  # a new tensor: normalise it in place
        if self.normalize:
            x = instance_norm(x, self.eps, inplace=True)
        return x, torch.from_numpy(self.labels[pos]), torch.from_numpy(self.subject_index[pos])

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, (int, np.integer)) or (isinstance(i, torch.Tensor) and i.ndim == 0):
            x, y, s = self.batch([int(i)])
            return x[0], int(y[0]), int(s[0])
        if isinstance(i, slice):
            i = np.arange(len(self))[i]
        return self.batch(i)

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[torch.Tensor, int, int]]:
        x, y, s = self.batch(indices)
        return list(zip(x.unbind(0), y.tolist(), s.tolist()))


class RecordChunkSampler(Sampler[list[int]]):
    """Batch sampler of contiguous per-record chunks.

    Each record's epochs are cut into chunks of ``chunk_size`` consecutive epochs (with a
    random phase per record and epoch of training); chunks are shuffled and concatenated,
    then cut into batches of ``batch_size``. A batch thus reads ``batch_size / chunk_size``
    contiguous ranges instead of ``batch_size`` scattered epochs. Deterministic given
    ``seed`` and the iteration count (:meth:`set_epoch` sets it; each ``__iter__`` advances).

    Use as ``DataLoader(ds, batch_sampler=sampler)`` or, to skip per-item collation,
    ``DataLoader(ds, sampler=sampler, batch_size=None)``.
    """

    def __init__(
        self,
        dataset: EpochDataset,
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        chunk_size: int = 32,
        drop_last: bool = False,
    ) -> None:
        self.record_index = np.asarray(dataset.record_index)
        self.batch_size = int(batch_size)
        self.chunk_size = max(int(chunk_size), 1)
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        n = len(self.record_index)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def order(self, epoch: int | None = None) -> np.ndarray:
        """Permutation of dataset positions for ``epoch`` (default: the current one)."""
        rec = self.record_index
        M = rec.shape[0]
        if not self.shuffle or M == 0:
            return np.arange(M, dtype=np.int64)
        rng = np.random.default_rng([self.seed, self.epoch if epoch is None else epoch])
        _, first, inv = np.unique(rec, return_index=True, return_inverse=True)
        pos_in_rec = np.arange(M) - first[inv]
        phase = rng.integers(0, self.chunk_size, size=first.shape[0])
        chunk = (pos_in_rec + phase[inv]) // self.chunk_size
        key = inv.astype(np.int64) * (M + 1) + chunk
        _, chunk_id = np.unique(key, return_inverse=True)
        rank = rng.permutation(chunk_id.max() + 1)
        return np.lexsort((np.arange(M), rank[chunk_id])).astype(np.int64)

    def __iter__(self) -> Iterator[list[int]]:
        order = self.order()
        self.epoch += 1
        n = len(self) * self.batch_size if self.drop_last else len(order)
        for a in range(0, n, self.batch_size):
            yield order[a : a + self.batch_size].tolist()


def make_loader(
    dataset: EpochDataset,
    batch_size: int = 256,
    *,
    shuffle: bool = True,
    chunked: bool = False,
    chunk_size: int = 32,
    seed: int = 0,
    drop_last: bool = False,
    **loader_kwargs: Any,
) -> torch.utils.data.DataLoader:
    """DataLoader yielding ``(x (B, C, S), labels (B,), subjects (B,))`` batches built by one
    vectorised read each (no per-item collation).

    ``chunked=True`` batches contiguous per-record chunks (:class:`RecordChunkSampler`); else
    batches of a seeded random permutation (or in order without ``shuffle``).
    """
    if chunked:
        sampler: Any = RecordChunkSampler(dataset, batch_size, shuffle, seed, chunk_size, drop_last)
    else:
        g = torch.Generator().manual_seed(seed)
        base = (
            torch.utils.data.RandomSampler(dataset, generator=g)
            if shuffle
            else torch.utils.data.SequentialSampler(dataset)
        )
        sampler = torch.utils.data.BatchSampler(base, batch_size, drop_last)
    return torch.utils.data.DataLoader(dataset, sampler=sampler, batch_size=None, **loader_kwargs)


# --------------------------------------------------------------------------------------------
# Subject splits
# --------------------------------------------------------------------------------------------

SPLIT_KEYS: tuple[str, ...] = ("pretrain", "finetune", "val", "test")


def make_splits(
    subjects: Sequence[str],
    n_finetune: int = 10,
    n_test: int = 200,
    n_val: int = 0,
    seed: int = 0,
) -> dict[str, list[str]]:
    """Disjoint, seeded subject-level splits ``pretrain`` / ``finetune`` / ``val`` / ``test``.

    The unique subjects are sorted, permuted with ``numpy.random.default_rng(seed)`` and taken
    in the order test, val, finetune; the rest is ``pretrain``. Each list is sorted.

    Shrink rule (warns): if ``n_test + n_val + n_finetune`` leaves no pretraining subject, the
    held-out total becomes ``max(floor(n / 2), k)`` (k = number of nonzero requests), capped
    at ``n - 1``, shared in proportion to the requests (largest remainder, never above a
    request); each nonzero request gets at least 1 subject in the priority order test,
    finetune, val while the budget lasts. So at least one subject pretrains and, with >= 3
    subjects, test and finetune are non-empty when requested (val may end up empty).

    Raises:
        ValueError: fewer than 3 distinct subjects, or negative sizes.
    """
    subs = sorted(set(map(str, subjects)))
    n = len(subs)
    if n < 3:
        raise ValueError(f"need at least 3 subjects for subject-level splits, got {n}")
    req = {"test": int(n_test), "val": int(n_val), "finetune": int(n_finetune)}
    if min(req.values()) < 0:
        raise ValueError(f"split sizes must be >= 0, got {req}")
    total = sum(req.values())
    sizes = dict(req)
    if total > n - 1:
        nz = [key for key in ("test", "finetune", "val") if req[key] > 0]  # priority order
        budget = min(max(n // 2, len(nz)), n - 1)
        target = {key: budget * req[key] / total for key in nz}
        sizes = dict.fromkeys(req, 0)
        for key in nz[:budget]:
            sizes[key] = min(max(1, math.floor(target[key])), req[key])
        while sum(sizes.values()) < budget:  # largest remainder, capped by the request
            key = max((q for q in nz if 0 < sizes[q] < req[q]), key=lambda q: target[q] - sizes[q])
            sizes[key] += 1
        while sum(sizes.values()) > budget:
            key = max((q for q in reversed(nz) if sizes[q] > 1), key=lambda q: sizes[q])
            sizes[key] -= 1
        warnings.warn(
            f"only {n} subjects for test={req['test']}, val={req['val']}, "
            f"finetune={req['finetune']}: using test={sizes['test']}, val={sizes['val']}, "
            f"finetune={sizes['finetune']}, pretrain={n - sum(sizes.values())}",
            stacklevel=2,
        )
    perm = np.random.default_rng(seed).permutation(n)
    shuffled = [subs[i] for i in perm]
    out: dict[str, list[str]] = {}
    a = 0
    for key in ("test", "val", "finetune"):
        out[key] = sorted(shuffled[a : a + sizes[key]])
        a += sizes[key]
    out["pretrain"] = sorted(shuffled[a:])
    return {k: out[k] for k in SPLIT_KEYS}


def _check_splits(splits: dict[str, list[str]]) -> None:
    missing = [k for k in SPLIT_KEYS if k not in splits]
    if missing:
        raise ValueError(f"splits lack {missing}")
    seen: dict[str, str] = {}
    for k in SPLIT_KEYS:
        for s in splits[k]:
            if s in seen:
                raise ValueError(f"subject {s!r} is in both {seen[s]!r} and {k!r}")
            seen[s] = k


def save_splits(splits: dict[str, list[str]], path: str | os.PathLike) -> None:
    """Write splits as JSON (checked disjoint)."""
    _check_splits(splits)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(p)
    tmp.write_text(json.dumps({k: list(splits[k]) for k in SPLIT_KEYS}, indent=1))
    os.replace(tmp, p)


def load_splits(path: str | os.PathLike) -> dict[str, list[str]]:
    """Read splits written by :func:`save_splits` (checked disjoint)."""
    d = _read_json(Path(path))
    splits = {k: [str(s) for s in d.get(k, [])] for k in SPLIT_KEYS}
    _check_splits(splits)
    return splits
