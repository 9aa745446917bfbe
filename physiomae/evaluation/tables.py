"""How the run reports its ranking: the aggregate score a variant is ranked by, comparison.md (the paper's
Table 2, with the held-out reconstruction table below it), the rows of comparison.json and robustness.md.
Not copied to the Hub. A *row* is one variant's entry of results.json's `ranking`: `name`, `strategy`,
`tasks` ({task: probe result}), `aggregate`, `filled`, `reconstruction` (`variants.read_reconstruction_eval`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from . import probing

AGGREGATE_DEFINITION = "mean macro AUROC over the scored tasks"
PAIRED_DIFFERENCES_DEFINITION = (
    "variant minus reference on the same probe-test windows; 95 % percentile interval of the per-resample "
    "differences, both sides scored on the same bootstrap resamples of test records; resolved when the interval "
    "excludes 0"
)


def aggregate_score(task_results: dict[str, dict]) -> float | None:
    """The score a variant is ranked by, `AGGREGATE_DEFINITION` (None when no task was scored)."""
    values = [result["metrics"]["macro_auroc"] for result in task_results.values()]
    values = [value for value in values if value is not None and np.isfinite(value)]
    return float(np.mean(values)) if values else None


def rank_rows(rows: list[dict]) -> list[dict]:
    """`rows` best first by `aggregate` (rows without one last; ties keep their order)."""
    return sorted(rows, key=lambda row: -np.inf if row["aggregate"] is None else row["aggregate"], reverse=True)


TABLE_METRICS = {
    "sleep_staging": ("balanced_accuracy", "macro_f1", "cohen_kappa", "macro_auroc"),
    "arousal": ("balanced_accuracy", "macro_f1", "macro_auroc", "gross_auprc"),
    "age": ("balanced_accuracy", "macro_f1", "macro_auroc"),
}


RECONSTRUCTION_DEFINITION = (
    "relative reconstruction error 1 - R^2 of the masked patches (train.py, on records held out of the pretraining "
    "split; 1.0 = predicting the training mean of every target dimension); lower is better; comparable only "
    "between runs with the same reconstruction_target and mask_ratio"
)
RECONSTRUCTION_COLUMN = "rel. recon. error (1-R²)"


def reconstruction_columns(row: dict, modalities: Sequence[str]) -> dict:
    """comparison.json fields of a row's reconstruction error for each of `modalities` (None when not measured)."""
    reconstruction = row.get("reconstruction") or {}
    columns = {"relative_reconstruction_error.mean": reconstruction.get("relative_reconstruction_error_mean")}
    for modality in modalities:
        columns[f"relative_reconstruction_error.{modality}"] = (reconstruction.get("relative_reconstruction_error") or {}).get(modality)
    return columns


def reconstruction_modalities(rows: list[dict]) -> list[str]:
    """The modalities with a reconstruction error in any of `rows`, in the order they first appear."""
    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(((row.get("reconstruction") or {}).get("relative_reconstruction_error") or {})))
    return list(names)


def _reconstruction_cell(value) -> str:
    return "-" if value is None or not np.isfinite(value) else f"{value:.3f}"


