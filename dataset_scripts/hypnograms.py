"""Hypnograms of own recordings (`edf_sleep`): stage texts, EDF+ stage annotations and stage CSVs -> stage
intervals, and the intervals -> one stage per window.

Stage texts (case-insensitive, after an optional `Sleep stage` / `Stage` prefix): `W`, `Wake`, `0` -> W;
`1`, `N1`, `S1` -> N1; `2`, `N2`, `S2` -> N2; `3`, `4`, `N3`, `N4`, `S3`, `S4` -> N3 (R&K stages 3 and 4 are AASM
N3); `R`, `REM` -> REM. Numbers are R&K stage numbers, not this project's class codes (so `4` is N3, not REM).
`?`, `Movement time`, `MT`, `Unscored`, `-1` are undefined (-1, counted in `undefined_labels`); any other text
in a hypnogram or CSV (or `Sleep stage <other>` in a PSG) is -1 too and counted in `unknown_labels` (also in the
report's `totals.unknown_annotation_notes`).

Window stage: windows are the extractor's 30-s windows from the start of the recording. The stages are laid on
the target-rate sample grid (100 Hz), and a window takes the stage that covers most of its samples (the challenge
builder's rule, `labels.window_labels`): a window spanning two stages gets the one covering more of it; -1 when
undefined or unscored time is the largest share or two stages tie. Overlapping stage annotations: the later one
wins, the overlap is counted (`overlapping_seconds`). `arousal` is -1 (EDF hypnograms have no arousal scoring).

Hypnogram length (`labels.hypnogram_seconds` = end of the last stage annotation/row, vs. the recording's duration):
shorter -> the windows after its end (their middle past it) are -1 and counted (`windows_after_hypnogram_end`);
longer -> the stages past the end of the signal are dropped and counted (`hypnogram_seconds_beyond_signal`,
`totals.records_truncated_hypnogram`); more than `max_hypnogram_mismatch_epochs` (default 60, i.e. 30 min; None:
no limit) epochs shorter or longer -> the record is skipped with reason `hypnogram length mismatch` (probably the
wrong hypnogram).
"""

from __future__ import annotations

import csv
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dataset_scripts import labels as label_tools


EPOCH_SECONDS = 30.0

_W, _N1, _N2, _N3, _REM = range(5)
_STAGE_TEXT_TO_CODE: dict[str, int] = {
    "w": _W, "wake": _W, "0": _W,
    "1": _N1, "n1": _N1, "s1": _N1,
    "2": _N2, "n2": _N2, "s2": _N2,
    "3": _N3, "4": _N3, "n3": _N3, "n4": _N3, "s3": _N3, "s4": _N3,
    "r": _REM, "rem": _REM,
}
_UNDEFINED_STAGE_TEXTS = frozenset({"?", "movementtime", "movement", "mt", "unscored", "unknown", "-1"})
_STAGE_PREFIX = re.compile(r"^(sleep[\s_-]*stage|stage)[\s_:-]*", re.IGNORECASE)

class EdfRecordError(ValueError):
    """A record that cannot be built (its hypnogram unreadable, of the wrong length, ...); `kind` is the report's
    short category."""

    def __init__(self, message: str, kind: str):
        super().__init__(message)
        self.kind = kind



# ----------------------------------------------------------------------------------------------
# Stage texts and hypnograms
# ----------------------------------------------------------------------------------------------


def parse_stage_text(text: str) -> tuple[int, str]:
    """(stage code 0..4 or -1, "stage" | "undefined" | "unknown") of a hypnogram text (rules: module docstring)."""
    raw = str(text).strip()
    key = re.sub(r"\s+", "", _STAGE_PREFIX.sub("", raw)).lower()
    if key in _STAGE_TEXT_TO_CODE:
        return _STAGE_TEXT_TO_CODE[key], "stage"
    if key in _UNDEFINED_STAGE_TEXTS or re.sub(r"\s+", "", raw).lower() in _UNDEFINED_STAGE_TEXTS:
        return label_tools.UNDEFINED_STAGE, "undefined"
    return label_tools.UNDEFINED_STAGE, "unknown"


def is_stage_annotation(text: str) -> bool:
    """Inside a PSG file: is this annotation meant as a stage (a stage text, an undefined stage, `Sleep stage ...`)?"""
    status = parse_stage_text(text)[1]
    return status != "unknown" or bool(_STAGE_PREFIX.match(str(text).strip()))


@dataclass
class StageInterval:
    """One scored stretch: `onset` and `duration` in seconds from the recording start, `text` as written."""

    onset: float
    duration: float
    text: str


def intervals_from_annotations(annotations: list[tuple[float, float | None, str]], epoch_seconds: float = EPOCH_SECONDS) -> list[StageInterval]:
    """EDF+ annotations (onset, duration or None, text) -> intervals; a missing duration holds until the next
    annotation's onset (the last one: one epoch)."""
    ordered = sorted(annotations, key=lambda item: item[0])
    intervals = []
    for index, (onset, duration, text) in enumerate(ordered):
        if duration is None or not duration > 0:
            following = ordered[index + 1][0] if index + 1 < len(ordered) else onset + epoch_seconds
            duration = max(following - onset, 0.0) or epoch_seconds
        intervals.append(StageInterval(float(onset), float(duration), str(text)))
    return intervals


