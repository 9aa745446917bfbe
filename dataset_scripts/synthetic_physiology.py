"""The hidden physiology of a synthetic polysomnography record: the signal model's tables, the subject profile,
the signal helpers, and the hidden-state generators (hypnogram, respiratory events and arousals, body movements,
slow within-stage fluctuations).

Everything here works per 30-s epoch or per second; :mod:`dataset_scripts.synthetic_channels` turns it into the 13
channels and :mod:`dataset_scripts.synthetic_psg` into a record in the challenge layout. The signal model is
documented in ``dataset_scripts/SYNTHETIC.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import scipy.fft
import scipy.signal

from dataset_scripts import challenge_io

EPOCH_SECONDS = 30
FULL_NIGHT_HOURS = 8.0
"""Records shorter than this get a proportionally time-compressed sleep-cycle model (see
:func:`generate_hypnogram`), so that even a 10-minute record shows every stage."""

STAGES = challenge_io.STAGE_NAMES  # ("W", "N1", "N2", "N3", "R")
WAKE, N1, N2, N3, REM = range(5)

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



# ---------------------------------------------------------------------------------------------
# signal helpers
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

