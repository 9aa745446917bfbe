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
from transformers.utils import ModelOutput, logging

try:  # transformers >= 5: init functions that leave loaded weights alone
    from transformers import initialization as init
except ImportError:  # pragma: no cover - transformers 4.x
    from torch.nn import init

try:
    from transformers.modeling_layers import GradientCheckpointingLayer
except ImportError:  # pragma: no cover - old transformers
    GradientCheckpointingLayer = nn.Module

from .configuration_physiomae import PhysioMAEConfig, copy_hub_code, hub_auto_map


logger = logging.get_logger(__name__)


# ----------------------------------------------------------------------------------------------
# Output dataclasses
# ----------------------------------------------------------------------------------------------
@dataclass
class PhysioMAEModelOutput(ModelOutput):
    """
    Output of [`PhysioMAEModel`].

    Without masking (`apply_masking=False`, the default) the sequence is every token in modality-major order,
    `sequence_length = num_modalities * num_patches`. With masking it is the visible tokens only, in the
    per-sample shuffled order of `ids_restore` and padded to a length fixed by the config, what a window with
    every modality present and none dropped keeps: `sequence_length = max_visible_tokens =
    keep_count(num_modalities * num_patches)` (as in ViT-MAE, row `r` of sample `b` is token
    `argsort(ids_restore[b])[r]`).

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
            Rows of real tokens sum to 1 and put zero weight on absent / padding tokens. Rows of absent or
            padding tokens (outputs discarded) attend to the real tokens (early fusion) or only to themselves
            (late fusion).
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
        ids_keep (`torch.LongTensor` of shape `(batch_size, max_visible_tokens)`, *optional*):
            With masking: position in the modality-major sequence (`0 .. num_modalities * num_patches - 1`) of the
            token in each row of `last_hidden_state`: row `r` of sample `b` is token `ids_keep[b, r]`. Padding rows
            (`token_mask` False) point at distinct hidden tokens. `None` without masking (row `t` is token `t`).
        input_values (`torch.FloatTensor` of shape `(batch_size, num_channels, window_length)`, *optional*):
            With masking: the input as the encoder read it, in the model's dtype, the channels of absent modalities
            zeroed (what a reconstruction head scores against). `None` without masking.
        modality_mask (`torch.BoolTensor` of shape `(batch_size, num_modalities)`):
            The resolved `modality_mask` (all True when none was given): True where the modality is present in the
            input. A modality removed by input modality dropout is present here (see `dropped_modality`).
        log_band_powers (`torch.FloatTensor` of shape `(batch_size, num_channels, num_patches, num_bands)`, *optional*):
            With masking and the spectral tokenizer (`tokenizer_type="conv+log_band_power"`): the log band powers of
            `input_values`' patches that the tokenizer read (float32, see `log_band_powers`), so that a
            `log_band_power` reconstruction target need not compute them again. `None` otherwise.
    """

    last_hidden_state: torch.FloatTensor | None = None
    pooler_output: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None
    token_mask: torch.BoolTensor | None = None
    mask: torch.FloatTensor | None = None
    ids_restore: torch.LongTensor | None = None
    dropped_modality: torch.LongTensor | None = None
    ids_keep: torch.LongTensor | None = None
    input_values: torch.FloatTensor | None = None
    modality_mask: torch.BoolTensor | None = None
    log_band_powers: torch.FloatTensor | None = None


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
            Encoder output for the visible tokens (padded to `max_visible_tokens`, fixed by the config; padded
            slots are zero, see `visible_token_mask`), as [`PhysioMAEModel`] returns it with `apply_masking=True`.
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
def is_compiling() -> bool:
    """True while `torch.compile` traces the model: data-dependent checks (host syncs) are skipped then."""
    compiler = getattr(torch, "compiler", None)
    return bool(compiler is not None and hasattr(compiler, "is_compiling") and compiler.is_compiling())


_CONSTANT_TENSORS: dict[tuple, object] = {}


def constant_tensor(values: tuple, dtype: torch.dtype, device: torch.device | str) -> torch.Tensor:
    """`torch.tensor(values)` made once per (values, dtype, device) and reused: index and weight tables derived
    from the config (plain nested tuples) cost no operator per step. Never written to. Under `torch.compile` the
    tensor is made in place (a constant of the graph)."""
    if is_compiling():
        return torch.tensor(values, dtype=dtype, device=device)
    key = (values, dtype, torch.device(device))
    tensor = _CONSTANT_TENSORS.get(key)
    if tensor is None:
        with torch.inference_mode(False):  # a normal tensor even when first made under inference_mode
            tensor = _CONSTANT_TENSORS[key] = torch.tensor(values, dtype=dtype, device=device)
    return tensor


def channel_modality_mask(config: PhysioMAEConfig, modality_mask: torch.BoolTensor) -> torch.BoolTensor:
    """`(batch, num_modalities)` -> `(batch, num_channels)`: each channel takes its modality's value."""
    index = constant_tensor(tuple(config.channel_modality_indices), torch.long, modality_mask.device)
    return modality_mask.index_select(1, index)


def validate_and_prepare_inputs(
    config: PhysioMAEConfig,
    input_values: torch.Tensor,
    modality_mask: torch.Tensor | None,
    dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor]:
    """
    Check `input_values` / `modality_mask` against the config and return them ready for the model.

    Returns:
        input_values (`(batch_size, num_channels, window_length)`, `dtype`): absent modalities' channels
            replaced by zeros (never read, see module docstring).
        modality_mask (`(batch_size, num_modalities)`, bool).

    Raises `ValueError` naming the offending dimension, sample, modality or channel. The checks of values
    (0/1 mask, a sample without modality, NaN/inf in a present channel) read the data back to the host; they are
    skipped under `torch.compile` (train.py checks every batch on the host before it reaches the device).
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

    check_values = not is_compiling()
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
            if check_values and not bool(((modality_mask == 0) | (modality_mask == 1)).all()):
                raise ValueError("modality_mask must be boolean (or 0/1); got other values")
            modality_mask = modality_mask != 0

    # every modality present (the common case, known with one host read): nothing to zero, no empty sample
    all_present = check_values and bool(modality_mask.all())
    if check_values and not all_present:
        empty_samples = (~modality_mask.any(dim=1)).nonzero().flatten().tolist()
        if empty_samples:
            raise ValueError(
                f"sample(s) {empty_samples} of the batch have no modality present (modality_mask all False); "
                f"PhysioMAE needs at least one of {config.modality_names}"
            )
    input_values = input_values.to(dtype)
    if not all_present:
        channel_present = channel_modality_mask(config, modality_mask)  # (batch, num_channels)
        input_values = torch.where(channel_present[:, :, None], input_values, input_values.new_zeros(()))
    # a NaN/inf in a present channel makes the sum non-finite (one reduction); only then is it located (a finite
    # sum that overflows finds nothing there and passes)
    if check_values and not math.isfinite(float(input_values.sum())):
        non_finite = ~torch.isfinite(input_values)
        if bool(non_finite.any()):
            sample_index, channel_index, _ = non_finite.nonzero()[0].tolist()
            raise ValueError(
                f"input_values has NaN/inf values in a present channel: sample {sample_index}, channel "
                f"{config.channel_names[channel_index]!r}; clean the signal or mark its modality absent"
            )
    return input_values, modality_mask


def token_modality_ids(config: PhysioMAEConfig, device: torch.device) -> torch.LongTensor:
    """Modality index of every token in modality-major order, shape `(num_modalities * num_patches,)`."""
    ids = tuple(modality for modality in range(config.num_modalities) for _ in range(config.num_patches))
    return constant_tensor(ids, torch.long, device)


def expand_to_tokens(modality_values: torch.Tensor, num_patches: int) -> torch.Tensor:
    """`(batch, num_modalities)` -> `(batch, num_modalities * num_patches)`: each token takes its modality's value."""
    num_modalities = modality_values.shape[1]
    ids = tuple(modality for modality in range(num_modalities) for _ in range(num_patches))
    return modality_values.index_select(1, constant_tensor(ids, torch.long, modality_values.device))


def build_attention_mask(
    key_mask: torch.BoolTensor, token_modalities: torch.LongTensor, block_cross_modality: bool
) -> torch.BoolTensor:
    """
    Boolean self-attention mask, True = may attend.

    Args:
        key_mask (`(batch_size, sequence_length)` bool): tokens that may serve as keys (present / real).
        token_modalities (`(batch_size, sequence_length)` long): modality index of each token (only read for late
            fusion; may be `None` otherwise).
        block_cross_modality: late fusion; a token only attends to tokens of its own modality.

    Returns:
        Early fusion: `(batch_size, 1, 1, sequence_length)`, the key mask (every sample has a real token, so
        no row is empty). Late fusion: `(batch_size, 1, sequence_length, sequence_length)`, where every token
        may also attend to itself so that no row is empty (rows of absent / padded tokens; their outputs are
        discarded).
    """
    if not block_cross_modality:
        return key_mask.view(key_mask.shape[0], 1, 1, key_mask.shape[1])
    sequence_length = key_mask.shape[1]
    # (batch, keys) -> (batch, queries, keys)
    allowed = key_mask[:, None, :] & (token_modalities[:, :, None] == token_modalities[:, None, :])
    allowed = allowed | torch.eye(sequence_length, dtype=torch.bool, device=key_mask.device)[None]
    return allowed[:, None]


