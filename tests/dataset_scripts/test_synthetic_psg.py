"""Tests of the challenge-layout writer (challenge_io) and the synthetic PSG cohort (synthetic_psg).

Fidelity is checked against the real challenge files in ../shared/data (read-only); the coupling
tests check, on the written signals, that the hidden state really shows in every modality.
"""

import filecmp
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
import scipy.signal
import wfdb

from dataset_scripts import challenge_io, synthetic_psg

FS = synthetic_psg.SAMPLING_RATE
EPOCH = synthetic_psg.EPOCH_SECONDS * FS


# ------------------------------------------------------------------------------------ helpers


def read_notes(path_without_extension):
    """(sample, aux_note) pairs as wfdb.rdann returns them (notes at sample 0 are dropped by wfdb)."""
    annotation = wfdb.rdann(str(path_without_extension), "arousal")
    return list(zip(annotation.sample.tolist(), annotation.aux_note)), annotation


def paired_events(notes):
    """[(start, end, name)] from '(name' ... 'name)' notes."""
    opened, events = {}, []
    for sample, text in notes:
        if text.startswith("("):
            opened[text[1:]] = sample
        elif text.endswith(")"):
            events.append((opened.pop(text[:-1]), sample, text[:-1]))
    return events


def stage_per_sample_from_masks(path):
    """Stage index per sample (0..4 = W N1 N2 N3 R, 5 = undefined) and the arousal mask of a -arousal.mat."""
    names = ["wake", "nonrem1", "nonrem2", "nonrem3", "rem", "undefined"]
    with h5py.File(path, "r") as file:
        masks = np.stack([file["data/sleep_stages"][name][0] for name in names])  # (6, samples)
        arousals = file["data/arousals"][:, 0]
    assert (masks.sum(axis=0) == 1).all(), "exactly one stage mask must be set at every sample"
    return masks.argmax(axis=0), arousals


def band_power(epochs, low, high):
    """Welch power of (epochs, samples) in [low, high] Hz."""
    frequencies, power = scipy.signal.welch(epochs, fs=FS, nperseg=512, axis=-1)
    return power[:, (frequencies >= low) & (frequencies <= high)].sum(axis=-1)


def heart_rate_from_ecg(ecg):
    """(beat sample, instantaneous heart rate bpm) from R peaks of the written ECG."""
    peaks, _ = scipy.signal.find_peaks(ecg, height=0.5 * np.percentile(ecg, 99.5), distance=int(0.33 * FS))
    return peaks[1:], 60.0 * FS / np.diff(peaks)


# ------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def small_cohort(tmp_path_factory):
    """2 training + 1 test records of 6 minutes."""
    out = tmp_path_factory.mktemp("cohort")
    summary = synthetic_psg.write_cohort(out, n_train=2, n_test=1, hours=0.1, seed=11)
    return out, summary


@pytest.fixture(scope="module")
def written_record(tmp_path_factory):
    """A 20-minute labelled record, generated in memory and written."""
    folder = tmp_path_factory.mktemp("record")
    record = synthetic_psg.generate_record(np.random.default_rng(5), "tr90-0042", hours=1 / 3, labelled=True)
    paths = synthetic_psg.write_synthetic_record(record, folder)
    return record, paths


@pytest.fixture(scope="module")
def night_record():
    """A 1.5-hour record (time-compressed cycles: every stage present), for the coupling tests."""
    return synthetic_psg.generate_record(np.random.default_rng(2018), "tr90-0001", hours=1.5, age=45, sex="M")


# ------------------------------------------------------------------------------------ layout


