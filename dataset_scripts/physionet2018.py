"""PhysioNet/CinC Challenge 2018 ("You Snooze, You Win") as a `datasets` builder.

The builder reads a folder in the challenge layout and yields one row per 30-s window, preprocessed by
`PhysioMAEFeatureExtractor` (the project's single preprocessing implementation):

    from dataset_scripts.physionet2018 import PhysioNet2018
    builder = PhysioNet2018(data_dir="physionet.org/files/challenge-2018/1.0.0", cache_dir="/tmp/cache")
    builder.download_and_prepare(num_proc=4)
    splits = builder.as_dataset()          # DatasetDict: pretrain / probe_train / probe_test
    report = builder.build_report          # dict, also written to <cache>/build_report.json

Accepted layouts of `data_dir`: `training/` and/or `test/` subfolders (each with record folders and
optionally a `RECORDS` file), a flat folder with a `RECORDS` file (e.g. the 60-s segments), or record
folders directly. `age-sex.csv` at the root is optional.

The dataset's `info.description` is JSON with `channel_names`, `modality_names`, `modalities`,
`sampling_rate` and `window_seconds` (the axes of `input_values`, `channel_mask`, `modality_mask`) and
`feature_extractor` (the extractor's `to_dict()`: the preprocessing the windows went through; train.py saves
it with the exported model). `physiomae.saved_dataset` reads it.

Row schema (see `make_features`): `input_values` Array2D (num_channels, window_length) float16,
`channel_mask` (num_channels,) bool, `modality_mask` (num_modalities,) bool, `sleep_stage`
ClassLabel W/N1/N2/N3/REM (-1 undefined), `arousal` int8 (1/0/-1), `age` float32 (-1 unknown), `sex`
ClassLabel F/M (-1 unknown), `record` string, `window` int32.

Splits: `pretrain` = records without labels (no `.arousal`, no `-arousal.mat`, the `te*` records);
labelled records go to `probe_test` when sha1(record name) falls in the first 22 % of the hash range,
else to `probe_train` (deterministic, by record). A split without records is omitted.

Command line:

    python -m dataset_scripts.physionet2018 build --data_dir D --output_dir O [--num_proc N] [--parquet]
        [--feature_extractor FOLDER_OR_JSON]   # preprocessing settings (default: PhysioMAEFeatureExtractor())
    python -m dataset_scripts.physionet2018 verify --data_dir D [--sums_dir S] [--present_only]

`build` writes `O/dataset` (`DatasetDict.save_to_disk`), `O/build_report.json` (a copy also in
`O/dataset/`), and with `--parquet`
`O/parquet/<split>-NNNNN-of-NNNNN.parquet`, which load back with

    load_dataset("parquet", data_files={"pretrain": "O/parquet/pretrain-*.parquet", "probe_train": "O/parquet/probe_train-*.parquet", "probe_test": "O/parquet/probe_test-*.parquet"})

Labels come from `NAME-arousal.mat` when it is readable, else from `NAME.arousal` (both give the
same labels on the real files, see `dataset_scripts/labels.py` for the rules); records without either
are unlabelled (`sleep_stage` = `arousal` = -1). Bad input never stops a build: a record whose header
or signal file is missing, truncated or inconsistent, or that is shorter than one window, is skipped
with its reason; windows without any usable channel are skipped and counted; missing, flat or NaN
channels become absent channels (`channel_mask` False); unknown annotation text and malformed
`age-sex.csv` rows are counted.

Metadata is checked where it is read, never silently taken: the header is parsed strictly
(`feature_extraction_physiomae.read_wfdb_header`: record name, signal count = signal lines, sampling
frequency in `SAMPLING_RATE_RANGE_HZ`, sample count, format/offset, gain > 0, integer baseline / ADC zero /
initial value / checksum ...), and the `.mat` file must match it (matrix type, shape, data offset, every
signal's initial value and checksum). A malformed or impossible field skips the record with
`reason_kind` `bad header field` and `field` (the message names file, line, signal, field and value).
Values are `(digital - baseline) / gain` as the header says, then each channel is converted from its header
unit to its modality's (`MODALITY_UNITS`, as for files); a missing, unknown or mismatched unit is used as
written and counted (`units_unknown`). Annotation files whose time resolution is not the record's sampling
frequency, or masks with values other than 0/1, are unusable labels (reported, counted).

`build_report.json` (written atomically into the prepared cache folder, `builder.build_report`):

    {"builder_version", "created", "data_dir", "probe_test_fraction", "feature_extractor": {...},
     "row_counts": {split: rows},
     "totals": {"records_found", "records_built", "records_skipped", "records_skipped_by_reason": {kind: n},
                "windows_kept", "windows_skipped", "windows_skipped_by_reason": {reason: n},
                "unknown_annotation_notes", "records_with_unknown_units", "records_with_label_problems"},
     "splits": {split: {"records", "records_built", "windows"}},
     "listing_problems": [{"record", "where", "problem"}],       # e.g. listed in RECORDS, no header
     "age_sex": {"path", "entries", "problems": [{"line", "record", "problem", "text"}]},
     "records": {name: {"split", "status": "built" | "skipped", "reason", "reason_kind" (skipped only),
                        "field" (skipped for a header field only), "header", "units", "units_unknown",
                        "subset", "labelled", "age", "sex", "sampling_rate", "num_samples", "seconds",
                        "channels_in_file", "non_finite_samples", "channels_present",
                        "labels": {"source": "masks" | "notes", ..., "unknown_notes", "problems"},
                        "preprocessing": <PhysioMAEFeatureExtractor report>,
                        "windows_total", "windows_kept", "windows_skipped": {reason: n},
                        "trailing_seconds_not_windowed", "float16_clipped_values",
                        "sleep_stage_counts", "arousal_counts"}}}

With `num_proc`, every worker writes one fragment per record (atomically) and the fragments are merged
after `datasets` has finished; a record without a fragment is listed as skipped, never dropped.

Data: Ghassemi MM et al., You Snooze, You Win: the PhysioNet/Computing in Cardiology Challenge 2018,
CinC 2018; Goldberger AL et al., PhysioBank, PhysioToolkit, and PhysioNet, Circulation 2000 (ODC-By 1.0).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import shutil
import sys
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import datasets
import numpy as np

from dataset_scripts import challenge_format
from dataset_scripts import labels as label_tools
from dataset_scripts.files import atomic_write_json


BUILDER_VERSION = "1.1.0"  # 1.1.0: info.description records the feature-extractor settings
PROBE_TEST_FRACTION = 0.22
SPLIT_NAMES = ("pretrain", "probe_train", "probe_test")
REPORT_FILE_NAME = "build_report.json"
FLOAT16_MAX = float(np.finfo(np.float16).max)
_WFDB_INVALID_SAMPLE = -32768  # format 16 "no data" value; wfdb.rdrecord turns it into NaN


class RecordReadError(ValueError):
    """Raised when a record's header or signal file is missing, truncated or inconsistent, or a header field is
    malformed or impossible. `kind` (None: derived from the message) is the report's short category, `field` the
    header field at fault (None when the problem is not one field)."""

    def __init__(self, message: str, kind: str | None = None, field: str | None = None):
        super().__init__(message)
        self.kind, self.field = kind, field

    def __reduce__(self):  # picklable with its kind and field
        return type(self), (str(self), self.kind, self.field)


# ----------------------------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------------------------


def assign_split(record_name: str, labelled: bool, probe_test_fraction: float = PROBE_TEST_FRACTION) -> str:
    """`pretrain` for unlabelled records; labelled ones go to `probe_test` when their split position is below the
    fraction."""
    if not labelled:
        return "pretrain"
    return "probe_test" if record_split_position(record_name) < probe_test_fraction else "probe_train"


def record_split_position(record_name: str) -> float:
    """Where a record falls in [0, 1): the first 32 bits of sha1(name) / 2**32. The one record split, used by
    the builder (probe_test), the probes and train.py's held-out reconstruction records."""
    return int(hashlib.sha1(record_name.encode("utf-8")).hexdigest()[:8], 16) / 2**32


