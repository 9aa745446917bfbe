"""EDF/EDF+/BDF and WFDB file input: `read_recording`, the feature extractor on files (mixed rates, units, bad files),
and the EDF sleep builder (`dataset_scripts.edf_sleep`) on real challenge excerpts written as EDF into tmp_path.

Tolerance of EDF against arrays: edfio writes each signal with the physical range of its data, so a value is
quantised to a step q = (max - min) / 65535 (error <= q / 2 per sample, a little more after the header's 8-character
rounding of the range). The pipeline is linear up to the scaling, and the summed absolute impulse response of its
resampling and band-pass filters stays below 5 on these channels, so a window value may differ by at most
EDF_TOLERANCE_STEPS * q / scale (scale: the channel's robust scale) from the array input's; for the builder's
float16 rows a relative 2**-10 is added.
"""

import json
from pathlib import Path

import datasets
import edfio
import numpy as np
import pytest
import wfdb
from scipy import signal as scipy_signal

from dataset_scripts import edf_records, edf_sleep, hypnograms
from dataset_scripts import labels as label_tools
from dataset_scripts import physionet2018
from dataset_scripts.record_split import assign_split
from dataset_scripts.windowed_rows import make_features
from modeling_physiomae.feature_extraction_physiomae import PhysioMAEFeatureExtractor
from modeling_physiomae.recording_physiomae import RecordingReadError, read_recording
from helpers import write_edf

EDF_TOLERANCE_STEPS = 8.0
FLOAT16_RELATIVE = 2.0**-10
RATE = 200
STAGE = {name: code for code, name in enumerate(label_tools.STAGE_NAMES)}  # W N1 N2 N3 REM -> 0..4
SLEEP_EDF_TEXT = {0: "Sleep stage W", 1: "Sleep stage 1", 2: "Sleep stage 2", 3: "Sleep stage 3", 4: "Sleep stage R"}


# ----------------------------------------------------------------------------- helpers
def _segment_stage(segment_dir: Path) -> int:
    notes = label_tools.read_wfdb_annotations(segment_dir / f"{segment_dir.name}.arousal")
    return label_tools.STAGE_NOTE_TO_CODE[notes.aux_note[0]]


@pytest.fixture(scope="module")
def segments(real_segments_dir):
    """One real excerpt per stage (W, N1, N2, N3, REM) whose channels all vary (EDF needs a physical range)."""
    chosen = {}
    for name in sorted(path.name for path in real_segments_dir.iterdir() if path.name.startswith("seg-")):
        stage = _segment_stage(real_segments_dir / name)
        if stage in chosen:
            continue
        record = wfdb.rdrecord(str(real_segments_dir / name / name))
        if np.ptp(record.p_signal, axis=0).min() > 0:
            chosen[stage] = name
        if len(chosen) == 5:
            break
    return {stage: real_segments_dir / name for stage, name in chosen.items()}


def segment_arrays(segment_dir: Path):
    """(channel name -> float64 physical values, channel name -> unit) of a real excerpt, as wfdb reads it."""
    record = wfdb.rdrecord(str(segment_dir / segment_dir.name))
    arrays = {name: record.p_signal[:, index] for index, name in enumerate(record.sig_name)}
    return arrays, dict(zip(record.sig_name, record.units))


def write_hypnogram(path, annotations):
    """A Sleep-EDF style hypnogram: an EDF+ file of annotations only."""
    edfio.Edf([], annotations=[edfio.EdfAnnotation(*item) for item in annotations]).write(str(path))
    return Path(path)


def saturation(seconds: int) -> np.ndarray:
    """A 1-Hz SaO2 trace (%): a slow dip, as oximeters report it (the excerpts have no SaO2)."""
    time = np.arange(seconds)
    return np.round(96.0 - 3.0 * np.exp(-(((time - seconds / 2) / 8.0) ** 2)), 1)


def eeg_at_256(values_200hz: np.ndarray) -> np.ndarray:
    """A 200-Hz channel resampled to 256 Hz (a second real EEG channel at another rate)."""
    return scipy_signal.resample_poly(values_200hz, 32, 25)


def quantisation_step(values) -> float:
    return float(np.ptp(values)) / 65535