def test_cohort_layout_records_and_age_sex(small_cohort):
    out, summary = small_cohort
    assert summary.training_records == ["tr90-0001", "tr90-0002"] and summary.test_records == ["te90-0001"]
    for name in summary.training_records:
        assert sorted(path.name for path in (out / "training" / name).iterdir()) == sorted(
            [f"{name}.hea", f"{name}.mat", f"{name}.arousal", f"{name}-arousal.mat"]
        )
    assert sorted(path.name for path in (out / "test" / "te90-0001").iterdir()) == ["te90-0001.hea", "te90-0001.mat"]
    assert (out / "training" / "RECORDS").read_bytes() == b"tr90-0001/\ntr90-0002/\n"
    assert (out / "test" / "RECORDS").read_bytes() == b"te90-0001/\n"
    lines = (out / "age-sex.csv").read_bytes().decode().split("\n")
    assert lines[0] == "Record,Sex,Age" and lines[-1] == ""
    rows = [line.split(",") for line in lines[1:-1]]
    assert [row[0] for row in rows] == ["te90-0001", "tr90-0001", "tr90-0002"]
    assert all(row[1] in ("F", "M") and 20 <= int(row[2]) <= 90 for row in rows)
    assert not list(out.rglob("*.tmp")) and not list(out.rglob(".wrann-*")), "temporary files left behind"


def test_same_seed_gives_identical_files_and_records_do_not_depend_on_cohort_size(small_cohort, tmp_path):
    out, _ = small_cohort
    again = synthetic_psg.write_cohort(tmp_path / "again", n_train=2, n_test=1, hours=0.1, seed=11).out_dir
    for path in sorted(out.rglob("*")):
        if path.is_file():
            assert filecmp.cmp(path, again / path.relative_to(out), shallow=False), f"{path.name} differs"
    smaller = synthetic_psg.write_cohort(tmp_path / "smaller", n_train=1, n_test=0, hours=0.1, seed=11).out_dir
    for suffix in (".mat", ".arousal", "-arousal.mat"):
        relative = Path("training/tr90-0001") / f"tr90-0001{suffix}"
        assert filecmp.cmp(out / relative, smaller / relative, shallow=False)
    other_seed = synthetic_psg.write_cohort(tmp_path / "other", n_train=1, n_test=0, hours=0.1, seed=12).out_dir
    relative = Path("training/tr90-0001/tr90-0001.mat")
    assert not filecmp.cmp(out / relative, other_seed / relative, shallow=False)


def test_header_is_crlf_and_laid_out_like_the_real_header(written_record, real_labels_dir):
    record, paths = written_record
    raw = paths.header.read_bytes()
    assert raw.endswith(b"\r\n") and raw.count(b"\n") == raw.count(b"\r\n") == 14
    real_lines = (real_labels_dir / "tr03-0005.hea").read_bytes().decode().split("\r\n")[:-1]
    ours = raw.decode().split("\r\n")[:-1]
    real_record_line, our_record_line = real_lines[0].split(), ours[0].split()
    assert our_record_line[1:3] == real_record_line[1:3] == ["13", "200"]
    assert our_record_line[0] == record.name and int(our_record_line[3]) == record.number_of_samples
    checksums = challenge_io.wfdb_checksums(record.digital)
    for channel, (real_line, our_line) in enumerate(zip(real_lines[1:], ours[1:])):
        real_fields, our_fields = real_line.split(), our_line.split()
        assert len(our_fields) == len(real_fields) == 9
        assert our_fields[0] == f"{record.name}.mat" and real_fields[0] == "tr03-0005.mat"
        # format, gain(baseline)/units, ADC resolution, ADC zero, block size and name as in the real file
        same_fields = (1, 2, 3, 4, 7, 8)
        assert [our_fields[index] for index in same_fields] == [real_fields[index] for index in same_fields]
        assert int(our_fields[5]) == record.digital[0, channel] and int(our_fields[6]) == checksums[channel]