# ----------------------------------------------------------------------------------------------
# Record discovery
# ----------------------------------------------------------------------------------------------


@dataclass
class RecordFiles:
    """Paths of one record. Optional files are `None` when absent."""

    name: str
    header: str
    notes: str | None = None
    masks: str | None = None
    subset: str = ""  # "training", "test" or "" (flat layout)

    @property
    def labelled(self) -> bool:
        return self.notes is not None or self.masks is not None


@dataclass
class RecordListing:
    """Records found under a data folder, plus what was listed but could not be used."""

    records: list[RecordFiles]
    problems: list[dict]
    age_sex_path: str | None


def _record_files_in(folder: Path, name: str, subset: str) -> RecordFiles | None:
    header = folder / f"{name}.hea"
    if not header.is_file():
        return None
    notes = folder / f"{name}.{challenge_format.ANNOTATION_EXTENSION}"
    masks = folder / f"{name}{challenge_format.MASK_FILE_SUFFIX}"
    return RecordFiles(
        name=name,
        header=str(header),
        notes=str(notes) if notes.is_file() else None,
        masks=str(masks) if masks.is_file() else None,
        subset=subset,
    )


def _records_in_folder(folder: Path, subset: str, problems: list[dict]) -> list[RecordFiles]:
    """Records of one folder: from its RECORDS file when present, else record folders / loose headers."""
    found: list[RecordFiles] = []
    listing = folder / "RECORDS"
    if listing.is_file():
        for line_number, line in enumerate(listing.read_text(errors="replace").splitlines(), start=1):
            entry = line.strip().rstrip("/")
            if not entry or entry.startswith("#"):
                continue
            name = Path(entry).name
            record = _record_files_in(folder / entry, name, subset) or _record_files_in(
                (folder / entry).parent, name, subset
            )
            if record is None:
                problems.append(
                    {"record": name, "where": f"{listing}:{line_number}", "problem": "listed in RECORDS but no header (.hea) found"}
                )
            else:
                found.append(record)
        return found
    for child in sorted(folder.iterdir()):
        if child.is_dir():
            record = _record_files_in(child, child.name, subset)
            if record is not None:
                found.append(record)
            elif any(child.glob("*.mat")) or any(child.glob("*.arousal")):
                problems.append({"record": child.name, "where": str(child), "problem": "record folder without header (.hea)"})
        elif child.suffix == ".hea":
            found.append(_record_files_in(folder, child.stem, subset))
    return found


def find_records(data_dir: str | os.PathLike) -> RecordListing:
    """Find every record under `data_dir` in one of the accepted layouts (module docstring)."""
    root = Path(data_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"data_dir {root} is not a folder")
    problems: list[dict] = []
    subsets = [(root / subset, subset) for subset in ("training", "test") if (root / subset).is_dir()]
    records: list[RecordFiles] = []
    for folder, subset in subsets or [(root, "")]:
        records.extend(_records_in_folder(folder, subset, problems))
    unique: dict[str, RecordFiles] = {}
    for record in records:
        if record.name in unique:
            problems.append({"record": record.name, "where": record.header, "problem": f"duplicate record name (kept {unique[record.name].header})"})
            continue
        unique[record.name] = record
    age_sex = root / "age-sex.csv"
    return RecordListing(
        records=sorted(unique.values(), key=lambda record: record.name),
        problems=problems,
        age_sex_path=str(age_sex) if age_sex.is_file() else None,
    )


def _listing_fingerprint(listing: RecordListing) -> str:
    """Hash of every input file's path, size and modification time (so changed data rebuilds)."""
    paths = [listing.age_sex_path] if listing.age_sex_path else []
    for record in listing.records:
        paths += [record.header, record.notes, record.masks, _signal_path_guess(record)]
    return files_fingerprint(paths)


def files_fingerprint(paths) -> str:
    """SHA-1 over each path's name, size and modification time (None entries skipped, missing files marked)."""
    digest = hashlib.sha1()
    for path in paths:
        if path is None:
            continue
        try:
            stat = os.stat(path)
            digest.update(f"{path}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{path}|missing\n".encode())
    return digest.hexdigest()


def _signal_path_guess(record: RecordFiles) -> str:
    return str(Path(record.header).with_suffix(".mat"))


# ----------------------------------------------------------------------------------------------
# Signals
# ----------------------------------------------------------------------------------------------


@dataclass
class RecordSignals:
    """Physical signals of one record at its own sampling rate.

    Attributes:
        signals: (num_channels, num_samples) float32, NaN where the file holds WFDB's invalid value.
        channel_names: names from the header.
        sampling_rate: Hz.
        units: physical unit of each channel, as the header writes it.
    """

    signals: np.ndarray
    channel_names: list[str]
    sampling_rate: float
    units: list[str] | None = None

    @property
    def num_samples(self) -> int:
        return int(self.signals.shape[1])


def _read_header(header_path: Path):
    """The header parsed strictly (`feature_extraction_physiomae.read_wfdb_header`: every field checked where it is
    read); a malformed or impossible field -> `RecordReadError` naming the file, line, signal, field and value."""
    from modeling_physiomae.feature_extraction_physiomae import HeaderFieldError, read_wfdb_header

    try:
        return read_wfdb_header(header_path)
    except HeaderFieldError as error:
        raise RecordReadError(str(error), kind=error.kind, field=error.field) from error
    except OSError as error:
        raise RecordReadError(f"{header_path}: unreadable header: {error}") from error


