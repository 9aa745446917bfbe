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
(`recording_physiomae.read_wfdb_header`: record name, signal count = signal lines, sampling
frequency in `SAMPLING_RATE_RANGE_HZ`, sample count, format/offset, gain > 0, integer baseline / ADC zero /
initial value / checksum ...), and the `.mat` file must match it (matrix type, shape, data offset, every
signal's initial value and checksum). A malformed or impossible field skips the record with
`reason_kind` `bad header field` and `field` (the message names file, line, signal, field and value).
The signals are read by the one WFDB reader (`recording_physiomae.read_wfdb_record`); values are
`(digital - baseline) / gain` as the header says (as `wfdb.rdrecord` computes them), then each channel is converted from its header
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

Modules: record discovery in `challenge_records`, the record split in `record_split`, the row schema and a
record's rows in `windowed_rows`, the builder base, report merging and build-to-folder in `recording_builder`,
the SHA1SUMS check in `challenge_verify`; this module reads one record and is the builder and command line.

Data: Ghassemi MM et al., You Snooze, You Win: the PhysioNet/Computing in Cardiology Challenge 2018,
CinC 2018; Goldberger AL et al., PhysioBank, PhysioToolkit, and PhysioNet, Circulation 2000 (ODC-By 1.0).
"""

from __future__ import annotations

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import datasets
import numpy as np

from dataset_scripts import labels as label_tools
from dataset_scripts.challenge_records import RecordFiles, RecordListing, find_records, listing_fingerprint  # noqa: F401 (RecordListing: the listing type)
from dataset_scripts.challenge_verify import verify_download
from dataset_scripts.record_split import PROBE_TEST_FRACTION
from dataset_scripts.recording_builder import (
    WindowedRecordingsBuilder,
    print_build_summary,
    read_extractor_settings,
    save_build,
)
from dataset_scripts.windowed_rows import RecordWindows, default_feature_extractor, make_info, windowed_record

if TYPE_CHECKING:
    from modeling_physiomae.configuration_physiomae import ChannelLayout


BUILDER_VERSION = "1.1.0"  # 1.1.0: info.description records the feature-extractor settings


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



def _field_error(spec, field: str, value, problem: str) -> RecordReadError:
    """A `RecordReadError` for one field of one signal line (`spec`: its `WfdbSignalSpec`)."""
    shown = "" if value is None else f" {str(value)!r}"
    return RecordReadError(f"{spec.where}: {field}{shown} {problem}", kind="bad header field", field=field)


def read_record_signals(header_path: str | os.PathLike) -> RecordSignals:
    """Read a record's physical signals as float32 (channels, samples), the same values as `wfdb.rdrecord`.

    The header is parsed strictly (`recording_physiomae.read_wfdb_header`) and must fit the builder: one sample per
    frame and no skew for every signal (one rate per record), and a `.mat` signal file must hold every signal in
    format 16 (`16+24`, the challenge's). The signals are read by `recording_physiomae.read_wfdb_record` (the
    challenge's Matlab files checked against the header: channel and sample count, data offset, initial values and
    checksums; other formats through `wfdb.rdrecord`). `units` are as written ("" where the header gives none;
    `process_record` converts or counts them). Raises `RecordReadError` naming the file (and the field) for a
    missing, truncated or inconsistent record or a malformed or impossible header field.
    """
    from modeling_physiomae.recording_physiomae import RecordingReadError, read_wfdb_header, read_wfdb_record

    header_path = Path(header_path)
    try:
        header = read_wfdb_header(header_path)
    except RecordingReadError as error:
        raise RecordReadError(str(error), kind=error.kind, field=error.field) from error
    except OSError as error:
        raise RecordReadError(f"{header_path}: unreadable header: {error}") from error
    if header.num_segments is not None:
        raise RecordReadError(f"{header_path}: multi-segment WFDB records are not supported", kind="bad header field",
                              field="number of segments")
    if not header.num_signals:
        raise RecordReadError(f"{header_path}: header lists no signals")
    file_names = {spec.file_name for spec in header.signals}
    for spec in header.signals:
        if spec.samples_per_frame != 1 or spec.skew:
            field, value = ("samples per frame", spec.samples_per_frame) if spec.samples_per_frame != 1 else ("skew", spec.skew)
            raise _field_error(spec, field, value, "is not supported (the builder reads one rate per record, unskewed)")
        if any(name.lower().endswith(".mat") for name in file_names):
            if len(file_names) != 1:
                raise _field_error(spec, "signal file", spec.file_name, f"is one of {len(file_names)} files "
                                   f"({sorted(file_names)}): a challenge record keeps every signal in one .mat file")
            if spec.format != 16:
                raise _field_error(spec, "format", spec.format, "is not the challenge's: its .mat signal file holds "
                                   "every signal in format 16 (16+24)")
    try:
        recording = read_wfdb_record(header_path.with_suffix(""), header=header)
    except RecordingReadError as error:
        raise RecordReadError(str(error), kind=error.kind, field=error.field) from error
    return RecordSignals(signals=recording.signals, channel_names=[spec.name for spec in header.signals],
                         sampling_rate=header.sampling_rate, units=[spec.units or "" for spec in header.signals])


# ----------------------------------------------------------------------------------------------
# One record -> windows + report
# ----------------------------------------------------------------------------------------------


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


def _convert_units(loaded: RecordSignals, feature_extractor) -> tuple[dict, dict]:
    """Convert (in place) every channel the extractor uses from its header unit to the unit its modality is scaled in
    (`recording_physiomae.MODALITY_UNITS`), the conversion `preprocess_channels` applies to files: e.g. an
    EEG in mV is multiplied by 1000; the challenge's uV / mV / % need none. A unit that is missing, unknown or of
    another kind (SpO2 in uV) is left as it is and counted, as for files. Returns the report's `units`
    (canonical -> {"unit", "target", "factor"}) and `units_unknown` (canonical -> unit as written) entries."""
    factors, converted, unknown = feature_extractor.unit_factors(loaded.channel_names, loaded.units)
    for row, factor in enumerate(factors):
        if factor != 1.0:
            loaded.signals[row] = (loaded.signals[row].astype(np.float64) * factor).astype(np.float32)
    return converted, unknown


def process_record(record: RecordFiles, feature_extractor, layout: ChannelLayout, age: float, sex: int) -> RecordWindows:
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
        from modeling_physiomae.configuration_physiomae import ChannelLayout

        self._layout = ChannelLayout.of(self._feature_extractor)
        extractor_settings = json.dumps(self._feature_extractor.to_dict(), sort_keys=True, default=str)
        fingerprint = hashlib.sha1(
            f"{BUILDER_VERSION}|{listing_fingerprint(self._listing)}|{extractor_settings}".encode()
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
