"""Reading recordings for PhysioMAE: EDF/EDF+/BDF files and WFDB records -> `Recording`s, every header field parsed
strictly, physical units converted, channel names matched to the model's channels.

What lives here (the feature extractor, `feature_extraction_physiomae.py`, imports it; so do the dataset builders):

- the unit table (`MODALITY_UNITS`, `unit_conversion_factor`);
- channel names: the alias table (`DEFAULT_CHANNEL_ALIASES`), `normalize_channel_name`, `match_channels`,
  `apply_channel_map`;
- strict header and metadata fields (`parse_number`, `parse_sex`, `check_number_range`, `HeaderFieldError`);
- WFDB: `read_wfdb_header`, `check_matlab_v4_signal_file`, `check_wfdb_reading` and the one WFDB signal reader
  (`read_wfdb_record`: the challenge's Matlab v4 files directly, other formats through wfdb);
- EDF/EDF+/BDF: the strict header fields and the edfio reader;
- `read_recording(path)`: either file kind -> `Recording`.

It is copied to the Hub next to the model and imports nothing of ours; edfio and wfdb are imported only when a file
is read.
"""

from __future__ import annotations

import datetime
import math
import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


# ----------------------------------------------------------------------------------------------------------------
# Units
# ----------------------------------------------------------------------------------------------------------------

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


# ----------------------------------------------------------------------------------------------------------------
# Channel names
# ----------------------------------------------------------------------------------------------------------------

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

_MODALITY_PREFIX = re.compile(r"^(eeg|eog|emg)(?=.)")


def normalize_channel_name(name: str) -> str:
    """Key used for channel matching: lower case, no spaces, `_`/`:` read as `-`."""
    key = re.sub(r"\s+", "", str(name)).lower()
    return key.replace("_", "-").replace(":", "-")



def channel_lookup(channel_names: list[str], aliases: Mapping[str, list[str]]) -> dict[str, str]:
    """Normalised name -> canonical channel, for `channel_names` and the aliases (`aliases`: canonical -> names) of
    those of them that `aliases` lists; a canonical name always matches itself and wins over another's alias."""
    canonical_by_key = {normalize_channel_name(name): name for name in channel_names}
    lookup = dict(canonical_by_key)
    for canonical, names in aliases.items():
        target = canonical_by_key.get(normalize_channel_name(canonical))
        if target is None:
            continue
        for alias in names:
            lookup.setdefault(normalize_channel_name(alias), target)
    return lookup


def map_channel_name(name: str, lookup: Mapping[str, str]) -> str | None:
    """The canonical channel an input name stands for in `lookup` (`channel_lookup`), or None: the normalised name
    directly, else without a leading `EEG`/`EOG`/`EMG` word (as in EDF labels such as `EEG C4-A1`)."""
    key = normalize_channel_name(name)
    if key in lookup:
        return lookup[key]
    without_prefix = _MODALITY_PREFIX.sub("", key).lstrip("-")
    return lookup.get(without_prefix) if without_prefix else None


def match_channels(input_names: list[str], channel_names: list[str], aliases: Mapping[str, list[str]]
                   ) -> tuple[dict[str, int], dict[str, Any]]:
    """
    Match input channel names to the canonical `channel_names` (through `aliases`, see `map_channel_name`).

    Returns canonical channel -> input row, and the naming report: `unknown_channels` (input names that match
    nothing), `renamed` (input name -> canonical, where they differ), `duplicate_channels` (canonical -> the input
    names not used: an exact canonical name wins over an alias, otherwise the first wins) and `missing_channels`
    (canonical names no input matched).
    """
    lookup = channel_lookup(channel_names, aliases)
    chosen: dict[str, int] = {}
    exact: dict[str, bool] = {}
    unknown, renamed, duplicates = [], {}, {}
    for row, name in enumerate(input_names):
        canonical = map_channel_name(name, lookup)
        if canonical is None:
            unknown.append(str(name))
            continue
        is_exact = normalize_channel_name(name) == normalize_channel_name(canonical)
        if canonical in chosen:
            keep_new = is_exact and not exact[canonical]
            loser = input_names[chosen[canonical]] if keep_new else name
            duplicates.setdefault(canonical, []).append(str(loser))
            if not keep_new:
                continue
        chosen[canonical] = row
        exact[canonical] = is_exact
    for canonical, row in chosen.items():
        if str(input_names[row]) != canonical:
            renamed[str(input_names[row])] = canonical
    naming_report = {
        "unknown_channels": unknown,
        "renamed": renamed,
        "duplicate_channels": duplicates,
        "missing_channels": [name for name in channel_names if name not in chosen],
    }
    return chosen, naming_report


