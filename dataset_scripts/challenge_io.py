"""Writers for the PhysioNet/CinC Challenge 2018 record layout.

One record folder holds (names as in the challenge, e.g. ``tr03-0005``):

- ``NAME.hea``: WFDB header, CRLF line ends, every signal in format ``16+24`` (16-bit, byte offset 24)
  of the one file ``NAME.mat``, e.g. ``NAME.mat 16+24 655.35(-32768)/% 16 0 30496 9703 0 SaO2``
  (gain(baseline)/units, ADC resolution 16, ADC zero 0, initial value, checksum, block size 0).
- ``NAME.mat``: a Matlab v4 file: 20-byte header (type 30 = little-endian int16, rows = channels,
  columns = samples, no imaginary part, name length 4) + ``b"val\\0"`` + the int16 samples stored
  column-major, i.e. frame by frame: exactly WFDB format 16 at byte offset 24.
- ``NAME.arousal`` (labelled records only): WFDB annotations, all of type ``"`` (note). Stages
  ``W N1 N2 N3 R`` as aux text at each stage change (channel 0, subtype W=5 N1=3 N2=2 N3=1 R=4);
  events as a pair ``(name`` ... ``name)`` (channel 1, subtype 2k / 2k+1 with k the event's index in
  :data:`EVENT_NAMES`). All of these codes are read off the real ``tr03-0005.arousal``.
- ``NAME-arousal.mat`` (labelled records only): MATLAB 7.3 (HDF5 with a 512-byte MATLAB user block):
  ``data/arousals`` (N x 1 float64: +1 target arousal, 0 not arousal, -1 not scored) and
  ``data/sleep_stages/{wake,nonrem1,nonrem2,nonrem3,rem,undefined}`` (1 x N uint8, MATLAB ``logical``).

Label convention of the masks (reproduces the real ``tr03-0005-arousal.mat`` sample for sample
from its ``.arousal`` notes, see :func:`stage_masks_from_notes` and :func:`arousal_mask_from_labels`):

- a stage note at sample ``s`` marks the stage masks from sample ``s - 1`` (the challenge's
  MATLAB off-by-one) up to one sample before the next stage note; samples before the first note
  and the very last sample are ``undefined``;
- ``arousals``: 0 everywhere, +1 on ``[start - 2 s - 1, end + 10 s)`` of every ``arousal_*`` event,
  then -1 on ``[start - 10 s - 1, end + 10 s)`` of every ``resp_*`` event and of every wake run of
  the stage masks (-1 wins over +1). Undefined stage stays 0 (as in the real file).

Known reader trap: ``wfdb.rdann`` drops every note at sample 0 (it takes them for header
definitions). The notes are written there anyway, like the challenge files; the masks keep them.

The label convention itself (stage note spellings and subtypes, event note spelling and subtypes,
channels, mask names and field order, the padding/off-by-one rule) is defined once in
:mod:`dataset_scripts.challenge_format`, which the reader (:mod:`dataset_scripts.labels`) uses too;
the names this module always exported (``STAGE_NAMES``, ``STAGE_SUBTYPES``, ``STAGE_MASK_NAMES``, ...)
are re-exported from there.

Every file is written atomically (temporary file in the same folder, then ``os.replace``). Before anything is
written, :func:`check_header_fields` refuses a header the reader would refuse (gain not > 0, non-integer
baseline, impossible sampling frequency, empty units or channel name).
"""

from __future__ import annotations

import os
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from dataset_scripts.files import atomic_path, atomic_write_text

# The label convention (note spellings, subtypes, channels, mask names and the mask rule) lives in
# challenge_format, shared with the reader (dataset_scripts/labels.py); re-exported here under the
# names this module has always had.
from dataset_scripts.challenge_format import (  # noqa: F401  (re-exported)
    ANNOTATION_EXTENSION,
    AROUSAL_MASK_FIELD,
    AROUSAL_PAD_AFTER_SECONDS,
    AROUSAL_PAD_BEFORE_SECONDS,
    EVENT_CHANNEL,
    EVENT_NAMES,
    MASK_FILE_SUFFIX,
    MASK_STRUCT,
    MASK_STRUCT_FIELDS,
    NOT_SCORED,
    NOT_SCORED_EVENT_PREFIX,
    NOT_SCORED_PAD_AFTER_SECONDS as UNSCORED_PAD_AFTER_SECONDS,
    NOT_SCORED_PAD_BEFORE_SECONDS as UNSCORED_PAD_BEFORE_SECONDS,
    NOTE_SYMBOL,
    STAGE_CHANNEL,
    STAGE_MASK_GROUP,
    STAGE_MASK_NAMES,
    STAGE_MASK_ORDER,
    STAGE_MASK_TO_CLASS,
    STAGE_NOTE_TO_CLASS,
    STAGE_NOTES as STAGE_NAMES,
    STAGE_SUBTYPES,
    TARGET_AROUSAL,
    TARGET_AROUSAL_PREFIX,
    UNDEFINED_STAGE,
    arousal_span,
    event_notes,
    event_subtypes,
    not_scored_span,
    stage_span,
)

