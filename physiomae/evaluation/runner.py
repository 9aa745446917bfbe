"""The evaluation run behind `eval.py`: variants, probes per task, comparison table, robustness, analyses,
task classifiers with their model cards. Not copied to the Hub.

A *variant* is one set of features to probe:
- a single encoder (a training run's `export/` or any saved PhysioMAE folder): its pooled embedding;
- `mae_unimodal` runs give one variant per modality (that encoder alone) and one that concatenates them;
- `band_power`: the hand-crafted baseline (log band powers per channel), always reported.

Windows that a variant cannot see (none of its modalities present) and blocks of features removed at test
time (a concatenated unimodal encoder, or baseline channels of a removed modality) are filled with the
probe-train mean of those features, i.e. they carry no information after standardisation; each such fill
is counted in the report.

Reconstruction quality is not measured here but read from the training run: train.py writes
`reconstruction_eval.json` (OUTPUT/ for one model, OUTPUT/unimodal/<modality>/ for each mae_unimodal model)
with the relative reconstruction error (1 - R^2 of the masked patches against the training mean, on records
held out of the pretraining split). Each variant's row carries it as `reconstruction` (None for the
baseline, bare model folders and runs without the file); a concatenation of unimodal encoders takes each
modality from its own encoder's run (None unless every run has it).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..io import atomic_write_json, atomic_write_text
from ..saved_dataset import ChannelMapping, DatasetLayout, build_report, load_splits, locate_saved_dataset
from . import probing
from .label_efficiency import label_efficiency_markdown, plot_label_efficiency, probe_label_efficiency
from .analysis import modality_tuning, plot_block_matrix, plot_modality_tuning, rollout_analysis
from ..model_card import ModelCardInputs, TaskCardResult, render_model_card

logger = logging.getLogger("physiomae.eval")

BASELINE_NAME = "band_power"
RECONSTRUCTION_EVAL_NAME = "reconstruction_eval.json"  # written by train.py into the run folder
SUBJECT_IDENTITY_NOTE = (
    "The real 60-s segments carry no subject identity: excerpts from one subject may appear more than once, so "
    "the split (by a hash of the segment name) is a split by excerpt, not by subject, and scores may be "
    "optimistic. Only sleep staging is scored: the segments carry no arousal, age or sex labels."
)


# ----------------------------------------------------------------------------------------------- helpers
def safe_name(name: str) -> str:
    return "".join(character if character.isalnum() or character in "-_." else "-" for character in name)


# ----------------------------------------------------------------------------------------------- checkpoints
@dataclass
class EncoderVariant:
    """Features from one or more frozen encoders (more than one = concatenated unimodal encoders).

    Attributes:
        name: display name (unique in a run).
        strategy: the training strategy (`run_args.json`), or "unknown" for a bare model folder.
        encoder_folders: Hub-format folders of the encoders, in concatenation order.
        source: the checkpoint path given on the command line.
    """

    name: str
    strategy: str
    encoder_folders: list[Path]
    source: str

    @property
    def is_concatenation(self) -> bool:
        return len(self.encoder_folders) > 1


def read_strategy(run_args_path: Path) -> str:
    """The strategy recorded by train.py (`arguments.strategy`, or a top-level `strategy`)."""
    try:
        run_args = json.loads(run_args_path.read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"{run_args_path}: unreadable run arguments ({error})") from error
    strategy = run_args.get("strategy") or (run_args.get("arguments") or {}).get("strategy")
    return str(strategy or "unknown")


def _is_model_folder(folder: Path) -> bool:
    """A saved model folder (config.json); a model of another type is refused, naming the folder and type."""
    config_path = folder / "config.json"
    if not config_path.is_file():
        return False
    try:
        model_type = json.loads(config_path.read_text()).get("model_type")
    except (OSError, ValueError) as error:
        raise ValueError(f"{config_path}: unreadable config ({error})") from None
    if model_type != "physiomae":
        raise ValueError(f"{folder} holds a {model_type!r} model, not a PhysioMAE one (config.json model_type); "
                         f"eval.py probes PhysioMAE encoders only")
    return True


def discover_variants(checkpoint: str | Path) -> list[EncoderVariant]:
    """Variants of one checkpoint: a training output folder (run_args.json + export/) or a model folder.

    The variant is named after the folder (the training output folder, or the model folder itself)."""
    folder = Path(checkpoint)
    if not folder.is_dir():
        raise FileNotFoundError(f"checkpoint {folder}: not a folder")
    run_args_path = folder / "run_args.json"
    if run_args_path.is_file():
        strategy = read_strategy(run_args_path)
        name = folder.name
        export = folder / "export"
        if _is_model_folder(export):
            return [EncoderVariant(name, strategy, [export], str(folder))]
        unimodal = sorted(path for path in export.iterdir() if _is_model_folder(path)) if export.is_dir() else []
        if not unimodal:
            raise FileNotFoundError(f"checkpoint {folder}: run_args.json found but no model under {export}")
        variants = [EncoderVariant(f"{name}-{path.name}", strategy, [path], str(folder)) for path in unimodal]
        if len(unimodal) > 1:
            variants.append(EncoderVariant(f"{name}-concat", strategy, unimodal, str(folder)))
        return variants
    if _is_model_folder(folder):
        strategy = "unknown"
        for candidate in (folder.parent / "run_args.json", folder.parent.parent / "run_args.json"):
            if candidate.is_file():  # OUTPUT/export or OUTPUT/export/<modality> of a training run
                strategy = read_strategy(candidate)
                break
        return [EncoderVariant(folder.name, strategy, [folder], str(folder))]
    raise FileNotFoundError(f"checkpoint {folder}: neither a training output (run_args.json) nor a model folder (config.json)")


def reconstruction_eval_path(encoder_folder: Path) -> Path | None:
    """train.py's reconstruction_eval.json for an exported encoder: OUTPUT/export -> OUTPUT/, and
    OUTPUT/export/<modality> -> OUTPUT/unimodal/<modality>/ (None: not a training run's export, or no file)."""
    folder = Path(encoder_folder)
    candidates = []
    if folder.name == "export" and (folder.parent / "run_args.json").is_file():
        candidates.append(folder.parent / RECONSTRUCTION_EVAL_NAME)
    if folder.parent.name == "export" and (folder.parent.parent / "run_args.json").is_file():
        candidates.append(folder.parent.parent / "unimodal" / folder.name / RECONSTRUCTION_EVAL_NAME)
    return next((path for path in candidates if path.is_file()), None)


def read_reconstruction_eval(variant: EncoderVariant) -> dict | None:
    """The held-out relative reconstruction error of the variant's encoder(s), as train.py measured it.

    Returns `{"relative_reconstruction_error": {modality: float | None}, "relative_reconstruction_error_mean":
    float | None, "step", "reconstruction_target", "sources"}`, or None when some encoder has no
    reconstruction_eval.json. The mean is over the modalities measured (not null)."""
    per_modality, steps, targets, sources = {}, [], [], []
    for folder in variant.encoder_folders:
        path = reconstruction_eval_path(folder)
        if path is None:
            return None
        try:
            payload = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            logger.warning("%s: unreadable reconstruction evaluation (%s); reported as missing", path, error)
            return None
        values = payload.get("relative_reconstruction_error") or {}
        modalities = payload.get("modalities") or list(values)
        for modality in modalities:  # a unimodal run reports its own modality only
            value = values.get(modality)
            per_modality[modality] = float(value) if value is not None and np.isfinite(value) else None
        steps.append(payload.get("step"))
        targets.append(payload.get("reconstruction_target"))
        sources.append(str(path))
    present = [value for value in per_modality.values() if value is not None]
    return {
        "relative_reconstruction_error": per_modality,
        "relative_reconstruction_error_mean": float(np.mean(present)) if present else None,
        "step": steps[0] if len(set(steps)) == 1 else steps,
        "reconstruction_target": targets[0] if len(set(targets)) == 1 else targets,
        "sources": sources,
    }


def load_encoder(folder: Path, device: str = "cpu"):
    """`PhysioMAEModel` from any saved PhysioMAE folder (encoder, pretraining, contrastive, classifier)."""
    from modeling_physiomae.modeling_physiomae import PhysioMAEModel

    from transformers.utils import logging as transformers_logging

    previous = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()  # a pretraining folder's decoder weights are expected extras
    try:
        model, loading_info = PhysioMAEModel.from_pretrained(str(folder), output_loading_info=True)
    finally:
        transformers_logging.set_verbosity(previous)
    if loading_info["missing_keys"]:  # scoring a randomly initialised encoder would be a silent wrong result
        missing = sorted(loading_info["missing_keys"])
        raise ValueError(f"{folder}: the saved weights lack {len(missing)} encoder tensor(s) (e.g. {missing[:3]}); "
                         f"not a PhysioMAE encoder checkpoint")
    return model.to(device).eval()


# ----------------------------------------------------------------------------------------------- data
@dataclass
class ProbeData:
    """The probe-train and probe-test splits plus their label tables and what mode they come from."""

    train_split: object
    test_split: object
    train_table: probing.SplitTable
    test_table: probing.SplitTable
    description: str
    is_real_segments: bool = False
    notes: list[str] = field(default_factory=list)
    report: dict = field(default_factory=dict)
    layout: DatasetLayout = field(default_factory=DatasetLayout)  # the splits' channels and modalities


def load_probe_data(dataset_dir: str | Path) -> ProbeData:
    """`probe_train` / `probe_test` of a dataset saved by the builder (`physiomae.saved_dataset`), in the layout it
    records (the same datasets train.py reads)."""
    dataset_dir = locate_saved_dataset(dataset_dir)
    try:
        splits = load_splits(dataset_dir, ["probe_train", "probe_test"])
    except KeyError as error:
        raise ValueError(f"dataset {dataset_dir}: {error.args[0]}") from None
    train, test = splits["probe_train"], splits["probe_test"]
    layout = DatasetLayout.of(train)
    if DatasetLayout.of(test).modalities != layout.modalities:
        raise ValueError(f"dataset {dataset_dir}: probe_train and probe_test record different channel layouts")
    description = f"dataset {dataset_dir} (probe_train / probe_test)"
    source = (build_report(dataset_dir) or {}).get("data_dir")
    if source:
        description = f"the probe_train / probe_test splits built from {source} ({dataset_dir})"
    # A dataset built from the real 60-s excerpts (records seg-NNNN) has no subject identity.
    real_segments = any(str(record).startswith("seg-") for record in list(train[:50]["record"]) + list(test[:50]["record"]))
    return ProbeData(
        train,
        test,
        probing.read_split_table(train),
        probing.read_split_table(test),
        description=description,
        is_real_segments=real_segments,
        notes=[SUBJECT_IDENTITY_NOTE] if real_segments else [],
        layout=layout,
    )


def _real_segment_names(segments_dir: Path, limit: int | None) -> list[str]:
    """Segment names from RECORDS (or the sub-folders); with `limit`, that many evenly spaced over the list."""
    records_file = segments_dir / "RECORDS"
    if records_file.is_file():
        names = [line.strip().rstrip("/") for line in records_file.read_text().splitlines() if line.strip()]
    else:
        names = sorted(path.name for path in segments_dir.iterdir() if path.is_dir())
    if not names:
        raise FileNotFoundError(f"real segments: no records found in {segments_dir}")
    if limit is not None and limit < len(names):
        # evenly spaced over the list (RECORDS is grouped by stage: its first N would hold a single stage)
        names = [names[index] for index in np.unique(np.linspace(0, len(names) - 1, limit).round().astype(int))]
    return names


def build_real_segments(segments_dir: str | Path, limit: int | None = None):
    """`(table, report)`: the real 60-s challenge excerpts of `segments_dir` built by the project's dataset builder
    (`dataset_scripts.physionet2018.PhysioNet2018`: the same reading, labels and preprocessing as every other
    dataset) in a temporary folder that links them, every split concatenated, held in memory. `report` counts the
    excerpts asked for, the skipped ones with the builder's reason, and the windows. `limit` keeps that many
    excerpts, evenly spaced over the record list."""
    import datasets

    from dataset_scripts.physionet2018 import PhysioNet2018

    segments_dir = Path(segments_dir)
    names = _real_segment_names(segments_dir, limit)
    with tempfile.TemporaryDirectory(prefix="physiomae-real-segments-") as workdir:
        subset_dir = Path(workdir) / "segments"
        subset_dir.mkdir()
        for name in names:
            (subset_dir / name).symlink_to((segments_dir / name).resolve(), target_is_directory=True)
        (subset_dir / "RECORDS").write_text("".join(f"{name}/\n" for name in names))
        builder = PhysioNet2018(data_dir=str(subset_dir), cache_dir=str(Path(workdir) / "cache"))
        builder.download_and_prepare()
        splits = builder.as_dataset(in_memory=True)  # in memory: the cache goes with the temporary folder
        parts = [split for split in splits.values() if len(split)]
        if not parts:
            raise ValueError(f"real segments: no usable windows in {segments_dir}")
        table = datasets.concatenate_datasets(parts)
        report = builder.build_report
    skipped = {name: entry.get("reason") for name, entry in report["records"].items() if entry["status"] != "built"}
    return table, {
        "folder": str(segments_dir),
        "segments_requested": len(names),
        "segments_skipped": skipped,
        "windows": len(table),
        "windows_with_undefined_stage": int(np.sum(np.asarray(table["sleep_stage"]) < 0)),
    }


def load_real_segments(segments_dir: str | Path, limit: int | None = None, test_fraction: float = 0.5,
                       train_dir: str | Path | None = None) -> ProbeData:
    """The real 60-s challenge excerpts as probe-train / probe-test (sleep staging only), built by
    `build_real_segments`.

    Without `train_dir`, the excerpts of `segments_dir` are split by sha1 of the excerpt name, `test_fraction` of
    them in probe-test. With `train_dir` (other excerpts, none of `segments_dir`'s), probe-train is every excerpt
    of `train_dir` and probe-test every excerpt of `segments_dir` (`limit` applies to both); an excerpt name in
    both folders is an error.
    """
    segments_dir = Path(segments_dir)
    table, report = build_real_segments(segments_dir, limit)
    if train_dir is None:
        records = table["record"]
        is_test = np.asarray([probing.record_split_is_test(record, test_fraction) for record in records])
        train, test = table.select(np.flatnonzero(~is_test)), table.select(np.flatnonzero(is_test))
        description = (f"{len(set(records))} real PhysioNet/CinC 2018 60-s segments from {segments_dir.name} "
                       f"(split by sha1 of the segment name, {test_fraction:.0%} of segments to probe-test)")
        report = {**report, "test_fraction": test_fraction}
    else:
        train_dir = Path(train_dir)
        train, train_report = build_real_segments(train_dir, limit)
        test = table
        shared = sorted(set(train["record"]) & set(test["record"]))
        if shared:
            raise ValueError(f"real segments: {len(shared)} excerpt(s) are in both {train_dir} and {segments_dir} "
                             f"(e.g. {shared[:3]}); the probe-test excerpts must be unseen")
        if DatasetLayout.of(train).modalities != DatasetLayout.of(test).modalities:
            raise ValueError(f"real segments: {train_dir} and {segments_dir} hold different channel layouts")
        description = (f"real PhysioNet/CinC 2018 60-s segments: probe-train the {len(set(train['record']))} of "
                       f"{train_dir.name}, probe-test the {len(set(test['record']))} of {segments_dir.name}")
        report = {"probe_train": train_report, "probe_test": report}
    return ProbeData(
        train,
        test,
        probing.read_split_table(train),
        probing.read_split_table(test),
        description=description,
        is_real_segments=True,
        notes=[SUBJECT_IDENTITY_NOTE],
        layout=DatasetLayout.of(test),
        report=report,
    )


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
    encoders: Sequence, data: ProbeData, removable: Sequence[str], batch_size: int, robustness: bool
) -> VariantFeatures:
    """Pooled embeddings (concatenated over `encoders`) with test-time modality removal."""
    train_blocks, test_blocks, filled = [], [], {}
    encoded_test = []
    for encoder in encoders:
        label = "+".join(encoder.config.modality_names)
        train = probing.encode_windows(encoder, data.train_split, batch_size, layout=data.layout)
        test = probing.encode_windows(encoder, data.test_split, batch_size, layout=data.layout)
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