def additive_attention_mask(attention_mask: torch.BoolTensor, dtype: torch.dtype) -> torch.Tensor:
    """Boolean mask (True = may attend) -> the float mask added to the attention scores: 0 where allowed, -inf
    elsewhere (what `scaled_dot_product_attention` makes of a boolean mask in every call; made once here and
    shared by all layers)."""
    allowed, blocked = (constant_tensor(value, dtype, attention_mask.device) for value in (0.0, float("-inf")))
    return torch.where(attention_mask, allowed, blocked)


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


class ModalityPadding:
    """
    The per-modality layout of the reconstruction targets, which lets one batched computation serve every
    modality: each modality's channels padded to the widest modality's `max_channels` with an all-zero channel.

    `pad(x)`: `(batch, num_channels, ...)` -> `(batch, num_modalities, max_channels, ...)`, zeros in the
    padding; `unpad(x)`: the inverse. Padded target dimensions have loss weight 0, so the prediction heads'
    padded outputs never change the loss or receive a gradient.
    """

    def __init__(self, config: PhysioMAEConfig):
        self.channel_counts = [len(channels) for channels in config.modalities.values()]
        self.num_modalities = len(self.channel_counts)
        self.max_channels = max(self.channel_counts)
        self.num_channels = sum(self.channel_counts)
        # position in (num_channels + 1 zero channel) of every padded slot, modality-major
        self.padded_index, self.real_index, start = [], [], 0
        for modality, count in enumerate(self.channel_counts):
            self.padded_index += list(range(start, start + count)) + [self.num_channels] * (self.max_channels - count)
            self.real_index += [modality * self.max_channels + channel for channel in range(count)]
            start += count
        self.padded_index, self.real_index = tuple(self.padded_index), tuple(self.real_index)
        self.channel_is_real = [[channel < count for channel in range(self.max_channels)] for count in self.channel_counts]

    def pad(self, values: torch.Tensor) -> torch.Tensor:
        batch_size, rest = values.shape[0], values.shape[2:]
        with_zero = torch.cat([values, values.new_zeros(batch_size, 1, *rest)], dim=1)  # (batch, C + 1, ...)
        index = constant_tensor(self.padded_index, torch.long, values.device)
        # (batch, M * max_channels, ...) -> (batch, M, max_channels, ...)
        return with_zero.index_select(1, index).reshape(batch_size, self.num_modalities, self.max_channels, *rest)

    def unpad(self, values: torch.Tensor) -> torch.Tensor:
        batch_size, rest = values.shape[0], values.shape[3:]
        index = constant_tensor(self.real_index, torch.long, values.device)
        # (batch, M, max_channels, ...) -> (batch, M * max_channels, ...) -> (batch, num_channels, ...)
        return values.reshape(batch_size, -1, *rest).index_select(1, index)


def keep_count(num_candidates, mask_ratio: float):
    """
    Number of tokens kept visible: `int(num_candidates * (1 - mask_ratio))`, at least 1 (a tensor or an int).

    Computed in integer arithmetic (ratio resolved to 1e-6) so that e.g. `30 * (1 - 0.9)` gives 3,
    not 2 as float rounding would.
    """
    keep_per_million = int(round((1.0 - mask_ratio) * 1_000_000))
    if torch.is_tensor(num_candidates):
        return ((num_candidates * keep_per_million) // 1_000_000).clamp(min=1)
    return max((num_candidates * keep_per_million) // 1_000_000, 1)


def random_masking(
    candidate_mask: torch.BoolTensor, mask_ratio: float, noise: torch.Tensor
) -> tuple[torch.LongTensor, torch.BoolTensor, torch.LongTensor, torch.BoolTensor]:
    """
    Per-sample random masking by argsort of noise (ViT-MAE), restricted to candidate tokens.

    Only candidate tokens (present, not dropped) can stay visible; each sample keeps
    `keep_count(number of its candidates)` of them, the ones with the smallest noise. Samples keep
    different numbers of tokens when their modalities differ, so the kept set is padded to a length fixed by
    the config, `keep_count(sequence_length)` (what a sample with every token a candidate keeps; no sample
    keeps more), so that no shape depends on the data; padded slots are flagged False in `visible_token_mask`
    and must be masked as keys.

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
    sequence_length, device = candidate_mask.shape[1], candidate_mask.device
    # keep_counts[n] = min(keep_count(n), n) for every possible number of candidates n, looked up per sample
    keep_table = tuple(min(keep_count(count, mask_ratio), count) for count in range(sequence_length + 1))
    keep_counts = constant_tensor(keep_table, torch.long, device)[candidate_mask.sum(dim=1, keepdim=True)]  # (batch, 1)
    # non-candidates sort after every candidate
    sort_keys = noise.float().masked_fill(~candidate_mask, float("inf"))
    ids_shuffle = torch.argsort(sort_keys, dim=1, stable=True)
    ids_restore = torch.argsort(ids_shuffle, dim=1, stable=True)
    max_keep = keep_count(sequence_length, mask_ratio)
    ids_keep = ids_shuffle[:, :max_keep]
    visible_token_mask = constant_tensor(tuple(range(max_keep)), torch.long, device) < keep_counts
    kept = ids_restore < keep_counts
    return ids_keep, visible_token_mask, ids_restore, kept


def random_uniform(shape, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """Uniform [0, 1) draws from the caller's generator (on the generator's device), moved to `device`."""
    if generator is not None and is_compiling():
        raise RuntimeError(
            "torch.compile cannot trace draws from a torch.Generator: pass `noise` and `modality_dropout_noise` "
            "(drawn with `model.draw_masking_noise(batch_size, generator, device)`) to the compiled model"
        )
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
def spectral_band_matrix(patch_length: int, sampling_rate: int) -> tuple[tuple[float, ...], ...]:
    """`(num_frequencies, num_bands)` averaging matrix from the patch's rFFT bins to `SPECTRAL_BANDS_HZ`.

    Bands that hold no FFT bin at this patch length / sampling rate are left out. Plain Python numbers, derived
    from the config: modules keep them as an attribute and make the tensor where it is used (a constant to
    `torch.compile`), rather than storing it in every checkpoint.
    """
    frequencies = [index * sampling_rate / patch_length for index in range(patch_length // 2 + 1)]  # rfftfreq
    columns = []
    for low, high in SPECTRAL_BANDS_HZ:
        in_band = [1.0 if low <= frequency < high else 0.0 for frequency in frequencies]
        if sum(in_band):
            columns.append([value / sum(in_band) for value in in_band])
    return tuple(zip(*columns))


def hann_window(length: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The symmetric Hann window of `length` samples `(length,)` and its energy (sum of squares) `()`, made once per
    (length, dtype, device) as `constant_tensor` does."""
    key = ("hann_window", length, dtype, torch.device(device))
    if is_compiling() or key not in _CONSTANT_TENSORS:
        with torch.inference_mode(False):
            window = torch.hann_window(length, periodic=False, dtype=dtype, device=device)
            made = (window, window.pow(2).sum())
        if is_compiling():
            return made
        _CONSTANT_TENSORS[key] = made
    return _CONSTANT_TENSORS[key]


def log_band_powers(patches: torch.Tensor, band_matrix, eps: float = 1e-4) -> torch.Tensor:
    """`(..., L)` -> `(..., num_bands)`: log mean power of each band of every patch.

    Hann-windowed FFT of each patch, power normalised by the window's energy, averaged over the band's bins
    (`band_matrix` as `spectral_band_matrix` returns it).
    """
    window, energy = hann_window(patches.shape[-1], patches.dtype, patches.device)
    spectrum = torch.view_as_real(torch.fft.rfft(patches * window, dim=-1))  # (..., F, 2): real, imaginary
    # (..., F, 2) -> (..., 2 * F): squared real and imaginary part of every bin, normalised
    squares = spectrum.pow(2).flatten(-2) / energy
    # each bin's row of the band matrix twice, so that one matmul adds real and imaginary parts and averages the band
    paired_rows = tuple(row for row in band_matrix for _ in range(2))  # (2 * F, bands)
    band_power = squares @ constant_tensor(paired_rows, squares.dtype, squares.device)  # (..., bands)
    return torch.log(band_power + eps)


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
# Stacked per-modality layers: one batched kernel for all modalities
# ----------------------------------------------------------------------------------------------
class PhysioMAEStackedLinear(nn.Module):
    """
    `num_groups` independent linear layers (one per modality) run as one batched matmul.

    `weight` is `(num_groups, in_features, out_features)` (input-major, so `x @ weight` needs no transpose) and
    `bias` `(num_groups, 1, out_features)` (broadcast over rows as stored). Input `(num_groups, ...,
    in_features)`, output `(num_groups, ..., out_features)`.
    """

    def __init__(self, num_groups: int, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_groups, in_features, out_features))
        self.bias = nn.Parameter(torch.zeros(num_groups, 1, out_features))

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if hidden_states.dim() == 3:  # (groups, rows, in) -> (groups, rows, out)
            return torch.baddbmm(self.bias, hidden_states, self.weight)
        num_groups, rest, in_features = hidden_states.shape[0], hidden_states.shape[1:-1], hidden_states.shape[-1]
        # (groups, ..., in) -> (groups, rows, in) -> (groups, rows, out) -> (groups, ..., out)
        output = torch.baddbmm(self.bias, hidden_states.reshape(num_groups, -1, in_features), self.weight)
        return output.reshape(num_groups, *rest, output.shape[-1])

    @torch.no_grad()
    def load_group(self, group: int, weight: torch.Tensor | None = None, bias: torch.Tensor | None = None,
                   out_index=None) -> None:
        """Copy an `nn.Linear`'s `weight (out, in)` and / or `bias (out,)` into group `group`: inputs fill the first
        `in` rows, outputs the columns `out_index` (default the first `out`)."""
        out_features = (weight if weight is not None else bias).shape[0]
        out_index = list(range(out_features)) if out_index is None else list(out_index)
        if weight is not None:
            self.weight[group, : weight.shape[1], out_index] = weight.t().to(self.weight.dtype)
        if bias is not None:
            self.bias[group, 0, out_index] = bias.to(self.bias.dtype)


