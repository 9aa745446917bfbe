"""PhysioMAE model configuration."""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

try:  # transformers >= 5
    from transformers import PreTrainedConfig
except ImportError:  # transformers 4.x
    from transformers import PretrainedConfig as PreTrainedConfig


DEFAULT_MODALITIES: dict[str, list[str]] = {
    "eeg": ["F3-M2", "F4-M1", "C3-M2", "C4-M1", "O1-M2", "O2-M1"],
    "eog": ["E1-M2"],
    "emg": ["Chin1-Chin2"],
    "resp": ["ABD", "CHEST", "AIRFLOW"],
    "spo2": ["SaO2"],
    "ecg": ["ECG"],
}

# ----------------------------------------------------------------------------------------------
# What makes a saved folder a Hub folder: the code files and the auto_map entries that point into them. Every
# save_pretrained of a PhysioMAE class (config, models, feature extractor) copies the code files found next to
# this module and writes the auto_map, so each folder loads with trust_remote_code=True anywhere.
# ----------------------------------------------------------------------------------------------
HUB_CODE_FILES = (
    "configuration_physiomae.py",
    "modeling_physiomae.py",
    "feature_extraction_physiomae.py",
    "recording_physiomae.py",
    "pipeline_physiomae.py",
)
MODEL_AUTO_MAP = {
    "AutoConfig": "configuration_physiomae.PhysioMAEConfig",
    "AutoModel": "modeling_physiomae.PhysioMAEModel",
    "AutoModelForPreTraining": "modeling_physiomae.PhysioMAEForPreTraining",
    "AutoModelForSequenceClassification": "modeling_physiomae.PhysioMAEForSequenceClassification",
    "AutoFeatureExtractor": "feature_extraction_physiomae.PhysioMAEFeatureExtractor",
}
FEATURE_EXTRACTOR_AUTO_MAP = {"AutoFeatureExtractor": "feature_extraction_physiomae.PhysioMAEFeatureExtractor"}


def copy_hub_code(save_directory: str | os.PathLike) -> list[str]:
    """Copy the code files of the Hub copy found next to this module into `save_directory`; returns their names.

    In a process that loaded the model with trust_remote_code, this module lives in transformers' module cache,
    which holds only the files the loaded class imports: those are copied."""
    source = Path(__file__).resolve().parent
    target = Path(save_directory)
    copied = []
    for name in HUB_CODE_FILES:
        if (source / name).is_file():
            if (target / name).resolve() != source / name:  # not when saving into the code's own folder
                shutil.copyfile(source / name, target / name)
            copied.append(name)
    return copied


def hub_auto_map(code_files: list[str]) -> dict[str, str]:
    """The model auto_map entries whose module is among `code_files`."""
    return {auto: reference for auto, reference in MODEL_AUTO_MAP.items()
            if f"{reference.split('.')[0]}.py" in code_files}


FUSION_MODES = ("early", "late")
MODALITY_DROPOUT_MODES = ("batch", "sample")
POOLING_MODES = ("mean", "per_modality")
CONTRASTIVE_MODES = ("pairwise", "loo")
DECODER_TYPES = ("in_place", "cross_attention", "bottleneck")
TOKENIZER_TYPES = ("conv", "conv+log_band_power")
RECONSTRUCTION_TARGETS = ("waveform", "log_band_power", "waveform+log_band_power")


def _default_modalities() -> dict[str, list[str]]:
    return {name: list(channels) for name, channels in DEFAULT_MODALITIES.items()}


