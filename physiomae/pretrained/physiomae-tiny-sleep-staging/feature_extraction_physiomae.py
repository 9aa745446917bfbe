"""Feature extractor for PhysioMAE: raw polysomnography channels -> 30-s windows at 100 Hz.

This module is the single preprocessing implementation of the project: the dataset builders call
`PhysioMAEFeatureExtractor.preprocess_record` / `preprocess_recording` / `cut_windows`, and users call the
extractor itself, on arrays or on files: `read_recording(path)` reads an EDF/EDF+/BDF file (`.edf`, `.bdf`, `.rec`,
with edfio) or a WFDB record (`NAME.hea` or the record path without extension, with wfdb) into a `Recording`
(one 1-D array, rate and physical unit per channel, start time, EDF+ annotations).
It is copied to the Hub next to the model, so it imports nothing of ours except the configuration; edfio and wfdb
are imported only when a file is read.
"""

from __future__ import annotations

import datetime
import math
import os
import re
import warnings
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from scipy import signal as scipy_signal
from transformers.feature_extraction_utils import BatchFeature, FeatureExtractionMixin
from transformers.utils import logging

from .configuration_physiomae import DEFAULT_MODALITIES, ModalityLayoutMixin


logger = logging.get_logger(__name__)


# Zero-phase Butterworth band per modality: [high-pass Hz or None, low-pass Hz or None]. Low-pass cut-offs
# must lie below the Nyquist frequency of the target rate (50 Hz at 100 Hz); 45 Hz replaces the paper's
# 70 Hz for EMG/ECG for that reason.
DEFAULT_FILTER_BANDS: dict[str, list[float | None]] = {
    "eeg": [0.1, 30.0],  # paper
    "eog": [0.1, 30.0],  # paper
    "emg": [0.1, 45.0],  # paper 0.1-70 Hz, capped below the 50 Hz Nyquist of 100 Hz
    "resp": [0.05, 5.0],  # breathing 0.1-0.5 Hz plus harmonics (flow shape); 0.05 Hz removes belt drift
    "spo2": [None, 1.0],  # saturation level is the information: no high-pass, smooth the 1-Hz oximeter steps
    "ecg": [0.1, 45.0],  # paper 0.1-70 Hz, capped like EMG
}

# Canonical channel name -> accepted aliases. Matching is case-insensitive and ignores spaces; "_" and
# ":" count as "-"; a leading "EEG"/"EOG"/"EMG" word (as in EDF labels such as "EEG C4-A1") is ignored.
# A canonical name always matches itself. The challenge's M1/M2 (mastoid) references are the A1/A2
# (ear/mastoid) references of older montages: C4-A1 is the same derivation as C4-M1.
DEFAULT_CHANNEL_ALIASES: dict[str, list[str]] = {
    "F3-M2": ["F3-A2"],
    "F4-M1": ["F4-A1"],
    "C3-M2": ["C3-A2"],
    "C4-M1": ["C4-A1"],
    "O1-M2": ["O1-A2"],
    "O2-M1": ["O2-A1"],
    "E1-M2": ["E1-A2", "E1", "LOC", "LOC-A2", "LOC-M2", "EOG-L", "EOGL", "EOG(L)", "EOG Left"],
    "Chin1-Chin2": ["Chin", "EMG", "Chin EMG", "EMG Chin", "Chin1-Chin3", "Chin2-Chin1", "Submental EMG"],
    "ABD": ["Abdomen", "Abdominal", "Abdo", "ABDO RES", "ABD RES", "Effort ABD"],
    "CHEST": ["Thorax", "Thoracic", "Thor", "THOR RES", "Effort THO", "Effort Chest"],
    "AIRFLOW": ["Flow", "Air Flow", "Nasal", "Nasal Pressure", "Nasal Flow", "Oronasal Flow", "NEW AIR"],
    "SaO2": ["SpO2", "SAO2", "Sat", "O2 Sat", "OSat", "SpO2(%)"],
    "ECG": ["EKG", "ECG II", "EKG II", "ECG2", "ECG1"],
}

# `scaling="fixed"`: one scale per channel for every record, in the channel's input units (PhysioNet 2018:
# EEG/EOG/EMG/respiration in uV, ECG in mV, SaO2 in %). Each is the median, over the 999 real unlabelled
# 60-s challenge excerpts in `shared/data/physionet2018-unlabelled`, of the per-window robust standard
# deviation (IQR / 1.349) after filtering (EEG: O2-M1, used for every EEG derivation; SaO2 absent there: a
# typical 2 % spread). Keeping one scale for the whole data set keeps the amplitude differences between
# recordings and stages that per-record scaling removes (on 60-s excerpts it removes all of them).
DEFAULT_FIXED_SCALES: dict[str, float] = {
    "F3-M2": 10.0,
    "F4-M1": 10.0,
    "C3-M2": 10.0,
    "C4-M1": 10.0,
    "O1-M2": 10.0,
    "O2-M1": 10.0,
    "E1-M2": 12.0,
    "Chin1-Chin2": 1.7,
    "ABD": 300.0,
    "CHEST": 140.0,
    "AIRFLOW": 16.0,
    "SaO2": 2.0,
    "ECG": 0.1,
}
SCALING_MODES = ("robust", "fixed", "none")

# Modalities whose values are legitimately coarse (SpO2 is reported in whole percent, so a stable night
# may take only a handful of values); the distinct-value flatness test is not applied to them.
DEFAULT_QUANTIZED_MODALITIES: list[str] = ["spo2"]

# Physical units that `fixed_scales` (and the PhysioNet 2018 data) assume, per modality. Recordings read from files
# declare each channel's unit (EDF physical dimension, WFDB units); `preprocess_channels` converts every voltage to
# these before preprocessing (e.g. an EEG in V is multiplied by 1e6). An empty unit, or one that is not a voltage
# (resp.: not a percentage for SpO2), is left as it is and reported in `units_unknown`.
MODALITY_UNITS: dict[str, str] = {"eeg": "uV", "eog": "uV", "emg": "uV", "resp": "uV", "ecg": "mV", "spo2": "%"}
# unit text (lower case, no spaces) -> power of ten of the volt
_VOLT_EXPONENTS: dict[str, int] = {
    "v": 0, "volt": 0, "volts": 0,
    "mv": -3, "millivolt": -3, "millivolts": -3,
    "uv": -6, "\u00b5v": -6, "\u03bcv": -6, "microv": -6, "microvolt": -6, "microvolts": -6,
    "nv": -9, "nanovolt": -9, "nanovolts": -9,
}
_PERCENT_UNITS = frozenset({"%", "percent", "pct", "%sat", "%spo2", "%sao2"})
RECORDING_SUFFIXES = (".edf", ".bdf", ".rec")  # EDF/EDF+ (.edf, .rec) and BDF/BDF+ (.bdf), case-insensitive


def unit_conversion_factor(unit: str | None, target: str) -> float | None:
    """Factor that turns values in `unit` into `target` (`"uV"`, `"mV"`, `"V"`, `"nV"` or `"%"`); None when `unit`
    is empty, unknown or not of the target's kind (e.g. `cmH2O` for a `uV` target)."""
    key = re.sub(r"\s+", "", str(unit or "")).lower()
    target_key = re.sub(r"\s+", "", str(target)).lower()
    if target_key in _PERCENT_UNITS:
        return 1.0 if key in _PERCENT_UNITS else None
    if key in _VOLT_EXPONENTS and target_key in _VOLT_EXPONENTS:
        return 10.0 ** (_VOLT_EXPONENTS[key] - _VOLT_EXPONENTS[target_key])
    return None


_MODALITY_PREFIX = re.compile(r"^(eeg|eog|emg)(?=.)")
_GAUSSIAN_IQR = 1.3489795  # interquartile range of a standard normal: IQR / 1.349 estimates the std


def normalize_channel_name(name: str) -> str:
    """Key used for channel matching: lower case, no spaces, `_`/`:` read as `-`."""
    key = re.sub(r"\s+", "", str(name)).lower()
    return key.replace("_", "-").replace(":", "-")


@dataclass
class PreprocessedRecord:
    """
    One whole recording after name mapping, cleaning, filtering, resampling and scaling.

    Args:
        signals (`np.ndarray` of shape `(num_channels, num_samples)`, float32):
            The record at the target rate in the extractor's channel order, robust-scaled and clipped.
            Channels that are absent from the record (missing, flat, all non-finite) are all zeros.
        channel_present (`np.ndarray` of shape `(num_channels,)`, bool):
            True where the channel carries usable signal somewhere in the record.
        invalid_sample_masks (`dict[str, np.ndarray]`):
            For channels with invalid stretches only: a bool mask of shape `(num_samples,)` at the target
            rate, True where the input was non-finite (and interpolated) or exactly constant over a window.
        channel_names (`list[str]`): canonical names of the channel axis.
        sampling_rate (`int`): rate of `signals` (the extractor's target rate).
        report (`dict`): what happened to each channel; keys are documented in
            `PhysioMAEFeatureExtractor.preprocess_record`.
    """

    signals: np.ndarray
    channel_present: np.ndarray
    invalid_sample_masks: dict[str, np.ndarray] = field(default_factory=dict)
    channel_names: list[str] = field(default_factory=list)
    sampling_rate: int = 100
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def num_samples(self) -> int:
        return int(self.signals.shape[-1])


@dataclass
class _RecordContext:
    """What the per-channel steps of one `preprocess_record` call share."""

    sampling_rate: float
    up: int
    down: int
    num_output_samples: int
    report: dict[str, Any]
    invalid_masks: dict[str, np.ndarray]
    raw_offsets: dict[str, float] = field(default_factory=dict)


class RecordingReadError(ValueError):
    """A recording file that cannot be used: not an EDF/BDF/WFDB file, a bad header, truncated data records, a data
    record count that disagrees with the file, a discontinuous EDF+D, or a recording shorter than one window. The
    message starts with the file's path; `kind` is a short category (used by the builders' reports)."""

    def __init__(self, message: str, kind: str = "unreadable recording"):
        super().__init__(message)
        self.kind = kind


# ----------------------------------------------------------------------------------------------------------------
# Header and metadata fields, parsed strictly (the one implementation: the WFDB and EDF readers here, and the
# dataset builders in dataset_scripts/ for age-sex.csv, stage CSVs and annotation time resolutions)
# ----------------------------------------------------------------------------------------------------------------

SAMPLING_RATE_RANGE_HZ: tuple[float, float] = (0.01, 100_000.0)
"""Sampling rates a physiological recording can have (one sample per 100 s up to 100 kHz); a header rate outside
this range is a broken field, never a rate to resample from."""

AGE_RANGE_YEARS: tuple[float, float] = (0.0, 120.0)
"""Ages a subject can have, in years (age-sex.csv, EDF+ birthdate and start date)."""

SEX_TEXTS: dict[str, str] = {"f": "F", "female": "F", "m": "M", "male": "M"}
"""Accepted sex texts, case-insensitive (the challenge's age-sex.csv writes both `M` and `m`) -> `F` / `M`."""

_DECIMAL_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_INTEGER_TEXT = re.compile(r"[+-]?[0-9]+")


class HeaderFieldError(RecordingReadError):
    """A header or metadata field that is malformed (not a number, not an integer, not parseable) or physically
    impossible (a gain of 0, a negative sample count, an age of 150 ...). The message names where (file, line,
    signal), the field and the bad value; `where`, `field`, `value` and `problem` hold them."""

    def __init__(self, where: str, field: str, value: Any, problem: str, kind: str = "bad header field",
                 message: str | None = None):
        self.where, self.field, self.value, self.problem = str(where), str(field), value, str(problem)
        if message is None:
            shown = "" if value is None else f" {str(value)!r}"
            message = f"{where}: {field}{shown} {problem}"
        super().__init__(message, kind=kind)

    def __reduce__(self):  # picklable with its fields (e.g. across a process pool)
        return type(self), (self.where, self.field, self.value, self.problem, self.kind, str(self))


def check_number_range(value: float, field: str, where: str, *, low: float | None = None, high: float | None = None,
                       low_open: bool = False, shown: Any = None) -> float:
    """`value` when it is finite and within [low, high] (low excluded with `low_open`), else `HeaderFieldError`
    naming `where`, `field` and `shown` (the text as written; `value` by default)."""
    shown = value if shown is None else shown
    if not math.isfinite(value):
        raise HeaderFieldError(where, field, shown, "is not a finite number")
    if low is not None and (value < low or (low_open and value == low)):
        raise HeaderFieldError(where, field, shown, f"is impossible: it must be {'>' if low_open else '>='} {low:g}")
    if high is not None and value > high:
        raise HeaderFieldError(where, field, shown, f"is impossible: it must be <= {high:g}")
    return value


