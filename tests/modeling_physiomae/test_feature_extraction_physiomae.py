"""Tests of PhysioMAEFeatureExtractor: names, cleaning, filtering, resampling, scaling, windows, real records."""

import json

import numpy as np
import pytest
import torch
import wfdb
from transformers.testing_utils import CaptureLogger

from modeling_physiomae import feature_extraction_physiomae
from modeling_physiomae.configuration_physiomae import PhysioMAEConfig
from modeling_physiomae.feature_extraction_physiomae import PhysioMAEFeatureExtractor


SEGMENT_CHANNELS = ["O2-M1", "E1-M2", "Chin1-Chin2", "ABD", "CHEST", "AIRFLOW", "ECG"]


@pytest.fixture(scope="module")
def extractor():
    return PhysioMAEFeatureExtractor()


def noise_recording(names, seconds, sampling_rate, seed=0, amplitude=20.0):
    """Dict of independent white-noise channels (broadband, so every band keeps signal)."""
    generator = np.random.default_rng(seed)
    num_samples = int(seconds * sampling_rate)
    return {name: amplitude * generator.standard_normal(num_samples) for name in names}


def amplitude_at(values, sampling_rate, frequency):
    """Amplitude of the spectral line at `frequency` (Hz) of a 1-D signal."""
    spectrum = np.abs(np.fft.rfft(values * np.hanning(values.size)))
    frequencies = np.fft.rfftfreq(values.size, 1.0 / sampling_rate)
    return spectrum[np.argmin(np.abs(frequencies - frequency))]


# ----------------------------------------------------------------------------- channel names
@pytest.mark.parametrize(
    "given, canonical",
    [
        ("C4-A1", "C4-M1"),
        ("c3-a2", "C3-M2"),
        ("EEG F3-A2", "F3-M2"),
        ("o2 - m1", "O2-M1"),
        ("LOC", "E1-M2"),
        ("EOG-L", "E1-M2"),
        ("chin", "Chin1-Chin2"),
        ("EMG", "Chin1-Chin2"),
        ("Abdomen", "ABD"),
        ("thorax", "CHEST"),
        ("Chest", "CHEST"),
        ("Nasal Pressure", "AIRFLOW"),
        ("flow", "AIRFLOW"),
        ("SpO2", "SaO2"),
        ("sat", "SaO2"),
        ("EKG", "ECG"),
        ("ECG II", "ECG"),
        ("Pleth", None),
        ("Position", None),
    ],
)
def test_channel_aliases_are_case_and_space_insensitive(extractor, given, canonical):
    assert extractor.map_channel_name(given) == canonical


def test_aliased_channels_fill_their_canonical_rows_and_are_reported(extractor):
    recording = noise_recording(["c4-a1", "C4-M1", "SpO2", "Thorax"], seconds=60, sampling_rate=100)
    recording["SpO2"] = np.round(95 + np.sin(np.arange(6000) / 300.0) * 3)
    features = extractor(recording, sampling_rate=100, return_tensors="np", return_report=True)
    report = features["report"]
    present = {name for name, flag in zip(extractor.channel_names, features["channel_mask"][0]) if flag}
    assert present == {"C4-M1", "SaO2", "CHEST"}
    # the exact canonical name wins over an alias given earlier; the alias is reported as a duplicate
    assert report["duplicate_channels"] == {"C4-M1": ["c4-a1"]}
    assert report["renamed"] == {"SpO2": "SaO2", "Thorax": "CHEST"}
    assert set(report["missing_channels"]) == set(extractor.channel_names) - present
    np.testing.assert_array_equal(features["modality_mask"][0], [True, False, False, True, True, False])


def test_unknown_channels_are_reported_and_logged(extractor):
    recording = noise_recording(["O2-M1", "Pleth", "Body Position"], seconds=30, sampling_rate=100)
    with CaptureLogger(feature_extraction_physiomae.logger) as captured:
        features = extractor(recording, sampling_rate=100, return_report=True)
    assert features["report"]["unknown_channels"] == ["Pleth", "Body Position"]
    assert "Pleth" in captured.out and "Body Position" in captured.out
    assert features["channel_mask"].sum().item() == 1


