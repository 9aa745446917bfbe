"""PyTorch PhysioMAE: a multimodal masked autoencoder for overnight physiological recordings.

One transformer reads all present modalities of a 30-s window (EEG, EOG, EMG, respiration, SpO2,
ECG by default) as one token sequence. Each modality is cut into 1-s patches; a small per-modality
tokenizer turns every patch into one token, to which a learned modality embedding and a time
position embedding shared by all modalities are added, so that tokens of the same second line up.

Token order is modality-major: modality 0 patches 0..P-1, modality 1 patches 0..P-1, ... so the
sequence length is `num_modalities * num_patches` and token `m * P + p` is modality `m`, second `p`.

Absent modalities (`modality_mask` False) are never fed as zeros: their tokens are excluded from
attention as keys and from every pooled embedding; their input data is never read (it is replaced
by zeros before the tokenizer only so that NaN placeholders cannot leak through `0 * NaN`), and
their positions in `last_hidden_state` are set to zero.

This file is copied to the Hub next to `configuration_physiomae.py` and imports nothing else of
ours.
"""

from __future__ import annotations

import copy
import functools
import itertools
import math
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.activations import ACT2FN
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.utils import ModelOutput

try:  # transformers >= 5: init functions that leave loaded weights alone
    from transformers import initialization as init
except ImportError:  # pragma: no cover - transformers 4.x
    from torch.nn import init

try:
    from transformers.modeling_layers import GradientCheckpointingLayer
except ImportError:  # pragma: no cover - old transformers
    GradientCheckpointingLayer = nn.Module

from .configuration_physiomae import PhysioMAEConfig, copy_hub_code, hub_auto_map


# ----------------------------------------------------------------------------------------------
# Output dataclasses
# ----------------------------------------------------------------------------------------------
@dataclass
class PhysioMAEModelOutput(ModelOutput):
    """
    Output of [`PhysioMAEModel`].

    Without masking (`apply_masking=False`, the default) the sequence is every token in modality-major order,
    `sequence_length = num_modalities * num_patches`. With masking it is the visible tokens only, in the
    per-sample shuffled order of `ids_restore` and padded to the batch maximum: `sequence_length =
    max_visible_tokens` (as in ViT-MAE, row `r` of sample `b` is token `argsort(ids_restore[b])[r]`).

    Args:
        last_hidden_state (`torch.FloatTensor` of shape `(batch_size, sequence_length, hidden_size)`):
            Encoder output after the final layer norm. Rows that are not real tokens (absent modalities;
            with masking, padding) are zero.
        pooler_output (`torch.FloatTensor` of shape `(batch_size, config.embedding_size)`, *optional*):
            Pooled embedding: mean over present tokens (`pooling="mean"`, width `hidden_size`) or the
            concatenated per-modality means (`pooling="per_modality"`, width
            `num_modalities * hidden_size`, zeros for absent modalities). `None` with masking.
        hidden_states (`tuple(torch.FloatTensor)`, *optional*, returned when `output_hidden_states=True`):
            `num_hidden_layers + 1` tensors of shape `(batch_size, sequence_length, hidden_size)`: the
            embeddings, then the output of each layer (before the final layer norm).
        attentions (`tuple(torch.FloatTensor)`, *optional*, returned when `output_attentions=True`):
            `num_hidden_layers` tensors of shape `(batch_size, num_heads, sequence_length, sequence_length)`.
            Rows of real tokens sum to 1 and put zero weight on absent / padding tokens. A row of an absent
            or padding token only attends to itself (its output is discarded).
        token_mask (`torch.BoolTensor` of shape `(batch_size, sequence_length)`):
            True where the row of `last_hidden_state` is a real token: one of a present modality (without
            masking) or a visible one, not padding (with masking).
        mask (`torch.FloatTensor` of shape `(batch_size, num_modalities * num_patches)`, *optional*):
            With masking: 1 where the token of a present modality was hidden from the encoder (every token
            of a dropped modality included), 0 where it was visible or its modality is absent. `None`
            without masking.
        ids_restore (`torch.LongTensor` of shape `(batch_size, num_modalities * num_patches)`, *optional*):
            With masking: position of each token in the per-sample shuffled order (as in ViT-MAE); token `t`
            was visible iff `ids_restore[b, t] < token_mask[b].sum()`. `None` without masking.
        dropped_modality (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
            With masking: index of the modality removed by input modality dropout per sample, -1 where none.
            `None` without masking.
    """

    last_hidden_state: torch.FloatTensor | None = None
    pooler_output: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None
    token_mask: torch.BoolTensor | None = None
    mask: torch.FloatTensor | None = None
    ids_restore: torch.LongTensor | None = None
    dropped_modality: torch.LongTensor | None = None


@dataclass
class PhysioMAEForPreTrainingOutput(ModelOutput):
    """
    Output of [`PhysioMAEForPreTraining`].

    Args:
        loss (`torch.FloatTensor` of shape `()`):
            Mean over modalities (those with at least one hidden patch in the batch) of the weighted MSE
            between predicted and true standardised targets of that modality, averaged over its hidden
            patches (each target part weighs equally; see `PhysioMAEForPreTraining.forward_loss`).
        loss_per_modality (`torch.FloatTensor` of shape `(num_modalities,)`):
            The per-modality MSE; NaN where a modality had no hidden patch in the batch.
        reconstruction (`torch.FloatTensor` of shape `(batch_size, num_channels, window_length)`):
            The waveform part of the decoders' prediction of every patch (hidden or not) in `input_values`'
            layout and units (`None` when `reconstruction_target` has no waveform part). With
            `norm_patch_loss=True` it is in per-patch normalised units.
        predicted_targets (`tuple(torch.FloatTensor)`): per modality `(batch_size, num_patches, target_size)`,
            the prediction in standardised target units (waveform and/or log band powers, see the config).
        targets (`tuple(torch.FloatTensor)`): the true standardised targets, same shapes.
        reconstruction_error_sum (`torch.FloatTensor` of shape `(num_modalities,)`):
            Per modality, the sum over hidden patches of the weighted squared error (the loss's numerator).
        reconstruction_reference_sum (`torch.FloatTensor` of shape `(num_modalities,)`):
            The same sum for a prediction of the training mean of every target dimension. Summed over a
            held-out set, `error / reference` is the relative reconstruction error (1 - R^2): 1.0 means
            "learned nothing".
        mask (`torch.FloatTensor` of shape `(batch_size, num_modalities * num_patches)`):
            1 where the token was hidden from the encoder and is scored by the loss, 0 where it was
            visible or its modality is absent.
        ids_restore (`torch.LongTensor` of shape `(batch_size, num_modalities * num_patches)`):
            Position of each token in the per-sample shuffled order (as in ViT-MAE): token `t` was
            visible iff `ids_restore[b, t] < number of visible tokens of sample b`.
        dropped_modality (`torch.LongTensor` of shape `(batch_size,)`):
            Index of the modality removed by input modality dropout per sample, -1 where none.
        last_hidden_state (`torch.FloatTensor` of shape `(batch_size, max_visible_tokens, hidden_size)`):
            Encoder output for the visible tokens (padded to the batch maximum; padded slots are zero, see
            `visible_token_mask`), as [`PhysioMAEModel`] returns it with `apply_masking=True`.
        visible_token_mask (`torch.BoolTensor` of shape `(batch_size, max_visible_tokens)`):
            True for real visible tokens, False for padding (the encoder output's `token_mask`).
        hidden_states (`tuple(torch.FloatTensor)`, *optional*):
            Encoder hidden states over the visible tokens, as in [`PhysioMAEModelOutput`].
        attentions (`tuple(torch.FloatTensor)`, *optional*):
            Encoder attentions over the visible tokens, as in [`PhysioMAEModelOutput`].
    """

    loss: torch.FloatTensor | None = None
    loss_per_modality: torch.FloatTensor | None = None
    reconstruction: torch.FloatTensor | None = None
    predicted_targets: tuple[torch.FloatTensor, ...] | None = None
    targets: tuple[torch.FloatTensor, ...] | None = None
    reconstruction_error_sum: torch.FloatTensor | None = None
    reconstruction_reference_sum: torch.FloatTensor | None = None
    mask: torch.FloatTensor | None = None
    ids_restore: torch.LongTensor | None = None
    dropped_modality: torch.LongTensor | None = None
    last_hidden_state: torch.FloatTensor | None = None
    visible_token_mask: torch.BoolTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None

    @property
    def logits(self) -> torch.FloatTensor | None:
        """Alias of `reconstruction` (the name transformers gives a head's prediction)."""
        return self.reconstruction


@dataclass
class PhysioMAEContrastiveOutput(ModelOutput):
    """
    Output of [`PhysioMAEForContrastivePreTraining`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*):
            InfoNCE loss (`"pairwise"` or `"loo"`); zero (with a graph) when no pair of samples could
            be contrasted.
        modality_embeddings (`torch.FloatTensor` of shape `(batch_size, num_modalities, projection_dim)`):
            L2-normalised projected per-modality embeddings; zeros for absent modalities.
        modality_mask (`torch.BoolTensor` of shape `(batch_size, num_modalities)`):
            Which modalities were present.
        logit_scale (`torch.FloatTensor` of shape `()`):
            The inverse temperature used (`exp` of the learnable log-scale, capped at 100).
        last_hidden_state (`torch.FloatTensor` of shape `(batch_size, sequence_length, hidden_size)`):
            The late-fusion encoder output.
        hidden_states, attentions: as in [`PhysioMAEModelOutput`].
    """

    loss: torch.FloatTensor | None = None
    modality_embeddings: torch.FloatTensor | None = None
    modality_mask: torch.BoolTensor | None = None
    logit_scale: torch.FloatTensor | None = None
    last_hidden_state: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


