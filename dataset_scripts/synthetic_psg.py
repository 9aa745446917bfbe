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
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import scipy.fft
import scipy.signal

from dataset_scripts import challenge_io

SAMPLING_RATE = 200
EPOCH_SECONDS = 30
FULL_NIGHT_HOURS = 8.0
"""Records shorter than this get a proportionally time-compressed sleep-cycle model (see
:func:`generate_hypnogram`), so that even a 10-minute record shows every stage."""

STAGES = challenge_io.STAGE_NAMES  # ("W", "N1", "N2", "N3", "R")
WAKE, N1, N2, N3, REM = range(5)


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

# ---- per-stage signal tables (index: W, N1, N2, N3, R) ------------------------------------------
EEG_BAND_AMPLITUDE_UV = {
    # band: (low Hz, high Hz, RMS amplitude per stage in uV)
    "delta": (0.5, 2.0, (6.0, 6.0, 13.0, 28.0, 6.0)),
    "theta": (4.0, 7.0, (3.0, 5.0, 4.5, 5.0, 4.0)),
    "alpha": (8.0, 12.0, (4.0, 3.0, 2.5, 2.2, 2.5)),  # eyes-closed wake: see ALPHA_EYES_CLOSED_UV
    "beta": (15.0, 30.0, (3.0, 3.0, 2.5, 2.0, 2.5)),
}
"""Amplitudes are set so that O2-M1 matches the medians of the 500 real excerpts per stage
(e.g. delta RMS 6.5 / 4.2 / 6.8 / 13 / 4.1 uV, theta 2.5-4.7 uV, alpha ~3 uV, beta ~2 uV)."""
ALPHA_EYES_CLOSED_UV = 10.0
EEG_REGION_WEIGHTS = {
    # band: weight per EEG channel (F3, F4, C3, C4, O1, O2)
    "delta": (1.0, 1.0, 0.85, 0.85, 0.6, 0.6),
    "theta": (0.9, 0.9, 1.0, 1.0, 0.8, 0.8),
    "alpha": (0.35, 0.35, 0.55, 0.55, 1.0, 1.0),
    "beta": (1.0, 1.0, 0.9, 0.9, 0.7, 0.7),
    "spindle": (0.7, 0.7, 1.0, 1.0, 0.45, 0.45),
    "kcomplex": (1.0, 1.0, 0.8, 0.8, 0.45, 0.45),
}
AROUSAL_EEG_GAIN = {"delta": 0.4, "theta": 0.9, "alpha": 3.2, "beta": 3.2}
"""Multiplier of each band's amplitude during an arousal (faster EEG)."""

SPINDLES_PER_MINUTE = (0.0, 0.5, 5.0, 2.0, 0.0)
KCOMPLEXES_PER_MINUTE = (0.0, 0.2, 1.5, 0.8, 0.0)
EMG_TONE_UV = (5.0, 4.5, 3.0, 2.5, 0.8)  # real chin medians: 4.5 / 4.9 / 2.9 / 2.4 / 1.7 uV
REM_TWITCHES_PER_SECOND = 0.35
EOG_SLOW_ROLLING_UV = (4.0, 16.0, 4.0, 2.0, 3.0)
HEART_RATE_STAGE_OFFSET_BPM = (6.0, 2.0, 0.0, -3.0, 3.0)
RESP_RATE_STAGE_FACTOR = (1.06, 1.0, 0.97, 0.94, 1.08)
RESP_IRREGULARITY = (0.10, 0.05, 0.03, 0.02, 0.12)
RESP_EVENT_STAGE_FACTOR = (0.0, 1.2, 1.0, 0.3, 1.8)
AROUSAL_STAGE_FACTOR = (0.0, 1.5, 1.0, 0.35, 0.8)

RESP_EVENT_TYPES = {
    # name: (probability, duration range s, airflow gain, effort gain, paradox, post-event arousal p)
    "resp_obstructiveapnea": (0.45, (10.0, 30.0), 0.05, 1.25, 1.0, 0.85),
    "resp_hypopnea": (0.40, (12.0, 35.0), 0.45, 0.75, 0.0, 0.6),
    "resp_centralapnea": (0.15, (10.0, 25.0), 0.03, 0.05, 0.0, 0.7),
}

# ---- realism: blurred stage boundaries, within-stage and between-subject variability, artefacts -------
TRANSITION_SECONDS = (40.0, 120.0)
"""Range of the per-record width over which stage features change from one stage to the next."""
FLUCTUATION_BAND_HZ = (1.0 / 2400.0, 1.0 / 45.0)
"""Band of the slow within-stage fluctuations (timescales of ~1 epoch to ~40 min)."""
FLUCTUATION_SD = {
    # name: log-amplitude SD of the slow within-stage fluctuation (a unit-RMS process times this)
    "depth": 0.3,  # NREM depth: delta up, spindles down (mixed N2/N3 windows)
    "theta": 0.3,
    "alpha": 0.35,
    "beta": 0.3,
    "spindle": 0.35,
    "emg": 0.4,
    "eog": 0.45,
    "background": 0.35,
}
DEPTH_SPINDLE_COUPLING = -1.2
"""Spindle rate multiplier exp(coupling * depth SD * depth): deeper NREM has fewer spindles."""
MOVEMENTS_PER_MINUTE = (0.6, 0.2, 0.03, 0.015, 0.05)
"""Body-movement artefacts per minute and stage (times the subject's mobility), plus one at
AROUSAL_MOVEMENT_PROBABILITY of the arousals."""
AROUSAL_MOVEMENT_PROBABILITY = 0.25
MOVEMENT_EEG_UV = 50.0
DROWSY_ROLLING_UV = 8.0
"""Slow rolling eye movements in eyes-closed (drowsy) wake."""
ELECTRODES = ("F3", "F4", "C3", "C4", "O1", "O2", "M1", "M2")
ELECTRODE_SIGNS = {
    # electrode: sign of a potential change at that electrode in (F3-M2, F4-M1, C3-M2, C4-M1, O1-M2, O2-M1, E1-M2)
    "F3": (1, 0, 0, 0, 0, 0, 0), "F4": (0, 1, 0, 0, 0, 0, 0), "C3": (0, 0, 1, 0, 0, 0, 0),
    "C4": (0, 0, 0, 1, 0, 0, 0), "O1": (0, 0, 0, 0, 1, 0, 0), "O2": (0, 0, 0, 0, 0, 1, 0),
    "M1": (0, -1, 0, -1, 0, -1, 0), "M2": (-1, 0, -1, 0, -1, 0, -1),
}
"""E1-M2 and the left channels share M2, the right channels M1: a reference pop shows in all of them."""


