"""Metadata is checked where it is read: single header and metadata fields of real excerpts, altered.

A malformed or physically impossible value (a gain of 0, a NaN sampling rate, a sample count of -1, an age of 150 ...)
must give an error, or a counted skip, that names the file and the field; a valid change (another gain, another
baseline) must change the values exactly as the header says, `(adc - baseline) / gain`. Never a silently different
dataset. The property tests are derandomized (the same examples every run) and small, so the file stays fast.
"""

from __future__ import annotations

import math
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import wfdb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataset_scripts import challenge_io
from dataset_scripts import labels as label_tools
from dataset_scripts import physionet2018
from dataset_scripts.physionet2018 import PhysioNet2018, RecordReadError
from helpers import copy_segment
from modeling_physiomae.recording_physiomae import (
    AGE_RANGE_YEARS,
    HeaderFieldError,
    RecordingReadError,
    read_recording,
    read_wfdb_header,
)

SEGMENTS = ("seg-0009", "seg-0047", "seg-0058")  # real excerpts (7 channels, 200 Hz, 12000 samples, 16+24)
PROPERTY = settings(max_examples=25, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


# ------------------------------------------------------------------------------------------- helpers


def _copy(segment_dir: Path, folder: Path) -> Path:
    """A writable copy of a real excerpt folder; returns the copied header's path."""
    target = folder / segment_dir.name
    shutil.copytree(segment_dir, target)
    for path in target.iterdir():
        path.chmod(0o644)
    return target / f"{segment_dir.name}.hea"


def _lines(header: Path) -> list[list[str]]:
    return [line.split() for line in header.read_bytes().decode("ascii").split("\r\n") if line]


def _write_lines(header: Path, lines: list[list[str]]) -> None:
    header.write_bytes(("\r\n".join(" ".join(tokens) for tokens in lines) + "\r\n").encode("utf-8"))


def _set_token(header: Path, line: int, position: int, text: str) -> None:
    lines = _lines(header)
    lines[line][position] = text
    _write_lines(header, lines)


def _set_gain_field(header: Path, line: int, gain: str = "1", baseline: str | None = None, units: str = "uV") -> None:
    """Token 2 of a signal line: GAIN[(BASELINE)]/UNITS."""
    _set_token(header, line, 2, f"{gain}{'' if baseline is None else f'({baseline})'}/{units}")


def _digital(header: Path) -> np.ndarray:
    """The int16 samples of a challenge `.mat`, read without any of our code: (channels, samples)."""
    record = _lines(header)[0]
    channels, samples = int(record[1]), int(record[3])
    return np.fromfile(header.with_suffix(".mat"), dtype="<i2", offset=24).reshape(samples, channels).T


def _names_file_and_field(message: str, path: Path, field: str) -> bool:
    return str(path) in message and field.lower() in message.lower()


# Texts no strict number parser may take: words, NaN/inf, Python-only spellings, other scripts' digits.
NOT_NUMBERS = st.sampled_from(["abc", "nan", "NaN", "inf", "-inf", "1_0", "0x10", "\u0661\u0662", "12abc", "--3", "1e",
                               "+-1", "."])
NOT_INTEGERS = st.one_of(
    NOT_NUMBERS,
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6)
    .filter(lambda value: not value.is_integer()).map(repr),
    st.sampled_from(["1.0", "2e3", "1.5"]),
)


BOTH, BUILDER = ("builder", "extractor"), ("builder",)
SIGNAL_LINE = st.integers(1, 7)
_TOKENS = {"ADC resolution": 3, "ADC zero": 4, "initial value": 5, "checksum": 6, "block size": 7}


def _token(field: str, line, texts, readers=BOTH):
    """Cases that put one of `texts` into `field`'s token of line `line` (an int or a strategy of them)."""
    position = _TOKENS.get(field) or {"sampling frequency": 2, "number of samples": 3, "number of signals": 1,
                                      "record name": 0}[field]
    lines = line if isinstance(line, st.SearchStrategy) else st.just(line)
    return st.tuples(texts, lines).map(lambda t: (field, ("token", t[1], position, t[0]), readers))


