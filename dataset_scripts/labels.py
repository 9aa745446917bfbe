"""Labels of the PhysioNet/CinC 2018 challenge layout: sleep stages, target arousals, age and sex.

Sources, in the order the builder prefers them:

1. `NAME-arousal.mat` (MATLAB 7.3 / HDF5): `data/arousals` (N x 1, +1 target arousal, 0 not arousal,
   -1 not scored) and `data/sleep_stages/{wake,nonrem1,nonrem2,nonrem3,rem,undefined}` (1 x N masks).
2. `NAME.arousal` (WFDB annotations, MIT format): sleep stages as `"` notes whose aux text is
   `W`, `N1`, `N2`, `N3`, `R` at stage changes, and paired events `(arousal_rera` ... `arousal_rera)`.

`wfdb.rdann` silently drops every `"` note at sample 0 (it takes them for header definitions), so a
stage that starts at sample 0 would be lost. `read_wfdb_annotations` parses the annotation binary
itself and keeps every note except the real definition notes (aux text starting with `"## "`).

Labels from notes alone (no `-arousal.mat`) follow the convention of the challenge's own masks, which
this module reproduces sample for sample on the real `tr03-0005` (tests/dataset_scripts/test_labels.py):

- stage: a stage note at sample `s` holds from sample `s - 1` (the challenge's MATLAB off-by-one, clipped
  at 0) until one sample before the next stage note; samples before the first note and the record's last
  sample are undefined;
- arousal: 0 everywhere, then +1 on `[start - 2 s - 1, end + 10 s)` of every paired `(arousal_*` ...
  `arousal_*)` event, then -1 ("not scored", wins over +1) on `[start - 10 s - 1, end + 10 s)` of every
  `(resp_*` ... `resp_*)` event (apneas/hypopneas) and of every run of wake. Undefined stage stays 0.

The notes count samples in the clock of the `## time resolution: F` definition note; F must be the record's
sampling frequency (`check_time_resolution`), else the notes are unusable. Stage masks must hold only 0 and 1.

Window labels (30-s windows aligned to the record start):

- `sleep_stage`: the stage (W, N1, N2, N3, REM = 0..4) that holds the most samples of the window;
  -1 when undefined samples are the most, or when two stages tie for the most.
- `arousal`: 1 when the window holds at least 3 s of target arousal (+1); 0 when it holds none and
  at least half of its samples are scored (!= -1); -1 otherwise.

The file convention (note spellings `W N1 N2 N3 R` -> classes W, N1, N2, N3, REM, mask names, event
note spelling, the padding rule) is defined once in `dataset_scripts/challenge_format.py`, shared with
the writer `dataset_scripts/challenge_io.py`; `STAGE_NAMES`, `STAGE_NOTE_TO_CODE`, `STAGE_MASK_TO_CODE`
and the other names this module always exported are re-exported from there.

`age-sex.csv` (`Record,Sex,Age`): sex is case-insensitive (`m` -> M, `f` -> F, also `male` / `female`); the age
must be a plain number (no `nan`, `inf`, `1_000`) of years within 0..120 (`recording_physiomae`'s strict
`parse_number` / `parse_sex` / `AGE_RANGE_YEARS`, shared with the WFDB/EDF readers). Rows with missing fields, an
unknown sex, a non-numeric or impossible age are reported with their line number and the field, the usable part is
kept (such an age becomes -1, such a sex -1).
"""

from __future__ import annotations

import csv
import math
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# The file convention is defined once in challenge_format and shared with the writer (challenge_io);
# re-exported here under the names this module has always had:
# - STAGE_NAMES: class names W, N1, N2, N3, REM (codes 0..4) of the stage notes W, N1, N2, N3, R;
# - STAGE_NOTE_TO_CODE: aux text of a `"` stage note (W N1 N2 N3 R, and the alias REM) -> stage code;
# - STAGE_MASK_TO_CODE: dataset name under `data/sleep_stages` in `-arousal.mat` -> stage code;
# - TARGET_AROUSAL_PREFIX / NOT_SCORED_EVENT_PREFIX: `arousal_*` events are target arousals, `resp_*`
#   are not scored; the *_PAD_* seconds of the mask rule (the start moves one more sample earlier).
from dataset_scripts.challenge_format import (  # noqa: F401  (re-exported)
    AROUSAL_MASK_PATH,
    AROUSAL_MASK_VALUES,
    AROUSAL_PAD_AFTER_SECONDS,
    AROUSAL_PAD_BEFORE_SECONDS,
    EVENT_NAMES,
    NOT_SCORED,
    NOT_SCORED_EVENT_PREFIX,
    NOT_SCORED_PAD_AFTER_SECONDS,
    NOT_SCORED_PAD_BEFORE_SECONDS,
    STAGE_CLASS_NAMES as STAGE_NAMES,
    STAGE_MASK_PATH,
    STAGE_MASK_TO_CLASS as STAGE_MASK_TO_CODE,
    STAGE_NOTE_TO_CLASS as STAGE_NOTE_TO_CODE,
    TARGET_AROUSAL,
    TARGET_AROUSAL_PREFIX,
    UNDEFINED_STAGE,
    arousal_span,
    not_scored_span,
    parse_event_note,
    stage_span,
)