def _field_error(spec, field: str, value, problem: str) -> RecordReadError:
    """A `RecordReadError` for one field of one signal line (`spec`: its `WfdbSignalSpec`)."""
    shown = "" if value is None else f" {str(value)!r}"
    return RecordReadError(f"{spec.where}: {field}{shown} {problem}", kind="bad header field", field=field)


def _read_matlab_v4_int16(signal_path: Path, header, header_path: Path) -> np.ndarray:
    """Memory-map a challenge `.mat` (Matlab v4, int16, WFDB format `16+24`) as (num_samples, num_channels), after
    `feature_extraction_physiomae.check_matlab_v4_signal_file` checked it against the WFDB header (matrix type,
    channel count, sample count, data offset, file size), naming the file and the mismatch."""
    from modeling_physiomae.feature_extraction_physiomae import RecordingReadError, check_matlab_v4_signal_file

    try:
        data_offset, rows, columns = check_matlab_v4_signal_file(signal_path, header)
    except RecordingReadError as error:
        raise RecordReadError(str(error), kind=error.kind, field=getattr(error, "field", None)) from error
    # column-major (channels x samples) Matlab matrix = interleaved samples: (num_samples, num_channels)
    return np.memmap(signal_path, dtype="<i2", mode="r", offset=data_offset, shape=(columns, rows))


def _check_initial_values_and_checksums(digital: np.ndarray, header, signal_path: Path) -> None:
    """The header's initial value and checksum (16-bit sum) of every signal must be those of the samples: otherwise
    header and signal file do not belong together (all 2,249 real excerpts agree)."""
    checksums = (digital.sum(axis=1, dtype=np.int64) + 32768) % 65536 - 32768
    for channel, spec in enumerate(header.signals):
        if spec.initial_value is not None and digital.shape[1] and spec.initial_value != int(digital[channel, 0]):
            raise RecordReadError(
                f"{spec.where}: initial value {spec.initial_value} but the first sample in {signal_path} is "
                f"{int(digital[channel, 0])} (header does not match signal file)",
                kind="header does not match signal file", field="initial value")
        if spec.checksum is not None and spec.checksum % 65536 != int(checksums[channel]) % 65536:  # signed or not
            raise RecordReadError(
                f"{spec.where}: checksum {spec.checksum} but the samples in {signal_path} sum to {int(checksums[channel])} "
                f"(mod 2^16; header does not match signal file)",
                kind="header does not match signal file", field="checksum")


def read_record_signals(header_path: str | os.PathLike) -> RecordSignals:
    """Read a record's physical signals as float32 (channels, samples), the same values as `wfdb.rdrecord`.

    The header is parsed strictly (`_read_header`); every signal must have one sample per frame. `units` are as
    written ("" where the header gives none; `process_record` converts or counts them). The challenge's `16+24`
    Matlab files (a `.mat` signal file must hold every signal in format 16) are checked against their header
    (channel and sample count, data offset, initial values and checksums), read once as int16 and converted
    channel by channel as the header says,
    `(digital - baseline) / gain` (no float64 copy of the whole night); other WFDB formats are read by
    `wfdb.rdrecord`, whose reading of the header must agree with ours. WFDB's invalid sample value (-32768) becomes
    NaN, as in `wfdb.rdrecord`. Raises `RecordReadError` naming the file (and the field) for a missing, truncated or
    inconsistent record or a malformed or impossible header field.
    """
    header_path = Path(header_path)
    header = _read_header(header_path)
    if header.num_segments is not None:
        raise RecordReadError(f"{header_path}: multi-segment WFDB records are not supported", kind="bad header field",
                              field="number of segments")
    if not header.num_signals:
        raise RecordReadError(f"{header_path}: header lists no signals")
    for spec in header.signals:
        if spec.samples_per_frame != 1 or spec.skew:
            field, value = ("samples per frame", spec.samples_per_frame) if spec.samples_per_frame != 1 else ("skew", spec.skew)
            raise _field_error(spec, field, value, "is not supported (the builder reads one rate per record, unskewed)")
    file_names = {spec.file_name for spec in header.signals}
    channel_names = [spec.name for spec in header.signals]
    units = [spec.units or "" for spec in header.signals]
    if any(name.lower().endswith(".mat") for name in file_names):
        for spec in header.signals:
            if len(file_names) != 1:
                raise _field_error(spec, "signal file", spec.file_name, f"is one of {len(file_names)} files "
                                   f"({sorted(file_names)}): a challenge record keeps every signal in one .mat file")
            if spec.format != 16:
                raise _field_error(spec, "format", spec.format, "is not the challenge's: its .mat signal file holds "
                                   "every signal in format 16 (16+24)")
        signal_path = header_path.parent / next(iter(file_names))
        # (num_samples, num_channels) memmap -> (num_channels, num_samples) int16 in memory, read once
        digital = np.ascontiguousarray(_read_matlab_v4_int16(signal_path, header, header_path).T)
        _check_initial_values_and_checksums(digital, header, signal_path)
        signals = np.empty(digital.shape, dtype=np.float32)
        for channel, spec in enumerate(header.signals):
            np.subtract(digital[channel], spec.baseline, out=signals[channel], dtype=np.float32)
            signals[channel] /= np.float32(spec.gain)
            signals[channel][digital[channel] == _WFDB_INVALID_SAMPLE] = np.nan
        del digital
        return RecordSignals(signals=signals, channel_names=channel_names, sampling_rate=header.sampling_rate,
                             units=units)
    import wfdb

    from modeling_physiomae.feature_extraction_physiomae import HeaderFieldError, check_wfdb_reading

    for file_name in file_names:
        if not (header_path.parent / file_name).is_file():
            raise RecordReadError(f"{header_path.parent / file_name}: signal file missing")
    try:
        record = wfdb.rdrecord(str(header_path.with_suffix("")))
    except Exception as error:
        raise RecordReadError(f"{header_path}: wfdb could not read the signals: {error}") from error
    try:
        check_wfdb_reading(header, record)
    except HeaderFieldError as error:
        raise RecordReadError(str(error), kind=error.kind, field=error.field) from error
    # (num_samples, num_channels) -> (num_channels, num_samples)
    signals = np.ascontiguousarray(record.p_signal.T, dtype=np.float32)
    return RecordSignals(signals=signals, channel_names=channel_names, sampling_rate=header.sampling_rate, units=units)


# ----------------------------------------------------------------------------------------------
# Feature extractor layout
# ----------------------------------------------------------------------------------------------