# field -> cases (field named in the error, how to alter the header, readers that must refuse it)
MALFORMED = {
    "gain": st.tuples(st.one_of(
        NOT_NUMBERS,
        st.floats(max_value=0, allow_nan=False, allow_infinity=False).map(repr),  # 0, negative
        st.sampled_from(["0", "-1", "1e400", "-0"]),
    ), SIGNAL_LINE).map(lambda t: ("gain", ("gain", t[1], t[0]), BOTH)),
    "baseline": st.tuples(NOT_INTEGERS, SIGNAL_LINE).map(lambda t: ("baseline", ("baseline", t[1], t[0]), BOTH)),
    "ADC resolution": _token("ADC resolution", SIGNAL_LINE, NOT_INTEGERS | st.integers(-10**6, -1).map(str)),
    "ADC zero": _token("ADC zero", SIGNAL_LINE, NOT_INTEGERS),
    "initial value": _token("initial value", SIGNAL_LINE, NOT_INTEGERS),
    "checksum": _token("checksum", SIGNAL_LINE, NOT_INTEGERS | st.integers(65536, 10**6).map(str)
                       | st.integers(-10**6, -32769).map(str)),
    "block size": _token("block size", SIGNAL_LINE, NOT_INTEGERS | st.integers(-10**6, -1).map(str)),
    "format": st.tuples(st.sampled_from([
        ("format", "212+24", BOTH), ("format", "80+24", BOTH), ("format", "x+24", BOTH), ("format", "-16+24", BOTH),
        ("samples per frame", "16x0+24", BOTH), ("samples per frame", "16x2+24", BOTH),
        ("byte offset", "16", BOTH), ("byte offset", "16+26", BOTH), ("byte offset", "16+abc", BOTH),
        ("skew", "16:1+24", BUILDER),
    ]), SIGNAL_LINE).map(lambda t: (t[0][0], ("token", t[1], 1, t[0][1]), t[0][2])),
    "sampling frequency": _token("sampling frequency", 0, st.one_of(
        NOT_NUMBERS,
        st.floats(max_value=0.0099, allow_nan=False, allow_infinity=False).map(repr),
        st.floats(min_value=100_001, max_value=1e300, allow_nan=False, allow_infinity=False).map(repr),
    )),
    "number of samples": _token("number of samples", 0, NOT_INTEGERS | st.integers(-10**9, -1).map(str)
                                | st.integers(11000, 13000).filter(lambda value: value != 12000).map(str)),
    "number of signals": _token("number of signals", 0, NOT_INTEGERS
                                | st.integers(-100, 100).filter(lambda value: value != 7).map(str)),
    "record name": _token("record name", 0, st.sampled_from(["seg-9999", "other", "seg-0009x", "x"])),
    # a valid checksum or first sample that is not the file's: header and signal file do not belong together
    # (both: the builder and the extractor read WFDB records with the one reader, recording_physiomae.read_wfdb_record)
    "checksum of the samples": st.tuples(st.integers(-32768, 32767), SIGNAL_LINE)
    .map(lambda t: ("checksum", ("mismatch", t[1], 6, t[0]), BOTH)),
    "first sample": st.tuples(st.integers(-32768, 32767), SIGNAL_LINE)
    .map(lambda t: ("initial value", ("mismatch", t[1], 5, t[0]), BOTH)),
}


def _alter(header: Path, change: tuple) -> bool:
    """Apply one change to a copied header; False when it happens to leave the header as it was."""
    lines = _lines(header)
    kind = change[0]
    if kind in ("gain", "baseline"):
        _, line, text = change
        gain, rest = lines[line][2].split("/", 1)
        if kind == "gain":
            _set_gain_field(header, line, gain=text, units=rest)
        else:
            _set_gain_field(header, line, gain=gain, baseline=text, units=rest)
        return True
    _, line, position, text = change
    if kind == "mismatch":
        if int(lines[line][position]) == text:
            return False
        text = str(text)
    _set_token(header, line, position, text)
    return True


