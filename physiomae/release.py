"""The release step of `run_experiment.py configs/release.yaml`: the shipped encoder and sleep stager.

After pretraining, evaluation and fine-tuning, `write_release` takes

- the pretrained encoder (the `release_strategy` run's `export/`, a Hub folder as train.py writes it), and
- the sleep stager (eval.py's exported `<strategy>-sleep-staging` classifier: the encoder with the linear probe
  fitted on the probe-train excerpts folded into its head; fixed in advance, not chosen on test scores),

scores the stager end to end, as a user runs it (`pipeline("sleep-staging")` on each probe-test excerpt's WFDB
record, every 30-s epoch against its scored stage), records its rows on two reference excerpts, writes both model
cards with the measured numbers, and replaces `release_dir/<name>` only once each new folder is complete. A report
(`release.md`, `release.json`, `label_efficiency.png`) goes to `report_dir`.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from physiomae.evaluation import probing
from physiomae.evaluation.data import build_real_segments
from physiomae.evaluation.features import BASELINE_NAME
from physiomae.evaluation.label_efficiency import label_efficiency_markdown, plot_label_efficiency
from physiomae.io import atomic_write_json, atomic_write_text
from physiomae.model_card import ModelCardInputs, TaskCardResult, render_model_card
from physiomae.saved_dataset import build_report
from physiomae.training.export import plot_loss_curves
from physiomae.pretrained import ENCODER_NAME, SLEEP_STAGER_NAME

logger = logging.getLogger("physiomae.release")

TABLE_METRICS = ("balanced_accuracy", "macro_f1", "cohen_kappa")
REFERENCE_EXCERPTS = 2
ATTRIBUTION_NOTE = "Data: PhysioNet/Computing in Cardiology Challenge 2018, ODC-By 1.0 (see Attribution)."


# ----------------------------------------------------------------------------------------------- stager scoring
def stage_records(stager_dir: str | Path, segments_dir: Path, names: Sequence[str]) -> dict[str, list[dict]]:
    """The sleep-staging pipeline's rows for each WFDB record `segments_dir/NAME/NAME`."""
    from transformers import pipeline

    staging = pipeline("sleep-staging", model=str(stager_dir), trust_remote_code=True, device="cpu")
    return {name: staging(str(segments_dir / name / name), progress_bar=False) for name in names}


def score_stager(stager_dir: str | Path, segments_dir: str | Path, bootstrap_resamples: int = 1000,
                 seed: int = 0) -> dict[str, Any]:
    """Stage every excerpt of `segments_dir` through the pipeline and score each 30-s epoch against the stage
    the builder reads from the excerpt's label files (matched by window index = onset / 30 s). Epochs the pipeline
    could not stage count as errors (scored as wrong), epochs without a scored stage are left out and counted.
    95 % intervals: percentile bootstrap over excerpts."""
    segments_dir = Path(segments_dir)
    table, report = build_real_segments(segments_dir)
    names = sorted(set(table["record"]))
    rows = stage_records(stager_dir, segments_dir, names)
    stage_index = {name: index for index, name in enumerate(probing.SLEEP_STAGE_NAMES)}
    labels, probabilities, records, unstaged, unscored = [], [], [], 0, 0
    for record, window, stage in zip(table["record"], table["window"], table["sleep_stage"]):
        if stage < 0:
            unscored += 1
            continue
        epochs = rows[record]
        if window >= len(epochs):
            raise ValueError(f"{segments_dir / record}: the pipeline gave {len(epochs)} epochs, the dataset a window {window}")
        row = epochs[window]
        if row["probabilities"] is None:
            unstaged += 1
            vector = np.full(len(stage_index), 1.0 / len(stage_index))  # no prediction: a uniform guess
        else:
            vector = np.array([row["probabilities"][name] for name in probing.SLEEP_STAGE_NAMES])
        labels.append(int(stage))
        probabilities.append(vector)
        records.append(record)
    labels, probabilities, records = np.asarray(labels), np.asarray(probabilities), np.asarray(records)
    task = probing.TASKS["sleep_staging"]
    metrics = probing.task_metrics(task, labels, probabilities)
    intervals, _ = probing.bootstrap_intervals(
        lambda index: probing.task_metrics(task, labels[index], probabilities[index]), records,
        bootstrap_resamples, seed)
    return {"metrics": metrics, "intervals": intervals, "epochs": int(len(labels)), "excerpts": len(names),
            "epochs_not_staged": unstaged, "epochs_without_scored_stage": unscored,
            "excerpts_skipped_by_builder": report["segments_skipped"], "rows": rows}


