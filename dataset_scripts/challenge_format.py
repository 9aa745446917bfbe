"""The PhysioNet/CinC Challenge 2018 label convention, defined once for the writer and the reader.

The writer (:mod:`dataset_scripts.challenge_io`) and the reader (:mod:`dataset_scripts.labels`) both
take every spelling, code and rule of the challenge label files from here, so that they cannot drift:

- ``NAME.arousal`` (WFDB annotations, every annotation a ``"`` note): a stage note at each stage
  change, aux text ``W N1 N2 N3 R`` (:data:`STAGE_NOTES`), channel :data:`STAGE_CHANNEL`, subtype
  :data:`STAGE_SUBTYPES`; each event as a pair of notes ``(name`` ... ``name)``
  (:func:`event_notes` / :func:`parse_event_note`), channel :data:`EVENT_CHANNEL`, subtypes 2k / 2k+1
  with k the event's index in :data:`EVENT_NAMES` (:func:`event_subtypes`).
- ``NAME-arousal.mat`` (MATLAB 7.3 / HDF5): ``data/arousals`` (N x 1: +1 target arousal, 0 not
  arousal, -1 not scored) and ``data/sleep_stages/{wake,nonrem1,nonrem2,nonrem3,rem,undefined}``
  (1 x N masks, :data:`STAGE_MASK_NAMES`, field order :data:`STAGE_MASK_ORDER`).
- Classes: stage note ``R`` is class 4, named ``REM`` (:data:`STAGE_CLASS_NAMES`,
  :data:`STAGE_NOTE_TO_CLASS`, :data:`STAGE_MASK_TO_CLASS`); undefined is :data:`UNDEFINED_STAGE`.
- Masks from notes (the challenge's own rule, reproduced on the real ``tr03-0005``): a stage note at
  sample ``s`` holds from ``s - 1`` (MATLAB off-by-one, :data:`MASK_START_SHIFT_SAMPLES`) until one
  sample before the next stage note (:func:`stage_span`); ``arousals`` is +1 on
  ``[start - 2 s - 1, end + 10 s)`` of every ``arousal_*`` event (:func:`arousal_span`), then -1 on
  ``[start - 10 s - 1, end + 10 s)`` of every ``resp_*`` event and wake run (:func:`not_scored_span`).

Pure Python, imports nothing else of this project (tests/test_layout.py checks import cycles).
"""

from __future__ import annotations

# ----------------------------------------------------------------------------------------------
# file names
# ----------------------------------------------------------------------------------------------

ANNOTATION_EXTENSION = "arousal"
"""WFDB annotator name of the label notes: ``NAME.arousal``."""

MASK_FILE_SUFFIX = "-arousal.mat"
"""Suffix of the HDF5 mask file: ``NAME-arousal.mat``."""

NOTE_SYMBOL = '"'
"""WFDB annotation symbol of every label annotation (a note; MIT code 22)."""

# ----------------------------------------------------------------------------------------------
# sleep stages: notes, classes, masks
# ----------------------------------------------------------------------------------------------

STAGE_NOTES: tuple[str, ...] = ("W", "N1", "N2", "N3", "R")
"""Aux text of the stage notes as the files spell them, in class order (index = class index)."""

STAGE_CLASS_NAMES: tuple[str, ...] = ("W", "N1", "N2", "N3", "REM")
"""Class names of the stage classes 0..4 (note ``R`` is class ``REM``): the builders' ``sleep_stage`` ClassLabel,
which the library (probes, fine-tuning) reads as ``dataset_scripts.labels.STAGE_NAMES``. Two other copies exist only
where code travels alone, and tests check they equal this one: the Hub copy's
``pipeline_physiomae.SLEEP_STAGE_LABELS`` (the Hub copy imports nothing of ours) and the ``evaluate`` metric's
``staging_scores.DEFAULT_STAGE_NAMES`` (loaded by ``evaluate`` on its own)."""

