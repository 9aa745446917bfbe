"""The evaluation run behind `eval.py`: variants, probes per task, comparison table, robustness, analyses,
task classifiers with their model cards. Not copied to the Hub.

`run_evaluation` is the protocol, top-down; each step lives in its own module:
1. data (`data`): probe-train / probe-test of a dataset saved by the builder (`load_probe_data`) or the real 60-s
   challenge excerpts (`load_real_segments`, sleep staging only); the tasks those splits can score
   (`active_tasks`).
2. variants (`variants`): the hand-crafted baseline `band_power` (always reported) and every variant of every
   checkpoint (`discover_variants`: one encoder's pooled embedding; a `mae_unimodal` run gives one variant per
   modality and one that concatenates them).
3. per variant (`features`): features on probe-train and probe-test, with each modality removed at test time
   (robustness; what a variant cannot see is filled with probe-train means), one linear probe per task
   (`probe_variant`) and its per-window predictions; the held-out reconstruction error its training run
   measured (`variants.read_reconstruction_eval`). For a single encoder also the attention rollout and modality
   tuning (`analysis.run_analyses`) and one Hub-format classifier per task (`export.export_task_classifiers`).
4. label efficiency, when asked (`label_efficiency.write_probe_label_efficiency`).
5. the ranking (`tables`): results.json, comparison.json / .md, robustness.md, with every variant's paired
   bootstrap difference to the band-power baseline and to the first `random_init` variant
   (`features.paired_differences`).
The log gives each variant's seconds per part (features, probes, analyses, export).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..io import atomic_write_json, atomic_write_text
from . import probing
from .analysis import run_analyses
from .data import ProbeData, active_tasks, load_probe_data, load_real_segments
from .export import export_task_classifiers
from .features import (
    BASELINE_NAME,
    band_power_variant_features,
    encoder_variant_features,
    paired_differences,
    probe_variant,
    write_predictions,
)
from .label_efficiency import write_probe_label_efficiency
from .probing import ProbeSettings
from .tables import (
    AGGREGATE_DEFINITION,
    PAIRED_DIFFERENCES_DEFINITION,
    RECONSTRUCTION_DEFINITION,
    aggregate_score,
    comparison_markdown,
    comparison_rows,
    rank_rows,
    robustness_markdown,
)
from .variants import EncoderVariant, discover_variants, load_encoder, read_reconstruction_eval, safe_name

__all__ = ["EvaluationSettings", "ProbeSettings", "run_evaluation"]

logger = logging.getLogger("physiomae.eval")


@dataclass
class EvaluationSettings:
    """Everything `run_evaluation` needs (filled from `eval.py`'s arguments)."""

    checkpoints: Sequence[str]
    output_dir: Path
    dataset_dir: str | None = None
    real_segments_dir: str | None = None
    real_segments_limit: int | None = None
    real_segments_test_fraction: float = 0.5
    real_segments_train_dir: str | None = None
    tasks: Sequence[str] = tuple(probing.TASKS)
    batch_size: int = 64
    probe: ProbeSettings = field(default_factory=ProbeSettings)
    robustness: bool = True
    analyses: bool = True
    analysis_windows: int = 32
    export_classifiers: bool = True
    repo_prefix: str = ""
    device: str = "cpu"
    label_fractions: Sequence[float] = ()  # label efficiency: refit the probes on these shares of the train records
    label_seeds: Sequence[int] = (0, 1, 2)


def run_evaluation(settings: EvaluationSettings) -> dict:
    """Run every variant through every task; write results.json, comparison.md/json, robustness.md,
    analysis/<variant>/*.png and the task classifiers. Returns the results dict."""
    started = time.time()
    output_dir = Path(settings.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    data, tasks, skipped = probe_data_and_tasks(settings)
    removable, absent_modalities = removable_modalities(data)

    rows, exports, analyses, samples = [], {}, {}, {}
    logger.info("baseline %s", BASELINE_NAME)
    step = time.time()
    baseline_features = band_power_variant_features(data, removable, settings.robustness)
    baseline_results, baseline_probes, samples[BASELINE_NAME] = probe_variant(baseline_features, data, tasks, settings.probe)
    logger.info("%s: features and probes %.1f s", BASELINE_NAME, time.time() - step)
    write_predictions(output_dir / "predictions", BASELINE_NAME, baseline_features, baseline_probes, data, tasks)
    rows.append({"name": BASELINE_NAME, "strategy": "hand-crafted", "tasks": baseline_results,
                 "aggregate": aggregate_score(baseline_results), "filled": {}, "reconstruction": None})
    kept_features = {BASELINE_NAME: (baseline_features.train, baseline_features.test)}  # for label efficiency

    variants = checkpoint_variants(settings.checkpoints)
    encoder_cache: dict[str, object] = {}  # folder -> encoder
    encodings: dict[object, tuple] = {}  # encoder -> its probe-train and probe-test embeddings
    uses = Counter(str(folder) for variant in variants for folder in variant.encoder_folders)  # both kept until the last use
    for variant in variants:
        logger.info("variant %s (%s)", variant.name, variant.strategy)
        step = time.time()
        encoders = load_encoders(variant, encoder_cache, settings.device)
        features = encoder_variant_features(encoders, data, removable, settings.batch_size, settings.robustness,
                                            encodings)
        seconds = {"features": time.time() - step}
        task_results, probes, samples[variant.name] = probe_variant(features, data, tasks, settings.probe)
        seconds["probes"] = time.time() - step - seconds["features"]
        write_predictions(output_dir / "predictions", variant.name, features, probes, data, tasks)
        kept_features[variant.name] = (features.train, features.test)
        rows.append(
            {
                "name": variant.name,
                "strategy": variant.strategy,
                "source": variant.source,
                "encoders": [str(folder) for folder in variant.encoder_folders],
                "tasks": task_results,
                "aggregate": aggregate_score(task_results),
                "filled": features.filled,
                "reconstruction": read_reconstruction_eval(variant),
            }
        )
        if not variant.is_concatenation and settings.analyses:
            step = time.time()
            analyses[variant.name] = run_analyses(
                encoders[0], data, output_dir / "analysis" / safe_name(variant.name), variant.name, settings.analysis_windows
            )
            seconds["analyses"] = time.time() - step
        if not variant.is_concatenation and settings.export_classifiers:
            step = time.time()
            exports[variant.name] = export_task_classifiers(
                variant, encoders[0], probes, task_results, baseline_results, tasks, data, output_dir, settings.repo_prefix
            )
            seconds["export"] = time.time() - step
        logger.info("%s: %s", variant.name, ", ".join(f"{part} {value:.1f} s" for part, value in seconds.items()))
        for folder in map(str, variant.encoder_folders):
            uses[folder] -= 1
            if not uses[folder]:
                encodings.pop(encoder_cache.pop(folder), None)
    for variant in variants:
        if variant.is_concatenation and settings.export_classifiers:
            exports[variant.name] = {"skipped": "concatenated unimodal encoders are not one PhysioMAE model"}

    rows = rank_rows(rows)
    untrained = {variant.name for variant in variants if variant.is_untrained}
    references = [BASELINE_NAME] + [row["name"] for row in rows if row["name"] in untrained][:1]
    differences = paired_differences(rows, samples, references)
    efficiency = {}
    if settings.label_fractions:
        efficiency = write_probe_label_efficiency(kept_features, data, tasks, settings.probe, settings.label_fractions,
                                                  settings.label_seeds, output_dir, baseline=BASELINE_NAME)
    results = {
        "data": {"description": data.description, "real_segments": data.is_real_segments, "report": data.report,
                 "probe_train_windows": data.train_table.num_windows, "probe_test_windows": data.test_table.num_windows,
                 "probe_train_records": int(len(np.unique(data.train_table.records))),
                 "probe_test_records": int(len(np.unique(data.test_table.records))),
                 "modalities_absent_from_probe_test": absent_modalities},
        "notes": list(data.notes),
        "tasks_scored": [task.name for task in tasks],
        "tasks_skipped": skipped,
        "aggregate_definition": AGGREGATE_DEFINITION,
        "reconstruction_definition": RECONSTRUCTION_DEFINITION,
        "age_threshold_years": probing.AGE_THRESHOLD_YEARS,
        "probe": {"model": "StandardScaler + LogisticRegression(class_weight='balanced')", "c_grid": list(settings.probe.c_grid),
                  "cv": f"GroupKFold({settings.probe.cv_folds}) over records, balanced accuracy",
                  "bootstrap": f"{settings.probe.bootstrap_resamples} resamples of test records, seed {settings.probe.seed}, percentile 95 % CI"},
        "gross_auprc_definition": "PhysioNet/CinC 2018 challenge: precision/recall from counts pooled over all windows of all test records, probabilities rounded to 3 decimals, step-wise area",
        "missing_modality_note": "probe fitted on full data; at test time the modality is marked absent (encoders) or its features set to their probe-train means (band-power baseline, concatenated unimodal blocks)",
        "ranking": rows,
        "analyses": analyses,
        "exported_classifiers": exports,
        "label_efficiency": efficiency,
        "paired_differences": differences,
        "paired_differences_definition": PAIRED_DIFFERENCES_DEFINITION,
        "runtime_seconds": round(time.time() - started, 1),
    }
    atomic_write_json(output_dir / "results.json", results)
    atomic_write_json(output_dir / "comparison.json", comparison_rows(rows, data.layout.modality_names))
    atomic_write_text(output_dir / "comparison.md", comparison_markdown(rows, tasks, skipped, data.notes, differences))
    if settings.robustness:
        atomic_write_text(output_dir / "robustness.md", robustness_markdown(rows, tasks))
    logger.info("evaluation done in %.1f s -> %s", results["runtime_seconds"], output_dir)
    return results


# ----------------------------------------------------------------------------------------------- the run's steps
def probe_data_and_tasks(settings: EvaluationSettings) -> tuple[ProbeData, list[probing.ProbeTask], dict[str, str]]:
    """The probe splits (`--real_segments_dir`, else `--dataset_dir`), the tasks they can score and
    {skipped task: why}; a note when probe-test has too few records for the bootstrap."""
    if settings.real_segments_dir:
        data = load_real_segments(settings.real_segments_dir, settings.real_segments_limit,
                                  settings.real_segments_test_fraction, settings.real_segments_train_dir)
        task_names = [name for name in settings.tasks if name == "sleep_staging"]
        data_skipped = {name: "real segments carry no labels for this task" for name in settings.tasks if name != "sleep_staging"}
    elif settings.dataset_dir:
        data = load_probe_data(settings.dataset_dir)
        task_names, data_skipped = list(settings.tasks), {}
    else:
        raise ValueError("give --dataset_dir (a dataset saved by the builder) or --real_segments_dir")
    tasks, skipped = active_tasks(data, task_names)
    num_test_records = len(np.unique(data.test_table.records))
    if num_test_records < 10:
        data.notes.append(
            f"probe_test holds only {num_test_records} record(s): the record-bootstrap intervals are unreliable"
        )
    skipped = {**data_skipped, **skipped}
    for name, why in skipped.items():
        logger.warning("task %s skipped: %s", name, why)
    if not tasks:
        raise ValueError(f"no task can be scored on this data: {skipped}")
    return data, tasks, skipped


def removable_modalities(data: ProbeData) -> tuple[list[str], list[str]]:
    """(modalities present in some probe-test window: the ones robustness removes, the modalities absent from
    probe-test)."""
    present_in_test = data.test_table.channel_mask.any(axis=0)
    removable = [
        modality
        for modality, channels in data.layout.modalities.items()
        if any(present_in_test[data.layout.channel_names.index(channel)] for channel in channels)
    ]
    absent_modalities = [modality for modality in data.layout.modality_names if modality not in removable]
    return removable, absent_modalities


def checkpoint_variants(checkpoints: Sequence[str]) -> list[EncoderVariant]:
    """Every variant of every checkpoint, in order; two variants of the same name are an error."""
    variants = [variant for checkpoint in checkpoints for variant in discover_variants(checkpoint)]
    names = [variant.name for variant in variants]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"two checkpoints give the same variant name(s) {duplicates}; rename one (run_name)")
    return variants


def load_encoders(variant: EncoderVariant, cache: dict[str, object], device: str) -> list:
    """The variant's encoders, each folder loaded once per run (`cache`: folder -> encoder)."""
    encoders = []
    for folder in variant.encoder_folders:
        key = str(folder)
        if key not in cache:
            cache[key] = load_encoder(folder, device)
        encoders.append(cache[key])
    return encoders