def assert_close_to_quantisation(edf_values, array_values, steps, scales, channel_names, extra_relative=0.0):
    """Per channel: |edf - array| <= EDF_TOLERANCE_STEPS * q / scale (+ extra_relative * |array|)."""
    for index, name in enumerate(channel_names):
        if name not in steps:
            continue
        tolerance = EDF_TOLERANCE_STEPS * steps[name] / scales[name] + extra_relative * np.abs(array_values[:, index])
        difference = np.abs(edf_values[:, index].astype(np.float64) - array_values[:, index].astype(np.float64))
        assert (difference <= tolerance).all(), f"{name}: max difference {difference.max():.3g}"


@pytest.fixture(scope="module")
def extractor():
    return PhysioMAEFeatureExtractor()


# ----------------------------------------------------------------------------- WFDB and EDF input
def test_wfdb_path_input_equals_array_input_exactly(extractor, segments):
    segment = segments[STAGE["N2"]]
    arrays, _ = segment_arrays(segment)
    expected = extractor(arrays, RATE, return_tensors="np", return_report=True)
    for path in (segment / f"{segment.name}.hea", segment / segment.name, str(segment / segment.name)):
        got = extractor(path, return_tensors="np", return_report=True)
        for key in ("input_values", "channel_mask", "modality_mask"):
            assert np.array_equal(got[key], expected[key]), key
    report = got["report"]
    assert report["window_onsets_seconds"] == [0.0, 30.0] == expected["report"]["window_onsets_seconds"]
    assert report["units_unknown"] == {} and report["units"]["ECG"] == {"unit": "mV", "target": "mV", "factor": 1.0}
    assert report["source"]["format"] == "WFDB" and report["input_sampling_rates"]["O2-M1"] == RATE


def test_edf_with_mixed_rates_equals_array_input(extractor, segments, tmp_path):
    segment = segments[STAGE["N3"]]
    arrays, units = segment_arrays(segment)
    extra = {"EEG C4-A1": (eeg_at_256(arrays["O2-M1"]), 256, "uV"), "SpO2": (saturation(60), 1, "%")}
    channels = [(name, values, RATE, units[name]) for name, values in arrays.items()]
    channels += [(name, values, rate, unit) for name, (values, rate, unit) in extra.items()]
    path = write_edf(tmp_path / "night.EDF", channels, annotations=[(0, 30, "Sleep stage 3"), (30, 30, "Sleep stage 4")])

    recording = read_recording(path)
    assert recording.format == "EDF+C" and recording.skipped_channels == ["EDF Annotations"]
    assert recording.channel_names == [name for name, *_ in channels]
    assert recording.sampling_rates == [float(rate) for _, _, rate, _ in channels]
    assert recording.units == [unit for *_, unit in channels] and recording.duration_seconds == 60.0
    assert recording.annotations == [(0.0, 30.0, "Sleep stage 3"), (30.0, 30.0, "Sleep stage 4")]
    for (name, values, _, _), read_back in zip(channels, recording.signals):
        assert np.abs(read_back - values).max() <= quantisation_step(values), name  # <= q/2, plus range rounding

    rates = {name: rate for name, _, rate, _ in channels}
    expected = extractor({name: values for name, values, _, _ in channels}, rates, return_tensors="np", return_report=True)
    got = extractor(path, return_tensors="np", return_report=True)
    report = got["report"]
    assert np.array_equal(got["channel_mask"], expected["channel_mask"]) and got["channel_mask"].all(axis=0).sum() == 9
    steps = {report["renamed"].get(name, name): quantisation_step(values) for name, values, _, _ in channels}
    scales = {name: entry["scale"] for name, entry in expected["report"]["scaling"].items()}
    for name, entry in report["scaling"].items():
        assert entry["scale"] == pytest.approx(scales[name], rel=1e-3)
    assert_close_to_quantisation(got["input_values"], expected["input_values"], steps, scales, extractor.channel_names)
    assert report["input_sampling_rates"] == rates and report["resample_factors"] == {"1": [100, 1], "200": [1, 2], "256": [25, 64]}
    assert report["window_onsets_seconds"] == [0.0, 30.0] and report["units_unknown"] == {}
    assert report["source"]["num_annotations"] == 2 and report["source"]["skipped_channels"] == ["EDF Annotations"]


