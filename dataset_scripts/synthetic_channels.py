"""The 13 channels of a synthetic polysomnography record, generated from its hidden state.

:class:`ChannelContext` holds the per-record quantities (stage weights, arousal level, subject profile,
fluctuations, movements) that every channel generator reads; each generator draws from the record's
generator in a fixed order, so a record depends only on its seed. The signal model is documented in
``dataset_scripts/SYNTHETIC.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import scipy.signal

from dataset_scripts.synthetic_physiology import (
    AROUSAL_EEG_GAIN, DEPTH_SPINDLE_COUPLING, DROWSY_ROLLING_UV, EEG_BAND_AMPLITUDE_UV, EEG_REGION_WEIGHTS,
    ELECTRODE_SIGNS, EMG_TONE_UV, EOG_SLOW_ROLLING_UV, FLUCTUATION_SD, HEART_RATE_STAGE_OFFSET_BPM,
    KCOMPLEXES_PER_MINUTE, MOVEMENT_EEG_UV, N2, N3, REM, REM_TWITCHES_PER_SECOND, RESP_EVENT_TYPES,
    RESP_IRREGULARITY, RESP_RATE_STAGE_FACTOR, SPINDLES_PER_MINUTE, WAKE, SubjectProfile, age_factor, band_noise,
    coloured_noise, interval_indicator, interval_level, log_normal, place_templates, poisson_times, smooth, upsample,
    white_noise,
)


@dataclass
class ChannelContext:
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



def generate_respiration(context: ChannelContext, resp_events, flow_limitations, arousals, movement_wave=None):
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


def generate_spo2(context: ChannelContext, resp_events) -> np.ndarray:
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


def generate_heart_rate(context: ChannelContext, resp_events) -> np.ndarray:
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


def generate_ecg(context: ChannelContext, heart_rate_per_second: np.ndarray, breathing_phase: np.ndarray) -> np.ndarray:
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


def generate_eeg(context: ChannelContext, ecg: np.ndarray, movement_wave: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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


def generate_spindles(context: ChannelContext, length: int) -> np.ndarray:
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


def generate_kcomplexes(context: ChannelContext, length: int) -> np.ndarray:
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


def generate_eog(context: ChannelContext, frontal_eeg: np.ndarray, movement_wave: np.ndarray) -> np.ndarray:
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


def generate_emg(context: ChannelContext, ecg: np.ndarray) -> np.ndarray:
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