def channel_unit_factors(chosen_rows: Mapping[str, int], input_names: list[str], units: list[str | None] | None,
                         modality_of: Mapping[str, str]) -> tuple[list[float], dict[str, dict], dict[str, str]]:
    """
    Conversion of each matched input channel (`chosen_rows`: canonical -> row) to the unit its modality is scaled in
    (`MODALITY_UNITS`; `modality_of`: canonical -> modality).

    Returns one factor per input row (1.0 for rows that are not used, or whose unit is empty, unknown or of another
    kind), `units` (canonical -> {"unit", "target", "factor"} for converted and already-right channels) and
    `units_unknown` (canonical -> the unit text left as it is). `units=None`: nothing is converted.
    """
    factors = [1.0] * len(input_names)
    converted: dict[str, dict] = {}
    unknown: dict[str, str] = {}
    if units is None:
        return factors, converted, unknown
    if len(units) != len(input_names):
        raise ValueError(f"{len(units)} units for {len(input_names)} channels ({list(input_names)})")
    for canonical, modality in modality_of.items():
        target = MODALITY_UNITS.get(modality)
        if canonical not in chosen_rows or target is None:
            continue
        row = chosen_rows[canonical]
        factor = unit_conversion_factor(units[row], target)
        if factor is None:
            unknown[canonical] = str(units[row] or "")
            continue
        factors[row] = factor
        converted[canonical] = {"unit": str(units[row]), "target": target, "factor": factor}
    return factors, converted, unknown


def apply_channel_map(recording: "Recording", channel_map: Mapping[str, str | None] | None):
    """A recording's names, signals, rates and units after `channel_map` ({file label: canonical name or None}; a
    label is looked up as written, then normalised; None or "" drops the channel), and the renames done."""
    channel_map = dict(channel_map or {})
    normalised = {normalize_channel_name(label): target for label, target in channel_map.items()}
    names, signals, rates, units, applied = [], [], [], [], {}
    for name, values, rate, unit in zip(recording.channel_names, recording.signals, recording.sampling_rates,
                                        recording.units):
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


# ----------------------------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------------------------

class RecordingReadError(ValueError):
    """A recording file that cannot be used: not an EDF/BDF/WFDB file, a bad header, truncated data records, a data
    record count that disagrees with the file, a discontinuous EDF+D, or a recording shorter than one window. The
    message starts with the file's path; `kind` is a short category (used by the builders' reports), `field` the
    header field at fault (None when the problem is not one field)."""

    def __init__(self, message: str, kind: str = "unreadable recording", field: str | None = None):
        super().__init__(message)
        self.kind, self.field = kind, field

    def __reduce__(self):  # picklable with its kind and field (e.g. across a process pool)
        return type(self), (str(self), self.kind, self.field)


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
        super().__init__(message, kind=kind, field=self.field)

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


# ----------------------------------------------------------------------------------------------------------------
# Recordings: either file kind -> `Recording`
# ----------------------------------------------------------------------------------------------------------------