# ---------------------------------------------------------------------------------------------
# outputs
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SubjectProfile:
    """What differs between subjects and recording set-ups (drawn once per record).

    Gains are multipliers of the tabulated amplitudes; see ``dataset_scripts/SYNTHETIC.md``.
    """

    transition_seconds: float  # width of the gradual change of stage features at a stage change
    band_gain: dict[str, float]  # EEG band -> gain (delta: the subject's slow-wave power)
    alpha_hz: float  # centre of the posterior dominant rhythm (band +-1.5 Hz)
    eyes_closed_alpha_uv: float
    spindle_hz: float  # centre of the spindle band (+-1 Hz)
    spindle_density: float
    kcomplex_density: float
    eeg_channel_gain: tuple[float, ...]  # (6,) electrode impedance / position
    background_pink_uv: float  # 1/f background RMS (0.3-40 Hz), shared level of the 6 EEG channels
    background_exponent: float  # aperiodic exponent (power ~ 1/f**exponent; flatter with age)
    background_white_uv: tuple[float, ...]  # (6,) amplifier / electrode noise
    ecg_in_eeg_uv_per_mv: tuple[float, ...]  # (6,)
    emg_stage_gain: tuple[float, ...]  # (5,) chin tone gain per stage (REM atonia depth varies)
    emg_ecg_uv_per_mv: float
    rem_phasic_fraction: float
    mobility: float  # movement-artefact rate multiplier
    loose_electrode: str | None  # electrode with pops (None: none)
    pops_per_minute: float
    sweat_uv: float  # 0: no sweat artefact
    line_hz: float
    line_bursts_per_hour: float


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
# small signal helpers
# ---------------------------------------------------------------------------------------------


def band_noise(
    rng: np.random.Generator, number_of_sources: int, length: int, fs: float, low: float, high: float
) -> np.ndarray:
    """(sources, length) float32 Gaussian noise band-limited to [low, high] Hz, unit RMS."""
    return coloured_noise(rng, number_of_sources, length, fs, low, high, exponent=0.0)


def coloured_noise(
    rng: np.random.Generator, number_of_sources: int, length: int, fs: float, low: float, high: float,
    exponent: float = 1.0,
) -> np.ndarray:
    """(sources, length) float32 Gaussian noise with power ~ 1/f**exponent in [low, high] Hz, unit RMS.

    Random complex amplitudes are drawn for the in-band FFT bins only, then one inverse real FFT.
    """
    fft_length = scipy.fft.next_fast_len(max(length, 2), real=True)
    frequencies = np.fft.rfftfreq(fft_length, d=1.0 / fs)
    band = np.flatnonzero((frequencies >= low) & (frequencies <= high))
    spectrum = np.zeros((number_of_sources, frequencies.size), dtype=np.complex64)
    random_parts = rng.standard_normal((2, number_of_sources, band.size), dtype=np.float32)
    spectrum[:, band] = random_parts[0] + 1j * random_parts[1]
    if exponent and band.size:
        shape = frequencies[band] ** (-exponent / 2.0)
        spectrum[:, band] *= (shape / np.sqrt(np.mean(shape**2))).astype(np.float32)  # keeps unit RMS
    noise = scipy.fft.irfft(spectrum, n=fft_length, axis=-1)[:, :length]  # (sources, length)
    # irfft of K bins with unit-variance real and imaginary parts has variance 4K / L**2
    noise *= np.float32(fft_length / (2.0 * np.sqrt(max(band.size, 1))))  # unit RMS
    return noise.astype(np.float32, copy=False)