def test_signal_file_is_matlab_v4_and_wfdb_reads_it_bit_exactly(written_record):
    record, paths = written_record
    header = paths.signals.read_bytes()[:24]
    assert header == challenge_io.matlab_v4_header(record.number_of_samples, 13)
    assert paths.signals.stat().st_size == 24 + record.digital.size * 2
    matlab = scipy.io.loadmat(paths.signals)
    assert matlab["val"].dtype == np.int16 and np.array_equal(matlab["val"], record.digital.T)
    digital = wfdb.rdrecord(str(paths.signals.with_suffix("")), physical=False, return_res=16)
    assert np.array_equal(digital.d_signal, record.digital) and digital.fmt == ["16"] * 13
    assert digital.byte_offset == [24] * 13 and digital.sig_name == list(synthetic_psg.CHANNEL_NAMES)
    physical = wfdb.rdrecord(str(paths.signals.with_suffix("")))
    for channel, name in enumerate(record.channel_names):
        resolution = 1.0 / record.gains[channel]
        assert np.abs(physical.p_signal[:, channel] - record.physical(name)).max() <= resolution
    assert 90.0 < np.median(physical.p_signal[:, 11]) < 100.0, "SaO2 must read back in %"


def test_writer_reproduces_real_challenge_files_byte_for_byte(real_segments_dir, real_labels_dir, tmp_path):
    segment = real_segments_dir / "seg-0009" / "seg-0009"
    real = wfdb.rdrecord(str(segment), physical=False, return_res=16)
    paths = challenge_io.write_record(
        tmp_path, "seg-0009", real.d_signal.astype(np.int16), real.sig_name, real.units, real.adc_gain, real.baseline
    )
    assert filecmp.cmp(paths.header, segment.with_suffix(".hea"), shallow=False)
    assert filecmp.cmp(paths.signals, segment.with_suffix(".mat"), shallow=False)
    notes, _ = read_notes(real_labels_dir / "tr03-0005")
    stage_notes = [(sample, text) for sample, text in notes if text in challenge_io.STAGE_SUBTYPES]
    written = challenge_io.write_annotations(tmp_path, "tr03-0005", stage_notes, paired_events(notes))
    assert filecmp.cmp(written, real_labels_dir / "tr03-0005.arousal", shallow=False)


def test_real_mask_convention_is_reproduced_from_the_real_notes(real_labels_dir):
    notes, _ = read_notes(real_labels_dir / "tr03-0005")
    stage_index, arousals = stage_per_sample_from_masks(real_labels_dir / "tr03-0005-arousal.mat")
    stage_notes = [(sample, text) for sample, text in notes if text in challenge_io.STAGE_SUBTYPES]
    masks = challenge_io.stage_masks_from_notes(stage_notes, stage_index.size)
    ours = np.stack([masks[name] for name in ["wake", "nonrem1", "nonrem2", "nonrem3", "rem", "undefined"]]).argmax(0)
    assert np.array_equal(ours, stage_index)
    assert np.array_equal(challenge_io.arousal_mask_from_labels(paired_events(notes), masks), arousals)


# ------------------------------------------------------------------------------------ labels


def test_annotations_read_back_except_the_sample_zero_note(written_record, real_labels_dir):
    record, paths = written_record
    assert record.stage_notes[0] == (0, "W"), "records start in wake with a note at sample 0"
    notes, annotation = read_notes(paths.arousal.with_suffix(""))
    expected = sorted(
        [(sample, text) for sample, text in record.stage_notes]
        + [(start, f"({name}") for start, _, name in record.events]
        + [(end, f"{name})") for _, end, name in record.events],
        key=lambda note: note[0],
    )
    assert (0, "W") not in notes, "wfdb.rdann is expected to drop the note at sample 0 (known trap)"
    assert notes == [note for note in expected if note[0] != 0]
    assert set(annotation.symbol) == {'"'}
    # ... but the file holds it: right after the "## time resolution" header comes a note (code 22, time
    # step 0: bytes 00 58) with subtype 5 (05 f4) and aux text "W" (01 fc 57 00), as in the real files.
    assert paths.arousal.read_bytes()[36:44] == b"\x00\x58\x05\xf4\x01\xfcW\x00"
    _, real = read_notes(real_labels_dir / "tr03-0005")
    real_codes = {text: (subtype, chan) for text, subtype, chan in zip(real.aux_note, real.subtype, real.chan)}
    our_codes = {text: (subtype, chan)
                 for text, subtype, chan in zip(annotation.aux_note, annotation.subtype, annotation.chan)}
    shared = set(real_codes) & set(our_codes)
    assert len(shared) >= 4 and all(real_codes[text] == our_codes[text] for text in shared)
    names = {name for _, _, name in record.events}
    assert names <= set(challenge_io.EVENT_NAMES) and any(name.startswith("arousal_") for name in names)