# ----------------------------------------------------------------------------- cleaning
def test_nonfinite_samples_are_counted_interpolated_and_mask_mostly_bad_windows(extractor):
    recording = noise_recording(["C4-M1", "ECG", "ABD"], seconds=90, sampling_rate=200, seed=1)
    ecg = recording["ECG"]
    ecg[6000 + 100 : 12000 - 100] = np.nan  # window 1: 5,800 of 6,000 samples missing
    ecg[[10, 500, 15000]] = [np.inf, -np.inf, np.nan]  # a few scattered bad samples in windows 0 and 2
    features = extractor(recording, sampling_rate=200, return_tensors="np", return_report=True)
    report = features["report"]
    assert report["nonfinite_samples"] == {"C4-M1": 0, "ABD": 0, "ECG": 5800 + 3}
    assert np.isfinite(features["input_values"]).all()
    ecg_index = extractor.channel_names.index("ECG")
    np.testing.assert_array_equal(features["channel_mask"][:, ecg_index], [True, False, True])
    assert not features["input_values"][1, ecg_index].any()  # absent in that window -> zeros
    np.testing.assert_array_equal(features["modality_mask"][:, -1], [True, False, True])
    assert report["invalid_channel_windows"] == {"ECG": 1}
    json.dumps(report)  # the builder writes it into build_report.json


def test_flat_and_all_nonfinite_channels_are_absent_and_reported(extractor):
    recording = noise_recording(["O2-M1", "E1-M2", "Chin1-Chin2", "ECG", "ABD"], seconds=60, sampling_rate=100)
    recording["E1-M2"] = np.full(6000, 12.5)  # constant
    recording["Chin1-Chin2"] = np.random.default_rng(3).integers(-1, 2, 6000).astype(float)  # 3 ADC levels
    recording["ECG"] = np.full(6000, np.nan)
    recording["ABD"][3000:] = 7.0  # detached for the second window only
    features = extractor(recording, sampling_rate=100, return_tensors="np", return_report=True)
    report = features["report"]
    assert set(report["flat_channels"]) == {"E1-M2", "Chin1-Chin2", "ECG"}
    assert "standard deviation" in report["flat_channels"]["E1-M2"]
    assert "distinct values" in report["flat_channels"]["Chin1-Chin2"]
    assert report["flat_channels"]["ECG"] == "no finite sample"
    assert report["flat_windows"] == {"ABD": 1}
    index = {name: extractor.channel_names.index(name) for name in recording}
    mask = features["channel_mask"]
    assert mask[:, index["O2-M1"]].all()
    assert not mask[:, [index["E1-M2"], index["Chin1-Chin2"], index["ECG"]]].any()
    np.testing.assert_array_equal(mask[:, index["ABD"]], [True, False])
    # eeg present, eog/emg/ecg absent, resp only in the first window, spo2 never given
    np.testing.assert_array_equal(
        features["modality_mask"], [[True, False, False, True, False, False], [True, False, False, False, False, False]]
    )


def test_bad_input_gives_clear_errors(extractor):
    with pytest.raises(ValueError, match="shorter than one 30-s window"):
        extractor(noise_recording(["C4-M1"], seconds=29.9, sampling_rate=200), sampling_rate=200)
    with pytest.raises(ValueError, match="same length"):
        extractor({"C4-M1": np.zeros(6000), "ECG": np.zeros(5999)}, sampling_rate=100)
    with pytest.raises(ValueError, match=r"recording.T"):
        extractor(np.zeros((6000, 2)), sampling_rate=100, channel_names=["C4-M1", "ECG"])
    with pytest.raises(ValueError, match="sampling_rate"):
        extractor.preprocess_record(np.zeros((1, 6000)), ["C4-M1"], sampling_rate=0)
    with pytest.raises(ValueError, match="filter_bands"):
        PhysioMAEFeatureExtractor(filter_bands={"eeg": [0.1, 70.0]})


