"""A folder of EDF/EDF+/BDF sleep recordings with hypnograms as a `datasets` builder, in the challenge's row schema.

Own recordings go through the same feature extractor (`PhysioMAEFeatureExtractor.preprocess_recording`: each
channel resampled from its own rate, converted from its file unit) into the same rows as
`dataset_scripts.physionet2018` (`make_info`, `make_features`), so that train.py, eval.py and the probes read them
unchanged:

    from dataset_scripts.edf_sleep import EdfSleep
    builder = EdfSleep(data_dir="sleep-edf", cache_dir="/tmp/cache", channel_map={"EEG Fpz-Cz": "C4-M1"})
    builder.download_and_prepare()
    splits = builder.as_dataset()          # DatasetDict: pretrain / probe_train / probe_test
    report = builder.build_report          # dict, also written to <cache>/build_report.json

Command line (writes `O/dataset` with `save_to_disk` and `O/build_report.json`, a copy also in `O/dataset/`):

    python -m dataset_scripts.edf_sleep build --data_dir D --output_dir O [--channel_map JSON_OR_FILE] [--num_proc N]
        [--feature_extractor FOLDER_OR_JSON] [--max_hypnogram_mismatch_epochs N]

Files. Every `.edf`, `.rec` (EDF/EDF+) and `.bdf` (BDF/BDF+) file under `data_dir` (any depth, any case of the
suffix) is a recording (a PSG), except files whose name contains `hypnogram` (any case), which are hypnograms.
The record name is the PSG file's stem without a trailing `-PSG` / `_PSG` (`SC4001E0-PSG.edf` -> `SC4001E0`);
names must be unique. Stages come from the first of these that exists:

(a) an EDF+ hypnogram file in the same folder (annotations only, Sleep-EDF style), paired with its PSG by
    1. the PSG name with `PSG` replaced by `Hypnogram` (`night1-PSG.edf` + `night1-Hypnogram.edf`), or
       `STEM-Hypnogram.edf` / `STEM_Hypnogram.edf`;
    2. else the first `hypnogram_prefix_length` (6) characters of the names, when exactly one PSG and one
       hypnogram of the folder share them (Sleep-EDF: `SC4001E0-PSG.edf` + `SC4001EC-Hypnogram.edf`).
    Annotation onsets are moved by the difference of the two files' start times when both are known.
(b) a CSV of stages next to the recording, `STEM.csv` or `NAME.csv` (`night1.edf` + `night1.csv`), UTF-8, one
    of two forms (lines starting with `#` are comments):
    - with a header row naming an `onset` and a `stage` column (and optionally `duration`), onsets in seconds
      from the start of the recording: each row's stage holds for `duration` seconds, or, without one, until the
      next row's onset (the last row: one 30-s epoch). A row whose onset is not a plain number >= 0 is skipped, a
      duration that is not a number > 0 is read as absent; both are listed in the record's `labels.problems`;
          onset,stage
          0,W
          30,N1
    - without a header: one stage per line, line k (from 0) is the 30-s epoch [30 k, 30 k + 30) s.
(c) stage annotations inside the PSG file itself (EDF+/BDF+), e.g. `Sleep stage 2`; other annotations (events,
    lights off, ...) are counted as `other_annotations` and ignored. An EDF+ annotation without a duration holds
    until the next stage annotation (the last one: one 30-s epoch).
A recording with none of these is unlabelled.

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

Channel map: `channel_map` (builder config / `--channel_map`) is `{file channel label: canonical name}`, applied
before the extractor's aliases (`DEFAULT_CHANNEL_ALIASES`; `EEG C4-A1`, `EOG Left`, `Chin EMG`, `SpO2`, `EKG` ...
are matched without it); a label is looked up as written, then normalised (case, spaces); `null` drops a channel.
Channels that match nothing are reported as `unknown_channels`. Example for Sleep-EDF (its derivations are not
the challenge's; map them to the nearest canonical channel knowingly):
`{"EEG Fpz-Cz": "F4-M1", "EEG Pz-Oz": "O2-M1", "EOG horizontal": "E1-M2", "EMG submental": "Chin1-Chin2",
"Resp oro-nasal": "AIRFLOW"}`. Physical units come from each EDF signal's physical dimension (V/mV/uV/nV ->
uV for EEG/EOG/EMG/respiration, mV for ECG, % for SpO2; unknown or empty units are kept and listed in the
preprocessing report's `units_unknown`).

Age and sex: from `age-sex.csv` at the root of `data_dir` (`Record,Sex,Age`, as the challenge's) when it lists
the record, else from the EDF+ patient field (sex; age from birthdate and start date), else -1.

Splits, as the challenge builder: records without stages -> `pretrain`; labelled records -> `probe_test` when
`physionet2018.record_split_position(name)` < `probe_test_fraction` (0.22), else `probe_train`.

Bad input never stops a build: a recording that is missing, not an EDF/BDF (bad header), truncated (incomplete
data record), whose header's data record count disagrees with the file, discontinuous (EDF+D), shorter than one
window, or whose hypnogram is unreadable or of the wrong length, is skipped with its reason; windows without any
usable channel are skipped and counted.

`build_report.json`: the challenge builder's report (`physionet2018.merge_report`: `totals` with
`records_found/built/skipped`, `records_skipped_by_reason`, `windows_kept/skipped(_by_reason)`,
`unknown_annotation_notes`; `splits`; `listing_problems`; `age_sex`; `records`) plus
`totals.unknown_labels` / `undefined_labels` ({text: count}), `windows_unlabelled`, `windows_after_hypnogram_end`,
`records_truncated_hypnogram`, `records_with_reader_problems`, and per record `psg`, `hypnogram`, `label_source`
(`hypnogram`, `csv`, `annotations` or null), `sampling_rates`, `units`, `labels` {...}, `reader_problems` (what
`read_recording` worked around, naming the field: a signal without calibration skipped, an impossible patient age
left unknown ...) and the extractor's `preprocessing` report. The EDF header itself is parsed strictly by
`read_recording` (a malformed or impossible field skips the record with `reason_kind` `bad header field`).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import re
import sys
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from dataset_scripts import labels as label_tools
from dataset_scripts.physionet2018 import (
    PROBE_TEST_FRACTION,
    RecordWindows,
    WindowedRecordingsBuilder,
    default_feature_extractor,
    extractor_layout,
    files_fingerprint,
    make_info,
    print_build_summary,
    read_extractor_settings,
    save_build,
    windowed_record,
)


BUILDER_VERSION = "1.0.0"
EPOCH_SECONDS = 30.0
DEFAULT_MAX_HYPNOGRAM_MISMATCH_EPOCHS = 60
HYPNOGRAM_PREFIX_LENGTH = 6
RECORDING_SUFFIXES = (".edf", ".bdf", ".rec")

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


def _is_stage_annotation(text: str) -> bool:
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
    from modeling_physiomae.feature_extraction_physiomae import HeaderFieldError, parse_number

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
        "unknown_note_count": int(sum(counts["unknown"].values())),  # physionet2018.merge_report totals
        "hypnogram_seconds": round(hypnogram_end, 3),
        "signal_seconds": round(signal_seconds, 3),
        "hypnogram_seconds_beyond_signal": round(max(hypnogram_end - signal_seconds, 0.0), 3),
        "windows_after_hypnogram_end": after_end,
        "overlapping_seconds": overlapping_samples / sampling_rate,
    }
    return StageLabels(sleep_stage=labels.sleep_stage, report=report)


# ----------------------------------------------------------------------------------------------
# Record discovery
# ----------------------------------------------------------------------------------------------


@dataclass
class EdfRecordFiles:
    """Files of one record: the PSG, and its hypnogram (EDF+) or stage CSV, or stages inside the PSG."""

    name: str
    psg: str
    hypnogram: str | None = None
    stages_csv: str | None = None
    psg_annotations: bool = False  # stage annotations found inside the PSG (source c)
    folder: str = ""

    @property
    def labelled(self) -> bool:
        return self.hypnogram is not None or self.stages_csv is not None or self.psg_annotations

    @property
    def label_source(self) -> str | None:
        if self.hypnogram is not None:
            return "hypnogram"
        if self.stages_csv is not None:
            return "csv"
        return "annotations" if self.psg_annotations else None


@dataclass
class EdfListing:
    """Records found under a data folder (duck-types `physionet2018.RecordListing` for `merge_report`)."""

    records: list[EdfRecordFiles]
    problems: list[dict]
    age_sex_path: str | None


def record_name_of(psg: Path) -> str:
    """`SC4001E0-PSG.edf` -> `SC4001E0`; `night1.edf` -> `night1`."""
    return re.sub(r"[-_ ]?psg$", "", psg.stem, flags=re.IGNORECASE) or psg.stem


def _is_recording_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in RECORDING_SUFFIXES and not path.name.startswith(".")


def _psg_has_stage_annotations(path: Path) -> bool:
    """Whether an EDF+/BDF+ file holds stage annotations (only the annotation channel is read, and only when the
    header declares EDF+/BDF+)."""
    import edfio

    try:
        with open(path, "rb") as stream:
            head = stream.read(236)
        reserved = head[192:236].decode("ascii", "replace").strip().upper()
        if not reserved.startswith(("EDF+", "BDF+")):
            return False
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # truncation etc. is reported when the record is built
            edf = edfio.read_bdf(path) if head[:1] == b"\xff" else edfio.read_edf(path, lazy_load_data=True)
            return any(_is_stage_annotation(annotation.text) for annotation in edf.annotations)
    except Exception:  # broken files are reported when the record is built
        return False


def _pair_hypnograms(psgs: list[Path], hypnograms: list[Path], prefix_length: int, problems: list[dict]) -> dict[Path, Path]:
    """PSG -> hypnogram of one folder (rules in the module docstring); unpaired hypnograms go to `problems`."""
    by_lower = {hypnogram.name.lower(): hypnogram for hypnogram in hypnograms}
    pairs: dict[Path, Path] = {}
    for psg in psgs:
        stem, suffix = psg.stem, psg.suffix.lower()
        candidates = []
        if "psg" in stem.lower():
            candidates.append(re.sub("psg", "Hypnogram", stem, flags=re.IGNORECASE))
        candidates += [f"{stem}-Hypnogram", f"{stem}_Hypnogram", f"{record_name_of(psg)}-Hypnogram"]
        for candidate in candidates:
            for candidate_suffix in dict.fromkeys([suffix, *RECORDING_SUFFIXES]):
                match = by_lower.get(f"{candidate}{candidate_suffix}".lower())
                if match is not None and match not in pairs.values():
                    pairs[psg] = match
                    break
            if psg in pairs:
                break
    if prefix_length:
        for psg in psgs:
            if psg in pairs:
                continue
            prefix = psg.name[:prefix_length].lower()
            same_psgs = [other for other in psgs if other.name[:prefix_length].lower() == prefix]
            same_hypnograms = [hypnogram for hypnogram in hypnograms
                               if hypnogram.name[:prefix_length].lower() == prefix and hypnogram not in pairs.values()]
            if len(same_psgs) == 1 and len(same_hypnograms) == 1:
                pairs[psg] = same_hypnograms[0]
            elif same_hypnograms:
                problems.append({"record": record_name_of(psg), "where": str(psg),
                                 "problem": f"ambiguous hypnogram: {len(same_psgs)} recordings and {len(same_hypnograms)} "
                                            f"hypnograms share the prefix {psg.name[:prefix_length]!r}; none paired"})
    for hypnogram in hypnograms:
        if hypnogram not in pairs.values():
            problems.append({"record": None, "where": str(hypnogram), "problem": "hypnogram without a recording"})
    return pairs


def find_edf_records(data_dir: str | os.PathLike, hypnogram_prefix_length: int = HYPNOGRAM_PREFIX_LENGTH) -> EdfListing:
    """Every recording under `data_dir` with its stage source (rules in the module docstring)."""
    root = Path(data_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"data_dir {root} is not a folder")
    problems: list[dict] = []
    records: dict[str, EdfRecordFiles] = {}
    folders = [root] + sorted(path for path in root.rglob("*") if path.is_dir() and not any(
        part.startswith(".") for part in path.relative_to(root).parts))
    for folder in folders:
        files = sorted(path for path in folder.iterdir() if _is_recording_file(path))
        hypnograms = [path for path in files if "hypnogram" in path.name.lower()]
        psgs = [path for path in files if path not in hypnograms]
        pairs = _pair_hypnograms(psgs, hypnograms, hypnogram_prefix_length, problems)
        csv_files = {path.name.lower(): path for path in folder.iterdir() if path.is_file() and path.suffix.lower() == ".csv"}
        for psg in psgs:
            name = record_name_of(psg)
            stages_csv = csv_files.get(f"{psg.stem}.csv".lower()) or csv_files.get(f"{name}.csv".lower())
            hypnogram = pairs.get(psg)
            if hypnogram is not None and stages_csv is not None:
                problems.append({"record": name, "where": str(stages_csv), "problem": f"both a hypnogram ({hypnogram.name}) "
                                 "and a stage CSV; the hypnogram is used"})
                stages_csv = None
            record = EdfRecordFiles(
                name=name,
                psg=str(psg),
                hypnogram=str(hypnogram) if hypnogram else None,
                stages_csv=str(stages_csv) if stages_csv else None,
                folder=str(folder.relative_to(root)) if folder != root else "",
            )
            if not record.labelled:
                record.psg_annotations = _psg_has_stage_annotations(psg)
            if name in records:
                problems.append({"record": name, "where": str(psg), "problem": f"duplicate record name (kept {records[name].psg})"})
                continue
            records[name] = record
    age_sex = root / "age-sex.csv"
    return EdfListing(records=sorted(records.values(), key=lambda record: record.name), problems=problems,
                      age_sex_path=str(age_sex) if age_sex.is_file() else None)


def _listing_fingerprint(listing: EdfListing) -> str:
    """Hash of every input file's path, size and modification time (so that changed data rebuilds)."""
    paths = [listing.age_sex_path] if listing.age_sex_path else []
    for record in listing.records:
        paths += [record.psg, record.hypnogram, record.stages_csv]
    return files_fingerprint(paths)