def test_masks_agree_with_the_notes(written_record):
    record, paths = written_record
    stage_index, arousals = stage_per_sample_from_masks(paths.arousal_mat)
    for position, (sample, stage) in enumerate(record.stage_notes):
        is_last = position + 1 == len(record.stage_notes)
        end = record.number_of_samples if is_last else record.stage_notes[position + 1][0]
        # real convention: a stage note at s labels samples s-1 ... (next note)-2; the last sample is undefined
        span = stage_index[max(sample - 1, 0) : end - 1]
        assert (span == challenge_io.STAGE_NAMES.index(stage)).all(), f"stage {stage} at {sample}"
    assert stage_index[-1] == 5
    hypnogram_per_sample = np.repeat(record.hidden.hypnogram, EPOCH)[: record.number_of_samples]
    assert np.mean(stage_index[:-1] == hypnogram_per_sample[:-1]) > 0.999
    assert set(np.unique(arousals)) <= {-1.0, 0.0, 1.0}
    assert (arousals[stage_index == 0] == -1).all(), "wake is not scored"
    for start, end, name in record.events:
        if name.startswith("resp_"):
            assert (arousals[start:end] == -1).all(), f"{name} must be unscored"
    target = [event for event in record.events if event[2].startswith("arousal_")]
    assert target and all((arousals[start:end] != 0).all() for start, end, _ in target)
    assert (arousals == 1).any() and (arousals == 0).any()


def test_hdf5_file_is_structured_like_the_real_one(written_record, real_labels_dir):
    _, paths = written_record

    def describe(path):
        items = {}
        with h5py.File(path, "r") as file:
            file.visititems(lambda name, item: items.__setitem__(name, (
                type(item).__name__, getattr(item, "dtype", None), getattr(item, "ndim", None),
                getattr(item, "compression", None),
                {key: str(value) if key != "MATLAB_fields" else [bytes(b"".join(field)) for field in value]
                 for key, value in item.attrs.items()},
            )))
            shapes = {name: file[name].shape for name in ("data/arousals", "data/sleep_stages/wake")}
            userblock = file.userblock_size
        return items, shapes, userblock

    real_items, real_shapes, real_userblock = describe(real_labels_dir / "tr03-0005-arousal.mat")
    our_items, our_shapes, our_userblock = describe(paths.arousal_mat)
    assert our_items == real_items and our_userblock == real_userblock == 512
    assert our_shapes["data/arousals"][1] == 1 and our_shapes["data/sleep_stages/wake"][0] == 1
    assert paths.arousal_mat.read_bytes()[:19] == (real_labels_dir / "tr03-0005-arousal.mat").read_bytes()[:19]


def test_write_record_checks_its_input_and_converts_physical_values(tmp_path):
    with pytest.raises(ValueError, match="bad-0001.*signals must be"):
        challenge_io.write_record(tmp_path, "bad-0001", np.zeros((10, 3), np.int16), ["a", "b"], ["uV"] * 2,
                                  [1.0] * 2, [0] * 2)
    with pytest.raises(ValueError, match="gains has 1 entries"):
        challenge_io.write_record(tmp_path, "bad-0002", np.zeros((10, 2), np.int16), ["a", "b"], ["uV"] * 2,
                                  [1.0], [0] * 2)
    with pytest.raises(ValueError, match="unknown stage 'N4'"):
        challenge_io.write_record(tmp_path, "bad-0003", np.zeros((10, 1), np.int16), ["a"], ["uV"], [1.0], [0],
                                  stage_notes=[(0, "N4")])
    physical = np.array([[1.2, 96.0], [-3.7, np.nan], [1e6, 0.0]])
    paths = challenge_io.write_record(tmp_path, "ok-0001", physical, ["EEG", "SaO2"], ["uV", "%"], [1.0, 655.35],
                                      [0, -32768])
    digital = wfdb.rdrecord(str(paths.header.with_suffix("")), physical=False, return_res=16).d_signal
    assert digital.tolist() == [[1, 30146], [-4, -32768], [32767, -32767]]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["ok-0001.hea", "ok-0001.mat"]