def default_feature_extractor(**kwargs):
    """The project's feature extractor (imported lazily so that labels/verify work without torch)."""
    from modeling_physiomae.feature_extraction_physiomae import PhysioMAEFeatureExtractor

    return PhysioMAEFeatureExtractor(**kwargs)


@dataclass
class ExtractorLayout:
    """What the rows' shapes depend on: channel and modality names, window length, sampling rate."""

    modalities: dict[str, list[str]]
    sampling_rate: int
    window_seconds: float

    @property
    def channel_names(self) -> list[str]:
        return [channel for channels in self.modalities.values() for channel in channels]

    @property
    def window_length(self) -> int:
        return int(round(self.sampling_rate * self.window_seconds))

    def modality_mask(self, channel_mask: np.ndarray) -> np.ndarray:
        """(num_windows, num_channels) -> (num_windows, num_modalities): any channel of the modality present."""
        columns, start = [], 0
        for channels in self.modalities.values():
            columns.append(channel_mask[:, start : start + len(channels)].any(axis=1))
            start += len(channels)
        return np.stack(columns, axis=1)


def extractor_layout(feature_extractor) -> ExtractorLayout:
    """Read the layout from a feature extractor (its `modalities`, `sampling_rate`, `window_seconds`)."""
    from modeling_physiomae.configuration_physiomae import DEFAULT_MODALITIES

    modalities = getattr(feature_extractor, "modalities", None) or DEFAULT_MODALITIES
    return ExtractorLayout(
        modalities={str(name): [str(channel) for channel in channels] for name, channels in modalities.items()},
        sampling_rate=int(getattr(feature_extractor, "sampling_rate", 100)),
        window_seconds=float(getattr(feature_extractor, "window_seconds", 30.0)),
    )


def make_features(layout: ExtractorLayout) -> datasets.Features:
    """The row schema for a layout (13 channels x 3000 samples with the default extractor)."""
    return datasets.Features(
        {
            "input_values": datasets.Array2D(shape=(len(layout.channel_names), layout.window_length), dtype="float16"),
            "channel_mask": datasets.Sequence(datasets.Value("bool"), length=len(layout.channel_names)),
            "modality_mask": datasets.Sequence(datasets.Value("bool"), length=len(layout.modalities)),
            "sleep_stage": datasets.ClassLabel(names=list(label_tools.STAGE_NAMES)),
            "arousal": datasets.Value("int8"),
            "age": datasets.Value("float32"),
            "sex": datasets.ClassLabel(names=list(label_tools.SEX_NAMES)),
            "record": datasets.Value("string"),
            "window": datasets.Value("int32"),
        }
    )


# ----------------------------------------------------------------------------------------------
# One record -> windows + report
# ----------------------------------------------------------------------------------------------


@dataclass
class RecordWindows:
    """Rows of one record (an iterable made lazily, one float16 window at a time) and its report entry."""

    rows: Iterable[dict]
    report: dict


def _record_labels(record: RecordFiles, num_samples: int, sampling_rate: float, report: dict) -> label_tools.SampleLabels | None:
    """Per-sample labels from the masks when readable, else from the notes; problems go to `report`."""
    label_problems = []
    if record.masks is not None:
        try:
            labels = label_tools.read_arousal_masks(record.masks, num_samples)
            if record.notes is not None:  # still parse the notes for unknown-text accounting
                try:
                    labels.report["notes"] = label_tools.read_arousal_notes(record.notes, num_samples, sampling_rate).report
                except label_tools.AnnotationFormatError as error:
                    labels.report["notes_problem"] = str(error)
            labels.report["problems"] = label_problems
            return labels
        except (label_tools.ArousalMaskError, OSError, ValueError, TypeError) as error:
            label_problems.append(f"masks unusable, {'using notes' if record.notes else 'no labels'}: {error}")
    if record.notes is not None:
        try:
            labels = label_tools.read_arousal_notes(record.notes, num_samples, sampling_rate)
            labels.report["problems"] = label_problems
            return labels
        except (label_tools.AnnotationFormatError, OSError, ValueError) as error:
            label_problems.append(f"notes unusable: {error}")
    report["label_problems"] = label_problems
    return None


def dataset_description(layout: ExtractorLayout, feature_extractor) -> str:
    """The dataset's `info.description`: JSON, so that consumers (`physiomae.saved_dataset`) read the axes' names
    and the preprocessing from the saved dataset itself."""
    return json.dumps(
        {
            "description": "PhysioNet/CinC Challenge 2018 polysomnography, 30-s windows preprocessed by PhysioMAEFeatureExtractor.",
            "channel_names": layout.channel_names,
            "modality_names": list(layout.modalities),
            "modalities": layout.modalities,
            "sampling_rate": layout.sampling_rate,
            "window_seconds": layout.window_seconds,
            # the settings the windows were preprocessed with: train.py exports them with the model
            "feature_extractor": feature_extractor.to_dict(),
        },
        default=str,
    )


def make_info(layout: ExtractorLayout, feature_extractor) -> datasets.DatasetInfo:
    """The builder's DatasetInfo: row schema (`make_features`), layout and preprocessing (`dataset_description`)."""
    return datasets.DatasetInfo(
        description=dataset_description(layout, feature_extractor),
        features=make_features(layout),
        homepage="https://physionet.org/content/challenge-2018/1.0.0/",
        citation=(
            "Ghassemi MM, Moody BE, Lehman LH, Song C, Li Q, Sun H, Mark RG, Westover MB, Clifford GD. "
            "You Snooze, You Win: the PhysioNet/Computing in Cardiology Challenge 2018. CinC 2018; 45."
        ),
        license="ODC-By-1.0",
    )


def _convert_units(loaded: RecordSignals, feature_extractor) -> tuple[dict, dict]:
    """Convert (in place) every channel the extractor uses from its header unit to the unit its modality is scaled in
    (`feature_extraction_physiomae.MODALITY_UNITS`), the conversion `preprocess_channels` applies to files: e.g. an
    EEG in mV is multiplied by 1000; the challenge's uV / mV / % need none. A unit that is missing, unknown or of
    another kind (SpO2 in uV) is left as it is and counted, as for files. Returns the report's `units`
    (canonical -> {"unit", "target", "factor"}) and `units_unknown` (canonical -> unit as written) entries."""
    factors, converted, unknown = feature_extractor.unit_factors(loaded.channel_names, loaded.units)
    for row, factor in enumerate(factors):
        if factor != 1.0:
            loaded.signals[row] = (loaded.signals[row].astype(np.float64) * factor).astype(np.float32)
    return converted, unknown