# ----------------------------------------------------------------------------------------------- probing
@dataclass
class ProbeSettings:
    """How probes are fitted and scored."""

    c_grid: Sequence[float] = probing.DEFAULT_C_GRID
    cv_folds: int = 5
    max_iter: int = 2000
    bootstrap_resamples: int = 200
    seed: int = 0


def active_tasks(data: ProbeData, task_names: Sequence[str]) -> tuple[list[probing.ProbeTask], dict[str, str]]:
    """Tasks with at least two classes in probe-train and some labelled probe-test windows; others skipped."""
    active, skipped = [], {}
    for name in task_names:
        if name not in probing.TASKS:
            raise ValueError(f"unknown task {name!r}; known: {list(probing.TASKS)}")
        task = probing.TASKS[name]
        train_labels = data.train_table.labels[name]
        test_labels = data.test_table.labels[name]
        train_classes = np.unique(train_labels[train_labels >= 0])
        test_classes = np.unique(test_labels[test_labels >= 0])
        if len(train_classes) < 2:
            skipped[name] = f"probe_train has {len(train_classes)} labelled class(es) ({(train_labels >= 0).sum()} labelled windows)"
        elif len(test_classes) < 2:
            skipped[name] = f"probe_test has {len(test_classes)} labelled class(es) ({(test_labels >= 0).sum()} labelled windows)"
        else:
            active.append(task)
    return active, skipped


