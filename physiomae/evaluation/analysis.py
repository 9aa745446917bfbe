"""Analyses of early-fusion PhysioMAE encoders: attention rollout and modality tuning of embedding units.

Not copied to the Hub. Both analyses run the frozen `PhysioMAEModel` on a batch of windows (no masking).

Attention rollout (Abnar & Zuidema 2020, "Quantifying Attention Flow in Transformers"): per layer the
attention is averaged over heads, the identity is added (the residual path), rows are renormalised to sum to
one, and the layers are multiplied, `rollout = A_L @ ... @ A_1`. Tokens of absent modalities are excluded:
their rows and columns are zeroed before the identity is added, so a present query never sends mass to an
absent key (absent rows become the identity and are ignored in every statistic). From the rollout:
- cross-modal share: the mass a query token puts on tokens of *other* modalities (mean over queries);
- near-in-time share: of that cross-modal mass, the part on keys within +-1 patch (+-1 s) of the query's
  own time position (pooled over queries), next to its chance level (the share a query would get by
  spreading its cross-modal mass uniformly over the present cross-modal keys);
- the modality-block matrix: mean mass from query modality i to key modality j.

Modality tuning: for every layer's hidden states mean-pooled over present tokens (the embedding units), the
mean absolute change of each unit when one modality is removed, normalised over modalities into a tuning
distribution per unit; its entropy (normalised by log(num_modalities), 1 = untuned) and the dominant
modality per unit. Two ablations: `"mask"` removes the modality (modality_mask False, its tokens leave the
sequence, as when the sensor is missing) and `"zero_input"` keeps its tokens but zeroes its signals (the
information its signal carries; a modality the model ignores has exactly zero tuning under this ablation,
while under `"mask"` removing its tokens still changes the pooled mean).

`run_analyses` is eval.py's step: both analyses of one encoder on probe-test windows, with their plots.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..saved_dataset import ChannelMapping
from .data import ProbeData
from .probing import iterate_signal_batches


# ----------------------------------------------------------------------------------------------- token layout
def token_layout(config) -> tuple[np.ndarray, np.ndarray]:
    """Modality index and time (patch) index of every token of `last_hidden_state`.

    The encoder sequence is modality-major: modality 0's patches 0..num_patches-1, then modality 1's, ...
    Returns two `(num_modalities * num_patches,)` integer arrays.
    """
    modality_index = np.repeat(np.arange(config.num_modalities), config.num_patches)
    patch_index = np.tile(np.arange(config.num_patches), config.num_modalities)
    return modality_index, patch_index


# ----------------------------------------------------------------------------------------------- rollout
def attention_rollout(attentions: Sequence[torch.Tensor], token_mask: torch.Tensor) -> torch.Tensor:
    """Abnar & Zuidema rollout over all layers.

    Args:
        attentions: per layer `(batch, heads, seq, seq)` attention probabilities.
        token_mask: `(batch, seq)` bool, True for tokens of present modalities.
    Returns:
        `(batch, seq, seq)` rollout; every row sums to one; present rows have zero mass on absent tokens.
    """
    if not attentions:
        raise ValueError("attention_rollout: no attention maps given (was output_attentions=True?)")
    batch_size, sequence_length = token_mask.shape
    pair_mask = (token_mask[:, :, None] & token_mask[:, None, :]).double()  # (batch, seq, seq)
    identity = torch.eye(sequence_length, dtype=torch.float64, device=token_mask.device).expand(batch_size, -1, -1)
    rollout = identity.clone()
    for layer_index, layer_attention in enumerate(attentions):
        if layer_attention.shape[-2:] != (sequence_length, sequence_length):
            raise ValueError(
                f"attention_rollout: layer {layer_index} attention has shape {tuple(layer_attention.shape)}, "
                f"expected (batch, heads, {sequence_length}, {sequence_length})"
            )
        head_mean = layer_attention.double().mean(dim=1) * pair_mask  # (batch, seq, seq)
        with_residual = head_mean + identity
        with_residual = with_residual / with_residual.sum(dim=-1, keepdim=True)
        rollout = with_residual @ rollout
    return rollout


@dataclass
class RolloutSummary:
    """Numbers reduced from the rollout (see the module docstring).

    Attributes:
        cross_modal_share (`float`): mean over present queries of their mass on other modalities' tokens.
        cross_modal_share_by_modality (`dict[str, float]`): the same per query modality.
        near_time_share (`float`): share of cross-modal mass on keys within `time_tolerance` patches.
        near_time_chance (`float`): that share under uniform cross-modal attention (same keys).
        block_matrix (`list[list[float]]`): `(num_modalities, num_modalities)`, mean mass from query
            modality (row) to key modality (column); NaN rows for modalities never present.
        per_layer_cross_modal_share (`list[float]`): cross-modal share of each layer's head-averaged raw
            attention (no rollout).
        num_windows (`int`): windows analysed.
    """

    cross_modal_share: float
    cross_modal_share_by_modality: dict[str, float]
    near_time_share: float
    near_time_chance: float
    block_matrix: list[list[float]]
    per_layer_cross_modal_share: list[float]
    num_windows: int
    modality_names: list[str] = field(default_factory=list)
    time_tolerance_patches: int = 1

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def summarize_rollout(
    rollout: torch.Tensor,
    token_mask: torch.Tensor,
    config,
    attentions: Sequence[torch.Tensor] = (),
    time_tolerance_patches: int = 1,
) -> RolloutSummary:
    """Reduce a `(batch, seq, seq)` rollout to the cross-modal numbers and the modality-block matrix."""
    modality_index, patch_index = token_layout(config)
    modality_index = torch.as_tensor(modality_index, device=rollout.device)
    patch_index = torch.as_tensor(patch_index, device=rollout.device)
    rollout = rollout.double()
    present = token_mask.bool()  # (batch, seq)
    present_keys = present[:, None, :].double()  # (batch, 1, seq)
    cross_modal = (modality_index[:, None] != modality_index[None, :]).double()  # (seq, seq)
    near_time = ((patch_index[:, None] - patch_index[None, :]).abs() <= time_tolerance_patches).double()

    cross_mass = (rollout * cross_modal).sum(dim=-1)  # (batch, seq): per-query cross-modal mass
    near_cross_mass = (rollout * cross_modal * near_time).sum(dim=-1)  # (batch, seq)
    cross_key_count = (present_keys * cross_modal).sum(dim=-1)  # (batch, seq)
    near_cross_key_count = (present_keys * cross_modal * near_time).sum(dim=-1)
    has_cross_keys = present & (cross_key_count > 0)

    cross_modal_share = float(cross_mass[present].mean()) if present.any() else float("nan")
    near_time_share = (
        float(near_cross_mass[has_cross_keys].sum() / cross_mass[has_cross_keys].sum())
        if has_cross_keys.any() and cross_mass[has_cross_keys].sum() > 0
        else float("nan")
    )
    near_time_chance = (
        float((near_cross_key_count[has_cross_keys] / cross_key_count[has_cross_keys]).mean())
        if has_cross_keys.any()
        else float("nan")
    )

    num_modalities = config.num_modalities
    block_matrix = np.full((num_modalities, num_modalities), np.nan)
    by_modality = {}
    for query_modality in range(num_modalities):
        query_rows = present & (modality_index == query_modality)[None, :]  # (batch, seq)
        if not query_rows.any():
            by_modality[config.modality_names[query_modality]] = float("nan")
            continue
        rows = rollout[query_rows]  # (num_query_tokens, seq)
        for key_modality in range(num_modalities):
            block_matrix[query_modality, key_modality] = float(rows[:, modality_index == key_modality].sum(-1).mean())
        by_modality[config.modality_names[query_modality]] = float(cross_mass[query_rows].mean())

    per_layer = []
    for layer_attention in attentions:
        head_mean = layer_attention.double().mean(dim=1)  # (batch, seq, seq)
        per_layer.append(float((head_mean * cross_modal).sum(-1)[present].mean()))

    return RolloutSummary(
        cross_modal_share=cross_modal_share,
        cross_modal_share_by_modality=by_modality,
        near_time_share=near_time_share,
        near_time_chance=near_time_chance,
        block_matrix=block_matrix.tolist(),
        per_layer_cross_modal_share=per_layer,
        num_windows=int(rollout.shape[0]),
        modality_names=list(config.modality_names),
        time_tolerance_patches=time_tolerance_patches,
    )


@torch.no_grad()
def rollout_analysis(encoder, input_values: torch.Tensor, modality_mask: torch.Tensor) -> RolloutSummary:
    """Run the encoder with attentions and summarise its rollout."""
    encoder.eval()
    outputs = encoder(input_values=input_values, modality_mask=modality_mask, output_attentions=True)
    if outputs.attentions is None:
        raise ValueError("rollout_analysis: the encoder returned no attentions")
    token_mask = _token_mask(outputs, encoder.config, modality_mask)
    rollout = attention_rollout(outputs.attentions, token_mask)
    return summarize_rollout(rollout, token_mask, encoder.config, outputs.attentions)


def _token_mask(outputs, config, modality_mask: torch.Tensor) -> torch.Tensor:
    token_mask = getattr(outputs, "token_mask", None)
    if token_mask is None:  # modality-major layout: repeat each modality's flag over its patches
        token_mask = modality_mask.bool().repeat_interleave(config.num_patches, dim=1)  # (batch, seq)
    return token_mask.bool()


# ----------------------------------------------------------------------------------------------- tuning
@dataclass
class ModalityTuning:
    """Modality tuning of the embedding units (hidden units, mean-pooled over present tokens) per layer.

    Attributes:
        response_change (`np.ndarray`, `(num_layers + 1, hidden_size, num_modalities)`): mean absolute change
            of each unit when each modality is removed (layer 0 = the embeddings); NaN for a modality that
            could not be removed (absent everywhere, or the only one present).
        tuning (`np.ndarray`, same shape): `response_change` normalised over modalities (sums to one per unit).
        entropy (`np.ndarray`, `(num_layers + 1, hidden_size)`): tuning entropy / log(num_modalities), in [0, 1].
        dominant (`np.ndarray` int, `(num_layers + 1, hidden_size)`): index of each unit's dominant modality.
        ablation (`str`): `"mask"` or `"zero_input"`.
    """

    response_change: np.ndarray
    tuning: np.ndarray
    entropy: np.ndarray
    dominant: np.ndarray
    modality_names: list[str]
    ablation: str

    def summary(self) -> dict:
        """Per-layer numbers for the JSON report (NaN for modalities that were never removable)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: modalities absent everywhere
            return self._summary()

    def _summary(self) -> dict:
        num_layers = self.tuning.shape[0]
        layers = []
        for layer_index in range(num_layers):
            dominant_share = {
                name: float((self.dominant[layer_index] == index).mean())
                for index, name in enumerate(self.modality_names)
            }
            layers.append(
                {
                    "layer": layer_index,
                    "mean_tuning_entropy": float(np.nanmean(self.entropy[layer_index])),
                    "mean_tuning": dict(zip(self.modality_names, np.nanmean(self.tuning[layer_index], 0).tolist())),
                    "mean_response_change": dict(
                        zip(self.modality_names, np.nanmean(self.response_change[layer_index], 0).tolist())
                    ),
                    "dominant_modality_share": dominant_share,
                }
            )
        return {"ablation": self.ablation, "layers": layers}