NUM_STAGE_CLASSES = len(STAGE_NAMES)
#: event names used in the challenge annotations (others with a known prefix are used and reported)
KNOWN_EVENT_NAMES = frozenset(EVENT_NAMES)

AROUSAL_MIN_SECONDS = 3.0
SCORED_MIN_FRACTION = 0.5

# MIT annotation format: one little-endian 16-bit word per field, annotation code in the top 6 bits.
_CODE_SKIP, _CODE_NUM, _CODE_SUB, _CODE_CHN, _CODE_AUX = 59, 60, 61, 62, 63
_CODE_NOTE = 22  # '"'
_CODE_NULL = 0  # NOTQRS: with a nonzero interval only moves the time (used after the header note)


class AnnotationFormatError(ValueError):
    """Raised when a WFDB annotation file is not valid MIT-format annotation data."""


class ArousalMaskError(ValueError):
    """Raised when a `-arousal.mat` file cannot be read or does not match its record."""


# ----------------------------------------------------------------------------------------------
# WFDB annotation file
# ----------------------------------------------------------------------------------------------


@dataclass
class WfdbAnnotations:
    """Annotations of a WFDB (MIT format) annotation file, definition notes removed.

    Attributes:
        sample: (num_annotations,) int64 sample index of each annotation.
        code: (num_annotations,) int16 annotation code (22 = `"` note).
        aux_note: aux text per annotation ("" when none).
        subtype, channel, number: per-annotation modifier fields.
        definition_notes: aux texts of the header notes (`"## ..."` at sample 0) that were set aside.
    """

    sample: np.ndarray
    code: np.ndarray
    aux_note: list[str]
    subtype: np.ndarray
    channel: np.ndarray
    number: np.ndarray
    definition_notes: list[str] = field(default_factory=list)


def read_wfdb_annotations(path: str | os.PathLike) -> WfdbAnnotations:
    """Parse a WFDB MIT-format annotation file without dropping notes at sample 0.

    Unlike `wfdb.rdann`, only the real definition notes (`"` notes at sample 0 whose aux text starts
    with `## `, e.g. `## time resolution: 200`) are set aside; a stage note at sample 0 is kept.
    """
    path = Path(path)
    raw = path.read_bytes()
    if len(raw) % 2:
        raw = raw + b"\x00"  # a trailing odd byte cannot hold a field; the end check below reports it
    words = np.frombuffer(raw, dtype="<u2")
    samples, codes, aux_notes, subtypes, channels, numbers, definitions = [], [], [], [], [], [], []
    time = 0
    pending_skip = 0
    current_channel = 0
    current_number = 0
    index = 0
    num_words = len(words)
    ended = False
    while index < num_words:
        word = int(words[index])
        code, interval = word >> 10, word & 0x3FF
        index += 1
        if code == 0 and interval == 0:
            ended = True
            break
        if code == _CODE_SKIP:
            if index + 2 > num_words:
                raise AnnotationFormatError(f"{path}: SKIP field cut off at byte {2 * index}")
            high, low = int(words[index]), int(words[index + 1])
            skip = (high << 16) | low
            if skip >= 1 << 31:
                skip -= 1 << 32
            pending_skip += skip
            index += 2
            continue
        if code in (_CODE_NUM, _CODE_SUB, _CODE_CHN, _CODE_AUX):
            if not codes:
                raise AnnotationFormatError(f"{path}: modifier field (code {code}) before any annotation")
            if code == _CODE_NUM:
                current_number = interval - 1024 if interval >= 512 else interval
                numbers[-1] = current_number
            elif code == _CODE_SUB:
                subtypes[-1] = interval - 1024 if interval >= 512 else interval
            elif code == _CODE_CHN:
                current_channel = interval
                channels[-1] = current_channel
            else:
                num_aux_words = (interval + 1) // 2
                if index + num_aux_words > num_words:
                    raise AnnotationFormatError(f"{path}: aux text cut off at byte {2 * index}")
                text = raw[2 * index : 2 * index + interval].split(b"\x00", 1)[0]
                aux_notes[-1] = text.decode("latin-1")
                index += num_aux_words
            continue
        time += pending_skip + interval
        pending_skip = 0
        samples.append(time)
        codes.append(code)
        aux_notes.append("")
        subtypes.append(0)
        channels.append(current_channel)
        numbers.append(current_number)
    if not ended:
        raise AnnotationFormatError(f"{path}: no end-of-file marker (file truncated?)")

    keep = []
    for position, (sample, code, note) in enumerate(zip(samples, codes, aux_notes)):
        if code == _CODE_NULL:
            continue  # time-only placeholder
        if code == _CODE_NOTE and sample == 0 and note.startswith("## "):
            definitions.append(note)
            continue
        keep.append(position)
    return WfdbAnnotations(
        sample=np.asarray([samples[position] for position in keep], dtype=np.int64),
        code=np.asarray([codes[position] for position in keep], dtype=np.int16),
        aux_note=[aux_notes[position] for position in keep],
        subtype=np.asarray([subtypes[position] for position in keep], dtype=np.int16),
        channel=np.asarray([channels[position] for position in keep], dtype=np.int16),
        number=np.asarray([numbers[position] for position in keep], dtype=np.int16),
        definition_notes=definitions,
    )