# ------------------------------------------------------------------------------------ physiology


def test_stage_shows_in_eeg_eog_and_emg(night_record):
    record = night_record
    epochs_count = record.number_of_samples // EPOCH
    hypnogram = record.hidden.hypnogram[:epochs_count]
    assert set(hypnogram.tolist()) == {0, 1, 2, 3, 4}, "a 1.5-h record contains every stage"

    def epochs(channel):
        return record.physical(channel)[: epochs_count * EPOCH].reshape(epochs_count, EPOCH)  # (epochs, samples)

    def median_by_stage(values):
        return np.array([np.median(values[hypnogram == stage]) for stage in range(5)])

    wake, n1, n2, n3, rem = range(5)
    delta = median_by_stage(band_power(epochs("C3-M2"), 0.5, 2.0))
    assert delta[n3] > 4 * delta[wake] and delta[n3] > 2 * delta[n2] > 2 * delta[rem]
    eyes_closed_wake = (hypnogram == wake) & record.hidden.eyes_closed[:epochs_count]
    assert eyes_closed_wake.any(), "this record has eyes-closed wake epochs"
    alpha = band_power(epochs("O1-M2"), 8.0, 12.0)
    assert np.median(alpha[eyes_closed_wake]) > 5 * np.median(alpha[hypnogram == n2])
    sigma = median_by_stage(band_power(epochs("C3-M2"), 12.0, 14.0))
    assert sigma[n2] > 5 * sigma[rem]
    emg = median_by_stage(epochs("Chin1-Chin2").std(axis=-1))
    assert emg[rem] < 0.5 * emg[wake] and emg[wake] > emg[n2] > emg[rem]
    # rapid eye movements: steep deflections of the 50-ms-smoothed EOG, frequent in REM only
    smoothed = scipy.signal.lfilter(np.ones(10) / 10, 1.0, epochs("E1-M2"), axis=-1)
    eye_speed = median_by_stage(np.percentile(np.abs(np.diff(smoothed, axis=-1)), 99, axis=-1))
    assert eye_speed[rem] > 1.5 * eye_speed[n2]
    slow_eye = median_by_stage(band_power(epochs("E1-M2"), 0.1, 0.5))
    assert slow_eye[n1] > 3 * slow_eye[n2]


def test_arousals_raise_eeg_frequency_emg_and_heart_rate_together(night_record):
    record = night_record
    arousals = [event for event in record.hidden.arousals if event[1] - event[0] >= 4 * FS and event[0] > 20 * FS]
    assert len(arousals) >= 5
    aroused = np.zeros(record.number_of_samples, bool)
    for start, end, _ in record.hidden.arousals:
        aroused[start:end] = True
    beats, heart_rate = heart_rate_from_ecg(record.physical("ECG"))
    expected_beats = record.hidden.heart_rate_per_second.mean() * record.number_of_samples / FS / 60
    assert abs(beats.size + 1 - expected_beats) < 0.02 * expected_beats, "R peaks found where they were placed"
    asleep = np.repeat(record.hidden.hypnogram, EPOCH)[beats] > 0
    assert heart_rate[aroused[beats]].mean() > heart_rate[asleep & ~aroused[beats]].mean() + 5.0
    eeg, emg = record.physical("C3-M2"), record.physical("Chin1-Chin2")

    def fast_to_slow(segment):
        frequencies, power = scipy.signal.welch(segment, fs=FS, nperseg=256)
        fast = power[(frequencies >= 15) & (frequencies <= 30)].sum()
        return fast / power[(frequencies >= 0.5) & (frequencies <= 4)].sum()

    during = [(fast_to_slow(eeg[start:end]), emg[start:end].std()) for start, end, _ in arousals]
    before = [(fast_to_slow(eeg[start - 15 * FS : start - 3 * FS]), emg[start - 15 * FS : start - 3 * FS].std())
              for start, end, _ in arousals]
    during, before = np.array(during), np.array(before)
    assert np.median(during[:, 0] / before[:, 0]) > 3.0
    assert np.median(during[:, 1] / before[:, 1]) > 2.0