# ----------------------------------------------------------------------------------------------
# Input handling and small helpers
# ----------------------------------------------------------------------------------------------
def validate_and_prepare_inputs(
    config: PhysioMAEConfig, input_values: torch.Tensor, modality_mask: torch.Tensor | None, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """
    Check `input_values` / `modality_mask` against the config and return them ready for the model.

    Returns:
        input_values (`(batch_size, num_channels, window_length)`, `dtype`): absent modalities' channels
            replaced by zeros (never read, see module docstring).
        modality_mask (`(batch_size, num_modalities)`, bool).

    Raises `ValueError` naming the offending dimension, sample, modality or channel.
    """
    if not torch.is_tensor(input_values):
        raise TypeError(f"input_values must be a torch.Tensor, got {type(input_values).__name__}")
    expected = f"(batch_size, num_channels={config.num_channels}, window_length={config.window_length})"
    if input_values.dim() != 3:
        raise ValueError(f"input_values must have shape {expected}; got shape {tuple(input_values.shape)}")
    batch_size, num_channels, num_samples = input_values.shape
    if num_channels != config.num_channels:
        raise ValueError(
            f"input_values has {num_channels} channels but the config expects {config.num_channels} "
            f"({', '.join(config.channel_names)}), shape {expected}; put absent channels in as zeros and "
            f"mark their modality absent in modality_mask"
        )
    if num_samples != config.window_length:
        raise ValueError(
            f"input_values has {num_samples} samples per channel but the config expects "
            f"{config.window_length} ({config.window_seconds} s at {config.sampling_rate} Hz), shape {expected}"
        )
    if batch_size == 0:
        raise ValueError("input_values has an empty batch dimension")

    if modality_mask is None:
        modality_mask = torch.ones(batch_size, config.num_modalities, dtype=torch.bool, device=input_values.device)
    else:
        modality_mask = torch.as_tensor(modality_mask, device=input_values.device)
        if tuple(modality_mask.shape) != (batch_size, config.num_modalities):
            raise ValueError(
                f"modality_mask must have shape (batch_size={batch_size}, num_modalities={config.num_modalities}) "
                f"for modalities {config.modality_names}; got shape {tuple(modality_mask.shape)}"
            )
        if modality_mask.dtype != torch.bool:
            if not bool(((modality_mask == 0) | (modality_mask == 1)).all()):
                raise ValueError("modality_mask must be boolean (or 0/1); got other values")
            modality_mask = modality_mask.bool()

    empty_samples = (~modality_mask.any(dim=1)).nonzero().flatten().tolist()
    if empty_samples:
        raise ValueError(
            f"sample(s) {empty_samples} of the batch have no modality present (modality_mask all False); "
            f"PhysioMAE needs at least one of {config.modality_names}"
        )

    channels_per_modality = torch.tensor(
        [len(channels) for channels in config.modalities.values()], device=input_values.device
    )
    # (batch, num_modalities) -> (batch, num_channels)
    channel_present = modality_mask.repeat_interleave(channels_per_modality, dim=1)
    non_finite = ~torch.isfinite(input_values) & channel_present[:, :, None]
    if bool(non_finite.any()):
        sample_index, channel_index, _ = non_finite.nonzero()[0].tolist()
        raise ValueError(
            f"input_values has NaN/inf values in a present channel: sample {sample_index}, channel "
            f"{config.channel_names[channel_index]!r}; clean the signal or mark its modality absent"
        )
    input_values = input_values.to(dtype)
    input_values = torch.where(channel_present[:, :, None], input_values, input_values.new_zeros(()))
    return input_values, modality_mask


def token_modality_ids(config: PhysioMAEConfig, device: torch.device) -> torch.LongTensor:
    """Modality index of every token in modality-major order, shape `(num_modalities * num_patches,)`."""
    return torch.arange(config.num_modalities, device=device).repeat_interleave(config.num_patches)


def build_attention_mask(
    key_mask: torch.BoolTensor, token_modalities: torch.LongTensor, block_cross_modality: bool
) -> torch.BoolTensor:
    """
    Boolean self-attention mask, True = may attend.

    Args:
        key_mask (`(batch_size, sequence_length)` bool): tokens that may serve as keys (present / real).
        token_modalities (`(batch_size, sequence_length)` long): modality index of each token.
        block_cross_modality: late fusion; a token only attends to tokens of its own modality.

    Returns:
        `(batch_size, 1, sequence_length, sequence_length)`. Every token may also attend to itself so
        that no row is empty (rows of absent / padded tokens; their outputs are discarded).
    """
    sequence_length = key_mask.shape[1]
    # (batch, keys) -> (batch, queries, keys)
    allowed = key_mask[:, None, :].expand(-1, sequence_length, -1)
    if block_cross_modality:
        allowed = allowed & (token_modalities[:, :, None] == token_modalities[:, None, :])
    allowed = allowed | torch.eye(sequence_length, dtype=torch.bool, device=key_mask.device)[None]
    return allowed[:, None]


def per_modality_mean(
    sequence_output: torch.Tensor, token_mask: torch.BoolTensor, num_modalities: int, num_patches: int
) -> torch.Tensor:
    """Mean of each modality's tokens: `(batch, M * P, hidden)` -> `(batch, M, hidden)`, zeros for absent."""
    batch_size, _, hidden_size = sequence_output.shape
    # (batch, M * P, hidden) -> (batch, M, P, hidden)
    tokens = sequence_output.reshape(batch_size, num_modalities, num_patches, hidden_size)
    weights = token_mask.reshape(batch_size, num_modalities, num_patches, 1).to(sequence_output.dtype)
    return (tokens * weights).sum(dim=2) / weights.sum(dim=2).clamp(min=1.0)


def pool_tokens(sequence_output: torch.Tensor, token_mask: torch.BoolTensor, config: PhysioMAEConfig) -> torch.Tensor:
    """Pooled embedding over present tokens, `(batch, config.embedding_size)` (see `PhysioMAEModelOutput`)."""
    if config.pooling == "per_modality":
        modality_means = per_modality_mean(sequence_output, token_mask, config.num_modalities, config.num_patches)
        # (batch, M, hidden) -> (batch, M * hidden)
        return modality_means.flatten(1)
    weights = token_mask[:, :, None].to(sequence_output.dtype)
    return (sequence_output * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def patchify(signals: torch.Tensor, patch_length: int) -> torch.Tensor:
    """`(batch, channels, window_length)` -> `(batch, num_patches, channels * patch_length)`."""
    batch_size, num_channels, window_length = signals.shape
    num_patches = window_length // patch_length
    # (batch, channels, P, L) -> (batch, P, channels, L) -> (batch, P, channels * L)
    patches = signals.reshape(batch_size, num_channels, num_patches, patch_length).permute(0, 2, 1, 3)
    return patches.reshape(batch_size, num_patches, num_channels * patch_length)


def unpatchify(patches: torch.Tensor, num_channels: int, patch_length: int) -> torch.Tensor:
    """`(batch, num_patches, channels * patch_length)` -> `(batch, channels, num_patches * patch_length)`."""
    batch_size, num_patches, _ = patches.shape
    # (batch, P, channels, L) -> (batch, channels, P, L) -> (batch, channels, P * L)
    signals = patches.reshape(batch_size, num_patches, num_channels, patch_length).permute(0, 2, 1, 3)
    return signals.reshape(batch_size, num_channels, num_patches * patch_length)


def keep_count(num_candidates: torch.LongTensor, mask_ratio: float) -> torch.LongTensor:
    """
    Number of tokens kept visible: `int(num_candidates * (1 - mask_ratio))`, at least 1.

    Computed in integer arithmetic (ratio resolved to 1e-6) so that e.g. `30 * (1 - 0.9)` gives 3,
    not 2 as float rounding would.
    """
    keep_per_million = int(round((1.0 - mask_ratio) * 1_000_000))
    return ((num_candidates * keep_per_million) // 1_000_000).clamp(min=1)


def random_masking(
    candidate_mask: torch.BoolTensor, mask_ratio: float, noise: torch.Tensor
) -> tuple[torch.LongTensor, torch.BoolTensor, torch.LongTensor, torch.BoolTensor]:
    """
    Per-sample random masking by argsort of noise (ViT-MAE), restricted to candidate tokens.

    Only candidate tokens (present, not dropped) can stay visible; each sample keeps
    `keep_count(number of its candidates)` of them, the ones with the smallest noise. Samples keep
    different numbers of tokens when their modalities differ, so the kept set is padded to the batch
    maximum; padded slots are flagged False in `visible_token_mask` and must be masked as keys.

    Args:
        candidate_mask (`(batch, seq)` bool): tokens that may stay visible.
        mask_ratio: share of candidates hidden.
        noise (`(batch, seq)` float): sort keys; smaller = kept first.

    Returns:
        ids_keep (`(batch, max_keep)` long): indices of the visible tokens (then padding indices).
        visible_token_mask (`(batch, max_keep)` bool): True for real visible tokens.
        ids_restore (`(batch, seq)` long): rank of every token in the shuffled order.
        kept (`(batch, seq)` bool): True for visible tokens, in the original order.
    """
    num_candidates = candidate_mask.sum(dim=1)
    keep_counts = torch.minimum(keep_count(num_candidates, mask_ratio), num_candidates)
    # non-candidates sort after every candidate
    sort_keys = torch.where(candidate_mask, noise.float(), torch.full_like(noise, float("inf"), dtype=torch.float))
    ids_shuffle = torch.argsort(sort_keys, dim=1, stable=True)
    ids_restore = torch.argsort(ids_shuffle, dim=1, stable=True)
    max_keep = int(keep_counts.max())
    ids_keep = ids_shuffle[:, :max_keep]
    visible_token_mask = torch.arange(max_keep, device=candidate_mask.device)[None, :] < keep_counts[:, None]
    kept = ids_restore < keep_counts[:, None]
    return ids_keep, visible_token_mask, ids_restore, kept


def visible_token_positions(
    ids_restore: torch.LongTensor, visible_token_mask: torch.BoolTensor
) -> tuple[torch.LongTensor, torch.BoolTensor]:
    """
    Where the rows of a masked encoder output sit in the full sequence (the inverse of `ids_restore`).

    Args:
        ids_restore (`(batch, seq)` long): rank of every token in the shuffled order (a permutation).
        visible_token_mask (`(batch, max_keep)` bool): real visible rows of the encoder output.

    Returns:
        ids_keep (`(batch, max_keep)` long): position in the full sequence of each encoder output row
            (padding rows point at hidden tokens), as `random_masking` returns it.
        kept (`(batch, seq)` bool): True for visible tokens, in the original order.
    """
    ids_shuffle = torch.argsort(ids_restore, dim=1)  # exact inverse of the permutation
    ids_keep = ids_shuffle[:, : visible_token_mask.shape[1]]
    kept = ids_restore < visible_token_mask.sum(dim=1, keepdim=True)
    return ids_keep, kept


def random_uniform(shape, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """Uniform [0, 1) draws from the caller's generator (on the generator's device), moved to `device`."""
    draw_device = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=draw_device).to(device)


# Bands (Hz) of the `log_band_power` reconstruction target; a band is used when the patch's FFT resolves it.
SPECTRAL_BANDS_HZ: tuple[tuple[float, float], ...] = (
    (0.5, 4.0),  # delta
    (4.0, 8.0),  # theta
    (8.0, 12.0),  # alpha
    (12.0, 16.0),  # sigma (spindles)
    (16.0, 30.0),  # beta
    (30.0, 50.0),  # gamma / muscle
)


@functools.lru_cache(maxsize=None)
def spectral_band_matrix(patch_length: int, sampling_rate: int) -> torch.Tensor:
    """`(num_frequencies, num_bands)` averaging matrix from the patch's rFFT bins to `SPECTRAL_BANDS_HZ`.

    Bands that hold no FFT bin at this patch length / sampling rate are left out. Derived from the config, so
    it is cached here (on the CPU) rather than stored in every model and checkpoint.
    """
    # built on the CPU even inside a meta-device context (from_pretrained), where a tensor has no values
    frequencies = torch.fft.rfftfreq(patch_length, d=1.0 / sampling_rate, device="cpu")
    columns = []
    for low, high in SPECTRAL_BANDS_HZ:
        in_band = ((frequencies >= low) & (frequencies < high)).float()
        if in_band.sum() > 0:
            columns.append(in_band / in_band.sum())
    return torch.stack(columns, dim=1)


def log_band_powers(patches: torch.Tensor, band_matrix: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """`(batch, P, channels, L)` -> `(batch, P, channels * num_bands)`: log mean power of each band.

    Hann-windowed FFT of each patch, power normalised by the window's energy, averaged over the band's bins.
    """
    window = torch.hann_window(patches.shape[-1], periodic=False, dtype=patches.dtype, device=patches.device)
    spectrum = torch.fft.rfft(patches * window, dim=-1)  # (batch, P, channels, F)
    power = spectrum.real.pow(2) + spectrum.imag.pow(2)
    power = power / window.pow(2).sum()
    band_power = power @ band_matrix.to(power.dtype)  # (batch, P, channels, bands)
    return torch.log(band_power + eps).flatten(2)


def sincos_position_embeddings(num_positions: int, width: int) -> torch.Tensor:
    """Fixed 1-D sin-cos position embeddings `(num_positions, width)` (Transformer / ViT-MAE)."""
    half = width // 2
    frequencies = 1.0 / (10000.0 ** (torch.arange(half, dtype=torch.float64, device="cpu") / max(half, 1)))
    angles = torch.arange(num_positions, dtype=torch.float64, device="cpu")[:, None] * frequencies[None, :]
    embeddings = torch.zeros(num_positions, width, dtype=torch.float64, device="cpu")
    embeddings[:, 0 : 2 * half : 2] = torch.sin(angles)
    embeddings[:, 1 : 2 * half : 2] = torch.cos(angles)
    return embeddings.float()


# ----------------------------------------------------------------------------------------------
# Embeddings
# ----------------------------------------------------------------------------------------------
class PhysioMAEModalityTokenizer(nn.Module):
    """
    Turns one modality's signals into one token per patch: a 1-D convolution over the patch (all the
    modality's channels as input channels), GELU, flatten, and a linear layer to `hidden_size`. With
    `tokenizer_type="conv+log_band_power"` a linear projection of the patch's log band powers per channel
    (`SPECTRAL_BANDS_HZ`, as in `log_band_powers`) is added to the token, so that spectral content, which
    a small convolution learns only slowly, is in every token from the start (BIOT / LaBraM-style spectral
    tokens beside the waveform path).
    """

    def __init__(self, config: PhysioMAEConfig, num_channels: int):
        super().__init__()
        self.num_patches = config.num_patches
        self.patch_length = config.patch_length
        self.sampling_rate = config.sampling_rate
        self.spectral_projection = None
        if config.tokenizer_type == "conv+log_band_power":
            num_bands = spectral_band_matrix(config.patch_length, config.sampling_rate).shape[1]
            self.spectral_projection = nn.Linear(num_channels * num_bands, config.hidden_size)
        self.convolution = nn.Conv1d(
            num_channels,
            config.tokenizer_conv_channels,
            kernel_size=config.tokenizer_kernel_size,
            stride=config.tokenizer_stride,
        )
        self.activation = nn.GELU()
        convolved_length = (config.patch_length - config.tokenizer_kernel_size) // config.tokenizer_stride + 1
        self.projection = nn.Linear(config.tokenizer_conv_channels * convolved_length, config.hidden_size)

    def forward(self, signals: torch.Tensor) -> torch.Tensor:
        batch_size, num_channels, _ = signals.shape
        # (batch, channels, window_length) -> (batch, channels, P, L) -> (batch, P, channels, L)
        patches = signals.reshape(batch_size, num_channels, self.num_patches, self.patch_length).permute(0, 2, 1, 3)
        # -> (batch * P, channels, L)
        patches = patches.reshape(batch_size * self.num_patches, num_channels, self.patch_length)
        # (batch * P, conv_channels, convolved_length) -> (batch * P, conv_channels * convolved_length)
        features = self.activation(self.convolution(patches)).flatten(1)
        # (batch * P, hidden) -> (batch, P, hidden)
        tokens = self.projection(features).reshape(batch_size, self.num_patches, -1)
        if self.spectral_projection is not None:
            # (batch * P, channels, L) -> (batch, P, channels, L) -> (batch, P, channels * bands)
            band_matrix = spectral_band_matrix(self.patch_length, self.sampling_rate).to(patches.device)
            spectra = log_band_powers(patches.reshape(batch_size, self.num_patches, num_channels, -1).float(), band_matrix)
            tokens = tokens + self.spectral_projection(spectra.to(tokens.dtype))
        return tokens


class PhysioMAEEmbeddings(nn.Module):
    """
    All modalities' tokens plus a learned modality embedding and a learned time-position embedding
    shared by all modalities. Output `(batch, num_modalities * num_patches, hidden_size)`, modality-major.
    """

    def __init__(self, config: PhysioMAEConfig):
        super().__init__()
        self.config = config
        self.tokenizers = nn.ModuleList(
            [PhysioMAEModalityTokenizer(config, len(channels)) for channels in config.modalities.values()]
        )
        self.modality_embeddings = nn.Parameter(torch.zeros(config.num_modalities, config.hidden_size))
        self.time_position_embeddings = nn.Parameter(torch.zeros(config.num_patches, config.hidden_size))
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.channel_slices = list(config.modality_channel_slices.values())

    def initialize_weights(self) -> None:
        std = self.config.initializer_range
        init.trunc_normal_(self.modality_embeddings, std=std, a=-2 * std, b=2 * std)
        init.trunc_normal_(self.time_position_embeddings, std=std, a=-2 * std, b=2 * std)

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        batch_size = input_values.shape[0]
        # each (batch, P, hidden) -> (batch, M, P, hidden)
        tokens = torch.stack(
            [tokenizer(input_values[:, channels]) for tokenizer, channels in zip(self.tokenizers, self.channel_slices)],
            dim=1,
        )
        tokens = tokens + self.modality_embeddings[None, :, None, :] + self.time_position_embeddings[None, None, :, :]
        # (batch, M, P, hidden) -> (batch, M * P, hidden)
        return self.dropout(tokens.reshape(batch_size, -1, tokens.shape[-1]))


class PhysioMAEMasking(nn.Module):
    """
    Decides which tokens the encoder sees when [`PhysioMAEModel`] masks (`apply_masking=True`, as in
    pretraining). It has no parameters.

    1. Input modality dropout (training mode, probability `config.modality_dropout_prob`, or forced
       with `dropped_modality`) removes one whole present modality from the encoder's input:
       - `modality_dropout_mode="batch"` (paper): one modality for the whole batch, chosen uniformly
         among modalities that can be dropped in every sample (present, and not the sample's only
         modality); if there is none, among those droppable in at least one sample. Samples where the
         chosen modality is absent or alone keep all their modalities (`dropped_modality = -1`).
       - `"sample"`: each sample flips its own coin and picks among its droppable modalities.
       A sample is never left without a visible modality.
    2. Random masking: of the remaining present tokens of each sample ("candidates"), exactly
       `int(num_candidates * (1 - mask_ratio))` (at least 1) with the smallest `noise` stay visible.
       Samples with different modalities keep different numbers of tokens, so the visible set is
       padded to the batch maximum and the padding is flagged in `visible_token_mask`.
    """

    def __init__(self, config: PhysioMAEConfig):
        super().__init__()
        self.config = config

    def _resolve_forced_dropout(self, dropped_modality, droppable: torch.BoolTensor) -> torch.LongTensor:
        batch_size, num_modalities = droppable.shape
        if isinstance(dropped_modality, str):
            if dropped_modality not in self.config.modality_names:
                raise ValueError(
                    f"dropped_modality={dropped_modality!r} is not one of {self.config.modality_names}"
                )
            dropped_modality = self.config.modality_names.index(dropped_modality)
        requested = torch.as_tensor(dropped_modality, device=droppable.device).long()
        if requested.dim() == 0:
            requested = requested.expand(batch_size)
        if tuple(requested.shape) != (batch_size,):
            raise ValueError(
                f"dropped_modality must be an int, a modality name or a (batch_size={batch_size},) tensor; "
                f"got shape {tuple(requested.shape)}"
            )
        if bool(((requested < -1) | (requested >= num_modalities)).any()):
            raise ValueError(f"dropped_modality values must lie in [-1, {num_modalities}); got {requested.tolist()}")
        # only where the modality is present and not the sample's only one
        allowed = droppable.gather(1, requested.clamp(min=0)[:, None]).squeeze(1) & (requested >= 0)
        return torch.where(allowed, requested, torch.full_like(requested, -1))

    def select_dropped_modality(
        self,
        modality_mask: torch.BoolTensor,
        dropped_modality=None,
        generator: torch.Generator | None = None,
    ) -> torch.LongTensor:
        """Choose the modality removed per sample, `(batch,)` long, -1 = none (see class docstring)."""
        batch_size, num_modalities = modality_mask.shape
        device = modality_mask.device
        droppable = modality_mask & (modality_mask.sum(dim=1, keepdim=True) >= 2)
        no_drop = torch.full((batch_size,), -1, dtype=torch.long, device=device)
        if dropped_modality is not None:
            return self._resolve_forced_dropout(dropped_modality, droppable)
        probability = self.config.modality_dropout_prob
        if not self.training or probability <= 0.0:
            return no_drop
        if self.config.modality_dropout_mode == "batch":
            if float(random_uniform((), generator, device)) >= probability:
                return no_drop
            candidates = droppable.all(dim=0)
            if not bool(candidates.any()):
                candidates = droppable.any(dim=0)
            if not bool(candidates.any()):
                return no_drop
            candidate_indices = candidates.nonzero().flatten()
            choice = int(random_uniform((), generator, device) * len(candidate_indices))
            chosen = candidate_indices[min(choice, len(candidate_indices) - 1)]
            return torch.where(droppable[:, chosen], chosen.expand(batch_size), no_drop)
        # per sample: own coin, uniform among own droppable modalities
        coins = random_uniform((batch_size,), generator, device) < probability
        scores = random_uniform((batch_size, num_modalities), generator, device).masked_fill(~droppable, -1.0)
        choice = scores.argmax(dim=1)
        return torch.where(coins & droppable.any(dim=1), choice, no_drop)

    def forward(
        self,
        modality_mask: torch.BoolTensor,
        noise: torch.Tensor | None = None,
        dropped_modality=None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.LongTensor, torch.LongTensor, torch.BoolTensor, torch.LongTensor, torch.BoolTensor]:
        """
        Args:
            modality_mask (`(batch, num_modalities)` bool): present modalities.
            noise (`(batch, num_modalities * num_patches)` float, *optional*): masking sort keys; default
                uniform draws from `generator`.
            dropped_modality, generator: as in [`PhysioMAEModel.forward`].

        Returns:
            dropped_modality (`(batch,)` long): modality removed per sample, -1 = none.
            ids_keep (`(batch, max_keep)` long): positions of the visible tokens (then padding positions).
            visible_token_mask (`(batch, max_keep)` bool): True for real visible tokens.
            ids_restore (`(batch, M * P)` long): rank of every token in the shuffled order.
            hidden (`(batch, M * P)` bool): tokens of present modalities hidden from the encoder.
        """
        config = self.config
        batch_size = modality_mask.shape[0]
        sequence_length = config.num_modalities * config.num_patches
        device = modality_mask.device

        dropped = self.select_dropped_modality(modality_mask, dropped_modality, generator)  # (batch,)
        encoder_modality_mask = modality_mask.clone()
        dropped_rows = (dropped >= 0).nonzero().flatten()
        encoder_modality_mask[dropped_rows, dropped[dropped_rows]] = False

        # (batch, M) -> (batch, M * P)
        token_present = modality_mask.repeat_interleave(config.num_patches, dim=1)
        candidates = encoder_modality_mask.repeat_interleave(config.num_patches, dim=1)
        if noise is None:
            noise = random_uniform((batch_size, sequence_length), generator, device)
        elif tuple(noise.shape) != (batch_size, sequence_length):
            raise ValueError(
                f"noise must have shape (batch_size={batch_size}, num_modalities * num_patches={sequence_length}); "
                f"got {tuple(noise.shape)}"
            )
        ids_keep, visible_token_mask, ids_restore, kept = random_masking(candidates, config.mask_ratio, noise.to(device))
        return dropped, ids_keep, visible_token_mask, ids_restore, token_present & ~kept


# ----------------------------------------------------------------------------------------------
# Transformer blocks
# ----------------------------------------------------------------------------------------------
class PhysioMAEAttention(nn.Module):
    """
    Multi-head (self- or cross-) attention with `torch.nn.functional.scaled_dot_product_attention` and a
    boolean mask (True = may attend). With `output_attentions=True` the weights are computed explicitly
    (same numbers up to float rounding) and returned.
    """

    def __init__(self, hidden_size: int, num_heads: int, dropout_prob: float):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.dropout_prob = dropout_prob
        self.query = nn.Linear(hidden_size, hidden_size)
        self.key = nn.Linear(hidden_size, hidden_size)
        self.value = nn.Linear(hidden_size, hidden_size)
        self.output = nn.Linear(hidden_size, hidden_size)

    def _split_heads(self, states: torch.Tensor) -> torch.Tensor:
        batch_size, length, _ = states.shape
        # (batch, length, hidden) -> (batch, heads, length, head_dim)
        return states.reshape(batch_size, length, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(
        self,
        hidden_states: torch.Tensor,
        key_value_states: torch.Tensor | None = None,
        attention_mask: torch.BoolTensor | None = None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        key_value_states = hidden_states if key_value_states is None else key_value_states
        batch_size, query_length, hidden_size = hidden_states.shape
        query = self._split_heads(self.query(hidden_states))
        key = self._split_heads(self.key(key_value_states))
        value = self._split_heads(self.value(key_value_states))
        dropout_prob = self.dropout_prob if self.training else 0.0

        attention_weights = None
        if output_attentions:
            # (batch, heads, queries, keys)
            scores = torch.matmul(query, key.transpose(-1, -2)) / math.sqrt(self.head_dim)
            if attention_mask is not None:
                scores = scores.masked_fill(~attention_mask, float("-inf"))
            attention_weights = scores.softmax(dim=-1)
            context = torch.matmul(F.dropout(attention_weights, p=dropout_prob, training=self.training), value)
        else:
            context = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask, dropout_p=dropout_prob)
        # (batch, heads, queries, head_dim) -> (batch, queries, hidden)
        context = context.transpose(1, 2).reshape(batch_size, query_length, hidden_size)
        return self.output(context), attention_weights


class PhysioMAEMLP(nn.Module):
    """Two-layer feed-forward block."""

    def __init__(self, hidden_size: int, intermediate_size: int, hidden_act: str):
        super().__init__()
        self.dense_in = nn.Linear(hidden_size, intermediate_size)
        self.activation = ACT2FN[hidden_act]
        self.dense_out = nn.Linear(intermediate_size, hidden_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.dense_out(self.activation(self.dense_in(hidden_states)))


class PhysioMAELayer(GradientCheckpointingLayer):
    """Pre-norm transformer encoder layer: x + Attention(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, config: PhysioMAEConfig):
        super().__init__()
        self.layernorm_before = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attention = PhysioMAEAttention(
            config.hidden_size, config.num_attention_heads, config.attention_probs_dropout_prob
        )
        self.layernorm_after = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = PhysioMAEMLP(config.hidden_size, config.intermediate_size, config.hidden_act)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(
        self, hidden_states: torch.Tensor, attention_mask: torch.BoolTensor | None = None, output_attentions: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        attention_output, attention_weights = self.attention(
            self.layernorm_before(hidden_states), attention_mask=attention_mask, output_attentions=output_attentions
        )
        hidden_states = hidden_states + self.dropout(attention_output)
        hidden_states = hidden_states + self.dropout(self.mlp(self.layernorm_after(hidden_states)))
        return hidden_states, attention_weights


class PhysioMAEEncoder(nn.Module):
    """
    Stack of `num_hidden_layers` [`PhysioMAELayer`]s. Gradient checkpointing (`model.gradient_checkpointing_enable()`,
    `activation_checkpointing_enable()` in newer transformers) is per layer: each is a `GradientCheckpointingLayer`.
    """

    def __init__(self, config: PhysioMAEConfig):
        super().__init__()
        self.layers = nn.ModuleList([PhysioMAELayer(config) for _ in range(config.num_hidden_layers)])

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.BoolTensor,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> tuple[torch.Tensor, tuple | None, tuple | None]:
        all_hidden_states = (hidden_states,) if output_hidden_states else None
        all_attentions = () if output_attentions else None
        for layer in self.layers:
            hidden_states, attention_weights = layer(
                hidden_states, attention_mask=attention_mask, output_attentions=output_attentions
            )
            if output_hidden_states:
                all_hidden_states += (hidden_states,)
            if output_attentions:
                all_attentions += (attention_weights,)
        return hidden_states, all_hidden_states, all_attentions


class PhysioMAEDecoderLayer(nn.Module):
    """Pre-norm decoder layer: self-attention among queries, cross-attention to the encoder output, MLP."""

    def __init__(self, config: PhysioMAEConfig):
        super().__init__()
        width = config.decoder_hidden_size
        heads = config.decoder_num_attention_heads
        self.layernorm_self = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.self_attention = PhysioMAEAttention(width, heads, config.attention_probs_dropout_prob)
        self.layernorm_cross = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.cross_attention = PhysioMAEAttention(width, heads, config.attention_probs_dropout_prob)
        self.layernorm_mlp = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.mlp = PhysioMAEMLP(width, config.decoder_intermediate_size, config.hidden_act)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, queries: torch.Tensor, memory: torch.Tensor, memory_mask: torch.BoolTensor) -> torch.Tensor:
        queries = queries + self.dropout(self.self_attention(self.layernorm_self(queries))[0])
        queries = queries + self.dropout(
            self.cross_attention(self.layernorm_cross(queries), key_value_states=memory, attention_mask=memory_mask)[0]
        )
        return queries + self.dropout(self.mlp(self.layernorm_mlp(queries)))


class PhysioMAEModalityDecoder(nn.Module):
    """
    Rebuilds every patch of one modality from the encoder output. Queries are this decoder's mask
    token (which plays the role of the modality embedding, as the decoder belongs to one modality)
    plus its time-position embedding for each of the modality's `num_patches` positions; they
    cross-attend to the projected visible tokens, pass a small transformer, and a linear layer maps
    each to the modality's reconstruction target (`target_size` values per patch).
    """

    def __init__(self, config: PhysioMAEConfig, target_size: int):
        super().__init__()
        self.config = config
        self.encoder_projection = nn.Linear(config.hidden_size, config.decoder_hidden_size)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, config.decoder_hidden_size))
        self.time_position_embeddings = nn.Parameter(torch.zeros(1, config.num_patches, config.decoder_hidden_size))
        self.layers = nn.ModuleList([PhysioMAEDecoderLayer(config) for _ in range(config.decoder_num_hidden_layers)])
        self.layernorm = nn.LayerNorm(config.decoder_hidden_size, eps=config.layer_norm_eps)
        self.prediction = nn.Linear(config.decoder_hidden_size, target_size)

    def initialize_weights(self) -> None:
        std = self.config.initializer_range
        init.trunc_normal_(self.mask_token, std=std, a=-2 * std, b=2 * std)
        init.trunc_normal_(self.time_position_embeddings, std=std, a=-2 * std, b=2 * std)

    def forward(self, encoder_hidden_states: torch.Tensor, encoder_token_mask: torch.BoolTensor) -> torch.Tensor:
        """
        Args:
            encoder_hidden_states (`(batch, num_visible, hidden_size)`): encoder output.
            encoder_token_mask (`(batch, num_visible)` bool): real (non-padding) visible tokens.
        Returns:
            `(batch, num_patches, target_size)` predicted targets.
        """
        batch_size = encoder_hidden_states.shape[0]
        memory = self.encoder_projection(encoder_hidden_states)  # (batch, num_visible, decoder_hidden)
        queries = (self.mask_token + self.time_position_embeddings).expand(batch_size, -1, -1)
        memory_mask = encoder_token_mask[:, None, None, :]  # (batch, 1, 1, num_visible)
        for layer in self.layers:
            queries = layer(queries, memory, memory_mask)
        return self.prediction(self.layernorm(queries))


class PhysioMAEInPlaceDecoder(nn.Module):
    """
    ViT-MAE-style decoder shared by all modalities. The visible encoder tokens are projected to the
    decoder width and put back in their places in the full modality-major sequence; every hidden token
    (dropped modality included) is a learned mask token. A decoder modality embedding and fixed sin-cos
    time positions are added to all tokens, a small pre-norm transformer runs over the sequence (absent
    modalities excluded as keys; attention blocked across modalities for late fusion), and one linear
    head per modality maps each of its tokens to that modality's target size.
    """

    def __init__(self, config: PhysioMAEConfig, target_sizes: list[int]):
        super().__init__()
        self.config = config
        decoder_config = copy.deepcopy(config)
        decoder_config.hidden_size = config.decoder_hidden_size
        decoder_config.num_hidden_layers = config.decoder_num_hidden_layers
        decoder_config.num_attention_heads = config.decoder_num_attention_heads
        decoder_config.intermediate_size = config.decoder_intermediate_size
        self.encoder_projection = nn.Linear(config.hidden_size, config.decoder_hidden_size)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, config.decoder_hidden_size))
        self.modality_embeddings = nn.Parameter(torch.zeros(config.num_modalities, config.decoder_hidden_size))
        self.register_buffer(
            "time_position_embeddings",
            sincos_position_embeddings(config.num_patches, config.decoder_hidden_size),
        )  # fixed (never trained), but saved: from_pretrained only restores saved tensors
        self.layers = nn.ModuleList([PhysioMAELayer(decoder_config) for _ in range(config.decoder_num_hidden_layers)])
        self.layernorm = nn.LayerNorm(config.decoder_hidden_size, eps=config.layer_norm_eps)
        self.heads = nn.ModuleList([nn.Linear(config.decoder_hidden_size, size) for size in target_sizes])

    def initialize_weights(self) -> None:
        std = self.config.initializer_range
        init.trunc_normal_(self.mask_token, std=std, a=-2 * std, b=2 * std)
        init.trunc_normal_(self.modality_embeddings, std=std, a=-2 * std, b=2 * std)

    def forward(
        self,
        encoder_hidden_states: torch.Tensor,
        ids_keep: torch.LongTensor,
        kept: torch.BoolTensor,
        token_present: torch.BoolTensor,
    ) -> list[torch.Tensor]:
        """
        Args:
            encoder_hidden_states (`(batch, max_visible, hidden_size)`): encoder output of the visible tokens.
            ids_keep (`(batch, max_visible)` long): their positions in the full sequence (padding slots point
                at hidden tokens and are discarded).
            kept (`(batch, M * P)` bool): visible tokens in sequence order.
            token_present (`(batch, M * P)` bool): tokens of present modalities (dropped one included).
        Returns:
            per modality `(batch, num_patches, target_size)` predictions.
        """
        config = self.config
        batch_size, sequence_length = kept.shape
        width = config.decoder_hidden_size
        visible = self.encoder_projection(encoder_hidden_states)  # (batch, max_visible, decoder_hidden)
        # (batch, max_visible, width) scattered to (batch, M * P, width); ids_keep holds distinct positions
        placed = visible.new_zeros(batch_size, sequence_length, width).scatter(
            1, ids_keep[:, :, None].expand(-1, -1, width), visible
        )
        tokens = torch.where(kept[:, :, None], placed, self.mask_token.to(placed.dtype).expand(batch_size, sequence_length, -1))
        # (batch, M * P, width) -> (batch, M, P, width): add modality and time embeddings
        tokens = tokens.reshape(batch_size, config.num_modalities, config.num_patches, width)
        tokens = tokens + self.modality_embeddings[None, :, None, :] + self.time_position_embeddings[None, None].to(tokens.dtype)
        tokens = tokens.reshape(batch_size, sequence_length, width)
        token_modalities = token_modality_ids(config, kept.device)[None].expand(batch_size, -1)
        attention_mask = build_attention_mask(token_present, token_modalities, config.fusion == "late")
        for layer in self.layers:
            tokens, _ = layer(tokens, attention_mask=attention_mask)
        # (batch, M * P, width) -> (batch, M, P, width)
        tokens = self.layernorm(tokens).reshape(batch_size, config.num_modalities, config.num_patches, width)
        return [head(tokens[:, index]) for index, head in enumerate(self.heads)]


# ----------------------------------------------------------------------------------------------
# Pretrained base
# ----------------------------------------------------------------------------------------------
class PhysioMAEPreTrainedModel(PreTrainedModel):
    """
    Base class: holds the config class, weight initialisation (truncated normal) and the flags that
    transformers reads. The encoder lives under `physiomae` in every task model, so
    `AutoModel.from_pretrained` of a saved pretraining / contrastive / classification folder loads it.
    """

    config_class = PhysioMAEConfig
    base_model_prefix = "physiomae"
    main_input_name = "input_values"
    # every PhysioMAELayer (encoder and in-place decoder) is a GradientCheckpointingLayer (transformers >= 4.52)
    supports_gradient_checkpointing = GradientCheckpointingLayer is not nn.Module
    _no_split_modules = ["PhysioMAEEmbeddings", "PhysioMAELayer", "PhysioMAEModalityDecoder", "PhysioMAEInPlaceDecoder"]
    # PhysioMAEAttention always runs torch's scaled_dot_product_attention (explicit weights only with
    # output_attentions=True), so `attn_implementation="sdpa"` is true; the config's choice is not consulted.
    _supports_sdpa = True

    def save_pretrained(self, save_directory, *args, **kwargs):
        """As `PreTrainedModel.save_pretrained` (so also `push_to_hub` and Trainer checkpoints), plus what makes the
        folder a Hub folder: the Hub copy's code files and an `auto_map` for every Auto class they provide; a
        sleep-staging classifier also names its pipeline (`custom_pipelines`, see pipeline_physiomae.py)."""
        os.makedirs(save_directory, exist_ok=True)
        code_files = copy_hub_code(save_directory)
        saved = {name: self.config.__dict__[name] for name in ("auto_map", "custom_pipelines") if name in self.config.__dict__}
        self.config.auto_map = hub_auto_map(code_files)
        if "pipeline_physiomae.py" in code_files and isinstance(self, PhysioMAEForSequenceClassification):
            from .pipeline_physiomae import sleep_staging_custom_pipelines

            custom_pipelines = sleep_staging_custom_pipelines(self.config)
            if custom_pipelines:
                self.config.custom_pipelines = custom_pipelines
        try:
            return super().save_pretrained(save_directory, *args, **kwargs)
        finally:  # the live config is left as it was
            for name in ("auto_map", "custom_pipelines"):
                self.config.__dict__.pop(name, None)
            self.config.__dict__.update(saved)

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Conv1d)):
            init.trunc_normal_(module.weight, std=std, a=-2 * std, b=2 * std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, (PhysioMAEEmbeddings, PhysioMAEModalityDecoder, PhysioMAEInPlaceDecoder)):
            module.initialize_weights()
        elif isinstance(module, PhysioMAEForContrastivePreTraining):
            init.constant_(module.logit_scale, math.log(1.0 / self.config.contrastive_temperature))

    def _output_flags(self, output_attentions, output_hidden_states, return_dict) -> tuple[bool, bool, bool]:
        """Resolve the optional output flags against the config, as transformers models do."""
        output_attentions = bool(
            output_attentions if output_attentions is not None else getattr(self.config, "output_attentions", False)
        )
        output_hidden_states = bool(
            output_hidden_states
            if output_hidden_states is not None
            else getattr(self.config, "output_hidden_states", False)
        )
        return_dict = bool(return_dict if return_dict is not None else getattr(self.config, "return_dict", True))
        return output_attentions, output_hidden_states, return_dict


# ----------------------------------------------------------------------------------------------
# Encoder model
# ----------------------------------------------------------------------------------------------
class PhysioMAEModel(PhysioMAEPreTrainedModel):
    """
    The PhysioMAE encoder: embeddings, pre-norm transformer (early or late fusion per `config.fusion`), final
    layer norm, and the pooled embedding over present tokens.

    Like ViT-MAE's `ViTMAEModel`, it also does the masked autoencoder's input side: with
    `apply_masking=True` it applies input modality dropout and random token masking ([`PhysioMAEMasking`])
    and encodes only the visible tokens, returning `mask` and `ids_restore`. Unlike ViT-MAE it does not mask
    by default, so that feature extraction and fine-tuning see every present token.
    """

    # A pretraining or contrastive checkpoint also holds heads the encoder does not use.
    _keys_to_ignore_on_load_unexpected = [r"decoders?\.", r"projections\.", r"logit_scale", r"target_(mean|std|weight)_"]

    def __init__(self, config: PhysioMAEConfig):
        super().__init__(config)
        self.embeddings = PhysioMAEEmbeddings(config)
        self.masking = PhysioMAEMasking(config)  # no parameters
        self.encoder = PhysioMAEEncoder(config)
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.post_init()

    def forward(
        self,
        input_values: torch.Tensor,
        modality_mask: torch.Tensor | None = None,
        apply_masking: bool = False,
        noise: torch.Tensor | None = None,
        dropped_modality=None,
        generator: torch.Generator | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> PhysioMAEModelOutput | tuple:
        r"""
        Args:
            input_values (`torch.FloatTensor` of shape `(batch_size, num_channels, window_length)`):
                Windows in the config's channel order (see `PhysioMAEFeatureExtractor`).
            modality_mask (`torch.BoolTensor` of shape `(batch_size, num_modalities)`, *optional*):
                True where the modality is present; `None` = all present. Absent modalities' data is
                never read.
            apply_masking (`bool`, *optional*, defaults to `False`):
                Apply input modality dropout and random masking (`config.mask_ratio`, see
                [`PhysioMAEMasking`]) and encode only the visible tokens, as in pretraining.
            noise (`torch.FloatTensor` of shape `(batch_size, num_modalities * num_patches)`, *optional*):
                Masking sort keys (smaller = kept first); default uniform draws from `generator`. Only with
                `apply_masking=True`.
            dropped_modality (`int`, `str` or `torch.LongTensor` of shape `(batch_size,)`, *optional*):
                Force input modality dropout (also in eval mode); -1 = none for that sample. Ignored for
                samples where the modality is absent or is their only one. Only with `apply_masking=True`;
                when `None`, masking's modality dropout is random in training mode
                (`config.modality_dropout_prob`) and off in eval mode.
            generator (`torch.Generator`, *optional*): source of the masking randomness (no seeding inside);
                default torch's global generator.
            output_attentions, output_hidden_states, return_dict: as in transformers.
            kwargs: ignored (tolerates extra columns passed by training loops).
        """
        output_attentions, output_hidden_states, return_dict = self._output_flags(
            output_attentions, output_hidden_states, return_dict
        )
        if not apply_masking and (noise is not None or dropped_modality is not None):
            raise ValueError("noise and dropped_modality only apply with apply_masking=True")
        config = self.config
        input_values, modality_mask = validate_and_prepare_inputs(
            config, input_values, modality_mask, self.embeddings.modality_embeddings.dtype
        )
        batch_size = input_values.shape[0]
        token_modalities = token_modality_ids(config, input_values.device)  # (M * P,)
        mask = ids_restore = dropped = None
        if apply_masking:
            # drawn before the embeddings run, so that their dropout sees the same global random state
            dropped, ids_keep, token_mask, ids_restore, hidden = self.masking(
                modality_mask, noise=noise, dropped_modality=dropped_modality, generator=generator
            )
            mask = hidden.to(input_values.dtype)  # (batch, M * P), 1 = hidden

        embeddings = self.embeddings(input_values)  # (batch, M * P, hidden)
        if apply_masking:
            # (batch, M * P, hidden) -> (batch, max_visible, hidden): the visible tokens, padding slots zeroed
            embeddings = torch.gather(embeddings, 1, ids_keep[:, :, None].expand(-1, -1, embeddings.shape[-1]))
            embeddings = embeddings * token_mask[:, :, None].to(embeddings.dtype)
            token_modalities = token_modalities[ids_keep]  # (batch, max_visible)
        else:
            # (batch, M) -> (batch, M * P)
            token_mask = modality_mask.repeat_interleave(config.num_patches, dim=1)
            token_modalities = token_modalities[None].expand(batch_size, -1)

        attention_mask = build_attention_mask(token_mask, token_modalities, config.fusion == "late")
        sequence_output, hidden_states, attentions = self.encoder(
            embeddings, attention_mask, output_attentions=output_attentions, output_hidden_states=output_hidden_states
        )
        sequence_output = self.layernorm(sequence_output).masked_fill(~token_mask[:, :, None], 0.0)
        # the pooled embedding is over every present token; a masked output has no such meaning
        pooled_output = None if apply_masking else pool_tokens(sequence_output, token_mask, config)

        output = PhysioMAEModelOutput(
            last_hidden_state=sequence_output,
            pooler_output=pooled_output,
            hidden_states=hidden_states,
            attentions=attentions,
            token_mask=token_mask,
            mask=mask,
            ids_restore=ids_restore,
            dropped_modality=dropped,
        )
        return output if return_dict else output.to_tuple()


# ----------------------------------------------------------------------------------------------
# Masked-autoencoder pretraining
# ----------------------------------------------------------------------------------------------
class PhysioMAEForPreTraining(PhysioMAEPreTrainedModel):
    """
    PhysioMAE masked autoencoder with input modality dropout: the encoder, the decoders and the loss.

    Per forward pass:
    1. The encoder ([`PhysioMAEModel`] with `apply_masking=True`) applies input modality dropout and
       random masking ([`PhysioMAEMasking`]) and encodes only the visible tokens (gathered, as in ViT-MAE).
    2. The decoders predict every patch of every modality (`config.decoder_type`: one cross-attention
       decoder per modality over the visible tokens, the same over each modality's mean visible token
       ("bottleneck"), or one ViT-MAE-style decoder over the full sequence ("in_place")).
    3. The loss is, per modality, the MSE over its hidden patches (every token of the dropped modality
       included), then the mean over modalities that have hidden patches, so a 6-channel modality does
       not outweigh a 1-channel one.
    """

    def __init__(self, config: PhysioMAEConfig):
        super().__init__(config)
        self.physiomae = PhysioMAEModel(config)
        self.target_parts = config.reconstruction_target.split("+")  # e.g. ["waveform", "log_band_power"]
        target_sizes = [self.target_size(len(channels)) for channels in config.modalities.values()]
        if config.decoder_type == "in_place":
            self.decoder = PhysioMAEInPlaceDecoder(config, target_sizes)  # "cross_attention" / "bottleneck": per modality
        else:
            self.decoders = nn.ModuleList([PhysioMAEModalityDecoder(config, size) for size in target_sizes])
        # Per-dimension target statistics (identity until `set_target_statistics`); saved with the model.
        for index, size in enumerate(target_sizes):
            self.register_buffer(f"target_mean_{index}", torch.zeros(size))
            self.register_buffer(f"target_std_{index}", torch.ones(size))
            self.register_buffer(f"target_weight_{index}", self.part_weights(index))
        self.post_init()

    # -------------------------------------------------------------- reconstruction targets
    def target_part_sizes(self, num_channels: int) -> list[int]:
        """Sizes of the target's parts for a modality of `num_channels` channels, in `target_parts` order."""
        sizes = {"waveform": num_channels * self.config.patch_length, "log_band_power": num_channels * spectral_band_matrix(self.config.patch_length, self.config.sampling_rate).shape[1]}
        return [sizes[part] for part in self.target_parts]

    def target_size(self, num_channels: int) -> int:
        """Values per patch of one modality's reconstruction target."""
        return sum(self.target_part_sizes(num_channels))

    def part_weights(self, modality_index: int, valid: torch.Tensor | None = None) -> torch.Tensor:
        """Weight of each target dimension: each part weighs 1 / number of parts, spread over its valid dims."""
        num_channels = len(list(self.config.modalities.values())[modality_index])
        sizes = self.target_part_sizes(num_channels)
        valid = torch.ones(sum(sizes)) if valid is None else valid.float()
        weights, start = [], 0
        for size in sizes:
            part = valid[start : start + size]
            weights.append(part / part.sum().clamp(min=1.0) / len(sizes))
            start += size
        return torch.cat(weights)

    def raw_targets(self, input_values: torch.Tensor) -> list[torch.Tensor]:
        """Unstandardised targets per modality, each `(batch, num_patches, target_size)`."""
        config = self.config
        targets = []
        band_matrix = spectral_band_matrix(config.patch_length, config.sampling_rate).to(input_values.device)
        for channels in config.modality_channel_slices.values():
            signals = input_values[:, channels]
            batch_size, num_channels, _ = signals.shape
            parts = []
            for part in self.target_parts:
                if part == "waveform":
                    patches = patchify(signals, config.patch_length)  # (batch, P, c * L)
                    if config.norm_patch_loss:
                        mean = patches.mean(dim=-1, keepdim=True)
                        variance = patches.var(dim=-1, keepdim=True)
                        patches = (patches - mean) / (variance + 1.0e-6) ** 0.5
                    parts.append(patches)
                else:
                    # (batch, c, window) -> (batch, c, P, L) -> (batch, P, c, L)
                    patches = signals.reshape(batch_size, num_channels, config.num_patches, config.patch_length)
                    parts.append(log_band_powers(patches.permute(0, 2, 1, 3).float(), band_matrix).to(signals.dtype))
            targets.append(torch.cat(parts, dim=-1))
        return targets

    def target_statistics(self, modality_index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(mean, std, weight) buffers of one modality's target, each `(target_size,)`."""
        return (
            getattr(self, f"target_mean_{modality_index}"),
            getattr(self, f"target_std_{modality_index}"),
            getattr(self, f"target_weight_{modality_index}"),
        )

    @torch.no_grad()
    def set_target_statistics(self, batches, min_std: float = 1e-4) -> dict[str, int]:
        """
        Standardise the reconstruction targets with the per-dimension mean and standard deviation over the
        present patches of `batches` (an iterable of `(input_values, modality_mask)`, e.g. the pretraining
        split). Dimensions with standard deviation below `min_std` (a channel that is always absent or
        constant) get weight 0 in the loss and in the reconstruction error. Returns, per modality, the number
        of patches the statistics came from. After this, the relative reconstruction error
        (`reconstruction_error_sum / reconstruction_reference_sum`) is 1 - R^2 against the training mean.
        """
        num_modalities = self.config.num_modalities
        sums = [None] * num_modalities
        squares = [None] * num_modalities
        counts = [0] * num_modalities
        for input_values, modality_mask in batches:
            input_values, modality_mask = validate_and_prepare_inputs(self.config, input_values, modality_mask, torch.float32)
            for index, target in enumerate(self.raw_targets(input_values)):
                present = target[modality_mask[:, index]].double().flatten(0, 1)  # (patches, size)
                if not len(present):
                    continue
                sums[index] = present.sum(0) if sums[index] is None else sums[index] + present.sum(0)
                squares[index] = present.pow(2).sum(0) if squares[index] is None else squares[index] + present.pow(2).sum(0)
                counts[index] += len(present)
        for index in range(num_modalities):
            mean_buffer, std_buffer, weight_buffer = self.target_statistics(index)
            if counts[index] == 0:  # modality never present: keep identity statistics, weight unchanged
                continue
            mean = sums[index] / counts[index]
            std = (squares[index] / counts[index] - mean.pow(2)).clamp(min=0.0).sqrt()
            valid = std >= min_std
            mean_buffer.copy_(mean.float())
            std_buffer.copy_(torch.where(valid, std, torch.ones_like(std)).float())
            weight_buffer.copy_(self.part_weights(index, valid).to(weight_buffer.device))
        return dict(zip(self.config.modality_names, counts))

    # -------------------------------------------------------------- loss
    def forward_loss(
        self, input_values: torch.Tensor, predictions: list[torch.Tensor], mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """
        Args:
            input_values (`(batch, num_channels, window_length)`): the true signals.
            predictions: per modality `(batch, num_patches, target_size)`, in standardised target units.
            mask (`(batch, M * P)`): 1 = hidden (scored).
        Returns:
            loss `()`, loss_per_modality `(M,)` (NaN where the modality has no hidden patch), the summed
            weighted squared error `(M,)` and the summed weighted squared standardised target `(M,)` over
            hidden patches (their ratio is the relative reconstruction error), and the standardised
            targets per modality.
        """
        num_patches = self.config.num_patches
        per_modality, error_sums, reference_sums, targets = [], [], [], []
        for modality_index, raw_target in enumerate(self.raw_targets(input_values)):
            mean, std, weight = self.target_statistics(modality_index)
            target = (raw_target - mean) / std  # (batch, P, size)
            targets.append(target)
            patch_error = ((predictions[modality_index] - target).pow(2) * weight).sum(dim=-1)  # (batch, P)
            patch_reference = (target.pow(2) * weight).sum(dim=-1)
            hidden = mask[:, modality_index * num_patches : (modality_index + 1) * num_patches]
            error_sums.append((patch_error * hidden).sum())
            reference_sums.append((patch_reference * hidden).sum())
            per_modality.append(error_sums[-1] / hidden.sum().clamp(min=1.0))
        losses = torch.stack(per_modality)
        # (batch, M * P) -> (batch, M, P) -> (M,)
        has_hidden = mask.reshape(mask.shape[0], self.config.num_modalities, num_patches).sum(dim=(0, 2)) > 0
        loss = torch.where(has_hidden, losses, torch.zeros_like(losses)).sum() / has_hidden.sum().clamp(min=1)
        loss_per_modality = torch.where(has_hidden, losses, torch.full_like(losses, float("nan")))
        return loss, loss_per_modality, torch.stack(error_sums).detach(), torch.stack(reference_sums).detach(), targets

    def forward(
        self,
        input_values: torch.Tensor,
        modality_mask: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
        dropped_modality=None,
        generator: torch.Generator | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> PhysioMAEForPreTrainingOutput | tuple:
        r"""
        Args:
            input_values (`torch.FloatTensor` of shape `(batch_size, num_channels, window_length)`):
                Windows in the config's channel order.
            modality_mask (`torch.BoolTensor` of shape `(batch_size, num_modalities)`, *optional*):
                True where present; `None` = all present.
            noise, dropped_modality, generator: the masking inputs of [`PhysioMAEModel`] (which this calls
                with `apply_masking=True`): masking sort keys `(batch_size, num_modalities * num_patches)`,
                forced input modality dropout, and the source of all randomness (no seeding inside).
            output_attentions, output_hidden_states, return_dict: as in transformers.
            kwargs: ignored.
        """
        output_attentions, output_hidden_states, return_dict = self._output_flags(
            output_attentions, output_hidden_states, return_dict
        )
        config = self.config
        # the prepared signals (absent modalities zeroed) are what the targets are computed from
        input_values, modality_mask = validate_and_prepare_inputs(
            config, input_values, modality_mask, self.physiomae.embeddings.modality_embeddings.dtype
        )
        outputs = self.physiomae(
            input_values,
            modality_mask=modality_mask,
            apply_masking=True,
            noise=noise,
            dropped_modality=dropped_modality,
            generator=generator,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        sequence_output = outputs.last_hidden_state  # (batch, max_visible, hidden)
        visible_token_mask = outputs.token_mask  # (batch, max_visible)
        mask = outputs.mask  # (batch, M * P), 1 = hidden and scored
        ids_keep, kept = visible_token_positions(outputs.ids_restore, visible_token_mask)

        if config.decoder_type == "in_place":
            # (batch, M) -> (batch, M * P): tokens of present modalities, the dropped one included
            token_present = modality_mask.repeat_interleave(config.num_patches, dim=1)
            predictions = self.decoder(sequence_output, ids_keep, kept, token_present)
        elif config.decoder_type == "bottleneck":
            visible_modalities = token_modality_ids(config, input_values.device)[ids_keep]  # (batch, max_keep)
            # (batch, max_keep, M) one-hot of each real visible token's modality
            membership = F.one_hot(visible_modalities, config.num_modalities).to(sequence_output.dtype)
            membership = membership * visible_token_mask[:, :, None].to(sequence_output.dtype)
            counts = membership.sum(dim=1)  # (batch, M)
            # (batch, M, hidden): mean of each modality's visible tokens, the only thing the decoders see
            pooled = torch.einsum("bkm,bkh->bmh", membership, sequence_output) / counts.clamp(min=1.0)[:, :, None]
            predictions = [decoder(pooled, counts > 0) for decoder in self.decoders]
        else:
            predictions = [decoder(sequence_output, visible_token_mask) for decoder in self.decoders]
        loss, loss_per_modality, error_sums, reference_sums, targets = self.forward_loss(input_values, predictions, mask)
        reconstruction = None
        if "waveform" in self.target_parts:
            # the waveform part of each prediction, back in input units: (batch, num_channels, window_length)
            waveforms = []
            for index, (prediction, channels) in enumerate(zip(predictions, config.modalities.values())):
                mean, std, _ = self.target_statistics(index)
                size = len(channels) * config.patch_length
                start = 0 if self.target_parts[0] == "waveform" else prediction.shape[-1] - size
                part = prediction[..., start : start + size] * std[start : start + size] + mean[start : start + size]
                waveforms.append(unpatchify(part, len(channels), config.patch_length))
            reconstruction = torch.cat(waveforms, dim=1)

        output = PhysioMAEForPreTrainingOutput(
            loss=loss,
            loss_per_modality=loss_per_modality,
            reconstruction=reconstruction,
            predicted_targets=tuple(predictions),
            targets=tuple(targets),
            reconstruction_error_sum=error_sums,
            reconstruction_reference_sum=reference_sums,
            mask=mask,
            ids_restore=outputs.ids_restore,
            dropped_modality=outputs.dropped_modality,
            last_hidden_state=sequence_output,
            visible_token_mask=visible_token_mask,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )
        return output if return_dict else output.to_tuple()


# ----------------------------------------------------------------------------------------------
# Classification
# ----------------------------------------------------------------------------------------------
class PhysioMAEForSequenceClassification(PhysioMAEPreTrainedModel):
    """
    PhysioMAE encoder with a linear head on the pooled embedding (`classifier`: `embedding_size ->
    num_labels`). `problem_type` as in transformers: "regression" (MSE), "single_label_classification"
    (cross-entropy; labels < 0, e.g. the data set's -1 = undefined, are ignored) or
    "multi_label_classification" (BCE with logits); inferred from `num_labels` and the labels' dtype
    when unset. Works with `transformers.Trainer`.
    """

    accepts_loss_kwargs = False
    # Fine-tuning starts from a pretraining or contrastive checkpoint: its heads are not needed.
    _keys_to_ignore_on_load_unexpected = [r"decoders?\.", r"projections\.", r"logit_scale", r"target_(mean|std|weight)_"]

    def __init__(self, config: PhysioMAEConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.physiomae = PhysioMAEModel(config)
        classifier_dropout = getattr(config, "classifier_dropout", None)
        self.dropout = nn.Dropout(classifier_dropout if classifier_dropout is not None else config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.embedding_size, config.num_labels)
        self.post_init()

    def compute_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        labels = labels.to(logits.device)
        if self.config.problem_type is None:
            if self.num_labels == 1:
                self.config.problem_type = "regression"
            elif labels.dtype in (torch.long, torch.int, torch.int16, torch.int8, torch.uint8):
                self.config.problem_type = "single_label_classification"
            else:
                self.config.problem_type = "multi_label_classification"
        if self.config.problem_type == "regression":
            if self.num_labels == 1:
                return F.mse_loss(logits.squeeze(-1), labels.squeeze(-1).to(logits.dtype))
            return F.mse_loss(logits, labels.to(logits.dtype))
        if self.config.problem_type == "single_label_classification":
            targets = labels.reshape(-1).long()
            targets = targets.masked_fill(targets < 0, -100)
            if bool((targets >= self.num_labels).any()):  # one sync; a CUDA device assert would name nothing
                bad = sorted(set(targets[targets >= self.num_labels].tolist()))
                raise ValueError(
                    f"labels {bad} are outside the classifier's {self.num_labels} classes (0..{self.num_labels - 1}; "
                    f"negative labels are ignored); set num_labels / id2label in the config to match the data"
                )
            return F.cross_entropy(logits.reshape(-1, self.num_labels), targets, ignore_index=-100)
        return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))

    def forward(
        self,
        input_values: torch.Tensor,
        modality_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> SequenceClassifierOutput | tuple:
        r"""
        Args:
            input_values (`(batch_size, num_channels, window_length)`), modality_mask (`(batch_size,
            num_modalities)`): as in [`PhysioMAEModel`].
            labels (`torch.LongTensor` of shape `(batch_size,)` or `torch.FloatTensor` of shape
                `(batch_size, num_labels)`, *optional*): targets for the loss.
            kwargs: ignored (e.g. extra arguments from `Trainer`).
        Returns:
            `SequenceClassifierOutput` with `logits` `(batch_size, num_labels)`.
        """
        output_attentions, output_hidden_states, return_dict = self._output_flags(
            output_attentions, output_hidden_states, return_dict
        )
        outputs = self.physiomae(
            input_values,
            modality_mask=modality_mask,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        logits = self.classifier(self.dropout(outputs.pooler_output))  # (batch, num_labels)
        loss = self.compute_loss(logits, labels) if labels is not None else None
        if not return_dict:
            extras = tuple(value for value in (outputs.hidden_states, outputs.attentions) if value is not None)
            return ((loss, logits) if loss is not None else (logits,)) + extras
        return SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


# ----------------------------------------------------------------------------------------------
# Contrastive pretraining (late fusion)
# ----------------------------------------------------------------------------------------------
def symmetric_info_nce(anchors: torch.Tensor, positives: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """CLIP loss between two `(n, dim)` L2-normalised sets whose rows are matched pairs."""
    logits = logit_scale * anchors @ positives.T  # (n, n)
    targets = torch.arange(anchors.shape[0], device=anchors.device)
    return 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets))


def pairwise_info_nce(
    embeddings: torch.Tensor, modality_mask: torch.BoolTensor, logit_scale: torch.Tensor
) -> torch.Tensor | None:
    """
    Mean over modality pairs (i, j) of the symmetric InfoNCE between modality i and j embeddings,
    using only the samples where both are present (a pair needs at least 2 such samples).
    `embeddings` `(batch, M, dim)`; returns None when no pair qualifies.
    """
    losses = []
    for first, second in itertools.combinations(range(embeddings.shape[1]), 2):
        both_present = modality_mask[:, first] & modality_mask[:, second]
        if int(both_present.sum()) < 2:
            continue
        losses.append(
            symmetric_info_nce(embeddings[both_present, first], embeddings[both_present, second], logit_scale)
        )
    return torch.stack(losses).mean() if losses else None


def leave_one_out_info_nce(
    embeddings: torch.Tensor, modality_mask: torch.BoolTensor, logit_scale: torch.Tensor
) -> torch.Tensor | None:
    """
    Mean over modalities i of the symmetric InfoNCE between modality i's embedding and the
    L2-normalised mean of the sample's other present modalities' embeddings, using samples where i and
    at least one other modality are present (at least 2 such samples). Returns None when none qualifies.
    """
    losses = []
    for modality_index in range(embeddings.shape[1]):
        others_mask = modality_mask.clone()
        others_mask[:, modality_index] = False
        others_count = others_mask.sum(dim=1)
        usable = modality_mask[:, modality_index] & (others_count > 0)
        if int(usable.sum()) < 2:
            continue
        # (batch, M, dim) -> (batch, dim)
        others_mean = (embeddings * others_mask[:, :, None].to(embeddings.dtype)).sum(dim=1)
        others_mean = F.normalize(others_mean / others_count.clamp(min=1)[:, None].to(embeddings.dtype), dim=-1)
        losses.append(symmetric_info_nce(embeddings[usable, modality_index], others_mean[usable], logit_scale))
    return torch.stack(losses).mean() if losses else None


class PhysioMAEForContrastivePreTraining(PhysioMAEPreTrainedModel):
    """
    Late-fusion contrastive baseline: the encoder with attention blocked across modalities (the config
    is forced to `fusion="late"`), per-modality mean-pooled embeddings, one linear projection head per
    modality, L2 normalisation, and InfoNCE with a learnable temperature (log-parameterised, initialised
    from `contrastive_temperature`). `contrastive_loss="pairwise"` (default when unset): CLIP loss
    averaged over every modality pair; `"loo"`: each modality against the mean of the others. Absent
    modalities are excluded per sample.
    """

    def __init__(self, config: PhysioMAEConfig):
        if config.fusion != "late" or config.contrastive_loss is None:
            config = copy.deepcopy(config)
            config.fusion = "late"
            config.contrastive_loss = config.contrastive_loss or "pairwise"
        super().__init__(config)
        self.physiomae = PhysioMAEModel(config)
        self.projections = nn.ModuleList(
            [nn.Linear(config.hidden_size, config.projection_dim) for _ in range(config.num_modalities)]
        )
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / config.contrastive_temperature)))
        self.post_init()

    def forward(
        self,
        input_values: torch.Tensor,
        modality_mask: torch.Tensor | None = None,
        return_loss: bool = True,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> PhysioMAEContrastiveOutput | tuple:
        r"""
        Args:
            input_values (`(batch_size, num_channels, window_length)`), modality_mask (`(batch_size,
            num_modalities)`): as in [`PhysioMAEModel`].
            return_loss: compute the InfoNCE loss.
        """
        output_attentions, output_hidden_states, return_dict = self._output_flags(
            output_attentions, output_hidden_states, return_dict
        )
        outputs = self.physiomae(
            input_values,
            modality_mask=modality_mask,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        config = self.config
        modality_mask = outputs.token_mask.reshape(-1, config.num_modalities, config.num_patches)[:, :, 0]
        pooled = per_modality_mean(
            outputs.last_hidden_state, outputs.token_mask, config.num_modalities, config.num_patches
        )  # (batch, M, hidden)
        projected = torch.stack(
            [projection(pooled[:, index]) for index, projection in enumerate(self.projections)], dim=1
        )  # (batch, M, projection_dim)
        embeddings = F.normalize(projected, dim=-1) * modality_mask[:, :, None].to(projected.dtype)
        logit_scale = self.logit_scale.clamp(max=math.log(100.0)).exp()

        loss = None
        if return_loss:
            loss_function = leave_one_out_info_nce if config.contrastive_loss == "loo" else pairwise_info_nce
            loss = loss_function(embeddings, modality_mask, logit_scale)
            if loss is None:  # nothing to contrast (e.g. batch of one): zero loss that keeps the graph
                loss = embeddings.sum() * 0.0 + self.logit_scale * 0.0

        output = PhysioMAEContrastiveOutput(
            loss=loss,
            modality_embeddings=embeddings,
            modality_mask=modality_mask,
            logit_scale=logit_scale,
            last_hidden_state=outputs.last_hidden_state,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )
        return output if return_dict else output.to_tuple()


__all__ = [
    "PhysioMAEContrastiveOutput",
    "PhysioMAEForContrastivePreTraining",
    "PhysioMAEForPreTraining",
    "PhysioMAEForPreTrainingOutput",
    "PhysioMAEForSequenceClassification",
    "PhysioMAEModel",
    "PhysioMAEModelOutput",
    "PhysioMAEPreTrainedModel",
]