# ---------------------------------------------------------------------------------- WFDB: malformed fields


@pytest.mark.parametrize("group", sorted(MALFORMED))
@settings(PROPERTY, max_examples=15)
@given(segment=st.sampled_from(SEGMENTS), data=st.data())
def test_malformed_or_impossible_header_field_is_an_error_naming_file_and_field(real_segments_dir, group, segment, data):
    case = data.draw(MALFORMED[group], label="case")
    field, change, readers = case
    with tempfile.TemporaryDirectory() as folder:
        header = _copy(real_segments_dir / segment, Path(folder))
        if not _alter(header, change):
            return
        if "builder" in readers:
            with pytest.raises(RecordReadError) as caught:
                physionet2018.read_record_signals(header)
            assert _names_file_and_field(str(caught.value), header, field), (case, str(caught.value))
        if "extractor" in readers:
            with pytest.raises(RecordingReadError) as caught:
                read_recording(header)
            assert _names_file_and_field(str(caught.value), header, field), (case, str(caught.value))


def test_non_ascii_units_and_missing_fields_are_refused(real_segments_dir, tmp_path):
    """wfdb drops non-ASCII bytes (`µV` would become `V`) and assumes 250 Hz / an uncalibrated gain of 200 when the
    header gives none: each is refused, naming the field."""
    cases = {
        "units": lambda header: _set_gain_field(header, 1, units="\u00b5V"),
        "description": lambda header: _write_lines(header, _lines(header)[:1] + [_lines(header)[1][:8] + ["O2-M1\u00b5"]]
                                                   + _lines(header)[2:]),
        "sampling frequency": lambda header: _write_lines(header, [["seg-0009", "7"]] + _lines(header)[1:]),
        "gain": lambda header: _write_lines(header, _lines(header)[:1] + [["seg-0009.mat", "16+24"]] + _lines(header)[2:]),
    }
    for field, alter in cases.items():
        header = _copy(real_segments_dir / "seg-0009", tmp_path / field.replace(" ", "-"))
        alter(header)
        with pytest.raises(RecordReadError) as caught:
            physionet2018.read_record_signals(header)
        assert _names_file_and_field(str(caught.value), header, field), str(caught.value)
        with pytest.raises(HeaderFieldError) as caught:
            read_recording(header)
        assert _names_file_and_field(str(caught.value), header, field), str(caught.value)


# ----------------------------------------------------------------------------- WFDB: valid changes, exactly


@PROPERTY
@given(
    segment=st.sampled_from(SEGMENTS),
    line=st.integers(1, 7),
    gain=st.floats(min_value=1e-3, max_value=1e5, allow_nan=False).map(lambda value: f"{value:.6g}"),
    baseline=st.integers(-40_000, 40_000),
    baseline_as_adc_zero=st.booleans(),
    rate=st.sampled_from(["200", "100", "256", "128.5", "1000"]),
)
def test_valid_gain_baseline_and_rate_change_values_exactly_as_the_header_says(
    real_segments_dir, segment, line, gain, baseline, baseline_as_adc_zero, rate
):
    with tempfile.TemporaryDirectory() as folder:
        header = _copy(real_segments_dir / segment, Path(folder))
        units = _lines(header)[line][2].split("/", 1)[1]
        if baseline_as_adc_zero:  # no (baseline): WFDB takes the ADC zero
            _set_gain_field(header, line, gain=gain, units=units)
            _set_token(header, line, 4, str(baseline))
        else:
            _set_gain_field(header, line, gain=gain, baseline=str(baseline), units=units)
        _set_token(header, 0, 2, rate)
        digital = _digital(header)
        ours = physionet2018.read_record_signals(header)
        recording = read_recording(header)

    channel = line - 1
    expected = (digital[channel].astype(np.float64) - baseline) / float(gain)
    invalid = digital[channel] == -32768
    np.testing.assert_allclose(ours.signals[channel][~invalid], expected[~invalid], rtol=1e-6, atol=0)
    np.testing.assert_allclose(recording.signals[channel][~invalid], expected[~invalid], rtol=1e-6, atol=0)
    assert np.isnan(ours.signals[channel][invalid]).all()
    assert ours.sampling_rate == float(rate) and recording.sampling_rates[channel] == float(rate)
    assert ours.units[channel] == units
    others = [index for index in range(digital.shape[0]) if index != channel]
    lines = _lines(real_segments_dir / segment / f"{segment}.hea")
    for index in others:  # every other channel exactly as its own (untouched) header line says
        gain_text = lines[index + 1][2].split("/")[0]
        other_gain, other_baseline = (float(gain_text.split("(")[0]), int(gain_text.split("(")[1].rstrip(")"))) \
            if "(" in gain_text else (float(gain_text), int(lines[index + 1][4]))
        np.testing.assert_allclose(ours.signals[index], (digital[index] - other_baseline) / other_gain, rtol=1e-6)