def _pooled_hidden_states(outputs, token_mask: torch.Tensor) -> torch.Tensor:
    """Mean over present tokens of every layer's hidden states: `(num_layers + 1, batch, hidden)`."""
    weights = token_mask.double()[:, :, None]  # (batch, seq, 1)
    pooled = [
        (hidden.double() * weights).sum(1) / weights.sum(1).clamp(min=1.0)  # (batch, hidden)
        for hidden in outputs.hidden_states
    ]
    return torch.stack(pooled)


@torch.no_grad()
def modality_tuning(
    encoder, input_values: torch.Tensor, modality_mask: torch.Tensor, ablation: str = "mask"
) -> ModalityTuning:
    """Response change of every pooled hidden unit per layer when each modality is removed.

    Only windows in which the modality is present and at least one other modality is present are used for
    that modality (removing the only present modality leaves nothing to encode).
    """
    if ablation not in ("mask", "zero_input"):
        raise ValueError(f"modality_tuning: ablation must be 'mask' or 'zero_input', got {ablation!r}")
    encoder.eval()
    config = encoder.config
    modality_mask = modality_mask.bool()
    full = encoder(input_values=input_values, modality_mask=modality_mask, output_hidden_states=True)
    full_pooled = _pooled_hidden_states(full, _token_mask(full, config, modality_mask))  # (layers+1, batch, hidden)
    num_states, _, hidden_size = full_pooled.shape
    response_change = np.full((num_states, hidden_size, config.num_modalities), np.nan)
    for modality_index, modality_name in enumerate(config.modality_names):
        usable = modality_mask[:, modality_index] & (modality_mask.sum(1) >= 2)  # (batch,)
        if not usable.any():
            continue
        ablated_values = input_values[usable].clone()
        ablated_mask = modality_mask[usable].clone()
        if ablation == "mask":
            ablated_mask[:, modality_index] = False
        else:
            ablated_values[:, config.modality_channel_slices[modality_name], :] = 0.0
        ablated = encoder(input_values=ablated_values, modality_mask=ablated_mask, output_hidden_states=True)
        ablated_pooled = _pooled_hidden_states(ablated, _token_mask(ablated, config, ablated_mask))
        change = (full_pooled[:, usable] - ablated_pooled).abs().mean(dim=1)  # (layers+1, hidden)
        response_change[:, :, modality_index] = change.cpu().numpy()
    total = np.nansum(response_change, axis=-1, keepdims=True)  # (layers+1, hidden, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        tuning = np.where(total > 0, response_change / total, np.nan)
        probabilities = np.nan_to_num(tuning, nan=0.0)
        entropy_terms = np.where(probabilities > 0, -probabilities * np.log(np.where(probabilities > 0, probabilities, 1.0)), 0.0)
    num_removable = max(int(np.isfinite(response_change[0, 0]).sum()), 2)
    entropy = entropy_terms.sum(-1) / math.log(num_removable)
    entropy = np.where(total[..., 0] > 0, entropy, np.nan)
    dominant = np.nan_to_num(response_change, nan=-1.0).argmax(-1)
    return ModalityTuning(response_change, tuning, entropy, dominant, list(config.modality_names), ablation)