# ----------------------------------------------------------------------------------------------
# One record -> windows + report
# ----------------------------------------------------------------------------------------------


def _stage_intervals(record: EdfRecordFiles, recording, report: dict) -> list[StageInterval] | None:
    """The record's stage intervals (onsets relative to the PSG start) from its label source, None if unlabelled."""
    from modeling_physiomae.feature_extraction_physiomae import RecordingReadError, read_recording

    labels_report: dict[str, Any] = {"source": record.label_source, "problems": []}
    report["labels"] = labels_report
    if record.hypnogram is not None:
        labels_report["path"] = record.hypnogram
        try:
            hypnogram = read_recording(record.hypnogram)
        except (RecordingReadError, OSError) as error:
            raise EdfRecordError(f"hypnogram unreadable: {error}", kind="hypnogram unreadable") from error
        offset = 0.0
        if hypnogram.start_time is not None and recording.start_time is not None:
            offset = (hypnogram.start_time - recording.start_time).total_seconds()
        labels_report["alignment_offset_seconds"] = offset
        shifted = [(onset + offset, duration, text) for onset, duration, text in hypnogram.annotations]
        return intervals_from_annotations(shifted)
    if record.stages_csv is not None:
        labels_report["path"] = record.stages_csv
        intervals, problems = read_stage_csv(record.stages_csv)
        labels_report["problems"] += problems
        return intervals
    if record.psg_annotations:
        stage_annotations = [item for item in recording.annotations if _is_stage_annotation(item[2])]
        labels_report["other_annotations"] = len(recording.annotations) - len(stage_annotations)
        return intervals_from_annotations(stage_annotations)
    return None