UNDEFINED_STAGE = -1
"""Class index of samples/windows without a stage."""

STAGE_NOTE_ALIASES: dict[str, str] = {"REM": "R"}
"""Stage spellings the reader also accepts (never written): alias -> note as written."""

STAGE_NOTE_TO_CLASS: dict[str, int] = {note: index for index, note in enumerate(STAGE_NOTES)} | {
    alias: STAGE_NOTES.index(note) for alias, note in STAGE_NOTE_ALIASES.items()
}
"""Aux text of a stage note (written spellings, then the read-only aliases) -> class index."""

STAGE_SUBTYPES: dict[str, int] = {"W": 5, "N1": 3, "N2": 2, "N3": 1, "R": 4}
"""Annotation subtype of each stage note in the real files."""

STAGE_CHANNEL = 0
"""Annotation channel of the stage notes."""

STAGE_MASK_GROUP = "sleep_stages"
AROUSAL_MASK_FIELD = "arousals"
MASK_STRUCT = "data"
MASK_STRUCT_FIELDS: tuple[str, ...] = (STAGE_MASK_GROUP, AROUSAL_MASK_FIELD)
"""Field order of the ``data`` struct in the real file's ``MATLAB_fields`` attribute."""

AROUSAL_MASK_PATH = f"{MASK_STRUCT}/{AROUSAL_MASK_FIELD}"
STAGE_MASK_PATH = f"{MASK_STRUCT}/{STAGE_MASK_GROUP}"
"""HDF5 paths of the arousal mask dataset and of the group of stage masks."""

STAGE_MASK_NAMES: dict[str, str] = {"W": "wake", "N1": "nonrem1", "N2": "nonrem2", "N3": "nonrem3", "R": "rem"}
"""HDF5 dataset name (under ``data/sleep_stages``) of each stage note; plus :data:`UNDEFINED_MASK_NAME`."""

UNDEFINED_MASK_NAME = "undefined"
"""HDF5 dataset name of the mask of samples without a stage."""

STAGE_MASK_ORDER: tuple[str, ...] = ("undefined", "nonrem3", "nonrem2", "nonrem1", "rem", "wake")
"""Field order of ``data/sleep_stages`` in the real file's ``MATLAB_fields`` attribute."""

STAGE_MASK_TO_CLASS: dict[str, int] = {
    STAGE_MASK_NAMES[note]: STAGE_NOTE_TO_CLASS[note] for note in STAGE_NOTES
} | {UNDEFINED_MASK_NAME: UNDEFINED_STAGE}
"""HDF5 stage mask name -> class index (``undefined`` -> :data:`UNDEFINED_STAGE`)."""

# ----------------------------------------------------------------------------------------------
# events and the arousal mask
# ----------------------------------------------------------------------------------------------

EVENT_NAMES: tuple[str, ...] = (
    "arousal_rera",
    "arousal_bruxism",
    "arousal_noise",
    "arousal_plm",
    "arousal_snore",
    "arousal_spontaneous",
    "resp_centralapnea",
    "resp_cheynestokesbreath",
    "resp_hypopnea",
    "resp_hypoventilation",
    "resp_mixedapnea",
    "resp_obstructiveapnea",
    "resp_partialobstructive",
)
"""Challenge event names; the opening note of event k has subtype 2k, the closing note 2k+1
(checked on the real file for arousal_rera 0/1, resp_centralapnea 12/13, resp_hypopnea 16/17,
resp_obstructiveapnea 22/23)."""

EVENT_CHANNEL = 1
"""Annotation channel of the event notes."""

TARGET_AROUSAL_PREFIX = "arousal_"
"""Events whose name starts so are target arousals (+1 in ``arousals``)."""

NOT_SCORED_EVENT_PREFIX = "resp_"
"""Events whose name starts so (apneas, hypopneas) are not scored (-1 in ``arousals``)."""

