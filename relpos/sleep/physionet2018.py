"""Reader for the PhysioNet/CinC Challenge 2018 ("You Snooze You Win") polysomnography records.

A record ``trXX-XXXX`` consists of

* ``trXX-XXXX.hea`` -- WFDB header (13 signals at 200 Hz, gains/baselines per record),
* ``trXX-XXXX.mat`` -- the samples: WFDB format 16 (little-endian int16, channels interleaved)
  inside a MAT-v4 file whose 24-byte header precedes the data (``16+24`` in the header),
* ``trXX-XXXX.arousal`` -- WFDB annotations: sleep stages ``W N1 N2 N3 R`` as ``aux_note`` at
  the absolute sample where the stage changes, plus paired event markers such as
  ``(arousal_rera`` ... ``arousal_rera)`` that are not stages.

Facts checked on the real files are in ``tests/data/physionet2018/README.md``. The labels are
30-s epochs on the grid that starts at the *absolute* sample of the first stage note (no
shift by that onset); the part before it is unscored and carries no label.

Reading uses :mod:`wfdb` (``rdrecord(..., physical=True, return_res=32, smooth_frames=False)``,
measured fastest of the wfdb variants, see :func:`read_signals`).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import wfdb

from relpos.sleep.format import (
    EEG_CHANNELS,
    EPOCH_SECONDS,
    STAGE_TO_INDEX,
    STAGES,
    UNKNOWN_STAGE,
    UNLABELLED,
    classify_note,
)

logger = logging.getLogger(__name__)

__all__ = [
    "EEG_CHANNELS",
    "EPOCH_SECONDS",
    "STAGES",
    "STAGE_TO_INDEX",
    "UNLABELLED",
    "Record",
    "RecordError",
    "RecordFiles",
    "StageLabels",
    "find_records",
    "read_header",
    "read_record",
    "read_signals",
    "read_stage_labels",
]

# Bytes per sample of the byte-aligned WFDB formats (used for the size check before reading).
_BYTES_PER_SAMPLE: dict[str, int] = {"8": 1, "80": 1, "16": 2, "61": 2, "160": 2, "24": 3, "32": 4}


class RecordError(ValueError):
    """A record cannot be read (missing/corrupt file, missing channel, ...).

    The message always names the offending file.
    """


@dataclass(frozen=True)
class RecordFiles:
    """Paths of the files of one record.

    Attributes:
        record_id: e.g. ``"tr03-0005"``.
        header: the ``.hea`` file.
        signal: the ``.mat`` signal file, or None where it is missing.
        arousal: the ``.arousal`` annotation file, or None (unlabelled record).
        subject_id: subject of the record; one subject per record in this challenge, so it
            defaults to ``record_id``.
    """

    record_id: str
    header: Path
    signal: Path | None = None
    arousal: Path | None = None
    subject_id: str = ""

    def __post_init__(self) -> None:
        if not self.subject_id:
            object.__setattr__(self, "subject_id", self.record_id)

    @property
    def base(self) -> str:
        """The WFDB record name (header path without ``.hea``), as wfdb functions want it."""
        return str(self.header.with_suffix(""))

    @property
    def path(self) -> Path:
        """The file that names the record in messages (its header)."""
        return self.header

    def read(self, channels: Sequence[str] = EEG_CHANNELS, require_labels: bool = False) -> Record:
        """:func:`read_record` of this record."""
        return read_record(self, channels, require_labels)


@dataclass
class StageLabels:
    """30-s sleep-stage labels of a record.

    Attributes:
        onset: absolute sample (at ``fs``) where epoch 0 starts = the first stage note.
        labels: (n_epochs,) int8, index into :data:`STAGES` or :data:`UNLABELLED`. Epoch ``k``
            covers samples ``[onset + k * epoch_samples, onset + (k + 1) * epoch_samples)``.
        fs: sampling rate of the annotation grid (Hz).
        epoch_samples: samples per epoch (``30 * fs``).
        n_stage_notes: number of stage notes (known or unknown) in the annotation file.
    """

    onset: int
    labels: np.ndarray
    fs: float
    epoch_samples: int
    n_stage_notes: int = 0

    @property
    def onset_seconds(self) -> float:
        return self.onset / self.fs


@dataclass
class Record:
    """One record read into memory.

    Attributes:
        record_id, subject_id: identifiers.
        fs: sampling rate (Hz).
        signal: (C, T) float32 in physical units (uV for EEG); NaN where the WFDB sample was
            the format's invalid-sample marker.
        channels: names of the C channels.
        labels: (n_epochs,) int8 stage labels or None (no ``.arousal``).
        onset: sample where label epoch 0 starts (0 for unlabelled records).
    """

    record_id: str
    subject_id: str
    fs: float
    signal: np.ndarray
    channels: tuple[str, ...]
    labels: np.ndarray | None = None
    onset: int = 0


# --------------------------------------------------------------------------------------------
# Finding records
# --------------------------------------------------------------------------------------------


def _record_files_for_header(header: Path) -> RecordFiles:
    rid = header.stem
    mat = header.with_suffix(".mat")
    arousal = header.with_suffix(".arousal")
    return RecordFiles(
        record_id=rid,
        header=header,
        signal=mat if mat.is_file() else None,
        arousal=arousal if arousal.is_file() else None,
    )


def find_records(root: str | os.PathLike) -> list[RecordFiles]:
    """Find the records under ``root``.

    Works on the challenge download layout (``training/tr03-0005/tr03-0005.{hea,mat,arousal}``),
    on flat directories (all files side by side) and on a single ``.hea`` path. A record is
    any ``<id>.hea``; its signal is ``<id>.mat`` and its labels ``<id>.arousal`` in the same
    directory (either may be missing: ``None``).

    Returns:
        The records sorted by record id.

    Raises:
        FileNotFoundError: ``root`` does not exist.
        ValueError: the same record id occurs in two places.
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"no such file or directory: {root}")
    if root.is_file():
        if root.suffix != ".hea":
            raise ValueError(f"{root}: expected a directory or a .hea file")
        return [_record_files_for_header(root)]
    found: dict[str, RecordFiles] = {}
    for header in sorted(root.rglob("*.hea")):
        if any(part.startswith(".") for part in header.relative_to(root).parts):
            continue
        rec = _record_files_for_header(header)
        if rec.record_id in found:
            raise ValueError(
                f"record {rec.record_id!r} found twice: {found[rec.record_id].header} and {header}"
            )
        found[rec.record_id] = rec
    return [found[k] for k in sorted(found)]