def _age_sex(record: EdfRecordFiles, recording, age_sex: label_tools.AgeSexTable | None) -> tuple[float, int]:
    if age_sex is not None and record.name in age_sex.entries:
        return age_sex.lookup(record.name)
    sex = {"F": 0, "M": 1}.get(recording.patient_sex or "", -1)
    age = recording.patient_age_years if recording.patient_age_years is not None else -1.0
    return float(age), sex


def process_edf_record(
    record: EdfRecordFiles, feature_extractor, layout, config: "EdfSleepConfig", age_sex: label_tools.AgeSexTable | None = None
) -> RecordWindows:
    """Read, preprocess, window and label one EDF record. Bad input -> an exception (the builder reports it)."""
    from modeling_physiomae.feature_extraction_physiomae import read_recording

    report: dict[str, Any] = {"psg": record.psg, "hypnogram": record.hypnogram or record.stages_csv,
                              "label_source": record.label_source, "labelled": record.labelled, "folder": record.folder}
    recording = read_recording(record.psg)
    report.update(
        format=recording.format,
        seconds=recording.duration_seconds,
        start_time=recording.start_time.isoformat() if recording.start_time else None,
        channels_in_file=list(recording.channel_names),
        sampling_rates=dict(zip(recording.channel_names, recording.sampling_rates)),
        units=dict(zip(recording.channel_names, recording.units)),
        skipped_channels=list(recording.skipped_channels),
        # what the reader noticed and worked around (a signal without calibration skipped, an impossible patient age
        # left unknown, ...), each naming the field
        reader_problems=list(recording.problems),
    )
    age, sex = _age_sex(record, recording, age_sex)
    report.update(age=age, sex=sex)
    intervals = _stage_intervals(record, recording, report) if record.labelled else None

    preprocessed = feature_extractor.preprocess_recording(recording, channel_map=config.channel_map)
    report["preprocessing"] = preprocessed.report
    windows, channel_mask = feature_extractor.cut_windows(preprocessed)
    windows = np.asarray(windows)
    channel_mask = np.asarray(channel_mask, dtype=bool)
    num_windows = windows.shape[0]
    report["channels_present"] = [name for name, present in zip(layout.channel_names, preprocessed.channel_present) if present]
    del preprocessed, recording

    if intervals is not None:
        if not intervals:
            raise EdfRecordError(f"{report['hypnogram'] or record.psg}: no stage annotations", kind="hypnogram without stages")
        stage_labels = window_stages(intervals, num_windows, layout.window_seconds, layout.sampling_rate, report["seconds"])
        report["labels"].update(stage_labels.report)
        mismatch_epochs = (stage_labels.report["hypnogram_seconds"] - report["seconds"]) / EPOCH_SECONDS
        report["labels"]["hypnogram_mismatch_epochs"] = round(mismatch_epochs, 3)
        limit = config.max_hypnogram_mismatch_epochs
        if limit is not None and abs(mismatch_epochs) > limit:
            longer = "longer" if mismatch_epochs > 0 else "shorter"
            raise EdfRecordError(
                f"{report['hypnogram']}: hypnogram {abs(mismatch_epochs):.1f} epochs {longer} than the signal "
                f"({stage_labels.report['hypnogram_seconds']:.0f} s vs {report['seconds']:.0f} s; limit "
                f"max_hypnogram_mismatch_epochs={limit})",
                kind="hypnogram length mismatch",
            )
        sleep_stage = stage_labels.sleep_stage
    else:
        sleep_stage = np.full(num_windows, label_tools.UNDEFINED_STAGE, dtype=np.int64)
    arousal = np.full(num_windows, -1, dtype=np.int8)  # EDF hypnograms have no arousal scoring
    built = windowed_record(record.name, windows, channel_mask, layout, sleep_stage, arousal, age, sex,
                            report["seconds"], report)
    kept_undefined = built.report["sleep_stage_counts"]["undefined"]
    built.report["windows_unlabelled"] = kept_undefined if record.labelled else 0
    return built


