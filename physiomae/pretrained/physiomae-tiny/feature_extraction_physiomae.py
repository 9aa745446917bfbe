"""Feature extractor for PhysioMAE: raw polysomnography channels -> 30-s windows at 100 Hz.

This module is the single preprocessing implementation of the project: the dataset builders call
`PhysioMAEFeatureExtractor.preprocess_record` / `preprocess_channels` / `cut_windows`, and users call the extractor
itself, on arrays or on files (EDF/EDF+/BDF files and WFDB records, read by `recording_physiomae.read_recording`).
It is copied to the Hub next to the model, so it imports nothing of ours except the configuration and the recording
reader.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np
from scipy import signal as scipy_signal
from transformers.feature_extraction_utils import BatchFeature, FeatureExtractionMixin
from transformers.utils import logging

from .configuration_physiomae import DEFAULT_MODALITIES, ChannelLayoutMixin
from .recording_physiomae import (
    DEFAULT_CHANNEL_ALIASES,
    MODALITY_UNITS,
    Recording,
    RecordingReadError,
    apply_channel_map,
    channel_lookup,
    channel_unit_factors,
    is_recording_path,
    map_channel_name,
    match_channels,
    normalize_channel_name,
    read_recording,
)


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

_GAUSSIAN_IQR = 1.3489795  # interquartile range of a standard normal: IQR / 1.349 estimates the std



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


class PhysioMAEFeatureExtractor(ChannelLayoutMixin, FeatureExtractionMixin):
    r"""
    Turns one overnight recording (named channels at any sampling rate) into PhysioMAE inputs: 30-s windows at
    100 Hz in the model's channel order, with per-window channel and modality masks.

    Steps (`preprocess_record`, then `cut_windows`):

    1. **Channel names.** Every input name is matched to the configured channels, case-insensitively, ignoring
       spaces (`_` and `:` read as `-`, a leading `EEG`/`EOG`/`EMG` word dropped), directly or through the alias
       table (`channel_aliases`; default `recording_physiomae.DEFAULT_CHANNEL_ALIASES`). Names that match nothing
       are reported as `unknown_channels` and logged as a warning. When two inputs map to one channel, an exact canonical name wins over an alias, otherwise the first
       wins; the others are reported as `duplicate_channels`. Configured channels not given are `missing_channels`.
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
        return [self.modality_names[index] for index in self.channel_modality_indices]

    # ----------------------------------------------------------------- channel names
    def map_channel_name(self, name: str) -> str | None:
        """The canonical channel an input name stands for, or None when it matches nothing."""
        return map_channel_name(name, channel_lookup(self.channel_names, self.channel_aliases))

    def _match_channels(self, channel_names: list[str], log: bool = True) -> tuple[dict[str, int], dict[str, Any]]:
        """Canonical channel -> input row, plus the naming part of the report (`log`: warn about unknown names)."""
        chosen, naming_report = match_channels(list(channel_names), self.channel_names, self.channel_aliases)
        unknown = naming_report["unknown_channels"]
        if unknown and log:
            logger.warning(
                f"PhysioMAEFeatureExtractor: {len(unknown)} channel(s) match no configured channel or alias and are "
                f"ignored: {unknown} (configured: {self.channel_names})"
            )
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
        """`recording_physiomae.channel_unit_factors` for the configured channels, warning about unknown units."""
        modality_of = dict(zip(self.channel_names, self.channel_modality))
        factors, converted, unknown = channel_unit_factors(chosen_rows, channel_names, units, modality_of)
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
        names, signals, rates, units, applied = apply_channel_map(recording, channel_map)
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
        return self.channel_layout.modality_mask(channel_mask)

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
    "DEFAULT_FILTER_BANDS",
    "DEFAULT_FIXED_SCALES",
    "PhysioMAEFeatureExtractor",
    "PreprocessedRecord",
]
