"""Tests of the record format declared once for reader and generator (relpos.sleep.format),
against the real header and annotation file of tr03-0005."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import wfdb
from hypothesis import given
from hypothesis import strategies as st

from relpos.sleep.format import (
    EEG_CHANNELS,
    EPOCH_SECONDS,
    EVENT_SUBTYPE,
    EVENT_TYPES,
    SIGNAL_NAMES,
    SIGNAL_UNITS,
    STAGE_SUBTYPE,
    STAGE_TO_INDEX,
    STAGES,
    UNKNOWN_STAGE,
    UNLABELLED,
    classify_note,
)

REAL = Path(__file__).parents[1] / "data" / "physionet2018" / "tr03-0005"


@pytest.fixture(scope="module")
def annotations() -> wfdb.Annotation:
    with warnings.catch_warnings():  # pandas deprecation noise inside wfdb
        warnings.simplefilter("ignore")
        return wfdb.rdann(str(REAL), "arousal")


# --------------------------------------------------------------------------------------------
# classify_note
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("note", "index"), [(s, i) for i, s in enumerate(STAGES)])
def test_stage_notes_give_their_index(note: str, index: int) -> None:
    assert classify_note(note) == index == STAGE_TO_INDEX[note]


@pytest.mark.parametrize(
    "note",
    [f"({e}" for e in EVENT_SUBTYPE] + [f"{e})" for e in EVENT_SUBTYPE] + ["(W", "N2)", "()"],
)
def test_event_markers_are_not_stages(note: str) -> None:
    assert classify_note(note) is None


@pytest.mark.parametrize("note", ["", " ", "\x00", "\x00\x00\x00", " \x00", "\t\n"])
def test_empty_and_padding_only_notes_are_nothing(note: str) -> None:
    assert classify_note(note) is None


@pytest.mark.parametrize("note", ["N4", "REM", "w", "Wake", "S1", "?", "N1 N2"])
def test_unknown_stage_like_notes(note: str) -> None:
    assert classify_note(note) == UNKNOWN_STAGE


@given(
    stage=st.sampled_from(STAGES),
    lead=st.text(" \t", max_size=3),
    nul=st.integers(0, 8),
    trail=st.text(" \t\n", max_size=3),
)
def test_nul_and_blank_padding_is_ignored(stage: str, lead: str, nul: int, trail: str) -> None:
    # WFDB aux notes come NUL-padded to an even length; blanks around them are not part of it
    assert classify_note(lead + stage + "\x00" * nul) == STAGE_TO_INDEX[stage]
    assert classify_note(lead + stage + trail) == STAGE_TO_INDEX[stage]


def test_sentinels_are_no_stage_index() -> None:
    assert UNLABELLED not in range(len(STAGES)) and UNKNOWN_STAGE not in range(len(STAGES))
    assert UNLABELLED != UNKNOWN_STAGE


# --------------------------------------------------------------------------------------------
# constants against the real record
# --------------------------------------------------------------------------------------------


def test_signals_match_the_real_header() -> None:
    header = wfdb.rdheader(str(REAL))
    assert tuple(header.sig_name) == SIGNAL_NAMES
    assert tuple(header.units) == SIGNAL_UNITS
    assert SIGNAL_NAMES[: len(EEG_CHANNELS)] == EEG_CHANNELS
    assert len(set(SIGNAL_NAMES)) == len(SIGNAL_NAMES) == header.n_sig == 13
    assert header.fs == 200 and (EPOCH_SECONDS * header.fs) % 1 == 0


def test_notes_of_the_real_annotation_file(annotations: wfdb.Annotation) -> None:
    notes = [n or "" for n in annotations.aux_note]
    codes = [classify_note(n) for n in notes]
    assert UNKNOWN_STAGE not in codes
    assert {n for n, c in zip(notes, codes) if c is not None} == set(STAGES)
    assert {n.strip("()") for n, c in zip(notes, codes) if c is None} == set(EVENT_TYPES)


def test_subtype_codes_match_the_real_annotation_file(annotations: wfdb.Annotation) -> None:
    seen = {
        (n, int(s), int(c))
        for n, s, c in zip(annotations.aux_note, annotations.subtype, annotations.chan)
    }
    stages = {(n, s) for n, s, c in seen if c == 0}
    assert stages == set(STAGE_SUBTYPE.items())
    events = {(n, s) for n, s, c in seen if c == 1}
    want = {(f"({e}", a) for e, (a, _) in EVENT_SUBTYPE.items()}
    want |= {(f"{e})", b) for e, (_, b) in EVENT_SUBTYPE.items()}
    assert events == want
    assert set(EVENT_TYPES) == set(EVENT_SUBTYPE)
