"""The PhysioNet 2018 builder on real excerpts, bad input, a synthetic cohort, the CLI and verification."""

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import wfdb

from dataset_scripts import challenge_io
from dataset_scripts import labels as label_tools
from dataset_scripts import physionet2018
from dataset_scripts.challenge_verify import read_sha1sums, verify_download
from dataset_scripts.physionet2018 import PhysioNet2018
from dataset_scripts.record_split import SPLIT_NAMES, assign_split
from helpers import copy_segment


SEGMENT_CHANNELS = ["O2-M1", "E1-M2", "Chin1-Chin2", "ABD", "CHEST", "AIRFLOW", "ECG"]
RECORDS_PER_STAGE = 8  # of the 100 per stage: the full 500 are built by the check in the final report
RATE = 200


def _segment_stage(segment_dir: Path) -> int:
    """Stage code of a real excerpt from its own `.arousal` (the stage note at sample 0)."""
    notes = label_tools.read_wfdb_annotations(segment_dir / f"{segment_dir.name}.arousal")
    assert notes.sample[0] == 0
    return label_tools.STAGE_NOTE_TO_CODE[notes.aux_note[0]]


@pytest.fixture(scope="module")
def segment_stages(real_segments_dir):
    names = [line.strip().rstrip("/") for line in (real_segments_dir / "RECORDS").read_text().splitlines() if line.strip()]
    return {name: _segment_stage(real_segments_dir / name) for name in names}


@pytest.fixture(scope="module")
def segment_subset(tmp_path_factory, real_segments_dir, segment_stages):
    """A flat RECORDS folder linking RECORDS_PER_STAGE real excerpts of every stage (read-only links)."""
    folder = tmp_path_factory.mktemp("segments")
    chosen = []
    for code in range(len(label_tools.STAGE_NAMES)):
        chosen += sorted(name for name, stage in segment_stages.items() if stage == code)[:RECORDS_PER_STAGE]
    for name in chosen:
        os.symlink(real_segments_dir / name, folder / name)
    (folder / "RECORDS").write_text("".join(f"{name}/\n" for name in sorted(chosen)))
    return folder, sorted(chosen)


@pytest.fixture(scope="module")
def segment_build(segment_subset, tmp_path_factory):
    folder, _ = segment_subset
    builder = PhysioNet2018(data_dir=str(folder), cache_dir=str(tmp_path_factory.mktemp("cache")))
    builder.download_and_prepare()
    return builder, builder.as_dataset()


def _rows_by_key(dataset_dict):
    rows = {}
    for split, dataset in dataset_dict.items():
        for row in dataset.with_format("numpy"):
            rows[(str(row["record"]), int(row["window"]))] = (split, row)
    return rows


def test_real_excerpts_have_100_per_stage(segment_stages):
    counts = np.bincount(list(segment_stages.values()), minlength=len(label_tools.STAGE_NAMES))
    assert counts.tolist() == [100] * len(label_tools.STAGE_NAMES)


def test_real_excerpts_load_with_their_stage_and_channels(segment_build, segment_subset, segment_stages):
    builder, dataset_dict = segment_build
    _, chosen = segment_subset
    report = builder.build_report
    assert set(dataset_dict) <= {"probe_train", "probe_test"}  # every excerpt is labelled: no pretrain split
    rows = _rows_by_key(dataset_dict)
    assert len(rows) == 2 * len(chosen)  # a 60-s excerpt gives two 30-s windows
    channel_names = builder._layout.channel_names
    stage_counts = np.zeros(len(label_tools.STAGE_NAMES), dtype=int)
    for name in chosen:
        entry = report["records"][name]
        assert entry["status"] == "built" and entry["windows_kept"] == 2, entry
        assert entry["split"] == assign_split(name, labelled=True)
        flat = set(entry["preprocessing"]["flat_channels"])
        for window in (0, 1):
            split, row = rows[(name, window)]
            assert split == entry["split"]
            assert row["sleep_stage"] == segment_stages[name]
            assert row["arousal"] == -1  # the excerpts' arousal masks are all "not scored"
            assert row["age"] == -1 and row["sex"] == -1
            present = {channel for channel, flag in zip(channel_names, row["channel_mask"]) if flag}
            assert present == set(SEGMENT_CHANNELS) - flat
            assert row["modality_mask"].tolist() == [True, True, "Chin1-Chin2" not in flat, True, False, "ECG" not in flat]
            assert row["input_values"].shape == (13, 3000)
            absent_rows = row["input_values"][~row["channel_mask"]]
            assert not absent_rows.any()
            stage_counts[row["sleep_stage"]] += 1
    assert stage_counts.tolist() == [2 * RECORDS_PER_STAGE] * len(label_tools.STAGE_NAMES)
    for dataset in dataset_dict.values():  # stored as float16 (numpy formatting returns float32)
        assert str(dataset.data.column("input_values").type.storage_type) == "list<item: list<item: halffloat>>"