def test_mixed_rates_resample_a_sine_to_the_same_signal():
    extractor = PhysioMAEFeatureExtractor(scaling="none")
    seconds, frequency, amplitude = 60, 5.0, 30.0
    rates = {"C3-M2": 200, "C4-M1": 256, "O1-M2": 128, "F3-M2": 100}
    recording = {name: amplitude * np.sin(2 * np.pi * frequency * np.arange(seconds * rate) / rate) for name, rate in rates.items()}
    output = extractor(recording, rates, return_tensors="np", return_report=True)
    # (windows, channels, samples) -> (channels, seconds * 100)
    signals = output["input_values"].transpose(1, 0, 2).reshape(extractor.num_channels, -1)
    expected = amplitude * np.sin(2 * np.pi * frequency * np.arange(seconds * 100) / 100)
    interior = slice(1000, -1000)  # the 0.1-Hz high-pass's edge transients (10 s) aside
    at_target_rate = signals[extractor.channel_names.index("F3-M2")]  # 100 Hz: filtered, not resampled
    for name in rates:
        values = signals[extractor.channel_names.index(name)]
        assert np.abs(values[interior] - expected[interior]).max() < 0.01 * amplitude, name
        assert np.abs(values[interior] - at_target_rate[interior]).max() < 0.005 * amplitude, name
    assert output["report"]["input_sampling_rates"] == rates and output["report"]["num_samples"] == seconds * 100
    with pytest.raises(ValueError, match="no rate for"):
        extractor(recording, {"C3-M2": 200})
    with pytest.raises(ValueError, match="last different times"):
        extractor({"C3-M2": np.zeros(6000 * 2), "C4-M1": np.zeros(256 * 90)}, {"C3-M2": 200, "C4-M1": 256})


def test_bdf_and_rec_files_read_like_edf(extractor, segments, tmp_path):
    arrays, units = segment_arrays(segments[STAGE["REM"]])
    expected = extractor(arrays, RATE, return_tensors="np", return_report=True)
    scales = {name: entry["scale"] for name, entry in expected["report"]["scaling"].items()}
    bdf = tmp_path / "night.bdf"
    edfio.Bdf([edfio.BdfSignal(values, RATE, label=name, physical_dimension=units[name]) for name, values in arrays.items()]).write(str(bdf))
    rec = write_edf(tmp_path / "night.rec", [(name, values, RATE, units[name]) for name, values in arrays.items()])
    for path, levels in ((bdf, 2**24 - 1), (rec, 2**16 - 1)):
        got = extractor(path, return_tensors="np", return_report=True)
        steps = {name: float(np.ptp(values)) / levels for name, values in arrays.items()}
        assert_close_to_quantisation(got["input_values"], expected["input_values"], steps, scales, extractor.channel_names)
        assert got["report"]["source"]["format"] == ("BDF" if path == bdf else "EDF")


def test_units_are_converted_from_the_edf_physical_dimension(extractor, segments, tmp_path):
    segment = segments[STAGE["W"]]
    arrays, units = segment_arrays(segment)
    in_volts = [("O2-M1", arrays["O2-M1"] * 1e-6, RATE, "V"), ("ECG", arrays["ECG"] * 1e3, RATE, "uV"),
                ("E1-M2", arrays["E1-M2"], RATE, ""), ("ABD", arrays["ABD"], RATE, "cmH2O")]
    as_challenge = [("O2-M1", arrays["O2-M1"], RATE, "uV"), ("ECG", arrays["ECG"], RATE, "mV"),
                    ("E1-M2", arrays["E1-M2"], RATE, "uV"), ("ABD", arrays["ABD"], RATE, "uV")]
    got = extractor(write_edf(tmp_path / "volts.edf", in_volts), return_tensors="np", return_report=True)
    reference = extractor(write_edf(tmp_path / "microvolts.edf", as_challenge), return_tensors="np", return_report=True)
    report = got["report"]
    assert report["units"]["O2-M1"] == {"unit": "V", "target": "uV", "factor": 1e6}
    assert report["units"]["ECG"] == {"unit": "uV", "target": "mV", "factor": 1e-3}
    assert report["units_unknown"] == {"E1-M2": "", "ABD": "cmH2O"}  # left as they are, and listed
    scales = {name: entry["scale"] for name, entry in reference["report"]["scaling"].items()}
    for name, values, _, _ in as_challenge:
        assert report["scaling"][name]["scale"] == pytest.approx(scales[name], rel=1e-3), name
    steps = {name: 2 * quantisation_step(values) for name, values, _, _ in as_challenge}  # both files quantised
    assert_close_to_quantisation(got["input_values"], reference["input_values"], steps, scales, extractor.channel_names)
    # the same conversion for arrays with declared units
    from_arrays = extractor({name: values for name, values, _, _ in in_volts}, RATE, units={"O2-M1": "V", "ECG": "uV"},
                            return_tensors="np", return_report=True)
    assert from_arrays["report"]["units"]["O2-M1"]["factor"] == 1e6
    plain = extractor({name: values for name, values, _, _ in as_challenge}, RATE, return_tensors="np")
    index = extractor.channel_names.index("O2-M1")
    assert np.abs(from_arrays["input_values"][:, index] - plain["input_values"][:, index]).max() < 1e-4