@dataclass
class Recording:
    """
    One recording as read from a file by `read_recording`: physical values, one rate and unit per channel.

    Args:
        signals (`list[np.ndarray]`, or `np.ndarray` of shape `(num_channels, num_samples)`): one 1-D float32
            array per channel, in physical units (EDF: digital values calibrated with the header's physical/digital
            ranges; WFDB: `wfdb.rdrecord`'s physical values, NaN where the file holds WFDB's invalid value). Channels
            may differ in rate and so in length; a WFDB record with one rate gives one 2-D array (its rows).
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

    signals: list[np.ndarray] | np.ndarray
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


RECORDING_SUFFIXES = (".edf", ".bdf", ".rec")  # EDF/EDF+ (.edf, .rec) and BDF/BDF+ (.bdf), case-insensitive


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
        return read_wfdb_record(path.with_suffix(""))
    if path.suffix.lower() in RECORDING_SUFFIXES:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such EDF/BDF file")
        return _read_edf_recording(path, strict)
    if Path(f"{path}.hea").is_file():
        return read_wfdb_record(path)
    if path.is_file():
        return _read_edf_recording(path, strict)
    raise FileNotFoundError(
        f"{path}: no such recording (EDF/BDF: a .edf/.bdf/.rec file; WFDB: NAME.hea or the record path without extension)"
    )


# ----------------------------------------------------------------------------------------------------------------
# EDF/EDF+/BDF files
# ----------------------------------------------------------------------------------------------------------------

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


# ----------------------------------------------------------------------------------------------------------------
# WFDB records: the one signal reader
# ----------------------------------------------------------------------------------------------------------------

WFDB_INVALID_SAMPLE = -32768
"""Format 16's "no data" value; read as NaN (as `wfdb.rdrecord` does)."""


def _is_challenge_matlab_record(header: WfdbHeader) -> bool:
    """Every signal in one `.mat` file in format 16, one sample per frame, unskewed: the challenge's `16+24` layout,
    read directly."""
    files = {spec.file_name for spec in header.signals}
    return (len(files) == 1 and next(iter(files)).lower().endswith(".mat")
            and all(spec.format == 16 and spec.samples_per_frame == 1 and not spec.skew for spec in header.signals))


def _check_initial_values_and_checksums(digital: np.ndarray, header: WfdbHeader, signal_path: Path) -> None:
    """The header's initial value and checksum (16-bit sum) of every signal must be those of the samples: otherwise
    header and signal file do not belong together (all 2,249 real excerpts agree)."""
    checksums = (digital.sum(axis=1, dtype=np.int64) + 32768) % 65536 - 32768
    for channel, spec in enumerate(header.signals):
        if spec.initial_value is not None and digital.shape[1] and spec.initial_value != int(digital[channel, 0]):
            raise RecordingReadError(
                f"{spec.where}: initial value {spec.initial_value} but the first sample in {signal_path} is "
                f"{int(digital[channel, 0])} (header does not match signal file)",
                kind="header does not match signal file", field="initial value")
        if spec.checksum is not None and spec.checksum % 65536 != int(checksums[channel]) % 65536:  # signed or not
            raise RecordingReadError(
                f"{spec.where}: checksum {spec.checksum} but the samples in {signal_path} sum to {int(checksums[channel])} "
                f"(mod 2^16; header does not match signal file)",
                kind="header does not match signal file", field="checksum")


def _read_challenge_matlab(header: WfdbHeader, header_path: Path) -> np.ndarray:
    """The physical signals of a challenge `16+24` record as float32 (channels, samples): the int16 matrix read once
    (after `check_matlab_v4_signal_file`), initial values and checksums checked, and each channel converted as
    `wfdb.rdrecord` does, `(digital - baseline) / gain` in float64 then float32 (the same values, one channel's
    float64 at a time), WFDB's invalid sample as NaN."""
    signal_path = header_path.parent / header.signals[0].file_name
    data_offset, rows, columns = check_matlab_v4_signal_file(signal_path, header)
    # column-major (channels x samples) Matlab matrix = interleaved samples: (num_samples, num_channels) memmap
    # -> (num_channels, num_samples) int16 in memory
    digital = np.ascontiguousarray(
        np.memmap(signal_path, dtype="<i2", mode="r", offset=data_offset, shape=(columns, rows)).T)
    _check_initial_values_and_checksums(digital, header, signal_path)
    signals = np.empty(digital.shape, dtype=np.float32)
    for channel, spec in enumerate(header.signals):
        physical = (digital[channel].astype(np.float64) - spec.baseline) / spec.gain
        physical[digital[channel] == WFDB_INVALID_SAMPLE] = np.nan
        signals[channel] = physical
    return signals