def test_apneas_flatten_airflow_and_are_followed_by_desaturation(night_record):
    record = night_record
    airflow, spo2 = record.physical("AIRFLOW"), record.physical("SaO2")
    apneas = [event for event in record.hidden.resp_events
              if "apnea" in event[2] and event[0] > 60 * FS and event[1] + 40 * FS < record.number_of_samples]
    assert len(apneas) >= 3
    for start, end, _ in apneas:
        assert airflow[start + 2 * FS : end - 2 * FS].std() < 0.3 * airflow[start - 60 * FS : start - 20 * FS].std()
        before = spo2[start - 30 * FS : start].max()  # max: a previous event may still be recovering
        nadir_time = start + np.argmin(spo2[start : end + 40 * FS])
        assert spo2[nadir_time] < before - 2.0, "apnea followed by a desaturation"
        assert nadir_time > end, "the desaturation nadir comes after the apnea (circulation delay)"


def test_age_lowers_deep_sleep_and_heart_rate_variability():
    young = synthetic_psg.generate_record(np.random.default_rng(7), "tr90-0001", hours=2.0, age=25, sex="F")
    old = synthetic_psg.generate_record(np.random.default_rng(7), "tr90-0001", hours=2.0, age=85, sex="F")
    assert (old.hidden.hypnogram == 3).sum() < 0.6 * (young.hidden.hypnogram == 3).sum()
    assert (old.hidden.hypnogram == 0).sum() > (young.hidden.hypnogram == 0).sum()
    assert len(old.hidden.arousals) > len(young.hidden.arousals)

    def rr_variability(record):
        beats, heart_rate = heart_rate_from_ecg(record.physical("ECG"))
        rr_seconds = 60.0 / heart_rate
        asleep_calm = np.repeat(record.hidden.hypnogram, EPOCH)[beats] == 2
        return np.abs(np.diff(rr_seconds))[asleep_calm[1:]].mean()  # successive differences in N2

    assert rr_variability(old) < 0.8 * rr_variability(young)