# ----------------------------------------------------------------------------------------------- plots
def plot_block_matrix(summary: RolloutSummary, path, title: str = "") -> None:
    """Heatmap of the rollout's modality-block matrix (rows: query modality, columns: key modality)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.asarray(summary.block_matrix, dtype=float)
    figure, axis = plt.subplots(figsize=(4.8, 4.2))
    image = axis.imshow(matrix, cmap="viridis", vmin=0.0, vmax=max(np.nanmax(matrix), 1e-6) if np.isfinite(matrix).any() else 1.0)
    axis.set_xticks(range(len(summary.modality_names)), summary.modality_names, rotation=45)
    axis.set_yticks(range(len(summary.modality_names)), summary.modality_names)
    axis.set_xlabel("key modality")
    axis.set_ylabel("query modality")
    for row in range(matrix.shape[0]):
        for column in range(matrix.shape[1]):
            if np.isfinite(matrix[row, column]):
                axis.text(column, row, f"{matrix[row, column]:.2f}", ha="center", va="center", color="w", fontsize=7)
    axis.set_title(title or f"rollout by modality (cross-modal share {summary.cross_modal_share:.2f})", fontsize=9)
    figure.colorbar(image, ax=axis, fraction=0.046)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def modality_tuning_figure(tunings: Sequence[ModalityTuning], title: str = ""):
    """The figure of `plot_modality_tuning` (a `matplotlib.figure.Figure`): per ablation, the share of units
    dominated by each modality per layer (stacked bars, each modality in its `physiomae.plotting.MODALITY_COLORS`
    colour) and the mean tuning entropy over units (black line, right axis). Each bar carries the gid
    `"dominant/<ablation>/<modality>"`, the entropy line `"entropy/<ablation>"`."""
    from physiomae.plotting import OVERALL_COLOR, modality_color, new_figure

    figure = new_figure(figsize=(5.5 * len(tunings), 3.8))
    axes = figure.subplots(1, len(tunings), squeeze=False)
    for axis, tuning in zip(axes[0], tunings):
        layers = np.arange(tuning.dominant.shape[0])
        bottom = np.zeros(len(layers))
        for index, name in enumerate(tuning.modality_names):
            share = (tuning.dominant == index).mean(axis=1)
            bars = axis.bar(layers, share, bottom=bottom, label=name, color=modality_color(name))
            for patch in bars:
                patch.set_gid(f"dominant/{tuning.ablation}/{name}")
            bottom += share
        axis.set_xlabel("layer (0 = embeddings)")
        axis.set_ylabel("share of units dominated")
        axis.set_ylim(0, 1.05)
        entropy_axis = axis.twinx()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mean_entropy = np.nanmean(tuning.entropy, axis=1)
        (line,) = entropy_axis.plot(layers, mean_entropy, "-o", color=OVERALL_COLOR, label="mean tuning entropy")
        line.set_gid(f"entropy/{tuning.ablation}")
        entropy_axis.set_ylim(0, 1.05)
        entropy_axis.set_ylabel("normalised tuning entropy")
        axis.set_title(f"ablation: {tuning.ablation}", fontsize=9)
        axis.legend(fontsize=7, loc="lower left")
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure


def plot_modality_tuning(tunings: Sequence[ModalityTuning], path, title: str = "") -> None:
    """Write `modality_tuning_figure(tunings, title)` to `path` (atomically)."""
    from physiomae.plotting import save_figure

    save_figure(modality_tuning_figure(tunings, title), path)


# ----------------------------------------------------------------------------------------------- eval.py's step
def analysis_batch(data: ProbeData, encoder, num_windows: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Up to `num_windows` probe-test windows with at least two of the encoder's modalities present."""
    mapping = ChannelMapping.for_config(encoder.config, data.layout)
    chosen_values, chosen_masks, count = [], [], 0
    for input_values, channel_mask in iterate_signal_batches(data.test_split, 64):
        model_values, modality_mask = mapping.model_inputs(input_values, channel_mask)
        keep = modality_mask.sum(axis=1) >= 2
        chosen_values.append(model_values[keep])
        chosen_masks.append(modality_mask[keep])
        count += int(keep.sum())
        if count >= num_windows:
            break
    if count == 0:
        return None
    values = np.concatenate(chosen_values)[:num_windows]
    masks = np.concatenate(chosen_masks)[:num_windows]
    return torch.from_numpy(values), torch.from_numpy(masks)