def test_report_accounts_for_every_record(segment_build, segment_subset):
    builder, dataset_dict = segment_build
    _, chosen = segment_subset
    report = builder.build_report
    assert sorted(report["records"]) == chosen
    assert report["totals"]["records_found"] == len(chosen) == report["totals"]["records_built"]
    assert report["totals"]["windows_kept"] == sum(len(dataset) for dataset in dataset_dict.values())
    assert report["row_counts"] == {split: len(dataset) for split, dataset in dataset_dict.items()}
    on_disk = json.loads(Path(builder.build_report_path).read_text())
    assert on_disk["totals"] == report["totals"]
    assert not list(Path(builder.build_report_path).parent.glob(".*.tmp"))


def test_reading_matches_wfdb(real_segments_dir):
    ours = physionet2018.read_record_signals(real_segments_dir / "seg-0009" / "seg-0009.hea")
    reference = wfdb.rdrecord(str(real_segments_dir / "seg-0009" / "seg-0009"))
    assert ours.channel_names == reference.sig_name == SEGMENT_CHANNELS
    np.testing.assert_allclose(ours.signals, reference.p_signal.T, rtol=1e-6)


def test_builder_and_extractor_read_wfdb_with_one_reader_giving_wfdbs_values(tmp_path, real_segments_dir):
    """The builder and the extractor read a record with the same reader (recording_physiomae.read_wfdb_record), and
    its values are wfdb.rdrecord's to the last bit (float32 of (digital - baseline) / gain in float64), also for a
    gain that float32 cannot hold (655.35, the challenge's SaO2 gain)."""
    from modeling_physiomae.recording_physiomae import read_recording

    folder = copy_segment(real_segments_dir / "seg-0009", tmp_path, "gain-0001")
    header = folder / "gain-0001.hea"
    header.write_bytes(header.read_bytes().replace(b" 1/uV 16 0 28 -13004", b" 655.35(-3)/uV 16 0 28 -13004"))
    reference = wfdb.rdrecord(str(folder / "gain-0001"))
    assert reference.adc_gain[3] == 655.35 and reference.baseline[3] == -3
    builder = physionet2018.read_record_signals(header)
    extractor = read_recording(header)
    expected = reference.p_signal.T.astype(np.float32)
    assert np.array_equal(builder.signals, expected) and np.array_equal(np.asarray(extractor.signals), expected)
    assert builder.channel_names == extractor.channel_names == SEGMENT_CHANNELS


def test_layouts_record_folders_and_other_wfdb_formats(tmp_path, real_segments_dir):
    copy_segment(real_segments_dir / "seg-0009", tmp_path, "folder-0001")  # a record folder, no RECORDS
    signals = np.random.default_rng(1).normal(0, 20, (4000, 2))
    wfdb.wrsamp("loose-0001", fs=100, units=["uV", "uV"], sig_name=["C4-A1", "EKG"], p_signal=signals,
                fmt=["16", "16"], write_dir=str(tmp_path))  # a loose .hea + .dat next to it
    listing = physionet2018.find_records(tmp_path)
    assert [record.name for record in listing.records] == ["folder-0001", "loose-0001"]
    assert listing.records[0].labelled and not listing.records[1].labelled
    loaded = physionet2018.read_record_signals(listing.records[1].header)
    reference = wfdb.rdrecord(str(tmp_path / "loose-0001"))
    np.testing.assert_allclose(loaded.signals, reference.p_signal.T, rtol=1e-6)
    assert loaded.sampling_rate == 100 and loaded.channel_names == ["C4-A1", "EKG"]


def test_num_proc_two_gives_the_same_rows(segment_build, segment_subset, tmp_path):
    builder, dataset_dict = segment_build
    folder, _ = segment_subset
    parallel = PhysioNet2018(data_dir=str(folder), cache_dir=str(tmp_path / "cache"))
    parallel.download_and_prepare(num_proc=2)
    serial_rows, parallel_rows = _rows_by_key(dataset_dict), _rows_by_key(parallel.as_dataset())
    assert serial_rows.keys() == parallel_rows.keys()
    for key, (split, row) in serial_rows.items():
        other_split, other = parallel_rows[key]
        assert split == other_split
        for column in row:
            np.testing.assert_array_equal(row[column], other[column])
    assert sorted(parallel.build_report["records"]) == sorted(builder.build_report["records"])
    assert parallel.build_report["totals"] == builder.build_report["totals"]