class PhysioMAEStackedLayerNorm(nn.Module):
    """`num_groups` layer norms over the last dimension of `(num_groups, rows, width)`; weight and bias
    `(num_groups, 1, width)`, one per group."""

    def __init__(self, num_groups: int, width: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_groups, 1, width))
        self.bias = nn.Parameter(torch.zeros(num_groups, 1, width))

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        normalised = F.layer_norm(hidden_states, hidden_states.shape[-1:], eps=self.eps)
        return torch.addcmul(self.bias, normalised, self.weight)


# ----------------------------------------------------------------------------------------------
# Embeddings
# ----------------------------------------------------------------------------------------------
class PhysioMAEGroupedLinear(nn.Module):
    """
    One linear map per group (modality) where group `g` reads only its own `in_sizes[g]` input features, run as
    one matmul with a block-diagonal weight: input `(..., sum(in_sizes))` -> output `(..., num_groups *
    out_features)`, group-major. Only the blocks are parameters (`weight` `(sum(in_sizes), out_features)`: row
    `i` holds the weights of input feature `i` for its own group), so nothing is padded.
    """

    def __init__(self, in_sizes: list[int], out_features: int):
        super().__init__()
        self.num_groups, self.out_features = len(in_sizes), out_features
        self.group_of_row = [group for group, size in enumerate(in_sizes) for _ in range(size)]
        # (rows, groups, 1): 1 where the row belongs to the group (plain numbers: a constant to torch.compile)
        self.block_mask = tuple(
            tuple((float(group == row_group),) for group in range(self.num_groups)) for row_group in self.group_of_row
        )
        self.weight = nn.Parameter(torch.empty(len(self.group_of_row), out_features))
        self.bias = nn.Parameter(torch.zeros(self.num_groups * out_features))

    def block_diagonal_weight(self) -> torch.Tensor:
        """`(sum(in_sizes), num_groups * out_features)`: each row's weights in its group's columns, zeros elsewhere."""
        block_mask = constant_tensor(self.block_mask, self.weight.dtype, self.weight.device)
        # (rows, 1, out) * (rows, groups, 1) -> (rows, groups, out) -> (rows, groups * out)
        return (self.weight.unsqueeze(1) * block_mask).reshape(len(self.group_of_row), -1)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        rest = hidden_states.shape[:-1]
        output = torch.addmm(self.bias, hidden_states.reshape(-1, hidden_states.shape[-1]), self.block_diagonal_weight())
        return output.reshape(*rest, output.shape[-1])

    def rows_of_group(self, group: int) -> list[int]:
        """The rows of `weight` (input features) that group `group` reads."""
        return [row for row, row_group in enumerate(self.group_of_row) if row_group == group]

    @torch.no_grad()
    def load_group(self, group: int, weight: torch.Tensor, bias: torch.Tensor) -> None:
        """Copy an `nn.Linear`'s `weight (out, in_sizes[group])` / `bias (out,)` into group `group`."""
        self.weight[self.rows_of_group(group)] = weight.t().to(self.weight.dtype)
        self.bias[group * self.out_features : (group + 1) * self.out_features] = bias.to(self.bias.dtype)


class PhysioMAETokenizer(nn.Module):
    """
    Turns each modality's signals into one token per patch, all modalities in one pass: per modality a 1-D
    convolution over the patch (the modality's channels as input channels), GELU, flatten, and a linear layer
    to `hidden_size`. With `tokenizer_type="conv+log_band_power"` a linear projection of the patch's log band
    powers per channel (`SPECTRAL_BANDS_HZ`, as in `log_band_powers`) is added to the token, so that spectral
    content, which a small convolution learns only slowly, is in every token from the start (BIOT /
    LaBraM-style spectral tokens beside the waveform path).

    Each modality has its own weights. The convolution runs as one matmul over the patch's `(kernel, stride)`
    windows of all channels with a block-diagonal weight ([`PhysioMAEGroupedLinear`]), as does the spectral
    projection; the projection after the convolution is one batched matmul over weights stacked per modality.
    """

    def __init__(self, config: PhysioMAEConfig):
        super().__init__()
        self.channel_counts = [len(channels) for channels in config.modalities.values()]
        self.num_modalities = len(self.channel_counts)
        self.num_patches = config.num_patches
        self.kernel_size = config.tokenizer_kernel_size
        self.stride = config.tokenizer_stride
        self.convolved_length = (config.patch_length - config.tokenizer_kernel_size) // config.tokenizer_stride + 1
        # weight rows: (channel, kernel position), channels in input order; columns: convolution channels
        self.convolution = PhysioMAEGroupedLinear(
            [count * config.tokenizer_kernel_size for count in self.channel_counts], config.tokenizer_conv_channels
        )
        self.activation = nn.GELU()
        # weight rows: (convolved position, convolution channel)
        self.projection = PhysioMAEStackedLinear(
            self.num_modalities, self.convolved_length * config.tokenizer_conv_channels, config.hidden_size
        )
        self.band_matrix = None
        self.spectral_projection = None
        if config.tokenizer_type == "conv+log_band_power":
            self.band_matrix = spectral_band_matrix(config.patch_length, config.sampling_rate)
            num_bands = len(self.band_matrix[0])
            # weight rows: (channel, band), channels in input order
            self.spectral_projection = PhysioMAEGroupedLinear([count * num_bands for count in self.channel_counts], config.hidden_size)

    def band_powers(self, input_values: torch.Tensor) -> torch.Tensor:
        """`(batch, num_channels, window_length)` -> `(batch, num_channels, num_patches, num_bands)`: the log band
        powers of every patch (float32, `log_band_powers`), which the spectral projection reads."""
        batch_size, num_channels, _ = input_values.shape
        patches = input_values.reshape(batch_size, num_channels, self.num_patches, -1).float()  # (batch, C, P, L)
        return log_band_powers(patches, self.band_matrix)

    def forward(self, input_values: torch.Tensor, band_powers: torch.Tensor | None = None) -> torch.Tensor:
        """`(batch, num_channels, window_length)` -> `(batch, num_modalities, num_patches, hidden_size)`. With the
        spectral projection, `band_powers` (`band_powers(input_values)`) may be passed in when already computed."""
        batch_size, num_channels, _ = input_values.shape
        num_modalities, num_patches, convolved_length = self.num_modalities, self.num_patches, self.convolved_length
        # (batch, C, window) -> (batch, C, P, L) -> windows (batch, C, P, T, kernel)
        windows = input_values.reshape(batch_size, num_channels, num_patches, -1).unfold(-1, self.kernel_size, self.stride)
        # -> (batch, P, T, C, kernel) -> (batch * P * T, C * kernel)
        windows = windows.permute(0, 2, 3, 1, 4).reshape(batch_size * num_patches * convolved_length, -1)
        features = self.activation(self.convolution(windows))  # (batch * P * T, M * conv_channels)
        # (batch * P, T, M, conv_channels) -> (M, batch * P, T, conv_channels) -> (M, batch * P, T * conv_channels)
        features = features.reshape(batch_size * num_patches, convolved_length, num_modalities, -1).permute(2, 0, 1, 3)
        tokens = self.projection(features.reshape(num_modalities, batch_size * num_patches, -1))  # (M, batch * P, hidden)
        if self.spectral_projection is not None:
            if band_powers is None:
                band_powers = self.band_powers(input_values)
            # (batch, C, P, bands) -> (batch, P, C, bands) -> (batch * P, C * bands)
            spectra = band_powers.transpose(1, 2).reshape(batch_size * num_patches, -1)
            # (batch * P, M * hidden) -> (batch * P, M, hidden), added as (M, batch * P, hidden)
            spectral_tokens = self.spectral_projection(spectra.to(tokens.dtype)).reshape(batch_size * num_patches, num_modalities, -1)
            tokens = tokens + spectral_tokens.transpose(0, 1)
        # (M, batch * P, hidden) -> (batch, M, P, hidden)
        return tokens.reshape(num_modalities, batch_size, num_patches, -1).transpose(0, 1)

    @torch.no_grad()
    def load_modality(self, modality: int, convolution: dict, projection: dict, spectral_projection: dict | None) -> None:
        """Copy one modality's tokenizer of the per-modality layout (state-dict pieces `{"weight", "bias"}` of its
        `Conv1d` and `Linear` layers, as saved before the stacking) into this one."""
        conv_weight = convolution["weight"]  # (conv_channels, channels, kernel): rows (channel, kernel position)
        self.convolution.load_group(modality, conv_weight.flatten(1), convolution["bias"])
        # the per-modality projection read the convolution output as (conv_channel, position): reorder its inputs
        hidden_size, conv_channels = projection["weight"].shape[0], conv_weight.shape[0]
        weight = projection["weight"].reshape(hidden_size, conv_channels, -1).transpose(1, 2).reshape(hidden_size, -1)
        self.projection.load_group(modality, weight, projection["bias"])
        if spectral_projection is not None:
            self.spectral_projection.load_group(modality, spectral_projection["weight"], spectral_projection["bias"])


