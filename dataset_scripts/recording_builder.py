"""What the recording builders share (`physionet2018.PhysioNet2018`, `edf_sleep.EdfSleep`): the `datasets` builder
base (`WindowedRecordingsBuilder`: the record split, per-record report fragments merged into `build_report.json`,
empty splits instead of errors), building into a folder (`save_build`: `dataset/`, `build_report.json`, Parquet
shards) and the command line's shared parts (`read_extractor_settings`, `print_build_summary`).
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Iterator

import datasets

from dataset_scripts import labels as label_tools
from dataset_scripts.files import atomic_write_json
from dataset_scripts.record_split import SPLIT_NAMES, assign_split
from dataset_scripts.windowed_rows import RecordWindows


REPORT_FILE_NAME = "build_report.json"


def merge_report(
    fragments_dir: str | os.PathLike,
    listing,
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