def process_record(record: RecordFiles, feature_extractor, layout: ExtractorLayout, age: float, sex: int) -> RecordWindows:
    """Read, preprocess, window and label one record. Bad input -> `RecordReadError` (caller reports it)."""
    report: dict[str, Any] = {"subset": record.subset, "labelled": record.labelled, "age": age, "sex": sex}
    loaded = read_record_signals(record.header)
    report["header"] = record.header
    report["units"], report["units_unknown"] = _convert_units(loaded, feature_extractor)
    record_seconds = loaded.num_samples / loaded.sampling_rate
    report.update(
        sampling_rate=loaded.sampling_rate,
        num_samples=loaded.num_samples,
        seconds=record_seconds,
        channels_in_file=loaded.channel_names,
        non_finite_samples={
            name: int(count) for name, count in zip(loaded.channel_names, (~np.isfinite(loaded.signals)).sum(axis=1)) if count
        },
    )
    if record_seconds < layout.window_seconds:
        raise RecordReadError(
            f"{record.header}: record shorter than one window ({record_seconds:.2f} s < {layout.window_seconds:g} s)"
        )
    sample_labels = _record_labels(record, loaded.num_samples, loaded.sampling_rate, report) if record.labelled else None
    if sample_labels is not None:
        report["labels"] = {"source": sample_labels.source, **sample_labels.report}

    preprocessed = feature_extractor.preprocess_record(loaded.signals, loaded.channel_names, loaded.sampling_rate)
    report["preprocessing"] = preprocessed.report
    del loaded
    windows, channel_mask = feature_extractor.cut_windows(preprocessed)
    windows = np.asarray(windows)
    channel_mask = np.asarray(channel_mask, dtype=bool)
    num_windows = windows.shape[0]
    report["channels_present"] = [
        name for name, present in zip(layout.channel_names, np.asarray(preprocessed.channel_present)) if present
    ]
    del preprocessed

    samples_per_window = int(round(layout.window_seconds * report["sampling_rate"]))
    if sample_labels is not None:
        labelled_windows = label_tools.window_labels(sample_labels, samples_per_window, num_windows=num_windows)
        sleep_stage, arousal = labelled_windows.sleep_stage, labelled_windows.arousal
        if len(sleep_stage) < num_windows:  # labels shorter than the signal: pad as undefined
            sleep_stage = np.concatenate([sleep_stage, np.full(num_windows - len(sleep_stage), -1)])
            arousal = np.concatenate([arousal, np.full(num_windows - len(arousal), -1, dtype=np.int8)])
    else:
        sleep_stage = np.full(num_windows, -1, dtype=np.int64)
        arousal = np.full(num_windows, -1, dtype=np.int8)
    return windowed_record(record.name, windows, channel_mask, layout, sleep_stage, arousal, age, sex, record_seconds,
                           report)


def windowed_record(name: str, windows: np.ndarray, channel_mask: np.ndarray, layout: ExtractorLayout,
                    sleep_stage: np.ndarray, arousal: np.ndarray, age: float, sex: int, record_seconds: float,
                    report: dict[str, Any]) -> RecordWindows:
    """A record's rows (one per kept window, float16) and the window part of its report, for every builder.

    Windows without any channel, or with non-finite values after preprocessing, are skipped and counted; which
    windows are kept is decided before anything is yielded (a record is all or nothing)."""
    num_windows = windows.shape[0]
    modality_mask = layout.modality_mask(channel_mask) if num_windows else np.zeros((0, len(layout.modalities)), bool)
    no_channel = ~channel_mask.any(axis=1)
    non_finite = ~np.isfinite(windows).all(axis=(1, 2)) & ~no_channel
    keep = ~(no_channel | non_finite)
    skipped = {
        reason: int(count)
        for reason, count in (
            ("no channel present in the window", no_channel.sum()),
            ("non-finite values after preprocessing", non_finite.sum()),
        )
        if count
    }
    clipped_values = sum(int((np.abs(windows[index]) > FLOAT16_MAX).sum()) for index in np.flatnonzero(keep))

    def rows() -> Iterator[dict]:
        for window_index in np.flatnonzero(keep):
            # (num_channels, window_length) float32 -> float16, clipped to its range
            window = np.clip(windows[window_index], -FLOAT16_MAX, FLOAT16_MAX).astype(np.float16)
            yield {
                "input_values": window,
                "channel_mask": channel_mask[window_index],
                "modality_mask": modality_mask[window_index],
                "sleep_stage": int(sleep_stage[window_index]),
                "arousal": int(arousal[window_index]),
                "age": float(age),
                "sex": int(sex),
                "record": name,
                "window": int(window_index),
            }

    kept_stages, kept_arousal = sleep_stage[keep], arousal[keep]
    report.update(
        status="built",
        windows_total=num_windows,
        windows_kept=int(keep.sum()),
        windows_skipped=skipped,
        trailing_seconds_not_windowed=round(record_seconds - num_windows * layout.window_seconds, 3),
        float16_clipped_values=clipped_values,
        sleep_stage_counts={
            name: int((kept_stages == code).sum()) for code, name in enumerate(label_tools.STAGE_NAMES)
        }
        | {"undefined": int((kept_stages == -1).sum())},
        arousal_counts={str(value): int((kept_arousal == value).sum()) for value in (1, 0, -1)},
    )
    return RecordWindows(rows=rows(), report=report)


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------


def merge_report(
    fragments_dir: str | os.PathLike,
    listing: RecordListing,
    split_of: dict[str, str],
    age_sex: label_tools.AgeSexTable | None,
    header: dict,
) -> dict:
    """Merge the per-record fragments into one report; a record without a fragment is flagged, never lost."""
    fragments_dir = Path(fragments_dir)
    records: dict[str, dict] = {}
    for record in listing.records:
        fragment = fragments_dir / f"{record.name}.json"
        if fragment.is_file():
            records[record.name] = json.loads(fragment.read_text())
        else:
            records[record.name] = {"status": "skipped", "reason": "no report fragment (worker did not finish this record)"}
        records[record.name]["split"] = split_of[record.name]
    skipped_by_reason: Counter = Counter()
    window_skips: Counter = Counter()
    splits: dict[str, dict] = {}
    for name, entry in records.items():
        split = splits.setdefault(entry["split"], {"records": 0, "records_built": 0, "windows": 0})
        split["records"] += 1
        if entry["status"] == "built":
            split["records_built"] += 1
            split["windows"] += entry["windows_kept"]
            window_skips.update(entry.get("windows_skipped", {}))
        else:
            skipped_by_reason[entry.get("reason_kind", entry["reason"])] += 1
    totals = {
        "records_found": len(listing.records),
        "records_built": sum(entry["status"] == "built" for entry in records.values()),
        "records_skipped": sum(entry["status"] != "built" for entry in records.values()),
        "records_skipped_by_reason": dict(skipped_by_reason),
        "windows_kept": sum(entry.get("windows_kept", 0) for entry in records.values()),
        "windows_skipped": sum(window_skips.values()),
        "windows_skipped_by_reason": dict(window_skips),
        "unknown_annotation_notes": sum(
            (entry.get("labels", {}).get("notes") or entry.get("labels", {})).get("unknown_note_count", 0)
            for entry in records.values()
        ),
        # built records with a channel unit that is missing, unknown or of another kind (used as written)
        "records_with_unknown_units": sum(bool(entry.get("units_unknown")) for entry in records.values()),
        # labelled records whose label files were (partly) unusable: the reasons are in their entries
        "records_with_label_problems": sum(
            bool(entry.get("label_problems") or (entry.get("labels") or {}).get("problems")
                 or (entry.get("labels") or {}).get("notes_problem"))
            for entry in records.values()
        ),
    }
    return {
        **header,
        "totals": totals,
        "splits": splits,
        "listing_problems": listing.problems,
        "age_sex": {
            "path": listing.age_sex_path,
            "entries": len(age_sex.entries) if age_sex else 0,
            "problems": age_sex.problems if age_sex else [],
        },
        "records": records,
    }