@dataclass
class SampleLabels:
    """Per-sample labels of one record at its original sampling rate.

    Attributes:
        stage: (num_samples,) int8, 0..4 = W, N1, N2, N3, REM, -1 undefined.
        arousal: (num_samples,) int8, +1 target arousal, 0 not arousal, -1 not scored.
        source: "masks" (`-arousal.mat`) or "notes" (`.arousal`).
        report: counts of what was read and of what could not be used (unknown note text, unpaired
            events, notes beyond the record end).
    """

    stage: np.ndarray
    arousal: np.ndarray
    source: str
    report: dict


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Starts and exclusive ends of the runs of True in a boolean vector."""
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)


def labels_from_notes(annotations: WfdbAnnotations, num_samples: int, sampling_rate: float) -> SampleLabels:
    """Per-sample stage and arousal from challenge notes (the challenge-mask convention, module docstring)."""
    stage = np.full(num_samples, UNDEFINED_STAGE, dtype=np.int8)
    unknown_notes: Counter = Counter()
    unlisted_events: Counter = Counter()
    event_counts: Counter = Counter()
    unpaired: list[dict] = []
    beyond_end = 0
    stage_changes: list[tuple[int, int]] = []
    open_events: dict[str, int] = {}
    arousal_spans: list[tuple[int, int]] = []
    not_scored_spans: list[tuple[int, int]] = []

    order = np.argsort(annotations.sample, kind="stable")
    for position in order:
        sample = int(annotations.sample[position])
        note = annotations.aux_note[position].strip()
        if sample >= num_samples or sample < 0:
            beyond_end += 1
            continue
        if note in STAGE_NOTE_TO_CODE:
            stage_changes.append((sample, STAGE_NOTE_TO_CODE[note]))
            continue
        parsed = parse_event_note(note)
        if parsed is None or not parsed[0].startswith((TARGET_AROUSAL_PREFIX, NOT_SCORED_EVENT_PREFIX)):
            unknown_notes[note] += 1
            continue
        name, side = parsed
        if name not in KNOWN_EVENT_NAMES:
            unlisted_events[name] += 1
        if side == "open":
            if name in open_events:
                unpaired.append({"event": name, "sample": open_events[name], "problem": "opened twice"})
            open_events[name] = sample
            continue
        if name not in open_events:
            unpaired.append({"event": name, "sample": sample, "problem": "closed without opening"})
            continue
        start = open_events.pop(name)
        event_counts[name] += 1
        span = (start, sample)
        (arousal_spans if name.startswith(TARGET_AROUSAL_PREFIX) else not_scored_spans).append(span)
    for name, start in open_events.items():
        unpaired.append({"event": name, "sample": start, "problem": "never closed"})

    for change_index, (start, code) in enumerate(stage_changes):
        end = stage_changes[change_index + 1][0] if change_index + 1 < len(stage_changes) else num_samples
        first, last = stage_span(start, end)
        stage[first:last] = code
    if num_samples:
        stage[-1] = UNDEFINED_STAGE

    arousal = np.zeros(num_samples, dtype=np.int8)
    for start, end in arousal_spans:
        first, last = arousal_span(start, end, sampling_rate)
        arousal[first:last] = TARGET_AROUSAL
    wake_starts, wake_ends = _runs(stage == STAGE_NOTE_TO_CODE["W"])
    for start, end in not_scored_spans + list(zip(wake_starts.tolist(), wake_ends.tolist())):
        first, last = not_scored_span(start, end, sampling_rate)
        arousal[first:last] = NOT_SCORED

    report = {
        "stage_notes": len(stage_changes),
        "first_stage_sample": stage_changes[0][0] if stage_changes else None,
        "events": dict(sorted(event_counts.items())),
        "unknown_notes": dict(sorted(unknown_notes.items())),
        "unknown_note_count": int(sum(unknown_notes.values())),
        "unlisted_event_names": dict(sorted(unlisted_events.items())),
        "unpaired_events": unpaired,
        "notes_beyond_record_end": beyond_end,
    }
    return SampleLabels(stage=stage, arousal=arousal, source="notes", report=report)


TIME_RESOLUTION_NOTE = "## time resolution:"
"""Start of the definition note that gives the annotation file's clock (`## time resolution: 200`, in Hz)."""