def probe_variant(
    features: VariantFeatures, data: ProbeData, tasks: Sequence[probing.ProbeTask], settings: ProbeSettings
) -> tuple[dict[str, dict], dict[str, probing.FittedProbe]]:
    """Fit and score one probe per task; robustness scores reuse the probe fitted on full data."""
    results, probes = {}, {}
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
        metrics, intervals, undefined = probing.score_probe(
            task, probe, features.test[test_rows], test_labels, test_records, settings.bootstrap_resamples, settings.seed
        )
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
    return results, probes


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


def aggregate_score(task_results: dict[str, dict]) -> float | None:
    """Mean macro AUROC over the scored tasks (None when none was scored)."""
    values = [result["metrics"]["macro_auroc"] for result in task_results.values()]
    values = [value for value in values if value is not None and np.isfinite(value)]
    return float(np.mean(values)) if values else None


# ----------------------------------------------------------------------------------------------- tables
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


def comparison_markdown(rows: list[dict], tasks: Sequence[probing.ProbeTask], skipped: dict[str, str], notes: Sequence[str]) -> str:
    """The paper's Table 2: one row per variant, ranked by the aggregate, value [95 % CI] per metric."""
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
    return "\n".join(text) + "\n"


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


# ----------------------------------------------------------------------------------------------- analyses
def analysis_batch(data: ProbeData, encoder, num_windows: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Up to `num_windows` probe-test windows with at least two of the encoder's modalities present."""
    mapping = ChannelMapping.for_config(encoder.config, data.layout)
    chosen_values, chosen_masks, count = [], [], 0
    for input_values, channel_mask in probing.iterate_signal_batches(data.test_split, 64):
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


# ----------------------------------------------------------------------------------------------- classifiers
def build_task_classifier(encoder, probe: probing.FittedProbe, task: probing.ProbeTask):
    """`PhysioMAEForSequenceClassification` = the encoder's weights + the probe folded into `classifier`."""
    from modeling_physiomae.modeling_physiomae import PhysioMAEForSequenceClassification

    config = encoder.config.__class__.from_dict(encoder.config.to_dict())
    config.num_labels = task.num_classes
    config.id2label = dict(enumerate(task.label_names))
    config.label2id = {label: index for index, label in enumerate(task.label_names)}
    config.problem_type = "single_label_classification"
    config.architectures = ["PhysioMAEForSequenceClassification"]
    classifier = PhysioMAEForSequenceClassification(config)
    classifier.physiomae.load_state_dict(encoder.state_dict(), strict=True)
    weight, bias = probing.fold_probe_into_linear(probe, task.num_classes)
    with torch.no_grad():
        classifier.classifier.weight.copy_(torch.as_tensor(weight, dtype=classifier.classifier.weight.dtype))
        classifier.classifier.bias.copy_(torch.as_tensor(bias, dtype=classifier.classifier.bias.dtype))
    return classifier.eval()


@torch.no_grad()
def classifier_logits(classifier, input_values: np.ndarray, channel_mask: np.ndarray,
                      layout: DatasetLayout | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Logits of a task classifier on dataset windows and which windows it could see (any modality present)."""
    mapping = ChannelMapping.for_config(classifier.config, layout)
    model_values, modality_mask = mapping.model_inputs(input_values, channel_mask)
    present = modality_mask.any(axis=1)
    logits = np.full((len(model_values), classifier.config.num_labels), np.nan)
    if present.any():
        output = classifier(input_values=torch.from_numpy(model_values[present]), modality_mask=torch.from_numpy(modality_mask[present]))
        logits[present] = output.logits.double().numpy()
    return logits, present


def load_feature_extractor(folder: Path):
    """The encoder folder's saved feature extractor, or None (then `save_for_hub` builds one for the config)."""
    from modeling_physiomae.feature_extraction_physiomae import PhysioMAEFeatureExtractor

    if (folder / "preprocessor_config.json").is_file():
        return PhysioMAEFeatureExtractor.from_pretrained(str(folder))
    return None


def card_inputs(variant: EncoderVariant, task: probing.ProbeTask | None, data: ProbeData, repo_id: str) -> ModelCardInputs:
    """Text of a classifier's (or encoder's) model card."""
    what = f"the `{task.name}` probe ({task.description})" if task else "no task head"
    return ModelCardInputs(
        model_name=repo_id.split("/")[-1],
        repo_id=repo_id,
        summary=(
            f"Variant `{variant.name}` (training strategy `{variant.strategy}`), a PhysioMAE encoder with "
            f"{what} folded into its linear `classifier` layer: the logits equal the fitted probe's decision "
            "function (StandardScaler + LogisticRegression folded into one linear map)."
        ),
        intended_use=(
            f"Research on representation learning for polysomnography: {task.description if task else 'embeddings'}, "
            "from the PhysioNet/CinC 2018 channel set (absent modalities are allowed and marked "
            "in `modality_mask`)."
        ),
        training_data=(
            f"Encoder: pretrained as `{variant.strategy}` (see the encoder's own card). Probe: fitted on the "
            f"probe-train split and scored on probe-test of {data.description}."
            + (" " + " ".join(data.notes) if data.notes else "")
        ),
        data_limitations=(
            "Results measured on the evaluation data named above; if that is the embedded synthetic cohort they "
            "say nothing about real recordings. The labelled records come from one sleep laboratory (Massachusetts "
            "General Hospital); performance on other populations, montages or devices is unknown."
        ),
        age_definition=(
            f"binary, `{probing.TASKS['age'].label_names[1]}` when age >= {probing.AGE_THRESHOLD_YEARS:g} years "
            "(records of unknown age excluded)"
        ),
        auto_class="AutoModelForSequenceClassification" if task else "AutoModel",
    )


def export_task_classifiers(
    variant: EncoderVariant,
    encoder,
    probes: dict[str, probing.FittedProbe],
    task_results: dict[str, dict],
    baseline_results: dict[str, dict],
    tasks: Sequence[probing.ProbeTask],
    data: ProbeData,
    output_dir: Path,
    repo_prefix: str,
    num_check_windows: int = 64,
) -> dict[str, dict]:
    """One Hub folder per task, `OUTPUT/<variant>-<task suffix>`, with a rendered model card.

    The folded head is checked before saving: its logits on the first `num_check_windows` probe-test windows
    must equal the probe's decision function on the same windows' embeddings (max abs difference recorded).
    """
    from ..hub import save_for_hub

    exported = {}
    check_input_values, check_channel_mask = next(probing.iterate_signal_batches(data.test_split, num_check_windows))
    check_embeddings = probing.encode_windows(encoder, data.test_split.select(range(len(check_input_values))),
                                              layout=data.layout).embeddings
    for task in tasks:
        probe = probes[task.name]
        classifier = build_task_classifier(encoder, probe, task)
        logits, seen = classifier_logits(classifier, check_input_values, check_channel_mask, data.layout)
        expected = probing.folded_decision_function(probe, task.num_classes, check_embeddings[seen])
        difference = float(np.abs(logits[seen] - expected).max()) if seen.any() else float("nan")
        tolerance = 1e-3 * max(1.0, float(np.abs(expected).max()) if seen.any() else 1.0)
        if not difference <= tolerance:
            raise RuntimeError(f"{variant.name}/{task.name}: folded head differs from the probe by {difference:.2e}")
        folder_name = f"{safe_name(variant.name)}-{task.hub_suffix}"
        repo_id = f"{repo_prefix}/{folder_name}" if repo_prefix else folder_name
        result = task_results[task.name]
        card = render_model_card(
            card_inputs(variant, task, data, repo_id),
            [
                TaskCardResult(
                    task_name=task.name,
                    task_title=task.description,
                    dataset_name=data.description,
                    metrics=result["metrics"],
                    intervals=result["intervals"],
                    baseline_metrics=baseline_results.get(task.name, {}).get("metrics", {}),
                )
            ],
        )
        feature_extractor = load_feature_extractor(variant.encoder_folders[0])
        save_for_hub(classifier, str(output_dir / folder_name), feature_extractor=feature_extractor, readme_text=card)
        exported[task.name] = {"folder": folder_name, "max_abs_logit_difference_vs_probe": difference}
    return exported


def write_label_efficiency(features: dict, data: ProbeData, tasks: Sequence[probing.ProbeTask],
                           settings: "EvaluationSettings", output_dir: Path) -> dict:
    """Probes refitted on shares of the probe-train records (`label_efficiency`) for every task: writes
    OUTPUT/label_efficiency.json, .md and label_efficiency_<task>.png; returns {task: result}."""
    results, sections = {}, []
    for task in tasks:
        logger.info("label efficiency of %s: shares %s, seeds %s", task.name, list(settings.label_fractions),
                    list(settings.label_seeds))
        result = probe_label_efficiency(features, data, task, settings.probe, settings.label_fractions,
                                        settings.label_seeds)
        results[task.name] = result
        title = (f"Linear probe of {task.name} fitted on a share of the probe-train records, balanced accuracy on all "
                 f"{data.test_table.num_windows} probe-test windows (mean ± std over seeds {list(settings.label_seeds)})")
        sections.append(label_efficiency_markdown(result, title, baseline=BASELINE_NAME))
        plot_label_efficiency({"linear probe": result}, output_dir / f"label_efficiency_{task.name}.png",
                              f"{task.name}: label efficiency")
    atomic_write_json(output_dir / "label_efficiency.json", results)
    atomic_write_text(output_dir / "label_efficiency.md", "\n".join(sections))
    return results


# ----------------------------------------------------------------------------------------------- run
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

    present_in_test = data.test_table.channel_mask.any(axis=0)
    removable = [
        modality
        for modality, channels in data.layout.modalities.items()
        if any(present_in_test[data.layout.channel_names.index(channel)] for channel in channels)
    ]
    absent_modalities = [modality for modality in data.layout.modality_names if modality not in removable]

    rows, exports, analyses = [], {}, {}
    logger.info("baseline %s", BASELINE_NAME)
    baseline_features = band_power_variant_features(data, removable, settings.robustness)
    baseline_results, baseline_probes = probe_variant(baseline_features, data, tasks, settings.probe)
    write_predictions(output_dir / "predictions", BASELINE_NAME, baseline_features, baseline_probes, data, tasks)
    rows.append({"name": BASELINE_NAME, "strategy": "hand-crafted", "tasks": baseline_results,
                 "aggregate": aggregate_score(baseline_results), "filled": {}, "reconstruction": None})
    kept_features = {BASELINE_NAME: (baseline_features.train, baseline_features.test)}  # for label efficiency

    variants = [variant for checkpoint in settings.checkpoints for variant in discover_variants(checkpoint)]
    names = [variant.name for variant in variants]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"two checkpoints give the same variant name(s) {duplicates}; rename one (run_name)")
    encoder_cache: dict[str, object] = {}
    for variant in variants:
        logger.info("variant %s (%s)", variant.name, variant.strategy)
        encoders = []
        for folder in variant.encoder_folders:
            key = str(folder)
            if key not in encoder_cache:
                encoder_cache[key] = load_encoder(folder, settings.device)
            encoders.append(encoder_cache[key])
        features = encoder_variant_features(encoders, data, removable, settings.batch_size, settings.robustness)
        task_results, probes = probe_variant(features, data, tasks, settings.probe)
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
        if variant.is_concatenation:
            continue
        encoder = encoders[0]
        if settings.analyses:
            analyses[variant.name] = run_analyses(
                encoder, data, output_dir / "analysis" / safe_name(variant.name), variant.name, settings.analysis_windows
            )
        if settings.export_classifiers:
            exports[variant.name] = export_task_classifiers(
                variant, encoder, probes, task_results, baseline_results, tasks, data, output_dir, settings.repo_prefix
            )
    for variant in variants:
        if variant.is_concatenation and settings.export_classifiers:
            exports[variant.name] = {"skipped": "concatenated unimodal encoders are not one PhysioMAE model"}

    rows.sort(key=lambda row: -np.inf if row["aggregate"] is None else row["aggregate"], reverse=True)
    efficiency = {}
    if settings.label_fractions:
        efficiency = write_label_efficiency(kept_features, data, tasks, settings, output_dir)
    results = {
        "data": {"description": data.description, "real_segments": data.is_real_segments, "report": data.report,
                 "probe_train_windows": data.train_table.num_windows, "probe_test_windows": data.test_table.num_windows,
                 "probe_train_records": int(len(np.unique(data.train_table.records))),
                 "probe_test_records": int(len(np.unique(data.test_table.records))),
                 "modalities_absent_from_probe_test": absent_modalities},
        "notes": list(data.notes),
        "tasks_scored": [task.name for task in tasks],
        "tasks_skipped": skipped,
        "aggregate_definition": "mean macro AUROC over the scored tasks",
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
        "runtime_seconds": round(time.time() - started, 1),
    }
    atomic_write_json(output_dir / "results.json", results)
    atomic_write_json(output_dir / "comparison.json", [
        {"rank": rank, "name": row["name"], "strategy": row["strategy"], "aggregate": row["aggregate"],
         **{f"{task}.{metric}": row["tasks"][task]["metrics"].get(metric) for task in row["tasks"] for metric in row["tasks"][task]["metrics"]},
         **{f"{task}.{metric}.ci95": row["tasks"][task]["intervals"].get(metric) for task in row["tasks"] for metric in row["tasks"][task]["intervals"]},
         **reconstruction_columns(row, data.layout.modality_names)}
        for rank, row in enumerate(rows, start=1)
    ])
    atomic_write_text(output_dir / "comparison.md", comparison_markdown(rows, tasks, skipped, data.notes))
    if settings.robustness:
        atomic_write_text(output_dir / "robustness.md", robustness_markdown(rows, tasks))
    logger.info("evaluation done in %.1f s -> %s", results["runtime_seconds"], output_dir)
    return results