@dataclass(frozen=True)
class ChannelLayout:
    """
    The channel layout of PhysioMAE inputs: which channels `input_values`' channel axis holds, grouped into the
    modalities of `modality_mask`, and the windows' geometry. The one layout type: `PhysioMAEConfig`,
    `PhysioMAEFeatureExtractor` (their `channel_layout`), the dataset builders and a saved dataset's description
    all give one.

    Args:
        modalities (`dict[str, list[str]]`, *optional*): ordered modality name -> its channel names; the
            concatenation is the channel order. Defaults to `DEFAULT_MODALITIES` (13 channels in 6 modalities).
        sampling_rate (`int`, *optional*, defaults to 100): Hz of the windows (None: not known).
        window_seconds (`float`, *optional*, defaults to 30.0): window length in seconds (None: not known).
    """

    modalities: dict[str, list[str]] = field(default_factory=_default_modalities)
    sampling_rate: int | None = 100
    window_seconds: float | None = 30.0

    @classmethod
    def of(cls, holder) -> "ChannelLayout":
        """The layout of an object with `modalities`, `sampling_rate` and `window_seconds` (a config or a feature
        extractor, including one loaded from an older Hub folder); `DEFAULT_MODALITIES` / 100 Hz / 30 s where it has
        none."""
        modalities = getattr(holder, "modalities", None) or DEFAULT_MODALITIES
        return cls(
            modalities={str(name): [str(channel) for channel in channels] for name, channels in modalities.items()},
            sampling_rate=int(getattr(holder, "sampling_rate", 100)),
            window_seconds=float(getattr(holder, "window_seconds", 30.0)),
        )

    def __eq__(self, other) -> bool:  # the order of modalities and channels is part of the layout
        if not isinstance(other, ChannelLayout):
            return NotImplemented
        return (list(self.modalities.items()), self.sampling_rate, self.window_seconds) == (
            list(other.modalities.items()), other.sampling_rate, other.window_seconds)

    @property
    def modality_names(self) -> list[str]:
        """Modality names in input order."""
        return list(self.modalities)

    @property
    def num_modalities(self) -> int:
        return len(self.modalities)

    @property
    def channel_names(self) -> list[str]:
        """All channel names in the order of `input_values`' channel axis."""
        return [channel for channels in self.modalities.values() for channel in channels]

    @property
    def num_channels(self) -> int:
        return len(self.channel_names)

    @property
    def channel_modality_indices(self) -> list[int]:
        """The modality index of every channel of `input_values`' channel axis."""
        return [index for index, channels in enumerate(self.modalities.values()) for _ in channels]

    @property
    def modality_channel_slices(self) -> dict[str, slice]:
        """The slice of `input_values`' channel axis that holds each modality."""
        slices, start = {}, 0
        for name, channels in self.modalities.items():
            slices[name] = slice(start, start + len(channels))
            start += len(channels)
        return slices

    @property
    def window_length(self) -> int:
        """Samples per window (3,000 by default)."""
        return int(round(self.window_seconds * self.sampling_rate))

    def modality_mask(self, channel_mask: np.ndarray) -> np.ndarray:
        """(num_windows, num_channels) bool -> (num_windows, num_modalities) bool: a modality is present in a window
        when any of its channels is."""
        channel_mask = np.asarray(channel_mask, dtype=bool)
        if not self.modalities:
            return np.zeros((channel_mask.shape[0], 0), dtype=bool)
        return np.stack([channel_mask[:, channels].any(axis=1) for channels in self.modality_channel_slices.values()],
                        axis=1)


def _layout_property(name: str) -> property:
    return property(lambda self: getattr(self.channel_layout, name), doc=getattr(ChannelLayout, name).__doc__)


class ChannelLayoutMixin:
    """`channel_layout` (a `ChannelLayout`) of a class with `modalities`, `sampling_rate` and `window_seconds`
    (`PhysioMAEConfig`, `PhysioMAEFeatureExtractor`), and its properties on the class itself."""

    @property
    def channel_layout(self) -> ChannelLayout:
        return ChannelLayout(self.modalities, self.sampling_rate, self.window_seconds)

    modality_names = _layout_property("modality_names")
    num_modalities = _layout_property("num_modalities")
    channel_names = _layout_property("channel_names")
    num_channels = _layout_property("num_channels")
    channel_modality_indices = _layout_property("channel_modality_indices")
    modality_channel_slices = _layout_property("modality_channel_slices")
    window_length = _layout_property("window_length")