MATLAB_V4_INT16_TYPE = 30
"""Matlab v4 type code: M=0 (IEEE little endian), O=0, P=3 (int16), T=0 (numeric matrix)."""

MATLAB_V4_HEADER_BYTES = 24
"""5 int32 fields + b"val\\0": the ``+24`` of format ``16+24``."""

DIGITAL_MIN = -32767
DIGITAL_MAX = 32767
"""-32768 is WFDB's "invalid sample" value in format 16; valid samples stay above it."""

MATLAB_USER_BLOCK_BYTES = 512
DEFAULT_MATLAB_CREATED = "Thu Apr 19 16:38:42 2018"
"""Creation date written into the MATLAB 7.3 text header (fixed so that files are reproducible)."""

@dataclass
class RecordPaths:
    """Files written for one record (``arousal``/``arousal_mat`` are None for unlabelled records)."""

    header: Path
    signals: Path
    arousal: Path | None = None
    arousal_mat: Path | None = None


# --------------------------------------------------------------------------------------------
# atomic writes
# --------------------------------------------------------------------------------------------


# atomic_path, atomic_write_text: dataset_scripts.files (imported above; physiomae.io re-exports them)


# --------------------------------------------------------------------------------------------
# signals: digital conversion, .mat and .hea
# --------------------------------------------------------------------------------------------


def physical_to_digital(
    physical: np.ndarray, gains: Sequence[float], baselines: Sequence[int]
) -> np.ndarray:
    """Convert physical values (samples, channels) to int16 digital values.

    ``digital = round(physical * gain + baseline)``, clipped to [-32767, 32767] (-32768 is the WFDB
    invalid-sample marker); NaN becomes -32768 (read back as NaN by wfdb). Works channel by channel
    so that an 8-hour record never needs a float64 copy of all channels at once.
    """
    physical = np.asarray(physical)
    if physical.ndim != 2 or physical.shape[1] != len(gains) or len(baselines) != len(gains):
        raise ValueError(
            f"physical_to_digital: signals must be (samples, channels={len(gains)}) with one baseline "
            f"per channel, got shape {physical.shape} and {len(baselines)} baselines"
        )
    digital = np.empty(physical.shape, dtype=np.int16)
    for channel, (gain, baseline) in enumerate(zip(gains, baselines)):
        scaled = np.rint(physical[:, channel].astype(np.float64) * float(gain) + float(baseline))
        not_finite = ~np.isfinite(scaled)
        np.clip(scaled, DIGITAL_MIN, DIGITAL_MAX, out=scaled)
        scaled[not_finite] = -32768
        digital[:, channel] = scaled
    return digital


def wfdb_checksums(digital: np.ndarray) -> np.ndarray:
    """Per-channel WFDB checksum: the 16-bit signed sum of all samples of the channel."""
    sums = digital.sum(axis=0, dtype=np.int32).astype(np.int64)  # wraps mod 2**32: keeps the sum mod 2**16
    return (sums + 32768) % 65536 - 32768


def matlab_v4_header(number_of_samples: int, number_of_channels: int) -> bytes:
    """The 24 header bytes of a Matlab v4 file holding int16 ``val`` of shape (channels, samples)."""
    fields = struct.pack(
        "<5i", MATLAB_V4_INT16_TYPE, number_of_channels, number_of_samples, 0, len(b"val\0")
    )
    return fields + b"val\0"


