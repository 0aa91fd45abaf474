"""Writing records: ``.hea`` header, MAT-v4 ``.mat`` signals and WFDB ``.arousal`` annotations,
one record (:func:`write_record`) or a whole dataset (:func:`synthesize_dataset`)."""

from __future__ import annotations

import logging
import os
import shutil
import struct
import time
from collections.abc import Sequence
from concurrent.futures import as_completed
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

import numpy as np

from relpos.core.atomic import atomic_write_text
from relpos.core.workers import worker_pool
from relpos.sleep.format import EVENT_SUBTYPE, SIGNAL_NAMES, SIGNAL_UNITS, STAGE_SUBTYPE, STAGES
from relpos.sleep.synthetic.hypnograms import (
    HYPNO_CHARS,
    Hypnogram,
    as_hypnogram,
    load_table,
    plan_record,
)
from relpos.sleep.synthetic.physiology import SyntheticConfig, draw_subject
from relpos.sleep.synthetic.render import channel_baselines, channel_gains, synthesize

logger = logging.getLogger(__name__)

N_SIG = len(SIGNAL_NAMES)
MAT_HEADER_BYTES = 24

# --------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------


def _seed_streams(
    seed: int,
) -> tuple[np.random.Generator, np.random.Generator, np.random.Generator]:
    ss = np.random.SeedSequence(int(seed))
    a, b, c = ss.spawn(3)
    return np.random.default_rng(a), np.random.default_rng(b), np.random.default_rng(c)


def synthesize_record(
    record_id: str,
    seed: int,
    *,
    hypnogram: Hypnogram | tuple | str | int | None = None,
    max_hours: float | None = None,
    config: SyntheticConfig | None = None,
) -> dict[str, Any]:
    """Synthesize one PSG record in memory.

    Args:
        record_id: record name (e.g. ``"tr90-0001"``).
        seed: seed of everything (hypnogram pick, subject parameters, signals).
        hypnogram: ``None`` (a table row picked by ``seed``), a table row index, a table
            record name (``"tr03-0005"``), a :class:`Hypnogram`/4-tuple, or a stage string
            of ``W123R?`` (then the scored part starts at sample 0).
        max_hours: crop to at most this many hours: a contiguous window of the hypnogram
            with as many distinct stages as possible and a stage mix close to the whole
            night's (see :func:`choose_window`), after a lead-in of at most
            ``min(config.max_lead_in_s, 10% of max_hours)`` unlabelled seconds.
        config: generator parameters.

    Returns:
        dict with ``record_name``, ``signal`` (int16 digital values, shape (13, N),
        physical = (signal - baseline) / gain), ``gains``, ``baselines``,
        ``units``, ``sig_names``, ``fs``, ``sig_len``, ``first_scored_sample``,
        ``stage_notes`` (samples int64 array, list of notes), ``events`` (samples, notes;
        paired ``(type``/``type)`` markers), ``epoch_stages`` (``W123R`` string, one per
        30-s epoch from the first scored sample), ``source_record`` (replayed hypnogram),
        ``window_start_epoch``, ``subject`` (per-subject parameters) and ``seed``.
    """
    cfg = config or SyntheticConfig()
    t0 = time.perf_counter()
    rng_h, rng_s, rng_x = _seed_streams(seed)
    row = as_hypnogram(hypnogram, rng_h, cfg)
    plan = plan_record(row, max_hours, rng_h, cfg)
    subj = draw_subject(rng_s, cfg)
    digital, ev, tl = synthesize(plan, subj, rng_x, cfg)
    epoch = 30 * cfg.fs
    first = tl.scored_start
    codes = plan.codes
    change = np.flatnonzero(np.concatenate([[True], codes[1:] != codes[:-1]]))
    stage_samples = (first + change * epoch).astype(np.int64)
    stage_notes = [STAGES[c] for c in codes[change]]
    ev_samples = np.stack([ev.start, ev.end], axis=1).reshape(-1)
    ev_notes = [x for k in ev.kind for x in (f"({k}", f"{k})")]
    logger.debug(
        "synthesized %s (%d samples, %.2f h, hypnogram %s) in %.2f s",
        record_id,
        tl.n,
        tl.n / cfg.fs / 3600,
        plan.source,
        time.perf_counter() - t0,
    )
    return {
        "record_name": record_id,
        "signal": digital,
        "gains": channel_gains(subj),
        "baselines": channel_baselines(),
        "units": list(SIGNAL_UNITS),
        "sig_names": list(SIGNAL_NAMES),
        "fs": cfg.fs,
        "sig_len": tl.n,
        "first_scored_sample": int(first),
        "stage_notes": (stage_samples, stage_notes),
        "events": (ev_samples.astype(np.int64), ev_notes),
        "epoch_stages": "".join(HYPNO_CHARS[c] for c in codes),
        "source_record": plan.source,
        "window_start_epoch": plan.window_start,
        "subject": asdict(subj),
        "seed": int(seed),
    }