def check_time_resolution(annotations: WfdbAnnotations, sampling_rate: float, path: str | os.PathLike) -> float | None:
    """The annotation file's time resolution (Hz, from its `## time resolution:` definition note; None when it has
    none, and the record's sampling frequency applies). It must be a number equal to the record's sampling frequency:
    else the note samples count in another clock and every label would land elsewhere -> `AnnotationFormatError`
    naming the file, the field and both values."""
    from modeling_physiomae.recording_physiomae import HeaderFieldError, parse_number

    resolution = None
    for note in annotations.definition_notes:
        if note.startswith(TIME_RESOLUTION_NOTE):
            text = note[len(TIME_RESOLUTION_NOTE):].strip()
            try:
                resolution = parse_number(text, "time resolution", f"{path} (definition note)", low=0, low_open=True)
            except HeaderFieldError as error:
                raise AnnotationFormatError(str(error)) from error
            if not math.isclose(resolution, sampling_rate, rel_tol=1e-9):
                raise AnnotationFormatError(
                    f"{path} (definition note): time resolution {text!r} Hz differs from the record's sampling frequency "
                    f"{sampling_rate:g} Hz (the note samples would be read in the wrong clock)")
    return resolution


def read_arousal_notes(path: str | os.PathLike, num_samples: int, sampling_rate: float) -> SampleLabels:
    """Read a `.arousal` file and turn its notes into per-sample labels (stage at sample 0 kept); its time resolution
    must be the record's sampling frequency (`check_time_resolution`)."""
    annotations = read_wfdb_annotations(path)
    check_time_resolution(annotations, sampling_rate, path)
    return labels_from_notes(annotations, num_samples, sampling_rate)


# ----------------------------------------------------------------------------------------------
# -arousal.mat (HDF5) masks
# ----------------------------------------------------------------------------------------------


def _as_vector(dataset, name: str, path: Path) -> np.ndarray:
    """A `(1, N)` or `(N, 1)` HDF5 dataset as a flat array."""
    values = np.asarray(dataset[()])
    if values.ndim == 2 and 1 in values.shape:
        return values.reshape(-1)
    if values.ndim == 1:
        return values
    raise ArousalMaskError(f"{path}: {name} has shape {values.shape}, expected N x 1 or 1 x N")