def parse_number(text: Any, field: str, where: str, *, integer: bool = False, low: float | None = None,
                 high: float | None = None, low_open: bool = False) -> float | int:
    """A header or metadata number parsed strictly: ASCII decimal notation only (`12`, `-3`, `0.5`, `1e3`; not `nan`,
    `inf`, `1_000`, `0x10`, other scripts' digits or surrounding text), an `int` when `integer` (no `.` or exponent),
    within [low, high] (`check_number_range`). Raises `HeaderFieldError` naming `where`, `field` and the text."""
    raw = "" if text is None else str(text)
    if not (_INTEGER_TEXT if integer else _DECIMAL_TEXT).fullmatch(raw):
        raise HeaderFieldError(where, field, raw, "is not an integer" if integer else "is not a number")
    value = int(raw) if integer else float(raw)
    check_number_range(value, field, where, low=low, high=high, low_open=low_open, shown=raw)
    return value


def parse_sex(text: Any, field: str, where: str) -> str:
    """`F` or `M` from a sex text (`SEX_TEXTS`, case-insensitive); `HeaderFieldError` naming the field otherwise."""
    raw = "" if text is None else str(text).strip()
    if raw.lower() not in SEX_TEXTS:
        raise HeaderFieldError(where, field, raw, f"is not a sex (expected one of {sorted(set(SEX_TEXTS.values()))}, "
                                                  f"any case, or {sorted(key for key in SEX_TEXTS if len(key) > 1)})")
    return SEX_TEXTS[raw.lower()]


# ----------------------------------------------------------------- WFDB headers

@dataclass
class WfdbSignalSpec:
    """One signal line of a WFDB header, as written (`None`: the optional field is absent).

    `baseline` is the one WFDB uses: the `gain(baseline)` value, else the ADC zero, else 0; physical values are
    `(digital - baseline) / gain`. `units` is None when the line gives none (WFDB then assumes mV)."""

    file_name: str
    format: int
    samples_per_frame: int
    skew: int
    byte_offset: int | None
    gain: float
    baseline: int
    units: str | None
    adc_resolution: int | None
    adc_zero: int | None
    initial_value: int | None
    checksum: int | None
    block_size: int | None
    name: str
    line: int
    where: str


@dataclass
class WfdbHeader:
    """A WFDB header (`NAME.hea`) parsed strictly by `read_wfdb_header`."""

    path: str
    record_name: str
    num_segments: int | None
    num_signals: int
    sampling_rate: float
    num_samples: int | None
    signals: list[WfdbSignalSpec]


_WFDB_FORMAT_FIELD = re.compile(r"(?P<format>[^x:+]*)(?:x(?P<frames>[^:+]*))?(?::(?P<skew>[^+]*))?(?:\+(?P<offset>.*))?")
_WFDB_GAIN_FIELD = re.compile(r"(?P<gain>[^(/]*)(?:\((?P<baseline>[^)]*)\))?(?:/(?P<units>.*))?")
_WFDB_RATE_FIELD = re.compile(r"(?P<rate>[^/]*)(?:/(?P<counter>[^(]*)(?:\((?P<base>[^)]*)\))?)?")
_WFDB_UNITS = re.compile(r"[A-Za-z0-9_^?%/-]+")  # what wfdb reads as units; anything else it would cut off
_WFDB_TIME = re.compile(r"[0-9]{1,2}(?::[0-9]{1,2}){0,2}(?:\.[0-9]{1,6})?")
_WFDB_DATE = re.compile(r"[0-9]{1,2}/[0-9]{1,2}/[0-9]{4}")


def read_wfdb_header(path: str | os.PathLike) -> WfdbHeader:
    """
    Parse a WFDB header (`NAME.hea`) strictly; every field the readers use is checked where it is read.

    Record line `NAME[/SEGMENTS] SIGNALS FREQUENCY[/COUNTER[(BASE)]] [SAMPLES [TIME [DATE]]]`: the name must be the
    file's stem, the signal count an integer >= 0 that matches the signal lines, the sampling frequency a number in
    `SAMPLING_RATE_RANGE_HZ` (required: WFDB would assume 250 Hz), the sample count an integer >= 0.
    Signal lines `FILE FORMAT[xFRAMES][:SKEW][+OFFSET] GAIN[(BASELINE)][/UNITS] [RESOLUTION [ADC_ZERO [INITIAL
    [CHECKSUM [BLOCK [DESCRIPTION]]]]]]`: the format, frames (>= 1), skew and offset (>= 0), baseline, ADC
    resolution, ADC zero, initial value, checksum (16 bits, signed or not) and block size integers, the gain a finite
    number > 0 (required: WFDB reads a missing gain or a gain of 0 as "uncalibrated, 200 per mV"); a `.mat` signal
    file must give its byte offset (its data start after a Matlab header). Non-ASCII characters are refused in every
    field (wfdb drops them: `µV` would become `V`). Multi-segment headers: only the record line is checked
    (`signals` is empty).

    Raises `FileNotFoundError` for a missing file and `HeaderFieldError` (message: path, line, signal, field and
    value) for anything malformed or impossible.
    """
    path = Path(os.fspath(path))
    # latin-1 keeps every byte: the field checks below accept ASCII only, so a non-ASCII byte (which wfdb would
    # silently drop) fails the check of the field it sits in
    text = path.read_bytes().decode("latin-1")
    lines = [(number, line.strip()) for number, line in enumerate(text.splitlines(), start=1)
             if line.strip() and not line.strip().startswith("#")]
    if not lines:
        raise HeaderFieldError(str(path), "record line", None, "is missing (the header is empty)")
    number, record_line = lines[0]
    where = f"{path}, line {number} (record line)"
    tokens = record_line.split()
    if len(tokens) < 2:
        raise HeaderFieldError(where, "record line", record_line, "needs at least a record name and a signal count")
    if len(tokens) > 6:
        raise HeaderFieldError(where, "record line", record_line, "has text after the base date")
    name, _, segments = tokens[0].partition("/")
    if name != path.stem or not name.isascii():
        raise HeaderFieldError(where, "record name", name, f"is not the header's file name ({path.name})")
    num_segments = parse_number(segments, "number of segments", where, integer=True, low=1) if segments else None
    num_signals = parse_number(tokens[1], "number of signals", where, integer=True, low=0)
    if len(tokens) < 3:
        raise HeaderFieldError(where, "sampling frequency", None, "is missing (WFDB would assume 250 Hz)")
    rate_field = _WFDB_RATE_FIELD.fullmatch(tokens[2])
    if rate_field is None:
        raise HeaderFieldError(where, "sampling frequency", tokens[2], "is not FREQUENCY[/COUNTER[(BASE)]]")
    sampling_rate = parse_number(rate_field["rate"], "sampling frequency", where, low=SAMPLING_RATE_RANGE_HZ[0],
                                 high=SAMPLING_RATE_RANGE_HZ[1])
    if rate_field["counter"] is not None:
        parse_number(rate_field["counter"], "counter frequency", where, low=0, low_open=True)
    if rate_field["base"] is not None:
        parse_number(rate_field["base"], "base counter value", where)
    num_samples = parse_number(tokens[3], "number of samples", where, integer=True, low=0) if len(tokens) > 3 else None
    if len(tokens) > 4 and not _WFDB_TIME.fullmatch(tokens[4]):
        raise HeaderFieldError(where, "base time", tokens[4], "is not a time (HH:MM:SS)")
    if len(tokens) > 5 and not _WFDB_DATE.fullmatch(tokens[5]):
        raise HeaderFieldError(where, "base date", tokens[5], "is not a date (DD/MM/YYYY)")
    header = WfdbHeader(str(path), name, num_segments, num_signals, float(sampling_rate), num_samples, [])
    if num_segments is not None:
        return header
    if len(lines) - 1 != num_signals:
        raise HeaderFieldError(
            str(path), "number of signals", num_signals, "does not match the signal lines",
            message=f"{path}: the record line declares {num_signals} signals but the header has {len(lines) - 1} "
                    f"signal line(s) (number of signals: a channel line is missing or extra)",
        )
    header.signals = [_parse_wfdb_signal_line(path, number, line) for number, line in lines[1:]]
    return header


def _parse_wfdb_signal_line(path: Path, number: int, line: str) -> WfdbSignalSpec:
    """One signal line of `read_wfdb_header`."""
    parts = line.split(None, 8)
    name = parts[8].strip() if len(parts) > 8 else ""
    where = f"{path}, line {number} (signal {name!r})" if name else f"{path}, line {number}"
    if len(parts) < 2:
        raise HeaderFieldError(where, "signal line", line, "needs at least a file name and a format")
    for field_name, value in (("signal file", parts[0]), ("description", name)):
        if not value.isascii():
            raise HeaderFieldError(where, field_name, value, "holds a non-ASCII character (WFDB headers are ASCII; "
                                                             "wfdb would drop it)")
    file_name = parts[0]
    format_field = _WFDB_FORMAT_FIELD.fullmatch(parts[1])
    if format_field is None:
        raise HeaderFieldError(where, "format", parts[1], "is not FORMAT[xFRAMES][:SKEW][+OFFSET]")
    if not _INTEGER_TEXT.fullmatch(format_field["format"]):
        raise HeaderFieldError(where, "format", parts[1], "is not FORMAT[xFRAMES][:SKEW][+OFFSET]")
    storage_format = parse_number(format_field["format"], "format", where, integer=True, low=0)
    frames = parse_number(format_field["frames"], "samples per frame", where, integer=True, low=1) \
        if format_field["frames"] is not None else 1
    skew = parse_number(format_field["skew"], "skew", where, integer=True, low=0) if format_field["skew"] is not None else 0
    byte_offset = parse_number(format_field["offset"], "byte offset", where, integer=True, low=0) \
        if format_field["offset"] is not None else None
    if byte_offset is None and file_name.lower().endswith(".mat"):
        raise HeaderFieldError(where, "byte offset", None, f"is missing from the format field {parts[1]!r} of the Matlab "
                                                           f"file {file_name} (its samples start after a Matlab header, "
                                                           f"e.g. format 16+24)")
    if len(parts) < 3:
        raise HeaderFieldError(where, "gain", None, "is missing (WFDB would assume an uncalibrated 200 per mV)")
    gain_field = _WFDB_GAIN_FIELD.fullmatch(parts[2])
    if gain_field is None:
        raise HeaderFieldError(where, "gain", parts[2], "is not GAIN[(BASELINE)][/UNITS]")
    gain = parse_number(gain_field["gain"], "gain", where, low=0, low_open=True)
    units = gain_field["units"]
    if units is not None and not _WFDB_UNITS.fullmatch(units):
        raise HeaderFieldError(where, "units", units, "is empty or holds characters WFDB does not read as units "
                                                      "(ASCII letters, digits, _ ^ ? % / -; wfdb would cut them off, "
                                                      "e.g. 'µV' to 'V')")
    integers = {}
    for position, (field_name, low, high) in enumerate(
        (("ADC resolution", 0, None), ("ADC zero", None, None), ("initial value", None, None),
         ("checksum", -32768, 65535), ("block size", 0, None)), start=3):  # 16-bit checksum, signed or not (wfdb)
        integers[field_name] = parse_number(parts[position], field_name, where, integer=True, low=low, high=high) \
            if len(parts) > position else None
    if gain_field["baseline"] is not None:
        baseline = parse_number(gain_field["baseline"], "baseline", where, integer=True)
    else:
        baseline = integers["ADC zero"] if integers["ADC zero"] is not None else 0
    return WfdbSignalSpec(
        file_name=file_name, format=storage_format, samples_per_frame=frames, skew=skew, byte_offset=byte_offset,
        gain=float(gain), baseline=baseline, units=units, adc_resolution=integers["ADC resolution"],
        adc_zero=integers["ADC zero"], initial_value=integers["initial value"], checksum=integers["checksum"],
        block_size=integers["block size"], name=name, line=number, where=where,
    )


_MATLAB_V4_TYPE_FORMATS: dict[int, int] = {30: 16, 20: 32, 50: 80}
"""Matlab v4 matrix type (little endian, numeric; int16 / int32 / uint8) -> the WFDB format it holds (`wfdb2mat`)."""