# --------------------------------------------------------------------------------------------- age-sex.csv


@PROPERTY
@given(
    age=st.one_of(
        st.integers(0, 120).map(str),
        st.floats(min_value=0, max_value=120, allow_nan=False).map(lambda value: f"{value:.3f}"),
        st.integers(121, 10**6).map(str),
        st.integers(-10**6, -1).map(str),
        st.floats(min_value=120.001, max_value=1e300, allow_nan=False, allow_infinity=False).map(repr),
        NOT_NUMBERS,
    ),
    sex=st.sampled_from(["M", "F", "m", "f", "male", "Female", "x", "U", "1", "MF", "?"]),
)
def test_age_and_sex_are_parsed_strictly(real_labels_dir, age, sex):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "age-sex.csv"
        real_rows = (real_labels_dir / "age-sex.csv").read_text().splitlines()[:3]  # the real header and 2 real rows
        path.write_text("\n".join(real_rows + [f"tr99-0001,{sex},{age}"]) + "\n")
        table = label_tools.read_age_sex_csv(path)
    real = label_tools.read_age_sex_csv(real_labels_dir / "age-sex.csv")
    for row in real_rows[1:]:  # the real rows are read as before
        assert table.entries[row.split(",")[0]] == real.entries[row.split(",")[0]]
    read_age, read_sex = table.entries["tr99-0001"]
    problems = {entry["problem"] for entry in table.problems if entry["record"] == "tr99-0001"}
    assert all(entry["line"] == 4 and entry["text"] == f"tr99-0001,{sex},{age}" for entry in table.problems)

    valid_age = bool(re.fullmatch(r"[0-9]+(\.[0-9]+)?", age)) and AGE_RANGE_YEARS[0] <= float(age) <= AGE_RANGE_YEARS[1]
    if valid_age:
        assert read_age == float(age)
    else:
        assert read_age == -1.0 and any(" age " in f" {problem} " for problem in problems), problems
    if sex.lower() in ("m", "f", "male", "female"):
        assert read_sex == label_tools.SEX_NAMES.index(sex[0].upper())
    else:
        assert read_sex == -1 and f"unknown sex {sex!r}" in problems, problems
    assert len(problems) == (not valid_age) + (read_sex == -1)


# ------------------------------------------------------------------------------------------- EDF headers


def _write_real_edf(real_segments_dir: Path, path: Path) -> Path:
    """A real excerpt's O2-M1 and ECG as an EDF+ (60 one-second data records)."""
    from helpers import write_edf

    loaded = physionet2018.read_record_signals(real_segments_dir / "seg-0009" / "seg-0009.hea")
    channels = [(name, loaded.signals[loaded.channel_names.index(name)], 200, unit)
                for name, unit in (("O2-M1", "uV"), ("ECG", "mV"))]
    return write_edf(path, channels, annotations=[(0.0, None, "Sleep stage W")])


_EDF_FIXED = {"number of header bytes": (184, 8), "number of data records": (236, 8), "data record duration": (244, 8),
              "number of signals": (252, 4)}