def _fmt_gain(g: float) -> str:
    return f"{g:.10g}"


def _header_text(rec: dict[str, Any]) -> str:
    name = rec["record_name"]
    sig = rec["signal"]  # (13, N)
    lines = [f"{name} {N_SIG} {rec['fs']} {rec['sig_len']}"]
    for c in range(N_SIG):
        col = sig[c]
        init = int(col[0]) if len(col) else 0
        s = int(np.sum(col, dtype=np.int64))
        checksum = (s + 32768) % 65536 - 32768  # 16-bit signed, like the WFDB C library
        gain = _fmt_gain(rec["gains"][c])
        base = rec["baselines"][c]
        gain_s = f"{gain}({base})" if base else gain
        lines.append(
            f"{name}.mat 16+{MAT_HEADER_BYTES} {gain_s}/{rec['units'][c]} 16 0 {init} "
            f"{checksum} 0 {rec['sig_names'][c]}"
        )
    return "\n".join(lines) + "\n"


def _write_mat(path: Path, signal: np.ndarray, chunk: int = 1 << 16) -> None:
    """MAT-v4 file with int16 variable ``val`` = ``signal`` (13, N).

    MAT-v4 stores the matrix column-major, i.e. the 13 channels interleaved per sample:
    exactly WFDB format 16 after the 24-byte header (byte-identical to
    ``scipy.io.savemat(path, {"val": signal}, format="4")``).  Written in chunks, so no
    second full-size copy is made.
    """
    n_sig, n = signal.shape
    # type 30 = little-endian (0) * 1000 + int16 (3) * 10 + full matrix (0)
    header = struct.pack("<5i", 30, n_sig, n, 0, 4) + b"val\x00"
    assert len(header) == MAT_HEADER_BYTES
    with open(path, "wb") as fh:
        fh.write(header)
        for a0 in range(0, n, chunk):
            block = np.ascontiguousarray(signal[:, a0 : a0 + chunk].T, dtype="<i2")
            fh.write(block.tobytes())


def write_annotations(directory: Path, rec: dict[str, Any]) -> None:
    import wfdb

    st_s, st_n = rec["stage_notes"]
    ev_s, ev_n = rec["events"]
    samples = np.concatenate([st_s, ev_s]).astype(np.int64)
    notes = list(st_n) + list(ev_n)
    subtype = [STAGE_SUBTYPE[x] for x in st_n] + [
        EVENT_SUBTYPE[x.strip("()")][0 if x.startswith("(") else 1] for x in ev_n
    ]
    chan = [0] * len(st_n) + [1] * len(ev_n)
    kind = np.array([0] * len(st_n) + [1] * len(ev_n))
    order = np.lexsort((kind, samples))
    wfdb.wrann(
        rec["record_name"],
        "arousal",
        samples[order],
        symbol=['"'] * len(order),
        subtype=np.asarray(subtype, dtype=np.int64)[order],
        chan=np.asarray(chan, dtype=np.int64)[order],
        num=np.zeros(len(order), dtype=np.int64),
        aux_note=[notes[i] for i in order],
        fs=rec["fs"],
        write_dir=str(directory),
    )


def _record_dir(out_dir: Path, record_id: str, labelled: bool, layout: str) -> Path:
    if layout == "nested":
        return Path(out_dir) / ("training" if labelled else "test") / record_id
    if layout == "flat":
        return Path(out_dir)
    raise ValueError(f"layout must be 'flat' or 'nested', not {layout!r}")


def _expected_files(directory: Path, record_id: str, labelled: bool) -> list[Path]:
    exts = (".mat", ".arousal", ".hea") if labelled else (".mat", ".hea")
    return [directory / f"{record_id}{e}" for e in exts]