# ------------------------------------------------------------------------------------ bad input


def _write_digital(folder: Path, name: str, digital: np.ndarray, channel_names: list[str]) -> None:
    count = len(channel_names)
    challenge_io.write_record(folder / name, name, digital, channel_names, ["uV"] * count, [1.0] * count, [0] * count, fs=RATE)


@pytest.fixture(scope="module")
def bad_build(tmp_path_factory, real_segments_dir):
    folder = tmp_path_factory.mktemp("bad")
    source = real_segments_dir / "seg-0009"
    rng = np.random.default_rng(0)
    all_channels = [channel for channels in challenge_io_default_modalities().values() for channel in channels]

    copy_segment(source, folder, "ok-0001")
    (copy_segment(source, folder, "nomat-0001") / "nomat-0001.mat").unlink()
    truncated = copy_segment(source, folder, "trunc-0001") / "trunc-0001.mat"
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    header = copy_segment(source, folder, "hdrlen-0001") / "hdrlen-0001.hea"
    header.write_bytes(header.read_bytes().replace(b" 7 200 12000", b" 7 200 13000"))
    header = copy_segment(source, folder, "hdrch-0001") / "hdrch-0001.hea"
    lines = header.read_bytes().split(b"\r\n")
    header.write_bytes(b"\r\n".join([lines[0].replace(b" 7 200", b" 6 200")] + lines[1:7] + lines[8:]))
    _write_digital(folder, "short-0001", rng.normal(0, 50, (20 * RATE, 13)).astype(np.int16), all_channels)
    # NaN (WFDB's invalid value) for 40 s of F3-M2 and a flat SaO2 in a 60-s record
    digital = rng.normal(0, 50, (60 * RATE, 13)).astype(np.int16)
    digital[: 40 * RATE, 0] = -32768
    digital[:, all_channels.index("SaO2")] = 95
    _write_digital(folder, "nanflat-0001", digital, all_channels)
    _write_digital(folder, "allnan-0001", np.full((60 * RATE, 2), -32768, dtype=np.int16), ["F3-M2", "ECG"])
    _write_digital(folder, "missingch-0001", rng.normal(0, 50, (60 * RATE, 2)).astype(np.int16), ["E1-M2", "ABD"])
    notes_only = copy_segment(source, folder, "notes-0001")
    (notes_only / "notes-0001-arousal.mat").unlink()
    wfdb.wrann("notes-0001", "arousal", np.array([0, 100, 6000]), symbol=['"'] * 3,
               aux_note=["N3", "bogus note", "N3"], fs=RATE, write_dir=str(notes_only))
    bad_masks = copy_segment(source, folder, "badmask-0001") / "badmask-0001-arousal.mat"
    bad_masks.write_bytes(bad_masks.read_bytes()[:2000])
    names = sorted(path.name for path in folder.iterdir())
    (folder / "RECORDS").write_text("".join(f"{name}/\n" for name in names + ["ghost-0001"]))
    (folder / "age-sex.csv").write_text("Record,Sex,Age\nok-0001,m,44\nnotes-0001,f\nnanflat-0001,M,unknown\n")
    builder = PhysioNet2018(data_dir=str(folder), cache_dir=str(tmp_path_factory.mktemp("bad-cache")))
    builder.download_and_prepare()
    return builder, builder.as_dataset(), names


def challenge_io_default_modalities():
    from modeling_physiomae.configuration_physiomae import DEFAULT_MODALITIES

    return DEFAULT_MODALITIES


def test_bad_records_are_skipped_with_their_reason(bad_build):
    builder, _, names = bad_build
    records = builder.build_report["records"]
    assert sorted(records) == names
    expected_skips = {
        "nomat-0001": ("signal file missing", "nomat-0001.mat"),
        "trunc-0001": ("signal file truncated", "trunc-0001.mat"),
        "hdrlen-0001": ("header does not match signal file", "13000 samples"),
        "hdrch-0001": ("header does not match signal file", "6 channels"),
        "short-0001": ("record shorter than one window", "20.00 s"),
    }
    for name, (kind, detail) in expected_skips.items():
        assert records[name]["status"] == "skipped", records[name]
        assert records[name]["reason_kind"] == kind and detail in records[name]["reason"], records[name]
    totals = builder.build_report["totals"]
    assert totals["records_skipped"] == len(expected_skips)
    assert totals["records_skipped_by_reason"] == {
        "signal file missing": 1,
        "signal file truncated": 1,
        "header does not match signal file": 2,
        "record shorter than one window": 1,
    }
    assert builder.build_report["listing_problems"] == [
        {"record": "ghost-0001", "where": f"{builder.config.data_dir}/RECORDS:{len(names) + 1}",
         "problem": "listed in RECORDS but no header (.hea) found"}
    ]