# signal fields: (bytes per signal of the columns before it: label 16, transducer 80, unit 8, ...), width
_EDF_SIGNAL = {"physical minimum": (104, 8), "physical maximum": (112, 8), "digital minimum": (120, 8),
               "digital maximum": (128, 8), "samples per data record": (216, 8)}


def _edf_field_span(field: str, signal: int, num_signals: int) -> tuple[int, int]:
    if field in _EDF_FIXED:
        return _EDF_FIXED[field]
    before, width = _EDF_SIGNAL[field]
    return 256 + before * num_signals + width * signal, width


def _edf_with(payload: bytes, field: str, signal: int, text: str) -> bytes:
    num_signals = int(payload[252:256])
    start, width = _edf_field_span(field, signal, num_signals)
    encoded = text.encode("utf-8")
    assert len(encoded) <= width, text
    return payload[:start] + encoded.ljust(width) + payload[start + width:]


class RealEdf(bytes):
    """The bytes of the real excerpt's EDF, with a short repr (hypothesis prints its arguments)."""

    def __repr__(self) -> str:
        return f"<real EDF, {len(self)} bytes>"


@pytest.fixture(scope="module")
def real_edf(real_segments_dir, tmp_path_factory) -> bytes:
    return RealEdf(_write_real_edf(real_segments_dir, tmp_path_factory.mktemp("edf") / "real.edf").read_bytes())


@PROPERTY
@given(case=st.one_of(
    st.tuples(st.sampled_from(["physical minimum", "physical maximum"]), st.integers(0, 1), NOT_NUMBERS),
    st.tuples(st.sampled_from(["digital minimum", "digital maximum"]), st.integers(0, 1),
              st.one_of(NOT_NUMBERS, st.sampled_from(["-32768.5", "100.25", "1e-3"]))),
    st.tuples(st.just("samples per data record"), st.integers(0, 1),
              st.one_of(NOT_INTEGERS.filter(lambda text: len(text.encode()) <= 8), st.integers(-10**6, -1).map(str))),
    st.tuples(st.just("data record duration"), st.just(0),
              st.one_of(NOT_NUMBERS, st.sampled_from(["0", "-1", "1e-9", "-0.5", "1e9"]))),
    st.tuples(st.just("number of data records"), st.just(0),
              st.one_of(NOT_INTEGERS.filter(lambda text: len(text.encode()) <= 8), st.integers(-10**6, -2).map(str))),
    st.tuples(st.just("number of signals"), st.just(0),
              st.one_of(NOT_INTEGERS.filter(lambda text: len(text.encode()) <= 4),
                        st.integers(-999, 999).filter(lambda n: n != 3).map(str))),
    st.tuples(st.just("number of header bytes"), st.just(0),
              st.one_of(NOT_INTEGERS.filter(lambda text: len(text.encode()) <= 8),
                        st.integers(0, 10**6).filter(lambda n: n != 1024).map(str))),
))
def test_malformed_or_impossible_edf_field_is_an_error_naming_file_and_field(real_edf, case):
    field, signal, text = case
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "altered.edf"
        path.write_bytes(_edf_with(real_edf, field, signal, text))
        with pytest.raises(RecordingReadError) as caught:
            read_recording(path)
    assert _names_file_and_field(str(caught.value), path, field.split(" (")[0]) or (
        field in ("samples per data record", "data record duration") and "sampling rate" in str(caught.value)
        or field == "number of signals" and "number of header bytes" in str(caught.value)
    ), (case, str(caught.value))


@PROPERTY
@given(signal=st.integers(0, 1), pick=st.integers(0, 3),
       physical=st.one_of(st.integers(-9_999_999, 99_999_999).map(str),
                          st.floats(-9999, 9999, allow_nan=False).map(lambda value: f"{value:.2f}"),
                          st.sampled_from(["1e3", "-2.5E2", ".5"])))