# --------------------------------------------------------------------------------------------
# Signals
# --------------------------------------------------------------------------------------------


def read_header(rec: RecordFiles) -> wfdb.Record:
    """Read the WFDB header of ``rec``.

    Raises:
        RecordError: the header is missing or cannot be parsed.
    """
    if not rec.header.is_file():
        raise RecordError(f"{rec.header}: header file not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            header = wfdb.rdheader(rec.base)
    except Exception as e:  # wfdb raises assorted types on malformed headers
        raise RecordError(f"{rec.header}: unreadable header ({type(e).__name__}: {e})") from e
    if not header.sig_name or header.sig_len is None or not header.fs:
        raise RecordError(f"{rec.header}: unreadable header (no signals, length or fs)")
    return header


def _channel_indices(rec: RecordFiles, header: wfdb.Record, channels: Sequence[str]) -> list[int]:
    names = list(header.sig_name)
    missing = [c for c in channels if c not in names]
    if missing:
        raise RecordError(f"{rec.header}: missing channel(s) {missing}; the header has {names}")
    return [names.index(c) for c in channels]


def _check_signal_file(rec: RecordFiles, header: wfdb.Record, idx: Sequence[int]) -> Path:
    """Check that the signal file exists and has exactly the size the header announces.

    Done before reading so that a truncated or mismatched file gives a clear error instead
    of wfdb's short read or garbage.
    """
    file_names = {header.file_name[i] for i in idx}
    if len(file_names) != 1:
        raise RecordError(f"{rec.header}: channels spread over several files {sorted(file_names)}")
    path = rec.header.parent / file_names.pop()
    if not path.is_file():
        raise RecordError(f"{path}: signal file not found (named in {rec.header.name})")
    # All signals stored in that file (the file interleaves all of them, not only `idx`).
    in_file = [i for i, f in enumerate(header.file_name) if f == path.name]
    fmts = {header.fmt[i] for i in in_file}
    byte_offset = header.byte_offset or [0] * header.n_sig
    offsets = {int(byte_offset[i] or 0) for i in in_file}
    spf = {int((header.samps_per_frame or [1] * header.n_sig)[i] or 1) for i in in_file}
    if spf != {1}:
        raise RecordError(f"{rec.header}: several samples per frame are not supported")
    if len(fmts) == 1 and len(offsets) == 1 and next(iter(fmts)) in _BYTES_PER_SAMPLE:
        fmt, offset = fmts.pop(), offsets.pop()
        bps = _BYTES_PER_SAMPLE[fmt]
        expected = offset + bps * len(in_file) * int(header.sig_len)
        size = path.stat().st_size
        if size != expected:
            kind = "truncated" if size < expected else "longer than its header says"
            have = (size - offset) / (bps * len(in_file))
            raise RecordError(
                f"{path}: signal file {kind}: {size} bytes, but {rec.header.name} announces "
                f"{header.sig_len} samples x {len(in_file)} signals (format {fmt}, offset "
                f"{offset}) = {expected} bytes; the file holds {have:.1f} samples per signal "
                f"(header/.mat length mismatch)"
            )
    return path


def read_signals(
    rec: RecordFiles,
    channels: Sequence[str] = EEG_CHANNELS,
    *,
    header: wfdb.Record | None = None,
) -> tuple[np.ndarray, float]:
    """Read ``channels`` of a record in physical units.

    Physical value = (digital - baseline) / gain with the gains and baselines of this record's
    header (they differ per record). The invalid-sample marker of the format (-32768 for
    format 16) becomes NaN.

    Implementation choice (measured on an 8-h, 13-signal, 200 Hz record, 6 channels read, warm
    page cache, 2-core machine): ``rdrecord(physical=True, return_res=32, smooth_frames=False)``
    0.23 s; ``physical=False, smooth_frames=False`` + own float32 scaling 0.24 s;
    ``physical=False`` + own scaling 0.36 s; ``physical=True, return_res=32`` 0.32 s. All give
    identical float32 values; the first also yields C-contiguous channel rows.

    Args:
        rec: the record.
        channels: signal names to read, in this order.
        header: an already read header (saves re-parsing).

    Returns:
        ``(signal, fs)``: signal (C, T) float32, C-contiguous; fs in Hz.

    Raises:
        RecordError: unreadable header, missing channel (message lists the header's channels),
            missing/truncated signal file or length mismatch with the header.
    """
    if header is None:
        header = read_header(rec)
    idx = _channel_indices(rec, header, channels)
    path = _check_signal_file(rec, header, idx)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = wfdb.rdrecord(
                rec.base, channels=idx, physical=True, return_res=32, smooth_frames=False
            )
    except Exception as e:
        raise RecordError(f"{path}: cannot read signals ({type(e).__name__}: {e})") from e
    signal = np.stack(r.e_p_signal).astype(np.float32, copy=False)
    if signal.shape != (len(idx), header.sig_len):
        raise RecordError(
            f"{path}: read {signal.shape[1]} samples, header {rec.header.name} says "
            f"{header.sig_len}"
        )
    return signal, float(header.fs)


# --------------------------------------------------------------------------------------------
# Labels
# --------------------------------------------------------------------------------------------


def _read_annotations(path: Path) -> tuple[np.ndarray, list[str], float | None]:
    """Samples, notes and fs of a WFDB annotation file via ``wfdb.rdann``.

    ``wfdb.rdann`` drops every NOTE annotation at sample 0 (it takes them for file-level
    definitions such as ``## time resolution``); a stage note at sample 0 (3 of the 994
    training records are scored from sample 0) would be lost and the grid would start at the
    second note. Such notes are recovered from wfdb's low-level parser.
    """
    try:
        with warnings.catch_warnings():  # pandas deprecation noise inside wfdb
            warnings.simplefilter("ignore")
            ann = wfdb.rdann(str(path.with_suffix("")), path.suffix.lstrip("."))
    except Exception as e:
        raise RecordError(f"{path}: unreadable annotation file ({type(e).__name__}: {e})") from e
    samples = np.asarray(ann.sample, dtype=np.int64)
    notes = [n or "" for n in (ann.aux_note or [""] * len(samples))]
    try:
        from wfdb.io import annotation as _ann

        raw = _ann.load_byte_pairs(str(path.with_suffix("")), path.suffix.lstrip("."), None)
        s_raw, store, _, _, _, aux = _ann.proc_ann_bytes(raw, None)
        zero = [
            a
            for s, lab, a in zip(s_raw, store, aux)
            if int(s) == 0 and int(lab) == 22 and a and not a.startswith("## ")
        ]
    except Exception as e:  # pragma: no cover - wfdb internals changed
        logger.debug("%s: cannot check for notes at sample 0 (%s)", path, e)
        zero = []
    if zero and not (samples == 0).any():  # (a wfdb that keeps them needs no recovery)
        samples = np.concatenate([np.zeros(len(zero), np.int64), samples])
        notes = zero + notes
    return samples, notes, (float(ann.fs) if ann.fs else None)


def _stage_notes(
    path: Path, ann_samples: np.ndarray, notes: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """The stage notes among all notes, sorted by sample: (samples (n,) int64, labels (n,)
    int64); event markers are left out, unknown stage-like notes warn and become
    :data:`UNLABELLED`."""
    codes = [classify_note(n) for n in notes]
    keep = np.array([c is not None for c in codes], dtype=bool)
    samples = ann_samples[keep]
    code = np.array([c for c in codes if c is not None], dtype=np.int64)
    order = np.argsort(samples, kind="stable")
    samples, code = samples[order], code[order]
    unknown = code == UNKNOWN_STAGE
    if unknown.any():
        bad = sorted({n.strip() for n, c in zip(notes, codes) if c == UNKNOWN_STAGE})
        warnings.warn(
            f"{path}: unknown stage note(s) {bad} at sample(s) {samples[unknown][:10].tolist()}"
            f"; the epochs they cover are unlabelled",
            stacklevel=3,
        )
        code = np.where(unknown, UNLABELLED, code)
    return samples, code


def read_stage_labels(
    rec: RecordFiles,
    n_samples: int,
    fs: float | None = None,
    *,
    epoch_seconds: float = EPOCH_SECONDS,
) -> StageLabels | None:
    """Read the 30-s sleep-stage labels of a record from its ``.arousal`` file.

    Rules:

    * stage notes ``W N1 N2 N3 R`` sit at absolute sample positions; the stage holds until
      the next stage note;
    * epochs of ``epoch_seconds`` start at the first stage note (the onset; positions are
      NOT shifted by it) -- ``n_epochs = (n_samples - onset) // (epoch_seconds * fs)``;
    * the unscored part before the first note has no label (it is not an epoch);
    * event markers ``(xxx`` / ``xxx)`` are ignored;
    * an unknown note that is not an event marker (e.g. ``N4``) warns and leaves the epochs
      until the next stage note unlabelled; a stage note off the 30-s grid warns and leaves
      the epoch it falls into unlabelled (mixed epoch).

    Args:
        rec: the record.
        n_samples: length of the signal in samples (at ``fs``).
        fs: sampling rate of the signal; defaults to the annotation's fs. A different
            annotation fs raises.
        epoch_seconds: epoch length.

    Returns:
        :class:`StageLabels`, or None when the record has no ``.arousal`` file.

    Raises:
        RecordError: the annotation file cannot be read or its fs differs from ``fs``.
    """
    if rec.arousal is None:
        return None
    path = Path(rec.arousal)
    ann_samples, notes, ann_fs = _read_annotations(path)
    if fs is None:
        if ann_fs is None:
            raise RecordError(f"{path}: annotation file has no fs and none was given")
        fs = ann_fs
    elif ann_fs is not None and abs(ann_fs - fs) > 1e-9:
        raise RecordError(f"{path}: annotations at {ann_fs} Hz but the signal is at {fs} Hz")
    epoch_samples = round(epoch_seconds * fs)
    if abs(epoch_samples - epoch_seconds * fs) > 1e-6:
        raise RecordError(f"{path}: {epoch_seconds} s is not a whole number of samples at {fs} Hz")

    samples, code = _stage_notes(path, ann_samples, notes)
    if code.size == 0:
        warnings.warn(f"{path}: no sleep-stage notes; the record is unlabelled", stacklevel=2)
        n = max(int(n_samples) // epoch_samples, 0)
        return StageLabels(0, np.full(n, UNLABELLED, np.int8), fs, epoch_samples, 0)
    onset = int(samples[0])
    n_epochs = max((int(n_samples) - onset) // epoch_samples, 0)
    starts = onset + epoch_samples * np.arange(n_epochs, dtype=np.int64)
    # Stage in effect at the start of each epoch (last note at or before the start; where
    # several notes share a sample, the last one wins).
    pos = np.searchsorted(samples, starts, side="right") - 1
    labels = code[pos].astype(np.int8)
    off_grid = (samples - onset) % epoch_samples != 0
    if off_grid.any():
        warnings.warn(
            f"{path}: {int(off_grid.sum())} stage note(s) off the {epoch_seconds}-s grid "
            f"(e.g. sample {int(samples[off_grid][0])}); epochs containing a stage change "
            f"are unlabelled",
            stacklevel=2,
        )
        k = (samples[off_grid] - onset) // epoch_samples
        labels[k[k < n_epochs]] = UNLABELLED
    return StageLabels(onset, labels, fs, epoch_samples, int(code.size))


# --------------------------------------------------------------------------------------------
# Whole record
# --------------------------------------------------------------------------------------------


def read_record(
    rec: RecordFiles,
    channels: Sequence[str] = EEG_CHANNELS,
    require_labels: bool = False,
) -> Record:
    """Read signals and labels of a record.

    Args:
        rec: the record.
        channels: signal names to read.
        require_labels: raise instead of returning an unlabelled record when the
            ``.arousal`` file is missing.

    Returns:
        :class:`Record` with signal (C, T) float32 and labels (n_epochs,) int8 or None.

    Raises:
        RecordError: see :func:`read_signals`; missing labels with ``require_labels``.
    """
    if require_labels and rec.arousal is None:
        raise RecordError(
            f"{rec.header.with_suffix('.arousal')}: label file missing (require_labels=True)"
        )
    header = read_header(rec)
    signal, fs = read_signals(rec, channels, header=header)
    stages = read_stage_labels(rec, signal.shape[1], fs)
    return Record(
        record_id=rec.record_id,
        subject_id=rec.subject_id,
        fs=fs,
        signal=signal,
        channels=tuple(channels),
        labels=None if stages is None else stages.labels,
        onset=0 if stages is None else stages.onset,
    )