def write_record(
    out_dir: str | os.PathLike,
    record_id: str,
    seed: int,
    *,
    labelled: bool = True,
    layout: Literal["flat", "nested"] = "flat",
    max_hours: float | None = None,
    config: SyntheticConfig | None = None,
    hypnogram: Hypnogram | tuple | str | int | None = None,
) -> Path:
    """Synthesize a record and write ``<rec>.hea``, ``<rec>.mat`` (and ``<rec>.arousal``).

    Files are first written into a hidden temporary folder next to the record and then
    moved into place with :func:`os.replace` (``.mat``, ``.arousal``, ``.hea`` last), so a
    killed run never leaves a record whose three files all exist but are incomplete; a
    leftover temporary folder is removed on the next write.

    Args:
        out_dir: dataset root.
        record_id: record name.
        seed: see :func:`synthesize_record`.
        labelled: write the ``.arousal`` annotation file (False: test-set style).
        layout: ``"flat"`` (``out_dir/<rec>.*``) or ``"nested"``
            (``out_dir/training/<rec>/<rec>.*``, unlabelled ones under ``test/``).
        max_hours, config, hypnogram: see :func:`synthesize_record`.

    Returns:
        Path of the ``.hea`` file.
    """
    directory = _record_dir(Path(out_dir), record_id, labelled, layout)
    rec = synthesize_record(
        record_id, seed, hypnogram=hypnogram, max_hours=max_hours, config=config
    )
    tmp = directory / f".{record_id}.partial"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        _write_mat(tmp / f"{record_id}.mat", rec["signal"])
        if labelled:
            write_annotations(tmp, rec)
        (tmp / f"{record_id}.hea").write_text(_header_text(rec))
        stale = directory / f"{record_id}.arousal"
        if not labelled and stale.exists():
            stale.unlink()
        for final in _expected_files(directory, record_id, labelled):
            os.replace(tmp / final.name, final)
    except OSError as e:
        why = e.strerror or str(e) or type(e).__name__
        raise OSError(f"{directory / record_id}: cannot write the record ({why})") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return directory / f"{record_id}.hea"


def _whole(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, np.integer))


def _check_dataset_args(n_records: Any, unlabelled: Any, max_hours: Any, jobs: Any) -> None:
    """One-line ``ValueError`` naming the first bad argument of :func:`synthesize_dataset`."""
    for name, v in (("n_records", n_records), ("unlabelled", unlabelled)):
        if not _whole(v) or v < 0:
            raise ValueError(f"{name} must be a whole number >= 0, got {v!r}")
    if n_records + unlabelled < 1:
        raise ValueError("n_records + unlabelled must be >= 1: there is no record to write")
    if max_hours is not None and (
        isinstance(max_hours, bool)
        or not isinstance(max_hours, (int, float, np.number))
        or not 0 < max_hours < float("inf")
    ):
        raise ValueError(f"max_hours must be a number of hours > 0, got {max_hours!r}")
    if not _whole(jobs) or jobs < 1:
        raise ValueError(f"jobs must be a whole number >= 1, got {jobs!r}")


def _check_out_dir(out: Path) -> None:
    """Raise a one-line ``NotADirectoryError`` when ``out`` or a folder above it is a file."""
    for p in (out, *out.parents):
        if p.exists():
            if not p.is_dir():
                what = "is a file" if p == out else f"lies under the file {p}"
                raise NotADirectoryError(f"{out}: {what}, not a directory; choose another output")
            return


def _write_job(kwargs: dict[str, Any]) -> Path:
    return write_record(**kwargs)