def test_edf_calibration_valid_changes_exactly_impossible_ones_skip_the_signal(real_edf, signal, pick, physical):
    """A valid physical range changes the values as the header says: (d - dmin) * (pmax - pmin) / (dmax - dmin) + pmin;
    an impossible one (pmin = pmax, dmin >= dmax) skips that signal, listed with the field in `problems`."""
    num_signals = int(real_edf[252:256])

    def field(name):
        start, width = _edf_field_span(name, signal, num_signals)
        return real_edf[start:start + width].decode().strip()

    pmin, dmin, dmax = float(field("physical minimum")), int(field("digital minimum")), int(field("digital maximum"))
    changes = [("physical maximum", physical), ("physical maximum", field("physical minimum")),
               ("digital minimum", field("digital maximum")), ("digital maximum", str(dmin - 1))]
    name, text = changes[pick]
    label = ("O2-M1", "ECG")[signal]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "altered.edf"
        path.write_bytes(_edf_with(real_edf, name, signal, text))
        recording = read_recording(path)
    if pick == 0 and float(text) != pmin:
        header_bytes = int(real_edf[184:192])
        samples = 200 * 60
        record = np.frombuffer(real_edf[header_bytes:], dtype="<i2").reshape(60, -1)  # data records x all samples
        digital = record[:, signal * 200:(signal + 1) * 200].reshape(-1)[:samples].astype(np.float64)
        expected = (digital - dmin) * (float(text) - pmin) / (dmax - dmin) + pmin
        index = recording.channel_names.index(label)
        np.testing.assert_allclose(recording.signals[index], expected, rtol=1e-5, atol=1e-6 * max(1.0, abs(float(text))))
    elif pick == 0:
        assert label not in recording.channel_names
    else:
        assert label not in recording.channel_names
        assert any(label in problem and name.split()[0] in problem and "skipped" in problem
                   for problem in recording.problems), recording.problems


def test_edf_patient_sex_and_age(real_edf, tmp_path):
    """`m` is a sex (M); an EDF+ birthdate that makes the age impossible is listed and the age left unknown."""
    def with_patient(text):
        path = tmp_path / f"p{abs(hash(text))}.edf"
        path.write_bytes(real_edf[:8] + text.encode().ljust(80) + real_edf[88:])
        return read_recording(path)

    start = with_patient(real_edf[8:88].decode()).start_time
    lower = with_patient(f"X m {start.strftime('%d-%b-%Y').upper()} X")
    assert lower.patient_sex == "M" and lower.patient_age_years == 0.0 and not lower.problems
    future = with_patient(f"X F 01-JAN-{start.year + 5} X")
    assert future.patient_sex == "F" and future.patient_age_years is None
    assert any("patient age -5" in problem and "age unknown" in problem for problem in future.problems), future.problems
    old = with_patient(f"X M 01-JAN-{start.year - 150} X")
    assert old.patient_age_years is None and any("patient age 15" in problem for problem in old.problems)
    odd = with_patient("X Q X X")
    assert odd.patient_sex is None and any("patient sex 'Q'" in problem for problem in odd.problems)


# -------------------------------------------------------------------------- labels: clocks, masks, stages


def test_annotation_time_resolution_must_be_the_record_rate(real_segments_dir):
    notes = real_segments_dir / "seg-0009" / "seg-0009.arousal"
    assert label_tools.read_arousal_notes(notes, 12000, 200.0).stage[100] == 0  # its own clock: 200 Hz
    with pytest.raises(label_tools.AnnotationFormatError, match=r"seg-0009\.arousal.*time resolution '200' Hz differs"):
        label_tools.read_arousal_notes(notes, 12000, 250.0)


def test_stage_mask_values_other_than_0_and_1_make_the_masks_unusable(real_segments_dir, tmp_path):
    import h5py

    path = tmp_path / "seg-0009-arousal.mat"
    shutil.copyfile(real_segments_dir / "seg-0009" / "seg-0009-arousal.mat", path)
    path.chmod(0o644)
    with h5py.File(path, "r+") as handle:
        wake = handle["data/sleep_stages/wake"]
        values = wake[()]
        values.reshape(-1)[5] = 2
        wake[...] = values
    with pytest.raises(label_tools.ArousalMaskError, match=r"seg-0009-arousal\.mat: data/sleep_stages/wake holds 1 values"):
        label_tools.read_arousal_masks(path, 12000)