class PhysioMAEEmbeddings(nn.Module):
    """
    All modalities' tokens plus a learned modality embedding and a learned time-position embedding
    shared by all modalities. Output `(batch, num_modalities * num_patches, hidden_size)`, modality-major.
    """

    def __init__(self, config: PhysioMAEConfig):
        super().__init__()
        self.config = config
        self.tokenizer = PhysioMAETokenizer(config)
        self.modality_embeddings = nn.Parameter(torch.zeros(config.num_modalities, config.hidden_size))
        self.time_position_embeddings = nn.Parameter(torch.zeros(config.num_patches, config.hidden_size))
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def initialize_weights(self) -> None:
        std = self.config.initializer_range
        init.trunc_normal_(self.modality_embeddings, std=std, a=-2 * std, b=2 * std)
        init.trunc_normal_(self.time_position_embeddings, std=std, a=-2 * std, b=2 * std)

    def forward(self, input_values: torch.Tensor, band_powers: torch.Tensor | None = None) -> torch.Tensor:
        """`band_powers`: the tokenizer's log band powers when already computed (see `PhysioMAETokenizer`)."""
        batch_size = input_values.shape[0]
        tokens = self.tokenizer(input_values, band_powers)  # (batch, M, P, hidden)
        # (M, 1, hidden) + (P, hidden) -> (M, P, hidden), broadcast over the batch
        tokens = tokens + (self.modality_embeddings[:, None] + self.time_position_embeddings)
        # (batch, M, P, hidden) -> (batch, M * P, hidden)
        return self.dropout(tokens.reshape(batch_size, -1, tokens.shape[-1]))