def test_bad_channels_and_annotations_are_counted(bad_build):
    builder, dataset_dict, _ = bad_build
    report = builder.build_report
    rows = _rows_by_key(dataset_dict)
    channel_names = builder._layout.channel_names

    nan_flat = report["records"]["nanflat-0001"]
    assert nan_flat["status"] == "built" and nan_flat["non_finite_samples"] == {"F3-M2": 40 * RATE}
    assert "SaO2" in nan_flat["preprocessing"]["flat_channels"]
    first, second = rows[("nanflat-0001", 0)][1], rows[("nanflat-0001", 1)][1]
    assert not first["channel_mask"][channel_names.index("F3-M2")]  # 30 s of 30 invalid in window 0
    assert second["channel_mask"][channel_names.index("F3-M2")]  # 10 s of 30 in window 1
    assert not first["channel_mask"][channel_names.index("SaO2")] and not first["modality_mask"][4]

    all_nan = report["records"]["allnan-0001"]
    assert all_nan["status"] == "built" and all_nan["windows_kept"] == 0
    assert all_nan["windows_skipped"] == {"no channel present in the window": 2}
    assert report["totals"]["windows_skipped_by_reason"] == {"no channel present in the window": 2}

    missing = rows[("missingch-0001", 0)][1]
    assert {channel for channel, flag in zip(channel_names, missing["channel_mask"]) if flag} == {"E1-M2", "ABD"}
    assert missing["modality_mask"].tolist() == [False, True, False, True, False, False]

    notes = report["records"]["notes-0001"]
    assert notes["labels"]["source"] == "notes" and notes["labels"]["unknown_notes"] == {"bogus note": 1}
    assert report["totals"]["unknown_annotation_notes"] == 1
    assert [rows[("notes-0001", window)][1]["sleep_stage"] for window in (0, 1)] == [3, 3]

    bad_masks = report["records"]["badmask-0001"]
    assert bad_masks["labels"]["source"] == "notes"
    assert "masks unusable, using notes" in bad_masks["labels"]["problems"][0]
    assert rows[("badmask-0001", 0)][1]["sleep_stage"] == rows[("ok-0001", 0)][1]["sleep_stage"]

    assert rows[("ok-0001", 0)][1]["sex"] == 1 and rows[("ok-0001", 0)][1]["age"] == 44
    assert rows[("notes-0001", 0)][1]["sex"] == 0 and rows[("notes-0001", 0)][1]["age"] == -1
    assert {(entry["line"], entry["problem"]) for entry in report["age_sex"]["problems"]} == {
        (3, "missing age"),
        (4, "non-numeric age 'unknown'"),
    }
    assert report["totals"]["windows_kept"] == sum(len(dataset) for dataset in dataset_dict.values())


# ---------------------------------------------------------------------------- synthetic + CLI