# ----------------------------------------------------------------------------- filtering / resampling / scaling
@pytest.mark.parametrize("sampling_rate", [200, 256, 128, 512])
def test_resampling_gives_100_hz_and_keeps_a_10_hz_sine(extractor, sampling_rate):
    seconds = 90
    time = np.arange(seconds * sampling_rate) / sampling_rate
    record = extractor.preprocess_record(
        np.sin(2 * np.pi * 10.0 * time)[None, :] * 50.0, ["C4-M1"], sampling_rate=sampling_rate
    )
    assert record.report["resample_factors"][0] / record.report["resample_factors"][1] == pytest.approx(100 / sampling_rate)
    assert record.signals.shape == (13, seconds * 100)
    channel = record.signals[extractor.channel_names.index("C4-M1")]
    frequencies = np.fft.rfftfreq(channel.size, 1 / 100)
    assert frequencies[np.argmax(np.abs(np.fft.rfft(channel)))] == pytest.approx(10.0, abs=0.02)


def test_band_pass_is_per_modality(extractor):
    seconds, sampling_rate = 120, 200
    time = np.arange(seconds * sampling_rate) / sampling_rate
    two_tones = 30.0 * (np.sin(2 * np.pi * 10.0 * time) + np.sin(2 * np.pi * 40.0 * time))
    record = extractor.preprocess_record(np.stack([two_tones, two_tones]), ["C4-M1", "ECG"], sampling_rate)
    ratios = {}
    for name in ("C4-M1", "ECG"):
        channel = record.signals[extractor.channel_names.index(name)]
        ratios[name] = amplitude_at(channel, 100, 40.0) / amplitude_at(channel, 100, 10.0)
    # EEG 0.1-30 Hz removes most of the 40-Hz tone (order-4 Butterworth run twice: about -20 dB)
    assert ratios["C4-M1"] < 0.15
    # ECG 0.1-45 Hz keeps most of it
    assert ratios["ECG"] > 0.5


def test_robust_scaling_is_per_record_so_window_amplitudes_keep_their_ratio(extractor):
    generator = np.random.default_rng(5)
    sampling_rate, window = 200, 30 * 200
    gains = np.repeat([1.0, 4.0, 1.0, 4.0], window)
    noise = generator.standard_normal(gains.size) * gains * 25.0
    features = extractor({"C4-M1": noise}, sampling_rate=sampling_rate, return_tensors="np")
    channel = features["input_values"][:, extractor.channel_names.index("C4-M1")]
    window_std = channel.std(axis=1)
    assert window_std[1] / window_std[0] == pytest.approx(4.0, rel=0.1)
    assert window_std[3] / window_std[2] == pytest.approx(4.0, rel=0.1)
    # and a global rescaling of the input changes nothing (units do not matter)
    rescaled = extractor({"C4-M1": noise * 1000.0}, sampling_rate=sampling_rate, return_tensors="np")
    np.testing.assert_allclose(rescaled["input_values"], features["input_values"], atol=1e-4)


def test_windows_start_at_the_record_start_and_the_partial_tail_is_dropped(extractor):
    recording = noise_recording(["C4-M1", "ECG"], seconds=75, sampling_rate=256)
    features = extractor(recording, sampling_rate=256, return_tensors="np", return_report=True)
    assert features["input_values"].shape == (2, 13, 3000)
    assert features["report"]["num_windows"] == 2
    assert features["report"]["dropped_trailing_seconds"] == pytest.approx(15.0)
    record = extractor.preprocess_record(np.stack(list(recording.values())), list(recording), 256)
    windows, channel_mask = extractor.cut_windows(record)
    np.testing.assert_array_equal(windows[1], record.signals[:, 3000:6000])
    np.testing.assert_array_equal(channel_mask, features["channel_mask"])