def _skipped_record_report(record: EdfRecordFiles, error: Exception) -> dict:
    kind = getattr(error, "kind", None) or ("file not found" if isinstance(error, FileNotFoundError) else type(error).__name__)
    entry = {"psg": record.psg, "hypnogram": record.hypnogram or record.stages_csv, "label_source": record.label_source,
             "labelled": record.labelled, "folder": record.folder, "status": "skipped", "reason": str(error),
             "reason_kind": kind, "windows_kept": 0}
    if getattr(error, "field", None):  # a header field at fault (HeaderFieldError): named on its own too
        entry["field"] = error.field
    return entry


def _edf_totals(records: dict[str, dict]) -> dict:
    """The EDF-specific totals added to `merge_report`'s."""
    unknown, undefined = Counter(), Counter()
    for entry in records.values():
        labels = entry.get("labels") or {}
        unknown.update(labels.get("unknown_labels", {}))
        undefined.update(labels.get("undefined_labels", {}))
    built = [entry for entry in records.values() if entry.get("status") == "built"]
    return {
        "unknown_labels": dict(sorted(unknown.items())),
        "undefined_labels": dict(sorted(undefined.items())),
        "windows_unlabelled": sum(entry.get("windows_unlabelled", 0) for entry in built),
        "windows_after_hypnogram_end": sum((entry.get("labels") or {}).get("windows_after_hypnogram_end", 0) for entry in built),
        "records_truncated_hypnogram": sum(
            1 for entry in built if (entry.get("labels") or {}).get("hypnogram_seconds_beyond_signal", 0) > 0),
        "records_with_reader_problems": sum(1 for entry in built if entry.get("reader_problems")),
    }