def test_bad_files_are_clear_errors_naming_the_file(extractor, segments, tmp_path):
    arrays, units = segment_arrays(segments[STAGE["N1"]])
    good = write_edf(tmp_path / "good.edf", [(name, values, RATE, units[name]) for name, values in arrays.items()])
    payload = good.read_bytes()

    with pytest.raises(FileNotFoundError, match="missing.edf"):
        extractor(str(tmp_path / "missing.edf"))
    with pytest.raises(FileNotFoundError, match="no such recording"):
        read_recording(tmp_path / "nothing-here")
    not_edf = tmp_path / "notes.edf"
    not_edf.write_text("this is not an EDF file " * 20)
    with pytest.raises(RecordingReadError, match=r"notes\.edf: not an EDF/BDF file \(bad header"):
        extractor(not_edf)
    short_header = tmp_path / "short.bdf"
    short_header.write_bytes(b"0       " + b" " * 40)
    with pytest.raises(RecordingReadError, match=r"short\.bdf: not an EDF/BDF file"):
        read_recording(short_header)

    truncated = tmp_path / "truncated.edf"
    truncated.write_bytes(payload[:-1000])  # the last data record is incomplete
    with pytest.raises(RecordingReadError, match=r"truncated\.edf: truncated EDF data: the header announces 60 data records") as caught:
        extractor(truncated)
    assert caught.value.kind == "EDF file truncated"
    lenient = read_recording(truncated, strict=False)  # the complete records, and the problem listed
    assert lenient.duration_seconds == 59.0 and "truncated" in lenient.problems[0]

    record_bytes = (len(payload) - int(payload[184:192])) // 60
    extra_record = tmp_path / "extra.edf"
    extra_record.write_bytes(payload + payload[-record_bytes:])  # one complete record more than the header says
    with pytest.raises(RecordingReadError, match=r"extra\.edf: wrong data record count: the header announces 60") as caught:
        read_recording(extra_record)
    assert caught.value.kind == "EDF record count mismatch"

    short = write_edf(tmp_path / "twenty-seconds.edf", [(name, values[: 20 * RATE], RATE, units[name]) for name, values in arrays.items()])
    with pytest.raises(RecordingReadError, match=r"twenty-seconds\.edf: .*shorter than one 30-s window") as caught:
        extractor(short)
    assert caught.value.kind == "recording shorter than one window"
    with pytest.raises(ValueError, match="sampling_rate must be None"):
        extractor(good, 200)


# ----------------------------------------------------------------------------- stage texts, CSVs, pairing
@pytest.mark.parametrize(
    "text, code, status",
    [("Sleep stage W", 0, "stage"), ("Sleep stage 1", 1, "stage"), ("Sleep stage 2", 2, "stage"),
     ("Sleep stage 3", 3, "stage"), ("Sleep stage 4", 3, "stage"), ("Sleep stage R", 4, "stage"),
     ("N3", 3, "stage"), ("rem", 4, "stage"), ("Wake", 0, "stage"), ("Sleep stage ?", -1, "undefined"),
     ("Movement time", -1, "undefined"), ("Sleep stage X", -1, "unknown"), ("Lights off", -1, "unknown")],
)
def test_stage_texts(text, code, status):
    assert hypnograms.parse_stage_text(text) == (code, status)