def write_matlab_v4(path: str | os.PathLike, digital: np.ndarray) -> Path:
    """Write ``NAME.mat``: Matlab v4 ``val`` = digital.T (channels, samples) int16, atomically."""
    # (samples, channels) in C order == (channels, samples) in Matlab's column-major order.
    samples = np.ascontiguousarray(digital, dtype="<i2")
    with atomic_path(path) as temporary_path:
        with open(temporary_path, "wb") as handle:
            handle.write(matlab_v4_header(*samples.shape))
            handle.write(memoryview(samples).cast("B"))
    return Path(path)


def format_gain(gain: float, baseline: int, units: str) -> str:
    """WFDB gain field, e.g. ``1/uV``, ``1000/mV``, ``655.35(-32768)/%`` (baseline only if not 0)."""
    gain_text = f"{float(gain):.12g}"
    baseline_text = f"({int(baseline)})" if int(baseline) != 0 else ""
    return f"{gain_text}{baseline_text}/{units}"


def header_text(
    record_name: str,
    digital: np.ndarray,
    channel_names: Sequence[str],
    units: Sequence[str],
    gains: Sequence[float],
    baselines: Sequence[int],
    fs: int,
) -> str:
    """The ``.hea`` text (``\\n`` line ends; the writer turns them into CRLF)."""
    number_of_samples, number_of_channels = digital.shape
    lines = [f"{record_name} {number_of_channels} {fs:g} {number_of_samples}"]
    checksums = wfdb_checksums(digital)
    initial_values = digital[0] if number_of_samples else np.zeros(number_of_channels, np.int16)
    for channel in range(number_of_channels):
        lines.append(
            f"{record_name}.mat 16+24 "
            f"{format_gain(gains[channel], baselines[channel], units[channel])} 16 0 "
            f"{int(initial_values[channel])} {int(checksums[channel])} 0 {channel_names[channel]}"
        )
    return "\n".join(lines) + "\n"


def write_signals(
    record_dir: str | os.PathLike,
    record_name: str,
    digital: np.ndarray,
    channel_names: Sequence[str],
    units: Sequence[str],
    gains: Sequence[float],
    baselines: Sequence[int],
    fs: int = 200,
) -> tuple[Path, Path]:
    """Write ``NAME.mat`` (Matlab v4 int16) and ``NAME.hea`` (CRLF); return (header, signals) paths."""
    record_dir = Path(record_dir)
    signals_path = write_matlab_v4(record_dir / f"{record_name}.mat", digital)
    text = header_text(record_name, digital, channel_names, units, gains, baselines, fs)
    header_path = atomic_write_text(record_dir / f"{record_name}.hea", text, line_end="\r\n")
    return header_path, signals_path


# --------------------------------------------------------------------------------------------
# labels: .arousal notes, masks, -arousal.mat
# --------------------------------------------------------------------------------------------


# event_subtypes: challenge_format (imported above)


def annotation_rows(
    stage_notes: Sequence[tuple[int, str]], events: Sequence[tuple[int, int, str]]
) -> list[tuple[int, str, int, int]]:
    """All notes as (sample, aux_note, subtype, channel), sorted by sample (stable)."""
    rows = []
    for sample, stage in stage_notes:
        if stage not in STAGE_SUBTYPES:
            raise ValueError(f"unknown stage {stage!r} at sample {sample}; expected {STAGE_NAMES}")
        rows.append((int(sample), stage, STAGE_SUBTYPES[stage], STAGE_CHANNEL))
    for start, end, event_name in events:
        if end < start:
            raise ValueError(f"event {event_name!r} ends ({end}) before it starts ({start})")
        open_subtype, close_subtype = event_subtypes(event_name)
        open_note, close_note = event_notes(event_name)
        rows.append((int(start), open_note, open_subtype, EVENT_CHANNEL))
        rows.append((int(end), close_note, close_subtype, EVENT_CHANNEL))
    return sorted(rows, key=lambda row: row[0])