def test_stage_csv_onsets_and_durations(tmp_path):
    from dataset_scripts import hypnograms

    path = tmp_path / "night.csv"
    path.write_text("onset,duration,stage\n0,30,W\n-30,30,N1\nnan,30,N2\n30,-30,N2\n60,inf,R\n90,0,R\n120,30,N3\n")
    intervals, problems = hypnograms.read_stage_csv(path)
    assert [(problem["line"], problem["problem"]) for problem in problems] == [
        (3, "impossible onset '-30'"), (4, "unreadable onset 'nan'"), (5, "impossible duration '-30' (read as absent)"),
        (6, "unreadable duration 'inf' (read as absent)"), (7, "impossible duration '0' (read as absent)")]
    assert [(item.onset, item.duration, item.text) for item in intervals] == [
        (0, 30, "W"), (30, 30, "N2"), (60, 30, "R"), (90, 30, "R"), (120, 30, "N3")]


def test_writer_refuses_what_the_reader_would_refuse(tmp_path):
    digital = np.zeros((400, 2), dtype=np.int16)
    for kwargs, field in (({"gains": [0.0, 1.0]}, "gain"), ({"gains": [float("nan"), 1.0]}, "gain"),
                          ({"baselines": [0.5, 0]}, "baseline"), ({"fs": 0}, "sampling frequency"),
                          ({"units": ["", "uV"]}, "units")):
        arguments = {"gains": [1.0, 1.0], "baselines": [0, 0], "units": ["uV", "uV"], "fs": 200, **kwargs}
        with pytest.raises(HeaderFieldError, match=field):
            challenge_io.write_record(tmp_path / field, "wr00-0001", digital, ["C4-M1", "ECG"], **arguments)
        assert not (tmp_path / field / "wr00-0001.hea").exists()


# ----------------------------------------------------------------------------------- the builder's report