def reference_rows(rows: dict[str, list[dict]], count: int = REFERENCE_EXCERPTS) -> dict[str, list[dict]]:
    """The rows of the first `count` excerpts by name, probabilities rounded to 4 decimals (what the card lists)."""
    chosen = sorted(rows)[:count]
    return {name: [{"onset": row["onset"], "stage": row["stage"],
                    "probabilities": {stage: round(value, 4) for stage, value in (row["probabilities"] or {}).items()}}
                   for row in rows[name]] for name in chosen}


def reference_rows_markdown(reference: dict[str, list[dict]]) -> str:
    stages = probing.SLEEP_STAGE_NAMES
    lines = ["| excerpt | onset (s) | stage | " + " | ".join(f"p({stage})" for stage in stages) + " |",
             "| --- | ---: | --- |" + " ---: |" * len(stages)]
    for name, epochs in reference.items():
        for row in epochs:
            cells = " | ".join(f"{row['probabilities'].get(stage, float('nan')):.4f}" for stage in stages)
            lines.append(f"| {name} | {row['onset']:g} | {row['stage']} | {cells} |")
    return "\n".join(lines)


def parse_reference_rows(card_text: str) -> dict[str, list[dict]]:
    """The reference rows as `reference_rows_markdown` wrote them into a card (for the release test)."""
    stages = probing.SLEEP_STAGE_NAMES
    header = "| excerpt | onset (s) | stage | "
    lines = card_text.splitlines()
    start = next(index for index, line in enumerate(lines) if line.startswith(header))
    parsed: dict[str, list[dict]] = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        parsed.setdefault(cells[0], []).append({"onset": float(cells[1]), "stage": cells[2],
                                                "probabilities": dict(zip(stages, map(float, cells[3:])))})
    return parsed


def paired_differences(predictions_dir: Path, variant: str, references: Sequence[str], resamples: int = 1000,
                       seed: int = 0) -> dict[str, dict]:
    """Balanced accuracy of `variant` minus each reference's, on the same probe-test windows (eval.py's
    predictions/<name>-sleep_staging.npz), with a 95 % percentile bootstrap over test excerpts that draws the same
    excerpts for both sides (a paired interval, narrower than comparing the two separate intervals)."""
    task = probing.TASKS["sleep_staging"]

    def load(name: str):
        data = np.load(predictions_dir / f"{name}-sleep_staging.npz")
        return data["window_index"], data["record"].astype(str), data["label"], data["probability"]

    def balanced_accuracy(probabilities: np.ndarray) -> tuple[float, np.ndarray]:
        samples = probing.task_bootstrap_samples(task, labels, probabilities, records, resamples, seed)
        return probing.task_metrics(task, labels, probabilities)["balanced_accuracy"], samples["balanced_accuracy"]

    index, records, labels, probabilities = load(variant)
    value, samples = balanced_accuracy(probabilities)
    differences = {}
    for reference in references:
        other_index, _, _, other_probabilities = load(reference)
        if not np.array_equal(index, other_index):
            raise ValueError(f"{predictions_dir}: {variant} and {reference} were scored on different windows")
        reference_value, reference_samples = balanced_accuracy(other_probabilities)
        entry = probing.paired_difference(value, reference_value, samples, reference_samples)
        differences[reference] = {"balanced_accuracy": entry["difference"], "ci95": entry["ci95"]}
    return differences