# ----------------------------------------------------------------------------------------------
# The builder
# ----------------------------------------------------------------------------------------------


@dataclass
class PhysioNet2018Config(datasets.BuilderConfig):
    """Builder settings.

    Args:
        probe_test_fraction: share of the labelled records (by sha1 of the name) in `probe_test`.
        feature_extractor_kwargs: keyword arguments of `PhysioMAEFeatureExtractor` (its defaults otherwise).
    """

    probe_test_fraction: float = PROBE_TEST_FRACTION
    feature_extractor_kwargs: dict = field(default_factory=dict)


class WindowedRecordingsBuilder(datasets.GeneratorBasedBuilder):
    """What the recording builders share (`PhysioNet2018`, `edf_sleep.EdfSleep`): a listing of records
    (`self._listing.records`, each with `name` and `labelled`), the record split, the build report, and empty
    splits instead of errors when every record of a split was skipped."""

    def as_dataset(self, split=None, **kwargs):
        """As `datasets`, except that a split whose records all were skipped is an empty dataset, not an error."""
        empty = {name for name, info in (self.info.splits or {}).items() if not info.num_examples}
        if split is None and empty:
            parts = {name: self._empty_split(name) if name in empty
                     else super(WindowedRecordingsBuilder, self).as_dataset(split=name, **kwargs)
                     for name in self.info.splits}
            return datasets.DatasetDict(parts)
        if isinstance(split, str) and split in empty:
            return self._empty_split(split)
        return super().as_dataset(split, **kwargs)

    def _empty_split(self, name: str) -> datasets.Dataset:
        features = self.info.features
        return datasets.Dataset.from_dict({column: [] for column in features}, features=features, split=datasets.Split(name))

    @property
    def build_report_path(self) -> str:
        """`build_report.json` inside the prepared cache folder."""
        return os.path.join(getattr(self, "_output_dir", None) or self._cache_dir, REPORT_FILE_NAME)

    @property
    def build_report(self) -> dict:
        """The report of the last preparation (loaded from the cache when it was already prepared)."""
        if self._build_report is None and os.path.isfile(self.build_report_path):
            self._build_report = json.loads(Path(self.build_report_path).read_text())
        if self._build_report is None:
            raise RuntimeError("no build report yet: call download_and_prepare() first")
        return self._build_report

    @property
    def records(self) -> list:
        return list(self._listing.records)

    def _split_assignment(self) -> dict[str, str]:
        return {record.name: assign_split(record.name, record.labelled, self.config.probe_test_fraction)
                for record in self._listing.records}

    # -- what a builder provides: its record dataclass, one record's rows, a skipped record's report
    RECORD_CLASS: type = None

    def process(self, record, age_sex) -> RecordWindows:
        raise NotImplementedError

    def skipped_report(self, record, error: Exception) -> dict:
        raise NotImplementedError

    def report_header(self) -> dict:
        """The build report's header (a builder adds its own settings)."""
        return {
            "builder_version": self.BUILDER_VERSION,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "data_dir": self.config.data_dir,
            "probe_test_fraction": self.config.probe_test_fraction,
            "feature_extractor": self._feature_extractor.to_dict(),
            "row_counts": {name: split.num_examples for name, split in (self.info.splits or {}).items()},
        }

    def finish_report(self, report: dict) -> None:
        """Add builder-specific totals to the merged report (in place)."""

    # -- datasets API, the same for every recording builder
    def _split_generators(self, dl_manager):
        split_of = self._split_assignment()
        self._fragments_dir = self._cache_dir + ".report-fragments"
        shutil.rmtree(self._fragments_dir, ignore_errors=True)
        os.makedirs(self._fragments_dir)
        generators = []
        for split in SPLIT_NAMES:
            members = [asdict(record) for record in self._listing.records if split_of[record.name] == split]
            if members:
                generators.append(datasets.SplitGenerator(name=split, gen_kwargs={
                    "records": members, "age_sex_path": self._listing.age_sex_path, "fragments_dir": self._fragments_dir}))
        return generators

    def _generate_examples(self, records: list[dict], age_sex_path: str | None, fragments_dir: str) -> Iterator[tuple[str, dict]]:
        age_sex = label_tools.read_age_sex_csv(age_sex_path) if age_sex_path else None
        for record_fields in records:
            record = self.RECORD_CLASS(**record_fields)
            try:
                result = self.process(record, age_sex)
            except Exception as error:  # any bad input: the record is skipped with its reason, the build goes on
                result = RecordWindows(rows=[], report=self.skipped_report(record, error))
            for row in result.rows:
                yield f"{record.name}/{row['window']}", row
            atomic_write_json(Path(fragments_dir) / f"{record.name}.json", result.report)

    def download_and_prepare(self, *args, **kwargs):
        """`datasets`' preparation, then the per-record reports are merged into `build_report.json`."""
        self._fragments_dir = None
        super().download_and_prepare(*args, **kwargs)
        if self._fragments_dir is not None and os.path.isdir(self._fragments_dir):
            age_sex = label_tools.read_age_sex_csv(self._listing.age_sex_path) if self._listing.age_sex_path else None
            report = merge_report(self._fragments_dir, self._listing, self._split_assignment(), age_sex,
                                  header=self.report_header())
            self.finish_report(report)
            atomic_write_json(self.build_report_path, report)
            shutil.rmtree(self._fragments_dir, ignore_errors=True)
            self._build_report = report
        elif os.path.isfile(self.build_report_path):
            self._build_report = json.loads(Path(self.build_report_path).read_text())