def check_matlab_v4_signal_file(signal_path: str | os.PathLike, header: WfdbHeader) -> tuple[int, int, int]:
    """
    Check a `.mat` signal file (Matlab v4, as the challenge and `wfdb2mat` write them) against its WFDB header:
    the matrix type must hold the header's format (int16: 16, int32: 32, uint8: 80), its data must start at the
    header's byte offset, it must have one row per signal of the file and one column per sample (when the header
    gives the count), and the file must be long enough for the matrix. Returns (data offset, rows, columns).
    Raises `RecordingReadError` naming the file and the mismatch (`kind`: the build report's category).
    """
    signal_path = Path(os.fspath(signal_path))
    header_path = header.path
    specs = [spec for spec in header.signals if spec.file_name == signal_path.name]
    if not signal_path.is_file():
        raise RecordingReadError(f"{signal_path}: signal file missing", kind="signal file missing")
    file_size = signal_path.stat().st_size
    with open(signal_path, "rb") as stream:
        prefix = stream.read(20)
    if len(prefix) < 20:
        raise RecordingReadError(f"{signal_path}: truncated ({file_size} bytes, no Matlab v4 header)",
                                 kind="signal file truncated")
    type_code, rows, columns, imaginary, name_length = (int(value) for value in np.frombuffer(prefix, dtype="<i4"))
    if type_code not in _MATLAB_V4_TYPE_FORMATS or imaginary != 0 or not 0 < name_length < 64:
        raise RecordingReadError(
            f"{signal_path}: not a Matlab v4 int16 (or int32, uint8) matrix (type {type_code}, imaginary {imaginary}, "
            f"name length {name_length})",
            kind="signal file not Matlab v4 int16")
    for spec in specs:
        if spec.format != _MATLAB_V4_TYPE_FORMATS[type_code]:
            raise HeaderFieldError(spec.where, "format", spec.format, f"does not match {signal_path} (a Matlab v4 matrix "
                                   f"of type {type_code} holds format {_MATLAB_V4_TYPE_FORMATS[type_code]})",
                                   kind="header does not match signal file")
    data_offset = 20 + name_length
    expected_offsets = {spec.byte_offset for spec in specs}
    if expected_offsets != {data_offset}:
        raise RecordingReadError(f"{header_path}: byte offset {sorted(expected_offsets, key=str)} but {signal_path} data "
                                 f"starts at {data_offset}", kind="header does not match signal file")
    frames = sum(spec.samples_per_frame for spec in specs)  # a signal with k samples per frame fills k rows
    if rows != frames:
        detail = f"{len(specs)} channels" if frames == len(specs) else f"{frames} rows of samples per frame"
        raise RecordingReadError(f"{header_path}: number of signals: header has {detail} but {signal_path} holds {rows}",
                                 kind="header does not match signal file")
    if header.num_samples is not None and columns != header.num_samples:
        raise RecordingReadError(f"{header_path}: number of samples: header has {header.num_samples} samples but "
                                 f"{signal_path} holds {columns}", kind="header does not match signal file")
    bytes_per_sample = {16: 2, 32: 4, 80: 1}[_MATLAB_V4_TYPE_FORMATS[type_code]]
    expected_size = data_offset + bytes_per_sample * rows * columns
    if file_size < expected_size:
        raise RecordingReadError(f"{signal_path}: truncated ({file_size} bytes, the {rows} x {columns} matrix needs "
                                 f"{expected_size})", kind="signal file truncated")
    return data_offset, rows, columns


def check_wfdb_reading(header: WfdbHeader, wfdb_record) -> None:
    """Raise `HeaderFieldError` wherever wfdb read a header field differently from `read_wfdb_header` (so that
    nothing wfdb returns can silently differ from what the header says). `wfdb_record`: a `wfdb.Record` (or the
    header read by `wfdb.rdheader`)."""
    pairs = [(header.path, "number of signals", header.num_signals, wfdb_record.n_sig),
             (header.path, "sampling frequency", header.sampling_rate, float(wfdb_record.fs))]
    if header.num_samples is not None:
        pairs.append((header.path, "number of samples", header.num_samples, wfdb_record.sig_len))
    if header.num_segments is None:
        for index, spec in enumerate(header.signals):
            def theirs(attribute: str, default: Any = None) -> Any:
                values = getattr(wfdb_record, attribute, None) or []
                value = values[index] if index < len(values) else None
                return default if value is None else value

            pairs += [
                (spec.where, "signal file", spec.file_name, theirs("file_name")),
                (spec.where, "format", str(spec.format), str(theirs("fmt"))),
                (spec.where, "samples per frame", spec.samples_per_frame, theirs("samps_per_frame", 1)),
                (spec.where, "skew", spec.skew, theirs("skew", 0)),
                (spec.where, "byte offset", spec.byte_offset or 0, theirs("byte_offset", 0)),
                (spec.where, "gain", spec.gain, theirs("adc_gain")),
                (spec.where, "baseline", spec.baseline, theirs("baseline")),
                (spec.where, "units", spec.units or "mV", theirs("units")),
                (spec.where, "description", spec.name, str(theirs("sig_name", "")).strip()),
            ]
    for where, field_name, ours, read in pairs:
        same = math.isclose(ours, read, rel_tol=1e-12) if isinstance(ours, float) and isinstance(read, (int, float)) \
            else ours == read
        if not same:
            raise HeaderFieldError(where, field_name, ours, f"is read by wfdb as {read!r}: the reader would not use what "
                                                             f"the header says")


@dataclass
class Recording:
    """
    One recording as read from a file by `read_recording`: physical values, one rate and unit per channel.

    Args:
        signals (`list[np.ndarray]`): one 1-D float32 array per channel, in physical units (EDF: digital values
            calibrated with the header's physical/digital ranges; WFDB: `wfdb.rdrecord` physical values, NaN where
            the file holds WFDB's invalid value). Channels may differ in rate and so in length.
        channel_names (`list[str]`): labels from the file (EDF signal labels, WFDB signal names), stripped.
        sampling_rates (`list[float]`): Hz per channel.
        units (`list[str]`): physical dimension per channel as written in the file ("" when none).
        start_time (`datetime.datetime`, *optional*): start of the recording (None when the file does not say).
        duration_seconds (`float`): EDF: data records x record duration; WFDB: samples / rate.
        annotations (`list[tuple[float, float | None, str]]`): EDF+/BDF+ annotations as (onset in seconds from the
            start, duration in seconds or None, text), sorted by onset; empty for EDF, BDF and WFDB.
        path (`str`): the file read.
        format (`str`): `"EDF"`, `"EDF+C"`, `"BDF"`, `"BDF+C"` ... (the header's reserved field) or `"WFDB"`.
        skipped_channels (`list[str]`): annotation channels (`EDF Annotations`, `BDF Annotations`), not signals.
        patient_sex (`str`, *optional*): `"F"` / `"M"` from the EDF+ patient field, None when unknown.
        patient_age_years (`float`, *optional*): from the EDF+ birthdate and the start date, None when unknown.
        problems (`list[str]`): what the reader noticed but could use (e.g. a truncated file read with strict=False).
    """

    signals: list[np.ndarray]
    channel_names: list[str]
    sampling_rates: list[float]
    units: list[str]
    start_time: datetime.datetime | None = None
    duration_seconds: float = 0.0
    annotations: list[tuple[float, float | None, str]] = field(default_factory=list)
    path: str = ""
    format: str = ""
    skipped_channels: list[str] = field(default_factory=list)
    patient_sex: str | None = None
    patient_age_years: float | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def num_channels(self) -> int:
        return len(self.signals)


def is_recording_path(value: Any) -> bool:
    """True for a `str` / `os.PathLike` (what `PhysioMAEFeatureExtractor.__call__` reads as a file)."""
    return isinstance(value, (str, os.PathLike))


def read_recording(path: str | os.PathLike, strict: bool = True) -> Recording:
    """
    Read an EDF/EDF+/BDF/BDF+ file (with edfio) or a WFDB record (with wfdb) into a `Recording`.

    Which reader: a name ending in `.edf`, `.rec` or `.bdf` (any case) is read as EDF/BDF, told apart by the
    header's version field (`0` for EDF, 0xFF `BIOSEMI` for BDF); `NAME.hea`, or a record path without extension
    whose `.hea` exists, is read as WFDB (`wfdb.rdrecord`, physical units; multi-frequency records keep each
    channel's own rate). Any other existing file is read as EDF/BDF when its header says so.

    Every header field is parsed strictly where it is read (`read_wfdb_header`; EDF/BDF: the fixed fields and each
    signal's calibration, samples per data record and resulting rate): a malformed or impossible field raises
    `HeaderFieldError` naming the file, the signal and the field. An EDF signal whose calibration is impossible
    (physical minimum = maximum, digital minimum >= maximum) is skipped and listed in `Recording.problems`, as is an
    EDF+ patient sex, birthdate or age that cannot be right (then unknown). WFDB values are checked to be what
    wfdb read, and `.mat` signal files against their Matlab header (`check_matlab_v4_signal_file`).

    Raises `FileNotFoundError` for a missing file and `RecordingReadError` (message starting with the path) for a
    file that is not an EDF/BDF (bad header), truncated data records (an incomplete last record, or fewer/more
    records than the header's count; with `strict=False` the complete records are used and the problem is listed
    in `Recording.problems`), a discontinuous EDF+D/BDF+D, or a WFDB record wfdb cannot read. EDF annotation
    channels are not signals: they become `annotations` and are listed in `skipped_channels`.
    """
    path = Path(os.fspath(path))
    if path.suffix.lower() == ".hea":
        return _read_wfdb_recording(path.with_suffix(""))
    if path.suffix.lower() in RECORDING_SUFFIXES:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such EDF/BDF file")
        return _read_edf_recording(path, strict)
    if Path(f"{path}.hea").is_file():
        return _read_wfdb_recording(path)
    if path.is_file():
        return _read_edf_recording(path, strict)
    raise FileNotFoundError(
        f"{path}: no such recording (EDF/BDF: a .edf/.bdf/.rec file; WFDB: NAME.hea or the record path without extension)"
    )


_EDF_HEADER_BYTES = 256


_EDF_SIGNAL_FIELDS = (("label", 16), ("transducer", 80), ("physical dimension", 8), ("physical minimum", 8),
                      ("physical maximum", 8), ("digital minimum", 8), ("digital maximum", 8), ("prefiltering", 80),
                      ("samples per data record", 8), ("reserved", 32))
_EDF_DIGITAL_RANGE = {"EDF": (-32768, 32767), "BDF": (-8388608, 8388607)}


def _edf_integral(text: str, field: str, where: str) -> int:
    """An EDF digital minimum/maximum: a number whose value is whole (`-32768` or `-32768.0`, not `-32768.5`)."""
    value = parse_number(text, field, where)
    if not float(value).is_integer():
        raise HeaderFieldError(where, field, text, "is not an integer")
    return int(value)