def test_threads_give_the_same_result(extractor):
    recording = noise_recording(["C4-M1", "O2-M1", "ECG", "ABD", "LOC"], seconds=60, sampling_rate=200, seed=7)
    recording["ABD"][:100] = np.nan
    single = extractor(recording, sampling_rate=200, return_tensors="np", return_report=True)
    threaded = extractor(recording, sampling_rate=200, return_tensors="np", return_report=True, num_threads=3)
    for key in ("input_values", "channel_mask", "modality_mask"):
        np.testing.assert_array_equal(threaded[key], single[key])
    assert json.dumps(threaded["report"]) == json.dumps(single["report"])


# ----------------------------------------------------------------------------- serialisation
def test_save_and_load_round_trip_keeps_settings_and_modality_order(tmp_path):
    modalities = {"resp": ["ABD", "AIRFLOW"], "eeg": ["C4-M1"], "ecg": ["ECG"]}  # deliberately not sorted
    extractor = PhysioMAEFeatureExtractor(
        modalities=modalities, filter_bands={"eeg": [0.3, 35.0], "resp": [None, 2.0]}, clip_value=8.0
    )
    extractor.save_pretrained(tmp_path)
    assert (tmp_path / "preprocessor_config.json").is_file()
    loaded = PhysioMAEFeatureExtractor.from_pretrained(tmp_path)
    assert loaded.to_dict() == extractor.to_dict()
    assert loaded.modality_names == ["resp", "eeg", "ecg"]
    assert loaded.channel_names == ["ABD", "AIRFLOW", "C4-M1", "ECG"]
    recording = noise_recording(["ECG", "abdomen", "C4-A1"], seconds=60, sampling_rate=128)
    np.testing.assert_array_equal(
        loaded(recording, sampling_rate=128)["input_values"].numpy(),
        extractor(recording, sampling_rate=128)["input_values"].numpy(),
    )


def test_from_config_matches_the_model_channels():
    config = PhysioMAEConfig()
    extractor = PhysioMAEFeatureExtractor.from_config(config)
    assert extractor.channel_names == config.channel_names
    assert extractor.window_length == config.window_length
    assert {name: (s.start, s.stop) for name, s in extractor.modality_channel_slices.items()} == {
        name: (s.start, s.stop) for name, s in config.modality_channel_slices.items()
    }


# ----------------------------------------------------------------------------- real PhysioNet 2018 segments
def read_segment(segments_dir, name):
    record = wfdb.rdrecord(str(segments_dir / name / name))
    return record.p_signal.T, record.sig_name, record.fs


@pytest.mark.parametrize("name", ["seg-0009", "seg-0047", "seg-0058", "seg-1209"])
def test_real_segments_give_seven_present_channels(extractor, real_segments_dir, name):
    signals, channel_names, sampling_rate = read_segment(real_segments_dir, name)
    assert channel_names == SEGMENT_CHANNELS and sampling_rate == 200
    features = extractor(signals, sampling_rate=sampling_rate, channel_names=channel_names, return_report=True)
    assert features["input_values"].shape == (2, 13, 3000)
    assert features["input_values"].dtype == torch.float32 and features["channel_mask"].dtype == torch.bool
    assert torch.isfinite(features["input_values"]).all()
    expected_channels = torch.tensor([name in SEGMENT_CHANNELS for name in extractor.channel_names])
    assert torch.equal(features["channel_mask"], expected_channels.expand(2, -1))
    # eeg (through O2-M1 only), eog, emg, resp, ecg present; spo2 absent
    assert torch.equal(features["modality_mask"], torch.tensor([[True, True, True, True, False, True]] * 2))
    report = features["report"]
    assert report["flat_channels"] == {} and report["unknown_channels"] == [] and report["renamed"] == {}
    assert set(report["missing_channels"]) == set(extractor.channel_names) - set(SEGMENT_CHANNELS)
    # absent channels are zeros; present ones are scaled to about unit robust spread
    absent = ~expected_channels
    assert not features["input_values"][:, absent].any()
    for index in torch.nonzero(expected_channels).flatten().tolist():
        spread = np.subtract(*np.percentile(features["input_values"][:, index].numpy(), [75, 25]))
        assert 0.5 < spread < 2.0