class PhysioNet2018(WindowedRecordingsBuilder):
    """PhysioNet/CinC 2018 polysomnography as 30-s windows (see the module docstring for layout and schema).

    Instantiate directly: `PhysioNet2018(data_dir=..., cache_dir=...)`, then `download_and_prepare()`
    and `as_dataset()`. `build_report` holds the JSON report of every record after preparation.
    """

    BUILDER_CONFIG_CLASS = PhysioNet2018Config
    BUILDER_VERSION = BUILDER_VERSION
    RECORD_CLASS = RecordFiles
    BUILDER_CONFIGS = [PhysioNet2018Config(name="default", version=datasets.Version(BUILDER_VERSION))]
    DEFAULT_CONFIG_NAME = "default"
    DEFAULT_WRITER_BATCH_SIZE = 256  # 256 windows x 13 x 3000 float16 ~ 20 MB per Arrow batch

    def __init__(self, *args, data_dir: str | None = None, feature_extractor=None, **kwargs):
        if data_dir is None:
            raise ValueError("PhysioNet2018 needs data_dir= (a folder in the challenge layout)")
        data_dir = os.path.abspath(os.fspath(data_dir))
        self._listing = find_records(data_dir)
        config_kwargs_extractor = kwargs.get("feature_extractor_kwargs") or {}
        self._feature_extractor = feature_extractor or default_feature_extractor(**config_kwargs_extractor)
        self._layout = extractor_layout(self._feature_extractor)
        extractor_settings = json.dumps(self._feature_extractor.to_dict(), sort_keys=True, default=str)
        fingerprint = hashlib.sha1(
            f"{BUILDER_VERSION}|{_listing_fingerprint(self._listing)}|{extractor_settings}".encode()
        ).hexdigest()
        kwargs.setdefault("hash", fingerprint)
        super().__init__(*args, data_dir=data_dir, **kwargs)
        self._build_report: dict | None = None
        self._fragments_dir: str | None = None

    # -- datasets API -------------------------------------------------------------------------

    def _info(self) -> datasets.DatasetInfo:
        return make_info(self._layout, self._feature_extractor)

    def process(self, record: RecordFiles, age_sex) -> RecordWindows:
        age, sex = age_sex.lookup(record.name) if age_sex else (-1.0, -1)
        return process_record(record, self._feature_extractor, self._layout, age, sex)

    def skipped_report(self, record: RecordFiles, error: Exception) -> dict:
        return _skipped_record_report(record, error)


def _skipped_record_report(record: RecordFiles, error: Exception) -> dict:
    message = str(error)
    kind = _reason_kind(error, message)
    entry = {"subset": record.subset, "labelled": record.labelled, "status": "skipped", "reason": message, "reason_kind": kind, "windows_kept": 0}
    if getattr(error, "field", None):  # a header field at fault: named on its own too
        entry["field"] = error.field
    return entry


def _reason_kind(error: Exception, message: str) -> str:
    """A short category of a skip reason for the totals (the full message stays in the record entry)."""
    if getattr(error, "kind", None):  # RecordReadError / RecordingReadError that name their category
        return error.kind
    for needle, kind in (
        ("signal file missing", "signal file missing"),
        ("truncated", "signal file truncated"),
        ("header has", "header does not match signal file"),
        ("byte offset", "header does not match signal file"),
        ("shorter than one window", "record shorter than one window"),
        ("unreadable header", "header unreadable"),
        ("not a Matlab v4", "signal file not Matlab v4 int16"),
    ):
        if needle in message:
            return kind
    return f"{type(error).__name__}"


# ----------------------------------------------------------------------------------------------
# Verification against the official SHA1SUMS
# ----------------------------------------------------------------------------------------------


@dataclass
class VerificationResult:
    """Outcome of `verify_download`: `missing`/`corrupted` files, `absent_records` (present_only mode), `checked` count."""

    checked: int = 0
    ok: int = 0
    missing: list[str] = field(default_factory=list)
    corrupted: list[dict] = field(default_factory=list)
    absent_records: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.missing and not self.corrupted


def read_sha1sums(path: str | os.PathLike) -> list[tuple[str, str]]:
    """`sha1  relative/path` lines (as written by sha1sum) -> [(sha1, path)]; raises naming bad lines."""
    entries = []
    for line_number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split(None, 1)
        if len(parts) != 2 or len(parts[0]) != 40:
            raise ValueError(f"{path}:{line_number}: not a 'sha1  path' line: {line!r}")
        entries.append((parts[0].lower(), parts[1].strip().lstrip("*")))
    return entries


def _file_sha1(path: Path, chunk_size: int = 1 << 22) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as stream:
        while chunk := stream.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def verify_download(data_dir: str | os.PathLike, sums_dir: str | os.PathLike, present_only: bool = False) -> VerificationResult:
    """Check a downloaded copy against `training_SHA1SUMS` and `test_SHA1SUMS`.

    Files of `training_SHA1SUMS` are looked for under `data_dir/training/` (else `data_dir/`), those of
    `test_SHA1SUMS` under `data_dir/test/` (else `data_dir/`). With `present_only`, records whose folder
    is absent are listed in `absent_records` instead of as missing files (partial downloads); files missing
    inside a present record folder are still errors.
    """
    data_dir, sums_dir = Path(data_dir), Path(sums_dir)
    result = VerificationResult()
    for sums_name, subset in (("training_SHA1SUMS", "training"), ("test_SHA1SUMS", "test")):
        sums_path = sums_dir / sums_name
        if not sums_path.is_file():
            raise FileNotFoundError(f"{sums_path} not found (give --sums_dir the folder holding {sums_name})")
        base = data_dir / subset if (data_dir / subset).is_dir() else data_dir
        absent = set()
        for expected, relative in read_sha1sums(sums_path):
            target = base / relative
            record_folder = relative.split("/", 1)[0] if "/" in relative else None
            if present_only and record_folder is not None and not (base / record_folder).is_dir():
                absent.add(record_folder)
                continue
            if present_only and record_folder is None and not target.is_file():
                continue  # RECORDS / ANNOTATORS are often not part of a partial download
            result.checked += 1
            if not target.is_file():
                result.missing.append(f"{subset}/{relative}")
                continue
            actual = _file_sha1(target)
            if actual != expected:
                result.corrupted.append({"file": f"{subset}/{relative}", "expected": expected, "actual": actual})
            else:
                result.ok += 1
        result.absent_records.extend(sorted(absent))
    return result


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------