def read_arousal_masks(path: str | os.PathLike, num_samples: int | None = None) -> SampleLabels:
    """Per-sample stage and arousal from a challenge `-arousal.mat` file.

    Raises `ArousalMaskError` (naming the file and what is wrong) for an unreadable/truncated file, a
    missing dataset, a length that differs from `num_samples`, or samples in more than one stage.
    """
    import h5py

    path = Path(path)
    try:
        handle = h5py.File(path, "r")
    except (OSError, ValueError) as error:
        raise ArousalMaskError(f"{path}: not a readable HDF5 (MATLAB 7.3) file: {error}") from error
    with handle:
        try:
            arousal_values = _as_vector(handle[AROUSAL_MASK_PATH], AROUSAL_MASK_PATH, path)
            stage_group = handle[STAGE_MASK_PATH]
            masks = {name: _as_vector(stage_group[name], f"{STAGE_MASK_PATH}/{name}", path) for name in stage_group}
        except KeyError as error:
            raise ArousalMaskError(f"{path}: missing dataset ({error})") from error
        except OSError as error:
            raise ArousalMaskError(f"{path}: could not read a dataset (truncated file?): {error}") from error
    length = len(arousal_values)
    if num_samples is not None and length != num_samples:
        raise ArousalMaskError(f"{path}: {AROUSAL_MASK_PATH} has {length} samples, the record has {num_samples}")
    unknown_masks = sorted(set(masks) - set(STAGE_MASK_TO_CODE))
    stage = np.full(length, UNDEFINED_STAGE, dtype=np.int8)
    stage_count = np.zeros(length, dtype=np.int8)
    for name, mask in masks.items():
        if len(mask) != length:
            raise ArousalMaskError(f"{path}: {STAGE_MASK_PATH}/{name} has {len(mask)} samples, {AROUSAL_MASK_PATH} {length}")
        if name not in STAGE_MASK_TO_CODE:
            continue
        not_binary = ~np.isin(mask, (0, 1))
        if not_binary.any():  # astype(bool) would read 2, -1 or NaN as "in this stage"
            raise ArousalMaskError(f"{path}: {STAGE_MASK_PATH}/{name} holds {int(not_binary.sum())} values that are "
                                   f"neither 0 nor 1 (e.g. {mask[not_binary][0]!r})")
        is_set = mask.astype(bool)
        stage_count += is_set
        stage[is_set] = STAGE_MASK_TO_CODE[name]
    overlapping = int((stage_count > 1).sum())
    if overlapping:
        raise ArousalMaskError(f"{path}: {overlapping} samples are marked with more than one sleep stage")
    unexpected_values = ~np.isin(arousal_values, AROUSAL_MASK_VALUES)
    arousal = np.rint(np.nan_to_num(arousal_values, nan=float(NOT_SCORED))).clip(NOT_SCORED, TARGET_AROUSAL).astype(np.int8)
    arousal[unexpected_values] = NOT_SCORED
    report = {
        "stage_masks": sorted(masks),
        "unknown_stage_masks": unknown_masks,
        "samples_without_stage_mask": int((stage_count == 0).sum()),
        "unexpected_arousal_values": int(unexpected_values.sum()),
    }
    return SampleLabels(stage=stage, arousal=arousal, source="masks", report=report)


# ----------------------------------------------------------------------------------------------
# Window labels
# ----------------------------------------------------------------------------------------------


@dataclass
class WindowLabels:
    """Labels of consecutive windows: `sleep_stage` (num_windows,) int64 in -1..4, `arousal` int8 in -1..1."""

    sleep_stage: np.ndarray
    arousal: np.ndarray


def window_labels(
    sample_labels: SampleLabels | tuple[np.ndarray, np.ndarray],
    samples_per_window: int,
    num_windows: int | None = None,
    arousal_min_samples: int | None = None,
) -> WindowLabels:
    """Label windows of `samples_per_window` samples aligned to sample 0 (rule in the module docstring).

    Args:
        sample_labels: per-sample labels (or a `(stage, arousal)` tuple) at the record's sampling rate.
        samples_per_window: window length in samples at that rate (30 s * rate).
        num_windows: how many windows to label; defaults to every complete window.
        arousal_min_samples: target-arousal samples that make a positive window (3 s * rate by default).
    """
    if isinstance(sample_labels, SampleLabels):
        stage, arousal = sample_labels.stage, sample_labels.arousal
    else:
        stage, arousal = sample_labels
    if arousal_min_samples is None:
        arousal_min_samples = int(round(AROUSAL_MIN_SECONDS * samples_per_window / 30.0))
    complete_windows = len(stage) // samples_per_window
    num_windows = complete_windows if num_windows is None else min(num_windows, complete_windows)
    usable = num_windows * samples_per_window
    # (num_samples,) -> (num_windows, samples_per_window)
    stage_windows = stage[:usable].reshape(num_windows, samples_per_window)
    arousal_windows = arousal[:usable].reshape(num_windows, samples_per_window)

    # counts per class, column 0 = undefined, columns 1..5 = W..REM: (num_windows, 6)
    class_counts = np.stack(
        [(stage_windows == code).sum(axis=1) for code in range(UNDEFINED_STAGE, NUM_STAGE_CLASSES)], axis=1
    )
    most = class_counts.max(axis=1, keepdims=True)
    winners = class_counts == most
    winner_code = class_counts.argmax(axis=1) - 1
    tied = winners.sum(axis=1) > 1
    sleep_stage = np.where(tied, UNDEFINED_STAGE, winner_code).astype(np.int64)

    positive_samples = (arousal_windows == 1).sum(axis=1)
    scored_samples = (arousal_windows != -1).sum(axis=1)
    arousal_label = np.full(num_windows, -1, dtype=np.int8)
    arousal_label[(positive_samples == 0) & (scored_samples >= SCORED_MIN_FRACTION * samples_per_window)] = 0
    arousal_label[positive_samples >= arousal_min_samples] = 1
    return WindowLabels(sleep_stage=sleep_stage, arousal=arousal_label)


