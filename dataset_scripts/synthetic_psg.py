"""A synthetic polysomnography cohort in the PhysioNet/CinC Challenge 2018 layout.

Every record is driven by one hidden state: a hypnogram from a sleep-cycle model (30-s epochs),
respiratory events, arousals, and the subject's age and sex. All 13 channels are derived from that
state, so each modality carries information about the others and about stage, arousal and age.
To make the cohort about as hard as real recordings, stage features change gradually around stage
changes and fluctuate within a stage, every subject gets its own amplitudes, rhythms and recording
set-up (:class:`SubjectProfile`), and background noise and artefacts (body movements, electrode
pops, sweat, line noise, ECG pickup) are added (the signal model is documented in
``dataset_scripts/SYNTHETIC.md``).

CLI::

    python -m dataset_scripts.synthetic_psg --out DIR --train 8 --test 8 --hours 1 --seed 0

writes ``DIR/training/trNN-NNNN/{NAME.hea, NAME.mat, NAME.arousal, NAME-arousal.mat}``,
``DIR/test/teNN-NNNN/{NAME.hea, NAME.mat}``, ``DIR/training/RECORDS``, ``DIR/test/RECORDS`` and
``DIR/age-sex.csv``. Record ``i`` of a split depends only on (seed, split, i), never on the cohort size.

The hidden state is drawn by :mod:`dataset_scripts.synthetic_physiology`, the channels by
:mod:`dataset_scripts.synthetic_channels`; this module assembles a record, writes it and writes cohorts.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from dataset_scripts import challenge_io
from dataset_scripts.synthetic_channels import (
    ChannelContext, generate_ecg, generate_eeg, generate_emg, generate_eog, generate_heart_rate, generate_respiration,
    generate_spo2,
)
from dataset_scripts.synthetic_physiology import (
    EPOCH_SECONDS, STAGES, SubjectProfile, coloured_noise, draw_subject_profile, generate_events,
    generate_fluctuations, generate_hypnogram, generate_movements, interval_level, smooth, stage_weights, upsample,
)

SAMPLING_RATE = 200


@dataclass(frozen=True)
class ChannelSpec:
    """One channel of the challenge montage: name, units, gain (digital per unit) and baseline."""

    name: str
    units: str
    gain: float
    baseline: int


CHANNELS = (
    ChannelSpec("F3-M2", "uV", 1.0, 0),
    ChannelSpec("F4-M1", "uV", 1.0, 0),
    ChannelSpec("C3-M2", "uV", 1.0, 0),
    ChannelSpec("C4-M1", "uV", 1.0, 0),
    ChannelSpec("O1-M2", "uV", 1.0, 0),
    ChannelSpec("O2-M1", "uV", 1.0, 0),
    ChannelSpec("E1-M2", "uV", 1.0, 0),
    ChannelSpec("Chin1-Chin2", "uV", 1.0, 0),
    ChannelSpec("ABD", "uV", 1.0, 0),
    ChannelSpec("CHEST", "uV", 1.0, 0),
    ChannelSpec("AIRFLOW", "uV", 1.0, 0),
    ChannelSpec("SaO2", "%", 655.35, -32768),
    ChannelSpec("ECG", "mV", 1000.0, 0),
)
"""The 13 channels of a challenge record, with the units, gains and baselines of tr03-0005.hea."""

CHANNEL_NAMES = tuple(spec.name for spec in CHANNELS)
EEG_CHANNELS = CHANNEL_NAMES[:6]


# ---------------------------------------------------------------------------------------------
# outputs
# ---------------------------------------------------------------------------------------------


@dataclass
class HiddenState:
    """The hidden physiology that drives every channel (per epoch / per second / event lists).

    Event lists hold (start_sample, end_sample, name); ``arousals`` includes the unannotated
    arousals that end respiratory events (name ``"post_resp"``).
    """

    hypnogram: np.ndarray  # (epochs,) int8 stage index into STAGES
    eyes_closed: np.ndarray  # (epochs,) bool, only meaningful in wake
    resp_events: list[tuple[int, int, str]]
    arousals: list[tuple[int, int, str]]
    flow_limitations: list[tuple[int, int]]
    arousal_per_second: np.ndarray  # (seconds,) float in [0, 1]
    airflow_gain_per_second: np.ndarray  # (seconds,)
    heart_rate_per_second: np.ndarray  # (seconds,) bpm (before respiratory sinus arrhythmia)
    spo2_per_second: np.ndarray  # (seconds,) %
    stage_weights_per_second: np.ndarray | None = None  # (5, seconds) blended stage, columns sum to 1
    movements: list[tuple[int, int, str]] = field(default_factory=list)  # body-movement artefacts
    subject: SubjectProfile | None = None


@dataclass
class SyntheticRecord:
    """One synthetic record: digital signals in challenge units plus its labels and hidden state."""

    name: str
    digital: np.ndarray  # (samples, 13) int16
    age: int
    sex: str
    labelled: bool
    stage_notes: list[tuple[int, str]]
    events: list[tuple[int, int, str]]  # annotated events (arousal_* and resp_*)
    hidden: HiddenState
    fs: int = SAMPLING_RATE
    channel_names: tuple[str, ...] = CHANNEL_NAMES
    units: tuple[str, ...] = tuple(spec.units for spec in CHANNELS)
    gains: tuple[float, ...] = tuple(spec.gain for spec in CHANNELS)
    baselines: tuple[int, ...] = tuple(spec.baseline for spec in CHANNELS)

    @property
    def number_of_samples(self) -> int:
        return self.digital.shape[0]

    def physical(self, channel_name: str) -> np.ndarray:
        """One channel in physical units (float64), as wfdb would return it."""
        index = self.channel_names.index(channel_name)
        return (self.digital[:, index].astype(np.float64) - self.baselines[index]) / self.gains[index]


@dataclass
class CohortSummary:
    """What :func:`write_cohort` wrote."""

    out_dir: Path
    training_records: list[str] = field(default_factory=list)
    test_records: list[str] = field(default_factory=list)
    seconds: float = 0.0


# ---------------------------------------------------------------------------------------------
# one record
# ---------------------------------------------------------------------------------------------


def physical_rows_to_digital(rows: Sequence[np.ndarray], block: int = 16384) -> np.ndarray:
    """One physical row (samples,) per channel of CHANNELS -> digital (samples, 13) int16.

    ``round(value * gain + baseline)`` clipped to the valid int16 range, row by row, then a
    cache-friendly blocked transpose into the frame-major layout of the ``.mat`` file.
    """
    number_of_samples = len(rows[0])
    channel_major = np.empty((len(CHANNELS), number_of_samples), dtype=np.int16)  # (13, samples)
    for channel, (spec, row) in enumerate(zip(CHANNELS, rows)):
        scaled = np.asarray(row, dtype=np.float32)
        if spec.gain != 1.0 or spec.baseline != 0:
            scaled = scaled * np.float32(spec.gain) + np.float32(spec.baseline)  # exact: |value| < 2**24
        scaled = np.rint(scaled)
        np.clip(scaled, challenge_io.DIGITAL_MIN, challenge_io.DIGITAL_MAX, out=scaled)
        channel_major[channel] = scaled
    digital = np.empty((number_of_samples, len(CHANNELS)), dtype=np.int16)  # (samples, 13)
    for start in range(0, number_of_samples, block):
        digital[start : start + block] = channel_major[:, start : start + block].T
    return digital


def stage_notes_from_hypnogram(hypnogram: np.ndarray, fs: int = SAMPLING_RATE) -> list[tuple[int, str]]:
    """Stage notes at the first epoch and at every stage change: [(sample, "W"|"N1"|...)]."""
    changes = np.flatnonzero(np.diff(hypnogram, prepend=-1) != 0)
    return [(int(epoch * EPOCH_SECONDS * fs), STAGES[hypnogram[epoch]]) for epoch in changes]


def generate_record(
    rng: np.random.Generator,
    name: str,
    hours: float,
    labelled: bool = True,
    age: int | None = None,
    sex: str | None = None,
    fs: int = SAMPLING_RATE,
) -> SyntheticRecord:
    """Generate one record of ``hours`` hours (13 channels at ``fs`` Hz) from ``rng``.

    ``age``/``sex`` default to random draws (age 20-90, sex F/M). ``labelled`` only decides whether
    the labels are written (training vs test record); the physiology is the same.
    """
    if hours <= 0:
        raise ValueError(f"generate_record({name!r}): hours must be > 0, got {hours}")
    number_of_samples = int(round(hours * 3600 * fs))
    number_of_seconds = int(np.ceil(number_of_samples / fs))
    number_of_epochs = int(np.ceil(number_of_seconds / EPOCH_SECONDS))
    drawn_age = int(np.clip(np.rint(rng.normal(55.0, 16.0)), 20, 90))
    drawn_sex = "M" if rng.random() < 0.6 else "F"
    age = drawn_age if age is None else int(age)
    sex = drawn_sex if sex is None else sex

    hypnogram = generate_hypnogram(rng, number_of_epochs, age)
    eyes_closed = rng.random(number_of_epochs) < 0.4
    stage_per_second = np.repeat(hypnogram, EPOCH_SECONDS)[:number_of_seconds]
    resp_seconds, arousal_seconds, limitation_seconds = generate_events(rng, stage_per_second, age, sex)
    # arousal intensity varies (some are subtle): the per-second arousal level is intensity x coverage
    intensities = np.clip(np.exp(rng.normal(np.log(0.85), 0.25, len(arousal_seconds))), 0.4, 1.0)
    arousal_levels = [(start, end, level) for (start, end, _), level in zip(arousal_seconds, intensities)]
    arousal_per_second = smooth(np.clip(interval_level(arousal_levels, number_of_seconds), 0.0, 1.0), 2)
    subject = draw_subject_profile(rng, age)
    weights = stage_weights(stage_per_second, subject.transition_seconds)
    movement_seconds = generate_movements(rng, weights, arousal_seconds, subject.mobility)
    movement_per_second = interval_level(movement_seconds, number_of_seconds)
    context = ChannelContext(
        rng=rng, fs=fs, number_of_samples=number_of_samples, number_of_seconds=number_of_seconds,
        stage_per_second=stage_per_second, arousal_per_second=arousal_per_second,
        eyes_closed_per_second=np.repeat(eyes_closed, EPOCH_SECONDS)[:number_of_seconds], age=age, sex=sex,
        subject=subject, stage_weights=weights, fluctuations=generate_fluctuations(rng, number_of_seconds),
        movement_per_second=movement_per_second,
    )
    # one broadband (1/f) movement source, shared by every channel that a body movement disturbs
    movement_wave = coloured_noise(rng, 1, number_of_samples, fs, 0.2, 25.0, exponent=1.0)[0]
    movement_wave *= upsample(movement_per_second, number_of_samples, fs)
    abd, chest, airflow, breathing_phase, airflow_gain = generate_respiration(
        context, resp_seconds, limitation_seconds, arousal_seconds, movement_wave
    )
    spo2_per_second = generate_spo2(context, resp_seconds)
    heart_rate = generate_heart_rate(context, resp_seconds)
    ecg = generate_ecg(context, heart_rate, breathing_phase)
    eeg, eog_pops = generate_eeg(context, ecg, movement_wave)
    eog = generate_eog(context, 0.5 * (eeg[0] + eeg[1]), movement_wave) + eog_pops
    emg = generate_emg(context, ecg)
    del movement_wave
    spo2 = np.repeat(spo2_per_second, fs)[:number_of_samples]  # oximeter: held for 1 s

    digital = physical_rows_to_digital(list(eeg) + [eog, emg, abd, chest, airflow, spo2, ecg])

    def to_samples(intervals):
        """(start s, end s, *rest) -> (start sample, end sample, *rest), inside the record."""
        return [(int(round(start * fs)), min(int(round(end * fs)), number_of_samples - 1), *rest)
                for start, end, *rest in intervals]

    resp_events = to_samples(resp_seconds)
    arousals = to_samples(arousal_seconds)
    annotated = sorted(resp_events + [event for event in arousals if event[2] != "post_resp"])
    hidden = HiddenState(
        hypnogram=hypnogram, eyes_closed=eyes_closed, resp_events=resp_events, arousals=arousals,
        flow_limitations=to_samples(limitation_seconds),
        arousal_per_second=arousal_per_second, airflow_gain_per_second=airflow_gain,
        heart_rate_per_second=heart_rate, spo2_per_second=spo2_per_second,
        stage_weights_per_second=weights,
        movements=[(start, end, "movement") for start, end, _ in to_samples(movement_seconds)], subject=subject,
    )
    return SyntheticRecord(
        name=name, digital=digital, age=age, sex=sex, labelled=labelled, fs=fs,
        stage_notes=stage_notes_from_hypnogram(hypnogram, fs), events=annotated, hidden=hidden,
    )


def write_synthetic_record(record: SyntheticRecord, record_dir: str | Path) -> challenge_io.RecordPaths:
    """Write a record in the challenge layout (labels only for labelled records)."""
    return challenge_io.write_record(
        record_dir, record.name, record.digital, record.channel_names, record.units, record.gains,
        record.baselines, fs=record.fs,
        stage_notes=record.stage_notes if record.labelled else None,
        events=record.events if record.labelled else None,
    )


# ---------------------------------------------------------------------------------------------
# cohort
# ---------------------------------------------------------------------------------------------

SPLITS = {"training": ("tr", 0), "test": ("te", 1)}
"""Split folder -> (record prefix, seed key)."""

SYNTHETIC_SITE = 90
"""Site number of synthetic names (``tr90-0001``), far from the real sites 03-14."""


def record_name(split: str, index: int) -> str:
    """Name of record ``index`` (0-based) of a split, e.g. ``tr90-0001``, ``te90-0001``."""
    prefix, _ = SPLITS[split]
    return f"{prefix}{SYNTHETIC_SITE + index // 9999:02d}-{index % 9999 + 1:04d}"


def record_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of record ``index`` of ``split``: independent of the cohort size."""
    return np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=(SPLITS[split][1], index)))