def build_to_folder(
    data_dir: str, output_dir: str, num_proc: int | None = None, parquet: bool = False, keep_cache: bool = False,
    rows_per_parquet_shard: int = 2000, feature_extractor_kwargs: dict | None = None,
) -> dict:
    """Build, `save_to_disk` into `output_dir/dataset`, write `output_dir/build_report.json` (+ Parquet shards).

    `feature_extractor_kwargs`: keyword arguments of `PhysioMAEFeatureExtractor` (its defaults otherwise)."""
    builder = PhysioNet2018(data_dir=data_dir, cache_dir=str(Path(output_dir) / "cache"),
                            feature_extractor_kwargs=dict(feature_extractor_kwargs or {}))
    return save_build(builder, output_dir, num_proc, parquet, keep_cache, rows_per_parquet_shard)


def save_build(builder: WindowedRecordingsBuilder, output_dir: str, num_proc: int | None = None, parquet: bool = False,
               keep_cache: bool = False, rows_per_parquet_shard: int = 2000) -> dict:
    """Prepare `builder` (its cache_dir: `output_dir/cache`), `save_to_disk` into `output_dir/dataset` (replaced only
    when complete), write `output_dir/build_report.json` (a copy in `dataset/`) and with `parquet` the shards
    `output_dir/parquet/<split>-NNNNN-of-NNNNN.parquet`; the cache is removed unless `keep_cache`."""
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    builder.download_and_prepare(num_proc=num_proc)
    dataset_dict = builder.as_dataset()
    staging = output / ".dataset.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    dataset_dict.save_to_disk(str(staging))
    shutil.rmtree(output / "dataset", ignore_errors=True)
    os.replace(staging, output / "dataset")
    if parquet:
        parquet_staging = output / ".parquet.tmp"
        shutil.rmtree(parquet_staging, ignore_errors=True)
        parquet_staging.mkdir()
        for split, dataset in dataset_dict.items():
            num_shards = max(1, -(-len(dataset) // rows_per_parquet_shard))
            for shard_index in range(num_shards):
                shard = dataset.shard(num_shards=num_shards, index=shard_index, contiguous=True)
                shard.to_parquet(str(parquet_staging / f"{split}-{shard_index:05d}-of-{num_shards:05d}.parquet"))
        shutil.rmtree(output / "parquet", ignore_errors=True)
        os.replace(parquet_staging, output / "parquet")
    report = builder.build_report
    atomic_write_json(output / REPORT_FILE_NAME, report)
    atomic_write_json(output / "dataset" / REPORT_FILE_NAME, report)  # travels with the saved dataset
    del dataset_dict
    if not keep_cache:
        shutil.rmtree(output / "cache", ignore_errors=True)
    return report


def read_extractor_settings(value: str | None) -> dict:
    """`--feature_extractor`: a folder holding preprocessor_config.json, such a file, or a JSON object; {} for None.
    ValueError naming the value when it is none of these."""
    if not value:
        return {}
    path = Path(value)
    if path.is_dir():
        path = path / "preprocessor_config.json"
    if path.is_file():
        text, where = path.read_text(encoding="utf-8"), str(path)
    elif value.lstrip().startswith("{"):
        text, where = value, "--feature_extractor"
    else:
        raise ValueError(f"--feature_extractor {value!r} is neither a preprocessor_config.json (or its folder) nor a "
                         f"JSON object")
    try:
        settings = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{where}: not valid JSON ({error})") from None
    if not isinstance(settings, dict):
        raise ValueError(f"{where}: expected a JSON object of PhysioMAEFeatureExtractor arguments")
    for key in ("feature_extractor_type", "processor_class", "auto_map"):
        settings.pop(key, None)
    return settings


def print_build_summary(report: dict, output_dir: str, parquet: bool, extra: str = "") -> None:
    """What `build` prints: records and windows built and skipped (with reasons), per split, where things are."""
    totals = report["totals"]
    print(
        f"records: {totals['records_built']} built, {totals['records_skipped']} skipped {totals['records_skipped_by_reason']}; "
        f"windows: {totals['windows_kept']} kept, {totals['windows_skipped']} skipped {totals['windows_skipped_by_reason']}"
        + extra
    )
    for split, counts in report["splits"].items():
        print(f"  {split}: {counts['records_built']}/{counts['records']} records, {counts['windows']} windows")
    print(f"report: {Path(output_dir) / REPORT_FILE_NAME}; dataset: {Path(output_dir) / 'dataset'}")
    if parquet:
        print(parquet_load_snippet(output_dir, list(report["splits"])))


def parquet_load_snippet(output_dir: str, splits: list[str]) -> str:
    """The one-liner that loads the Parquet shards written by `build --parquet`."""
    files = ", ".join(f'"{split}": "{output_dir}/parquet/{split}-*.parquet"' for split in splits)
    return f'load_dataset("parquet", data_files={{{files}}})'


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dataset_scripts.physionet2018", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="build the windowed dataset from a challenge-layout folder")
    build.add_argument("--data_dir", required=True)
    build.add_argument("--output_dir", required=True)
    build.add_argument("--num_proc", type=int, default=None)
    build.add_argument("--parquet", action="store_true", help="also write Parquet shards to OUTPUT/parquet")
    build.add_argument("--keep_cache", action="store_true", help="keep the datasets cache in OUTPUT/cache")
    build.add_argument("--feature_extractor", default=None,
                       help="preprocessing settings: a folder or preprocessor_config.json saved by "
                            "PhysioMAEFeatureExtractor, or a JSON object of its arguments (default: its defaults)")
    verify = commands.add_parser("verify", help="check files against the official SHA1SUMS")
    verify.add_argument("--data_dir", required=True)
    verify.add_argument("--sums_dir", default=None,
                        help="folder holding training_SHA1SUMS and test_SHA1SUMS (default: --data_dir, where a "
                             "PhysioNet download keeps them)")
    verify.add_argument("--present_only", action="store_true", help="check only records that were downloaded")
    arguments = parser.parse_args(argv)

    if arguments.command == "build":
        report = build_to_folder(arguments.data_dir, arguments.output_dir, arguments.num_proc, arguments.parquet,
                                 arguments.keep_cache, feature_extractor_kwargs=read_extractor_settings(arguments.feature_extractor))
        print_build_summary(report, arguments.output_dir, arguments.parquet)
        return 0

    result = verify_download(arguments.data_dir, arguments.sums_dir or arguments.data_dir, arguments.present_only)
    for name in result.missing:
        print(f"MISSING   {name}")
    for entry in result.corrupted:
        print(f"CORRUPTED {entry['file']} (sha1 {entry['actual']}, expected {entry['expected']})")
    if result.absent_records:
        print(f"not downloaded (skipped with --present_only): {len(result.absent_records)} records")
    print(f"checked {result.checked} files: {result.ok} ok, {len(result.missing)} missing, {len(result.corrupted)} corrupted")
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