def synthesize_dataset(
    out_dir: str | os.PathLike,
    n_records: int,
    *,
    seed: int = 0,
    max_hours: float | None = None,
    layout: Literal["flat", "nested"] = "nested",
    unlabelled: int = 0,
    jobs: int = 1,
    progress: bool = True,
    config: SyntheticConfig | None = None,
) -> list[Path]:
    """Write a synthetic challenge-style dataset (idempotent, optionally parallel).

    ``n_records`` labelled records ``<labelled_prefix>-0001...`` plus ``unlabelled``
    records without ``.arousal`` ``<unlabelled_prefix>-0001...`` (nested layout: under
    ``training/`` and ``test/``).  Each record replays a different real hypnogram (a
    seeded permutation of the table) and gets its own seed derived from ``seed``.  Records
    whose files all exist are skipped; a ``RECORDS`` list is (re)written only when its
    content changes.

    Returns:
        ``.hea`` paths of all records (labelled first), in record-id order.

    Raises:
        ValueError: ``n_records`` or ``unlabelled`` < 0, no record at all, ``max_hours`` <= 0
            or ``jobs`` < 1 (one line naming the argument).
        NotADirectoryError: ``out_dir`` or a folder above it is a file.
        OSError: a record cannot be written (names it).
    """
    _check_dataset_args(n_records, unlabelled, max_hours, jobs)
    cfg = config or SyntheticConfig()
    out = Path(out_dir)
    _check_out_dir(out)
    table = load_table(cfg.hypnogram_path)
    perm = np.random.default_rng(np.random.SeedSequence([int(seed), 7])).permutation(len(table))
    jobs_kwargs: list[dict[str, Any]] = []
    for lab, count, prefix in (
        (True, n_records, cfg.labelled_prefix),
        (False, unlabelled, cfg.unlabelled_prefix),
    ):
        for i in range(count):
            j = i if lab else n_records + i
            rec_seed = int(np.random.SeedSequence([int(seed), int(lab), i]).generate_state(1)[0])
            jobs_kwargs.append(
                dict(
                    out_dir=out,
                    record_id=f"{prefix}-{i + 1:04d}",
                    seed=rec_seed,
                    labelled=lab,
                    layout=layout,
                    max_hours=max_hours,
                    config=cfg,
                    hypnogram=int(perm[j % len(table)]),
                )
            )
    paths = [
        _record_dir(out, kw["record_id"], kw["labelled"], layout) / f"{kw['record_id']}.hea"
        for kw in jobs_kwargs
    ]
    todo = []
    for kw in jobs_kwargs:
        d = _record_dir(out, kw["record_id"], kw["labelled"], layout)
        if all(p.exists() for p in _expected_files(d, kw["record_id"], kw["labelled"])):
            # complete; drop a temporary folder left by a run killed after the last move
            shutil.rmtree(d / f".{kw['record_id']}.partial", ignore_errors=True)
            continue
        todo.append(kw)
    logger.info("synthetic dataset %s: %d records, %d to write", out, len(jobs_kwargs), len(todo))
    if todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc="synthetic PSG", unit="rec", disable=not progress)
        t0 = time.perf_counter()
        if jobs > 1 and len(todo) > 1:
            with worker_pool(min(jobs, len(todo))) as pool:
                futures = [pool.submit(_write_job, kw) for kw in todo]
                for fut in as_completed(futures):
                    fut.result()
                    bar.update(1)
        else:
            for kw in todo:
                _write_job(kw)
                bar.update(1)
        bar.close()
        logger.info("wrote %d records in %.1f s", len(todo), time.perf_counter() - t0)
    _write_records_lists(out, jobs_kwargs, layout)
    return paths


def _write_records_lists(out: Path, jobs_kwargs: list[dict[str, Any]], layout: str) -> None:
    """``RECORDS`` files like PhysioNet's (``training/RECORDS`` lists ``tr..-..../``)."""
    groups: dict[Path, list[str]] = {}
    for kw in jobs_kwargs:
        if layout == "nested":
            root = out / ("training" if kw["labelled"] else "test")
            groups.setdefault(root, []).append(f"{kw['record_id']}/")
        else:
            groups.setdefault(out, []).append(kw["record_id"])
    for root, names in groups.items():
        path = root / "RECORDS"
        existing = set(path.read_text().split()) if path.exists() else set()
        text = "\n".join(sorted(existing | set(names))) + "\n"
        if path.exists() and path.read_text() == text:
            continue
        atomic_write_text(path, text)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m relpos.sleep.synthetic OUT N [--seed S] [--max-hours H] [--jobs J] ...``"""
    import argparse

    p = argparse.ArgumentParser(
        description="Synthetic polysomnography records in the PhysioNet/CinC Challenge 2018 file format."
    )
    p.add_argument("out_dir")
    p.add_argument("n_records", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-hours", type=float, default=None)
    p.add_argument("--layout", choices=("nested", "flat"), default="nested")
    p.add_argument("--unlabelled", type=int, default=0)
    p.add_argument("--jobs", type=int, default=1)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    synthesize_dataset(
        args.out_dir,
        args.n_records,
        seed=args.seed,
        max_hours=args.max_hours,
        layout=args.layout,
        unlabelled=args.unlabelled,
        jobs=args.jobs,
    )