def write_annotations(
    record_dir: str | os.PathLike,
    record_name: str,
    stage_notes: Sequence[tuple[int, str]],
    events: Sequence[tuple[int, int, str]] = (),
    fs: int = 200,
    extension: str = ANNOTATION_EXTENSION,
) -> Path:
    """Write ``NAME.arousal`` with ``wfdb.wrann`` (notes at sample 0 included), atomically."""
    import wfdb

    rows = annotation_rows(stage_notes, events)
    if not rows:
        raise ValueError(f"{record_name}: no stage notes or events to write")
    record_dir = Path(record_dir)
    record_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".wrann-", dir=record_dir) as temporary_dir:
        wfdb.wrann(
            record_name,
            extension,
            sample=np.array([row[0] for row in rows], dtype=np.int64),
            symbol=[NOTE_SYMBOL] * len(rows),
            subtype=np.array([row[2] for row in rows], dtype=np.int64),
            chan=np.array([row[3] for row in rows], dtype=np.int64),
            num=np.zeros(len(rows), dtype=np.int64),
            aux_note=[row[1] for row in rows],
            fs=fs,
            write_dir=temporary_dir,
        )
        final_path = record_dir / f"{record_name}.{extension}"
        os.replace(Path(temporary_dir) / f"{record_name}.{extension}", final_path)
    return final_path