def write_cohort(
    out: str | Path, n_train: int, n_test: int, hours: float, seed: int = 0, verbose: bool = False
) -> CohortSummary:
    """Write a synthetic cohort in the challenge layout under ``out`` (see the module doc)."""
    if n_train < 0 or n_test < 0:
        raise ValueError(f"write_cohort: record counts must be >= 0, got train={n_train} test={n_test}")
    out = Path(out)
    summary = CohortSummary(out_dir=out)
    started = time.perf_counter()
    age_sex_rows = []
    for split, count in (("training", n_train), ("test", n_test)):
        names = summary.training_records if split == "training" else summary.test_records
        for index in range(count):
            name = record_name(split, index)
            record = generate_record(record_rng(seed, split, index), name, hours, labelled=split == "training")
            write_synthetic_record(record, out / split / name)
            names.append(name)
            age_sex_rows.append((name, record.sex, record.age))
            if verbose:
                print(f"{split}/{name}: age {record.age} sex {record.sex} "
                      f"{record.number_of_samples / record.fs / 3600:.2f} h", flush=True)
        if count:
            challenge_io.write_records_list(out / split / "RECORDS", names)
    challenge_io.write_age_sex_csv(out / "age-sex.csv", age_sex_rows)
    summary.seconds = time.perf_counter() - started
    return summary


def main(argv: Sequence[str] | None = None) -> CohortSummary:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="output folder (created)")
    parser.add_argument("--train", type=int, default=8, help="number of labelled tr* records")
    parser.add_argument("--test", type=int, default=8, help="number of unlabelled te* records")
    parser.add_argument("--hours", type=float, default=1.0, help="length of every record in hours")
    parser.add_argument("--seed", type=int, default=0, help="cohort seed")
    parser.add_argument("--quiet", action="store_true", help="do not list the records")
    arguments = parser.parse_args(argv)
    summary = write_cohort(arguments.out, arguments.train, arguments.test, arguments.hours, arguments.seed,
                           verbose=not arguments.quiet)
    print(f"wrote {len(summary.training_records)} training and {len(summary.test_records)} test records "
          f"to {summary.out_dir} in {summary.seconds:.1f} s")
    return summary


if __name__ == "__main__":
    main()
