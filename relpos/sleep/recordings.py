"""Where ``relpos prepare`` gets its recordings: the source formats, their detection, and the
one-line answer when a folder holds none.

Formats: ``physionet2018`` (``.hea`` + ``.mat`` + ``.arousal``, :mod:`relpos.sleep.physionet2018`)
and ``edf`` (EDF recordings with hypnograms, :mod:`relpos.sleep.edf`); ``auto`` picks the one
whose files the folder holds. Recordings already in memory (``mne.io.Raw``, arrays) are
:class:`InMemoryRecord`. Every kind is a :class:`SourceRecord`: an id, a subject, a path to
name in messages, and ``read(channels, require_labels)`` -> :class:`Record`, which is all the
store writer needs.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from relpos.sleep.edf import SLEEP_EDF, EdfFiles, EdfNaming, edf_channels, find_edf_records
from relpos.sleep.format import EEG_CHANNELS
from relpos.sleep.physionet2018 import Record, RecordError, find_records

__all__ = [
    "FORMATS",
    "InMemoryRecord",
    "SourceFormat",
    "SourceRecord",
    "default_channels",
    "detect_format",
    "find_sleep_records",
    "folder_contents",
    "read_record",
]

SourceFormat = Literal["auto", "physionet2018", "edf"]
#: The formats ``relpos prepare`` reads, and the file suffix that marks each.
FORMATS: dict[str, str] = {"physionet2018": ".hea", "edf": ".edf"}


class SourceRecord(Protocol):
    """What the store writer reads a recording through (picklable, for worker processes)."""

    @property
    def record_id(self) -> str: ...

    @property
    def subject_id(self) -> str: ...

    @property
    def path(self) -> Path: ...

    def read(self, channels: Sequence[str], require_labels: bool = False) -> Record: ...


@dataclass(frozen=True)
class InMemoryRecord:
    """A recording already read (``relpos.sleep.from_raw``, ``from_array``)."""

    record: Record
    source: str = field(default="")

    @property
    def record_id(self) -> str:
        return self.record.record_id

    @property
    def subject_id(self) -> str:
        return self.record.subject_id

    @property
    def path(self) -> Path:
        return Path(self.source or self.record.record_id)

    def read(self, channels: Sequence[str], require_labels: bool = False) -> Record:
        rec = self.record
        missing = [c for c in channels if c not in rec.channels]
        if missing:
            raise RecordError(f"{self.path}: missing channel(s) {missing}; it has {rec.channels}")
        if require_labels and rec.labels is None:
            raise RecordError(f"{self.path}: no stage labels (require_labels=True)")
        idx = [rec.channels.index(c) for c in channels]
        return Record(
            rec.record_id, rec.subject_id, rec.fs, rec.signal[idx], tuple(channels),
            rec.labels, rec.onset,
        )  # fmt: skip


def read_record(rec: SourceRecord, channels: Sequence[str], require_labels: bool = False) -> Record:
    """Read any source record (the store writer's one entry point)."""
    return rec.read(channels, require_labels)


def folder_contents(root: Path) -> collections.Counter[str]:
    """Number of visible files per lower-case suffix under ``root`` (``""``: no suffix)."""
    if root.is_file():
        return collections.Counter([root.suffix.lower()])
    return collections.Counter(
        p.suffix.lower()
        for p in root.rglob("*")
        if p.is_file() and not any(s.startswith(".") for s in p.relative_to(root).parts)
    )


def _describe(counts: collections.Counter[str]) -> str:
    if not counts:
        return "empty directory"
    top = ", ".join(
        f"{n} {s or 'suffix-less'} file{'s' * (n > 1)}" for s, n in counts.most_common(4)
    )
    more = len(counts) - 4
    return top + (f" and {more} more kind{'s' * (more > 1)}" if more > 0 else "")


def detect_format(root: str | os.PathLike) -> str:
    """``physionet2018`` when ``root`` holds ``.hea`` files and no ``.edf``, ``edf`` when the
    reverse.

    Raises:
        FileNotFoundError: ``root`` does not exist.
        ValueError: it holds both or neither (one line listing what it holds).
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"no such file or directory: {root}")
    counts = folder_contents(root)
    have = [f for f, suffix in FORMATS.items() if counts[suffix]]
    if len(have) == 1:
        return have[0]
    if have:
        raise ValueError(
            f"{root}: both .hea and .edf files ({_describe(counts)}); choose with --format "
            f"physionet2018 or --format edf"
        )
    raise ValueError(
        f"{root}: no records found ({_describe(counts)}); prepare reads PhysioNet 2018 records "
        f"(.hea, .mat, .arousal) and EDF recordings (.edf with hypnograms)"
    )


def _none_found(root: Path, fmt: str, naming: EdfNaming) -> ValueError:
    counts = folder_contents(root)
    if fmt == "physionet2018":
        hint = " use --format edf" if counts[".edf"] else ""
        what = "no .hea" + (":" + hint if hint else "")
    elif counts[".edf"]:
        what = (
            f"none matches --psg {naming.psg!r}: give --psg '*.edf' and --hypnogram "
            f"'{{stem}}-Hypnogram.edf' (or your naming)"
        )
    else:
        what = "no .edf" + (": use --format physionet2018" if counts[".hea"] else "")
    return ValueError(f"{root}: no records found ({_describe(counts)}, {what})")


def find_sleep_records(
    root: str | os.PathLike,
    source_format: SourceFormat = "auto",
    naming: EdfNaming | None = None,
) -> list[SourceRecord]:
    """The recordings under ``root`` in ``source_format`` (``auto``: :func:`detect_format`),
    sorted by record id.

    Raises:
        FileNotFoundError: ``root`` does not exist.
        ValueError: none found (one line listing what ``root`` holds and what to do),
            ambiguous folder or pairing, a record id found twice.
    """
    root = Path(root)
    fmt = detect_format(root) if source_format == "auto" else source_format
    naming = naming or SLEEP_EDF
    if fmt not in FORMATS:
        raise ValueError(f"unknown source format {fmt!r}; known: auto, {', '.join(FORMATS)}")
    found: list[SourceRecord] = []
    if fmt == "physionet2018":
        found.extend(find_records(root))
    else:
        found.extend(find_edf_records(root, naming))
    if not found:
        raise _none_found(root, fmt, naming)
    return found


def default_channels(records: Sequence[SourceRecord]) -> tuple[str, ...]:
    """The channels to read when none are named: the paper's six EEG derivations for PhysioNet
    2018 records.

    Raises:
        ValueError: EDF recordings, whose channel names vary (the message lists the first
            one's channels).
    """
    first = records[0] if records else None
    if not isinstance(first, EdfFiles):
        return EEG_CHANNELS
    names = ", ".join(edf_channels(first.psg))
    raise ValueError(f"name the channels to keep (--channels 'A,B'); {first.psg.name} has {names}")