def read_stage_csv(path: str | os.PathLike, epoch_seconds: float = EPOCH_SECONDS) -> tuple[list[StageInterval], list[dict]]:
    """Parse a stage CSV (both forms of the module docstring). Returns the intervals and the problems found
    (`{"line", "problem", "text"}`): a row whose onset is not a plain number (`parse_number`: no `nan`, `inf`) of
    seconds >= 0 is skipped and listed there; a duration that is not a number > 0 is listed there and read as absent
    (the stage holds until the next onset)."""
    from modeling_physiomae.recording_physiomae import HeaderFieldError, parse_number

    path = Path(path)
    problems: list[dict] = []
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise EdfRecordError(f"{path}: unreadable stage CSV ({error})", kind="hypnogram unreadable") from error
    rows = [(number, row) for number, row in enumerate(csv.reader(text.splitlines()), start=1)
            if row and any(cell.strip() for cell in row) and not row[0].lstrip().startswith("#")]
    if not rows:
        raise EdfRecordError(f"{path}: empty stage CSV", kind="hypnogram unreadable")
    header = [cell.strip().lower() for cell in rows[0][1]]
    if "stage" not in header:  # one stage per line
        return [StageInterval(index * epoch_seconds, epoch_seconds, row[-1].strip()) for index, (_, row) in enumerate(rows)], problems
    stage_at = header.index("stage")
    onset_at = header.index("onset") if "onset" in header else None
    duration_at = header.index("duration") if "duration" in header else None
    entries: list[tuple[float, float | None, str]] = []
    for position, (line, row) in enumerate(rows[1:]):
        cells = [cell.strip() for cell in row] + [""] * len(header)
        if onset_at is None:
            onset = position * epoch_seconds
        else:
            try:
                onset = float(parse_number(cells[onset_at], "onset", f"{path}, line {line}", low=0))
            except HeaderFieldError as error:
                kind = "impossible" if error.problem.startswith("is impossible") else "unreadable"
                problems.append({"line": line, "problem": f"{kind} onset {cells[onset_at]!r}", "text": ",".join(row)})
                continue
        duration = None
        if duration_at is not None and cells[duration_at]:
            try:
                duration = float(parse_number(cells[duration_at], "duration", f"{path}, line {line}", low=0, low_open=True))
            except HeaderFieldError as error:
                kind = "impossible" if error.problem.startswith("is impossible") else "unreadable"
                problems.append({"line": line, "problem": f"{kind} duration {cells[duration_at]!r} (read as absent)",
                                 "text": ",".join(row)})
        entries.append((onset, duration if onset_at is not None else (duration or epoch_seconds), cells[stage_at]))
    return intervals_from_annotations(entries, epoch_seconds), problems


@dataclass
class StageLabels:
    """Window stages of one record and what the labelling found (`report`)."""

    sleep_stage: np.ndarray
    report: dict


def window_stages(
    intervals: list[StageInterval], num_windows: int, window_seconds: float, sampling_rate: int, signal_seconds: float
) -> StageLabels:
    """Stage per window by the majority rule (module docstring), on the `sampling_rate` sample grid."""
    samples_per_window = int(round(window_seconds * sampling_rate))
    total = num_windows * samples_per_window
    stage = np.full(total, label_tools.UNDEFINED_STAGE, dtype=np.int8)
    assigned = np.zeros(total, dtype=bool)
    counts: dict[str, Counter] = {"stage": Counter(), "undefined": Counter(), "unknown": Counter()}
    overlapping_samples = 0
    hypnogram_end = 0.0
    for interval in sorted(intervals, key=lambda item: item.onset):
        code, status = parse_stage_text(interval.text)
        counts[status][interval.text] += 1
        hypnogram_end = max(hypnogram_end, interval.onset + interval.duration)
        first = min(max(int(round(interval.onset * sampling_rate)), 0), total)
        last = min(max(int(round((interval.onset + interval.duration) * sampling_rate)), 0), total)
        if last <= first:
            continue
        overlapping_samples += int(assigned[first:last].sum())
        assigned[first:last] = True
        stage[first:last] = code
    arousal = np.full(total, label_tools.NOT_SCORED, dtype=np.int8)
    labels = label_tools.window_labels((stage, arousal), samples_per_window, num_windows=num_windows)
    window_middles = (np.arange(num_windows) + 0.5) * window_seconds
    after_end = int((window_middles >= hypnogram_end).sum()) if intervals else 0
    report = {
        "stage_annotations": int(sum(counts["stage"].values())),
        "undefined_labels": dict(sorted(counts["undefined"].items())),
        "unknown_labels": dict(sorted(counts["unknown"].items())),
        "unknown_note_count": int(sum(counts["unknown"].values())),  # recording_builder.merge_report totals
        "hypnogram_seconds": round(hypnogram_end, 3),
        "signal_seconds": round(signal_seconds, 3),
        "hypnogram_seconds_beyond_signal": round(max(hypnogram_end - signal_seconds, 0.0), 3),
        "windows_after_hypnogram_end": after_end,
        "overlapping_seconds": overlapping_samples / sampling_rate,
    }
    return StageLabels(sleep_stage=labels.sleep_stage, report=report)