def upsample(per_second: np.ndarray, number_of_samples: int, fs: int) -> np.ndarray:
    """Linear interpolation of a per-second series (value k at the start of second k) to samples."""
    values = np.asarray(per_second, dtype=np.float32)
    number_of_seconds = -(-number_of_samples // fs)
    values = np.concatenate((values, np.repeat(values[-1:], number_of_seconds + 1 - values.size)))
    fraction = np.arange(fs, dtype=np.float32) / fs  # (fs,)
    start, step = values[:number_of_seconds, None], np.diff(values[: number_of_seconds + 1])[:, None]
    samples = start + step * fraction  # (seconds, fs)
    return samples.reshape(-1)[:number_of_samples]


def smooth(values: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average (edges padded with the edge value)."""
    if width <= 1:
        return values.astype(np.float64)
    padded = np.pad(values.astype(np.float64), (width // 2, width - 1 - width // 2), mode="edge")
    cumulative = np.concatenate(([0.0], np.cumsum(padded)))
    return (cumulative[width:] - cumulative[:-width]) / width


def white_noise(rng: np.random.Generator, shape: int | tuple[int, ...]) -> np.ndarray:
    """Zero-mean, unit-variance white noise (float32, uniform: 4x cheaper than Gaussian draws)."""
    return (rng.random(shape, dtype=np.float32) - np.float32(0.5)) * np.float32(np.sqrt(12.0))


def place_templates(
    positions: np.ndarray, amplitudes: np.ndarray, template: np.ndarray, length: int, centre: int = 0
) -> np.ndarray:
    """Sum of ``amplitude * template`` placed with template index ``centre`` at each position."""
    positions = np.asarray(positions, dtype=np.int64)
    template = np.asarray(template, dtype=np.float64)
    if positions.size * template.size > 4 * length:  # dense: one FFT convolution
        impulses = np.zeros(length + template.size, dtype=np.float32)
        np.add.at(impulses, np.clip(positions, 0, length - 1), amplitudes.astype(np.float32))
        placed = scipy.signal.oaconvolve(impulses, template.astype(np.float32))  # (length + 2*template - 1,)
        return placed[centre : centre + length].astype(np.float32)
    indices = positions[:, None] - centre + np.arange(template.size)  # (events, template)
    values = np.asarray(amplitudes, dtype=np.float64)[:, None] * template  # (events, template)
    inside = (indices >= 0) & (indices < length)
    placed = np.bincount(indices[inside], weights=values[inside], minlength=length)
    return placed.astype(np.float32)


def poisson_times(rng: np.random.Generator, rate_per_second: np.ndarray) -> np.ndarray:
    """Event times (s, float) of an inhomogeneous Poisson process given per-second rates."""
    seconds = np.flatnonzero(rng.random(rate_per_second.size) < np.clip(rate_per_second, 0, 1))
    return seconds + rng.random(seconds.size)


def age_factor(age: float) -> float:
    """0 at 20 years, 1 at 90 years: scales every age effect."""
    return float(np.clip((age - 20.0) / 70.0, 0.0, 1.0))


def log_normal(rng: np.random.Generator, sd: float, size: int | None = None):
    """Multiplicative variability: exp(N(0, sd)) (a float, or a tuple of ``size`` floats)."""
    values = np.exp(rng.normal(0.0, sd, size))
    return float(values) if size is None else tuple(float(value) for value in values)


def stage_weights(stage_per_second: np.ndarray, transition_seconds: float) -> np.ndarray:
    """(5, seconds) blended stage: the one-hot stage smoothed by a triangle ``transition_seconds`` wide.

    Every stage-dependent quantity is ``table @ weights``, so features change gradually over about
    ``transition_seconds`` around each stage change (half-way at the scored boundary), and a short
    stage run (a 30-s N1 epoch between W and N2) is only partly expressed.
    """
    half = max(1, int(round(transition_seconds / 2.0)))
    one_hot = stage_per_second[None, :] == np.arange(len(STAGES))[:, None]  # (5, seconds)
    return np.stack([smooth(smooth(row, half), half) for row in one_hot.astype(np.float64)])


def interval_level(intervals: Sequence[tuple], number_of_seconds: int) -> np.ndarray:
    """Per-second sum of ``level * covered fraction`` of (start s, end s, level) intervals."""
    level = np.zeros(number_of_seconds + 1)
    for start, end, value in intervals:
        first, last = int(start), min(int(end), number_of_seconds)
        if first >= number_of_seconds:
            continue
        if first == last:
            level[first] += (end - start) * value
            continue
        level[first] += (first + 1 - start) * value
        level[first + 1 : last] += value
        level[last] += (min(end, number_of_seconds) - last) * value
    return level[:number_of_seconds]


def _floats(values) -> tuple[float, ...]:
    return tuple(float(value) for value in values)


def draw_subject_profile(rng: np.random.Generator, age: float) -> SubjectProfile:
    """Between-subject and between-set-up variability (see SYNTHETIC.md, "Variability")."""
    old = age_factor(age)
    loose = rng.random() < 0.45
    return SubjectProfile(
        transition_seconds=float(rng.uniform(*TRANSITION_SECONDS)),
        band_gain={"delta": log_normal(rng, 0.25), "theta": log_normal(rng, 0.25),
                   "alpha": log_normal(rng, 0.3), "beta": log_normal(rng, 0.3)},
        alpha_hz=float(np.clip(rng.normal(10.2 - 1.0 * old, 0.6), 8.0, 12.0)),
        eyes_closed_alpha_uv=float(np.clip(ALPHA_EYES_CLOSED_UV * log_normal(rng, 0.35), 4.0, 25.0)),
        spindle_hz=float(np.clip(rng.normal(13.0, 0.45), 12.0, 14.2)),
        spindle_density=log_normal(rng, 0.35),
        kcomplex_density=log_normal(rng, 0.35),
        eeg_channel_gain=log_normal(rng, 0.15, 6),
        background_pink_uv=float(3.0 * log_normal(rng, 0.4)),
        background_exponent=float(np.clip(rng.normal(1.3 - 0.6 * old, 0.12), 0.4, 1.8)),
        background_white_uv=_floats(1.5 * np.asarray(log_normal(rng, 0.4, 6))),
        ecg_in_eeg_uv_per_mv=_floats(4.0 * rng.uniform(0.5, 1.5, 6) * log_normal(rng, 0.6)),
        emg_stage_gain=_floats(np.asarray(log_normal(rng, 0.2, 5)) * (1.0, 1.0, 1.0, 1.0, log_normal(rng, 0.35))),
        emg_ecg_uv_per_mv=float(rng.uniform(0.5, 5.0)),
        rem_phasic_fraction=float(rng.uniform(0.35, 0.7)),
        mobility=log_normal(rng, 0.5),
        loose_electrode=str(ELECTRODES[rng.integers(len(ELECTRODES))]) if loose else None,
        pops_per_minute=float(rng.uniform(0.2, 2.0)) if loose else 0.0,
        sweat_uv=float(rng.uniform(5.0, 25.0)) if rng.random() < 0.3 else 0.0,
        line_hz=50.0 if rng.random() < 0.5 else 60.0,
        line_bursts_per_hour=float(rng.uniform(0.0, 3.0)),
    )


# ---------------------------------------------------------------------------------------------
# hidden state
# ---------------------------------------------------------------------------------------------


def generate_hypnogram(rng: np.random.Generator, number_of_epochs: int, age: float) -> np.ndarray:
    """Stage per 30-s epoch from a sleep-cycle model.

    Sleep-onset wake (longer with age), then ~90-min cycles N1 -> N2 -> N3 -> N2 -> REM with N3
    shrinking and REM growing over the night, N3 reduced with age, and wake bouts (each followed
    by N1) whose number grows with age. Records shorter than a night compress every duration by
    hours / 8 so that they still contain whole cycles (and get proportionally fewer wake bouts below
    2 hours, since a bout lasts at least one epoch). The record always starts in wake.
    """
    old = age_factor(age)
    time_scale = min(1.0, number_of_epochs / (FULL_NIGHT_HOURS * 3600 / EPOCH_SECONDS))

    def epochs(minutes: float) -> int:
        return max(1, int(round(minutes * 60 / EPOCH_SECONDS * time_scale)))

    segments = [(WAKE, epochs(rng.uniform(5.0, 15.0) + 20.0 * old * rng.random()))]
    total, cycle = segments[0][1], 0
    while total < number_of_epochs:
        cycle_minutes = rng.uniform(80.0, 105.0)
        n3_minutes = max(0.0, 45.0 - 15.0 * cycle) * (1.0 - 0.75 * old) * rng.uniform(0.7, 1.3)
        rem_minutes = min(40.0, 6.0 + 8.0 * cycle) * rng.uniform(0.7, 1.3)
        n1_minutes = rng.uniform(2.0, 7.0) if cycle == 0 else rng.uniform(1.0, 3.0)
        n2_minutes = max(10.0, cycle_minutes - n3_minutes - rem_minutes - n1_minutes)
        cycle_segments = [(N1, epochs(n1_minutes)), (N2, epochs(0.6 * n2_minutes))]
        if n3_minutes >= 1.0:
            cycle_segments.append((N3, epochs(n3_minutes)))
        cycle_segments += [(N2, epochs(0.4 * n2_minutes)), (REM, epochs(rem_minutes))]
        for _ in range(rng.poisson((0.6 + 2.5 * old) * min(1.0, 4.0 * time_scale))):
            position = int(rng.integers(1, len(cycle_segments) + 1))
            bout = [(WAKE, epochs(rng.uniform(0.5, 4.0))), (N1, epochs(rng.uniform(0.5, 2.0)))]
            cycle_segments[position:position] = bout
        segments += cycle_segments
        total += sum(length for _, length in cycle_segments)
        cycle += 1
    stages = np.array([stage for stage, _ in segments], dtype=np.int8)
    lengths = np.array([length for _, length in segments])
    return np.repeat(stages, lengths)[:number_of_epochs]


def _free(occupied: np.ndarray, start: float, end: float) -> bool:
    """True when no second in [start, end) is occupied."""
    return not occupied[max(int(start), 0) : int(np.ceil(end))].any()


def generate_events(
    rng: np.random.Generator, stage_per_second: np.ndarray, age: float, sex: str
) -> tuple[list, list, list]:
    """Respiratory events, arousals and RERA flow limitations, in seconds (float).

    Returns (resp_events [(start, end, name)], arousals [(start, end, name)], flow_limitations
    [(start, end)]). Apneas/hypopneas (rate grows with age, male sex; most in REM, fewest in N3) end
    with an unannotated arousal (name ``post_resp``); spontaneous arousals (rate grows with age) and
    RERAs (a 10-25 s flow limitation ending in an arousal) are the annotated target arousals.
    """
    number_of_seconds = stage_per_second.size
    old = age_factor(age)
    occupied = np.zeros(number_of_seconds + 60, dtype=bool)
    resp_events, arousals, flow_limitations = [], [], []

    apnea_index = np.exp(rng.normal(np.log(4.0 + 22.0 * old * (1.4 if sex == "M" else 1.0)), 0.5))
    resp_rate = apnea_index / 3600.0 * np.take(RESP_EVENT_STAGE_FACTOR, stage_per_second)
    type_names = list(RESP_EVENT_TYPES)
    type_probabilities = np.array([RESP_EVENT_TYPES[name][0] for name in type_names])
    for start in poisson_times(rng, resp_rate):
        name = type_names[rng.choice(len(type_names), p=type_probabilities)]
        _, (shortest, longest), _, _, _, arousal_probability = RESP_EVENT_TYPES[name]
        end = start + rng.uniform(shortest, longest)
        arousal_end = end + rng.uniform(4.0, 12.0)
        if arousal_end + 5 >= number_of_seconds or not _free(occupied, start - 15, arousal_end + 15):
            continue
        resp_events.append((start, end, name))
        if rng.random() < arousal_probability:
            arousals.append((end + rng.uniform(0.0, 1.5), arousal_end, "post_resp"))
        occupied[max(int(start) - 15, 0) : int(arousal_end) + 15] = True

    arousal_index = np.exp(rng.normal(np.log(7.0 + 18.0 * old), 0.3))
    arousal_rate = arousal_index / 3600.0 * np.take(AROUSAL_STAGE_FACTOR, stage_per_second)
    for start in poisson_times(rng, arousal_rate):
        is_rera = rng.random() < 0.35
        limitation = rng.uniform(10.0, 25.0) if is_rera else 0.0
        end = start + rng.uniform(3.0, 15.0)
        if start - limitation < 1 or end + 5 >= number_of_seconds:
            continue
        if not _free(occupied, start - limitation - 10, end + 10):
            continue
        if is_rera:
            flow_limitations.append((start - limitation, start))
        arousals.append((start, end, "arousal_rera" if is_rera else "arousal_spontaneous"))
        occupied[max(int(start - limitation) - 10, 0) : int(end) + 10] = True
    arousals.sort()
    return resp_events, arousals, flow_limitations


def interval_indicator(intervals: Sequence[tuple], number_of_seconds: int) -> np.ndarray:
    """Per-second fraction of each second covered by the (start, end, ...) intervals (seconds)."""
    covered = np.zeros(number_of_seconds + 1, dtype=np.float64)
    for interval in intervals:
        start, end = interval[0], interval[1]
        first, last = int(start), int(end)
        if first == last:
            covered[first] += end - start
            continue
        covered[first] += first + 1 - start
        covered[first + 1 : last] += 1.0
        covered[last] += end - last
    return np.clip(covered[:number_of_seconds], 0.0, 1.0)


# ---------------------------------------------------------------------------------------------
# channels
# ---------------------------------------------------------------------------------------------


@dataclass
class _Context:
    """Per-record quantities shared by the channel generators."""

    rng: np.random.Generator
    fs: int
    number_of_samples: int
    number_of_seconds: int
    stage_per_second: np.ndarray  # (seconds,) int8
    arousal_per_second: np.ndarray  # (seconds,) float
    eyes_closed_per_second: np.ndarray  # (seconds,) bool
    age: float
    sex: str
    subject: SubjectProfile
    stage_weights: np.ndarray  # (5, seconds) blended stage (see stage_weights)
    fluctuations: dict[str, np.ndarray]  # name -> (seconds,) slow unit-RMS process
    movement_per_second: np.ndarray  # (seconds,) body-movement artefact intensity (0 = none)

    def per_stage(self, table: Sequence[float]) -> np.ndarray:
        """Per-second value of a per-stage table, blended across stage changes."""
        return np.asarray(table, dtype=np.float64) @ self.stage_weights

    def variability(self, name: str) -> np.ndarray:
        """Per-second within-stage gain exp(FLUCTUATION_SD[name] * fluctuation)."""
        return np.exp(FLUCTUATION_SD[name] * self.fluctuations[name])


def generate_fluctuations(rng: np.random.Generator, number_of_seconds: int) -> dict[str, np.ndarray]:
    """Independent slow unit-RMS processes (one per FLUCTUATION_SD name) in FLUCTUATION_BAND_HZ."""
    names = list(FLUCTUATION_SD)
    rows = band_noise(rng, len(names), number_of_seconds, 1.0, *FLUCTUATION_BAND_HZ).astype(np.float64)
    return dict(zip(names, rows))


def generate_movements(
    rng: np.random.Generator, weights: np.ndarray, arousals, mobility: float
) -> list[tuple[float, float, float]]:
    """Body-movement artefacts (start s, end s, intensity): Poisson by stage, and at some arousals."""
    number_of_seconds = weights.shape[1]
    rate = np.asarray(MOVEMENTS_PER_MINUTE) @ weights / 60.0 * mobility
    starts = list(poisson_times(rng, rate))
    starts += [start + rng.uniform(0.0, 2.0) for start, _, _ in arousals
               if rng.random() < AROUSAL_MOVEMENT_PROBABILITY]
    movements = []
    for start in sorted(starts):
        duration = float(np.clip(np.exp(rng.normal(np.log(3.0), 0.6)), 1.0, 15.0))
        if start + 1.0 < number_of_seconds:
            end = min(start + duration, number_of_seconds - 1e-3)
            movements.append((float(start), float(end), log_normal(rng, 0.5)))
    return movements


def generate_respiration(context: _Context, resp_events, flow_limitations, arousals, movement_wave=None):
    """ABD, CHEST, AIRFLOW (samples,) each, the breathing phase, and per-second airflow gain (body
    movements displace the belts)."""
    rng, fs, seconds = context.rng, context.fs, context.number_of_seconds
    airflow_gain = np.ones(seconds)
    effort_gain = np.ones(seconds)
    paradox = np.zeros(seconds)
    rate_factor = context.per_stage(RESP_RATE_STAGE_FACTOR)
    for start, end, name in resp_events:
        _, _, flow, effort, paradoxical, _ = RESP_EVENT_TYPES[name]
        span = slice(int(start), int(np.ceil(end)))
        airflow_gain[span] = flow
        effort_gain[span] = np.linspace(effort * 0.9, effort * 1.1, span.stop - span.start)
        paradox[span] = paradoxical
    for start, end in flow_limitations:
        span = slice(int(start), int(np.ceil(end)))
        airflow_gain[span] = 0.65
        effort_gain[span] = np.linspace(1.0, 1.35, span.stop - span.start)
    for start, end, _ in arousals:  # recovery breaths
        span = slice(int(start), int(np.ceil(end)))
        airflow_gain[span] = np.maximum(airflow_gain[span], 1.7)
        effort_gain[span] = np.maximum(effort_gain[span], 1.5)
        rate_factor[span] *= 1.2
    slow_drift = band_noise(rng, 2, seconds, 1.0, 0.003, 0.05)  # (2, seconds)
    irregularity = context.per_stage(RESP_IRREGULARITY)
    tidal = 1.0 + 2.0 * irregularity * slow_drift[1]
    frequency = rng.uniform(0.22, 0.30) * rate_factor * (1.0 + irregularity * slow_drift[0])
    phase = 2.0 * np.pi * np.cumsum(upsample(frequency, context.number_of_samples, fs), dtype=np.float64) / fs
    phase = phase.astype(np.float32)

    def breath(offset: float) -> np.ndarray:
        return np.sin(phase + offset) + 0.25 * np.sin(2.0 * phase + offset + 0.6)

    effort = upsample(effort_gain * tidal, context.number_of_samples, fs)
    flow = upsample(airflow_gain * tidal, context.number_of_samples, fs)
    paradox_shift = np.pi * upsample(smooth(paradox, 5), context.number_of_samples, fs)
    chest = rng.uniform(100.0, 250.0) * effort * breath(0.0)  # real medians: CHEST ~130, ABD ~250-390 uV
    abd = rng.uniform(180.0, 450.0) * effort * np.sin(phase + 0.15 + paradox_shift)
    airflow_wave = breath(np.pi / 2)
    airflow = rng.uniform(25.0, 60.0) * flow * airflow_wave  # real median ~35 uV
    wander = band_noise(rng, 3, seconds, 1.0, 0.01, 0.08)  # (3, seconds): baseline wander
    chest += upsample(30.0 * wander[0] + rng.normal(0.0, 40.0), context.number_of_samples, fs)
    abd += upsample(30.0 * wander[1] + rng.normal(0.0, 40.0), context.number_of_samples, fs)
    airflow += upsample(2.0 * wander[2], context.number_of_samples, fs)
    if movement_wave is not None:
        chest += rng.uniform(100.0, 300.0) * movement_wave
        abd += rng.uniform(100.0, 300.0) * movement_wave
    noise = white_noise(rng, (3, context.number_of_samples))
    return abd + 6.0 * noise[0], chest + 4.0 * noise[1], airflow + 1.0 * noise[2], phase, airflow_gain


def generate_spo2(context: _Context, resp_events) -> np.ndarray:
    """Per-second SpO2 (%): baseline falling with age, desaturations delayed ~20 s after events."""
    rng, seconds = context.rng, context.number_of_seconds
    deficit = np.zeros(seconds)
    for start, end, name in resp_events:
        deficit[int(start) : int(np.ceil(end))] = 1.0 - RESP_EVENT_TYPES[name][2]
    recovery_seconds = 9.0
    drop_rate = rng.uniform(0.5, 0.8) * (1.0 + 0.6 * age_factor(context.age))  # % per apnea second
    desaturation = scipy.signal.lfilter([drop_rate], [1.0, -np.exp(-1.0 / recovery_seconds)], deficit)
    delay = int(rng.integers(15, 22))
    desaturation = np.concatenate((np.zeros(delay), desaturation[:-delay]))[:seconds]
    baseline = np.clip(97.5 - 2.5 * age_factor(context.age) + rng.normal(0.0, 0.6), 92.0, 99.0)
    rem_dip = 0.6 * context.stage_weights[REM]
    spo2 = baseline - desaturation - rem_dip + 0.15 * rng.standard_normal(seconds)
    return np.clip(spo2, 60.0, 100.0)


def generate_heart_rate(context: _Context, resp_events) -> np.ndarray:
    """Per-second heart rate (bpm): stage, arousal surge, apnea bradycardia, LF variability (age)."""
    rng, seconds = context.rng, context.number_of_seconds
    old = age_factor(context.age)
    base = np.clip(rng.normal(63.0, 6.0) + (3.0 if context.sex == "F" else 0.0), 50.0, 82.0)
    surge_kernel = np.exp(-np.arange(30) / 6.0) * (1.0 - np.exp(-np.arange(30) / 1.5))
    surge = np.convolve(context.arousal_per_second, surge_kernel / surge_kernel.max())[:seconds]
    bradycardia = interval_indicator(resp_events, seconds)
    variability = band_noise(rng, 1, seconds, 1.0, 0.04, 0.15)[0] * 4.0 * np.exp(-2.2 * old)
    very_slow = band_noise(rng, 1, seconds, 1.0, 0.0005, 0.004)[0] * 2.5
    heart_rate = (
        base
        + context.per_stage(HEART_RATE_STAGE_OFFSET_BPM)
        + rng.uniform(12.0, 18.0) * np.clip(surge, 0.0, 1.5)
        - 4.0 * bradycardia
        + variability
        + very_slow
    )
    return np.clip(heart_rate, 38.0, 140.0)


def ecg_template(fs: int) -> tuple[np.ndarray, int]:
    """PQRST template (mV for a 1-mV R wave) and the index of the R peak."""
    times = np.arange(-0.25, 0.45, 1.0 / fs)
    waves = (  # (centre s, amplitude mV, width s)
        (-0.17, 0.12, 0.025),
        (-0.025, -0.10, 0.008),
        (0.0, 1.0, 0.010),
        (0.028, -0.22, 0.010),
        (0.26, 0.28, 0.045),
    )
    template = sum(amplitude * np.exp(-0.5 * ((times - centre) / width) ** 2) for centre, amplitude, width in waves)
    return template.astype(np.float32), int(np.argmin(np.abs(times)))


def generate_ecg(context: _Context, heart_rate_per_second: np.ndarray, breathing_phase: np.ndarray) -> np.ndarray:
    """ECG (mV): beats at the instantaneous heart rate with respiratory sinus arrhythmia (less with age)."""
    rng, fs, length = context.rng, context.fs, context.number_of_samples
    sinus_arrhythmia = 4.5 * np.exp(-2.0 * age_factor(context.age)) * rng.uniform(0.7, 1.3)
    heart_rate = upsample(heart_rate_per_second, length, fs) + sinus_arrhythmia * np.sin(breathing_phase)
    beat_phase = np.cumsum(heart_rate / (60.0 * fs), dtype=np.float64)
    beats = np.flatnonzero(np.diff(np.floor(beat_phase)) > 0) + 1
    r_amplitude = rng.uniform(0.6, 1.5)
    amplitudes = r_amplitude * (1.0 + 0.06 * np.sin(breathing_phase[beats]))
    template, r_index = ecg_template(fs)
    ecg = place_templates(beats, amplitudes, template, length, centre=r_index)
    ecg += 0.04 * np.sin(breathing_phase - 0.8) + 0.012 * white_noise(rng, length)
    return ecg


def generate_eeg(context: _Context, ecg: np.ndarray, movement_wave: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Six EEG channels (6, samples) in uV: stage bands, spindles, K-complexes, arousal shift, then the
    subject's electrode gains, background noise and artefacts. Also returns the E1-M2 share of the
    electrode pops (samples,) (E1-M2 shares the M2 reference)."""
    rng, fs, length = context.rng, context.fs, context.number_of_samples
    subject = context.subject
    old = age_factor(context.age)
    arousal = context.arousal_per_second
    eeg = np.zeros((6, length), dtype=np.float32)

    def mix(weights_per_component: Sequence[Sequence[float]], *rows: np.ndarray) -> None:
        """eeg += (6, k) weights @ (k, samples) rows, one small matrix product per call."""
        weights = np.asarray(weights_per_component, dtype=np.float32).T  # (6 channels, k)
        eeg[:] += weights @ np.stack(rows).astype(np.float32, copy=False)  # (6, k) @ (k, samples)

    eyes_closed_wake = context.stage_weights[WAKE] * smooth(context.eyes_closed_per_second.astype(np.float64), 5)
    for band, (low, high, table) in EEG_BAND_AMPLITUDE_UV.items():
        amplitude = context.per_stage(table)
        if band == "alpha":  # the subject's dominant rhythm, in eyes-closed wake
            amplitude = amplitude + (subject.eyes_closed_alpha_uv - table[WAKE]) * eyes_closed_wake
            low, high = subject.alpha_hz - 1.5, subject.alpha_hz + 1.5
        if band == "delta":
            amplitude = amplitude * (1.2 - 0.75 * old) * context.variability("depth")
        else:
            amplitude = amplitude * context.variability(band)
        amplitude = amplitude * subject.band_gain[band] * (1.0 + (AROUSAL_EEG_GAIN[band] - 1.0) * arousal)
        envelope = upsample(smooth(amplitude, 3), length, fs)
        sources = band_noise(rng, 2, length, fs, low, high)  # (2, length): one per hemisphere
        sources *= envelope
        weights = np.asarray(EEG_REGION_WEIGHTS[band])
        # left channels (F3, C3, O1) read source 0; right channels mostly source 1, partly source 0
        mix([weights * (1.0, 0.6, 1.0, 0.6, 1.0, 0.6), weights * (0.0, 0.8, 0.0, 0.8, 0.0, 0.8)], *sources)
    mix([EEG_REGION_WEIGHTS["spindle"], EEG_REGION_WEIGHTS["kcomplex"]],
        generate_spindles(context, length), generate_kcomplexes(context, length))
    eeg *= np.asarray(subject.eeg_channel_gain, dtype=np.float32)[:, None]  # electrode impedance / position

    # background: 1/f (shared level, independent per channel) plus amplifier noise, drifting over the night
    background = coloured_noise(rng, 6, length, fs, 0.3, 40.0, exponent=subject.background_exponent)
    background *= np.float32(subject.background_pink_uv)
    background += np.asarray(subject.background_white_uv, dtype=np.float32)[:, None] * white_noise(rng, (6, length))
    background *= upsample(context.variability("background"), length, fs)
    eeg += background
    del background

    # artefacts: ECG pickup, body movements, electrode pops, sweat, line noise
    rows, weights = [ecg, movement_wave], [subject.ecg_in_eeg_uv_per_mv, MOVEMENT_EEG_UV * rng.uniform(0.5, 1.5, 6)]
    pops = np.zeros(length, dtype=np.float32)
    eog_pop_sign = 0.0
    if subject.loose_electrode is not None:
        times = poisson_times(rng, np.full(context.number_of_seconds, subject.pops_per_minute / 60.0))
        template_times = np.arange(0.0, 3.0, 1.0 / fs)
        template = (1.0 - np.exp(-template_times / 0.01)) * np.exp(-template_times / rng.uniform(0.2, 1.0))
        amplitudes = rng.choice([-1.0, 1.0], times.size) * rng.uniform(50.0, 300.0, times.size)
        pops = place_templates((times * fs).astype(np.int64), amplitudes, template, length)
        signs = ELECTRODE_SIGNS[subject.loose_electrode]
        rows.append(pops)
        weights.append(signs[:6])
        eog_pop_sign = float(signs[6])
    if subject.sweat_uv > 0:
        episodes = np.clip(context.fluctuations["background"] + rng.normal(-0.3, 0.3), 0.0, None)
        sweat = band_noise(rng, 2, length, fs, 0.1, 0.6)  # (2, length): shared and differential
        sweat *= upsample(subject.sweat_uv * episodes, length, fs)
        rows += [sweat[0], sweat[1]]
        weights += [rng.uniform(0.6, 1.2, 6), rng.uniform(-0.5, 0.5, 6)]
    bursts = [(start, start + rng.uniform(30.0, 600.0), rng.uniform(3.0, 30.0))
              for start in poisson_times(rng, np.full(context.number_of_seconds, subject.line_bursts_per_hour / 3600))]
    if bursts:
        line_level = upsample(interval_level(bursts, context.number_of_seconds), length, fs)
        times = np.arange(length, dtype=np.float64) / fs
        rows.append(line_level * np.sin(2.0 * np.pi * subject.line_hz * times).astype(np.float32))
        weights.append(log_normal(rng, 0.7, 6))
    mix(weights, *rows)
    eeg += rng.normal(0.0, 15.0, size=(6, 1)).astype(np.float32)  # electrode offsets
    return eeg, eog_pop_sign * pops


def generate_spindles(context: _Context, length: int) -> np.ndarray:
    """Sleep spindles: bursts in the subject's spindle band with a ~1 s waxing-waning envelope (fewer with
    age and in deeper NREM)."""
    rng, fs, subject = context.rng, context.fs, context.subject
    rate = context.per_stage(SPINDLES_PER_MINUTE) / 60.0 * (1.0 - 0.6 * age_factor(context.age))
    depth = FLUCTUATION_SD["depth"] * context.fluctuations["depth"]
    rate *= subject.spindle_density * context.variability("spindle") * np.exp(DEPTH_SPINDLE_COUPLING * depth)
    rate *= 1.0 - np.clip(context.arousal_per_second, 0.0, 1.0)
    times = poisson_times(rng, rate)
    burst = np.hanning(int(fs * rng.uniform(0.8, 1.2))).astype(np.float32)
    positions = (times * fs).astype(np.int64)
    envelope = place_templates(positions, rng.uniform(10.0, 20.0, times.size), burst, length)
    carrier = band_noise(rng, 1, length, fs, subject.spindle_hz - 1.0, subject.spindle_hz + 1.0)[0]
    return envelope * carrier * np.float32(np.sqrt(2.0))


def generate_kcomplexes(context: _Context, length: int) -> np.ndarray:
    """K-complexes (sharp negative then slow positive wave, ~1 s) in N2/N3 and at arousal onsets."""
    rng, fs = context.rng, context.fs
    rate = context.per_stage(KCOMPLEXES_PER_MINUTE) / 60.0 * context.subject.kcomplex_density
    times = poisson_times(rng, rate)
    aroused = context.arousal_per_second > 0.5
    onsets = np.flatnonzero(aroused[1:] & ~aroused[:-1]) + 1  # seconds where an arousal starts
    onsets = onsets[np.isin(context.stage_per_second[onsets], (N2, N3))]
    times = np.concatenate((times, onsets - 0.5))
    times = times[times >= 0]
    template_times = np.arange(0.0, 1.2, 1.0 / fs)
    template = (-1.0 * np.exp(-0.5 * ((template_times - 0.25) / 0.07) ** 2)
                + 0.7 * np.exp(-0.5 * ((template_times - 0.6) / 0.15) ** 2))
    amplitudes = rng.uniform(50.0, 100.0, times.size) * (1.1 - 0.5 * age_factor(context.age))
    return place_templates((times * fs).astype(np.int64), amplitudes, template, length)


def generate_eog(context: _Context, frontal_eeg: np.ndarray, movement_wave: np.ndarray) -> np.ndarray:
    """E1-M2 (uV): REMs in REM, slow rolling in N1 and drowsy wake, blinks in wake, frontal EEG pickup,
    movement artefacts."""
    rng, fs, length = context.rng, context.fs, context.number_of_samples
    weights = context.stage_weights
    phasic_blocks = rng.random(context.number_of_seconds // 10 + 1) < context.subject.rem_phasic_fraction
    phasic = np.repeat(phasic_blocks, 10)[: context.number_of_seconds]
    rem_rate = weights[REM] * (phasic * 1.0 + 0.1) * np.exp(rng.normal(0.0, 0.2))
    eyes_open_wake = weights[WAKE] * ~context.eyes_closed_per_second
    saccade_rate = rem_rate + 0.3 * eyes_open_wake + 0.3 * context.arousal_per_second
    saccade_times = poisson_times(rng, saccade_rate)
    template_times = np.arange(0.0, 2.0, 1.0 / fs)
    saccade = (1.0 - np.exp(-template_times / 0.03)) * np.exp(-template_times / 0.6)
    signs = rng.choice([-1.0, 1.0], saccade_times.size)
    eog = place_templates((saccade_times * fs).astype(np.int64),
                          signs * rng.uniform(35.0, 110.0, saccade_times.size), saccade, length)
    blink_times = poisson_times(rng, 0.2 * eyes_open_wake)
    blink = np.hanning(int(0.3 * fs))
    blink_amplitudes = rng.uniform(40.0, 80.0, blink_times.size)
    eog += place_templates((blink_times * fs).astype(np.int64), blink_amplitudes, blink, length)
    rolling = band_noise(rng, 1, length, fs, 0.1, 0.5)[0]
    drowsy = DROWSY_ROLLING_UV * weights[WAKE] * context.eyes_closed_per_second
    rolling_amplitude = (context.per_stage(EOG_SLOW_ROLLING_UV) + drowsy) * context.variability("eog")
    eog += upsample(smooth(rolling_amplitude, 5), length, fs) * rolling
    eog += 0.6 * frontal_eeg + 1.5 * movement_wave * np.float32(MOVEMENT_EEG_UV)
    eog += 3.0 * white_noise(rng, length)
    return eog


def generate_emg(context: _Context, ecg: np.ndarray) -> np.ndarray:
    """Chin1-Chin2 (uV): broadband noise times a tone envelope (W > NREM > REM atonia), REM twitches,
    arousal and movement bursts, ECG pickup."""
    rng, fs, length = context.rng, context.fs, context.number_of_samples
    subject = context.subject
    tone = context.per_stage(np.multiply(EMG_TONE_UV, subject.emg_stage_gain)) * rng.uniform(0.7, 1.4)
    tone *= context.variability("emg") * (1.0 + 2.5 * context.arousal_per_second)
    tone *= 1.0 + 6.0 * context.movement_per_second
    envelope = upsample(smooth(tone, 3), length, fs)
    twitch_rate = REM_TWITCHES_PER_SECOND * np.exp(rng.normal(0.0, 0.4)) * context.stage_weights[REM]
    twitch_times = poisson_times(rng, twitch_rate)
    twitch = np.hanning(int(0.15 * fs))
    twitch_amplitudes = rng.uniform(5.0, 15.0, twitch_times.size)
    envelope += place_templates((twitch_times * fs).astype(np.int64), twitch_amplitudes, twitch, length)
    white = white_noise(rng, length + 1)
    carrier = (white[1:] - white[:-1]) * np.float32(np.sqrt(0.5))  # first difference: a high-pass
    return envelope * carrier + np.float32(subject.emg_ecg_uv_per_mv) * ecg + 0.4 * white[1:]


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
    context = _Context(
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
