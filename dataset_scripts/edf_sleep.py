"""A folder of EDF/EDF+/BDF sleep recordings with hypnograms as a `datasets` builder, in the challenge's row schema.

Own recordings go through the same feature extractor (`PhysioMAEFeatureExtractor.preprocess_recording`: each
channel resampled from its own rate, converted from its file unit) into the same rows as the challenge builder
(`windowed_rows`: `make_info`, `make_features`, `windowed_record`), so that train.py, eval.py and the probes read
them unchanged. Which files are records and how hypnograms pair with them: `edf_records`; stage texts, stage CSVs
and the stage of each window: `hypnograms`.

    from dataset_scripts.edf_sleep import EdfSleep
    builder = EdfSleep(data_dir="sleep-edf", cache_dir="/tmp/cache", channel_map={"EEG Fpz-Cz": "C4-M1"})
    builder.download_and_prepare()
    splits = builder.as_dataset()          # DatasetDict: pretrain / probe_train / probe_test
    report = builder.build_report          # dict, also written to <cache>/build_report.json

Command line (writes `O/dataset` with `save_to_disk` and `O/build_report.json`, a copy also in `O/dataset/`):

    python -m dataset_scripts.edf_sleep build --data_dir D --output_dir O [--channel_map JSON_OR_FILE] [--num_proc N]
        [--feature_extractor FOLDER_OR_JSON] [--max_hypnogram_mismatch_epochs N]

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
`record_split.record_split_position(name)` < `probe_test_fraction` (0.22), else `probe_train`.

Bad input never stops a build: a recording that is missing, not an EDF/BDF (bad header), truncated (incomplete
data record), whose header's data record count disagrees with the file, discontinuous (EDF+D), shorter than one
window, or whose hypnogram is unreadable or of the wrong length, is skipped with its reason; windows without any
usable channel are skipped and counted.

`build_report.json`: the challenge builder's report (`recording_builder.merge_report`: `totals` with
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
import hashlib
import json
import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from dataset_scripts import labels as label_tools
from dataset_scripts.edf_records import HYPNOGRAM_PREFIX_LENGTH, EdfRecordFiles, find_edf_records, listing_fingerprint
from dataset_scripts.hypnograms import (
    EPOCH_SECONDS,
    EdfRecordError,
    StageInterval,
    intervals_from_annotations,
    is_stage_annotation,
    read_stage_csv,
    window_stages,
)
from dataset_scripts.record_split import PROBE_TEST_FRACTION
from dataset_scripts.recording_builder import (
    WindowedRecordingsBuilder,
    print_build_summary,
    read_extractor_settings,
    save_build,
)
from dataset_scripts.windowed_rows import RecordWindows, default_feature_extractor, make_info, windowed_record


BUILDER_VERSION = "1.0.0"
DEFAULT_MAX_HYPNOGRAM_MISMATCH_EPOCHS = 60


# ----------------------------------------------------------------------------------------------
# One record -> windows + report
# ----------------------------------------------------------------------------------------------


def _stage_intervals(record: EdfRecordFiles, recording, report: dict) -> list[StageInterval] | None:
    """The record's stage intervals (onsets relative to the PSG start) from its label source, None if unlabelled."""
    from modeling_physiomae.recording_physiomae import RecordingReadError, read_recording

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
        stage_annotations = [item for item in recording.annotations if is_stage_annotation(item[2])]
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
    from modeling_physiomae.recording_physiomae import read_recording

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
        from modeling_physiomae.configuration_physiomae import ChannelLayout

        self._layout = ChannelLayout.of(self._feature_extractor)
        settings = json.dumps(
            {"extractor": self._feature_extractor.to_dict(),
             "config": {key: kwargs.get(key) for key in ("channel_map", "max_hypnogram_mismatch_epochs", "hypnogram_prefix_length", "probe_test_fraction")}},
            sort_keys=True, default=str,
        )
        kwargs.setdefault("hash", hashlib.sha1(f"{BUILDER_VERSION}|{listing_fingerprint(self._listing)}|{settings}".encode()).hexdigest())
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
    `parquet`), as `physionet2018.build_to_folder` (`recording_builder.save_build`). `config_kwargs`: other
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
