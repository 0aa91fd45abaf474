"""Synthetic polysomnography records in the PhysioNet/CinC Challenge 2018 file format.

The real challenge signals (100–400 MB per record) cannot be downloaded everywhere, so the
library ships a generator that writes records *exactly* in the challenge's on-disk format and
replays the **real** 30-s hypnograms of the 993 training records (bundled table
``resources/hypnograms.tsv.gz``), so that stage durations, transitions and class balance are
realistic while the signals are synthetic.

Files written per record ``<rec>`` (checked against the real ``tr03-0005`` files):

``<rec>.hea``
    WFDB header ``<rec> 13 200 <N>`` and 13 signal lines
    ``<rec>.mat 16+24 <gain>[(<baseline>)]/<unit> 16 0 <initval> <checksum> 0 <name>``
    with the real channel names in the real order (:data:`relpos.sleep.format.SIGNAL_NAMES`).
``<rec>.mat``
    MAT-v4 file (variable ``val``, int16, 13 x N) whose 24-byte header precedes the data;
    on disk the data are channel-interleaved per sample, i.e. WFDB format 16 at byte offset
    24 (byte-identical to ``scipy.io.savemat(path, {"val": val}, format="4")``).
``<rec>.arousal``
    WFDB annotation file (fs 200, symbol ``"``), written with :func:`wfdb.wrann` with the
    same ``subtype``/``chan`` codes as the real files (a re-write of the real
    ``tr03-0005.arousal`` through the same path is byte-identical).  ``aux_note`` holds
    sleep stages ``W N1 N2 N3 R`` only where the stage changes, at absolute sample positions
    that are multiples of 6000 (the first at the first scored sample), and paired event
    markers ``(arousal_rera``/``arousal_rera)``, ``(resp_hypopnea``/``resp_hypopnea)``,
    ``(resp_obstructiveapnea``/..., ``(resp_centralapnea``/....  Unlabelled records (the
    challenge's test set) have no ``.arousal``.

Undefined (``?``) epochs
    In the real data ``?`` only arises from the ``undefined`` one-hot of ``-arousal.mat``:
    before the first scored sample (lights on, set-up) and in the trailing partial epoch.
    The bundled table contains no ``?`` at all.  For user-supplied hypnograms, leading ``?``
    epochs become part of the unlabelled lead-in (the first stage note moves later), and the
    record is **truncated at the first ``?`` after a defined epoch** (no trailing partial
    epoch then): writing no note would silently continue the previous stage, and the
    annotation format has no "undefined" stage note.

Physiology (per 30-s epoch, features bleed over epoch boundaries, see
    :data:`relpos.sleep.synthetic.physiology.STAGE_LEVELS`)
    EEG (6 channels, uV) is a mix of shared sources with per-channel topographies plus
    independent noise: 1/f background, delta (frontal), theta (central), alpha at a
    per-subject peak frequency (occipital), beta, sleep spindles and vertex sharp waves
    (central), K-complexes (frontal), REM sawtooth waves (central), eye-movement and muscle
    leakage (frontal), ECG leakage and movement artefacts.  E1-M2 carries blinks and
    saccades (W), slow rolling eye movements (N1), rapid eye movements in bursts (REM) and
    frontal EEG leakage; Chin1-Chin2 broadband EMG (W > N1 > N2 > N3 > REM, twitches in
    REM).  ABD/CHEST/AIRFLOW breathe at 0.2–0.3 Hz (irregular in REM) and are reduced during
    annotated apneas/hypopneas (paradoxical effort in obstructive apneas), SaO2 dips after
    them, ECG has ~60 bpm PQRST beats with respiratory sinus arrhythmia (slower in N3).
    Every record draws a per-subject parameter set (amplitudes, alpha peak 8.5–11.5 Hz,
    spindle frequency, EMG tone, noise, electrode gains, AHI, ...) from its seed, with an
    age-like factor (older: less delta, fewer and weaker spindles).

Realism (issue 9; :mod:`~relpos.sleep.synthetic.realism`, ``relpos synth --report``)
    The stage levels are calibrated so that the mean relative band powers of every stage on
    C3-M2 (after the store's 0.1–30 Hz bandpass and 100-Hz resampling) lie within ±0.05 of
    real sleep EEG in every band (:data:`~relpos.sleep.synthetic.realism.REAL_BAND_POWERS`).
    REM is low-voltage mixed frequency close to N1 (not "more theta"), told apart by sawtooth
    bursts, rapid eye movements on E1 and chin atonia.  Across the night N3 delta falls,
    spindle density and REM density rise (:func:`~relpos.sleep.synthetic.timeline.night_drift`);
    epochs next to a stage change are often mixtures of both stages; electrode pops and
    sweat sway (0.15–0.5 Hz) pass the bandpass, on top of movement artefacts.

Speed: signals are generated with FFT-shaped noise (brain sources at fs/2, cubic
upsampling), vectorised event placement and rendering, and no per-sample Python loops.

Modules: :mod:`~relpos.sleep.synthetic.hypnograms` (replayed hypnograms, record plan),
:mod:`~relpos.sleep.synthetic.physiology` (stage tables, :class:`SyntheticConfig`, subject
parameters), :mod:`~relpos.sleep.synthetic.timeline` (stages and feature levels on a 2-Hz
control grid, respiratory events), :mod:`~relpos.sleep.synthetic.signals` (noise and event
helpers), :mod:`~relpos.sleep.synthetic.events` (transients, ECG),
:mod:`~relpos.sleep.synthetic.render` (the 13 signals), :mod:`~relpos.sleep.synthetic.writer`
(files, datasets, command line).

Example::

    from relpos.sleep.synthetic import synthesize_dataset
    paths = synthesize_dataset("data/synthetic2018", 20, seed=0, max_hours=2.0, jobs=2)
"""

from relpos.sleep.format import EVENT_TYPES, SIGNAL_NAMES, SIGNAL_UNITS, STAGES
from relpos.sleep.synthetic.hypnograms import Hypnogram, load_hypnograms, stages_from_notes
from relpos.sleep.synthetic.physiology import SyntheticConfig
from relpos.sleep.synthetic.writer import synthesize_dataset, synthesize_record, write_record

__all__ = [
    "EVENT_TYPES",
    "SIGNAL_NAMES",
    "SIGNAL_UNITS",
    "STAGES",
    "Hypnogram",
    "SyntheticConfig",
    "load_hypnograms",
    "stages_from_notes",
    "synthesize_dataset",
    "synthesize_record",
    "write_record",
]