EVENT_OPEN_MARK = "("
EVENT_CLOSE_MARK = ")"
"""An event ``name`` opens with the note ``(name`` and closes with the note ``name)``."""

TARGET_AROUSAL = 1
NOT_AROUSAL = 0
NOT_SCORED = -1
"""Values of the ``arousals`` mask."""

AROUSAL_MASK_VALUES: tuple[int, ...] = (NOT_SCORED, NOT_AROUSAL, TARGET_AROUSAL)

AROUSAL_PAD_BEFORE_SECONDS = 2.0
AROUSAL_PAD_AFTER_SECONDS = 10.0
NOT_SCORED_PAD_BEFORE_SECONDS = 10.0
NOT_SCORED_PAD_AFTER_SECONDS = 10.0
"""Padding of the challenge masks around events and wake runs, in seconds (the start moves a further
:data:`MASK_START_SHIFT_SAMPLES` earlier)."""

MASK_START_SHIFT_SAMPLES = 1
"""The challenge's MATLAB off-by-one: every mask span starts one sample before its note."""


def event_notes(event_name: str) -> tuple[str, str]:
    """Aux texts of the opening and closing note of an event: ``(name``, ``name)``."""
    return f"{EVENT_OPEN_MARK}{event_name}", f"{event_name}{EVENT_CLOSE_MARK}"


def parse_event_note(note: str) -> tuple[str, str] | None:
    """``(arousal_rera`` -> (arousal_rera, "open"); ``arousal_rera)`` -> (arousal_rera, "close"); else None."""
    if note.startswith(EVENT_OPEN_MARK) and len(note) > 1:
        return note[len(EVENT_OPEN_MARK) :], "open"
    if note.endswith(EVENT_CLOSE_MARK) and len(note) > 1:
        return note[: -len(EVENT_CLOSE_MARK)], "close"
    return None


def event_subtypes(event_name: str) -> tuple[int, int]:
    """Subtypes of the opening and closing note of a challenge event."""
    if event_name not in EVENT_NAMES:
        raise ValueError(f"unknown event name {event_name!r}; expected one of {EVENT_NAMES}")
    index = EVENT_NAMES.index(event_name)
    return 2 * index, 2 * index + 1


# ----------------------------------------------------------------------------------------------
# mask spans (slice bounds; the caller clips nothing else)
# ----------------------------------------------------------------------------------------------


def stage_span(note_sample: int, next_note_sample: int) -> tuple[int, int]:
    """Samples ``[first, end)`` labelled by a stage note at ``note_sample`` followed by one at
    ``next_note_sample`` (the record length for the last note)."""
    return max(note_sample - MASK_START_SHIFT_SAMPLES, 0), max(next_note_sample - MASK_START_SHIFT_SAMPLES, 0)


def padded_span(
    start: int, end: int, pad_before_seconds: float, pad_after_seconds: float, sampling_rate: float
) -> tuple[int, int]:
    """Samples ``[first, end)`` of a mask span around ``[start, end)`` padded by the given seconds."""
    before = int(round(pad_before_seconds * sampling_rate)) + MASK_START_SHIFT_SAMPLES
    after = int(round(pad_after_seconds * sampling_rate))
    return max(start - before, 0), end + after


def arousal_span(start: int, end: int, sampling_rate: float) -> tuple[int, int]:
    """Samples set to +1 for a target arousal event from ``start`` to ``end``."""
    return padded_span(start, end, AROUSAL_PAD_BEFORE_SECONDS, AROUSAL_PAD_AFTER_SECONDS, sampling_rate)


def not_scored_span(start: int, end: int, sampling_rate: float) -> tuple[int, int]:
    """Samples set to -1 for a ``resp_*`` event or a wake run from ``start`` to ``end``."""
    return padded_span(start, end, NOT_SCORED_PAD_BEFORE_SECONDS, NOT_SCORED_PAD_AFTER_SECONDS, sampling_rate)
