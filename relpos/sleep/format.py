"""The PhysioNet/CinC 2018 record format, declared once for the reader and the generator.

Signals: the 13 channels of every challenge record (``.hea`` + ``.mat``), the first six of them
the paper's EEG derivations. Labels: ``.arousal`` annotation files whose NOTE annotations are
either a sleep stage (``W``, ``N1``, ``N2``, ``N3``, ``R``) at the sample where it starts, or a
paired event marker (``(arousal_rera`` ... ``arousal_rera)``). Stages are scored in 30-s epochs.
"""

from __future__ import annotations

import re

__all__ = [
    "EEG_CHANNELS",
    "EPOCH_SECONDS",
    "EVENT_SUBTYPE",
    "EVENT_TYPES",
    "SIGNAL_NAMES",
    "SIGNAL_UNITS",
    "STAGES",
    "STAGE_SUBTYPE",
    "STAGE_TO_INDEX",
    "UNKNOWN_STAGE",
    "UNLABELLED",
    "classify_note",
]

#: The paper's six EEG derivations (the first six signals of every challenge record).
EEG_CHANNELS: tuple[str, ...] = ("F3-M2", "F4-M1", "C3-M2", "C4-M1", "O1-M2", "O2-M1")
#: All 13 signals of a challenge record, in file order (from the real ``tr03-0005.hea``).
SIGNAL_NAMES: tuple[str, ...] = (
    *EEG_CHANNELS,
    "E1-M2",
    "Chin1-Chin2",
    "ABD",
    "CHEST",
    "AIRFLOW",
    "SaO2",
    "ECG",
)
#: Physical units of :data:`SIGNAL_NAMES`.
SIGNAL_UNITS: tuple[str, ...] = ("uV",) * 11 + ("%", "mV")

#: Sleep stages as written in the notes; the label of a stage is its index here.
STAGES: tuple[str, ...] = ("W", "N1", "N2", "N3", "R")
STAGE_TO_INDEX: dict[str, int] = {s: i for i, s in enumerate(STAGES)}
#: Label of epochs without a (known) stage.
UNLABELLED: int = -1
#: :func:`classify_note`'s answer for a note that looks like a stage but is not one of STAGES.
UNKNOWN_STAGE: int = -2
#: Length of a scoring epoch in seconds.
EPOCH_SECONDS: int = 30

#: Subtype codes of the real annotation file: stages on channel 0 ...
STAGE_SUBTYPE: dict[str, int] = {"W": 5, "N1": 3, "N2": 2, "N3": 1, "R": 4}
#: ... and (start, end) codes of the paired event markers on channel 1.
EVENT_SUBTYPE: dict[str, tuple[int, int]] = {
    "arousal_rera": (0, 1),
    "resp_centralapnea": (12, 13),
    "resp_hypopnea": (16, 17),
    "resp_obstructiveapnea": (22, 23),
}
#: Event kinds the generator writes (the reader ignores all event markers).
EVENT_TYPES: tuple[str, ...] = (
    "arousal_rera",
    "resp_hypopnea",
    "resp_obstructiveapnea",
    "resp_centralapnea",
)

# Paired event markers in the .arousal files: "(arousal_rera" ... "arousal_rera)".
_EVENT_MARKER = re.compile(r"^\(.*|.*\)$")


def classify_note(note: str) -> int | None:
    """The stage index of a NOTE annotation; :data:`UNKNOWN_STAGE` for a stage-like note that is
    not a known stage; ``None`` for event markers and empty notes."""
    note = note.strip().rstrip("\x00")
    if not note or _EVENT_MARKER.match(note):
        return None
    return STAGE_TO_INDEX.get(note, UNKNOWN_STAGE)
