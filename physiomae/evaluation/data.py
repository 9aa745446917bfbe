"""The data eval.py (and finetune.py) probe on: probe-train / probe-test of a dataset saved by the builder, or the
real 60-s challenge excerpts built on the fly, with their label tables, channel layout and notes; and which tasks
those splits can score. Not copied to the Hub.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from modeling_physiomae.configuration_physiomae import ChannelLayout

from ..saved_dataset import build_report, dataset_layout, load_splits, locate_saved_dataset
from . import probing

SUBJECT_IDENTITY_NOTE = (
    "The real 60-s segments carry no subject identity: excerpts from one subject may appear more than once, so "
    "the split (by a hash of the segment name) is a split by excerpt, not by subject, and scores may be "
    "optimistic. Only sleep staging is scored: the segments carry no arousal, age or sex labels."
)


@dataclass
class ProbeData:
    """The probe-train and probe-test splits plus their label tables and what mode they come from."""

    train_split: object
    test_split: object
    train_table: probing.SplitTable
    test_table: probing.SplitTable
    description: str
    is_real_segments: bool = False
    notes: list[str] = field(default_factory=list)
    report: dict = field(default_factory=dict)
    layout: ChannelLayout = field(default_factory=ChannelLayout)  # the splits' channels and modalities

    @classmethod
    def from_splits(cls, train, test, **fields) -> "ProbeData":
        """With the label tables read from the two splits (`probing.read_split_table`)."""
        return cls(train, test, probing.read_split_table(train), probing.read_split_table(test), **fields)


def load_probe_data(dataset_dir: str | Path) -> ProbeData:
    """`probe_train` / `probe_test` of a dataset saved by the builder (`physiomae.saved_dataset`), in the layout it
    records (the same datasets train.py reads)."""
    dataset_dir = locate_saved_dataset(dataset_dir)
    try:
        splits = load_splits(dataset_dir, ["probe_train", "probe_test"])
    except KeyError as error:
        raise ValueError(f"dataset {dataset_dir}: {error.args[0]}") from None
    train, test = splits["probe_train"], splits["probe_test"]
    layout = dataset_layout(train)
    if dataset_layout(test).modalities != layout.modalities:
        raise ValueError(f"dataset {dataset_dir}: probe_train and probe_test record different channel layouts")
    description = f"dataset {dataset_dir} (probe_train / probe_test)"
    source = (build_report(dataset_dir) or {}).get("data_dir")
    if source:
        description = f"the probe_train / probe_test splits built from {source} ({dataset_dir})"
    # A dataset built from the real 60-s excerpts (records seg-NNNN) has no subject identity.
    real_segments = any(str(record).startswith("seg-") for record in list(train[:50]["record"]) + list(test[:50]["record"]))
    return ProbeData.from_splits(
        train,
        test,
        description=description,
        is_real_segments=real_segments,
        notes=[SUBJECT_IDENTITY_NOTE] if real_segments else [],
        layout=layout,
    )


def _real_segment_names(segments_dir: Path, limit: int | None) -> list[str]:
    """Segment names from RECORDS (or the sub-folders); with `limit`, that many evenly spaced over the list."""
    records_file = segments_dir / "RECORDS"
    if records_file.is_file():
        names = [line.strip().rstrip("/") for line in records_file.read_text().splitlines() if line.strip()]
    else:
        names = sorted(path.name for path in segments_dir.iterdir() if path.is_dir())
    if not names:
        raise FileNotFoundError(f"real segments: no records found in {segments_dir}")
    if limit is not None and limit < len(names):
        # evenly spaced over the list (RECORDS is grouped by stage: its first N would hold a single stage)
        names = [names[index] for index in np.unique(np.linspace(0, len(names) - 1, limit).round().astype(int))]
    return names


def build_real_segments(segments_dir: str | Path, limit: int | None = None):
    """`(table, report)`: the real 60-s challenge excerpts of `segments_dir` built by the project's dataset builder
    (`dataset_scripts.physionet2018.PhysioNet2018`: the same reading, labels and preprocessing as every other
    dataset) in a temporary folder that links them, every split concatenated, held in memory. `report` counts the
    excerpts asked for, the skipped ones with the builder's reason, and the windows. `limit` keeps that many
    excerpts, evenly spaced over the record list."""
    import datasets

    from dataset_scripts.physionet2018 import PhysioNet2018

    segments_dir = Path(segments_dir)
    names = _real_segment_names(segments_dir, limit)
    with tempfile.TemporaryDirectory(prefix="physiomae-real-segments-") as workdir:
        subset_dir = Path(workdir) / "segments"
        subset_dir.mkdir()
        for name in names:
            (subset_dir / name).symlink_to((segments_dir / name).resolve(), target_is_directory=True)
        (subset_dir / "RECORDS").write_text("".join(f"{name}/\n" for name in names))
        builder = PhysioNet2018(data_dir=str(subset_dir), cache_dir=str(Path(workdir) / "cache"))
        builder.download_and_prepare()
        splits = builder.as_dataset(in_memory=True)  # in memory: the cache goes with the temporary folder
        parts = [split for split in splits.values() if len(split)]
        if not parts:
            raise ValueError(f"real segments: no usable windows in {segments_dir}")
        table = datasets.concatenate_datasets(parts)
        report = builder.build_report
    skipped = {name: entry.get("reason") for name, entry in report["records"].items() if entry["status"] != "built"}
    return table, {
        "folder": str(segments_dir),
        "segments_requested": len(names),
        "segments_skipped": skipped,
        "windows": len(table),
        "windows_with_undefined_stage": int(np.sum(np.asarray(table["sleep_stage"]) < 0)),
    }


def load_real_segments(segments_dir: str | Path, limit: int | None = None, test_fraction: float = 0.5,
                       train_dir: str | Path | None = None) -> ProbeData:
    """The real 60-s challenge excerpts as probe-train / probe-test (sleep staging only), built by
    `build_real_segments`.

    Without `train_dir`, the excerpts of `segments_dir` are split by sha1 of the excerpt name, `test_fraction` of
    them in probe-test. With `train_dir` (other excerpts, none of `segments_dir`'s), probe-train is every excerpt
    of `train_dir` and probe-test every excerpt of `segments_dir` (`limit` applies to both); an excerpt name in
    both folders is an error.
    """
    segments_dir = Path(segments_dir)
    table, report = build_real_segments(segments_dir, limit)
    if train_dir is None:
        records = table["record"]
        is_test = np.asarray([probing.record_split_is_test(record, test_fraction) for record in records])
        train, test = table.select(np.flatnonzero(~is_test)), table.select(np.flatnonzero(is_test))
        description = (f"{len(set(records))} real PhysioNet/CinC 2018 60-s segments from {segments_dir.name} "
                       f"(split by sha1 of the segment name, {test_fraction:.0%} of segments to probe-test)")
        report = {**report, "test_fraction": test_fraction}
    else:
        train_dir = Path(train_dir)
        train, train_report = build_real_segments(train_dir, limit)
        test = table
        shared = sorted(set(train["record"]) & set(test["record"]))
        if shared:
            raise ValueError(f"real segments: {len(shared)} excerpt(s) are in both {train_dir} and {segments_dir} "
                             f"(e.g. {shared[:3]}); the probe-test excerpts must be unseen")
        if dataset_layout(train).modalities != dataset_layout(test).modalities:
            raise ValueError(f"real segments: {train_dir} and {segments_dir} hold different channel layouts")
        description = (f"real PhysioNet/CinC 2018 60-s segments: probe-train the {len(set(train['record']))} of "
                       f"{train_dir.name}, probe-test the {len(set(test['record']))} of {segments_dir.name}")
        report = {"probe_train": train_report, "probe_test": report}
    return ProbeData.from_splits(
        train,
        test,
        description=description,
        is_real_segments=True,
        notes=[SUBJECT_IDENTITY_NOTE],
        layout=dataset_layout(test),
        report=report,
    )


def active_tasks(data: ProbeData, task_names: Sequence[str]) -> tuple[list[probing.ProbeTask], dict[str, str]]:
    """Tasks with at least two classes in probe-train and some labelled probe-test windows; others skipped."""
    active, skipped = [], {}
    for name in task_names:
        if name not in probing.TASKS:
            raise ValueError(f"unknown task {name!r}; known: {list(probing.TASKS)}")
        task = probing.TASKS[name]
        train_labels = data.train_table.labels[name]
        test_labels = data.test_table.labels[name]
        train_classes = np.unique(train_labels[train_labels >= 0])
        test_classes = np.unique(test_labels[test_labels >= 0])
        if len(train_classes) < 2:
            skipped[name] = f"probe_train has {len(train_classes)} labelled class(es) ({(train_labels >= 0).sum()} labelled windows)"
        elif len(test_classes) < 2:
            skipped[name] = f"probe_test has {len(test_classes)} labelled class(es) ({(test_labels >= 0).sum()} labelled windows)"
        else:
            active.append(task)
    return active, skipped