class PhysioMAEMasking(nn.Module):
    """
    Decides which tokens the encoder sees when [`PhysioMAEModel`] masks (`apply_masking=True`, as in
    pretraining). It has no parameters, and no step of it reads data back to the host (so it compiles as one
    graph and does not stall a GPU).

    1. Input modality dropout (training mode, probability `config.modality_dropout_prob`, or forced
       with `dropped_modality`) removes one whole present modality from the encoder's input:
       - `modality_dropout_mode="batch"` (paper): one modality for the whole batch, chosen uniformly
         among modalities that can be dropped in every sample (present, and not the sample's only
         modality); if there is none, among those droppable in at least one sample. Samples where the
         chosen modality is absent or alone keep all their modalities (`dropped_modality = -1`).
       - `"sample"`: each sample flips its own coin and picks among its droppable modalities.
       A sample is never left without a visible modality. The draws are `modality_dropout_noise`
       (`(batch, 1 + num_modalities)` uniforms: column 0 the coin, the others the choice; batch mode reads
       row 0 only).
    2. Random masking: of the remaining present tokens of each sample ("candidates"), exactly
       `int(num_candidates * (1 - mask_ratio))` (at least 1) with the smallest `noise` stay visible.
       Samples with different modalities keep different numbers of tokens, so the visible set is
       padded to `keep_count(num_modalities * num_patches)` and the padding is flagged in `visible_token_mask`.
    """

    def __init__(self, config: PhysioMAEConfig):
        super().__init__()
        self.config = config

    def draw_noise(
        self, batch_size: int, generator: torch.Generator | None = None, device: torch.device | str | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The masking's random draws: `noise` `(batch, M * P)` and `modality_dropout_noise` `(batch, 1 + M)`. The
        modality dropout draws are only made when random dropout is on (training mode, `modality_dropout_prob >
        0`; zeros otherwise, never read), so a plain MAE draws exactly `noise` from `generator` per batch."""
        device = torch.device(device) if device is not None else (generator.device if generator is not None else "cpu")
        return self._draw_token_noise(batch_size, generator, device), self._draw_dropout_noise(batch_size, generator, device)

    def _draw_token_noise(self, batch_size: int, generator: torch.Generator | None, device) -> torch.Tensor:
        return random_uniform((batch_size, self.config.num_modalities * self.config.num_patches), generator, device)

    def _draw_dropout_noise(self, batch_size: int, generator: torch.Generator | None, device) -> torch.Tensor:
        shape = (batch_size, 1 + self.config.num_modalities)
        if self.training and self.config.modality_dropout_prob > 0.0:
            return random_uniform(shape, generator, device)
        return torch.zeros(shape, device=device)

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
        if not is_compiling() and bool(((requested < -1) | (requested >= num_modalities)).any()):
            raise ValueError(f"dropped_modality values must lie in [-1, {num_modalities}); got {requested.tolist()}")
        # only where the modality is present and not the sample's only one
        allowed = droppable.gather(1, requested.clamp(min=0, max=num_modalities - 1)[:, None]).squeeze(1) & (requested >= 0)
        return torch.where(allowed, requested, torch.full_like(requested, -1))

    def select_dropped_modality(
        self, modality_mask: torch.BoolTensor, modality_dropout_noise: torch.Tensor, dropped_modality=None
    ) -> torch.LongTensor:
        """Choose the modality removed per sample, `(batch,)` long, -1 = none (see class docstring)."""
        batch_size, num_modalities = modality_mask.shape
        droppable = modality_mask & (modality_mask.sum(dim=1, keepdim=True) >= 2)
        no_drop = torch.full((batch_size,), -1, dtype=torch.long, device=modality_mask.device)
        if dropped_modality is not None:
            return self._resolve_forced_dropout(dropped_modality, droppable)
        probability = self.config.modality_dropout_prob
        if not self.training or probability <= 0.0:
            return no_drop
        if self.config.modality_dropout_mode == "batch":
            coin, choice = modality_dropout_noise[0, :2].unbind()  # row 0 only
            candidates = droppable.all(dim=0)  # (M,)
            candidates = torch.where(candidates.any(), candidates, droppable.any(dim=0))
            running_count = candidates.cumsum(0)  # (M,), its last entry the number of candidates
            # the k-th candidate, k = int(u * number of candidates): the first place the running count exceeds k
            rank = torch.minimum((choice * running_count[-1]).long(), running_count[-1] - 1)
            chosen = torch.searchsorted(running_count, rank[None], right=True)  # (1,), a tensor: no host read
            # (without candidates droppable is all False: nothing is dropped)
            drop = (coin < probability) & droppable.index_select(1, chosen).squeeze(1)  # (batch,)
            return torch.where(drop, chosen, no_drop)
        coins = modality_dropout_noise[:, 0] < probability  # (batch,)
        # per sample: own coin, uniform among own droppable modalities
        scores = modality_dropout_noise[:, 1:].masked_fill(~droppable, -1.0)
        choice = scores.argmax(dim=1)
        return torch.where(coins & droppable.any(dim=1), choice, no_drop)

    def forward(
        self,
        modality_mask: torch.BoolTensor,
        noise: torch.Tensor | None = None,
        dropped_modality=None,
        generator: torch.Generator | None = None,
        modality_dropout_noise: torch.Tensor | None = None,
    ) -> tuple[torch.LongTensor, torch.LongTensor, torch.BoolTensor, torch.LongTensor, torch.BoolTensor]:
        """
        Args:
            modality_mask (`(batch, num_modalities)` bool): present modalities.
            noise (`(batch, num_modalities * num_patches)` float, *optional*): masking sort keys.
            modality_dropout_noise (`(batch, 1 + num_modalities)` float, *optional*): modality dropout draws.
            dropped_modality, generator: as in [`PhysioMAEModel.forward`]; draws not given come from
                `generator` (`draw_noise`).

        Returns:
            dropped_modality (`(batch,)` long): modality removed per sample, -1 = none.
            ids_keep (`(batch, max_keep)` long): positions of the visible tokens (then padding positions).
            visible_token_mask (`(batch, max_keep)` bool): True for real visible tokens.
            ids_restore (`(batch, M * P)` long): rank of every token in the shuffled order.
            hidden (`(batch, M * P)` bool): tokens of present modalities hidden from the encoder.
        """
        config = self.config
        batch_size, num_modalities = modality_mask.shape
        sequence_length = num_modalities * config.num_patches
        device = modality_mask.device
        if noise is None:
            noise = self._draw_token_noise(batch_size, generator, device)
        if modality_dropout_noise is None:
            modality_dropout_noise = self._draw_dropout_noise(batch_size, generator, device)
        for name, value, shape in (
            ("noise", noise, (batch_size, sequence_length)),
            ("modality_dropout_noise", modality_dropout_noise, (batch_size, 1 + num_modalities)),
        ):
            if tuple(value.shape) != shape:
                raise ValueError(f"{name} must have shape {shape} (batch_size={batch_size}); got {tuple(value.shape)}")

        dropped = self.select_dropped_modality(modality_mask, modality_dropout_noise.to(device), dropped_modality)
        modality_ids = constant_tensor(tuple(range(num_modalities)), torch.long, device)
        not_dropped = modality_ids != dropped[:, None]  # (batch, M)
        token_present = expand_to_tokens(modality_mask, config.num_patches)  # (batch, M * P)
        candidates = expand_to_tokens(modality_mask & not_dropped, config.num_patches)
        ids_keep, visible_token_mask, ids_restore, kept = random_masking(candidates, config.mask_ratio, noise.to(device))
        return dropped, ids_keep, visible_token_mask, ids_restore, token_present & ~kept


# ----------------------------------------------------------------------------------------------
# Transformer blocks
# ----------------------------------------------------------------------------------------------
class PhysioMAEAttention(nn.Module):
    """
    Multi-head self-attention with `torch.nn.functional.scaled_dot_product_attention` and a boolean mask (True =
    may attend) or the additive float mask made of one (`additive_attention_mask`); queries, keys and values come
    from one fused projection (`qkv`: rows queries, keys, values). With `output_attentions=True` the weights are
    computed explicitly (same numbers up to float rounding) and returned. It reads and returns the tokens of all
    sequences as rows, `(batch_size * length, hidden_size)`, so that its linear layers are plain 2-D matmuls.
    """

    def __init__(self, hidden_size: int, num_heads: int, dropout_prob: float):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.dropout_prob = dropout_prob
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size)
        self.output = nn.Linear(hidden_size, hidden_size)

    def forward(
        self,
        hidden_states: torch.Tensor,
        batch_size: int,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """hidden_states `(batch_size * length, hidden)` -> `(batch_size * length, hidden)` and the attention weights
        `(batch_size, heads, length, length)` when `output_attentions`."""
        hidden_size = hidden_states.shape[-1]
        # (batch * length, 3 * hidden) -> (batch, length, 3, heads, head_dim) -> (3, batch, heads, length, head_dim)
        qkv = self.qkv(hidden_states).view(batch_size, -1, 3, self.num_heads, self.head_dim)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        dropout_prob = self.dropout_prob if self.training else 0.0

        attention_weights = None
        if output_attentions:
            # (batch, heads, queries, keys)
            scores = torch.matmul(query, key.transpose(-1, -2)) / math.sqrt(self.head_dim)
            if attention_mask is not None and attention_mask.dtype == torch.bool:
                scores = scores.masked_fill(~attention_mask, float("-inf"))
            elif attention_mask is not None:
                scores = scores + attention_mask
            attention_weights = scores.softmax(dim=-1)
            context = torch.matmul(F.dropout(attention_weights, p=dropout_prob, training=self.training), value)
        else:
            context = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask, dropout_p=dropout_prob)
        # (batch, heads, queries, head_dim) -> (batch, queries, heads, head_dim) -> (batch * queries, hidden)
        context = context.transpose(1, 2).reshape(-1, hidden_size)
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
        self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None, output_attentions: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """hidden_states `(batch, length, hidden)`; attention_mask boolean (True = may attend) or additive, broadcast
        to `(batch, heads, length, length)`. Returns `(batch, length, hidden)` and the attention weights."""
        batch_size, length, hidden_size = hidden_states.shape
        # (batch, length, hidden) -> (batch * length, hidden): every linear layer is one 2-D matmul
        hidden_states = hidden_states.reshape(batch_size * length, hidden_size)
        attention_output, attention_weights = self.attention(
            self.layernorm_before(hidden_states), batch_size, attention_mask=attention_mask,
            output_attentions=output_attentions,
        )
        hidden_states = hidden_states + self.dropout(attention_output)
        hidden_states = hidden_states + self.dropout(self.mlp(self.layernorm_after(hidden_states)))
        return hidden_states.view(batch_size, length, hidden_size), attention_weights


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


class PhysioMAEStackedAttention(nn.Module):
    """
    `num_groups` independent multi-head attentions (one per modality decoder) in one batched pass.
    Queries `(groups, batch * queries, width)`; keys and values from `key_value_states` `(groups, batch * keys,
    width)` (cross-attention) or the queries (self-attention), one fused projection for both; `attention_mask`
    `(groups * batch, 1, 1, keys)`, bool (True = may attend) or additive (`additive_attention_mask`).
    """

    def __init__(self, num_groups: int, width: int, num_heads: int, dropout_prob: float):
        super().__init__()
        self.num_heads = num_heads
        self.dropout_prob = dropout_prob
        self.query = PhysioMAEStackedLinear(num_groups, width, width)
        self.key_value = PhysioMAEStackedLinear(num_groups, width, 2 * width)  # columns: keys, then values
        self.output = PhysioMAEStackedLinear(num_groups, width, width)

    def forward(
        self,
        hidden_states: torch.Tensor,
        batch_size: int,
        key_value_states: torch.Tensor | None = None,
        attention_mask: torch.BoolTensor | None = None,
    ) -> torch.Tensor:
        key_value_states = hidden_states if key_value_states is None else key_value_states
        num_groups, rows, width = hidden_states.shape
        heads, head_dim = self.num_heads, width // self.num_heads
        # (groups, batch * queries, width) -> (groups * batch, heads, queries, head_dim)
        query = self.query(hidden_states).reshape(num_groups * batch_size, -1, heads, head_dim).transpose(1, 2)
        # (groups, batch * keys, 2 * width) -> (2, groups * batch, heads, keys, head_dim)
        key_value = self.key_value(key_value_states).reshape(num_groups * batch_size, -1, 2, heads, head_dim)
        key, value = key_value.permute(2, 0, 3, 1, 4).unbind(0)
        dropout_prob = self.dropout_prob if self.training else 0.0
        context = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask, dropout_p=dropout_prob)
        # (groups * batch, heads, queries, head_dim) -> (groups, batch * queries, width)
        return self.output(context.transpose(1, 2).reshape(num_groups, rows, width))


class PhysioMAEStackedMLP(nn.Module):
    """`num_groups` two-layer feed-forward blocks in one batched pass."""

    def __init__(self, num_groups: int, width: int, intermediate_size: int, hidden_act: str):
        super().__init__()
        self.dense_in = PhysioMAEStackedLinear(num_groups, width, intermediate_size)
        self.activation = ACT2FN[hidden_act]
        self.dense_out = PhysioMAEStackedLinear(num_groups, intermediate_size, width)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.dense_out(self.activation(self.dense_in(hidden_states)))


class PhysioMAEStackedDecoderLayer(nn.Module):
    """Pre-norm decoder layer of every modality decoder at once: self-attention among each decoder's queries,
    cross-attention to its projection of the encoder output, MLP."""

    def __init__(self, config: PhysioMAEConfig):
        super().__init__()
        groups, width, heads = config.num_modalities, config.decoder_hidden_size, config.decoder_num_attention_heads
        eps, dropout = config.layer_norm_eps, config.attention_probs_dropout_prob
        self.layernorm_self = PhysioMAEStackedLayerNorm(groups, width, eps)
        self.self_attention = PhysioMAEStackedAttention(groups, width, heads, dropout)
        self.layernorm_cross = PhysioMAEStackedLayerNorm(groups, width, eps)
        self.cross_attention = PhysioMAEStackedAttention(groups, width, heads, dropout)
        self.layernorm_mlp = PhysioMAEStackedLayerNorm(groups, width, eps)
        self.mlp = PhysioMAEStackedMLP(groups, width, config.decoder_intermediate_size, config.hidden_act)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.num_patches = config.num_patches

    def forward(
        self, queries: torch.Tensor, memory: torch.Tensor, memory_mask: torch.BoolTensor, batch_size: int
    ) -> torch.Tensor:
        """queries `(groups, query_batch * P, width)` with `query_batch` 1 (the first layer's queries are the same
        for every window: its self-attention runs once and is then broadcast) or `batch_size`; memory `(groups,
        batch * keys, width)`, memory_mask `(groups * batch, 1, 1, keys)` (additive). Returns `(groups, batch * P, width)`."""
        query_batch = batch_size if queries.shape[1] == batch_size * self.num_patches else 1
        queries = queries + self.dropout(self.self_attention(self.layernorm_self(queries), query_batch))
        if query_batch != batch_size:  # (groups, P, width) -> (groups, batch * P, width)
            queries = queries.repeat(1, batch_size, 1)  # row b * P + p is query p
        cross = self.cross_attention(
            self.layernorm_cross(queries), batch_size, key_value_states=memory, attention_mask=memory_mask
        )
        queries = queries + self.dropout(cross)
        return queries + self.dropout(self.mlp(self.layernorm_mlp(queries)))


class PhysioMAEModalityDecoders(nn.Module):
    """
    One decoder per modality, all run as one batched pass (each with its own weights, stacked along a leading
    modality axis). Decoder `m` rebuilds every patch of modality `m` from the encoder output: its queries are
    its mask token (which plays the role of the modality embedding, as the decoder belongs to one modality)
    plus its time-position embedding for each of the `num_patches` positions; they cross-attend to the
    decoder's projection of the memory (the visible tokens, or with `decoder_type="bottleneck"` each
    modality's mean visible token), pass a small transformer, and a linear layer maps each to the modality's
    reconstruction target, padded to the largest modality's target size (`target_width`).
    """

    def __init__(self, config: PhysioMAEConfig, target_width: int):
        super().__init__()
        self.config = config
        groups, width = config.num_modalities, config.decoder_hidden_size
        self.encoder_projection = PhysioMAEStackedLinear(groups, config.hidden_size, width)
        self.mask_token = nn.Parameter(torch.zeros(groups, 1, width))
        self.time_position_embeddings = nn.Parameter(torch.zeros(groups, config.num_patches, width))
        self.layers = nn.ModuleList([PhysioMAEStackedDecoderLayer(config) for _ in range(config.decoder_num_hidden_layers)])
        self.layernorm = PhysioMAEStackedLayerNorm(groups, width, config.layer_norm_eps)
        self.prediction = PhysioMAEStackedLinear(groups, width, target_width)

    def initialize_weights(self) -> None:
        std = self.config.initializer_range
        init.trunc_normal_(self.mask_token, std=std, a=-2 * std, b=2 * std)
        init.trunc_normal_(self.time_position_embeddings, std=std, a=-2 * std, b=2 * std)

    def forward(self, memory: torch.Tensor, memory_mask: torch.BoolTensor) -> torch.Tensor:
        """
        Args:
            memory (`(batch, keys, hidden_size)`): what the decoders read (visible tokens, or modality means).
            memory_mask (`(batch, keys)` bool): real (non-padding) rows of `memory`.
        Returns:
            `(batch, num_modalities, num_patches, target_width)` predicted targets.
        """
        groups, (batch_size, num_keys, hidden_size) = self.config.num_modalities, memory.shape
        num_patches = self.config.num_patches
        # (batch * keys, hidden) -> (groups, batch * keys, decoder_hidden): each decoder's own projection
        memory = self.encoder_projection(memory.reshape(1, -1, hidden_size).expand(groups, -1, -1))
        # (batch, keys) -> additive (groups * batch, 1, 1, keys), the same for every decoder
        memory_mask = additive_attention_mask(memory_mask, memory.dtype).repeat(groups, 1).view(-1, 1, 1, num_keys)
        # (groups, P, width): the same queries for every window; the first layer broadcasts them over the batch
        # after its self-attention, unless dropout makes each window's different
        queries = self.mask_token + self.time_position_embeddings
        dropout_active = self.training and (self.config.hidden_dropout_prob > 0 or self.config.attention_probs_dropout_prob > 0)
        if dropout_active:  # -> (groups, batch * P, width)
            queries = queries.repeat(1, batch_size, 1)  # row b * P + p is query p
        for layer in self.layers:
            queries = layer(queries, memory, memory_mask, batch_size)
        # (groups, batch * P, target_width) -> (batch, groups, P, target_width)
        predictions = self.prediction(self.layernorm(queries)).reshape(groups, batch_size, num_patches, -1)
        return predictions.transpose(0, 1)


class PhysioMAEInPlaceDecoder(nn.Module):
    """
    ViT-MAE-style decoder shared by all modalities. The visible encoder tokens are projected to the
    decoder width and put back in their places in the full modality-major sequence; every hidden token
    (dropped modality included) is a learned mask token. A decoder modality embedding and fixed sin-cos
    time positions are added to all tokens, a small pre-norm transformer runs over the sequence (absent
    modalities excluded as keys; attention blocked across modalities for late fusion), and one linear
    head per modality (stacked, padded to `target_width`) maps each of its tokens to that modality's target.
    """

    def __init__(self, config: PhysioMAEConfig, target_width: int):
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
        self.heads = PhysioMAEStackedLinear(config.num_modalities, config.decoder_hidden_size, target_width)

    def initialize_weights(self) -> None:
        std = self.config.initializer_range
        init.trunc_normal_(self.mask_token, std=std, a=-2 * std, b=2 * std)
        init.trunc_normal_(self.modality_embeddings, std=std, a=-2 * std, b=2 * std)

    def forward(
        self,
        encoder_hidden_states: torch.Tensor,
        ids_keep: torch.LongTensor,
        visible_token_mask: torch.BoolTensor,
        token_present: torch.BoolTensor,
    ) -> torch.Tensor:
        """
        Args:
            encoder_hidden_states (`(batch, max_visible, hidden_size)`): encoder output of the visible tokens.
            ids_keep (`(batch, max_visible)` long): their positions in the full sequence (padding slots point
                at distinct hidden tokens and are discarded).
            visible_token_mask (`(batch, max_visible)` bool): True for real visible tokens, False for padding.
            token_present (`(batch, M * P)` bool): tokens of present modalities (dropped one included).
        Returns:
            `(batch, num_modalities, num_patches, target_width)` predictions.
        """
        config = self.config
        batch_size, sequence_length = token_present.shape
        width = config.decoder_hidden_size
        # (batch, max_visible) scattered to (batch, M * P): the visible tokens in sequence order
        kept = token_present.new_zeros(batch_size, sequence_length).scatter(1, ids_keep, visible_token_mask)
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
        attention_mask = additive_attention_mask(attention_mask, tokens.dtype)  # converted once for every layer
        for layer in self.layers:
            tokens, _ = layer(tokens, attention_mask=attention_mask)
        # (batch, M * P, width) -> (M, batch, P, width) -> heads -> (batch, M, P, target_width)
        tokens = self.layernorm(tokens).reshape(batch_size, config.num_modalities, config.num_patches, width)
        return self.heads(tokens.transpose(0, 1)).transpose(0, 1)


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
    _no_split_modules = ["PhysioMAEEmbeddings", "PhysioMAELayer", "PhysioMAEModalityDecoders", "PhysioMAEInPlaceDecoder"]
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
        elif isinstance(module, (PhysioMAEStackedLinear, PhysioMAEGroupedLinear)):
            init.trunc_normal_(module.weight, std=std, a=-2 * std, b=2 * std)
            init.zeros_(module.bias)
        elif isinstance(module, (nn.LayerNorm, PhysioMAEStackedLayerNorm)):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, (PhysioMAEEmbeddings, PhysioMAEModalityDecoders, PhysioMAEInPlaceDecoder)):
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
    _keys_to_ignore_on_load_unexpected = [r"decoders?\.", r"projections\.", r"logit_scale", r"target_(mean|std|weight)"]

    def __init__(self, config: PhysioMAEConfig):
        super().__init__(config)
        self.embeddings = PhysioMAEEmbeddings(config)
        self.masking = PhysioMAEMasking(config)  # no parameters
        self.encoder = PhysioMAEEncoder(config)
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.post_init()

    def draw_masking_noise(
        self, batch_size: int, generator: torch.Generator | None = None, device: torch.device | str | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        r"""
        Draw the masking's randomness for one batch, as `forward(apply_masking=True)` would draw it from `generator`.

        `torch.compile` cannot trace draws from a `torch.Generator`, so a training loop that compiles the model
        draws here, outside the compiled forward, and passes the result as `noise` and `modality_dropout_noise`:
        the same generator state gives the same masking whether the model draws or the caller does.

        Args:
            batch_size (`int`): windows in the batch.
            generator (`torch.Generator`, *optional*): source of the draws (no seeding inside); default torch's
                global generator.
            device (`torch.device` or `str`, *optional*): where the draws are returned; default the generator's
                device (CPU without a generator).

        Returns:
            noise (`torch.FloatTensor` of shape `(batch_size, num_modalities * num_patches)`): uniform masking sort
                keys (smaller = kept first).
            modality_dropout_noise (`torch.FloatTensor` of shape `(batch_size, 1 + num_modalities)`): uniform input
                modality dropout draws (column 0 the coin, the others the choice, see [`PhysioMAEMasking`]); drawn
                only when random modality dropout is on (training mode, `config.modality_dropout_prob > 0`), zeros
                otherwise, so a plain MAE takes only `noise` from `generator`.
        """
        return self.masking.draw_noise(batch_size, generator, device)

    def forward(
        self,
        input_values: torch.Tensor,
        modality_mask: torch.Tensor | None = None,
        apply_masking: bool = False,
        noise: torch.Tensor | None = None,
        dropped_modality=None,
        generator: torch.Generator | None = None,
        modality_dropout_noise: torch.Tensor | None = None,
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
            modality_dropout_noise (`torch.FloatTensor` of shape `(batch_size, 1 + num_modalities)`, *optional*):
                Input modality dropout draws (see [`PhysioMAEMasking`]); default uniform draws from `generator`.
                Only with `apply_masking=True`.
            generator (`torch.Generator`, *optional*): source of the masking randomness not passed in (no seeding
                inside); default torch's global generator. `torch.compile` cannot trace generator draws: a compiled
                model gets `noise` and `modality_dropout_noise` from [`~PhysioMAEModel.draw_masking_noise`] instead.
            output_attentions, output_hidden_states, return_dict: as in transformers.
            kwargs: ignored (tolerates extra columns passed by training loops).
        """
        output_attentions, output_hidden_states, return_dict = self._output_flags(
            output_attentions, output_hidden_states, return_dict
        )
        if not apply_masking and (noise is not None or dropped_modality is not None or modality_dropout_noise is not None):
            raise ValueError("noise, modality_dropout_noise and dropped_modality only apply with apply_masking=True")
        input_values, modality_mask = validate_and_prepare_inputs(
            self.config, input_values, modality_mask, self.embeddings.modality_embeddings.dtype
        )
        config = self.config
        batch_size = input_values.shape[0]
        token_modalities = token_modality_ids(config, input_values.device)  # (M * P,)
        mask = ids_restore = dropped = ids_keep = band_powers = None
        if apply_masking:
            # drawn before the embeddings run, so that their dropout sees the same global random state
            dropped, ids_keep, token_mask, ids_restore, hidden = self.masking(
                modality_mask,
                noise=noise,
                dropped_modality=dropped_modality,
                generator=generator,
                modality_dropout_noise=modality_dropout_noise,
            )
            mask = hidden.to(input_values.dtype)  # (batch, M * P), 1 = hidden

        if apply_masking and self.embeddings.tokenizer.spectral_projection is not None:
            # returned with the output, for a log band power reconstruction target
            band_powers = self.embeddings.tokenizer.band_powers(input_values)  # (batch, C, P, bands)
        embeddings = self.embeddings(input_values, band_powers)  # (batch, M * P, hidden)
        if apply_masking:
            # (batch, M * P, hidden) -> (batch, max_visible, hidden): the visible tokens, padding slots zeroed
            embeddings = torch.gather(embeddings, 1, ids_keep[:, :, None].expand(-1, -1, embeddings.shape[-1]))
            token_weight = token_mask[:, :, None].to(embeddings.dtype)  # (batch, max_visible, 1)
            embeddings = embeddings * token_weight
            token_modalities = token_modalities[ids_keep] if config.fusion == "late" else None  # (batch, max_visible)
        else:
            token_mask = expand_to_tokens(modality_mask, config.num_patches)  # (batch, M * P)
            token_modalities = token_modalities[None].expand(batch_size, -1)

        attention_mask = build_attention_mask(token_mask, token_modalities, config.fusion == "late")
        if config.fusion == "early" and not apply_masking and not is_compiling() and bool(token_mask.all()):
            attention_mask = None  # nothing to mask (inference on complete windows): lets CUDA use FlashAttention
        if attention_mask is not None:  # converted once for every layer
            attention_mask = additive_attention_mask(attention_mask, embeddings.dtype)
        sequence_output, hidden_states, attentions = self.encoder(
            embeddings, attention_mask, output_attentions=output_attentions, output_hidden_states=output_hidden_states
        )
        sequence_output = self.layernorm(sequence_output)
        if apply_masking:  # padding rows zeroed
            sequence_output = sequence_output * token_weight
        else:
            sequence_output = sequence_output.masked_fill(~token_mask[:, :, None], 0.0)
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
            ids_keep=ids_keep,
            input_values=input_values if apply_masking else None,
            modality_mask=modality_mask,
            log_band_powers=band_powers,
        )
        return output if return_dict else output.to_tuple()