@pytest.mark.parametrize(
    "name, flat_channel, modality_mask",
    [
        # AIRFLOW sits on 4 ADC levels (std 0.44 uV; the median AIRFLOW std over the 500 segments is 35 uV):
        # resp stays present through ABD and CHEST
        ("seg-0877", "AIRFLOW", [True, True, True, True, False, True]),
        # chin EMG sits on 5 ADC levels: the only emg channel, so emg is absent
        ("seg-2074", "Chin1-Chin2", [True, True, False, True, False, True]),
    ],
)
def test_real_segment_with_a_stuck_channel(extractor, real_segments_dir, name, flat_channel, modality_mask):
    signals, channel_names, sampling_rate = read_segment(real_segments_dir, name)
    raw = signals[channel_names.index(flat_channel)]
    assert np.unique(raw).size < extractor.min_distinct_values  # the premise, checked on the raw file
    features = extractor(signals, sampling_rate=sampling_rate, channel_names=channel_names, return_report=True)
    assert list(features["report"]["flat_channels"]) == [flat_channel]
    present = [name for name, flag in zip(extractor.channel_names, features["channel_mask"][0]) if flag]
    assert present == [channel for channel in extractor.channel_names if channel in SEGMENT_CHANNELS and channel != flat_channel]
    assert torch.equal(features["modality_mask"], torch.tensor([modality_mask] * 2))


# ----------------------------------------------------------------------------- per-channel rates and units
def test_per_channel_rates_reproduce_the_single_rate_path_exactly(extractor):
    """A dict of rates, all equal, goes through the per-rate grouping and gives the scalar path's numbers."""
    recording = noise_recording(["C4-M1", "E1-M2", "Chin1-Chin2", "ABD", "SaO2", "ECG", "Pleth"], 90, 256, seed=3)
    recording["SaO2"] = 95 + np.round(recording["SaO2"] / 20)
    single = extractor(recording, 256, return_tensors="np", return_report=True)
    grouped = extractor(recording, {name: 256 for name in recording}, return_tensors="np", return_report=True)
    for key in ("input_values", "channel_mask", "modality_mask"):
        assert np.array_equal(grouped[key], single[key]), key
    for key in ("unknown_channels", "renamed", "missing_channels", "nonfinite_samples", "flat_channels", "scaling",
                "absent_channels", "resample_factors", "num_samples"):
        assert grouped["report"][key] == single["report"][key], key
    assert grouped["report"]["input_sampling_rates"] == {name: 256.0 for name in recording}


def test_each_channel_is_processed_from_its_own_rate(extractor):
    """With mixed rates, every channel's output is exactly what it gives alone at its rate."""
    generator = np.random.default_rng(5)
    rates = {"C4-M1": 256, "E1-M2": 200, "SaO2": 1, "ECG": 512}
    recording = {name: 20 * generator.standard_normal(60 * rate) for name, rate in rates.items()}
    recording["SaO2"] = 95 + np.round(recording["SaO2"] / 20)
    mixed = extractor(recording, rates, return_tensors="np", return_report=True)
    for name, rate in rates.items():
        alone = extractor({name: recording[name]}, rate, return_tensors="np")
        index = extractor.channel_names.index(name)
        assert np.array_equal(mixed["input_values"][:, index], alone["input_values"][:, index]), name
    assert mixed["report"]["resample_factors"] == {"1": [100, 1], "200": [1, 2], "256": [25, 64], "512": [25, 128]}
    assert mixed["report"]["input_sampling_rate"] == 512