def test_synthetic_cohort_builds_all_splits_with_cli_and_parquet(tmp_path, capsys):
    from datasets import load_dataset, load_from_disk

    from dataset_scripts import synthetic_psg

    synthetic_psg.write_cohort(tmp_path / "cohort", n_train=2, n_test=1, hours=0.25, seed=1)
    output = tmp_path / "out"
    assert physionet2018.main(["build", "--data_dir", str(tmp_path / "cohort"), "--output_dir", str(output), "--parquet"]) == 0
    printed = capsys.readouterr().out
    dataset_dict = load_from_disk(str(output / "dataset"))
    assert set(dataset_dict) == set(SPLIT_NAMES)
    report = json.loads((output / "build_report.json").read_text())
    assert report["totals"]["records_built"] == 3 and report["totals"]["windows_kept"] == 90
    assert {entry["split"] for entry in report["records"].values()} == set(SPLIT_NAMES)
    assert not (output / "cache").exists()
    assert json.loads((output / "dataset" / "build_report.json").read_text())["totals"] == report["totals"]
    layout = json.loads(dataset_dict["pretrain"].info.description)
    assert layout["channel_names"][0] == "F3-M2" and len(layout["channel_names"]) == 13
    assert layout["modality_names"] == ["eeg", "eog", "emg", "resp", "spo2", "ecg"]
    pretrain = dataset_dict["pretrain"]
    assert set(pretrain["sleep_stage"]) == {-1} and set(pretrain["arousal"]) == {-1}
    labelled = list(dataset_dict["probe_train"]["sleep_stage"]) + list(dataset_dict["probe_test"]["sleep_stage"])
    assert min(labelled) >= 0 and len(set(labelled)) >= 3
    ages = load_dataset("csv", data_files=str(tmp_path / "cohort" / "age-sex.csv"), cache_dir=str(tmp_path / "hf"))["train"]
    expected_age = dict(zip(ages["Record"], ages["Age"]))
    for dataset in dataset_dict.values():
        assert all(row["age"] == expected_age[row["record"]] for row in dataset.select_columns(["record", "age"]))
    # the documented one-liner, exactly as printed
    snippet = next(line for line in printed.splitlines() if line.startswith("load_dataset("))
    from_parquet = eval(snippet.replace("load_dataset(", f"load_dataset(cache_dir={str(tmp_path / 'hf')!r}, path=", 1))
    for split, dataset in dataset_dict.items():
        assert from_parquet[split].features == dataset.features
        np.testing.assert_array_equal(
            np.asarray(from_parquet[split].with_format("numpy")["input_values"]),
            np.asarray(dataset.with_format("numpy")["input_values"]),
        )


# ------------------------------------------------------------------------------------- verify


def _partial_download(tmp_path: Path, real_labels_dir: Path) -> Path:
    record = tmp_path / "download" / "training" / "tr03-0005"
    record.mkdir(parents=True)
    for suffix in (".hea", ".arousal", "-arousal.mat"):
        shutil.copyfile(real_labels_dir / f"tr03-0005{suffix}", record / f"tr03-0005{suffix}")
    return tmp_path / "download"


def test_verify_names_missing_and_corrupted_files(tmp_path, real_labels_dir, capsys):
    download = _partial_download(tmp_path, real_labels_dir)
    result = verify_download(download, real_labels_dir, present_only=True)
    assert result.missing == ["training/tr03-0005/tr03-0005.mat"]  # the 134-MB signal file is not there
    assert result.ok == 3 and not result.corrupted
    assert len(result.absent_records) == 993 + 989
    header = download / "training" / "tr03-0005" / "tr03-0005.hea"
    header.write_bytes(header.read_bytes().replace(b"\r\n", b"\n"))  # a "helpful" line-end conversion
    code = physionet2018.main(["verify", "--data_dir", str(download), "--sums_dir", str(real_labels_dir), "--present_only"])
    printed = capsys.readouterr().out
    assert code == 1
    assert "MISSING   training/tr03-0005/tr03-0005.mat" in printed
    assert "CORRUPTED training/tr03-0005/tr03-0005.hea" in printed
    full = verify_download(download, real_labels_dir)
    assert len(full.missing) == len(read_sha1sums(real_labels_dir / "training_SHA1SUMS")) + len(
        read_sha1sums(real_labels_dir / "test_SHA1SUMS")
    ) - 3


def test_verify_passes_on_a_complete_copy(tmp_path, real_labels_dir):
    download = _partial_download(tmp_path, real_labels_dir)
    sums = tmp_path / "sums"
    sums.mkdir()
    lines = []
    for path in sorted((download / "training").rglob("*")):
        if path.is_file():
            lines.append(f"{hashlib.sha1(path.read_bytes()).hexdigest()}  {path.relative_to(download / 'training')}\n")
    (sums / "training_SHA1SUMS").write_text("".join(lines))
    (sums / "test_SHA1SUMS").write_text("")
    assert physionet2018.main(["verify", "--data_dir", str(download), "--sums_dir", str(sums)]) == 0


def test_header_with_a_channel_line_missing_names_the_file(tmp_path, real_segments_dir):
    """wfdb accepts a header whose record line declares more signals than it lists; we name the file instead of
    failing later with an IndexError."""
    record = sorted(path for path in real_segments_dir.iterdir() if path.is_dir())[0]
    copy = tmp_path / record.name
    shutil.copytree(record, copy)
    header = copy / f"{record.name}.hea"
    lines = header.read_bytes().split(b"\r\n")
    header.write_bytes(b"\r\n".join(lines[:3] + lines[4:]))  # drop the third signal line
    with pytest.raises(physionet2018.RecordReadError, match=r"\.hea: the record line declares \d+ signals but the header has"):
        physionet2018.read_record_signals(header)