def test_stage_csv_forms_and_window_rule(tmp_path):
    per_line = tmp_path / "a.csv"
    per_line.write_text("# one stage per 30-s epoch\nW\nN1\nSleep stage 4\n")
    intervals, problems = hypnograms.read_stage_csv(per_line)
    assert [(item.onset, item.duration, item.text) for item in intervals] == [(0, 30, "W"), (30, 30, "N1"), (60, 30, "Sleep stage 4")]
    with_header = tmp_path / "b.csv"
    with_header.write_text("onset,stage\n0,W\n45,N2\nbad,N2\n100,R\n")
    intervals, problems = hypnograms.read_stage_csv(with_header)
    assert [(item.onset, item.duration, item.text) for item in intervals] == [(0, 45, "W"), (45, 55, "N2"), (100, 30, "R")]
    assert problems == [{"line": 4, "problem": "unreadable onset 'bad'", "text": "bad,N2"}]
    # window 1 = [30, 60) s: 15 s W, 15 s N2 -> a tie -> -1; window 2 = [60, 90): N2 all through; window 3: 10 s N2, 20 s REM
    labels = hypnograms.window_stages(intervals, num_windows=5, window_seconds=30.0, sampling_rate=100, signal_seconds=150.0)
    assert labels.sleep_stage.tolist() == [0, -1, 2, 4, -1]
    assert labels.report["windows_after_hypnogram_end"] == 1 and labels.report["hypnogram_seconds"] == 130.0


def test_hypnogram_pairing(tmp_path):
    for name in ("SC4001E0-PSG.edf", "SC4001EC-Hypnogram.edf", "SC4002E0-PSG.edf", "SC4002EC-Hypnogram.edf",
                 "night1-PSG.edf", "night1-Hypnogram.edf", "night2.edf", "night2.csv", "lonely-Hypnogram.edf"):
        (tmp_path / name).write_bytes(b"")
    listing = edf_records.find_edf_records(tmp_path)
    records = {record.name: record for record in listing.records}
    assert set(records) == {"SC4001E0", "SC4002E0", "night1", "night2"}
    assert Path(records["SC4001E0"].hypnogram).name == "SC4001EC-Hypnogram.edf"
    assert Path(records["SC4002E0"].hypnogram).name == "SC4002EC-Hypnogram.edf"
    assert Path(records["night1"].hypnogram).name == "night1-Hypnogram.edf"
    assert Path(records["night2"].stages_csv).name == "night2.csv" and records["night2"].hypnogram is None
    assert [problem["problem"] for problem in listing.problems] == ["hypnogram without a recording"]


# ----------------------------------------------------------------------------- the builder
CHANNEL_MAP = {"Occipital EEG": "O2-M1"}


def psg_channels(arrays, units, with_saturation=True):
    """EDF channels of an excerpt: O2-M1 under a label only the channel map knows, plus a 1-Hz SaO2."""
    channels = [("Occipital EEG" if name == "O2-M1" else name, values, RATE, units[name]) for name, values in arrays.items()]
    if with_saturation:
        seconds = len(next(iter(arrays.values()))) // RATE
        channels.append(("SaO2", saturation(seconds), 1, "%"))
    return channels


def challenge_rows(segment: Path):
    """Rows the challenge builder makes of a real excerpt (its labels and preprocessing)."""
    extractor = physionet2018.default_feature_extractor()
    record = physionet2018.RecordFiles(name=segment.name, header=str(segment / f"{segment.name}.hea"),
                                       notes=str(segment / f"{segment.name}.arousal"),
                                       masks=str(segment / f"{segment.name}-arousal.mat"))
    return list(physionet2018.process_record(record, extractor, extractor.channel_layout, -1.0, -1).rows)