def _edf_header_fields(path: Path) -> dict[str, Any]:
    """The EDF/BDF header read directly and parsed strictly (edfio leaves many problems to warnings, or reads a
    broken field as something else): the fixed part, and per signal its label, unit, calibration and samples per
    data record. Raises `RecordingReadError` when the file is not an EDF/BDF, `HeaderFieldError` (naming the file,
    the signal and the field) for a malformed or impossible field; a signal whose calibration is impossible (physical
    minimum = maximum, digital minimum >= maximum or outside the format's range) gets its reason in `skip`."""
    with open(path, "rb") as stream:
        head = stream.read(_EDF_HEADER_BYTES)
        if len(head) < _EDF_HEADER_BYTES:
            raise RecordingReadError(
                f"{path}: not an EDF/BDF file (bad header: {len(head)} bytes, a header needs at least {_EDF_HEADER_BYTES})",
                kind="not an EDF/BDF file",
            )
        version = head[:8]
        if version == b"\xffBIOSEMI":
            file_format = "BDF"
        elif version.decode("ascii", "replace").strip() == "0":
            file_format = "EDF"
        else:
            raise RecordingReadError(
                f"{path}: not an EDF/BDF file (bad header: version field {version!r}; EDF starts with '0', BDF with "
                f"0xFF 'BIOSEMI')",
                kind="not an EDF/BDF file",
            )
        text = head.decode("ascii", "replace")
        where = f"{path} ({file_format} header)"
        header_bytes = parse_number(text[184:192].strip(), "number of header bytes", where, integer=True, low=0)
        num_records = parse_number(text[236:244].strip(), "number of data records", where, integer=True, low=-1)
        duration = parse_number(text[244:252].strip(), "data record duration", where, low=0)
        num_signals = parse_number(text[252:256].strip(), "number of signals", where, integer=True, low=0)
        if header_bytes != _EDF_HEADER_BYTES * (num_signals + 1):
            raise HeaderFieldError(where, "number of header bytes", text[184:192].strip(),
                                   f"does not fit the number of signals ({num_signals}: {_EDF_HEADER_BYTES} x "
                                   f"{num_signals + 1} bytes)")
        signal_part = stream.read(_EDF_HEADER_BYTES * num_signals)
    if len(signal_part) < _EDF_HEADER_BYTES * num_signals:
        raise RecordingReadError(f"{path}: not an EDF/BDF file (bad header: it ends within the signal fields)",
                                 kind="not an EDF/BDF file")
    columns, offset = {}, 0
    signal_text = signal_part.decode("ascii", "replace")
    for field_name, width in _EDF_SIGNAL_FIELDS:
        columns[field_name] = [signal_text[offset + width * index : offset + width * (index + 1)].strip()
                               for index in range(num_signals)]
        offset += width * num_signals
    annotation_label = f"{file_format} Annotations"
    digital_low, digital_high = _EDF_DIGITAL_RANGE[file_format]
    signals = []
    for index, label in enumerate(columns["label"]):
        signal_where = f"{path} ({file_format} header, signal {index + 1} {label!r})"
        samples = parse_number(columns["samples per data record"][index], "samples per data record", signal_where,
                               integer=True, low=0)
        entry = {"label": label, "annotation": label == annotation_label, "samples_per_record": samples, "skip": None}
        signals.append(entry)
        if entry["annotation"]:
            continue
        values = {name: parse_number(columns[name][index], name, signal_where)
                  for name in ("physical minimum", "physical maximum")}
        values.update({name: _edf_integral(columns[name][index], name, signal_where)
                       for name in ("digital minimum", "digital maximum")})
        if samples and duration == 0:
            raise HeaderFieldError(where, "data record duration", text[244:252].strip(),
                                   "is impossible: it must be > 0 when a signal has samples")
        if samples:
            check_number_range(samples / duration, "sampling rate (samples per data record / data record duration)",
                               signal_where, low=SAMPLING_RATE_RANGE_HZ[0], high=SAMPLING_RATE_RANGE_HZ[1],
                               shown=f"{samples} / {text[244:252].strip()} s")
        if values["physical minimum"] == values["physical maximum"]:
            entry["skip"] = (f"physical minimum = physical maximum ({columns['physical minimum'][index]}): "
                             f"no calibration")
        elif values["digital minimum"] >= values["digital maximum"]:
            entry["skip"] = (f"digital minimum {values['digital minimum']} >= digital maximum "
                             f"{values['digital maximum']}: no calibration")
        elif values["digital minimum"] < digital_low or values["digital maximum"] > digital_high:
            entry["skip"] = (f"digital range {values['digital minimum']}..{values['digital maximum']} lies outside "
                             f"the {file_format} sample range {digital_low}..{digital_high}")
    return {
        "path": str(path),
        "format": file_format,
        "reserved": text[192:236].strip(),
        "patient": text[8:88].strip(),
        "startdate": text[168:176],
        "starttime": text[176:184],
        "header_bytes": header_bytes,
        "num_records": num_records,
        "num_signals": num_signals,
        "duration": duration,
        "labels": columns["label"],
        "signals": signals,
    }


def _legacy_start_date(text: str) -> datetime.date | None:
    """The EDF header's `dd.mm.yy` start date (years 85-99 are 19yy, others 20yy), None when unreadable."""
    try:
        day, month, year = (int(part) for part in text.strip().split("."))
        return datetime.date(1900 + year if year >= 85 else 2000 + year, month, day)
    except ValueError:
        return None


def _edf_patient(edf, header: dict, start_date: datetime.date | None, problems: list[str]) -> tuple[str | None, float | None]:
    """Sex (`F`/`M`) and age in years from the EDF+ patient field `code sex birthdate name` (`X`: not given), None when
    unknown. In EDF+/BDF+ a sex that is not M, F or X (any case), a birthdate that is not DD-MMM-YYYY, or an age
    outside `AGE_RANGE_YEARS` is listed in `problems` (and unknown); a plain EDF's free-text patient field is used
    only where it happens to follow that form (then a malformed birthdate is listed too)."""
    structured = header["reserved"].upper().startswith(("EDF+", "BDF+"))
    subfields = header["patient"].split()
    sex_text = subfields[1] if len(subfields) > 1 else ""
    birth_text = subfields[2] if len(subfields) > 2 else ""
    where = f"{header.get('path', 'EDF')} patient field"
    patient_sex = None
    if sex_text.lower() in SEX_TEXTS:
        patient_sex = parse_sex(sex_text, "sex", where)
    elif structured and sex_text.upper() != "X":
        problems.append(f"patient sex {sex_text!r} is not M, F or X; sex unknown")
    birthdate = None
    if birth_text and birth_text.upper() != "X":
        try:
            birthdate = edf.patient.birthdate
        except Exception:
            if structured or sex_text.upper() in ("F", "M", "X"):  # the field follows the EDF+ form
                problems.append(f"patient birthdate {birth_text!r} is not a DD-MMM-YYYY date; age unknown")
    patient_age = None
    if birthdate is not None and start_date is not None:
        age = float(start_date.year - birthdate.year - ((start_date.month, start_date.day) < (birthdate.month, birthdate.day)))
        try:
            patient_age = check_number_range(age, "patient age (start date - birthdate)", where,
                                             low=AGE_RANGE_YEARS[0], high=AGE_RANGE_YEARS[1])
        except HeaderFieldError as error:
            problems.append(f"patient age {age:g} years (birthdate {birthdate}, start date {start_date}) {error.problem}; "
                            f"age unknown")
    return patient_sex, patient_age


