"""The PhysioNet/CinC 2018 record format, declared once for the reader and the generator; and
the stage names of EDF+/MNE hypnograms (R&K and AASM), mapped onto the same stages.

Signals: the 13 channels of every challenge record (``.hea`` + ``.mat``), the first six of them
the paper's EEG derivations. Labels: ``.arousal`` annotation files whose NOTE annotations are
either a sleep stage (``W``, ``N1``, ``N2``, ``N3``, ``R``) at the sample where it starts, or a
paired event marker (``(arousal_rera`` ... ``arousal_rera)``). Stages are scored in 30-s epochs.
"""

from __future__ import annotations

import re

__all__ = [
    "ANNOTATION_STAGES",
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
    "stage_of_annotation",
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


#: Stage names of EDF+/MNE hypnogram annotations (lower case, after an optional "sleep stage "
#: prefix) -> stage index. Rechtschaffen & Kales to AASM: stages 3 and 4 are both N3; "?"
#: (unscored) and movement time carry no label. Sleep-EDF writes "Sleep stage W", "Sleep stage
#: 1" ... "Sleep stage 4", "Sleep stage R", "Sleep stage ?" and "Movement time".
ANNOTATION_STAGES: dict[str, int] = {
    **{k: STAGE_TO_INDEX["W"] for k in ("w", "wake")},
    **{k: STAGE_TO_INDEX["N1"] for k in ("1", "n1")},
    **{k: STAGE_TO_INDEX["N2"] for k in ("2", "n2")},
    **{k: STAGE_TO_INDEX["N3"] for k in ("3", "4", "n3")},
    **{k: STAGE_TO_INDEX["R"] for k in ("r", "rem")},
    **{k: UNLABELLED for k in ("?", "movement time", "mt", "unscored")},
}
#: Names accepted without the "sleep stage " prefix (a bare "1" or "?" may be anything else).
_BARE_STAGES = frozenset({"w", "wake", "n1", "n2", "n3", "r", "rem", "movement time"})
_STAGE_PREFIX = re.compile(r"^(sleep )?stage ")


def stage_of_annotation(description: str) -> int | None:
    """The stage index of a hypnogram annotation (:data:`ANNOTATION_STAGES`), case and spacing
    ignored; :data:`UNLABELLED` for unscored and movement epochs; :data:`UNKNOWN_STAGE` for a
    "Sleep stage X" of no known stage; ``None`` for annotations that are not stages (events,
    lights off, ...)."""
    text = " ".join(description.lower().split())
    key = _STAGE_PREFIX.sub("", text)
    if key != text:  # "sleep stage X" / "stage X"
        return ANNOTATION_STAGES.get(key, UNKNOWN_STAGE)
    return ANNOTATION_STAGES[key] if key in _BARE_STAGES else None