def test_stage_features_change_gradually_and_subjects_and_artefacts_vary(night_record):
    record = night_record
    weights = record.hidden.stage_weights_per_second  # (5, seconds)
    assert weights.shape == (5, record.number_of_samples // FS)
    np.testing.assert_allclose(weights.sum(axis=0), 1.0, atol=1e-9)
    stage_per_second = np.repeat(record.hidden.hypnogram, synthetic_psg.EPOCH_SECONDS)[: weights.shape[1]]
    changes = np.flatnonzero(np.diff(stage_per_second)) + 1
    assert changes.size >= 10
    for second in changes:  # half-way at the scored boundary, not a step
        new_stage = stage_per_second[second]
        assert 0.2 < weights[new_stage, second] < 0.8
    # subjects differ (profiles drawn per record), and the same seed gives the same subject
    other = synthetic_psg.generate_record(np.random.default_rng(2019), "tr90-0002", hours=0.05, age=45, sex="M")
    again = synthetic_psg.generate_record(np.random.default_rng(2018), "tr90-0001", hours=1.5, age=45, sex="M")
    assert other.hidden.subject != record.hidden.subject and again.hidden.subject == record.hidden.subject
    # body movements (more in wake) show as bursts of chin EMG
    movements = [(start, end) for start, end, _ in record.hidden.movements if end - start >= 2 * FS]
    assert len(movements) >= 3
    emg = record.physical("Chin1-Chin2")
    moving = np.zeros(record.number_of_samples, bool)
    for start, end, _ in record.hidden.movements:
        moving[max(start - 5 * FS, 0) : end + 5 * FS] = True
    ratios = []
    for start, end in movements:
        before = slice(max(start - 30 * FS, 0), max(start - 5 * FS, 0))
        calm = emg[before][~moving[before]]  # the 25 s before, without other movements
        if calm.size > 5 * FS:
            ratios.append(emg[start:end].std() / calm.std())
    assert ratios and np.median(ratios) > 2.0


def band_power_staging_balanced_accuracy(cohort_dir, test_records):
    """Balanced accuracy of the band-power baseline (physiomae.evaluation.probing: log band powers per channel,
    StandardScaler + logistic regression, C by grouped CV) staging `test_records` after fitting on the others.
    Windows come from the dataset builder's per-record path (read, label, preprocess, cut)."""
    from dataset_scripts import physionet2018
    from physiomae.evaluation import probing

    extractor = physionet2018.default_feature_extractor()
    layout = extractor.channel_layout
    features, stages, records = [], [], []
    for record in physionet2018.find_records(cohort_dir).records:
        rows = list(physionet2018.process_record(record, extractor, layout, age=-1.0, sex=-1).rows)
        windows = np.stack([row["input_values"] for row in rows]).astype(np.float32)  # (windows, 13, 3000)
        features.append(probing.band_power_features(windows))
        stages += [row["sleep_stage"] for row in rows]
        records += [record.name] * len(rows)
    features, stages, records = np.concatenate(features), np.asarray(stages), np.asarray(records, dtype=object)
    is_test = np.isin(records, test_records)
    train, test = ~is_test & (stages >= 0), is_test & (stages >= 0)
    assert set(stages[test]) == {0, 1, 2, 3, 4}, "every stage is held out"
    probe = probing.fit_probe(features[train], stages[train], records[train])
    confusion = probing.confusion_counts(stages[test], probe.predict(features[test]), 5)
    return probing.confusion_metrics(confusion)["balanced_accuracy"]


def test_band_power_baseline_is_neither_saturated_nor_at_chance(tmp_path):
    """The cohort is about as hard as real data for the hand-crafted baseline (0.55-0.68 balanced accuracy on
    real PhysioNet 2018; 0.98 on this small cohort and 1.00 on larger ones before the variability model, 0.64
    now): staging of held-out records must be well above chance (0.2) but well below perfect."""
    synthetic_psg.write_cohort(tmp_path / "cohort", n_train=8, n_test=0, hours=0.4, seed=0)
    held_out = ["tr90-0006", "tr90-0007", "tr90-0008"]
    balanced_accuracy = band_power_staging_balanced_accuracy(tmp_path / "cohort", held_out)
    assert 0.35 < balanced_accuracy < 0.92, balanced_accuracy


def test_generate_record_rejects_bad_length():
    with pytest.raises(ValueError, match="hours must be > 0"):
        synthetic_psg.generate_record(np.random.default_rng(0), "tr90-0001", hours=0)


def test_cli_writes_a_cohort(tmp_path, capsys):
    summary = synthetic_psg.main(["--out", str(tmp_path / "cli"), "--train", "1", "--test", "1", "--hours", "0.05",
                                  "--seed", "3", "--quiet"])
    assert "wrote 1 training and 1 test records" in capsys.readouterr().out
    assert (tmp_path / "cli" / "training" / "tr90-0001" / "tr90-0001-arousal.mat").is_file()
    assert summary.test_records == ["te90-0001"]
    shutil.rmtree(tmp_path / "cli")
