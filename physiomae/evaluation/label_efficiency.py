"""Label efficiency: how well a classifier does when it is fitted on a share of the labelled training records.

The reason a foundation model exists is that it needs fewer labels. For each share in `fractions` and each seed,
`label_subset` draws that share of the training records, stratified by each record's most frequent label (so
every class keeps records), and the same drawn records serve every variant (band powers, untrained and pretrained
encoders), so the variants differ only in their features. eval.py (`--label_fractions`) refits its linear probe
on each share (`probe_label_efficiency`; every task and its files: `write_probe_label_efficiency`); finetune.py
(`--label_fractions`) fine-tunes on each share. Both write the result in the layout `label_efficiency_markdown`
and `plot_label_efficiency` read:

    {"metric": "balanced_accuracy", "fractions": [...], "seeds": [...],
     "records": {fraction: records drawn}, "windows": {fraction: windows drawn},
     "variants": {name: {fraction: {"runs": [per-seed score], "mean": m, "std": s}}}}

(fractions as strings, e.g. "0.05", so that the dict survives JSON).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..io import atomic_write_json, atomic_write_text
from . import probing

logger = logging.getLogger("physiomae.eval")  # only eval.py's step (`write_probe_label_efficiency`) logs

DEFAULT_FRACTIONS = (0.05, 0.1, 0.25, 0.5, 1.0)


def fraction_key(fraction: float) -> str:
    return f"{float(fraction):g}"


def label_subset(records: np.ndarray, labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean row mask of a `fraction` share of the records, drawn with `seed`, stratified by record label.

    Each record's label is the most frequent valid label (>= 0) of its rows; of each label's records,
    ceil(fraction * count) are drawn (at least one), so every class present keeps a record. Rows with a label
    < 0 stay out. `fraction` 1 keeps every labelled row."""
    if not 0 < fraction <= 1:
        raise ValueError(f"label fraction {fraction} is not in (0, 1]")
    records = np.asarray(records).astype(str)
    labels = np.asarray(labels)
    valid = labels >= 0
    names = np.unique(records[valid])
    record_label = {}
    for name in names:
        values = labels[valid & (records == name)]
        record_label[name] = int(np.bincount(values).argmax())
    generator = np.random.default_rng(seed)
    chosen: list[str] = []
    for label in sorted(set(record_label.values())):
        members = sorted(name for name, value in record_label.items() if value == label)
        count = max(1, math.ceil(fraction * len(members)))
        chosen.extend(generator.choice(members, size=count, replace=False).tolist())
    return valid & np.isin(records, chosen)


def summary(scores: Sequence[float]) -> dict:
    return {"runs": [float(score) for score in scores], "mean": float(np.mean(scores)), "std": float(np.std(scores))}


def label_efficiency(
    records: np.ndarray,
    labels: np.ndarray,
    variants: Sequence[str],
    score: Callable[[str, np.ndarray, int], float],
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seeds: Sequence[int] = (0, 1, 2),
    metric: str = "balanced_accuracy",
) -> dict:
    """`score(variant, train_rows_mask, seed)` for every fraction, seed and variant, summarised per fraction.
    The drawn rows depend on (fraction, seed) only, never on the variant."""
    result = {"metric": metric, "fractions": [float(value) for value in fractions], "seeds": list(seeds),
              "records": {}, "windows": {}, "variants": {name: {} for name in variants}}
    for fraction in fractions:
        key = fraction_key(fraction)
        masks = [label_subset(records, labels, fraction, seed) for seed in seeds]
        result["records"][key] = int(np.mean([len(np.unique(np.asarray(records)[mask])) for mask in masks]))
        result["windows"][key] = int(np.mean([mask.sum() for mask in masks]))
        for name in variants:
            result["variants"][name][key] = summary([score(name, mask, seed) for mask, seed in zip(masks, seeds)])
    return result


def probe_label_efficiency(
    features: dict[str, tuple[np.ndarray, np.ndarray]],
    data,
    task: probing.ProbeTask,
    probe_settings: probing.ProbeSettings,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seeds: Sequence[int] = (0, 1, 2),
) -> dict:
    """The linear probe of eval.py (C chosen by grouped CV on the drawn records only) refitted on each share;
    `features` maps a variant name to its (probe-train, probe-test) features; scored on all of probe-test."""
    train_labels = data.train_table.labels[task.name]
    test_rows = data.test_table.labels[task.name] >= 0
    test_labels = data.test_table.labels[task.name][test_rows]

    def score(name: str, rows: np.ndarray, seed: int) -> float:
        train, test = features[name]
        probe = probing.fit_probe(train[rows], train_labels[rows], data.train_table.records[rows],
                                  c_grid=probe_settings.c_grid, num_folds=probe_settings.cv_folds,
                                  max_iter=probe_settings.max_iter)
        probabilities = probing.full_probabilities(probe, test[test_rows], task.num_classes)
        return probing.task_metrics(task, test_labels, probabilities)["balanced_accuracy"]

    return label_efficiency(data.train_table.records, train_labels, list(features), score, fractions, seeds)