# ----------------------------------------------------------------------------------------------
# The builder
# ----------------------------------------------------------------------------------------------


@dataclass
class EdfSleepConfig(datasets.BuilderConfig):
    """Builder settings.

    Args:
        channel_map: `{file channel label: canonical channel name or None}` (module docstring).
        max_hypnogram_mismatch_epochs: hypnogram vs. signal length difference (30-s epochs) above which a record
            is skipped; None: no limit.
        hypnogram_prefix_length: characters of the file names that pair a PSG with its hypnogram when the names do
            not pair otherwise (Sleep-EDF: 6); 0 disables that rule.
        probe_test_fraction: share of the labelled records (by `record_split_position`) in `probe_test`.
        feature_extractor_kwargs: keyword arguments of `PhysioMAEFeatureExtractor` (its defaults otherwise).
    """

    channel_map: dict = field(default_factory=dict)
    max_hypnogram_mismatch_epochs: float | None = DEFAULT_MAX_HYPNOGRAM_MISMATCH_EPOCHS
    hypnogram_prefix_length: int = HYPNOGRAM_PREFIX_LENGTH
    probe_test_fraction: float = PROBE_TEST_FRACTION
    feature_extractor_kwargs: dict = field(default_factory=dict)


class EdfSleep(WindowedRecordingsBuilder):
    """EDF/EDF+/BDF sleep recordings with hypnograms as 30-s windows in the challenge builder's row schema (module
    docstring: formats, channel map, label rules, report).

    Instantiate directly: `EdfSleep(data_dir=..., cache_dir=..., channel_map={...})`, then `download_and_prepare()`
    and `as_dataset()`. `build_report` holds the JSON report of every record after preparation.
    """

    BUILDER_CONFIG_CLASS = EdfSleepConfig
    BUILDER_VERSION = BUILDER_VERSION
    RECORD_CLASS = EdfRecordFiles
    BUILDER_CONFIGS = [EdfSleepConfig(name="default", version=datasets.Version(BUILDER_VERSION))]
    DEFAULT_CONFIG_NAME = "default"
    DEFAULT_WRITER_BATCH_SIZE = 256

    def __init__(self, *args, data_dir: str | None = None, feature_extractor=None, **kwargs):
        if data_dir is None:
            raise ValueError("EdfSleep needs data_dir= (a folder of EDF/BDF recordings)")
        data_dir = os.path.abspath(os.fspath(data_dir))
        self._listing = find_edf_records(data_dir, kwargs.get("hypnogram_prefix_length", HYPNOGRAM_PREFIX_LENGTH))
        self._feature_extractor = feature_extractor or default_feature_extractor(**(kwargs.get("feature_extractor_kwargs") or {}))
        self._layout = extractor_layout(self._feature_extractor)
        settings = json.dumps(
            {"extractor": self._feature_extractor.to_dict(),
             "config": {key: kwargs.get(key) for key in ("channel_map", "max_hypnogram_mismatch_epochs", "hypnogram_prefix_length", "probe_test_fraction")}},
            sort_keys=True, default=str,
        )
        kwargs.setdefault("hash", hashlib.sha1(f"{BUILDER_VERSION}|{_listing_fingerprint(self._listing)}|{settings}".encode()).hexdigest())
        super().__init__(*args, data_dir=data_dir, **kwargs)
        self._build_report: dict | None = None
        self._fragments_dir: str | None = None

    # -- datasets API -------------------------------------------------------------------------

    def _info(self) -> datasets.DatasetInfo:
        info = make_info(self._layout, self._feature_extractor)
        description = json.loads(info.description)
        description["description"] = "EDF/EDF+/BDF polysomnography with hypnograms, 30-s windows preprocessed by PhysioMAEFeatureExtractor."
        info.description = json.dumps(description, default=str)
        info.homepage, info.citation, info.license = "", "", ""
        return info

    def process(self, record: EdfRecordFiles, age_sex) -> RecordWindows:
        return process_edf_record(record, self._feature_extractor, self._layout, self.config, age_sex)

    def skipped_report(self, record: EdfRecordFiles, error: Exception) -> dict:
        return _skipped_record_report(record, error)

    def report_header(self) -> dict:
        return {"builder": "edf_sleep", **super().report_header(), "channel_map": self.config.channel_map,
                "max_hypnogram_mismatch_epochs": self.config.max_hypnogram_mismatch_epochs}

    def finish_report(self, report: dict) -> None:
        report["totals"].update(_edf_totals(report["records"]))


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------