def read_wfdb_record(record_path: str | os.PathLike, header: WfdbHeader | None = None) -> Recording:
    """
    Read a WFDB record (`record_path`: the record path without extension) into a `Recording`.

    The header is parsed strictly (`read_wfdb_header`, or `header` when the caller parsed it already), every signal
    file must exist and every `.mat` file match its Matlab header (`check_matlab_v4_signal_file`). The challenge's
    layout (every signal in one `.mat` file, format 16, one sample per frame) is read directly, its initial values
    and checksums checked against the samples; other records through `wfdb.rdrecord` (multi-frequency records keep
    each channel's own rate), whose reading of the header must agree with ours (`check_wfdb_reading`). Values are
    `(digital - baseline) / gain` as `wfdb.rdrecord` computes them, NaN where the file holds WFDB's invalid value;
    with one rate, `Recording.signals` is one float32 (channels, samples) array. A missing unit reads as WFDB's
    default mV (listed in `problems`).

    Raises `FileNotFoundError` for a missing header, `HeaderFieldError` for a malformed or impossible field and
    `RecordingReadError` (naming the file) for a missing, truncated or mismatched signal file.
    """
    try:  # optional, see _read_edf_recording
        import wfdb
    except ImportError as error:
        raise ImportError(f"reading the WFDB record {record_path} needs the wfdb package (pip install wfdb)") from error

    header_path = Path(f"{os.fspath(record_path)}.hea")
    if header is None:
        if not header_path.is_file():
            raise FileNotFoundError(f"{header_path}: no such WFDB header")
        header = read_wfdb_header(header_path)  # every field checked; wfdb's own parser accepts broken ones
    for spec in header.signals:
        if not (header_path.parent / spec.file_name).is_file():
            raise RecordingReadError(f"{header_path.parent / spec.file_name}: signal file missing ({spec.where})",
                                     kind="signal file missing")
    try:
        wfdb_header = wfdb.rdheader(str(record_path))
    except Exception as error:  # wfdb raises bare Exceptions / ValueErrors / OSErrors for broken records
        raise RecordingReadError(f"{header_path}: wfdb could not read the header ({type(error).__name__}: {error})") from error
    check_wfdb_reading(header, wfdb_header)
    frames = [int(count or 1) for count in (wfdb_header.samps_per_frame or [1] * wfdb_header.n_sig)]
    if header.num_segments is None and _is_challenge_matlab_record(header):
        signals = _read_challenge_matlab(header, header_path)
        num_samples = signals.shape[1]
    else:
        for file_name in {spec.file_name for spec in header.signals if spec.file_name.lower().endswith(".mat")}:
            check_matlab_v4_signal_file(header_path.parent / file_name, header)  # format, offset and shape
        multi_frequency = any(count != 1 for count in frames)
        try:
            record = wfdb.rdrecord(str(record_path), physical=True, smooth_frames=not multi_frequency)
        except Exception as error:
            raise RecordingReadError(f"{header_path}: wfdb could not read the record ({type(error).__name__}: {error})") from error
        check_wfdb_reading(header, record)
        num_samples = record.sig_len
        if multi_frequency:
            signals = [np.asarray(values, dtype=np.float32) for values in record.e_p_signal]
        else:  # (num_samples, num_channels) -> (num_channels, num_samples)
            signals = np.ascontiguousarray(record.p_signal.T, dtype=np.float32)
    start_time = None
    if wfdb_header.base_time is not None and wfdb_header.base_date is not None:
        start_time = datetime.datetime.combine(wfdb_header.base_date, wfdb_header.base_time)
    return Recording(
        signals=signals,
        channel_names=[str(name).strip() for name in wfdb_header.sig_name],
        sampling_rates=[float(wfdb_header.fs) * count for count in frames],
        units=[str(unit or "").strip() for unit in (wfdb_header.units or [""] * wfdb_header.n_sig)],
        start_time=start_time,
        duration_seconds=float(num_samples) / float(wfdb_header.fs),
        path=str(header_path),
        format="WFDB",
        problems=[f"{spec.where}: units missing; WFDB's default mV assumed" for spec in header.signals
                  if spec.units is None],
    )


__all__ = [
    "DEFAULT_CHANNEL_ALIASES",
    "MODALITY_UNITS",
    "HeaderFieldError",
    "Recording",
    "RecordingReadError",
    "WfdbHeader",
    "apply_channel_map",
    "check_matlab_v4_signal_file",
    "match_channels",
    "normalize_channel_name",
    "parse_number",
    "parse_sex",
    "read_recording",
    "read_wfdb_header",
    "read_wfdb_record",
    "unit_conversion_factor",
]