class PhysioMAEConfig(ChannelLayoutMixin, PreTrainedConfig):
    r"""
    Configuration of a PhysioMAE model: a multimodal transformer over overnight physiological
    recordings, pretrained by masked autoencoding with input modality dropout.

    Args:
        modalities (`dict[str, list[str]]`, *optional*):
            Ordered mapping from modality name to its channel names. The concatenation of the lists
            is the channel order of `input_values`. Defaults to the six PhysioNet 2018 groups
            (eeg 6, eog 1, emg 1, resp 3, spo2 1, ecg 1 = 13 channels).
        sampling_rate (`int`, *optional*, defaults to 100):
            Sampling rate in Hz of `input_values` (after the feature extractor's resampling).
        window_seconds (`float`, *optional*, defaults to 30.0):
            Length of one input window in seconds (one sleep epoch).
        patch_seconds (`float`, *optional*, defaults to 1.0):
            Length of one patch (one token per modality) in seconds.
        hidden_size (`int`, *optional*, defaults to 256):
            Width of the encoder.
        num_hidden_layers (`int`, *optional*, defaults to 8):
            Depth of the encoder.
        num_attention_heads (`int`, *optional*, defaults to 8):
            Attention heads per encoder layer; must divide `hidden_size`.
        intermediate_size (`int`, *optional*):
            Width of the encoder MLP; defaults to `4 * hidden_size`.
        hidden_act (`str`, *optional*, defaults to `"gelu"`):
            Activation of the MLPs.
        hidden_dropout_prob (`float`, *optional*, defaults to 0.0):
            Dropout on residual branches.
        attention_probs_dropout_prob (`float`, *optional*, defaults to 0.0):
            Dropout on attention weights.
        layer_norm_eps (`float`, *optional*, defaults to 1e-6):
            Epsilon of the layer norms.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the truncated-normal weight initialisation.
        tokenizer_conv_channels (`int`, *optional*, defaults to 32):
            Output channels of each modality tokenizer's 1-D convolution over a patch.
        tokenizer_kernel_size (`int`, *optional*, defaults to 5):
            Kernel size of that convolution.
        tokenizer_stride (`int`, *optional*, defaults to 5):
            Stride of that convolution.
        tokenizer_type (`str`, *optional*, defaults to `"conv+log_band_power"`):
            `"conv"`: the convolution path only. `"conv+log_band_power"`: plus a linear projection of each
            patch's log band powers per channel (see `PhysioMAEModalityTokenizer`).
        mask_ratio (`float`, *optional*, defaults to 0.7):
            Share of each sample's present tokens hidden from the encoder during pretraining.
        modality_dropout_prob (`float`, *optional*, defaults to 1.0):
            Probability that input modality dropout removes one whole present modality (per batch or
            per sample, see `modality_dropout_mode`). 0 disables it (the plain `mae` strategy).
        modality_dropout_mode (`str`, *optional*, defaults to `"batch"`):
            `"batch"` drops the same modality for the whole batch (as in the paper); `"sample"`
            draws it per sample.
        fusion (`str`, *optional*, defaults to `"early"`):
            `"early"`: all tokens of all present modalities attend to each other. `"late"`: attention
            is blocked across modalities (each modality is encoded on its own; contrastive baselines).
        pooling (`str`, *optional*, defaults to `"per_modality"`):
            `"mean"`: the pooled embedding averages all present tokens (`hidden_size`).
            `"per_modality"`: the mean of each modality's tokens, concatenated
            (`hidden_size * num_modalities`), zeros where a modality is absent.
        decoder_hidden_size (`int`, *optional*, defaults to 128):
            Width of the per-modality decoders.
        decoder_num_hidden_layers (`int`, *optional*, defaults to 2):
            Transformer layers in each decoder.
        decoder_num_attention_heads (`int`, *optional*, defaults to 4):
            Heads of each decoder layer; must divide `decoder_hidden_size`.
        decoder_intermediate_size (`int`, *optional*):
            Width of the decoder MLP; defaults to `4 * decoder_hidden_size`.
        norm_patch_loss (`bool`, *optional*, defaults to `False`):
            Reconstruct each patch normalised by its own mean and variance (ViT-MAE's norm_pix_loss).
        decoder_type (`str`, *optional*, defaults to `"bottleneck"`):
            `"in_place"` (ViT-MAE): one decoder over the whole token sequence, the visible encoder tokens in
            their places and a mask token everywhere else, each with a decoder modality embedding and fixed
            sin-cos time positions, then one linear head per modality. `"cross_attention"`: one decoder
            per modality whose queries (mask token + learned time positions) only cross-attend to the
            visible tokens. `"bottleneck"`: the same per-modality decoders, but they cross-attend only to
            the mean of each modality's visible encoder tokens (one vector per modality), so the pooled
            per-modality embeddings that the probes read must carry what the hidden patches (and the
            dropped modality) hold. Measured on real PhysioNet 2018 excerpts (docs/real-data-study.md).
        reconstruction_target (`str`, *optional*, defaults to `"log_band_power"`):
            What the decoders rebuild per hidden patch and channel: `"waveform"` (the samples),
            `"log_band_power"` (log mean power in each of `SPECTRAL_BANDS_HZ` that the patch resolves,
            Hann-windowed FFT), or both (each part weighs half of the modality's loss). Targets are
            standardised per dimension with statistics of the training data (see
            `PhysioMAEForPreTraining.set_target_statistics`).
        contrastive_loss (`str`, *optional*):
            For `PhysioMAEForContrastivePreTraining`: `"pairwise"` (CLIP-style, every modality pair)
            or `"loo"` (each modality against the mean of the others).
        contrastive_temperature (`float`, *optional*, defaults to 0.1):
            Initial InfoNCE temperature.
        projection_dim (`int`, *optional*, defaults to 128):
            Width of the contrastive projection heads.
    """

    model_type = "physiomae"

    def __init__(
        self,
        modalities: dict[str, list[str]] | None = None,
        sampling_rate: int = 100,
        window_seconds: float = 30.0,
        patch_seconds: float = 1.0,
        hidden_size: int = 256,
        num_hidden_layers: int = 8,
        num_attention_heads: int = 8,
        intermediate_size: int | None = None,
        hidden_act: str = "gelu",
        hidden_dropout_prob: float = 0.0,
        attention_probs_dropout_prob: float = 0.0,
        layer_norm_eps: float = 1e-6,
        initializer_range: float = 0.02,
        tokenizer_conv_channels: int = 32,
        tokenizer_kernel_size: int = 5,
        tokenizer_stride: int = 5,
        tokenizer_type: str = "conv+log_band_power",
        mask_ratio: float = 0.7,
        modality_dropout_prob: float = 1.0,
        modality_dropout_mode: str = "batch",
        fusion: str = "early",
        pooling: str = "per_modality",
        decoder_hidden_size: int = 128,
        decoder_num_hidden_layers: int = 2,
        decoder_num_attention_heads: int = 4,
        decoder_intermediate_size: int | None = None,
        norm_patch_loss: bool = False,
        decoder_type: str = "bottleneck",
        reconstruction_target: str = "log_band_power",
        contrastive_loss: str | None = None,
        contrastive_temperature: float = 0.1,
        projection_dim: int = 128,
        **kwargs,
    ):
        self.modalities = {str(name): [str(ch) for ch in chans] for name, chans in (modalities or DEFAULT_MODALITIES).items()}
        self.sampling_rate = sampling_rate
        self.window_seconds = window_seconds
        self.patch_seconds = patch_seconds
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size if intermediate_size is not None else 4 * hidden_size
        self.hidden_act = hidden_act
        self.hidden_dropout_prob = hidden_dropout_prob
        self.attention_probs_dropout_prob = attention_probs_dropout_prob
        self.layer_norm_eps = layer_norm_eps
        self.initializer_range = initializer_range
        self.tokenizer_conv_channels = tokenizer_conv_channels
        self.tokenizer_kernel_size = tokenizer_kernel_size
        self.tokenizer_stride = tokenizer_stride
        self.tokenizer_type = tokenizer_type
        self.mask_ratio = mask_ratio
        self.modality_dropout_prob = modality_dropout_prob
        self.modality_dropout_mode = modality_dropout_mode
        self.fusion = fusion
        self.pooling = pooling
        self.decoder_hidden_size = decoder_hidden_size
        self.decoder_num_hidden_layers = decoder_num_hidden_layers
        self.decoder_num_attention_heads = decoder_num_attention_heads
        self.decoder_intermediate_size = (
            decoder_intermediate_size if decoder_intermediate_size is not None else 4 * decoder_hidden_size
        )
        self.norm_patch_loss = norm_patch_loss
        self.decoder_type = decoder_type
        self.reconstruction_target = reconstruction_target
        self.contrastive_loss = contrastive_loss
        self.contrastive_temperature = contrastive_temperature
        self.projection_dim = projection_dim
        super().__init__(**kwargs)
        self._validate()

    def to_json_string(self, use_diff: bool = True) -> str:
        """As the base class but without `sort_keys`, which would reorder `modalities` (and so the channels)."""
        import json

        config_dict = self.to_diff_dict() if use_diff else self.to_dict()
        return json.dumps(config_dict, indent=2) + "\n"

    # ----------------------------------------------------------------- derived sizes
    @property
    def patch_length(self) -> int:
        """Samples per patch (100 by default)."""
        return int(round(self.patch_seconds * self.sampling_rate))

    @property
    def num_patches(self) -> int:
        """Patches (time positions) per window and modality (30 by default)."""
        return self.window_length // self.patch_length

    @property
    def embedding_size(self) -> int:
        """Width of the pooled embedding."""
        return self.hidden_size * (self.num_modalities if self.pooling == "per_modality" else 1)

    # ----------------------------------------------------------------- validation
    def _validate(self) -> None:
        def fail(field: str, message: str) -> None:
            raise ValueError(f"PhysioMAEConfig.{field}: {message}")

        if not self.modalities:
            fail("modalities", "at least one modality is required")
        seen: dict[str, str] = {}
        for name, channels in self.modalities.items():
            if not channels:
                fail("modalities", f"modality {name!r} has no channels")
            for channel in channels:
                key = channel.lower()
                if key in seen:
                    fail("modalities", f"channel {channel!r} is in both {seen[key]!r} and {name!r}")
                seen[key] = name
        if not isinstance(self.sampling_rate, int) or self.sampling_rate <= 0:
            fail("sampling_rate", f"must be a positive integer, got {self.sampling_rate!r}")
        for field in ("window_seconds", "patch_seconds"):
            value = getattr(self, field)
            if value <= 0 or not math.isclose(value * self.sampling_rate, round(value * self.sampling_rate)):
                fail(field, f"{value} s is not a whole number of samples at {self.sampling_rate} Hz")
        if self.window_length % self.patch_length:
            fail(
                "window_seconds",
                f"window of {self.window_seconds} s is not a multiple of patch_seconds={self.patch_seconds}",
            )
        for width, heads in (
            ("hidden_size", "num_attention_heads"),
            ("decoder_hidden_size", "decoder_num_attention_heads"),
        ):
            if getattr(self, heads) <= 0 or getattr(self, width) % getattr(self, heads):
                fail(heads, f"{getattr(self, heads)} heads do not divide {width}={getattr(self, width)}")
        if not 0.0 < self.mask_ratio < 1.0:
            fail("mask_ratio", f"must lie in (0, 1), got {self.mask_ratio}")
        if not 0.0 <= self.modality_dropout_prob <= 1.0:
            fail("modality_dropout_prob", f"must lie in [0, 1], got {self.modality_dropout_prob}")
        for field, allowed in (
            ("modality_dropout_mode", MODALITY_DROPOUT_MODES),
            ("fusion", FUSION_MODES),
            ("pooling", POOLING_MODES),
            ("decoder_type", DECODER_TYPES),
            ("tokenizer_type", TOKENIZER_TYPES),
            ("reconstruction_target", RECONSTRUCTION_TARGETS),
        ):
            if getattr(self, field) not in allowed:
                fail(field, f"must be one of {allowed}, got {getattr(self, field)!r}")
        if self.contrastive_loss is not None and self.contrastive_loss not in CONTRASTIVE_MODES:
            fail("contrastive_loss", f"must be one of {CONTRASTIVE_MODES} or None, got {self.contrastive_loss!r}")
        if self.patch_length % self.tokenizer_stride or self.tokenizer_kernel_size > self.patch_length:
            fail(
                "tokenizer_stride",
                f"stride {self.tokenizer_stride} / kernel {self.tokenizer_kernel_size} do not fit a patch of "
                f"{self.patch_length} samples",
            )


    def save_pretrained(self, save_directory, push_to_hub: bool = False, **kwargs):
        """As `PreTrainedConfig.save_pretrained`, plus the Hub copy's code and an `auto_map` pointing into it (the
        model classes set their fuller map before saving their config)."""
        # also under a model's save_pretrained (which set a fuller auto_map): a config loaded from a Hub folder
        # carries an auto_map too, and its folder still needs the code; copying 4 small files twice is cheap
        os.makedirs(save_directory, exist_ok=True)
        copy_hub_code(save_directory)
        if "auto_map" in self.__dict__:
            return super().save_pretrained(save_directory, push_to_hub=push_to_hub, **kwargs)
        self.auto_map = {"AutoConfig": MODEL_AUTO_MAP["AutoConfig"]}
        try:
            return super().save_pretrained(save_directory, push_to_hub=push_to_hub, **kwargs)
        finally:  # the live config is left as it was
            del self.auto_map


__all__ = ["PhysioMAEConfig", "ChannelLayout", "DEFAULT_MODALITIES", "HUB_CODE_FILES", "MODEL_AUTO_MAP", "FEATURE_EXTRACTOR_AUTO_MAP"]