@pytest.fixture(scope="module")
def edf_build(tmp_path_factory, segments, shared_data):
    folder = tmp_path_factory.mktemp("edf-folder")
    loaded = {stage: segment_arrays(path) for stage, path in segments.items()}
    # (a) Sleep-EDF style: PSG + hypnogram paired by the first 6 characters; N3 then REM, N3 scored as R&K 4 and 3
    n3, rem = loaded[STAGE["N3"]], loaded[STAGE["REM"]]
    joined = {name: np.concatenate([n3[0][name], rem[0][name]]) for name in n3[0]}
    write_edf(folder / "SC4001E0-PSG.edf", psg_channels(joined, n3[1]))
    write_hypnogram(folder / "SC4001EC-Hypnogram.edf",
                    [(0, 30, "Sleep stage 4"), (30, 30, "Sleep stage 3"), (60, 60, "Sleep stage R")])
    # (c) stages inside the PSG: W, then '?', and an event that is no stage
    w = loaded[STAGE["W"]]
    write_edf(folder / "night-w.edf", psg_channels(*w),
              annotations=[(0, 30, "Sleep stage W"), (12.5, None, "Lights off"), (30, 30, "Sleep stage ?")])
    # (b) CSV, one stage per line, shorter than the signal: the second window is unlabelled
    n2 = loaded[STAGE["N2"]]
    write_edf(folder / "n2-short.edf", psg_channels(*n2))
    (folder / "n2-short.csv").write_text(f"{SLEEP_EDF_TEXT[2]}\n")
    # (b) CSV with onsets, one epoch longer than the signal: truncated
    n1 = loaded[STAGE["N1"]]
    write_edf(folder / "n1-long.edf", psg_channels(*n1))
    (folder / "n1-long.csv").write_text("onset,stage\n0,N1\n30,N1\n60,N1\n")
    # an unknown label, counted
    write_edf(folder / "unknown-label.edf", psg_channels(*n2))
    (folder / "unknown-label.csv").write_text("N2\nStage Z\n")
    # far too long a hypnogram (10 epochs for 2 windows; the build allows 4 epochs): skipped
    write_edf(folder / "far-off.edf", psg_channels(*n2))
    (folder / "far-off.csv").write_text("N2\n" * 10)
    # a truncated EDF: skipped with its reason
    payload = write_edf(folder / "broken.edf", psg_channels(*w)).read_bytes()
    (folder / "broken.edf").write_bytes(payload[:-777])
    # no hypnogram: pretraining data (a real unlabelled excerpt)
    unlabelled = shared_data / "physionet2018-unlabelled" / "unl-0001" / "unl-0001"
    if Path(f"{unlabelled}.hea").is_file():
        write_edf(folder / "unl-0001.edf", psg_channels(*segment_arrays(unlabelled.parent)))
    else:  # pragma: no cover - the shared data always has it
        write_edf(folder / "unl-0001.edf", psg_channels(*w))

    output = tmp_path_factory.mktemp("edf-output")
    code = edf_sleep.main(["build", "--data_dir", str(folder), "--output_dir", str(output),
                           "--channel_map", json.dumps(CHANNEL_MAP), "--max_hypnogram_mismatch_epochs", "4"])
    assert code == 0
    report = json.loads((output / "build_report.json").read_text())
    dataset_dict = datasets.load_from_disk(str(output / "dataset"))
    rows = {}
    for split, dataset in dataset_dict.items():
        for row in dataset.with_format("numpy"):
            rows[(str(row["record"]), int(row["window"]))] = (split, row)
    return report, dataset_dict, rows


def stages_of(rows, record):
    return [int(row["sleep_stage"]) for (name, _), (_, row) in sorted(rows.items()) if name == record]


def test_builder_stages_match_the_challenge_labels(edf_build, segments):
    report, _, rows = edf_build
    challenge = {stage: [int(row["sleep_stage"]) for row in challenge_rows(segments[stage])] for stage in segments}
    assert challenge[STAGE["N3"]] == [3, 3] and challenge[STAGE["REM"]] == [4, 4]  # the excerpts' known stages
    assert stages_of(rows, "SC4001E0") == challenge[STAGE["N3"]] + challenge[STAGE["REM"]]  # R&K 4 and 3 -> N3
    assert report["records"]["SC4001E0"]["label_source"] == "hypnogram"
    assert stages_of(rows, "night-w") == [challenge[STAGE["W"]][0], -1]  # 'Sleep stage ?' -> -1
    assert report["records"]["night-w"]["labels"]["other_annotations"] == 1
    assert report["records"]["night-w"]["labels"]["undefined_labels"] == {"Sleep stage ?": 1}
    assert stages_of(rows, "n1-long") == challenge[STAGE["N1"]]
    assert stages_of(rows, "n2-short") == [challenge[STAGE["N2"]][0], -1]
    assert stages_of(rows, "unknown-label") == [STAGE["N2"], -1]
    assert stages_of(rows, "unl-0001") == [-1, -1]
    for (name, _), (split, row) in rows.items():
        assert split == assign_split(name, labelled=name != "unl-0001")
        assert int(row["arousal"]) == -1