def stage_masks_from_notes(
    stage_notes: Sequence[tuple[int, str]], number_of_samples: int
) -> dict[str, np.ndarray]:
    """Per-sample stage masks (uint8, one per ``data/sleep_stages`` name) from stage notes.

    Real convention: the stage of a note at sample ``s`` starts at ``s - 1`` (clipped at 0) and
    lasts until one sample before the next stage note; samples before the first note and the last
    sample of the record are ``undefined``. Exactly one mask is 1 at every sample.
    """
    stage_index = np.full(number_of_samples, UNDEFINED_STAGE, dtype=np.int8)
    ordered = sorted((int(sample), stage) for sample, stage in stage_notes)
    for position, (sample, stage) in enumerate(ordered):
        if stage not in STAGE_SUBTYPES:
            raise ValueError(f"unknown stage {stage!r} at sample {sample}; expected {STAGE_NAMES}")
        next_sample = ordered[position + 1][0] if position + 1 < len(ordered) else number_of_samples
        first, end = stage_span(sample, next_sample)
        stage_index[first:end] = STAGE_NOTE_TO_CLASS[stage]
    if number_of_samples:
        stage_index[-1] = UNDEFINED_STAGE
    # wake, nonrem1, nonrem2, nonrem3, rem, undefined: the reader's table, so both agree on the codes
    return {name: (stage_index == code).astype(np.uint8) for name, code in STAGE_MASK_TO_CLASS.items()}


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Starts and (exclusive) ends of the runs of True in a boolean vector."""
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)


def arousal_mask_from_labels(
    events: Sequence[tuple[int, int, str]],
    stage_masks: dict[str, np.ndarray],
    fs: int = 200,
) -> np.ndarray:
    """Per-sample ``arousals`` (float64: +1/0/-1) as the challenge derives it (see module doc)."""
    wake = stage_masks[STAGE_MASK_NAMES["W"]]
    number_of_samples = len(wake)
    mask = np.zeros(number_of_samples, dtype=np.float64)
    for start, end, event_name in events:
        if event_name.startswith(TARGET_AROUSAL_PREFIX):
            first, last = arousal_span(start, end, fs)
            mask[first:last] = TARGET_AROUSAL
    for start, end, event_name in events:
        if event_name.startswith(NOT_SCORED_EVENT_PREFIX):
            first, last = not_scored_span(start, end, fs)
            mask[first:last] = NOT_SCORED
    for start, end in zip(*_runs(wake.astype(bool))):
        first, last = not_scored_span(start, end, fs)
        mask[first:last] = NOT_SCORED
    return mask


def _matlab_fields(names: Iterable[str]) -> np.ndarray:
    """``MATLAB_fields`` attribute value: a vlen array of single-character byte arrays."""
    import h5py

    values = np.empty(len(list(names)), dtype=h5py.vlen_dtype(np.dtype("S1")))
    for position, name in enumerate(names):
        values[position] = np.array([character.encode() for character in name], dtype="S1")
    return values


def _matlab_user_block(created: str) -> bytes:
    """The 128-byte MATLAB 7.3 text header at the start of the 512-byte HDF5 user block."""
    text = f"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: {created} HDF5 schema 1.00 .".encode()
    text = text.ljust(116, b" ")
    return text + b"\0" * 8 + struct.pack("<H", 0x0200) + b"IM"


def _chunk_rows(number_of_samples: int, bytes_per_sample: int) -> int:
    """Chunk length near 64 KiB (as in the real file), never longer than the data."""
    return max(1, min(number_of_samples, 65_456 // bytes_per_sample))


def write_arousal_masks(
    record_dir: str | os.PathLike,
    record_name: str,
    arousal_mask: np.ndarray,
    stage_masks: dict[str, np.ndarray],
    created: str = DEFAULT_MATLAB_CREATED,
) -> Path:
    """Write ``NAME-arousal.mat`` (MATLAB 7.3 / HDF5) like the real challenge file, atomically."""
    import h5py

    number_of_samples = len(arousal_mask)
    for name in STAGE_MASK_ORDER:
        if name not in stage_masks or len(stage_masks[name]) != number_of_samples:
            raise ValueError(f"{record_name}: stage mask {name!r} missing or not {number_of_samples} long")
    final_path = Path(record_dir) / f"{record_name}{MASK_FILE_SUFFIX}"
    with atomic_path(final_path) as temporary_path:
        with h5py.File(temporary_path, "w", userblock_size=MATLAB_USER_BLOCK_BYTES, libver="earliest") as file:
            references = file.create_group("#refs#")
            empty = references.create_dataset("a", data=np.zeros(2, dtype=np.uint64), track_times=False)
            empty.attrs["MATLAB_class"] = np.bytes_(b"canonical empty")
            empty.attrs["MATLAB_empty"] = np.uint8(1)
            data = file.create_group(MASK_STRUCT)
            data.attrs["MATLAB_class"] = np.bytes_(b"struct")
            data.attrs["MATLAB_fields"] = _matlab_fields(list(MASK_STRUCT_FIELDS))
            arousals = data.create_dataset(
                AROUSAL_MASK_FIELD,
                data=np.asarray(arousal_mask, dtype=np.float64).reshape(number_of_samples, 1),
                chunks=(_chunk_rows(number_of_samples, 8), 1),
                compression="gzip",
                compression_opts=3,
                track_times=False,
            )
            arousals.attrs["H5PATH"] = np.bytes_(b"/data")
            arousals.attrs["MATLAB_class"] = np.bytes_(b"double")
            stages = data.create_group(STAGE_MASK_GROUP)
            stages.attrs["H5PATH"] = np.bytes_(b"/data")
            stages.attrs["MATLAB_class"] = np.bytes_(b"struct")
            stages.attrs["MATLAB_fields"] = _matlab_fields(STAGE_MASK_ORDER)
            for name in sorted(STAGE_MASK_ORDER):
                dataset = stages.create_dataset(
                    name,
                    data=np.asarray(stage_masks[name], dtype=np.uint8).reshape(1, number_of_samples),
                    chunks=(1, _chunk_rows(number_of_samples, 1)),
                    compression="gzip",
                    compression_opts=3,
                    track_times=False,
                )
                dataset.attrs["H5PATH"] = np.bytes_(b"/datasleep_stages")  # sic, as in the real file
                dataset.attrs["MATLAB_class"] = np.bytes_(b"logical")
                dataset.attrs["MATLAB_int_decode"] = np.int32(1)
        with open(temporary_path, "r+b") as handle:
            handle.write(_matlab_user_block(created))
    return final_path


# --------------------------------------------------------------------------------------------
# one record, cohort files
# --------------------------------------------------------------------------------------------


def check_header_fields(
    record_name: str,
    channel_names: Sequence[str],
    units: Sequence[str],
    gains: Sequence[float],
    baselines: Sequence[int],
    fs: float,
) -> None:
    """Refuse, before anything is written, a header the reader would refuse (the reader's own checks,
    ``recording_physiomae.check_number_range`` / ``SAMPLING_RATE_RANGE_HZ``): a sampling frequency outside
    that range, a gain that is not a finite number > 0, a baseline that is not an integer, units that are empty or
    hold spaces, a channel name that is empty. Raises ``HeaderFieldError`` (a ``ValueError``) naming the record,
    the channel, the field and the value."""
    from modeling_physiomae.recording_physiomae import (
        SAMPLING_RATE_RANGE_HZ,
        HeaderFieldError,
        check_number_range,
    )

    check_number_range(float(fs), "sampling frequency", record_name, low=SAMPLING_RATE_RANGE_HZ[0],
                       high=SAMPLING_RATE_RANGE_HZ[1], shown=fs)
    for name, unit, gain, baseline in zip(channel_names, units, gains, baselines):
        where = f"{record_name}, channel {name!r}"
        if not str(name).strip():
            raise HeaderFieldError(record_name, "channel name", name, "is empty")
        check_number_range(float(gain), "gain", where, low=0, low_open=True, shown=gain)
        if not float(baseline).is_integer():
            raise HeaderFieldError(where, "baseline", baseline, "is not an integer")
        if not str(unit).strip() or any(character.isspace() for character in str(unit)):
            raise HeaderFieldError(where, "units", unit, "are empty or hold spaces")


def write_record(
    record_dir: str | os.PathLike,
    record_name: str,
    signals: np.ndarray,
    channel_names: Sequence[str],
    units: Sequence[str],
    gains: Sequence[float],
    baselines: Sequence[int],
    fs: int = 200,
    stage_notes: Sequence[tuple[int, str]] | None = None,
    events: Sequence[tuple[int, int, str]] | None = None,
    arousal_mask: np.ndarray | None = None,
    stage_masks: dict[str, np.ndarray] | None = None,
) -> RecordPaths:
    """Write one record in the challenge layout into ``record_dir`` (created if needed).

    Args:
        signals: (samples, channels). int16 = digital values, written as they are; a float array =
            physical values in ``units``, converted with :func:`physical_to_digital`.
        channel_names, units, gains, baselines: one per channel (physical = (digital - baseline) / gain).
        stage_notes: [(sample, "W"|"N1"|"N2"|"N3"|"R")] at stage changes. With ``stage_notes`` or
            ``events`` given, the record is labelled: ``NAME.arousal`` and ``NAME-arousal.mat`` are
            written too; with neither (a test record) only ``.hea`` and ``.mat``.
        events: [(start_sample, end_sample, name)] with challenge names (``arousal_rera``, ...).
        arousal_mask: per-sample +1/0/-1; derived from the notes (real convention) when None.
        stage_masks: {wake, nonrem1, nonrem2, nonrem3, rem, undefined} -> per-sample uint8; derived
            from ``stage_notes`` when None.
    """
    signals = np.asarray(signals)
    number_of_channels = len(channel_names)
    for field_name, values in (("units", units), ("gains", gains), ("baselines", baselines)):
        if len(values) != number_of_channels:
            raise ValueError(
                f"{record_name}: {field_name} has {len(values)} entries for {number_of_channels} channels"
            )
    check_header_fields(record_name, channel_names, units, gains, baselines, fs)
    if signals.ndim != 2 or signals.shape[1] != number_of_channels:
        raise ValueError(
            f"{record_name}: signals must be (samples, channels={number_of_channels}), got {signals.shape}"
        )
    labelled = stage_notes is not None or events is not None
    if labelled:  # check the labels before anything is written: no half-written record
        annotation_rows(stage_notes or [], events or [])
    digital = signals if signals.dtype == np.int16 else physical_to_digital(signals, gains, baselines)
    header_path, signals_path = write_signals(
        record_dir, record_name, digital, channel_names, units, gains, baselines, fs
    )
    paths = RecordPaths(header=header_path, signals=signals_path)
    if not labelled:
        return paths
    stage_notes = list(stage_notes or [])
    events = list(events or [])
    number_of_samples = digital.shape[0]
    if stage_masks is None:
        stage_masks = stage_masks_from_notes(stage_notes, number_of_samples)
    if arousal_mask is None:
        arousal_mask = arousal_mask_from_labels(events, stage_masks, fs)
    paths.arousal = write_annotations(record_dir, record_name, stage_notes, events, fs)
    paths.arousal_mat = write_arousal_masks(record_dir, record_name, arousal_mask, stage_masks)
    return paths


def write_age_sex_csv(path: str | os.PathLike, rows: Iterable[tuple[str, str, int | float | str]]) -> Path:
    """Write ``age-sex.csv`` (header ``Record,Sex,Age``, LF line ends, rows sorted by record)."""
    lines = ["Record,Sex,Age"]
    for record_name, sex, age in sorted(rows, key=lambda row: row[0]):
        age_text = f"{age:g}" if isinstance(age, (int, float)) else str(age)
        lines.append(f"{record_name},{sex},{age_text}")
    return atomic_write_text(path, "\n".join(lines) + "\n")


def write_records_list(path: str | os.PathLike, record_names: Iterable[str]) -> Path:
    """Write a challenge ``RECORDS`` file: one ``NAME/`` line per record folder (LF, sorted)."""
    lines = [f"{name}/" for name in sorted(record_names)]
    return atomic_write_text(path, "\n".join(lines) + "\n")