def run_analyses(encoder, data: ProbeData, output_folder: Path, name: str, num_windows: int) -> dict:
    """Rollout and modality tuning for one early-fusion encoder; numbers returned, PNGs written."""
    config = encoder.config
    if config.num_modalities < 2:
        return {"skipped": "single-modality encoder: no cross-modal attention or modality tuning"}
    if config.fusion != "early":
        return {"skipped": f"fusion={config.fusion!r}: attention never crosses modalities"}
    batch = analysis_batch(data, encoder, num_windows)
    if batch is None:
        return {"skipped": "no probe-test window has two or more of the encoder's modalities"}
    device = next(encoder.parameters()).device
    input_values, modality_mask = batch[0].to(device), batch[1].to(device)
    output_folder.mkdir(parents=True, exist_ok=True)
    rollout = rollout_analysis(encoder, input_values, modality_mask)
    plot_block_matrix(rollout, output_folder / "rollout_modality_blocks.png", title=f"{name}: attention rollout by modality")
    tunings = [modality_tuning(encoder, input_values, modality_mask, ablation) for ablation in ("mask", "zero_input")]
    plot_modality_tuning(tunings, output_folder / "modality_tuning.png", title=f"{name}: modality tuning of embedding units")
    return {
        "num_windows": int(len(input_values)),
        "rollout": rollout.to_dict(),
        "modality_tuning": {tuning.ablation: tuning.summary() for tuning in tunings},
        "plots": ["rollout_modality_blocks.png", "modality_tuning.png"],
    }