def differences_markdown(differences: dict[str, dict], names: dict[str, str], variant: str) -> str:
    lines = ["| difference in balanced accuracy (paired bootstrap over test excerpts) | value [95 % CI] |",
             "| --- | --- |"]
    for reference, entry in differences.items():
        low, high = entry["ci95"]
        lines.append(f"| {names[variant]} − {names[reference]} | {entry['balanced_accuracy']:+.3f} [{low:+.3f}, {high:+.3f}] |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- tables
def _cell(metrics: dict, intervals: dict, metric: str) -> str:
    value = metrics.get(metric)
    interval = intervals.get(metric) or [None, None]
    if value is None:
        return "n/a"
    if interval[0] is None:
        return f"{value:.3f}"
    return f"{value:.3f} [{interval[0]:.3f}, {interval[1]:.3f}]"


def probe_table(ranking: list[dict], names: dict[str, str]) -> str:
    """The linear-probe comparison (sleep staging) of the named eval variants, in the order of `names`."""
    by_name = {row["name"]: row["tasks"]["sleep_staging"] for row in ranking}
    lines = ["| encoder | " + " | ".join(metric.replace("_", " ") for metric in TABLE_METRICS) + " |",
             "| --- |" + " --- |" * len(TABLE_METRICS)]
    for name, title in names.items():
        result = by_name[name]
        lines.append(f"| {title} | " + " | ".join(_cell(result["metrics"], result["intervals"], metric)
                                                   for metric in TABLE_METRICS) + " |")
    return "\n".join(lines)


def finetune_table(entry: dict) -> str:
    lines = ["| initialisation | balanced accuracy | macro F1 | kappa | per seed (balanced accuracy) |",
             "| --- | --- | --- | --- | --- |"]
    for init, title in (("pretrained", "pretrained encoder"), ("random_init", "random initialisation")):
        summary = entry[init]["summary"]
        per_seed = ", ".join(f"{run['balanced_accuracy']:.3f}" for run in entry[init]["runs"])
        lines.append(f"| {title} | {summary['balanced_accuracy']['mean']:.3f} ± {summary['balanced_accuracy']['std']:.3f} "
                     f"| {summary['macro_f1']['mean']:.3f} | {summary['cohen_kappa']['mean']:.3f} | {per_seed} |")
    return "\n".join(lines)


def renamed(result: dict, names: dict[str, str]) -> dict:
    """`result` with its variants renamed by `names` and put in its order (variants not named are left out)."""
    return {**result, "variants": {title: result["variants"][name] for name, title in names.items()
                                   if name in result["variants"]}}


# ----------------------------------------------------------------------------------------------- release
def write_release(
    run_dir: Path,
    random_init_dir: Path,
    eval_dir: Path,
    finetune_dir: Path | None,
    test_segments_dir: str | Path,
    release_dir: Path,
    report_dir: Path,
    command: str,
    strategy: str = "mae_modality_drop",
    name: str = ENCODER_NAME,
    dtype: str = "float32",
) -> dict[str, Any]:
    """Assemble, score and write the shipped folders `name` and `name-sleep-staging` (weights stored in `dtype`)
    and the release report (module docstring). The stager is scored as shipped: from its staged folder."""
    results = json.loads((eval_dir / "results.json").read_text())
    stager_source = eval_dir / f"{strategy}-sleep-staging"
    if not (stager_source / "config.json").is_file():
        raise FileNotFoundError(f"{stager_source}: eval.py exported no sleep-staging classifier for {strategy}")
    encoder_source = run_dir / "export"
    run_args = json.loads((run_dir / "run_args.json").read_text())["arguments"]
    names = {BASELINE_NAME: "log band powers (hand-crafted)", random_init_dir.name: "untrained encoder, same size",
             run_dir.name: f"pretrained encoder ({strategy}, shipped)"}
    # finetune.py's two initialisations are the same two encoders as the probe's: the same names (and colours)
    init_names = {"random_init": names[random_init_dir.name], "pretrained": names[run_dir.name]}
    efficiency = results.get("label_efficiency", {}).get("sleep_staging")
    finetune = json.loads((finetune_dir / "finetune.json").read_text())["variants"][run_dir.name] if finetune_dir else None

    # the shipped folders, staged beside their final place (swapped in at the end, once everything succeeded)
    release_dir.mkdir(parents=True, exist_ok=True)
    staged = {}
    for folder_name, source in ((name, encoder_source), (f"{name}-sleep-staging", stager_source)):
        staging = release_dir / f".{folder_name}.new"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(source, staging)
        if dtype != "float32":
            cast_weights(staging, dtype)
        staged[folder_name] = staging

    logger.info("scoring the stager through pipeline('sleep-staging') on %s", test_segments_dir)
    stager_score = score_stager(staged[f"{name}-sleep-staging"], test_segments_dir)
    reference = reference_rows(stager_score.pop("rows"))

    # the report and its tables
    windows = run_args["max_steps"] * run_args["per_device_batch_size"] * run_args["gradient_accumulation_steps"]
    data = results["data"]
    differences = paired_differences(eval_dir / "predictions", run_dir.name, [BASELINE_NAME, random_init_dir.name])
    sections = {
        "probe": probe_table(results["ranking"], names) + "\n\n" + differences_markdown(differences, names, run_dir.name),
        "stager": stager_table(stager_score),
        "label_efficiency": label_efficiency_markdown(renamed(efficiency, names), "", baseline=names[BASELINE_NAME]).strip()
        if efficiency else "",
        "finetune": finetune_table(finetune) if finetune else "",
        "finetune_efficiency": label_efficiency_markdown(renamed(finetune["label_efficiency"], init_names), "",
                                                         baseline=init_names["random_init"]).strip()
        if finetune and "label_efficiency" in finetune else "",
        "reference": reference_rows_markdown(reference),
    }
    from modeling_physiomae import PhysioMAEModel

    encoder = PhysioMAEModel.from_pretrained(encoder_source)
    build = (build_report(run_args["dataset_dir"]) or {}).get("totals")
    if not build:
        raise FileNotFoundError(f"no build_report.json at the pretraining dataset {run_args['dataset_dir']}")
    facts = {"command": command, "strategy": strategy, "name": name, "dtype": dtype, "pretraining_windows": windows,
             "encoder_parameters": sum(parameter.numel() for parameter in encoder.parameters()),
             "size": f"width {encoder.config.hidden_size}, {encoder.config.num_hidden_layers} layers",
             "pretraining_hours": build["windows_kept"] * encoder.config.window_seconds / 3600,
             "pretraining_records": build["records_built"], "pretraining_windows_kept": build["windows_kept"],
             "held_out_fraction": run_args["reconstruction_eval_fraction"],
             "pretraining_steps": run_args["max_steps"], "batch": run_args["per_device_batch_size"],
             "probe_train_windows": data["probe_train_windows"], "probe_train_records": data["probe_train_records"],
             "probe_test_windows": data["probe_test_windows"], "probe_test_records": data["probe_test_records"],
             "data": data["description"]}
    report_dir.mkdir(parents=True, exist_ok=True)
    plots = {}
    if efficiency:
        plots["linear probe"] = renamed(efficiency, names)
    if finetune and "label_efficiency" in finetune:
        plots["fine-tuning"] = renamed(finetune["label_efficiency"], init_names)
    if plots:
        plot_label_efficiency(plots, report_dir / "label_efficiency.png",
                              "Sleep staging on the 500 real test excerpts: label efficiency")
    plot_loss_curves({"": run_dir / "train_log.jsonl"}, report_dir / "pretraining_loss_curves.png")
    atomic_write_text(report_dir / "release.md", release_markdown(sections, facts))
    atomic_write_json(report_dir / "release.json", {"facts": facts, "stager_pipeline": stager_score,
                                                    "probe_differences": differences,
                                                    "reference_rows": reference, "probe_ranking": results["ranking"],
                                                    "label_efficiency": efficiency, "finetune": finetune})

    probe_result = next(row for row in results["ranking"] if row["name"] == run_dir.name)["tasks"]["sleep_staging"]
    cards = {name: encoder_card(sections, facts, probe_result),
             f"{name}-sleep-staging": stager_card(sections, facts, stager_score)}
    for folder_name, card in cards.items():
        (staged[folder_name] / "README.md").write_text(card, encoding="utf-8")
        replace_folder(staged[folder_name], release_dir / folder_name)
    logger.info("release written: %s", ", ".join(str(release_dir / folder_name) for folder_name in cards))
    return {"facts": facts, "stager_pipeline": stager_score, "sections": sections}


def cast_weights(folder: Path, dtype: str) -> None:
    """Store the floating-point weights of `folder/model.safetensors` in `dtype` (e.g. "bfloat16": half the bytes
    of float32) and say so in its config.json (`dtype`), so that `from_pretrained` loads them as such."""
    import torch
    from safetensors.torch import load_file, save_file

    target = getattr(torch, dtype, None)
    if not isinstance(target, torch.dtype) or not target.is_floating_point:
        raise ValueError(f"release dtype {dtype!r} is not a torch floating-point dtype")
    path = folder / "model.safetensors"
    tensors = {key: value.to(target) if value.is_floating_point() else value for key, value in load_file(path).items()}
    save_file(tensors, str(path), metadata={"format": "pt"})
    config = json.loads((folder / "config.json").read_text())
    config["dtype"] = dtype
    (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def replace_folder(new: Path, target: Path) -> None:
    """Move the complete folder `new` to `target`; an existing `target` is removed only after the move of the
    old one aside succeeded."""
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    new.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def stager_table(score: dict) -> str:
    metrics, intervals = score["metrics"], score["intervals"]
    return ("| | " + " | ".join(metric.replace("_", " ") for metric in TABLE_METRICS) + " |\n"
            "| --- |" + " --- |" * len(TABLE_METRICS) + "\n"
            f"| `pipeline(\"sleep-staging\")`, {score['epochs']} epochs of {score['excerpts']} excerpts | "
            + " | ".join(_cell(metrics, intervals, metric) for metric in TABLE_METRICS) + " |")


def release_markdown(sections: dict[str, str], facts: dict) -> str:
    parts = [
        "# PhysioMAE release: measured on the 500 real test excerpts",
        "",
        f"Made by `{facts['command']}`. Pretraining: `{facts['strategy']}`, {facts['pretraining_steps']:,} steps × "
        f"{facts['batch']} windows = {facts['pretraining_windows'] / 1e6:.2f} M windows of 30 s. Probe-train: "
        f"{facts['probe_train_windows']} windows of {facts['probe_train_records']} excerpts; probe-test: "
        f"{facts['probe_test_windows']} windows of {facts['probe_test_records']} excerpts ({facts['data']}).",
        "",
        "## Linear probe (frozen encoder, sleep staging; 95 % CI: bootstrap over test excerpts)",
        "", sections["probe"], "",
        "## The shipped stager, end to end (WFDB record -> pipeline -> 30-s stages)",
        "", sections["stager"], "",
    ]
    if sections["label_efficiency"]:
        parts += ["## Label efficiency: linear probe on a share of the labelled training excerpts "
                  "(balanced accuracy, mean ± std over seeds)", "", sections["label_efficiency"], ""]
    if sections["finetune"]:
        parts += ["## Fine-tuning (Trainer, all labelled training excerpts; mean ± std over seeds)", "",
                  sections["finetune"], ""]
    if sections["finetune_efficiency"]:
        parts += ["## Label efficiency: fine-tuning on a share of the labelled training excerpts", "",
                  sections["finetune_efficiency"], ""]
    parts += ["![label efficiency](label_efficiency.png)", "",
              "## Pretraining: loss and held-out reconstruction error (1 − R²)", "",
              "![pretraining](pretraining_loss_curves.png)", "", ATTRIBUTION_NOTE, ""]
    return "\n".join(parts)


# ----------------------------------------------------------------------------------------------- cards
TRAINING_DATA = (
    "Pretraining: every real 60-s excerpt of PhysioNet/CinC 2018 recordings available to the project outside its "
    "test set ({pretraining_records:,} excerpts, labels unused; {pretraining_windows_kept:,} windows of 30 s, "
    "{held_out_fraction:.0%} of the excerpts held out to measure the reconstruction error), 7 channels (O2-M1, E1-M2, "
    "Chin1-Chin2, ABD, CHEST, AIRFLOW, ECG) at 200 Hz. Probe / stager head: {probe_train_windows:,} windows of the "
    "{probe_train_records} labelled training excerpts. Test: {probe_test_windows:,} windows of {probe_test_records} "
    "other labelled excerpts that no model, probe or choice of this release has seen."
)
def limitations(facts: dict) -> str:
    return LIMITATIONS.format(**facts)


LIMITATIONS = (
    "The excerpts carry no subject identity: one subject may appear in several excerpts, so the split between "
    "training and test excerpts is by excerpt, not by subject, and the scores may be optimistic for new subjects. "
    "Test excerpts are balanced over the five stages (100 each), unlike a night; stage transitions are rare within "
    "a 60-s excerpt. Only 7 of the 13 challenge channels (one EEG derivation, no SaO2) were seen in training: "
    "other montages are read by channel name and absent modalities are allowed, but their effect is unmeasured. "
    "All recordings come from one sleep laboratory (Massachusetts General Hospital). The encoder has "
    "{encoder_parameters:,} parameters and was pretrained on {pretraining_hours:.0f} hours of signal."
)


def usage_code(auto_class: str, folder_name: str, stager: bool) -> str:
    """The card's example: the folder by its constant in `physiomae.pretrained`, or by `folder(name)`."""
    constant = {ENCODER_NAME: "ENCODER", SLEEP_STAGER_NAME: "SLEEP_STAGER"}.get(folder_name)
    imported, target = (constant, constant) if constant else ("folder", f'folder("{folder_name}")')
    if stager:
        return (f"from transformers import pipeline\nfrom physiomae.pretrained import {imported}\n\n"
                f"staging = pipeline(\"sleep-staging\", model={target}, trust_remote_code=True)\n"
                "rows = staging(\"night.edf\")   # or a WFDB record; one row per 30-s epoch: onset, stage, probabilities")
    return (f"from transformers import AutoFeatureExtractor, {auto_class}\nfrom physiomae.pretrained import {imported}\n\n"
            f"model = {auto_class}.from_pretrained({target}, trust_remote_code=True)\n"
            f"feature_extractor = AutoFeatureExtractor.from_pretrained({target}, trust_remote_code=True)\n"
            "inputs = feature_extractor(recording, sampling_rate=200, channel_names=channel_names, return_tensors=\"pt\")\n"
            "outputs = model(input_values=inputs[\"input_values\"], modality_mask=inputs[\"modality_mask\"])")


def _card_result(score: dict, title: str, dataset: str) -> TaskCardResult:
    """`score`: {"metrics": ..., "intervals": ...} of sleep staging."""
    return TaskCardResult(task_name="sleep_staging", task_title=title, dataset_name=dataset,
                          metrics={metric: score["metrics"][metric] for metric in TABLE_METRICS},
                          intervals={metric: score["intervals"].get(metric) for metric in TABLE_METRICS})


def encoder_card(sections: dict[str, str], facts: dict, probe_result: dict) -> str:
    evaluation = "\n\n".join(part for part in [
        "Linear probe of sleep staging on the frozen encoder (fitted on the 750 labelled extra excerpts, scored on "
        "the 500 test excerpts; 95 % CI: bootstrap over test excerpts):", sections["probe"],
        "Label efficiency (linear probe fitted on a share of the labelled training excerpts, balanced accuracy, "
        "mean ± std over seeds):" if sections["label_efficiency"] else "", sections["label_efficiency"],
        "Fine-tuning with `Trainer` (all labelled training excerpts):" if sections["finetune"] else "",
        sections["finetune"],
        "Fine-tuning on a share of the labelled training excerpts:" if sections["finetune_efficiency"] else "",
        sections["finetune_efficiency"],
    ] if part)
    inputs = ModelCardInputs(
        model_name=facts["name"], repo_id=facts["name"],
        summary=(f"The PhysioMAE encoder shipped with the `physiomae` package: the model ({facts['size']}) pretrained with masked "
                 f"autoencoding and input modality dropout (`{facts['strategy']}`) for {facts['pretraining_steps']:,} "
                 f"steps × {facts['batch']} windows ({facts['pretraining_windows'] / 1e6:.2f} M windows of 30 s) on "
                 f"real PhysioNet 2018 excerpts by `{facts['command']}`. The folder holds the whole pretraining model "
                 f"(`AutoModelForPreTraining` continues pretraining); `AutoModel` loads the encoder."),
        intended_use=("Research: embeddings of 30-s polysomnography windows for sleep staging and other probes, and a "
                      "starting point for fine-tuning (`finetune.py --model_name_or_path`)."),
        training_data=TRAINING_DATA.format(**facts), data_limitations=limitations(facts),
        age_definition="not evaluated (the excerpts carry no age)",
        usage=usage_code("AutoModel", facts["name"], stager=False),
        evaluation=evaluation,
    )
    return render_model_card(inputs, [_card_result(probe_result, "Sleep staging (linear probe)", "PhysioNet 2018 test excerpts")])


def stager_card(sections: dict[str, str], facts: dict, stager_score: dict) -> str:
    evaluation = "\n\n".join([
        "End to end, as a user runs it: `pipeline(\"sleep-staging\")` on the WFDB record of each of the 500 test "
        "excerpts, every 30-s epoch against its scored stage (95 % CI: bootstrap over excerpts):",
        sections["stager"],
        "The same head as a linear probe of the frozen encoder, beside the band-power baseline and the untrained "
        "encoder of the same size:", sections["probe"],
        f"Reference rows: the pipeline's output on the first {REFERENCE_EXCERPTS} test excerpts (the package's tests "
        "check that the installed stager reproduces them):", sections["reference"],
    ])
    inputs = ModelCardInputs(
        model_name=f"{facts['name']}-sleep-staging", repo_id=f"{facts['name']}-sleep-staging",
        summary=(f"The sleep stager shipped with the `physiomae` package: the pretrained encoder `{facts['name']}` with "
                 "a linear head (the linear probe, StandardScaler + LogisticRegression(class_weight='balanced'), "
                 "fitted on the 750 labelled extra excerpts and folded into the classifier's linear layer). Stages "
                 "W, N1, N2, N3, REM per 30-s epoch."
                 + (" `physiomae-stage NIGHT.edf --out night.csv` uses it by default." if facts["name"] == ENCODER_NAME
                    else "")),
        intended_use=("Research: staging polysomnography recordings (EDF/EDF+/BDF or WFDB) into 30-s epochs, "
                      "as a baseline or a first pass that a sleep expert reviews."),
        training_data=TRAINING_DATA.format(**facts), data_limitations=limitations(facts),
        age_definition="not evaluated (the excerpts carry no age)",
        auto_class="AutoModelForSequenceClassification", pipeline_tag=None,
        usage=usage_code("AutoModelForSequenceClassification", f"{facts['name']}-sleep-staging", stager=True),
        evaluation=evaluation,
    )
    return render_model_card(inputs, [_card_result(stager_score, "Sleep staging", "PhysioNet 2018 test excerpts")])