def read_channel_map(value: str | None) -> dict:
    """`--channel_map`: a JSON object or a JSON file holding one; {} for None. ValueError naming the value otherwise."""
    if not value:
        return {}
    path = Path(value)
    text, where = (path.read_text(encoding="utf-8"), str(path)) if path.is_file() else (value, "--channel_map")
    try:
        mapping = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{where}: not valid JSON ({error}); expected {{\"file label\": \"canonical name\"}}") from None
    if not isinstance(mapping, dict) or not all(isinstance(target, (str, type(None))) for target in mapping.values()):
        raise ValueError(f"{where}: expected a JSON object {{\"file label\": \"canonical name\" or null}}")
    return {str(label): target for label, target in mapping.items()}


def build_to_folder(
    data_dir: str, output_dir: str, num_proc: int | None = None, channel_map: dict | None = None,
    keep_cache: bool = False, feature_extractor_kwargs: dict | None = None, parquet: bool = False, **config_kwargs,
) -> dict:
    """Build, `save_to_disk` into `output_dir/dataset`, write `output_dir/build_report.json` (+ Parquet shards with
    `parquet`), as `physionet2018.build_to_folder` (`physionet2018.save_build`). `config_kwargs`: other
    `EdfSleepConfig` fields."""
    builder = EdfSleep(data_dir=data_dir, cache_dir=str(Path(output_dir) / "cache"), channel_map=dict(channel_map or {}),
                       feature_extractor_kwargs=dict(feature_extractor_kwargs or {}), **config_kwargs)
    return save_build(builder, output_dir, num_proc, parquet, keep_cache)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dataset_scripts.edf_sleep", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="build the windowed dataset from a folder of EDF/BDF recordings")
    build.add_argument("--data_dir", required=True)
    build.add_argument("--output_dir", required=True)
    build.add_argument("--channel_map", default=None, help='JSON object (or a JSON file) {"file label": "canonical name"}')
    build.add_argument("--num_proc", type=int, default=None)
    build.add_argument("--max_hypnogram_mismatch_epochs", type=float, default=DEFAULT_MAX_HYPNOGRAM_MISMATCH_EPOCHS,
                       help="skip a record whose hypnogram is longer/shorter than its signal by more 30-s epochs "
                            "(negative: no limit)")
    build.add_argument("--keep_cache", action="store_true", help="keep the datasets cache in OUTPUT/cache")
    build.add_argument("--parquet", action="store_true", help="also write Parquet shards to OUTPUT/parquet")
    build.add_argument("--feature_extractor", default=None,
                       help="preprocessing settings: a folder or preprocessor_config.json saved by "
                            "PhysioMAEFeatureExtractor, or a JSON object of its arguments (default: its defaults)")
    arguments = parser.parse_args(argv)

    limit = arguments.max_hypnogram_mismatch_epochs
    report = build_to_folder(
        arguments.data_dir, arguments.output_dir, arguments.num_proc, channel_map=read_channel_map(arguments.channel_map),
        keep_cache=arguments.keep_cache, feature_extractor_kwargs=read_extractor_settings(arguments.feature_extractor),
        max_hypnogram_mismatch_epochs=None if limit is not None and limit < 0 else limit, parquet=arguments.parquet,
    )
    totals = report["totals"]
    print_build_summary(report, arguments.output_dir, arguments.parquet,
                        extra=f", {totals['windows_unlabelled']} unlabelled; unknown labels {totals['unknown_labels']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