# ----------------------------------------------------------------------------------------------
# Masked-autoencoder pretraining
# ----------------------------------------------------------------------------------------------
class PhysioMAEForPreTraining(PhysioMAEPreTrainedModel):
    """
    PhysioMAE masked autoencoder with input modality dropout: the encoder, the decoders and the loss.

    1. [`PhysioMAEModel`] with `apply_masking=True` drops one modality (input modality dropout) and hides
       `mask_ratio` of the remaining tokens, and encodes the visible ones.
    2. The decoders predict every patch of every modality (`config.decoder_type`: one cross-attention
       decoder per modality over the visible tokens, the same over each modality's mean visible token
       ("bottleneck"), or one ViT-MAE-style decoder over the full sequence ("in_place")). The per-modality
       decoders run as one batched pass.
    3. The loss is, per modality, the MSE over its hidden patches (every token of the dropped modality
       included), then the mean over modalities that have hidden patches, so a 6-channel modality does
       not outweigh a 1-channel one.

    Targets are held in one padded layout `(batch, num_modalities, num_patches, target_width)`: each target
    part (`"waveform"`: channel-major samples of the patch; `"log_band_power"`: channel-major bands) takes
    `max_channels` channels' room, and modality `m`'s own values sit at `target_index[m]` (in the order of
    `predicted_targets[m]`); the padding has target weight 0.
    """

    def __init__(self, config: PhysioMAEConfig):
        super().__init__(config)
        self.physiomae = PhysioMAEModel(config)
        self.target_parts = config.reconstruction_target.split("+")  # e.g. ["waveform", "log_band_power"]
        self.padding = ModalityPadding(config)
        self.band_matrix = spectral_band_matrix(config.patch_length, config.sampling_rate)
        part_widths = {"waveform": config.patch_length, "log_band_power": len(self.band_matrix[0])}
        self.target_index, offset = [[] for _ in config.modalities], 0
        for part in self.target_parts:
            for modality, count in enumerate(self.padding.channel_counts):
                self.target_index[modality] += list(range(offset, offset + count * part_widths[part]))
            offset += self.padding.max_channels * part_widths[part]
        self.target_width = offset
        # (M * P + 1, M): the one-hot modality of every token, then an all-zero row (the bottleneck's pooling weights)
        self.token_one_hot = tuple(
            tuple(float(token // config.num_patches == modality) for modality in range(config.num_modalities))
            for token in range(config.num_modalities * config.num_patches)
        ) + (tuple(0.0 for _ in range(config.num_modalities)),)
        if config.decoder_type == "in_place":
            self.decoder = PhysioMAEInPlaceDecoder(config, self.target_width)
        else:  # "cross_attention" / "bottleneck": one decoder per modality
            self.decoder = PhysioMAEModalityDecoders(config, self.target_width)
        # Per-dimension target statistics (identity until `set_target_statistics`); saved with the model.
        shape = (config.num_modalities, self.target_width)
        self.register_buffer("target_mean", torch.zeros(shape))
        self.register_buffer("target_std", torch.ones(shape))
        self.register_buffer("target_weight", torch.stack([self.padded_part_weights(index) for index in range(shape[0])]))
        self.post_init()

    def draw_masking_noise(
        self, batch_size: int, generator: torch.Generator | None = None, device: torch.device | str | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The masking draws `(noise, modality_dropout_noise)` of one batch, for `forward`'s `noise` and
        `modality_dropout_noise`: see [`PhysioMAEModel.draw_masking_noise`]."""
        return self.physiomae.draw_masking_noise(batch_size, generator, device)

    # -------------------------------------------------------------- reconstruction targets
    def target_part_sizes(self, num_channels: int) -> list[int]:
        """Sizes of the target's parts for a modality of `num_channels` channels, in `target_parts` order."""
        sizes = {"waveform": num_channels * self.config.patch_length, "log_band_power": num_channels * len(self.band_matrix[0])}
        return [sizes[part] for part in self.target_parts]

    def target_size(self, num_channels: int) -> int:
        """Values per patch of one modality's reconstruction target."""
        return sum(self.target_part_sizes(num_channels))

    def part_weights(self, modality_index: int, valid: torch.Tensor | None = None) -> torch.Tensor:
        """Weight of each target dimension of one modality (`(target_size,)`, its own order): each part weighs
        1 / number of parts, spread over its valid dims."""
        sizes = self.target_part_sizes(self.padding.channel_counts[modality_index])
        valid = torch.ones(sum(sizes)) if valid is None else valid.float()
        weights, start = [], 0
        for size in sizes:
            part = valid[start : start + size]
            weights.append(part / part.sum().clamp(min=1.0) / len(sizes))
            start += size
        return torch.cat(weights)

    def padded_part_weights(self, modality_index: int, valid: torch.Tensor | None = None) -> torch.Tensor:
        """`part_weights` placed in the padded layout `(target_width,)`, 0 in the padding."""
        weights = torch.zeros(self.target_width)
        weights[self.target_index[modality_index]] = self.part_weights(modality_index, valid)
        return weights

    def unpad_targets(self, padded: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """`(batch, M, P, target_width)` -> per modality `(batch, P, target_size)` (a view when contiguous)."""
        per_modality = []
        for values, index in zip(padded.unbind(1), self.target_index):
            if index == list(range(index[0], index[0] + len(index))):
                per_modality.append(values[..., index[0] : index[0] + len(index)])
            else:
                per_modality.append(values.index_select(-1, torch.tensor(index, device=padded.device)))
        return tuple(per_modality)

    def raw_targets(self, input_values: torch.Tensor, band_powers: torch.Tensor | None = None) -> torch.Tensor:
        """Unstandardised targets of every modality, `(batch, num_modalities, num_patches, target_width)`.
        `band_powers` (`(batch, num_channels, num_patches, num_bands)`): `log_band_powers` of the patches when
        already computed (the encoder output's `log_band_powers`)."""
        config = self.config
        batch_size, num_channels, _ = input_values.shape
        num_modalities, max_channels, num_patches = self.padding.num_modalities, self.padding.max_channels, config.num_patches
        parts = []
        for part in self.target_parts:
            if part == "waveform":
                # (batch, C, window) -> (batch, M, max_channels, P, L) -> (batch, M, P, max_channels * L)
                patches = self.padding.pad(input_values).reshape(batch_size, num_modalities, max_channels, num_patches, -1)
                patches = patches.permute(0, 1, 3, 2, 4).reshape(batch_size, num_modalities, num_patches, -1)
                if config.norm_patch_loss:
                    # per patch over the modality's own channels (n values; the padding is zero and excluded)
                    real = torch.tensor(self.padding.channel_is_real, dtype=patches.dtype, device=patches.device)
                    # (M, max_channels) -> (M, 1, max_channels * L): 1 for the modality's own samples
                    real = real[:, :, None].expand(-1, -1, config.patch_length).reshape(num_modalities, 1, -1)
                    count = real.sum(dim=-1, keepdim=True)  # (M, 1, 1)
                    mean = patches.sum(dim=-1, keepdim=True) / count
                    variance = ((patches - mean) * real).pow(2).sum(dim=-1, keepdim=True) / (count - 1)
                    patches = (patches - mean) / (variance + 1.0e-6) ** 0.5 * real
                parts.append(patches)
            else:
                # (batch, C, window) -> (batch, C, P, L) -> bands (batch, C, P, bands), padded
                if band_powers is None:
                    patches = input_values.reshape(batch_size, num_channels, num_patches, -1).float()
                    band_powers = log_band_powers(patches, self.band_matrix)
                powers = self.padding.pad(band_powers)  # (batch, M, max_channels, P, bands)
                powers = powers.permute(0, 1, 3, 2, 4).reshape(batch_size, num_modalities, num_patches, -1)
                parts.append(powers.to(input_values.dtype))
        return torch.cat(parts, dim=-1) if len(parts) > 1 else parts[0]

    def target_statistics(self, modality_index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(mean, std, weight) of one modality's target dimensions, each `(target_size,)` in its own order."""
        index = torch.tensor(self.target_index[modality_index], device=self.target_mean.device)
        return tuple(buffer[modality_index].index_select(0, index) for buffer in (self.target_mean, self.target_std, self.target_weight))

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
        sums = squares = None
        counts = torch.zeros(num_modalities, dtype=torch.float64)
        for input_values, modality_mask in batches:
            input_values, modality_mask = validate_and_prepare_inputs(self.config, input_values, modality_mask, torch.float32)
            target = self.raw_targets(input_values).double()  # (batch, M, P, width)
            present = modality_mask.to(target.dtype)[:, :, None, None]
            batch_sums = (target * present).sum(dim=(0, 2)).cpu()  # (M, width)
            batch_squares = (target.pow(2) * present).sum(dim=(0, 2)).cpu()
            sums = batch_sums if sums is None else sums + batch_sums
            squares = batch_squares if squares is None else squares + batch_squares
            counts += modality_mask.sum(dim=0).cpu().double() * self.config.num_patches
        for index in range(num_modalities):
            if counts[index] == 0:  # modality never present: keep identity statistics, weight unchanged
                continue
            mean = sums[index] / counts[index]
            std = (squares[index] / counts[index] - mean.pow(2)).clamp(min=0.0).sqrt()
            real = torch.tensor(self.target_index[index])
            valid = std[real] >= min_std
            self.target_mean[index, real] = mean[real].float().to(self.target_mean.device)
            self.target_std[index, real] = torch.where(valid, std[real], torch.ones_like(std[real])).float().to(self.target_std.device)
            self.target_weight[index] = self.padded_part_weights(index, valid).to(self.target_weight.device)
        return {name: int(count) for name, count in zip(self.config.modality_names, counts.tolist())}

    # -------------------------------------------------------------- loss
    def forward_loss(
        self, input_values: torch.Tensor, predictions: torch.Tensor, mask: torch.Tensor,
        band_powers: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """
        Args:
            input_values (`(batch, num_channels, window_length)`): the true signals.
            predictions (`(batch, M, P, target_width)`): in standardised target units, padded layout.
            mask (`(batch, M * P)`): 1 = hidden (scored).
            band_powers (`(batch, num_channels, num_patches, num_bands)`, *optional*): the patches' log band powers
                when already computed (see `raw_targets`).
        Returns:
            loss `()`, loss_per_modality `(M,)` (NaN where the modality has no hidden patch), the summed
            weighted squared error `(M,)` and the summed weighted squared standardised target `(M,)` over
            hidden patches (their ratio is the relative reconstruction error), and the standardised
            targets `(batch, M, P, target_width)`.
        """
        batch_size, num_modalities, num_patches, _ = predictions.shape
        # (M, width) -> (M, 1, width), broadcast over batch and patches
        mean, std, weight = (buffer[:, None] for buffer in (self.target_mean, self.target_std, self.target_weight))
        targets = (self.raw_targets(input_values, band_powers) - mean) / std  # (batch, M, P, width)
        patch_error = ((predictions - targets).pow(2) * weight).sum(dim=-1)  # (batch, M, P)
        patch_reference = (targets.pow(2) * weight).sum(dim=-1)
        hidden = mask.reshape(batch_size, num_modalities, num_patches)
        error_sums = (patch_error * hidden).sum(dim=(0, 2))  # (M,)
        reference_sums = (patch_reference * hidden).sum(dim=(0, 2))
        hidden_counts = hidden.sum(dim=(0, 2))
        losses = error_sums / hidden_counts.clamp(min=1.0)
        has_hidden = hidden_counts > 0
        loss = torch.where(has_hidden, losses, torch.zeros_like(losses)).sum() / has_hidden.sum().clamp(min=1)
        loss_per_modality = torch.where(has_hidden, losses, torch.full_like(losses, float("nan")))
        return loss, loss_per_modality, error_sums.detach(), reference_sums.detach(), targets

    def forward(
        self,
        input_values: torch.Tensor,
        modality_mask: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
        dropped_modality=None,
        generator: torch.Generator | None = None,
        modality_dropout_noise: torch.Tensor | None = None,
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
            noise, modality_dropout_noise, dropped_modality, generator: the masking inputs of
                [`PhysioMAEModel`] (which this calls with `apply_masking=True`): masking sort keys
                `(batch_size, num_modalities * num_patches)`, modality dropout draws `(batch_size, 1 +
                num_modalities)`, forced input modality dropout, and the source of the draws not given (no
                seeding inside).
            output_attentions, output_hidden_states, return_dict: as in transformers.
            kwargs: ignored.
        """
        output_attentions, output_hidden_states, return_dict = self._output_flags(
            output_attentions, output_hidden_states, return_dict
        )
        config = self.config
        outputs = self.physiomae(
            input_values,
            modality_mask=modality_mask,
            apply_masking=True,
            noise=noise,
            dropped_modality=dropped_modality,
            generator=generator,
            modality_dropout_noise=modality_dropout_noise,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        # the targets come from the signals as the encoder read them (checked, absent modalities zeroed)
        input_values = outputs.input_values  # (batch, num_channels, window_length)
        sequence_output = outputs.last_hidden_state  # (batch, max_visible, hidden)
        visible_token_mask = outputs.token_mask  # (batch, max_visible)
        ids_keep = outputs.ids_keep  # (batch, max_visible), positions in the M * P sequence
        mask = outputs.mask  # (batch, M * P), 1 = hidden and scored

        if config.decoder_type == "in_place":
            token_present = expand_to_tokens(outputs.modality_mask, config.num_patches)  # the dropped modality included
            predictions = self.decoder(sequence_output, ids_keep, visible_token_mask, token_present)
        elif config.decoder_type == "bottleneck":
            sequence_length = config.num_modalities * config.num_patches
            real_ids = ids_keep.masked_fill(~visible_token_mask, sequence_length)  # (batch, max_keep), padding -> M * P
            # (batch, max_keep, M): one-hot of each real visible token's modality (padding rows all zero)
            membership = constant_tensor(self.token_one_hot, sequence_output.dtype, sequence_output.device)[real_ids]
            counts = membership.sum(dim=1)  # (batch, M)
            # (batch, M, max_keep) @ (batch, max_keep, hidden): mean of each modality's visible tokens, the only
            # thing the decoders see
            pooled = torch.bmm(membership.transpose(1, 2), sequence_output) / counts.clamp(min=1.0)[:, :, None]
            predictions = self.decoder(pooled, counts > 0)
        else:
            predictions = self.decoder(sequence_output, visible_token_mask)
        # predictions: (batch, M, P, target_width)
        loss, loss_per_modality, error_sums, reference_sums, targets = self.forward_loss(
            input_values, predictions, mask, outputs.log_band_powers
        )
        reconstruction = None
        if "waveform" in self.target_parts:
            # the waveform part of every prediction, back in input units: (batch, num_channels, window_length)
            size = self.padding.max_channels * config.patch_length
            start = 0 if self.target_parts[0] == "waveform" else self.target_width - size
            waveform = predictions[..., start : start + size] * self.target_std[:, None, start : start + size]
            waveform = waveform + self.target_mean[:, None, start : start + size]  # (batch, M, P, max_channels * L)
            batch_size, num_modalities = waveform.shape[:2]
            # -> (batch, M, P, max_channels, L) -> (batch, M, max_channels, P * L) -> (batch, num_channels, window)
            waveform = waveform.reshape(batch_size, num_modalities, config.num_patches, self.padding.max_channels, -1)
            waveform = waveform.permute(0, 1, 3, 2, 4).reshape(batch_size, num_modalities, self.padding.max_channels, -1)
            reconstruction = self.padding.unpad(waveform)

        output = PhysioMAEForPreTrainingOutput(
            loss=loss,
            loss_per_modality=loss_per_modality,
            reconstruction=reconstruction,
            predicted_targets=self.unpad_targets(predictions),
            targets=self.unpad_targets(targets),
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
    _keys_to_ignore_on_load_unexpected = [r"decoders?\.", r"projections\.", r"logit_scale", r"target_(mean|std|weight)"]

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
        self.projections = PhysioMAEStackedLinear(config.num_modalities, config.hidden_size, config.projection_dim)
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
        modality_mask = outputs.modality_mask  # (batch, M)
        pooled = per_modality_mean(
            outputs.last_hidden_state, outputs.token_mask, config.num_modalities, config.num_patches
        )  # (batch, M, hidden)
        # (batch, M, hidden) -> (M, batch, hidden) -> each modality's projection -> (batch, M, projection_dim)
        projected = self.projections(pooled.transpose(0, 1)).transpose(0, 1)
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