def reconstruction_markdown(rows: list[dict]) -> list[str]:
    """Per-modality table of the held-out relative reconstruction error ('-' where not measured)."""
    modalities = reconstruction_modalities(rows)
    header = ["variant", "strategy", "reconstruction target", f"{RECONSTRUCTION_COLUMN}: mean"] + modalities
    lines = [f"## Held-out reconstruction: {RECONSTRUCTION_COLUMN}", "",
             f"Per modality, {RECONSTRUCTION_DEFINITION}. '-': not measured (hand-crafted baseline, contrastive or "
             "random_init, a model folder outside a training run, or a modality absent from the held-out windows).", "",
             "| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for row in rows:
        reconstruction = row.get("reconstruction") or {}
        values = reconstruction.get("relative_reconstruction_error") or {}
        target = reconstruction.get("reconstruction_target")
        cells = [row["name"], row["strategy"], "-" if not target else str(target),
                 _reconstruction_cell(reconstruction.get("relative_reconstruction_error_mean"))]
        cells += [_reconstruction_cell(values.get(modality)) for modality in modalities]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _with_interval(result: dict, metric: str) -> str:
    value = result["metrics"].get(metric)
    if value is None or not np.isfinite(value):
        return "n/a"
    interval = result.get("intervals", {}).get(metric)
    if interval and interval[0] is not None:
        return f"{value:.3f} [{interval[0]:.3f}, {interval[1]:.3f}]"
    return f"{value:.3f}"


def comparison_markdown(rows: list[dict], tasks: Sequence[probing.ProbeTask], skipped: dict[str, str], notes: Sequence[str],
                        differences: dict | None = None) -> str:
    """The paper's Table 2: one row per variant, ranked by the aggregate, value [95 % CI] per metric; then the
    held-out reconstruction table and the paired differences to each reference (`differences_markdown`)."""
    header = ["rank", "variant", "strategy", "aggregate (mean macro AUROC)"]
    for task in tasks:
        header += [f"{task.name}: {metric}" for metric in TABLE_METRICS[task.name]]
    header.append(f"{RECONSTRUCTION_COLUMN}, mean")
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for rank, row in enumerate(rows, start=1):
        aggregate = row["aggregate"]
        cells = [str(rank), row["name"], row["strategy"], "n/a" if aggregate is None else f"{aggregate:.3f}"]
        for task in tasks:
            result = row["tasks"].get(task.name)
            cells += [_with_interval(result, metric) if result else "n/a" for metric in TABLE_METRICS[task.name]]
        cells.append(_reconstruction_cell((row.get("reconstruction") or {}).get("relative_reconstruction_error_mean")))
        lines.append("| " + " | ".join(cells) + " |")
    text = ["# Linear-probe comparison", "",
            f"Values: probe-test score [95 % bootstrap CI over test records]. Last column: the held-out "
            f"{RECONSTRUCTION_COLUMN} of pretraining, mean over modalities (see the table below; '-' = not measured).", ""]
    text += lines
    if skipped:
        text += ["", "Tasks skipped (not in the aggregate): " + "; ".join(f"{name}: {why}" for name, why in skipped.items())]
    for note in notes:
        text += ["", f"Note: {note}"]
    text += [""] + reconstruction_markdown(rows)
    for reference, by_variant in (differences or {}).items():
        text += [""] + differences_markdown(reference, by_variant, rows, tasks)
    return "\n".join(text) + "\n"


def differences_markdown(reference: str, by_variant: dict[str, dict], rows: list[dict],
                         tasks: Sequence[probing.ProbeTask]) -> list[str]:
    """One table of `features.paired_differences` against `reference`: a row per variant (ranking order), a column per
    task and metric, `difference [95 % CI]` with `*` where the interval excludes 0."""
    metrics = list(dict.fromkeys(metric for variant in by_variant.values() for task in variant.values() for metric in task))
    header = ["variant"] + [f"{task.name}: Δ {metric}" for task in tasks for metric in metrics]
    lines = [f"## Paired differences: variant − {reference}", "",
             f"Value [95 % CI], {PAIRED_DIFFERENCES_DEFINITION}; `*` = resolved.", "",
             "| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for row in rows:
        if row["name"] not in by_variant:
            continue
        cells = [row["name"]]
        for task in tasks:
            for metric in metrics:
                entry = by_variant[row["name"]].get(task.name, {}).get(metric)
                cells.append(_difference_cell(entry))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _difference_cell(entry: dict | None) -> str:
    if entry is None or not np.isfinite(entry["difference"]):
        return "n/a"
    low, high = entry["ci95"]
    if low is None:
        return f"{entry['difference']:+.3f}"
    return f"{entry['difference']:+.3f} [{low:+.3f}, {high:+.3f}]" + (" *" if entry["resolved"] else "")


def robustness_markdown(rows: list[dict], tasks: Sequence[probing.ProbeTask]) -> str:
    """Missing-modality robustness: balanced accuracy and macro AUROC with each modality removed at test time."""
    text = ["# Missing-modality robustness", "", "Probe fitted on full data; one modality removed at test time.", ""]
    for task in tasks:
        modalities = sorted({modality for row in rows for modality in row["tasks"].get(task.name, {}).get("without_modality", {})})
        text += [f"## {task.name} (balanced accuracy / macro AUROC)", ""]
        header = ["variant", "all present"] + [f"without {modality}" for modality in modalities]
        text += ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
        for row in rows:
            result = row["tasks"].get(task.name)
            if not result:
                continue
            cells = [row["name"], f"{result['metrics']['balanced_accuracy']:.3f} / {result['metrics']['macro_auroc']:.3f}"]
            for modality in modalities:
                removed = result["without_modality"].get(modality)
                cells.append(
                    f"{removed['balanced_accuracy']:.3f} / {removed['macro_auroc']:.3f}" if removed else "n/a"
                )
            text.append("| " + " | ".join(cells) + " |")
        text.append("")
    return "\n".join(text)




def comparison_rows(rows: list[dict], modalities: Sequence[str]) -> list[dict]:
    """comparison.json: per ranked row its rank, name, strategy, aggregate, every task metric (`task.metric`) and
    its 95 % interval (`task.metric.ci95`), and the reconstruction errors of `modalities`."""
    return [
        {"rank": rank, "name": row["name"], "strategy": row["strategy"], "aggregate": row["aggregate"],
         **{f"{task}.{metric}": row["tasks"][task]["metrics"].get(metric) for task in row["tasks"] for metric in row["tasks"][task]["metrics"]},
         **{f"{task}.{metric}.ci95": row["tasks"][task]["intervals"].get(metric) for task in row["tasks"] for metric in row["tasks"][task]["intervals"]},
         **reconstruction_columns(row, modalities)}
        for rank, row in enumerate(rows, start=1)
    ]
