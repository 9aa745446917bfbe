"""Render `model_card.md` (the template at the repository root) into a Hub README with YAML metadata.

The template holds `{{ name }}` placeholders; `render_model_card` fills them and builds the YAML front
matter (library, license, datasets, tags, metrics and a `model-index` with the measured results).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

TEMPLATE_NAME = "model_card.md"
PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")

METRIC_DISPLAY_NAMES = {
    "balanced_accuracy": "Balanced accuracy",
    "macro_f1": "Macro F1",
    "macro_auroc": "Macro AUROC",
    "cohen_kappa": "Cohen's kappa",
    "gross_auprc": "Gross AUPRC (challenge definition)",
}


def find_template(path: str | Path | None = None) -> Path:
    """The template: `path` if given, else `model_card.md` next to the package or inside it."""
    candidates = [Path(path)] if path else []
    package_dir = Path(__file__).resolve().parent
    candidates += [package_dir.parent / TEMPLATE_NAME, package_dir / TEMPLATE_NAME]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"model card template not found; looked at {[str(candidate) for candidate in candidates]}")


@dataclass
class TaskCardResult:
    """Measured results of one task for the card: metric name -> value and optional 95 % interval."""

    task_name: str
    task_title: str
    dataset_name: str
    metrics: dict[str, float]
    intervals: dict[str, list[float | None]] = field(default_factory=dict)
    baseline_metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class ModelCardInputs:
    """Everything a card needs besides the measured results."""

    model_name: str
    repo_id: str
    summary: str
    intended_use: str
    training_data: str
    data_limitations: str
    age_definition: str
    auto_class: str = "AutoModel"
    license: str = "apache-2.0"
    datasets: list[str] = field(default_factory=lambda: ["physionet-challenge-2018"])
    tags: list[str] = field(default_factory=lambda: ["physiomae", "polysomnography", "sleep", "physiological-signals", "biosignals", "masked-autoencoder"])
    pipeline_tag: str | None = None
    usage: str | None = None  # the card's code example; default: from_pretrained(repo_id) with auto_class
    evaluation: str | None = None  # the evaluation section's markdown; default: the table of the results


def _format_value(value) -> str:
    return "n/a" if value is None or value != value else f"{value:.3f}"


def evaluation_markdown(results: list[TaskCardResult]) -> str:
    """Markdown table: task, metric, value, 95 % interval, and the band-power baseline where known."""
    if not results:
        return "No labelled evaluation data were available for this model."
    lines = ["| task | metric | value | 95 % CI (records bootstrap) | band-power baseline |", "| --- | --- | --- | --- | --- |"]
    for result in results:
        for metric, value in result.metrics.items():
            interval = result.intervals.get(metric) or [None, None]
            ci = f"[{_format_value(interval[0])}, {_format_value(interval[1])}]" if interval[0] is not None else "n/a"
            baseline = _format_value(result.baseline_metrics.get(metric)) if result.baseline_metrics else "n/a"
            lines.append(
                f"| {result.task_title} | {METRIC_DISPLAY_NAMES.get(metric, metric)} | {_format_value(value)} | {ci} | {baseline} |"
            )
    return "\n".join(lines)


def card_metadata(inputs: ModelCardInputs, results: list[TaskCardResult]) -> dict:
    """The YAML front matter as a dict (Hub model-card metadata with a `model-index`)."""
    metric_names = sorted({metric for result in results for metric in result.metrics})
    metadata = {
        "library_name": "transformers",
        "license": inputs.license,
        "datasets": list(inputs.datasets),
        "tags": list(inputs.tags),
        "metrics": metric_names,
    }
    if inputs.pipeline_tag:
        metadata["pipeline_tag"] = inputs.pipeline_tag
    model_index_results = []
    for result in results:
        metrics = [
            {"type": metric, "name": METRIC_DISPLAY_NAMES.get(metric, metric), "value": round(float(value), 6)}
            for metric, value in result.metrics.items()
            if value is not None and value == value
        ]
        if metrics:
            model_index_results.append(
                {
                    "task": {"type": result.task_name, "name": result.task_title},
                    "dataset": {"type": inputs.datasets[0] if inputs.datasets else "custom", "name": result.dataset_name},
                    "metrics": metrics,
                }
            )
    if model_index_results:
        metadata["model-index"] = [{"name": inputs.model_name, "results": model_index_results}]
    return metadata


def default_usage(inputs: ModelCardInputs) -> str:
    return (f"from transformers import AutoFeatureExtractor, {inputs.auto_class}\n\n"
            f"model = {inputs.auto_class}.from_pretrained(\"{inputs.repo_id}\", trust_remote_code=True)\n"
            f"feature_extractor = AutoFeatureExtractor.from_pretrained(\"{inputs.repo_id}\", trust_remote_code=True)\n"
            "inputs = feature_extractor(recording, sampling_rate=200, channel_names=channel_names, return_tensors=\"pt\")\n"
            "outputs = model(input_values=inputs[\"input_values\"], modality_mask=inputs[\"modality_mask\"])")


def render_model_card(inputs: ModelCardInputs, results: list[TaskCardResult], template_path: str | Path | None = None) -> str:
    """Fill the template; every placeholder must be known (an unknown one is an error naming it)."""
    template = find_template(template_path).read_text(encoding="utf-8")
    values = {
        "metadata": yaml.safe_dump(card_metadata(inputs, results), sort_keys=False, allow_unicode=True).strip(),
        "model_name": inputs.model_name,
        "repo_id": inputs.repo_id,
        "summary": inputs.summary,
        "intended_use": inputs.intended_use,
        "training_data": inputs.training_data,
        "evaluation": inputs.evaluation if inputs.evaluation is not None else evaluation_markdown(results),
        "usage": inputs.usage if inputs.usage is not None else default_usage(inputs),
        "data_limitations": inputs.data_limitations,
        "age_definition": inputs.age_definition,
        "auto_class": inputs.auto_class,
    }
    unknown = sorted({name for name in PLACEHOLDER.findall(template) if name not in values})
    if unknown:
        raise KeyError(f"model card template {find_template(template_path)} has unknown placeholders {unknown}")
    return PLACEHOLDER.sub(lambda match: str(values[match.group(1)]), template)


def read_card_metadata(readme_text: str) -> dict:
    """Parse the YAML front matter of a rendered README (between the first two `---` lines)."""
    match = re.match(r"^---\n(.*?)\n---\n", readme_text, flags=re.DOTALL)
    if not match:
        raise ValueError("README has no YAML front matter between '---' lines")
    return yaml.safe_load(match.group(1))
