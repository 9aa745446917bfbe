"""What a run leaves for users: the Hub-format export of each trained model (weights, config, the feature extractor
of the data it was trained on, the model card), its upload, and the loss-curve figure."""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any

from physiomae.strategies import get_strategy
from physiomae.training.arguments import PretrainingArguments

logger = logging.getLogger("physiomae.train")


class PushToHubError(RuntimeError):
    """The upload failed after the local export completed."""


def build_feature_extractor(config, dataset_settings: dict[str, Any] | None):
    """The extractor saved with the model: the settings the training data was built with
    (`physiomae.saved_dataset.feature_extractor_settings`), restricted to the model's channels. Without recorded
    settings (a dataset built before they were recorded, or random_init without data) the extractor's defaults,
    with a warning."""
    from modeling_physiomae.feature_extraction_physiomae import PhysioMAEFeatureExtractor

    settings = dict(dataset_settings or {})
    if not settings:
        logger.warning("the dataset records no feature-extractor settings: the export carries the extractor's defaults")
    for key in ("feature_extractor_type", "processor_class", "auto_map"):
        settings.pop(key, None)
    settings.update(modalities={name: list(channels) for name, channels in config.modalities.items()},
                    sampling_rate=config.sampling_rate, window_seconds=config.window_seconds)
    return PhysioMAEFeatureExtractor(**settings)


def build_readme(model, strategy: str, training_args: PretrainingArguments, extra: dict[str, Any]) -> str:
    """README rendered from the packaged model card template (model_card.md, physiomae.model_card)."""
    from physiomae.model_card import ModelCardInputs, render_model_card

    config = model.config
    repo_id = training_args.hub_model_id or f"physiomae-{strategy}"
    modality_text = ", ".join(f"{name} ({len(channels)} ch)" for name, channels in config.modalities.items())
    facts = "; ".join(f"{key}: {value}" for key, value in extra.items())
    summary = (f"{get_strategy(strategy).summary} Modalities: {modality_text}. Encoder: hidden "
               f"{config.hidden_size}, {config.num_hidden_layers} layers, {config.num_attention_heads} heads.")
    inputs = ModelCardInputs(
        model_name=f"PhysioMAE ({strategy})",
        repo_id=repo_id,
        summary=summary,
        intended_use="Frozen feature extraction (pooled window embeddings) for linear probes on sleep staging, "
                     "arousal detection and age, and for fine-tuning.",
        training_data=f"Pretrained with `train.py --strategy {strategy}` on the unlabelled split of the "
                      f"PhysioNet/CinC 2018 layout ({facts}).",
        data_limitations="Pretraining data: one cohort (PhysioNet/CinC 2018) or its synthetic stand-in; other "
                         "montages and sites are untested.",
        age_definition="see eval.py (binary split at a documented threshold)",
        auto_class="AutoModel",
    )
    return render_model_card(inputs, [])


def export_model(model, folder: Path, strategy: str, training_args: PretrainingArguments,
                 dataset_settings: dict[str, Any] | None, extra: dict[str, Any]) -> Path:
    """`save_for_hub` of `model` (float32, CPU) with its feature extractor and the rendered model card."""
    from physiomae.hub import save_for_hub

    model = model.float().cpu().eval()
    extractor = build_feature_extractor(model.config, dataset_settings)
    readme = build_readme(model, strategy, training_args, extra)
    save_for_hub(model, str(folder), feature_extractor=extractor, readme_text=readme)
    logger.info("exported %s", folder)
    return folder


def push_export(folder: Path, training_args: PretrainingArguments, hub_api=None) -> None:
    from physiomae.hub import push_to_hub

    try:
        push_to_hub(str(folder), training_args.hub_model_id, api=hub_api, token=training_args.hub_token,
                    private=training_args.hub_private)
    except Exception as error:
        raise PushToHubError(
            f"the export in {folder} is complete, but pushing it to {training_args.hub_model_id} failed: {error}. "
            f"Upload it later with physiomae.hub.push_to_hub or `huggingface-cli upload`."
        ) from error


def plot_loss_curves(log_paths: dict[str, Path], output_png: Path) -> None:
    """Training loss (overall and per modality), the held-out relative reconstruction error per modality (a
    panel drawn when some log line holds it) and the learning rate, against the optimizer step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = {}
    for label, path in log_paths.items():
        if path.is_file():
            entries = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            if entries:
                runs[label] = entries
    if not runs:
        return
    has_reconstruction = any("relative_reconstruction_error" in entry for entries in runs.values() for entry in entries)
    if has_reconstruction:
        figure, (loss_axis, reconstruction_axis, lr_axis) = plt.subplots(
            3, 1, figsize=(9, 10), sharex=True, gridspec_kw={"height_ratios": [3, 2, 1]})
    else:
        figure, (loss_axis, lr_axis) = plt.subplots(2, 1, figsize=(9, 7), sharex=True,
                                                    gridspec_kw={"height_ratios": [3, 1]})
    for label, entries in runs.items():
        steps = [entry["step"] for entry in entries]
        prefix = f"{label}: " if label else ""
        loss_axis.plot(steps, [entry["loss"] for entry in entries], linewidth=2, label=f"{prefix}loss")
        modality_names = entries[-1].get("loss_per_modality") or {}
        if len(modality_names) > 1:
            for name in modality_names:
                values = [(entry.get("loss_per_modality") or {}).get(name) for entry in entries]
                values = [math.nan if value is None else value for value in values]
                loss_axis.plot(steps, values, linewidth=1, alpha=0.7, label=f"{prefix}{name}")
        lr_axis.plot(steps, [entry["learning_rate"] for entry in entries], label=label or "lr")
        if has_reconstruction:
            evaluated = [entry for entry in entries if "relative_reconstruction_error" in entry]
            evaluation_steps = [entry["step"] for entry in evaluated]
            names = list((evaluated[-1]["relative_reconstruction_error"] if evaluated else {}))
            for name in names:
                values = [entry["relative_reconstruction_error"].get(name) for entry in evaluated]
                reconstruction_axis.plot(evaluation_steps, [math.nan if value is None else value for value in values],
                                         marker="o", markersize=3, linewidth=1, label=f"{prefix}{name}")
            if len(names) > 1:
                means = [entry.get("relative_reconstruction_error_mean") for entry in evaluated]
                reconstruction_axis.plot(evaluation_steps, [math.nan if value is None else value for value in means],
                                         color="black", linewidth=2, label=f"{prefix}mean")
    positive = all(entry["loss"] > 0 for entries in runs.values() for entry in entries)
    if positive:
        loss_axis.set_yscale("log")
    loss_axis.set_ylabel("training loss")
    loss_axis.legend(fontsize=7, ncol=2)
    loss_axis.grid(alpha=0.3)
    if has_reconstruction:
        reconstruction_axis.axhline(1.0, color="grey", linestyle="--", linewidth=1, label="predicting the training mean")
        reconstruction_axis.set_ylabel("held-out rel. recon. error (1-R²)")
        reconstruction_axis.legend(fontsize=7, ncol=2)
        reconstruction_axis.grid(alpha=0.3)
    lr_axis.set_ylabel("learning rate")
    lr_axis.set_xlabel("optimizer step")
    lr_axis.grid(alpha=0.3)
    figure.tight_layout()
    temporary = output_png.with_name(f".{output_png.name}.tmp.png")
    figure.savefig(temporary, dpi=110)
    plt.close(figure)
    os.replace(temporary, output_png)
