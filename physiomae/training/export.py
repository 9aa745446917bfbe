"""What a run leaves for users: the Hub-format export of each trained model (weights, config, the feature extractor
of the data it was trained on, the model card), its upload, and the loss-curve figure."""

from __future__ import annotations

import json
import logging
import math
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


def read_train_logs(log_paths: dict[str, Path]) -> dict[str, list[dict[str, Any]]]:
    """The entries of each existing, non-empty train_log.jsonl of `log_paths` (run label -> path)."""
    runs = {}
    for label, path in log_paths.items():
        path = Path(path)
        if path.is_file():
            entries = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            if entries:
                runs[label] = entries
    return runs


def _finite(values) -> list[float]:
    return [math.nan if value is None else float(value) for value in values]


def loss_curves_figure(log_paths: dict[str, Path], smoothing: int | None = None):
    """The figure of `plot_loss_curves` (a `matplotlib.figure.Figure`), or None when no log has an entry.

    Panels, against the optimizer step:
    - training loss: per run the overall loss (black; for a per-modality run labelled with a modality name, that
      modality's colour) and, when a run has several modalities, each modality's loss in its colour of
      `physiomae.plotting.MODALITY_COLORS`. Each logged value is already the mean loss since the previous log
      line; those raw values are drawn faint and thin behind, the line is their debiased exponential moving
      average (`physiomae.plotting.exponential_moving_average`) over logged points, with span `smoothing` (default
      `physiomae.plotting.smoothing_span` of the number of lines: ~5% of the run, at least 3 lines; no smoothing
      for fewer than 8 lines). Log scale
      when every loss is positive.
    - held-out relative reconstruction error (1 - R²) per modality, same colours, plus the mean across modalities
      in black (drawn when some log line holds it): one point per evaluation, not smoothed (each is already an
      average over the held-out windows). The grey dashed line at 1 is the error of predicting the mean.
    - learning rate.

    Every line carries a gid `"<panel>/<run label or ->/<modality, overall or mean>[/raw|/smoothed]"` so tests (and
    readers) can find it."""
    from physiomae.plotting import (OVERALL_COLOR, REFERENCE_COLOR, exponential_moving_average, modality_color,
                                    new_figure, smoothing_span)

    runs = read_train_logs(log_paths)
    if not runs:
        return None
    has_reconstruction = any("relative_reconstruction_error" in entry for entries in runs.values() for entry in entries)
    if has_reconstruction:
        figure = new_figure(figsize=(9, 10))
        loss_axis, reconstruction_axis, lr_axis = figure.subplots(3, 1, sharex=True,
                                                                  gridspec_kw={"height_ratios": [3, 2, 1]})
    else:
        figure = new_figure(figsize=(9, 7))
        loss_axis, lr_axis = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    spans = set()
    for label, entries in runs.items():
        run_key = label or "-"
        run_color = modality_color(label) if label else OVERALL_COLOR
        steps = [entry["step"] for entry in entries]
        span = smoothing if smoothing is not None else smoothing_span(len(entries))
        spans.add(span)
        prefix = f"{label}: " if label else ""

        def draw_loss(values, color, series, legend, linewidth):
            raw = _finite(values)
            if span > 1:
                (line,) = loss_axis.plot(steps, raw, color=color, linewidth=0.6, alpha=0.25, zorder=1)
                line.set_gid(f"loss/{run_key}/{series}/raw")
            (line,) = loss_axis.plot(steps, exponential_moving_average(raw, span), color=color, linewidth=linewidth,
                                     label=legend, zorder=3 if series == "overall" else 2)
            line.set_gid(f"loss/{run_key}/{series}/smoothed")

        draw_loss([entry["loss"] for entry in entries], run_color, "overall", f"{prefix}loss (all modalities)"
                  if not label else f"{label}: loss", 2.2)
        modality_names = entries[-1].get("loss_per_modality") or {}
        if len(modality_names) > 1:
            for name in modality_names:
                draw_loss([(entry.get("loss_per_modality") or {}).get(name) for entry in entries],
                          modality_color(name), name, f"{prefix}{name}", 1.4)
        (line,) = lr_axis.plot(steps, [entry["learning_rate"] for entry in entries], color=run_color,
                               label=label or "lr")
        line.set_gid(f"lr/{run_key}")
        if has_reconstruction:
            evaluated = [entry for entry in entries if "relative_reconstruction_error" in entry]
            evaluation_steps = [entry["step"] for entry in evaluated]
            names = list((evaluated[-1]["relative_reconstruction_error"] if evaluated else {}))
            for name in names:
                values = _finite(entry["relative_reconstruction_error"].get(name) for entry in evaluated)
                (line,) = reconstruction_axis.plot(evaluation_steps, values, color=modality_color(name), marker="o",
                                                   markersize=3, linewidth=1.4,
                                                   label=name if name == label else f"{prefix}{name}")
                line.set_gid(f"reconstruction/{run_key}/{name}")
            if len(names) > 1:
                means = _finite(entry.get("relative_reconstruction_error_mean") for entry in evaluated)
                (line,) = reconstruction_axis.plot(evaluation_steps, means, color=OVERALL_COLOR, linewidth=2.2,
                                                   label=f"{prefix}mean")
                line.set_gid(f"reconstruction/{run_key}/mean")
    positive = all(entry["loss"] > 0 for entries in runs.values() for entry in entries)
    if positive:
        loss_axis.set_yscale("log")
    loss_axis.set_ylabel("training loss")
    if max(spans) > 1:
        span_text = f"{max(spans)}" if len(spans) == 1 else f"{min(spans)}-{max(spans)}"
        loss_axis.set_title(f"lines: exponential moving average over {span_text} logged points; "
                            f"faint: logged values (mean since the previous log line)", fontsize=8)
    else:
        loss_axis.set_title("logged values (mean since the previous log line); too few to smooth", fontsize=8)
    loss_axis.legend(fontsize=7, ncol=2)
    loss_axis.grid(alpha=0.3)
    if has_reconstruction:
        reconstruction_axis.axhline(1.0, color=REFERENCE_COLOR, linestyle="--", linewidth=1,
                                    label="predicting the training mean")
        reconstruction_axis.set_ylabel("held-out rel. recon. error (1-R²)")
        reconstruction_axis.legend(fontsize=7, ncol=2)
        reconstruction_axis.grid(alpha=0.3)
    lr_axis.set_ylabel("learning rate")
    lr_axis.set_xlabel("optimizer step")
    lr_axis.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def plot_loss_curves(log_paths: dict[str, Path], output_png: Path, smoothing: int | None = None):
    """Write `loss_curves_figure(log_paths, smoothing)` to `output_png` (atomically; nothing when no log has an
    entry) and return the figure (or None). See `loss_curves_figure` for what the lines and faint lines are."""
    from physiomae.plotting import save_figure

    figure = loss_curves_figure(log_paths, smoothing=smoothing)
    if figure is not None:
        save_figure(figure, output_png)
    return figure