def test_build_skips_and_counts_every_metadata_problem_by_field(real_segments_dir, real_labels_dir, tmp_path):
    """One build over real excerpts, each with one altered field: a malformed field skips the record (named, with its
    field); units and labels that cannot be used are counted; the unaltered records give the rows they always did."""
    folder = tmp_path / "data"
    source = real_segments_dir / "seg-0009"

    def copy(name):
        return copy_segment(source, folder, name) / f"{name}.hea"

    copy("ok-0001")
    _set_gain_field(copy("gain-0001"), 1, gain="0")
    _set_token(copy("rate-0001"), 0, 2, "nan")
    _set_token(copy("len-0001"), 0, 3, "-12000")
    _set_token(copy("check-0001"), 3, 6, "1")
    _set_gain_field(copy("units-0001"), 1, units="foo")
    mv = copy("mv-0001")
    _set_gain_field(mv, 1, gain="1000", units="mV")  # d / 1000 mV = d uV: says the same as ok-0001's 1/uV
    clock = copy("clock-0001")
    (clock.parent / "clock-0001-arousal.mat").unlink()
    notes = label_tools.read_wfdb_annotations(clock.with_suffix(".arousal"))
    wfdb.wrann("clock-0001", "arousal", notes.sample, symbol=['"'] * len(notes.sample), aux_note=notes.aux_note,
               fs=250, write_dir=str(clock.parent))
    names = sorted(path.name for path in folder.iterdir())
    (folder / "RECORDS").write_text("".join(f"{name}/\n" for name in names))
    real_header = (real_labels_dir / "age-sex.csv").read_text().splitlines()[0]
    (folder / "age-sex.csv").write_text(f"{real_header}\nok-0001,m,150\nunits-0001,x,44\nmv-0001,F,-3\n")

    # no scaling: the rows keep the physical values (uV), so a unit that was not converted would show
    builder = PhysioNet2018(data_dir=str(folder), cache_dir=str(tmp_path / "cache"),
                            feature_extractor_kwargs={"scaling": "none"})
    builder.download_and_prepare()
    report = builder.build_report
    records = report["records"]
    skipped = {"gain-0001": "gain", "rate-0001": "sampling frequency", "len-0001": "number of samples",
               "check-0001": "checksum"}
    for name, field in skipped.items():
        entry = records[name]
        assert entry["status"] == "skipped" and entry["field"] == field, entry
        assert _names_file_and_field(entry["reason"], folder / name / f"{name}.hea", field), entry["reason"]
    assert report["totals"]["records_skipped_by_reason"] == {"bad header field": 3, "header does not match signal file": 1}
    assert records["units-0001"]["status"] == "built" and records["units-0001"]["units_unknown"] == {"O2-M1": "foo"}
    assert report["totals"]["records_with_unknown_units"] == 1
    assert records["mv-0001"]["units"]["O2-M1"] == {"unit": "mV", "target": "uV", "factor": 1000.0}
    assert "time resolution" in records["clock-0001"]["label_problems"][0]
    assert report["totals"]["records_with_label_problems"] == 1
    assert {(entry["line"], entry["problem"]) for entry in report["age_sex"]["problems"]} == {
        (2, "impossible age '150' (it must be <= 120 years)"), (3, "unknown sex 'x'"),
        (4, "impossible age '-3' (it must be >= 0 years)")}

    rows = {}
    for dataset in builder.as_dataset().values():
        for row in dataset:
            rows[(row["record"], row["window"])] = row
    assert {record for record, _ in rows} == {"ok-0001", "units-0001", "mv-0001", "clock-0001"}
    assert rows[("ok-0001", 0)]["age"] == -1 and rows[("ok-0001", 0)]["sex"] == 1  # 'm' is M, 150 is no age
    assert [rows[("clock-0001", window)]["sleep_stage"] for window in (0, 1)] == [-1, -1]  # unusable notes: no labels
    for window in (0, 1):  # a header in mV with gain 1000 says the same as one in uV with gain 1
        converted = np.asarray(rows[("mv-0001", window)]["input_values"], dtype=np.float32)
        original = np.asarray(rows[("ok-0001", window)]["input_values"], dtype=np.float32)
        o2 = builder._layout.channel_names.index("O2-M1")
        assert np.abs(original[o2]).max() > 1.0  # O2-M1 in uV: a unit left unconverted would be 1000 times smaller
        np.testing.assert_allclose(converted, original, rtol=2e-3, atol=1e-3)
    assert math.isclose(read_wfdb_header(folder / "mv-0001" / "mv-0001.hea").signals[0].gain, 1000.0)


def test_edf_build_counts_reader_problems_and_skips_bad_fields(real_edf, tmp_path):
    """The EDF builder: an impossible calibration skips that signal (the record is built, the problem counted), a
    malformed field skips the record naming the field."""
    from dataset_scripts.edf_sleep import EdfSleep

    folder = tmp_path / "edf"
    folder.mkdir()
    start, width = _edf_field_span("physical minimum", 1, int(real_edf[252:256]))
    ecg_physical_minimum = real_edf[start:start + width].decode().strip()
    (folder / "calibration.edf").write_bytes(_edf_with(real_edf, "physical maximum", 1, ecg_physical_minimum))
    (folder / "duration.edf").write_bytes(_edf_with(real_edf, "data record duration", 0, "nan"))
    builder = EdfSleep(data_dir=str(folder), cache_dir=str(tmp_path / "cache"))
    builder.download_and_prepare()
    report = builder.build_report
    calibration, duration = report["records"]["calibration"], report["records"]["duration"]
    assert calibration["status"] == "built" and "ECG" not in calibration["channels_in_file"]
    assert any("'ECG'" in problem and "physical minimum = physical maximum" in problem
               for problem in calibration["reader_problems"]), calibration["reader_problems"]
    assert report["totals"]["records_with_reader_problems"] == 1
    assert duration["status"] == "skipped" and duration["reason_kind"] == "bad header field"
    assert duration["field"] == "data record duration" and str(folder / "duration.edf") in duration["reason"]