def test_builder_rows_match_the_challenge_rows(edf_build, segments):
    """The EDF of a real excerpt gives the challenge builder's windows (within quantisation and float16)."""
    report, dataset_dict, rows = edf_build
    channel_names = physionet2018.default_feature_extractor().channel_names
    arrays, _ = segment_arrays(segments[STAGE["N2"]])
    steps = {name: quantisation_step(values) for name, values in arrays.items()}
    scales = {name: entry["scale"] for name, entry in report["records"]["n2-short"]["preprocessing"]["scaling"].items()}
    for reference in challenge_rows(segments[STAGE["N2"]]):
        _, row = rows[("n2-short", reference["window"])]
        present = np.asarray(reference["channel_mask"])
        assert np.array_equal(np.asarray(row["channel_mask"])[present], present[present])
        assert bool(row["channel_mask"][channel_names.index("SaO2")])  # the 1-Hz channel the excerpt lacks
        edf_values, challenge_values = np.asarray(row["input_values"]), np.asarray(reference["input_values"])
        # (channels, samples) -> (samples, channels) for the per-channel check
        assert_close_to_quantisation(edf_values.T, challenge_values.T.astype(np.float32), steps, scales, channel_names,
                                     extra_relative=2 * FLOAT16_RELATIVE)
    assert dataset_dict["probe_train" if "probe_train" in dataset_dict else "probe_test"].features == make_features(
        physionet2018.default_feature_extractor().channel_layout)
    preprocessing = report["records"]["n2-short"]["preprocessing"]
    assert preprocessing["channel_map"] == CHANNEL_MAP and "O2-M1" not in preprocessing["missing_channels"]
    assert preprocessing["input_sampling_rates"]["SaO2"] == 1.0


def test_builder_report_counts_skips_and_label_problems(edf_build):
    report, _, rows = edf_build
    records, totals = report["records"], report["totals"]
    assert records["broken"]["status"] == "skipped" and records["broken"]["reason_kind"] == "EDF file truncated"
    assert "broken.edf" in records["broken"]["reason"]
    assert records["far-off"]["status"] == "skipped" and records["far-off"]["reason_kind"] == "hypnogram length mismatch"
    assert "8.0 epochs longer" in records["far-off"]["reason"]
    assert totals["records_found"] == 8 and totals["records_built"] == 6 and totals["records_skipped"] == 2
    assert totals["records_skipped_by_reason"] == {"EDF file truncated": 1, "hypnogram length mismatch": 1}
    assert totals["windows_kept"] == len(rows) == 14
    assert totals["unknown_labels"] == {"Stage Z": 1} and totals["unknown_annotation_notes"] == 1
    assert totals["undefined_labels"] == {"Sleep stage ?": 1}
    assert totals["windows_unlabelled"] == 3  # night-w ('?'), n2-short (after the hypnogram), unknown-label
    assert totals["windows_after_hypnogram_end"] == 1 and records["n2-short"]["labels"]["windows_after_hypnogram_end"] == 1
    assert totals["records_truncated_hypnogram"] == 1
    assert records["n1-long"]["labels"]["hypnogram_seconds_beyond_signal"] == 30.0
    assert records["SC4001E0"]["sleep_stage_counts"] == {"W": 0, "N1": 0, "N2": 0, "N3": 2, "REM": 2, "undefined": 0}
    assert records["unl-0001"]["split"] == "pretrain" and not records["unl-0001"]["labelled"]
    assert report["builder"] == "edf_sleep" and report["channel_map"] == CHANNEL_MAP

