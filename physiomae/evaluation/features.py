"""What each variant is scored on: its features on probe-train and probe-test (with each modality removed at test
time, for robustness), one linear probe per task fitted and scored on them, the per-window predictions, and the
paired bootstrap differences between variants (`paired_differences`). Not copied to the Hub.

A variant's features are an encoder's pooled embedding (`encoder_variant_features`, concatenated over the
encoders of a `mae_unimodal` run) or the hand-crafted baseline `BASELINE_NAME` (`band_power_variant_features`,
log band powers per channel, always reported).

Windows that a variant cannot see (none of its modalities present) and blocks of features removed at test
time (a concatenated unimodal encoder, or baseline channels of a removed modality) are filled with the
probe-train mean of those features, i.e. they carry no information after standardisation; each such fill
is counted in `VariantFeatures.filled`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from . import probing
from .data import ProbeData
from .probing import ProbeSettings
from .variants import safe_name

BASELINE_NAME = "band_power"  # the hand-crafted baseline's variant name (rows, predictions, label efficiency)
PAIRED_METRICS = ("balanced_accuracy", "macro_auroc")  # the metrics of `paired_differences`


# ----------------------------------------------------------------------------------------------- features
@dataclass
class VariantFeatures:
    """Features of one variant: probe-train, probe-test, and probe-test with each modality removed.

    Attributes:
        train, test (`np.ndarray`, `(num_windows, num_features)`).
        test_without (`dict[str, np.ndarray]`): removed modality -> probe-test features.
        not_removable (`dict[str, str]`): modality -> why no robustness score exists for it.
        filled (`dict[str, int]`): counts of windows / blocks filled with the probe-train mean.
    """

    train: np.ndarray
    test: np.ndarray
    test_without: dict[str, np.ndarray] = field(default_factory=dict)
    not_removable: dict[str, str] = field(default_factory=dict)
    filled: dict[str, int] = field(default_factory=dict)


def _fill_empty(features: np.ndarray, empty: np.ndarray, fill_value: np.ndarray) -> np.ndarray:
    features = features.copy()
    features[empty] = fill_value
    return features


def encoder_variant_features(
    encoders: Sequence, data: ProbeData, removable: Sequence[str], batch_size: int, robustness: bool,
    encodings: dict | None = None,
) -> VariantFeatures:
    """Pooled embeddings (concatenated over `encoders`) with test-time modality removal.

    `encodings` (encoder -> its probe-train and probe-test `EncodedSplit`s), when given, is read and filled, so
    that an encoder shared by two variants (a `mae_unimodal` run's encoders, alone and concatenated) is run once."""
    train_blocks, test_blocks, filled = [], [], {}
    encoded_test = []
    encodings = {} if encodings is None else encodings
    for encoder in encoders:
        label = "+".join(encoder.config.modality_names)
        if encoder not in encodings:
            encodings[encoder] = (probing.encode_windows(encoder, data.train_split, batch_size, layout=data.layout),
                                  probing.encode_windows(encoder, data.test_split, batch_size, layout=data.layout))
        train, test = encodings[encoder]
        if train.empty_windows.all():
            raise ValueError(f"encoder with modalities {encoder.config.modality_names} sees no probe-train window")
        fill_value = train.embeddings[~train.empty_windows].mean(axis=0)
        filled[f"train_windows_without_{label}"] = int(train.empty_windows.sum())
        filled[f"test_windows_without_{label}"] = int(test.empty_windows.sum())
        train_blocks.append(_fill_empty(train.embeddings, train.empty_windows, fill_value))
        test_blocks.append(_fill_empty(test.embeddings, test.empty_windows, fill_value))
        encoded_test.append((encoder, fill_value))
    features = VariantFeatures(np.concatenate(train_blocks, 1), np.concatenate(test_blocks, 1), filled=filled)
    if not robustness:
        return features
    for modality in removable:
        blocks, any_change = [], False
        for (encoder, fill_value), full_block in zip(encoded_test, test_blocks):
            if modality not in encoder.config.modality_names:
                blocks.append(full_block)
                continue
            any_change = True
            if encoder.config.modality_names == [modality]:
                blocks.append(np.broadcast_to(fill_value, full_block.shape).copy())  # the whole block is gone
                continue
            removed = probing.encode_windows(encoder, data.test_split, batch_size, removed_modality=modality,
                                             layout=data.layout)
            blocks.append(_fill_empty(removed.embeddings, removed.empty_windows, fill_value))
        if not any_change:
            features.not_removable[modality] = "the variant does not use this modality"
        elif len(encoders) == 1 and encoders[0].config.modality_names == [modality]:
            features.not_removable[modality] = "the variant sees only this modality"
        else:
            features.test_without[modality] = np.concatenate(blocks, 1)
    return features


def band_power_variant_features(data: ProbeData, removable: Sequence[str], robustness: bool) -> VariantFeatures:
    """The hand-crafted baseline; a removed modality's features take their probe-train means."""
    train = probing.compute_band_power_split(data.train_split, layout=data.layout)
    test = probing.compute_band_power_split(data.test_split, layout=data.layout)
    features = VariantFeatures(train, test)
    if robustness:
        feature_modality = probing.band_power_feature_modality(data.layout.modalities)
        train_mean = train.mean(axis=0)
        for modality in removable:
            columns = feature_modality == modality
            removed = test.copy()
            removed[:, columns] = train_mean[columns]
            features.test_without[modality] = removed
    return features


# ----------------------------------------------------------------------------------------------- probes
def probe_variant(
    features: VariantFeatures, data: ProbeData, tasks: Sequence[probing.ProbeTask], settings: ProbeSettings
) -> tuple[dict[str, dict], dict[str, probing.FittedProbe], dict[str, dict[str, np.ndarray]]]:
    """Fit and score one probe per task; robustness scores reuse the probe fitted on full data.

    Returns the results per task, the fitted probes and the bootstrap samples per task and metric
    (`probing.bootstrap_samples`, empty without resamples), from which `paired_differences` pairs variants."""
    results, probes, samples = {}, {}, {}
    for task in tasks:
        train_rows = data.train_table.labels[task.name] >= 0
        test_rows = data.test_table.labels[task.name] >= 0
        train_labels = data.train_table.labels[task.name][train_rows]
        test_labels = data.test_table.labels[task.name][test_rows]
        test_records = data.test_table.records[test_rows]
        probe = probing.fit_probe(
            features.train[train_rows],
            train_labels,
            data.train_table.records[train_rows],
            c_grid=settings.c_grid,
            num_folds=settings.cv_folds,
            max_iter=settings.max_iter,
        )
        probabilities = probing.full_probabilities(probe, features.test[test_rows], task.num_classes)
        metrics = probing.task_metrics(task, test_labels, probabilities)
        samples[task.name] = (probing.task_bootstrap_samples(task, test_labels, probabilities, test_records,
                                                             settings.bootstrap_resamples, settings.seed)
                              if settings.bootstrap_resamples > 0 else {})
        intervals, undefined = probing.percentile_intervals(samples[task.name])
        robustness = {
            modality: probing.task_metrics(
                task, test_labels, probing.full_probabilities(probe, removed[test_rows], task.num_classes)
            )
            for modality, removed in features.test_without.items()
        }
        results[task.name] = {
            **probing.TaskResult(
                task=task.name,
                metrics=metrics,
                intervals=intervals,
                num_train_windows=int(train_rows.sum()),
                num_test_windows=int(test_rows.sum()),
                num_train_records=int(len(np.unique(data.train_table.records[train_rows]))),
                num_test_records=int(len(np.unique(test_records))),
                regularization_c=probe.regularization_c,
                cross_validation=probe.cross_validation,
                selection_note=probe.selection_note,
                undefined_bootstrap_resamples=undefined,
            ).to_dict(),
            "without_modality": robustness,
            "not_removable": dict(features.not_removable),
        }
        probes[task.name] = probe
    return results, probes, samples


def paired_differences(
    rows: list[dict], samples: dict[str, dict[str, dict[str, np.ndarray]]], references: Sequence[str],
    metrics: Sequence[str] = PAIRED_METRICS,
) -> dict[str, dict[str, dict[str, dict[str, dict]]]]:
    """Every variant minus each reference variant on the same probe-test windows, with paired bootstrap intervals
    (`probing.paired_difference`): `{reference: {variant: {task: {metric: difference}}}}`.

    `rows`: the run's rows (`name`, `tasks`); `samples`: `probe_variant`'s bootstrap samples by variant name (the
    same resamples for every variant, since all are scored on the same windows with the same seed). A reference
    that is not among the rows is left out; without bootstrap samples there are no differences.
    """
    values = {row["name"]: row["tasks"] for row in rows}
    differences = {}
    for reference in (reference for reference in references if reference in values):
        for name, tasks in values.items():
            by_task = {
                task: {metric: probing.paired_difference(result["metrics"][metric], values[reference][task]["metrics"][metric],
                                                         samples[name][task][metric], samples[reference][task][metric])
                       for metric in metrics if metric in samples[name][task]}
                for task, result in tasks.items() if samples[name].get(task) and samples[reference].get(task)
            }
            if name != reference and by_task:
                differences.setdefault(reference, {})[name] = by_task
    return differences


def write_predictions(
    folder: Path, variant_name: str, features: VariantFeatures, probes: dict[str, probing.FittedProbe],
    data: ProbeData, tasks: Sequence[probing.ProbeTask],
) -> None:
    """Per-window probe-test predictions: `folder/<variant>-<task>.npz` with `window_index` (row in
    probe_test), `label`, `prediction`, `decision_function` (the folded head's logit layout), `probability`."""
    folder.mkdir(parents=True, exist_ok=True)
    for task in tasks:
        rows = np.flatnonzero(data.test_table.labels[task.name] >= 0)
        probe = probes[task.name]
        test_features = features.test[rows]
        path = folder / f"{safe_name(variant_name)}-{task.name}.npz"
        temporary = path.with_name(f".{path.name}.tmp.npz")
        np.savez(
            temporary,
            window_index=rows,
            record=data.test_table.records[rows].astype(str),
            label=data.test_table.labels[task.name][rows],
            prediction=probe.predict(test_features),
            decision_function=probing.folded_decision_function(probe, task.num_classes, test_features),
            probability=probing.full_probabilities(probe, test_features, task.num_classes),
        )
        os.replace(temporary, path)