# ----------------------------------------------------------------------------------------------
# age-sex.csv
# ----------------------------------------------------------------------------------------------


@dataclass
class AgeSexTable:
    """Parsed `age-sex.csv`.

    Attributes:
        entries: record name -> (age in years or -1.0, sex 0 = F, 1 = M, -1 unknown).
        problems: one dict per malformed row: `line` (1-based), `record`, `problem`, `text`.
    """

    entries: dict[str, tuple[float, int]]
    problems: list[dict]

    def lookup(self, record_name: str) -> tuple[float, int]:
        """(age, sex) of a record, (-1.0, -1) when the table does not know it."""
        return self.entries.get(record_name, (-1.0, -1))


SEX_NAMES: tuple[str, ...] = ("F", "M")
_RECORD_COLUMN, _SEX_COLUMN, _AGE_COLUMN = "record", "sex", "age"


def read_age_sex_csv(path: str | os.PathLike) -> AgeSexTable:
    """Parse `age-sex.csv` (`Record,Sex,Age`), reporting malformed rows by line instead of failing (module docstring)."""
    from modeling_physiomae.recording_physiomae import (
        AGE_RANGE_YEARS, HeaderFieldError, check_number_range, parse_number, parse_sex)

    path = Path(path)
    entries: dict[str, tuple[float, int]] = {}
    problems: list[dict] = []
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as handle:
        reader = csv.reader(handle)
        try:
            header = [cell.strip().lower() for cell in next(reader)]
        except StopIteration:
            return AgeSexTable(entries, [{"line": 1, "record": None, "problem": "empty file", "text": ""}])
        missing_columns = {_RECORD_COLUMN, _SEX_COLUMN, _AGE_COLUMN} - set(header)
        if missing_columns:
            return AgeSexTable(
                entries,
                [{"line": 1, "record": None, "problem": f"header lacks {sorted(missing_columns)}", "text": ",".join(header)}],
            )
        record_at, sex_at, age_at = (header.index(name) for name in (_RECORD_COLUMN, _SEX_COLUMN, _AGE_COLUMN))
        for row in reader:
            line = reader.line_num
            text = ",".join(row)
            if not any(cell.strip() for cell in row):
                continue
            cells = [cell.strip() for cell in row] + [""] * max(0, len(header) - len(row))
            record = cells[record_at]
            if not record:
                problems.append({"line": line, "record": None, "problem": "missing record name", "text": text})
                continue
            row_problems = []
            where = f"{path}, line {line}"
            sex_text = cells[sex_at]
            try:
                sex = SEX_NAMES.index(parse_sex(sex_text, "sex", where))
            except HeaderFieldError:
                sex = -1
                row_problems.append("missing sex" if not sex_text else f"unknown sex {sex_text!r}")
            age_text = cells[age_at]
            try:
                age = float(parse_number(age_text, "age", where))
                check_number_range(age, "age", where, low=AGE_RANGE_YEARS[0], high=AGE_RANGE_YEARS[1], shown=age_text)
            except HeaderFieldError as error:
                age = -1.0
                if not age_text:
                    row_problems.append("missing age")
                elif error.problem.startswith("is impossible: "):
                    row_problems.append(f"impossible age {age_text!r} ({error.problem.removeprefix('is impossible: ')} years)")
                else:
                    row_problems.append(f"non-numeric age {age_text!r}")
            if record in entries:
                row_problems.append("duplicate record (later row wins)")
            for problem in row_problems:
                problems.append({"line": line, "record": record, "problem": problem, "text": text})
            entries[record] = (age, sex)
    return AgeSexTable(entries, problems)


_RECORD_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.\-]+$")


def is_valid_record_name(name: str) -> bool:
    """Record names of the challenge are plain file-name stems such as `tr03-0005`."""
    return bool(_RECORD_NAME_PATTERN.match(name))