def write_probe_label_efficiency(
    features: dict[str, tuple[np.ndarray, np.ndarray]],
    data,
    tasks: Sequence[probing.ProbeTask],
    probe_settings: probing.ProbeSettings,
    fractions: Sequence[float],
    seeds: Sequence[int],
    output_dir: Path,
    baseline: str | None = None,
) -> dict:
    """eval.py's step: `probe_label_efficiency` for every task; writes OUTPUT/label_efficiency.json, .md (rows
    against `baseline`) and label_efficiency_<task>.png; returns {task: result}."""
    results, sections = {}, []
    for task in tasks:
        logger.info("label efficiency of %s: shares %s, seeds %s", task.name, list(fractions), list(seeds))
        result = probe_label_efficiency(features, data, task, probe_settings, fractions, seeds)
        results[task.name] = result
        title = (f"Linear probe of {task.name} fitted on a share of the probe-train records, balanced accuracy on all "
                 f"{data.test_table.num_windows} probe-test windows (mean ± std over seeds {list(seeds)})")
        sections.append(label_efficiency_markdown(result, title, baseline=baseline))
        plot_label_efficiency({"linear probe": result}, output_dir / f"label_efficiency_{task.name}.png",
                              f"{task.name}: label efficiency")
    atomic_write_json(output_dir / "label_efficiency.json", results)
    atomic_write_text(output_dir / "label_efficiency.md", "\n".join(sections))
    return results


def label_efficiency_markdown(result: dict, title: str, baseline: str | None = None) -> str:
    """One row per variant, one column per share (mean ± std over seeds); with `baseline`, one row per other
    variant with its mean difference to the baseline."""
    keys = [fraction_key(fraction) for fraction in result["fractions"]]
    header = " | ".join(f"{float(key):.0%} ({result['records'][key]} rec.)" for key in keys)
    lines = [title, "", f"| variant | {header} |", "| --- |" + " --- |" * len(keys)]
    for name, scores in result["variants"].items():
        cells = " | ".join(f"{scores[key]['mean']:.3f} ± {scores[key]['std']:.3f}" for key in keys)
        lines.append(f"| {name} | {cells} |")
    if baseline and baseline in result["variants"]:
        for name, scores in result["variants"].items():
            if name == baseline:
                continue
            cells = " | ".join(f"{scores[key]['mean'] - result['variants'][baseline][key]['mean']:+.3f}" for key in keys)
            lines.append(f"| {name} − {baseline} | {cells} |")
    return "\n".join(lines) + "\n"


def plot_label_efficiency(results: dict[str, dict], path, title: str) -> None:
    """Mean ± std over seeds against the share of labelled records (log scale); `results` maps a panel title to
    a result dict (e.g. {"linear probe": ..., "fine-tuning": ...}), one panel each. A variant name keeps its colour
    in every panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 4.2), squeeze=False, sharey=True)
    colours = {}
    for axis, (panel, result) in zip(axes[0], results.items()):
        fractions = np.asarray(result["fractions"])
        keys = [fraction_key(fraction) for fraction in fractions]
        for name, scores in result["variants"].items():
            colour = colours.setdefault(name, f"C{len(colours)}")
            means = np.array([scores[key]["mean"] for key in keys])
            spread = np.array([scores[key]["std"] for key in keys])
            axis.plot(fractions, means, marker="o", color=colour, label=name)
            axis.fill_between(fractions, means - spread, means + spread, color=colour, alpha=0.15)
        axis.set_xscale("log")
        axis.set_xticks(fractions)
        axis.set_xticklabels([f"{fraction:.0%}" for fraction in fractions])
        axis.set_xlabel("share of labelled training records")
        axis.set_title(f"{panel} ({len(result['seeds'])} seeds, mean ± std)")
        axis.grid(alpha=0.3)
        axis.legend(loc="lower right", fontsize=8)
    axes[0][0].set_ylabel(results[next(iter(results))]["metric"].replace("_", " "))
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
