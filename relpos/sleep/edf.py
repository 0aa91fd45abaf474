"""EDF recordings and ``mne.io.Raw`` objects with stage annotations, read into the same
:class:`~relpos.sleep.physionet2018.Record` as a PhysioNet 2018 record (``relpos prepare
--format edf``).

Finding recordings (:func:`find_edf_records`, naming in :class:`EdfNaming`): every file under
the folder that matches the PSG glob (default Sleep-EDF's ``*-PSG.edf``) is a recording; its
hypnogram is the one file in the same folder that matches the hypnogram template filled with
the PSG's name (default ``{stem:.7}?-Hypnogram.edf``: Sleep-EDF's ``SC4001E0-PSG.edf`` pairs
with ``SC4001EC-Hypnogram.edf``, the two share their first 7 characters and the scorer's
letter differs). A hypnogram is any file :func:`mne.read_annotations` reads (EDF+, ``.txt``,
``.csv``, ``.fif``); without one the PSG's own EDF+ annotations are used. A PSG with no stage
annotations at all is stored unlabelled (pretraining only; ``require_labels`` skips it), as a
PhysioNet record without ``.arousal`` is. Subject ids come from the record id by a regex
(Sleep-EDF: ``SC4ssN``/``ST7ssN`` -> ``SC4ss``/``ST7ss``, the two nights of a subject share
it), else the record id.

Reading (:func:`read_edf`): :func:`mne.io.read_raw_edf` loads only the chosen channels; signals
in volts become µV (the unit of the store's EEG); annotations become 30-s labels by
:mod:`relpos.sleep.annotations` (R&K stages 3 and 4 are N3; ``?`` and movement time are
unlabelled). EDF stores 16-bit samples: a round trip through EDF costs at most half a digital
step, (physical max - physical min) / 65535 / 2.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from relpos.sleep.annotations import epoch_labels, stage_runs
from relpos.sleep.physionet2018 import Record, RecordError

if TYPE_CHECKING:
    import mne

logger = logging.getLogger(__name__)

__all__ = [
    "SLEEP_EDF",
    "EdfFiles",
    "EdfNaming",
    "edf_channels",
    "find_edf_records",
    "read_edf",
    "record_from_raw",
    "write_edf",
]

Pattern = Annotated[str, Field(min_length=1, max_length=300)]


class EdfNaming(BaseModel):
    """How EDF recordings, hypnograms and subjects are named (defaults: Sleep-EDF).

    Attributes:
        psg: glob of the recordings, searched recursively (default ``*-PSG.edf``, or ``*.edf``
            when ``hypnogram`` is given).
        hypnogram: glob of a recording's hypnogram in its folder, written as a template with
            ``{stem}`` (the PSG's file name without extension) and ``{id}`` (the record id);
            format specs work, e.g. ``{stem:.7}`` = its first 7 characters.
        subject: regex searched in the record id; its first group (or the match) is the
            subject, else the record id is.
    """

    model_config = ConfigDict(extra="forbid")

    psg: Pattern | None = None
    hypnogram: Pattern = "{stem:.7}?-Hypnogram.edf"
    subject: Pattern = r"^(S[CT]\d{3})\d"

    @field_validator("hypnogram")
    @classmethod
    def _template(cls, v: str) -> str:
        try:
            v.format(stem="SC4001E0-PSG", id="SC4001E0")
        except (KeyError, IndexError, ValueError) as e:
            raise ValueError(
                f"hypnogram template {v!r} is not valid ({type(e).__name__}: {e}); it may use "
                f"{{stem}} and {{id}}"
            ) from None
        return v

    @field_validator("subject")
    @classmethod
    def _regex(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as e:
            raise ValueError(f"subject regex {v!r} is not valid ({e})") from None
        return v

    @model_validator(mode="after")
    def _psg_default(self) -> EdfNaming:
        if self.psg is None:
            sleep_edf = self.hypnogram == type(self).model_fields["hypnogram"].default
            self.psg = "*-PSG.edf" if sleep_edf else "*.edf"
        return self

    def record_id(self, psg: Path) -> str:
        """``SC4001E0-PSG.edf`` -> ``SC4001E0`` (the stem less a ``-PSG`` suffix)."""
        return re.sub(r"[-_]PSG$", "", psg.stem, flags=re.IGNORECASE)

    def subject_id(self, record_id: str) -> str:
        m = re.search(self.subject, record_id)
        return record_id if m is None else (m.group(1) if m.groups() else m.group(0))

    def hypnogram_glob(self, psg: Path) -> str:
        return self.hypnogram.format(stem=psg.stem, id=self.record_id(psg))


#: Sleep-EDF's naming (the default).
SLEEP_EDF = EdfNaming()


@dataclass(frozen=True)
class EdfFiles:
    """One EDF recording: its PSG file and its hypnogram (None: the PSG's own annotations)."""

    record_id: str
    psg: Path
    hypnogram: Path | None = None
    subject_id: str = ""

    def __post_init__(self) -> None:
        if not self.subject_id:
            object.__setattr__(self, "subject_id", self.record_id)

    @property
    def path(self) -> Path:
        """The file that names the record in messages."""
        return self.psg

    def read(self, channels: Sequence[str], require_labels: bool = False) -> Record:
        return read_edf(self, channels, require_labels)


def _visible(path: Path, root: Path) -> bool:
    return not any(p.startswith(".") for p in path.relative_to(root).parts)


def _hypnogram_of(psg: Path, naming: EdfNaming) -> Path | None:
    pattern = naming.hypnogram_glob(psg)
    found = [p for p in sorted(psg.parent.glob(pattern)) if p != psg and p.is_file()]
    if len(found) > 1:
        names = ", ".join(p.name for p in found[:4])
        raise ValueError(
            f"{psg}: {len(found)} hypnograms match {pattern!r} ({names}); give a stricter "
            f"hypnogram template (--hypnogram)"
        )
    return found[0] if found else None


def find_edf_records(root: str | Path, naming: EdfNaming = SLEEP_EDF) -> list[EdfFiles]:
    """The EDF recordings under ``root`` (a folder, searched recursively, or one PSG file)
    with their hypnograms, sorted by record id; ``[]`` when no PSG matches.

    A file that is the hypnogram of another recording is not a recording itself. PSGs without
    a hypnogram are logged (they are stored unlabelled unless their own annotations hold
    stages).

    Raises:
        FileNotFoundError: ``root`` does not exist.
        ValueError: two recordings share a record id; several hypnograms match one PSG.
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"no such file or directory: {root}")
    if root.is_file():
        psgs = [root]
    else:
        psgs = [p for p in sorted(root.rglob(naming.psg or "*")) if p.is_file()]
        psgs = [p for p in psgs if _visible(p, root)]
    hyps = {p: _hypnogram_of(p, naming) for p in psgs}
    taken = {h for h in hyps.values() if h is not None}
    found: dict[str, EdfFiles] = {}
    for psg in (p for p in psgs if p not in taken):
        rid = naming.record_id(psg)
        if rid in found:
            raise ValueError(f"record {rid!r} found twice: {found[rid].psg} and {psg}")
        found[rid] = EdfFiles(rid, psg, hyps[psg], naming.subject_id(rid))
    alone = [r.psg.name for r in found.values() if r.hypnogram is None]
    if alone:
        logger.warning(
            "%d of %d PSG files have no hypnogram matching %r (e.g. %s): their own annotations "
            "are used, else they are stored unlabelled",
            len(alone), len(found), naming.hypnogram, alone[0],
        )  # fmt: skip
    return [found[k] for k in sorted(found)]


def edf_channels(path: Path) -> list[str]:
    """The channel names of an EDF file (header only).

    Raises:
        RecordError: the file cannot be read as EDF.
    """
    import mne

    try:
        return list(mne.io.read_raw_edf(path, preload=False, verbose="error").ch_names)
    except Exception as e:  # mne raises assorted types on malformed files
        raise RecordError(f"{path}: unreadable EDF ({type(e).__name__}: {e})") from e


def _edf_start(path: Path) -> dt.datetime | None:
    """The start date and time in an EDF header (bytes 168-183, ``dd.mm.yyhh.mm.ss``), UTC."""
    try:
        with open(path, "rb") as f:
            head = f.read(184)
        date, time = head[168:176].decode("ascii"), head[176:184].decode("ascii")
        d, m, y = (int(v) for v in date.split("."))
        hh, mm, ss = (int(v) for v in time.split("."))
    except (OSError, ValueError):
        return None
    year = 1900 + y if y >= 85 else 2000 + y  # the EDF spec's clipping date
    try:
        return dt.datetime(year, m, d, hh, mm, ss, tzinfo=dt.timezone.utc)
    except ValueError:
        return None


def _hypnogram(path: Path, psg_start: dt.datetime | None) -> mne.Annotations:
    """A hypnogram file's annotations, onsets moved to seconds from the PSG's start when both
    are EDF files with different start times."""
    import mne

    try:
        ann = mne.read_annotations(path)
    except Exception as e:
        raise RecordError(f"{path}: unreadable hypnogram ({type(e).__name__}: {e})") from e
    start = _edf_start(path) if path.suffix.lower() in (".edf", ".bdf") else None
    if ann.orig_time is None and start is not None and psg_start is not None:
        shift = (start - psg_start).total_seconds()
        if shift:
            logger.info("%s starts %.0f s after its PSG; onsets moved", path.name, shift)
            ann = mne.Annotations(ann.onset + shift, ann.duration, ann.description)
    return ann


def read_edf(files: EdfFiles, channels: Sequence[str], require_labels: bool = False) -> Record:
    """Read ``channels`` of an EDF recording (in µV) and its 30-s stage labels.

    Raises:
        RecordError: unreadable PSG or hypnogram, a missing channel (the message lists the
            file's channels), no stage annotations with ``require_labels``.
    """
    import mne

    names = edf_channels(files.psg)
    missing = [c for c in channels if c not in names]
    if missing:
        raise RecordError(f"{files.psg}: missing channel(s) {missing}; the file has {names}")
    try:
        raw = mne.io.read_raw_edf(files.psg, include=list(channels), preload=True, verbose="error")
    except Exception as e:
        raise RecordError(f"{files.psg}: unreadable EDF ({type(e).__name__}: {e})") from e
    ann = None
    if files.hypnogram is not None:
        meas = raw.info["meas_date"]
        ann = _hypnogram(files.hypnogram, meas if isinstance(meas, dt.datetime) else None)
    rec = record_from_raw(
        raw, channels, annotations=ann, record_id=files.record_id, subject_id=files.subject_id,
        where=str(files.hypnogram or files.psg),
    )  # fmt: skip
    if require_labels and rec.labels is None:
        what = files.hypnogram or f"{files.psg} (no hypnogram file)"
        raise RecordError(f"{what}: no sleep-stage annotations (require_labels=True)")
    return rec


def _seconds_from_start(raw: mne.io.BaseRaw, ann: mne.Annotations, attached: bool) -> np.ndarray:
    """Annotation onsets in seconds from the raw's first sample, by MNE's conventions: with
    ``orig_time`` they count from it; without, from the first sample, except that annotations
    attached to a raw (``raw.annotations``) then include ``raw.first_time``."""
    t = np.asarray(ann.onset, np.float64)
    if ann.orig_time is None:
        return t - raw.first_time if attached else t
    meas = raw.info["meas_date"]
    if meas is None:
        raise ValueError("the annotations have an orig_time but the raw has no meas_date")
    return t + (ann.orig_time - meas).total_seconds() - raw.first_time


def record_from_raw(
    raw: mne.io.BaseRaw,
    channels: Sequence[str] | None = None,
    *,
    annotations: mne.Annotations | None = None,
    record_id: str | None = None,
    subject_id: str | None = None,
    where: str | None = None,
) -> Record:
    """An ``mne.io.Raw`` with stage annotations as a :class:`Record`.

    Args:
        raw: the recording (loaded or not).
        channels: channel names to keep, in this order (default: its EEG channels).
        annotations: the hypnogram (default ``raw.annotations``); without ``orig_time`` its
            onsets count from the raw's first sample.
        record_id: default: the raw's file name less ``-PSG``, else ``"raw"``.
        subject_id: default: the record id.
        where: what to name in messages (default: the raw's file or the record id).

    Returns:
        :class:`Record`: signal (C, T) float32, channels in volts converted to µV, others as
        they are; labels (n_epochs,) int8 on the grid of the first stage annotation, or None
        (no stage annotations: an unlabelled record).

    Raises:
        RecordError: a missing channel, no EEG channel to default to, bad annotation times.
    """
    import mne
    from mne.io.constants import FIFF

    fname = raw.filenames[0] if raw.filenames and raw.filenames[0] else None
    rid = record_id or (re.sub(r"[-_]PSG$", "", Path(fname).stem) if fname else "raw")
    where = where or str(fname or rid)
    if channels is None:
        channels = [raw.ch_names[i] for i in mne.pick_types(raw.info, eeg=True)]
        if not channels:
            raise RecordError(f"{where}: no EEG channel; name the channels ({raw.ch_names})")
    missing = [c for c in channels if c not in raw.ch_names]
    if missing:
        raise RecordError(f"{where}: missing channel(s) {missing}; the file has {raw.ch_names}")
    picks = [raw.ch_names.index(c) for c in channels]
    signal = raw.get_data(picks=picks).astype(np.float32)
    volts = np.array([raw.info["chs"][i]["unit"] == FIFF.FIFF_UNIT_V for i in picks])
    signal[volts] *= np.float32(1e6)
    fs = float(raw.info["sfreq"])
    ann = raw.annotations if annotations is None else annotations
    try:
        onsets = _seconds_from_start(raw, ann, attached=annotations is None)
    except ValueError as e:
        raise RecordError(f"{where}: {e}") from None
    runs = stage_runs(onsets, ann.duration, list(ann.description), where=where)
    stages = epoch_labels(runs, signal.shape[1], fs, where=where)
    return Record(
        record_id=rid,
        subject_id=subject_id or rid,
        fs=fs,
        signal=np.ascontiguousarray(signal),
        channels=tuple(channels),
        labels=None if stages is None else stages.labels,
        onset=0 if stages is None else stages.onset,
    )


#: Stage names written to hypnograms: Sleep-EDF's R&K spelling (N3 as "3").
_RK_NAMES = ("Sleep stage W", "Sleep stage 1", "Sleep stage 2", "Sleep stage 3", "Sleep stage R")


def _runs(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Starts and lengths (in epochs) of the runs of equal consecutive labels."""
    change = np.flatnonzero(np.diff(labels)) + 1
    starts = np.concatenate([[0], change])
    return starts, np.diff(np.append(starts, len(labels)))


def write_edf(
    psg: str | Path,
    signal: np.ndarray,
    fs: float,
    channels: Sequence[str],
    *,
    labels: np.ndarray | None = None,
    onset: int = 0,
    hypnogram: str | Path | None = None,
    start: dt.datetime | None = None,
) -> None:
    """Write a recording as an EDF file and its stages as an EDF+ hypnogram in Sleep-EDF's form
    (one annotation per run of equal stages, R&K names, ``Sleep stage ?`` for unlabelled
    epochs); for tests, examples and exporting. Needs ``edfio`` (``pip install edfio``).

    Args:
        psg: the EDF file to write (its folder is created).
        signal: (C, T) in µV at ``fs`` Hz (stored in 16 bits over each channel's range).
        fs: sampling rate (Hz).
        channels: the C channel names.
        labels: (n_epochs,) stage indices (-1: unlabelled), 30-s epochs from sample ``onset``.
        onset: sample where the first labelled epoch starts.
        hypnogram: the hypnogram file (EDF+ with annotations only), written when ``labels``
            are given.
        start: start date and time of both files (default 1989-04-24 16:13, as SC4001E0).
    """
    import mne

    try:
        from edfio import Edf, EdfAnnotation, Recording
    except ImportError:
        raise ImportError("writing EDF needs edfio: pip install edfio") from None
    start = start or dt.datetime(1989, 4, 24, 16, 13, tzinfo=dt.timezone.utc)
    Path(psg).parent.mkdir(parents=True, exist_ok=True)
    info = mne.create_info(list(channels), float(fs), "eeg")
    raw = mne.io.RawArray(np.asarray(signal, np.float64) * 1e-6, info, verbose="error")
    raw.set_meas_date(start)
    mne.export.export_raw(psg, raw, fmt="edf", overwrite=True, verbose="error")
    if labels is None or hypnogram is None:
        return
    labels = np.asarray(labels)
    s, n = _runs(labels)
    t0 = onset / fs
    notes = [
        EdfAnnotation(t0 + 30.0 * a, 30.0 * k, _RK_NAMES[c] if c >= 0 else "Sleep stage ?")
        for a, k, c in zip(s.tolist(), n.tolist(), labels[s].tolist())
    ]
    edf = Edf([], annotations=notes, starttime=start.time().replace(tzinfo=None),
              recording=Recording(startdate=start.date()))  # fmt: skip
    edf.write(hypnogram)