def _read_edf_recording(path: Path, strict: bool) -> Recording:
    # optional: in a try block, so that transformers' remote-code import check does not require it for array input
    try:
        import edfio
    except ImportError as error:
        raise ImportError(f"reading {path} needs the edfio package (pip install edfio)") from error

    header = _edf_header_fields(path)
    file_format = header["format"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if file_format == "BDF":
                edf = edfio.read_bdf(path)
            else:
                edf = edfio.read_edf(path, lazy_load_data=True)
        except Exception as error:  # edfio raises ValueError / IndexError / UnicodeDecodeError for broken headers
            raise RecordingReadError(
                f"{path}: bad {file_format} header ({type(error).__name__}: {error})", kind="not an EDF/BDF file"
            ) from error
    problems: list[str] = []
    messages = [str(warning.message) for warning in caught]
    incomplete = any("Incomplete data record" in message for message in messages)
    count_mismatch = header["num_records"] != -1 and header["num_records"] != edf.num_data_records
    if incomplete or count_mismatch:
        record_bytes = (path.stat().st_size - header["header_bytes"]) / max(edf.num_data_records, 1)
        problem = (
            f"truncated {file_format} data: the header announces {header['num_records']} data records, the file holds "
            f"{edf.num_data_records} complete record(s){' and an incomplete one' if incomplete else ''} "
            f"({path.stat().st_size} bytes)"
            if incomplete or edf.num_data_records < header["num_records"]
            else f"wrong data record count: the header announces {header['num_records']} data records, the file holds "
            f"{edf.num_data_records} (about {record_bytes:.0f} bytes each)"
        )
        if strict:
            kind = "EDF file truncated" if (incomplete or edf.num_data_records < header["num_records"]) else "EDF record count mismatch"
            raise RecordingReadError(f"{path}: {problem}", kind=kind)
        problems.append(problem)
    if header["reserved"].upper().endswith("+D") and not edf.is_continuous:
        raise RecordingReadError(
            f"{path}: discontinuous {header['reserved']} recording (data records with gaps) is not supported",
            kind="discontinuous EDF+D",
        )
    signals, names, rates, units = [], [], [], []
    ordinary = [entry for entry in header["signals"] if not entry["annotation"]]
    if len(ordinary) != len(edf.signals):  # both read the same labels; a difference means edfio read another header
        raise RecordingReadError(f"{path}: edfio reads {len(edf.signals)} ordinary signals, the header lists "
                                 f"{len(ordinary)}", kind="not an EDF/BDF file")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for signal, entry in zip(edf.signals, ordinary):  # ordinary signals only: annotation channels are not signals
            if entry["skip"]:  # an impossible calibration: the values would not be what the header promises
                problems.append(f"signal {signal.label.strip()!r}: {entry['skip']}; skipped")
                continue
            if not signal.sampling_frequency > 0 or signal.samples_per_data_record == 0:
                problems.append(f"signal {signal.label.strip()!r} holds no samples; skipped")
                continue
            signals.append(np.asarray(signal.data, dtype=np.float32))
            names.append(signal.label.strip())
            rates.append(float(signal.sampling_frequency))
            units.append(signal.physical_dimension.strip())
    problems += [str(warning.message) for warning in caught]
    try:
        annotations = [(float(item.onset), None if item.duration is None else float(item.duration), str(item.text))
                       for item in edf.annotations]
    except Exception as error:  # a broken annotation channel: the signals are still usable
        annotations = []
        problems.append(f"annotations unreadable: {error}")
    start_date = None
    try:
        start_date = edf.startdate
    except Exception:  # EDF+ anonymised start date ('X'): fall back to the legacy dd.mm.yy field
        start_date = _legacy_start_date(header["startdate"])
        if start_date is None:
            problems.append(f"start date {header['startdate'].strip()!r} is not a dd.mm.yy date; start time unknown")
    start_time = None
    try:
        if start_date is not None:
            start_time = datetime.datetime.combine(start_date, edf.starttime)
    except Exception:
        problems.append(f"start time {header['starttime'].strip()!r} is not a hh.mm.ss time; start time unknown")
    patient_sex, patient_age = _edf_patient(edf, header, start_date, problems)
    duration = float(edf.num_data_records * edf.data_record_duration)
    del edf  # releases the memory map
    return Recording(
        signals=signals,
        channel_names=names,
        sampling_rates=rates,
        units=units,
        start_time=start_time,
        duration_seconds=duration,
        annotations=sorted(annotations, key=lambda item: item[0]),
        path=str(path),
        format=header["reserved"] if header["reserved"].upper().startswith(file_format + "+") else file_format,
        skipped_channels=[label for label in header["labels"] if label in ("EDF Annotations", "BDF Annotations")],
        patient_sex=patient_sex,
        patient_age_years=patient_age,
        problems=problems,
    )


def _read_wfdb_recording(record_path: Path) -> Recording:
    try:  # optional, see _read_edf_recording
        import wfdb
    except ImportError as error:
        raise ImportError(f"reading the WFDB record {record_path} needs the wfdb package (pip install wfdb)") from error

    header_path = Path(f"{record_path}.hea")
    if not header_path.is_file():
        raise FileNotFoundError(f"{header_path}: no such WFDB header")
    strict_header = read_wfdb_header(header_path)  # every field checked; wfdb's own parser accepts broken ones
    for spec in strict_header.signals:
        if not (header_path.parent / spec.file_name).is_file():
            raise RecordingReadError(f"{header_path.parent / spec.file_name}: signal file missing ({spec.where})",
                                     kind="signal file missing")
    for file_name in {spec.file_name for spec in strict_header.signals if spec.file_name.lower().endswith(".mat")}:
        check_matlab_v4_signal_file(header_path.parent / file_name, strict_header)  # format, offset and shape
    try:
        header = wfdb.rdheader(str(record_path))
        frames = [int(count or 1) for count in (header.samps_per_frame or [1] * header.n_sig)]
        multi_frequency = any(count != 1 for count in frames)
        record = wfdb.rdrecord(str(record_path), physical=True, smooth_frames=not multi_frequency)
    except Exception as error:  # wfdb raises bare Exceptions / ValueErrors / OSErrors for broken records
        raise RecordingReadError(f"{header_path}: wfdb could not read the record ({type(error).__name__}: {error})") from error
    check_wfdb_reading(strict_header, record)
    if multi_frequency:
        signals = [np.asarray(values, dtype=np.float32) for values in record.e_p_signal]
    else:
        # (num_samples, num_channels) -> one row per channel
        signals = [np.asarray(record.p_signal[:, index], dtype=np.float32) for index in range(record.n_sig)]
    start_time = None
    if record.base_time is not None and record.base_date is not None:
        start_time = datetime.datetime.combine(record.base_date, record.base_time)
    return Recording(
        signals=signals,
        channel_names=[str(name).strip() for name in record.sig_name],
        sampling_rates=[float(record.fs) * count for count in frames],
        units=[str(unit or "").strip() for unit in (record.units or [""] * record.n_sig)],
        start_time=start_time,
        duration_seconds=float(record.sig_len) / float(record.fs),
        path=str(header_path),
        format="WFDB",
        problems=[f"{spec.where}: units missing; WFDB's default mV assumed" for spec in strict_header.signals
                  if spec.units is None],
    )


class PhysioMAEFeatureExtractor(ModalityLayoutMixin, FeatureExtractionMixin):
    r"""
    Turns one overnight recording (named channels at any sampling rate) into PhysioMAE inputs: 30-s windows at
    100 Hz in the model's channel order, with per-window channel and modality masks.

    Steps (`preprocess_record`, then `cut_windows`):

    1. **Channel names.** Every input name is matched to the configured channels, case-insensitively, ignoring
       spaces (`_` and `:` read as `-`, a leading `EEG`/`EOG`/`EMG` word dropped), directly or through the alias
       table below. Names that match nothing are reported as `unknown_channels` and logged as a warning. When
       two inputs map to one channel, an exact canonical name wins over an alias, otherwise the first wins; the
       others are reported as `duplicate_channels`. Configured channels not given are `missing_channels`.
    2. **Non-finite samples** (NaN, +-inf) are counted per channel (`nonfinite_samples`), replaced by linear
       interpolation between the nearest finite samples, and remembered as invalid samples. A channel with no
       finite sample at all is absent.
    3. **Flat channels** are absent and reported in `flat_channels` with the reason: standard deviation at most
       `min_flat_std` (input units), fewer than `min_distinct_values` distinct values over the whole record (a
       disconnected sensor sitting on a few ADC levels; not applied to `quantized_modalities`, i.e. SpO2), or no
       variation left after filtering. A 30-s window in which a channel is exactly constant (peak-to-peak at
       most `min_flat_std`; a detached electrode) is marked invalid like non-finite samples (`flat_windows`
       counts them; again not for `quantized_modalities`, since a stable SpO2 can sit on one value for 30 s).
    4. **Resampling** to `sampling_rate` (100 Hz) with `scipy.signal.resample_poly` by the rational factor
       up/down (e.g. 200 Hz: 1/2, 256 Hz: 25/64, 128 Hz: 25/32, 512 Hz: 25/128); its polyphase FIR is the
       anti-aliasing filter. Each channel is first centred (on its mean) so that the zero padding at the edges
       causes no step.
    5. **Zero-phase band-pass** per modality (`filter_bands`, Butterworth of order `filter_order`, second-order
       sections, `scipy.signal.sosfiltfilt`), applied at the target rate. Resampling first and filtering after
       is equivalent to the reverse order (both are linear and time invariant and every band lies below the new
       Nyquist frequency), halves the work for 200-Hz input, and gives every input rate the same frequency
       response. The high-pass is a Butterworth of order `filter_order // 2`, the low-pass of order
       `filter_order` (both doubled by the forward-backward pass); the recursion runs in float64 (a 0.05-Hz
       pole at 100 Hz is too close to the unit circle for float32), everything else in float32, one channel at
       a time (peak memory: the output plus one channel's temporaries). Default bands: EEG and EOG 0.1-30 Hz and EMG
       and ECG 0.1-45 Hz (the paper's 0.1-70 Hz capped below the 50-Hz Nyquist frequency), respiration
       0.05-5 Hz (breathing and the shape of each breath; slower belt drift removed), SpO2 low-pass 1 Hz only
       (the saturation level is the information).
    6. **Scaling.** `scaling="fixed"`: divide each channel by its entry of `fixed_scales` (the same scale for
       every record, so amplitude differences between recordings and stages survive; defaults in
       `DEFAULT_FIXED_SCALES`, in PhysioNet 2018 units), then clip to +-`clip_value`. On the real excerpts
       the encoders' probes are within the CI of robust scaling (docs/real-data-study.md).
       **Robust scaling per channel per record** (`scaling="robust"`): subtract the median and divide by
       IQR / 1.349 (which equals the standard deviation for Gaussian data), both computed over the whole record
       (valid samples only; at most `statistics_max_samples` evenly spaced samples), never per window, so that
       amplitude differences between windows (sleep stages!) survive. If the IQR is zero (a mostly constant
       channel) the standard deviation is used instead. Values are then clipped to +-`clip_value`.
       `scaling="none"` skips this step.
    7. **Windows** (`cut_windows`): consecutive `window_seconds` windows aligned to the record start; the
       trailing partial window is dropped (counted in the report). A channel is absent in a window if it is
       absent in the record or more than `max_invalid_fraction` of its samples there are invalid. A modality
       is present in a window when any of its channels is; its absent channels then hold zeros (the model
       sees a present modality with a silent channel, which is how a partial montage looks).

    **Files and mixed rates** (`__call__` with a path, `preprocess_recording`, `preprocess_channels`): an EDF/EDF+/BDF
    file or WFDB record is read by `read_recording`; each channel's physical unit is converted to what the scales
    assume (`MODALITY_UNITS`: EEG/EOG/EMG/respiration uV from V/mV/uV/nV, ECG mV, SpO2 %; an empty or unknown unit is
    left as it is and reported in `units_unknown`); channels at different rates are grouped by rate, each group goes
    through steps 2-6 from its own rate, and the groups are merged, trimmed to the common length. Arrays with one
    rate take exactly the path above, unchanged.

    Alias table (canonical name: accepted aliases; canonical names always match themselves):

    | channel | aliases |
    | --- | --- |
    | F3-M2, F4-M1, C3-M2, C4-M1, O1-M2, O2-M1 | F3-A2, F4-A1, C3-A2, C4-A1, O1-A2, O2-A1 |
    | E1-M2 | E1-A2, E1, LOC, LOC-A2, LOC-M2, EOG-L, EOGL, EOG(L), EOG Left |
    | Chin1-Chin2 | Chin, EMG, Chin EMG, EMG Chin, Chin1-Chin3, Chin2-Chin1, Submental EMG |
    | ABD | Abdomen, Abdominal, Abdo, ABDO RES, ABD RES, Effort ABD |
    | CHEST | Thorax, Thoracic, Thor, THOR RES, Effort THO, Effort Chest |
    | AIRFLOW | Flow, Air Flow, Nasal, Nasal Pressure, Nasal Flow, Oronasal Flow, NEW AIR |
    | SaO2 | SpO2, SAO2, Sat, O2 Sat, OSat, SpO2(%) |
    | ECG | EKG, ECG II, EKG II, ECG2, ECG1 |

    Args:
        modalities (`dict[str, list[str]]` or list of `[name, channels]` pairs, *optional*):
            Ordered modalities and their channels; defaults to the configuration's six groups (13 channels).
            Saved as a list of pairs so that the order survives JSON (whose keys are sorted on save).
        sampling_rate (`int`, *optional*, defaults to 100): target rate in Hz.
        window_seconds (`float`, *optional*, defaults to 30.0): window length in seconds.
        filter_bands (`dict[str, list]`, *optional*): modality -> `[high_pass_hz or None, low_pass_hz or None]`;
            a modality not listed is only resampled. Defaults to `DEFAULT_FILTER_BANDS`.
        filter_order (`int`, *optional*, defaults to 4): Butterworth order of the low-pass (the high-pass uses
            half of it: a gentle 0.1-Hz high-pass needs no steep edge); `sosfiltfilt` doubles both.
        scaling (`str`, *optional*, defaults to `"robust"`): `"robust"`, `"fixed"` or `"none"` (see step 6).
        fixed_scales (`dict[str, float]`, *optional*): canonical channel -> scale in input units for
            `scaling="fixed"`; defaults to `DEFAULT_FIXED_SCALES` (channels not listed there are not scaled).
        clip_value (`float`, *optional*, defaults to 20.0): scaled values are clipped to +-clip_value.
        channel_aliases (`dict[str, list[str]]`, *optional*): canonical name -> aliases; defaults to
            `DEFAULT_CHANNEL_ALIASES`.
        min_flat_std (`float`, *optional*, defaults to 1e-6): flatness threshold in input units (see step 3).
        min_distinct_values (`int`, *optional*, defaults to 6): a channel with fewer distinct values over the
            record is flat (see step 3); 0 disables the test.
        quantized_modalities (`list[str]`, *optional*, defaults to `["spo2"]`): exempt from that test.
        max_invalid_fraction (`float`, *optional*, defaults to 0.5): see step 7.
        statistics_max_samples (`int`, *optional*, defaults to 200_000): sample budget of the scaling
            statistics per channel.
    """

    model_input_names = ["input_values", "modality_mask"]

    def __init__(
        self,
        modalities: dict[str, list[str]] | list | None = None,
        sampling_rate: int = 100,
        window_seconds: float = 30.0,
        filter_bands: dict[str, list[float | None]] | None = None,
        filter_order: int = 4,
        scaling: str = "robust",
        fixed_scales: dict[str, float] | None = None,
        clip_value: float = 20.0,
        channel_aliases: dict[str, list[str]] | None = None,
        min_flat_std: float = 1e-6,
        min_distinct_values: int = 6,
        quantized_modalities: list[str] | None = None,
        max_invalid_fraction: float = 0.5,
        statistics_max_samples: int = 200_000,
        **kwargs,
    ):
        kwargs.pop("feature_extractor_type", None)
        super().__init__(**kwargs)
        if modalities is None:
            modalities = DEFAULT_MODALITIES
        pairs = modalities.items() if isinstance(modalities, dict) else modalities
        self.modalities = {str(name): [str(channel) for channel in channels] for name, channels in pairs}
        self.sampling_rate = int(sampling_rate)
        self.window_seconds = float(window_seconds)
        bands = DEFAULT_FILTER_BANDS if filter_bands is None else filter_bands
        self.filter_bands = {str(name): [None if edge is None else float(edge) for edge in band] for name, band in bands.items()}
        self.filter_order = int(filter_order)
        self.scaling = scaling
        self.fixed_scales = {str(name): float(value) for name, value in (DEFAULT_FIXED_SCALES if fixed_scales is None else fixed_scales).items()}
        self.clip_value = float(clip_value)
        aliases = DEFAULT_CHANNEL_ALIASES if channel_aliases is None else channel_aliases
        self.channel_aliases = {str(name): [str(alias) for alias in names] for name, names in aliases.items()}
        self.min_flat_std = float(min_flat_std)
        self.min_distinct_values = int(min_distinct_values)
        self.quantized_modalities = list(DEFAULT_QUANTIZED_MODALITIES if quantized_modalities is None else quantized_modalities)
        self.max_invalid_fraction = float(max_invalid_fraction)
        self.statistics_max_samples = int(statistics_max_samples)
        self._validate()

    # ----------------------------------------------------------------- settings
    def _validate(self) -> None:
        def fail(field_name: str, message: str) -> None:
            raise ValueError(f"PhysioMAEFeatureExtractor.{field_name}: {message}")

        if not self.modalities or any(not channels for channels in self.modalities.values()):
            fail("modalities", "every modality needs at least one channel")
        if len(set(map(normalize_channel_name, self.channel_names))) != self.num_channels:
            fail("modalities", f"a channel appears twice in {self.channel_names}")
        if self.sampling_rate <= 0:
            fail("sampling_rate", f"must be positive, got {self.sampling_rate}")
        if self.window_length <= 0 or not math.isclose(self.window_seconds * self.sampling_rate, self.window_length):
            fail("window_seconds", f"{self.window_seconds} s is not a whole number of samples at {self.sampling_rate} Hz")
        nyquist = self.sampling_rate / 2
        for name, band in self.filter_bands.items():
            if len(band) != 2:
                fail("filter_bands", f"{name!r}: expected [high_pass_hz, low_pass_hz], got {band}")
            high_pass, low_pass = band
            for edge in (high_pass, low_pass):
                if edge is not None and not 0 < edge < nyquist:
                    fail("filter_bands", f"{name!r}: cut-off {edge} Hz must lie in (0, {nyquist}) Hz (Nyquist)")
            if high_pass is not None and low_pass is not None and high_pass >= low_pass:
                fail("filter_bands", f"{name!r}: high-pass {high_pass} Hz is not below low-pass {low_pass} Hz")
        if self.filter_order < 1:
            fail("filter_order", f"must be >= 1, got {self.filter_order}")
        if self.scaling not in SCALING_MODES:
            fail("scaling", f"must be one of {SCALING_MODES}, got {self.scaling!r}")
        for name, value in self.fixed_scales.items():
            if not (math.isfinite(value) and value > 0):
                fail("fixed_scales", f"{name!r}: scale must be a positive number, got {value}")
        if self.clip_value <= 0:
            fail("clip_value", f"must be positive, got {self.clip_value}")
        if not 0 <= self.max_invalid_fraction < 1:
            fail("max_invalid_fraction", f"must lie in [0, 1), got {self.max_invalid_fraction}")
        if self.statistics_max_samples < 100:
            fail("statistics_max_samples", f"must be >= 100, got {self.statistics_max_samples}")

    @classmethod
    def from_config(cls, config, **kwargs) -> "PhysioMAEFeatureExtractor":
        """An extractor whose channels, rate and window match a `PhysioMAEConfig`."""
        return cls(
            modalities=config.modalities,
            sampling_rate=config.sampling_rate,
            window_seconds=config.window_seconds,
            **kwargs,
        )

    def to_dict(self) -> dict[str, Any]:
        output = super().to_dict()
        # JSON files are written with sorted keys: store the ordered modalities as [name, channels] pairs.
        output["modalities"] = [[name, list(channels)] for name, channels in self.modalities.items()]
        return output

    @property
    def channel_modality(self) -> list[str]:
        """Modality of each channel, in channel order."""
        return [name for name, channels in self.modalities.items() for _ in channels]

    # ----------------------------------------------------------------- channel names
    def _alias_lookup(self) -> dict[str, str]:
        """Normalised name -> canonical channel, for the configured channels only."""
        canonical_by_key = {normalize_channel_name(name): name for name in self.channel_names}
        lookup = dict(canonical_by_key)
        for canonical, aliases in self.channel_aliases.items():
            target = canonical_by_key.get(normalize_channel_name(canonical))
            if target is None:
                continue
            for alias in aliases:
                lookup.setdefault(normalize_channel_name(alias), target)
        return lookup

    def map_channel_name(self, name: str) -> str | None:
        """The canonical channel an input name stands for, or None when it matches nothing."""
        lookup = self._alias_lookup()
        key = normalize_channel_name(name)
        if key in lookup:
            return lookup[key]
        without_prefix = _MODALITY_PREFIX.sub("", key).lstrip("-")
        return lookup.get(without_prefix) if without_prefix else None

    def _match_channels(self, channel_names: list[str], log: bool = True) -> tuple[dict[str, int], dict[str, Any]]:
        """Canonical channel -> input row, plus the naming part of the report (`log`: warn about unknown names)."""
        chosen: dict[str, int] = {}
        exact: dict[str, bool] = {}
        unknown, renamed, duplicates = [], {}, {}
        for row, name in enumerate(channel_names):
            canonical = self.map_channel_name(name)
            if canonical is None:
                unknown.append(str(name))
                continue
            is_exact = normalize_channel_name(name) == normalize_channel_name(canonical)
            if canonical in chosen:
                keep_new = is_exact and not exact[canonical]
                loser = channel_names[chosen[canonical]] if keep_new else name
                duplicates.setdefault(canonical, []).append(str(loser))
                if not keep_new:
                    continue
            chosen[canonical] = row
            exact[canonical] = is_exact
        for canonical, row in chosen.items():
            if str(channel_names[row]) != canonical:
                renamed[str(channel_names[row])] = canonical
        if unknown and log:
            logger.warning(
                f"PhysioMAEFeatureExtractor: {len(unknown)} channel(s) match no configured channel or alias and are "
                f"ignored: {unknown} (configured: {self.channel_names})"
            )
        naming_report = {
            "unknown_channels": unknown,
            "renamed": renamed,
            "duplicate_channels": duplicates,
            "missing_channels": [name for name in self.channel_names if name not in chosen],
        }
        return chosen, naming_report

    # ----------------------------------------------------------------- signal steps
    def _resample_factors(self, sampling_rate: float) -> tuple[int, int]:
        ratio = Fraction(self.sampling_rate) / Fraction(sampling_rate).limit_denominator(10_000)
        ratio = ratio.limit_denominator(10_000)
        return ratio.numerator, ratio.denominator

    def _band_pass_sections(self, modality: str) -> np.ndarray | None:
        """Butterworth second-order sections of a modality's band at the target rate (None: no filter)."""
        high_pass, low_pass = self.filter_bands.get(modality, [None, None])
        sections = []
        if high_pass is not None:
            sections.append(
                scipy_signal.butter(
                    max(1, self.filter_order // 2), high_pass, btype="highpass", fs=self.sampling_rate, output="sos"
                )
            )
        if low_pass is not None:
            sections.append(
                scipy_signal.butter(self.filter_order, low_pass, btype="lowpass", fs=self.sampling_rate, output="sos")
            )
        return np.concatenate(sections) if sections else None

    def _statistics_view(self, values: np.ndarray) -> np.ndarray:
        """Evenly spaced samples (at most `statistics_max_samples`) of a 1-D array."""
        stride = max(1, int(math.ceil(values.shape[-1] / self.statistics_max_samples)))
        return values[..., ::stride]

    def _count_distinct_below(self, values: np.ndarray, limit: int) -> bool:
        """True when `values` takes fewer than `limit` distinct values (cheap test on a subsample first)."""
        if limit <= 1:
            return False
        probe_stride = max(1, values.shape[-1] // 10_000)
        if np.unique(values[::probe_stride]).size >= limit:
            return False
        return np.unique(values).size < limit

    def _flat_window_mask(self, values: np.ndarray, sampling_rate: float, num_output_samples: int) -> np.ndarray | None:
        """Target-rate mask of the windows in which the raw channel is exactly constant (None if none is)."""
        window_input_length = self.window_seconds * sampling_rate
        num_windows = int(values.shape[-1] // window_input_length)
        if num_windows == 0:
            return None
        if float(window_input_length).is_integer():
            length = int(window_input_length)
            # (num_samples,) -> (num_windows, window_input_length)
            windows = values[: num_windows * length].reshape(num_windows, length)
            peak_to_peak = windows.max(axis=1) - windows.min(axis=1)
        else:
            edges = np.floor(np.arange(num_windows + 1) * window_input_length).astype(np.int64)
            peak_to_peak = np.array([np.ptp(values[start:stop]) for start, stop in zip(edges[:-1], edges[1:])])
        flat_windows = np.flatnonzero(peak_to_peak <= self.min_flat_std)
        if flat_windows.size == 0:
            return None
        mask = np.zeros(num_output_samples, dtype=bool)
        for window in flat_windows:
            mask[window * self.window_length : (window + 1) * self.window_length] = True
        return mask

    def _to_target_rate_mask(self, mask: np.ndarray, sampling_rate: float, num_output_samples: int) -> np.ndarray:
        """Nearest-preceding-sample map of an input-rate bool mask onto the target-rate sample grid."""
        source_index = np.floor(np.arange(num_output_samples) * (sampling_rate / self.sampling_rate)).astype(np.int64)
        return mask[np.minimum(source_index, mask.shape[-1] - 1)]

    def _robust_center_and_scale(self, values: np.ndarray, valid: np.ndarray | None) -> tuple[float, float]:
        sample = self._statistics_view(values)
        if valid is not None:
            sample = sample[self._statistics_view(valid)]
        if sample.size == 0:
            return 0.0, 0.0
        lower, center, upper = np.percentile(sample, [25.0, 50.0, 75.0])
        scale = (upper - lower) / _GAUSSIAN_IQR
        if not scale > self.min_flat_std:
            scale = float(np.std(sample, dtype=np.float64))
        return float(center), float(scale)

    # ----------------------------------------------------------------- public API
    def preprocess_record(
        self, signals: np.ndarray | list, channel_names: list[str], sampling_rate: float, num_threads: int = 1
    ) -> PreprocessedRecord:
        """
        Clean, filter, resample and scale one whole record (steps 1-6 of the class docstring).

        Args:
            signals (`np.ndarray` of shape `(num_input_channels, num_input_samples)`, or a list of equally long
                1-D arrays): the raw record in any units (one unit per channel), any float/int dtype.
            channel_names (`list[str]`): one name per row of `signals`.
            sampling_rate (`float`): rate of `signals` in Hz.
            num_threads (`int`, *optional*, defaults to 1): channels processed in parallel (the SciPy kernels
                release the GIL). The result does not depend on it. Keep 1 inside multi-process pipelines.

        Returns:
            `PreprocessedRecord`. Its `report` holds: `input_channels`, `input_sampling_rate`, `resample_factors`
            ([up, down]), `num_samples` and `duration_seconds` (at the target rate), `unknown_channels` (list),
            `renamed` (input name -> canonical), `duplicate_channels` (canonical -> ignored input names),
            `missing_channels` (list), `nonfinite_samples` (canonical -> count, every matched channel),
            `flat_channels` (canonical -> reason), `flat_windows` (canonical -> windows exactly constant),
            `absent_channels` (list: missing, flat or without finite samples), `scaling` (canonical ->
            {"offset", "scale"} in input units: output = clip((filtered input - offset) / scale)).
        """
        if len(channel_names) != len(signals):
            raise ValueError(
                f"preprocess_record: {len(signals)} signal rows but {len(channel_names)} channel names "
                f"({list(channel_names)}); signals must be shaped (channels, samples)"
            )
        if not (isinstance(sampling_rate, (int, float, np.integer, np.floating)) and math.isfinite(sampling_rate) and sampling_rate > 0):
            raise ValueError(f"preprocess_record: sampling_rate must be a positive number of Hz, got {sampling_rate!r}")
        lengths = {int(np.shape(row)[-1]) if np.ndim(row) == 1 else -1 for row in signals}
        if len(lengths) != 1 or -1 in lengths:
            shapes = {str(name): np.shape(row) for name, row in zip(channel_names, signals)}
            raise ValueError(f"preprocess_record: every channel must be a 1-D array of the same length, got {shapes}")
        num_input_samples = lengths.pop()
        duration = num_input_samples / sampling_rate
        if duration < self.window_seconds:
            raise ValueError(
                f"preprocess_record: the recording lasts {duration:.2f} s ({num_input_samples} samples at "
                f"{sampling_rate} Hz), shorter than one {self.window_seconds:g}-s window"
            )

        chosen_rows, report = self._match_channels(list(channel_names))
        up, down = self._resample_factors(sampling_rate)
        num_output_samples = int(math.ceil(num_input_samples * up / down))
        report = {
            "input_channels": [str(name) for name in channel_names],
            "input_sampling_rate": float(sampling_rate),
            "resample_factors": [up, down],
            "num_samples": num_output_samples,
            "duration_seconds": num_output_samples / self.sampling_rate,
            **report,
            "nonfinite_samples": {},
            "flat_channels": {},
            "flat_windows": {},
            "absent_channels": [],
            "scaling": {},
        }

        output = np.zeros((self.num_channels, num_output_samples), dtype=np.float32)
        channel_present = np.zeros(self.num_channels, dtype=bool)
        invalid_masks: dict[str, np.ndarray] = {}
        context = _RecordContext(sampling_rate, up, down, num_output_samples, report, invalid_masks)
        channel_modality = self.channel_modality
        sections_by_modality = {modality: self._band_pass_sections(modality) for modality in self.modality_names}

        def process_channel(index: int) -> np.ndarray | None:
            """Steps 2-6 for one channel; only one channel's temporaries are alive per thread."""
            canonical, modality = self.channel_names[index], channel_modality[index]
            values = np.array(signals[chosen_rows[canonical]], dtype=np.float32)  # a private copy
            if not self._clean_channel(values, canonical, modality, context):
                return None
            filtered = self._resample_and_filter(values, sections_by_modality[modality], up, down, num_output_samples)
            del values
            return self._scale_channel(filtered, canonical, context)

        given = [index for index, canonical in enumerate(self.channel_names) if canonical in chosen_rows]
        if num_threads > 1 and len(given) > 1:
            with ThreadPoolExecutor(max_workers=min(num_threads, len(given))) as executor:
                results = executor.map(process_channel, given)
                for index, scaled in zip(given, results):
                    if scaled is not None:
                        output[index] = scaled
                        channel_present[index] = True
        else:
            for index in given:
                scaled = process_channel(index)
                if scaled is not None:
                    output[index] = scaled
                    channel_present[index] = True
        # per-channel entries in channel order, whatever order the threads finished in
        for key in ("nonfinite_samples", "flat_channels", "flat_windows", "scaling"):
            report[key] = {name: report[key][name] for name in self.channel_names if name in report[key]}

        report["absent_channels"] = [name for name, present in zip(self.channel_names, channel_present) if not present]
        return PreprocessedRecord(
            signals=output,
            channel_present=channel_present,
            invalid_sample_masks=invalid_masks,
            channel_names=self.channel_names,
            sampling_rate=self.sampling_rate,
            report=report,
        )

    def _unit_factors(
        self, chosen_rows: dict[str, int], channel_names: list[str], units: list[str | None] | None
    ) -> tuple[list[float], dict[str, dict], dict[str, str]]:
        """
        Conversion of each matched input channel (`chosen_rows`: canonical -> row) to the unit its modality's scales
        assume (`MODALITY_UNITS`: EEG, EOG, EMG, respiration in uV, ECG in mV, SpO2 in %).

        Returns one factor per input row (1.0 for rows that are not used, or whose unit is empty, unknown or of
        another kind), `units` (canonical -> {"unit", "target", "factor"} for converted and already-right channels)
        and `units_unknown` (canonical -> the unit text left as it is).
        """
        factors = [1.0] * len(channel_names)
        converted: dict[str, dict] = {}
        unknown: dict[str, str] = {}
        if units is None:
            return factors, converted, unknown
        if len(units) != len(channel_names):
            raise ValueError(f"{len(units)} units for {len(channel_names)} channels ({list(channel_names)})")
        modality_of = dict(zip(self.channel_names, self.channel_modality))
        for canonical in self.channel_names:
            if canonical not in chosen_rows:
                continue
            row = chosen_rows[canonical]
            unit = units[row]
            target = MODALITY_UNITS.get(modality_of[canonical])
            if target is None:
                continue
            factor = unit_conversion_factor(unit, target)
            if factor is None:
                unknown[canonical] = str(unit or "")
                continue
            factors[row] = factor
            converted[canonical] = {"unit": str(unit), "target": target, "factor": factor}
        if unknown:
            logger.warning(
                f"PhysioMAEFeatureExtractor: unknown or unexpected physical units, values used as they are: {unknown} "
                f"(expected {MODALITY_UNITS})"
            )
        return factors, converted, unknown

    def unit_factors(
        self, channel_names: list[str], units: list[str | None]
    ) -> tuple[list[float], dict[str, dict], dict[str, str]]:
        """
        The unit conversion `preprocess_channels` applies, for channels given with their physical units (e.g. a WFDB
        header's): one factor per input row that turns it into its modality's unit (`MODALITY_UNITS`; 1.0 where
        nothing changes or the row is not used), `units` (canonical -> {"unit", "target", "factor"}) and
        `units_unknown` (canonical -> the unit text that is empty, unknown or not of the expected kind).
        """
        chosen_rows, _ = self._match_channels([str(name) for name in channel_names], log=False)
        return self._unit_factors(chosen_rows, [str(name) for name in channel_names], list(units))

    def preprocess_channels(
        self,
        signals: list,
        channel_names: list[str],
        sampling_rates: list[float],
        units: list[str | None] | None = None,
        num_threads: int = 1,
    ) -> PreprocessedRecord:
        """
        `preprocess_record` for channels with their own rates (and lengths) and physical units, as in EDF files.

        Channels are named as in `preprocess_record` (duplicates resolved over all channels), each matched channel
        is converted to its modality's unit (`MODALITY_UNITS`; values are untouched when the factor is 1), then the
        channels are grouped by rate and each group goes through `preprocess_record` from its own rate to the
        target rate (every step is per channel, so a channel's output does not depend on the other channels).
        The groups are merged into one record, trimmed to the shortest group (at the target rate).

        The report holds `preprocess_record`'s keys over all channels, with `input_sampling_rates` (input name ->
        Hz), `input_sampling_rate` (the highest rate of a matched channel), `resample_factors` ([up, down] for one
        rate, else "rate" -> [up, down]), `units` (canonical -> {"unit", "target", "factor"}), `units_unknown`
        (canonical -> unit text left as it is: empty, unknown, or not of the expected kind) and `trimmed_samples`
        (canonical -> target-rate samples cut from its end to reach the common length; only where not 0). With
        `units=None` the values are used as they are and both unit entries are empty.
        """
        channel_names = [str(name) for name in channel_names]
        if not (len(signals) == len(channel_names) == len(sampling_rates)):
            raise ValueError(
                f"preprocess_channels: {len(signals)} signals, {len(channel_names)} names and {len(sampling_rates)} "
                f"sampling rates; one of each per channel"
            )
        if not signals:
            raise ValueError("preprocess_channels: the recording has no signal")
        rates = []
        for name, rate in zip(channel_names, sampling_rates):
            if not (isinstance(rate, (int, float, np.integer, np.floating)) and math.isfinite(rate) and rate > 0):
                raise ValueError(f"preprocess_channels: sampling rate of {name!r} must be a positive number of Hz, got {rate!r}")
            rates.append(float(rate))
        durations = {name: np.shape(row)[-1] / rate if np.ndim(row) == 1 else None for name, row, rate in zip(channel_names, signals, rates)}
        if any(duration is None for duration in durations.values()):
            raise ValueError(f"preprocess_channels: every channel must be a 1-D array, got shapes {[np.shape(row) for row in signals]}")
        if max(durations.values()) - min(durations.values()) > max(1.0, 1.0 / min(rates)):
            raise ValueError(
                f"preprocess_channels: the channels last different times (seconds: {durations}); channels at different "
                f"rates must cover the same time"
            )
        chosen_rows, naming = self._match_channels(channel_names)
        factors, converted_units, unknown_units = self._unit_factors(chosen_rows, channel_names, units)

        groups: dict[float, list[tuple[str, int]]] = {}
        for canonical in self.channel_names:  # channel order inside each group
            if canonical in chosen_rows:
                row = chosen_rows[canonical]
                groups.setdefault(rates[row], []).append((canonical, row))

        def converted(row: int):
            if factors[row] == 1.0:
                return signals[row]
            return (np.asarray(signals[row], dtype=np.float64) * factors[row]).astype(np.float32)

        # each group: canonical names, so that the per-group matching is exact and logs nothing again
        parts: dict[float, PreprocessedRecord] = {
            rate: self.preprocess_record(
                [converted(row) for _, row in members], [canonical for canonical, _ in members], rate, num_threads=num_threads
            )
            for rate, members in groups.items()
        }
        if parts:
            num_samples = min(part.num_samples for part in parts.values())
        else:  # nothing matched: an all-absent record as long as the longest channel
            durations = [np.shape(row)[-1] / rate for row, rate in zip(signals, rates)]
            if max(durations) < self.window_seconds:
                raise ValueError(
                    f"preprocess_channels: the recording lasts {max(durations):.2f} s, shorter than one "
                    f"{self.window_seconds:g}-s window"
                )
            num_samples = int(math.ceil(max(durations) * self.sampling_rate - 1e-9))

        output = np.zeros((self.num_channels, num_samples), dtype=np.float32)
        channel_present = np.zeros(self.num_channels, dtype=bool)
        invalid_masks: dict[str, np.ndarray] = {}
        merged: dict[str, dict] = {key: {} for key in ("nonfinite_samples", "flat_channels", "flat_windows", "scaling")}
        trimmed: dict[str, int] = {}
        for rate, part in parts.items():
            members = {canonical for canonical, _ in groups[rate]}
            for index, canonical in enumerate(self.channel_names):
                if canonical not in members:
                    continue
                output[index] = part.signals[index, :num_samples]
                channel_present[index] = part.channel_present[index]
                if part.num_samples > num_samples:
                    trimmed[canonical] = part.num_samples - num_samples
                if canonical in part.invalid_sample_masks:
                    invalid_masks[canonical] = part.invalid_sample_masks[canonical][:num_samples]
                for key in merged:
                    if canonical in part.report[key]:
                        merged[key][canonical] = part.report[key][canonical]
        matched_rates = [rates[row] for row in chosen_rows.values()] or rates
        factors_by_rate = {rate: part.report["resample_factors"] for rate, part in parts.items()}
        report = {
            "input_channels": channel_names,
            "input_sampling_rate": max(matched_rates),
            "input_sampling_rates": dict(zip(channel_names, rates)),
            "resample_factors": next(iter(factors_by_rate.values())) if len(factors_by_rate) == 1
            else {f"{rate:g}": value for rate, value in sorted(factors_by_rate.items())},
            "num_samples": num_samples,
            "duration_seconds": num_samples / self.sampling_rate,
            **naming,
            **{key: {name: values[name] for name in self.channel_names if name in values} for key, values in merged.items()},
            "absent_channels": [name for name, present in zip(self.channel_names, channel_present) if not present],
            "units": converted_units,
            "units_unknown": unknown_units,
            "trimmed_samples": trimmed,
        }
        return PreprocessedRecord(
            signals=output,
            channel_present=channel_present,
            invalid_sample_masks=invalid_masks,
            channel_names=self.channel_names,
            sampling_rate=self.sampling_rate,
            report=report,
        )

    def preprocess_recording(
        self, recording: "Recording | str | os.PathLike", channel_map: dict[str, str | None] | None = None, num_threads: int = 1
    ) -> PreprocessedRecord:
        """
        `preprocess_channels` for a `Recording` (or a path, read with `read_recording`): each channel at its own rate,
        converted from its file unit.

        `channel_map` (`{file label: canonical name or None}`) renames channels before the alias matching (a label
        is looked up as written, then normalised like channel names); None drops the channel. The report adds
        `source` (path, format, start time, duration, annotation count, skipped annotation channels, reader
        problems) and `channel_map` (label -> name actually applied). Errors (e.g. a recording shorter than one
        window) are `RecordingReadError`s whose message starts with the file's path.
        """
        if not isinstance(recording, Recording):
            recording = read_recording(recording)
        names, signals, rates, units, applied = self._apply_channel_map(recording, channel_map)
        where = recording.path or "recording"
        if not signals:
            raise RecordingReadError(f"{where}: no signal channel (only {recording.skipped_channels or 'nothing'})", kind="no signal channel")
        try:
            preprocessed = self.preprocess_channels(signals, names, rates, units, num_threads=num_threads)
        except ValueError as error:
            kind = "recording shorter than one window" if "shorter than one" in str(error) else "unusable recording"
            raise RecordingReadError(f"{where}: {error}", kind=kind) from error
        preprocessed.report["channel_map"] = applied
        preprocessed.report["source"] = {
            "path": recording.path,
            "format": recording.format,
            "start_time": recording.start_time.isoformat() if recording.start_time else None,
            "duration_seconds": recording.duration_seconds,
            "num_annotations": len(recording.annotations),
            "skipped_channels": list(recording.skipped_channels),
            "problems": list(recording.problems),
        }
        return preprocessed

    @staticmethod
    def _apply_channel_map(recording: "Recording", channel_map: dict[str, str | None] | None):
        """Names, signals, rates and units after `channel_map` (dropped channels removed), and the renames done."""
        channel_map = dict(channel_map or {})
        normalised = {normalize_channel_name(label): target for label, target in channel_map.items()}
        names, signals, rates, units, applied = [], [], [], [], {}
        for name, values, rate, unit in zip(recording.channel_names, recording.signals, recording.sampling_rates, recording.units):
            if name in channel_map:
                target = channel_map[name]
            elif normalize_channel_name(name) in normalised:
                target = normalised[normalize_channel_name(name)]
            else:
                target = name
            if target != name:
                applied[name] = target
            if target is None or target == "":
                continue
            names.append(str(target))
            signals.append(values)
            rates.append(rate)
            units.append(unit)
        return names, signals, rates, units, applied

    def _clean_channel(self, values: np.ndarray, canonical: str, modality: str, context: "_RecordContext") -> bool:
        """Steps 2-3 for one channel, in place on its float32 row: non-finite repair, flatness, median centring.
        Returns False when the channel is absent (no finite sample, or flat)."""
        report = context.report
        invalid = ~np.isfinite(values)
        num_invalid = int(np.count_nonzero(invalid))
        report["nonfinite_samples"][canonical] = num_invalid
        if num_invalid == values.size:
            report["flat_channels"][canonical] = "no finite sample"
            return False
        if num_invalid:
            positions = np.flatnonzero(~invalid)
            values[invalid] = np.interp(np.flatnonzero(invalid), positions, values[positions])
        reason = self._flatness_reason(values, modality)
        if reason is not None:
            report["flat_channels"][canonical] = reason
            return False
        invalid_mask = None
        if num_invalid:
            invalid_mask = self._to_target_rate_mask(invalid, context.sampling_rate, context.num_output_samples)
        flat_window_mask = None
        if modality not in self.quantized_modalities:  # a stable SpO2 is legitimately constant for 30 s
            flat_window_mask = self._flat_window_mask(values, context.sampling_rate, context.num_output_samples)
        if flat_window_mask is not None:
            report["flat_windows"][canonical] = int(flat_window_mask.sum() // self.window_length)
            invalid_mask = flat_window_mask if invalid_mask is None else invalid_mask | flat_window_mask
        if invalid_mask is not None:
            context.invalid_masks[canonical] = invalid_mask
        # centre (mean of the statistics samples; cheaper than a median and enough for this purpose) so that the
        # zero padding of the resampling filter makes no step at the record edges
        raw_offset = float(np.mean(self._statistics_view(values), dtype=np.float64))
        values -= raw_offset
        context.raw_offsets[canonical] = raw_offset
        return True

    def _scale_channel(self, values: np.ndarray, canonical: str, context: "_RecordContext") -> np.ndarray | None:
        """Step 6 for one filtered channel at the target rate (None: nothing left to scale, the channel is flat)."""
        if self.scaling == "none":
            return values
        if self.scaling == "fixed":
            scale = self.fixed_scales.get(canonical, 1.0)
            context.report["scaling"][canonical] = {"offset": context.raw_offsets.get(canonical, 0.0), "scale": scale}
            scaled = values / scale
            return np.clip(scaled, -self.clip_value, self.clip_value, out=scaled)
        invalid = context.invalid_masks.get(canonical)
        center, scale = self._robust_center_and_scale(values, None if invalid is None else ~invalid)
        if not scale > self.min_flat_std:
            context.report["flat_channels"][canonical] = "no variation after filtering"
            context.invalid_masks.pop(canonical, None)
            return None
        context.report["scaling"][canonical] = {"offset": context.raw_offsets.get(canonical, 0.0) + center, "scale": scale}
        scaled = (values - center) / scale
        return np.clip(scaled, -self.clip_value, self.clip_value, out=scaled)

    def _flatness_reason(self, values: np.ndarray, modality: str) -> str | None:
        """Why a whole channel counts as flat (step 3), or None. The standard deviation is first estimated on
        evenly spaced samples; the exact value is computed only when that estimate is near the threshold."""
        standard_deviation = float(np.std(self._statistics_view(values)))
        if standard_deviation <= 10 * self.min_flat_std:
            standard_deviation = float(np.std(values))
        if not standard_deviation > self.min_flat_std:
            return f"standard deviation {standard_deviation:.3g} <= min_flat_std={self.min_flat_std:g}"
        if modality not in self.quantized_modalities and self._count_distinct_below(values, self.min_distinct_values):
            return f"fewer than min_distinct_values={self.min_distinct_values} distinct values"
        return None

    def _resample_and_filter(
        self, values: np.ndarray, sections: np.ndarray | None, up: int, down: int, num_output_samples: int
    ) -> np.ndarray:
        """Steps 4-5 for one channel: (input samples,) float32 -> (target samples,) float64."""
        if (up, down) != (1, 1):
            values = scipy_signal.resample_poly(values, up, down)
        # float64 for the recursion: a 0.05-Hz pole at 100 Hz is too close to the unit circle for float32
        values = values[:num_output_samples].astype(np.float64)
        if sections is not None:
            values = scipy_signal.sosfiltfilt(sections, values)
        return values

    def cut_windows(
        self, preprocessed: PreprocessedRecord, max_invalid_fraction: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """
        Cut a preprocessed record into consecutive windows aligned to its start (step 7).

        Returns:
            windows (`np.ndarray` of shape `(num_windows, num_channels, window_length)`, float32) and
            channel_mask (`np.ndarray` of shape `(num_windows, num_channels)`, bool). Adds `num_windows`,
            `dropped_trailing_seconds` and `invalid_channel_windows` (canonical -> windows where the channel
            was marked absent for invalid samples) to `preprocessed.report`.
        """
        fraction = self.max_invalid_fraction if max_invalid_fraction is None else max_invalid_fraction
        num_windows = preprocessed.num_samples // self.window_length
        if num_windows == 0:
            raise ValueError(
                f"cut_windows: the record has {preprocessed.num_samples} samples at {preprocessed.sampling_rate} Hz, "
                f"fewer than one window of {self.window_length}"
            )
        usable = num_windows * self.window_length
        num_channels = preprocessed.signals.shape[0]
        # (num_channels, usable) -> (num_channels, num_windows, window_length) -> (num_windows, num_channels, window_length)
        windows = preprocessed.signals[:, :usable].reshape(num_channels, num_windows, self.window_length).transpose(1, 0, 2)
        windows = np.ascontiguousarray(windows)
        channel_mask = np.repeat(preprocessed.channel_present[None, :], num_windows, axis=0)
        invalid_windows = {}
        for canonical, mask in preprocessed.invalid_sample_masks.items():
            index = preprocessed.channel_names.index(canonical)
            # (usable,) -> (num_windows, window_length)
            invalid_share = mask[:usable].reshape(num_windows, self.window_length).mean(axis=1)
            too_invalid = invalid_share > fraction
            channel_mask[too_invalid, index] = False
            windows[too_invalid, index] = 0.0
            invalid_windows[canonical] = int(too_invalid.sum())
        preprocessed.report["num_windows"] = int(num_windows)
        preprocessed.report["dropped_trailing_seconds"] = (preprocessed.num_samples - usable) / preprocessed.sampling_rate
        preprocessed.report["invalid_channel_windows"] = invalid_windows
        return windows, channel_mask

    def modality_mask_from_channel_mask(self, channel_mask: np.ndarray) -> np.ndarray:
        """(num_windows, num_channels) bool -> (num_windows, num_modalities) bool: any channel of the modality."""
        return np.stack(
            [channel_mask[:, channel_slice].any(axis=1) for channel_slice in self.modality_channel_slices.values()],
            axis=1,
        )

    def __call__(
        self,
        recording: "dict[str, np.ndarray] | np.ndarray | str | os.PathLike | Recording",
        sampling_rate: "float | dict[str, float] | None" = None,
        channel_names: list[str] | None = None,
        return_tensors: str | None = "pt",
        return_report: bool = False,
        num_threads: int = 1,
        channel_map: dict[str, str | None] | None = None,
        units: dict[str, str] | None = None,
        **kwargs,
    ) -> BatchFeature:
        """
        Preprocess one recording and cut it into windows.

        Args:
            recording: one of
                - `dict[str, np.ndarray]`: named 1-D channels (of equal length, unless `sampling_rate` is a dict);
                - `np.ndarray` of shape `(num_input_channels, num_samples)` with `channel_names`;
                - a path (`str` / `os.PathLike`) to an EDF/EDF+/BDF file (`.edf`, `.bdf`, `.rec`) or a WFDB record
                  (`NAME.hea` or the record path without extension), read with `read_recording`: every channel at
                  its own rate, converted from its file unit (`MODALITY_UNITS`), annotation channels skipped;
                - a `Recording` (what `read_recording` returns).
            sampling_rate (`float` or `dict[str, float]`): rate of the recording in Hz, or one rate per channel name
                (channels at different rates: each is resampled from its own rate). Must be None for a file or a
                `Recording` (the file gives the rates).
            channel_names (`list[str]`, *optional*): names of the rows of a 2-D `recording`.
            return_tensors (`str`, *optional*, defaults to `"pt"`): `"pt"`, `"np"` or None (numpy arrays).
            return_report (`bool`, *optional*): add the record's `report` dict to the output, with
                `window_onsets_seconds` (onset of each window from the start of the recording).
            num_threads (`int`, *optional*, defaults to 1): see `preprocess_record`.
            channel_map (`dict[str, str | None]`, *optional*): file label -> canonical name (None drops the channel),
                applied before the aliases; for files and `Recording`s (see `preprocess_recording`).
            units (`dict[str, str]`, *optional*): channel name -> physical unit of a dict/array recording; its
                channels are then converted like a file's (`MODALITY_UNITS`). Default: values already in the units of
                `MODALITY_UNITS`.

        Returns:
            `BatchFeature` with `input_values` (num_windows, num_channels, window_length) float32,
            `modality_mask` (num_windows, num_modalities) bool, `channel_mask` (num_windows, num_channels) bool,
            and `report` when asked.

        Raises:
            `FileNotFoundError` / `RecordingReadError` (naming the file) for a missing or unusable file (see
            `read_recording`) or a file shorter than one window; `ValueError` for inconsistent arrays.
        """
        if kwargs:
            raise TypeError(f"PhysioMAEFeatureExtractor got unexpected arguments: {sorted(kwargs)}")
        if is_recording_path(recording) or isinstance(recording, Recording):
            if sampling_rate is not None:
                raise ValueError("sampling_rate must be None when the recording is a file (the file gives each channel's rate)")
            if channel_names is not None or units is not None:
                raise ValueError("channel_names and units must be None when the recording is a file (use channel_map to rename)")
            preprocessed = self.preprocess_recording(recording, channel_map=channel_map, num_threads=num_threads)
        else:
            if channel_map is not None:
                raise ValueError("channel_map is for files; rename the channels of a dict or array recording directly")
            preprocessed = self._preprocess_arrays(recording, sampling_rate, channel_names, units, num_threads)
        windows, channel_mask = self.cut_windows(preprocessed)
        data = {
            "input_values": windows,
            "modality_mask": self.modality_mask_from_channel_mask(channel_mask),
            "channel_mask": channel_mask,
        }
        features = BatchFeature(data=data, tensor_type=return_tensors)
        if return_report:
            preprocessed.report["window_onsets_seconds"] = [index * self.window_seconds for index in range(windows.shape[0])]
            features["report"] = preprocessed.report
        return features

    def _preprocess_arrays(self, recording, sampling_rate, channel_names, units, num_threads: int) -> PreprocessedRecord:
        """`__call__` for a dict or 2-D array recording."""
        per_channel_rates = isinstance(sampling_rate, Mapping)
        if isinstance(recording, dict):
            if channel_names is not None:
                raise ValueError("channel_names must be None when the recording is a dict of named channels")
            channel_names = [str(name) for name in recording]
            rows = [np.asarray(values) for values in recording.values()]
            shapes = {name: row.shape for name, row in zip(channel_names, rows)}
            if any(row.ndim != 1 for row in rows) or (not per_channel_rates and len({row.shape for row in rows}) > 1):
                raise ValueError(f"every channel of the recording must be a 1-D array of the same length, got {shapes}")
            signals = rows
        else:
            signals = np.asarray(recording)
            if signals.ndim != 2:
                raise ValueError(f"recording must be a dict of channels or a 2-D (channels, samples) array, got shape {signals.shape}")
            if channel_names is None:
                raise ValueError("channel_names are required when the recording is an array")
            if len(channel_names) != signals.shape[0]:
                hint = " (is it (samples, channels)? pass recording.T)" if len(channel_names) == signals.shape[1] else ""
                raise ValueError(
                    f"recording has {signals.shape[0]} rows but {len(channel_names)} channel names were given{hint}"
                )
        if sampling_rate is None:
            raise ValueError("sampling_rate (Hz of the recording) is required")
        if not per_channel_rates and units is None:
            return self.preprocess_record(signals, list(channel_names), sampling_rate, num_threads=num_threads)
        names = [str(name) for name in channel_names]
        if per_channel_rates:
            missing = [name for name in names if name not in sampling_rate]
            extra = sorted(set(map(str, sampling_rate)) - set(names))
            if missing or extra:
                raise ValueError(
                    f"sampling_rate dict must give one rate per channel: no rate for {missing}, rates for unknown channels {extra}"
                )
            rates = [sampling_rate[name] for name in names]
        else:
            rates = [sampling_rate] * len(names)
        unit_list = None
        if units is not None:
            unknown = sorted(set(map(str, units)) - set(names))
            if unknown:
                raise ValueError(f"units given for channels the recording does not have: {unknown}")
            unit_list = [units.get(name, "") for name in names]
            # channels without a unit are taken as already in the expected units
            unit_list = [unit if unit else MODALITY_UNITS.get(self._modality_of_name(name), "") for name, unit in zip(names, unit_list)]
        return self.preprocess_channels(list(signals), names, rates, unit_list, num_threads=num_threads)

    def _modality_of_name(self, name: str) -> str | None:
        canonical = self.map_channel_name(name)
        if canonical is None:
            return None
        return dict(zip(self.channel_names, self.channel_modality))[canonical]


__all__ = [
    "DEFAULT_CHANNEL_ALIASES",
    "DEFAULT_FILTER_BANDS",
    "MODALITY_UNITS",
    "PhysioMAEFeatureExtractor",
    "PreprocessedRecord",
    "Recording",
    "RecordingReadError",
    "normalize_channel_name",
    "read_recording",
    "unit_conversion_factor",
]
