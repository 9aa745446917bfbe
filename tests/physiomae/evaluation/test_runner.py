"""Tests of the evaluation: probes and metrics, rollout, modality tuning, folded classifiers, Hub export
of the task classifiers, the model card, and eval.py end to end (synthetic dataset and real segments)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from modeling_physiomae import PhysioMAEConfig, PhysioMAEModel
from physiomae.evaluation import probing
from physiomae.evaluation.analysis import attention_rollout, modality_tuning, rollout_analysis, summarize_rollout
from physiomae.evaluation.export import build_task_classifier
from physiomae.model_card import read_card_metadata
from helpers import isolated_environment, tiny_config as shared_tiny_config

STAGE_FREQUENCIES_HZ = (10.0, 6.0, 13.0, 1.5, 4.5)  # W alpha, N1 theta, N2 spindles, N3 delta, REM saw-tooth


# ----------------------------------------------------------------------------------------------- fixtures
EVAL_MODEL_SETTINGS = dict(
    hidden_size=16,
    intermediate_size=32,
    tokenizer_conv_channels=4,
    tokenizer_kernel_size=10,
    tokenizer_stride=10,
)
"""Even smaller than the shared tiny sizes: the evaluation tests train and probe several encoders."""


def tiny_config(**overrides) -> PhysioMAEConfig:
    return shared_tiny_config(**{**EVAL_MODEL_SETTINGS, **overrides})


def tiny_encoder(seed: int = 0, **overrides) -> PhysioMAEModel:
    torch.manual_seed(seed)
    return PhysioMAEModel(tiny_config(**overrides)).eval()


def synthetic_windows(num_records: int, windows_per_record: int, seed: int) -> dict:
    """Rows of the builder's schema whose labels are carried by the signals.

    Sleep stage -> the EEG oscillation frequency; arousal -> chin EMG amplitude; age -> ECG rate and amplitude.
    Every fourth record lacks SpO2 (absent modality); arousal is -1 in some windows, age -1 in one record.
    """
    generator = np.random.default_rng(seed)
    time_axis = np.arange(3000) / 100.0
    rows = {key: [] for key in ("input_values", "channel_mask", "sleep_stage", "arousal", "age", "sex", "record", "window")}
    for record_index in range(num_records):
        age = float(generator.choice([35.0, 72.0])) if record_index != 1 else -1.0
        heart_rate_hz = 1.6 if age >= 60 else 1.0
        has_spo2 = record_index % 4 != 3
        for window_index in range(windows_per_record):
            stage = int(generator.integers(0, 5))
            arousal = int(generator.integers(0, 2)) if window_index % 5 else -1
            signals = generator.normal(0.0, 0.5, size=(13, 3000))
            phase = generator.uniform(0, 2 * np.pi)
            signals[0:6] += np.sin(2 * np.pi * STAGE_FREQUENCIES_HZ[stage] * time_axis + phase)
            signals[7] *= 3.0 if arousal == 1 else 1.0
            signals[8:11] += np.sin(2 * np.pi * 0.25 * time_axis)[None, :]
            signals[12] += (2.0 if age >= 60 else 1.0) * np.sin(2 * np.pi * heart_rate_hz * time_axis)
            channel_mask = np.ones(13, dtype=bool)
            if not has_spo2:
                channel_mask[11] = False
                signals[11] = 0.0
            rows["input_values"].append(signals.astype(np.float16))
            rows["channel_mask"].append(channel_mask.tolist())
            rows["sleep_stage"].append(stage)
            rows["arousal"].append(arousal)
            rows["age"].append(age)
            rows["sex"].append(record_index % 2)
            rows["record"].append(f"tr{record_index:02d}-{seed:04d}")
            rows["window"].append(window_index)
    return rows


def synthetic_dataset_dict(num_train_records=12, num_test_records=6, windows_per_record=8):
    import datasets

    from helpers import builder_split  # the builder's row schema and metadata

    return datasets.DatasetDict({
        "probe_train": builder_split(synthetic_windows(num_train_records, windows_per_record, 1)),
        "probe_test": builder_split(synthetic_windows(num_test_records, windows_per_record, 2)),
    })


@pytest.fixture(scope="module")
def synthetic_dataset_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("eval-dataset") / "dataset"
    synthetic_dataset_dict().save_to_disk(str(folder))
    return folder


@pytest.fixture(scope="module")
def training_outputs(tmp_path_factory) -> dict[str, Path]:
    """Two fake training outputs in train.py's layout: an early-fusion run and a 2-modality unimodal run.

    train.py's reconstruction_eval.json is there for the early-fusion run and the unimodal EEG run, not for ECG."""
    from physiomae.hub import save_for_hub

    root = tmp_path_factory.mktemp("eval-runs")
    early = root / "mae_modality_drop"
    save_for_hub(tiny_encoder(0), str(early / "export"))
    (early / "run_args.json").write_text(json.dumps({"strategy": "mae_modality_drop"}))
    (early / "reconstruction_eval.json").write_text(json.dumps(FAKE_RECONSTRUCTION_EVAL))
    unimodal = root / "mae_unimodal"
    for seed, modality in enumerate(("eeg", "ecg")):
        config_modalities = {modality: PhysioMAEConfig().modalities[modality]}
        save_for_hub(tiny_encoder(seed, modalities=config_modalities), str(unimodal / "export" / modality))
    (unimodal / "run_args.json").write_text(json.dumps({"strategy": "mae_unimodal"}))
    (unimodal / "unimodal" / "eeg").mkdir(parents=True)
    (unimodal / "unimodal" / "eeg" / "reconstruction_eval.json").write_text(json.dumps(
        {"step": 20, "modalities": ["eeg"], "relative_reconstruction_error": {"eeg": 0.75},
         "relative_reconstruction_error_mean": 0.75, "reconstruction_target": "log_band_power"}))
    return {"early": early, "unimodal": unimodal}


FAKE_RECONSTRUCTION_EVAL = {
    "step": 40,
    "modalities": ["eeg", "eog", "emg", "resp", "spo2", "ecg"],
    "relative_reconstruction_error": {"eeg": 0.5, "eog": 0.6, "emg": 0.9, "resp": 0.8, "spo2": None, "ecg": 0.7},
    "relative_reconstruction_error_mean": 0.7,
    "reconstruction_target": "log_band_power",
}
"""What train.py writes to OUTPUT/reconstruction_eval.json (the fields eval.py reads); SpO2 absent from held-out."""


# ----------------------------------------------------------------------------------------------- probes
def class_signal_features(num_records: int, windows_per_record: int, num_classes: int, seed: int):
    generator = np.random.default_rng(seed)
    labels = generator.integers(0, num_classes, num_records * windows_per_record)
    features = generator.normal(size=(len(labels), 12))
    features[np.arange(len(labels)), labels] += 2.0  # each class shifts its own feature
    records = np.repeat([f"r{index}" for index in range(num_records)], windows_per_record)
    return features, labels, records


def test_probe_far_above_chance_on_learnable_labels_and_at_chance_when_shuffled():
    task = probing.TASKS["sleep_staging"]
    train_features, train_labels, train_records = class_signal_features(40, 25, 5, seed=0)
    test_features, test_labels, test_records = class_signal_features(40, 25, 5, seed=1)
    probe = probing.fit_probe(train_features, train_labels, train_records, c_grid=(0.01, 1.0))
    metrics, intervals, _ = probing.score_probe(task, probe, test_features, test_labels, test_records, num_bootstrap=30)
    chance = 1.0 / task.num_classes
    assert metrics["balanced_accuracy"] > chance + 0.4
    assert metrics["macro_auroc"] > 0.85
    assert metrics["cohen_kappa"] > 0.4
    low, high = intervals["balanced_accuracy"]
    assert low <= metrics["balanced_accuracy"] <= high

    shuffled = np.random.default_rng(3).permutation(train_labels)
    probe = probing.fit_probe(train_features, shuffled, train_records, c_grid=(0.01, 1.0))
    metrics, _, _ = probing.score_probe(task, probe, test_features, test_labels, test_records, num_bootstrap=0)
    # 1,000 test windows: the standard error of balanced accuracy / AUROC at chance is about 0.015-0.02.
    assert abs(metrics["balanced_accuracy"] - chance) < 0.1
    assert abs(metrics["macro_auroc"] - 0.5) < 0.1
    assert abs(metrics["cohen_kappa"]) < 0.1


def test_paired_difference_resolves_what_the_separate_intervals_cannot():
    """Two predictions on the same windows, one right on about 8 % more windows of every record: the records differ so
    much in difficulty that the two separate intervals overlap, but the paired one (same resamples) excludes 0."""
    task = probing.TASKS["sleep_staging"]
    generator = np.random.default_rng(0)
    records = np.repeat([f"r{index}" for index in range(30)], 20)
    labels = generator.integers(0, task.num_classes, len(records))
    difficulty = np.repeat(generator.uniform(0.2, 0.9, 30), 20)
    draw = generator.random(len(records))

    def probabilities(right: np.ndarray) -> np.ndarray:
        predicted = np.where(right, labels, (labels + 1) % task.num_classes)
        return np.eye(task.num_classes)[predicted] * 0.8 + 0.04

    better, worse = probabilities(draw < difficulty + 0.08), probabilities(draw < difficulty)
    scores = {name: (probing.task_metrics(task, labels, values),
                     probing.task_bootstrap_samples(task, labels, values, records, 200, seed=0))
              for name, values in (("better", better), ("worse", worse))}
    separate = {name: probing.percentile_intervals(samples)[0]["balanced_accuracy"] for name, (_, samples) in scores.items()}
    assert separate["better"][0] < separate["worse"][1], "the separate intervals should overlap in this setup"
    difference = probing.paired_difference(scores["better"][0]["balanced_accuracy"], scores["worse"][0]["balanced_accuracy"],
                                           scores["better"][1]["balanced_accuracy"], scores["worse"][1]["balanced_accuracy"])
    assert difference["difference"] == pytest.approx(scores["better"][0]["balanced_accuracy"] - scores["worse"][0]["balanced_accuracy"])
    assert 0 < difference["ci95"][0] <= difference["difference"] <= difference["ci95"][1] and difference["resolved"]
    same = probing.paired_difference(0.5, 0.5, scores["worse"][1]["macro_auroc"], scores["worse"][1]["macro_auroc"])
    assert same["ci95"] == [0.0, 0.0] and not same["resolved"]
    with pytest.raises(ValueError, match="do not pair"):
        probing.paired_difference(0.5, 0.5, np.zeros(200), np.zeros(100))


def test_fast_metrics_equal_scikit_learn():
    from sklearn.metrics import balanced_accuracy_score, cohen_kappa_score, f1_score, roc_auc_score

    generator = np.random.default_rng(4)
    labels = generator.integers(0, 4, 300)  # class 4 of 5 never occurs
    probabilities = generator.dirichlet(np.ones(5), 300)
    probabilities[np.arange(300), labels] += 0.3 * generator.random(300)
    metrics = probing.task_metrics(probing.TASKS["sleep_staging"], labels, probabilities)
    predictions = probabilities.argmax(1)
    assert metrics["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(labels, predictions))
    assert metrics["macro_f1"] == pytest.approx(f1_score(labels, predictions, labels=np.unique(labels), average="macro", zero_division=0))
    assert metrics["cohen_kappa"] == pytest.approx(cohen_kappa_score(labels, predictions))
    expected_auroc = np.mean([roc_auc_score(labels == class_index, probabilities[:, class_index]) for class_index in range(4)])
    assert metrics["macro_auroc"] == pytest.approx(expected_auroc)
    binary = (labels > 1).astype(int)
    scores = np.round(probabilities[:, 2] + probabilities[:, 3], 2)  # with ties
    assert probing.binary_auroc(binary == 1, scores) == pytest.approx(roc_auc_score(binary, scores))


def test_gross_auprc_is_the_pooled_step_area():
    from sklearn.metrics import average_precision_score

    generator = np.random.default_rng(0)
    labels = generator.integers(0, 2, 4000)
    probability = np.clip(0.35 * labels + 0.65 * generator.random(4000), 0, 1)
    rounded = np.round(probability * 1000) / 1000
    assert probing.challenge_gross_auprc(labels, probability) == pytest.approx(average_precision_score(labels, rounded), abs=1e-9)
    # perfect ranking -> 1; unscored samples (-1) are ignored; a single class -> NaN
    assert probing.challenge_gross_auprc(np.array([0, 0, 1, 1, -1]), np.array([0.1, 0.2, 0.8, 0.9, 0.95])) == pytest.approx(1.0)
    assert np.isnan(probing.challenge_gross_auprc(np.zeros(5), np.linspace(0, 1, 5)))


def test_folded_head_logits_equal_the_probe_decision_function():
    encoder = tiny_encoder(0)
    generator = torch.Generator().manual_seed(0)
    input_values = torch.randn(40, 13, 3000, generator=generator)
    modality_mask = torch.ones(40, 6, dtype=torch.bool)
    modality_mask[::3, 4] = False
    with torch.no_grad():
        embeddings = encoder(input_values=input_values, modality_mask=modality_mask).pooler_output.double().numpy()
    records = np.repeat(np.arange(10), 4)
    for task_name, labels in (("sleep_staging", np.arange(40) % 5), ("arousal", np.arange(40) % 2)):
        task = probing.TASKS[task_name]
        probe = probing.fit_probe(embeddings, labels, records, c_grid=(1.0,))
        classifier = build_task_classifier(encoder, probe, task)
        with torch.no_grad():
            logits = classifier(input_values=input_values, modality_mask=modality_mask).logits.double().numpy()
        decision = probe.decision_function(embeddings)
        if task.num_classes == 2:
            np.testing.assert_allclose(logits[:, 1] - logits[:, 0], decision, atol=1e-4)
        else:
            np.testing.assert_allclose(logits, decision, atol=1e-4)
        assert (logits.argmax(1) == probe.predict(embeddings)).all()
        assert classifier.config.id2label[0] == task.label_names[0]


# ----------------------------------------------------------------------------------------------- analyses
def test_rollout_rows_sum_to_one_and_ignore_absent_tokens():
    encoder = tiny_encoder(1)
    input_values = torch.randn(4, 13, 3000, generator=torch.Generator().manual_seed(1))
    modality_mask = torch.ones(4, 6, dtype=torch.bool)
    modality_mask[0, 2] = False
    modality_mask[1, [0, 5]] = False
    with torch.no_grad():
        outputs = encoder(input_values=input_values, modality_mask=modality_mask, output_attentions=True)
    rollout = attention_rollout(outputs.attentions, outputs.token_mask)
    torch.testing.assert_close(rollout.sum(-1), torch.ones(4, 180, dtype=torch.float64))
    absent_keys = ~outputs.token_mask[:, None, :] & outputs.token_mask[:, :, None]
    assert rollout[absent_keys].abs().max() == 0.0
    summary = summarize_rollout(rollout, outputs.token_mask, encoder.config, outputs.attentions)
    assert 0.0 < summary.cross_modal_share < 1.0
    assert 0.0 <= summary.near_time_share <= 1.0 and 0.0 < summary.near_time_chance < 0.2
    block = np.asarray(summary.block_matrix)
    np.testing.assert_allclose(block.sum(1), 1.0, atol=1e-9)  # every query modality's mass sums to one
    assert rollout_analysis(encoder, input_values, modality_mask).num_windows == 4


def test_modality_tuning_is_zero_for_a_modality_the_model_cannot_see():
    encoder = tiny_encoder(2, initializer_range=0.2)  # larger weights: clearer responses
    ignored = encoder.config.modality_names.index("emg")
    with torch.no_grad():  # the emg tokenizer no longer reads the signal (conv and spectral paths): constant tokens
        tokenizer = encoder.embeddings.tokenizer  # per-modality weights: the emg rows of the grouped layers
        tokenizer.convolution.weight[tokenizer.convolution.rows_of_group(ignored)] = 0.0
        if getattr(tokenizer, "spectral_projection", None) is not None:  # tokenizer_type="conv+log_band_power"
            tokenizer.spectral_projection.weight[tokenizer.spectral_projection.rows_of_group(ignored)] = 0.0
    input_values = torch.randn(4, 13, 3000, generator=torch.Generator().manual_seed(2))
    modality_mask = torch.ones(4, 6, dtype=torch.bool)
    tuning = modality_tuning(encoder, input_values, modality_mask, ablation="zero_input")
    assert tuning.response_change.shape == (3, 16, 6)
    others = np.delete(tuning.response_change, ignored, axis=-1)
    assert (others.mean(axis=1) > 1e-4).all()  # every other modality moves the units at every layer
    assert np.abs(tuning.response_change[:, :, ignored]).max() < 1e-3 * others.mean(axis=1).min()
    np.testing.assert_allclose(np.nansum(tuning.tuning, -1), 1.0, atol=1e-9)
    assert (tuning.dominant != ignored).all()
    assert np.nanmax(tuning.entropy) <= 1.0 + 1e-9
    # removing the modality's tokens (mask ablation) changes the pooled units even so: documented behaviour
    masked = modality_tuning(encoder, input_values, modality_mask, ablation="mask")
    assert np.isfinite(masked.response_change).all()


# ----------------------------------------------------------------------------------------------- end to end
def run_eval(arguments: list[str]) -> dict:
    import eval as eval_cli

    return eval_cli.main(arguments)


@pytest.fixture(scope="module")
def synthetic_run(synthetic_dataset_dir, training_outputs, tmp_path_factory) -> tuple[Path, dict]:
    output_dir = tmp_path_factory.mktemp("eval-out")
    config_file = output_dir / "eval.yaml"
    config_file.write_text(
        textwrap.dedent(
            f"""
            dataset_dir: {synthetic_dataset_dir}
            checkpoints: [{training_outputs['early']}, {training_outputs['unimodal']}]
            c_grid: [1.0]
            bootstrap_resamples: 20
            analysis_windows: 8
            """
        )
    )
    results = run_eval([str(config_file), "--output_dir", str(output_dir)])
    return output_dir, results


def test_eval_end_to_end_tables_robustness_analyses(synthetic_run):
    output_dir, results = synthetic_run
    names = [row["name"] for row in results["ranking"]]
    assert set(names) == {"band_power", "mae_modality_drop", "mae_unimodal-eeg", "mae_unimodal-ecg", "mae_unimodal-concat"}
    aggregates = [row["aggregate"] for row in results["ranking"]]
    assert aggregates == sorted(aggregates, reverse=True)
    assert results["tasks_scored"] == ["sleep_staging", "arousal", "age"]
    baseline = next(row for row in results["ranking"] if row["name"] == "band_power")
    # the synthetic labels are carried by band powers: the baseline must be far above chance
    assert baseline["tasks"]["sleep_staging"]["metrics"]["balanced_accuracy"] > 0.6
    assert baseline["tasks"]["age"]["metrics"]["macro_auroc"] > 0.8
    # removing the EEG/EOG (stage carriers) hurts staging; the ECG-only encoder cannot lose ECG
    staging = baseline["tasks"]["sleep_staging"]
    assert staging["without_modality"]["eeg"]["balanced_accuracy"] < staging["metrics"]["balanced_accuracy"] - 0.2
    ecg_row = next(row for row in results["ranking"] if row["name"] == "mae_unimodal-ecg")
    assert "ecg" in ecg_row["tasks"]["age"]["not_removable"]
    for metric, interval in staging["intervals"].items():
        assert interval[0] <= interval[1]
    table = (output_dir / "comparison.md").read_text()
    assert "mae_unimodal-concat" in table and "[" in table
    assert json.loads((output_dir / "comparison.json").read_text())[0]["rank"] == 1
    assert "without eeg" in (output_dir / "robustness.md").read_text()
    analysis = results["analyses"]["mae_modality_drop"]
    assert 0.0 < analysis["rollout"]["cross_modal_share"] < 1.0
    assert set(analysis["modality_tuning"]) == {"mask", "zero_input"}
    for plot in analysis["plots"]:
        assert (output_dir / "analysis" / "mae_modality_drop" / plot).stat().st_size > 1000
    assert "skipped" in results["analyses"]["mae_unimodal-eeg"]


def test_comparison_reports_paired_differences_to_the_baseline(synthetic_run):
    output_dir, results = synthetic_run
    rows = {row["name"]: row for row in results["ranking"]}
    assert list(results["paired_differences"]) == ["band_power"], "no random_init run here: the baseline is the only reference"
    by_variant = results["paired_differences"]["band_power"]
    assert set(by_variant) == set(rows) - {"band_power"}
    for name, tasks in by_variant.items():
        assert set(tasks) == set(results["tasks_scored"])
        for task, metrics in tasks.items():
            assert set(metrics) == {"balanced_accuracy", "macro_auroc"}
            for metric, entry in metrics.items():
                expected = rows[name]["tasks"][task]["metrics"][metric] - rows["band_power"]["tasks"][task]["metrics"][metric]
                assert entry["difference"] == pytest.approx(expected)
                low, high = entry["ci95"]
                assert low <= high and entry["resolved"] == (low > 0 or high < 0)
    table = (output_dir / "comparison.md").read_text()
    assert "## Paired differences: variant − band_power" in table and "sleep_staging: Δ balanced_accuracy" in table


def test_comparison_reports_the_held_out_reconstruction_error(synthetic_run):
    output_dir, results = synthetic_run
    rows = {row["name"]: row for row in results["ranking"]}
    early = rows["mae_modality_drop"]["reconstruction"]
    assert early["relative_reconstruction_error"] == FAKE_RECONSTRUCTION_EVAL["relative_reconstruction_error"]
    assert early["relative_reconstruction_error_mean"] == pytest.approx(0.7) and early["step"] == 40
    assert rows["mae_unimodal-eeg"]["reconstruction"]["relative_reconstruction_error"] == {"eeg": 0.75}
    for name in ("band_power", "mae_unimodal-ecg", "mae_unimodal-concat"):  # not measured (concat: ECG run lacks it)
        assert rows[name]["reconstruction"] is None
    assert "1 - R^2" in results["reconstruction_definition"]

    table = (output_dir / "comparison.md").read_text()
    assert "rel. recon. error (1-R²)" in table
    main_table = table.split("## Held-out reconstruction")[0]
    header = next(line for line in main_table.splitlines() if line.startswith("| rank"))
    column = [cell.strip() for cell in header.strip("|").split("|")].index("rel. recon. error (1-R²), mean")
    cells = {}
    for line in main_table.splitlines():
        if line.startswith("| ") and not line.startswith("| rank"):
            values = [cell.strip() for cell in line.strip("|").split("|")]
            cells[values[1]] = values[column]
    assert cells["mae_modality_drop"] == "0.700" and cells["mae_unimodal-eeg"] == "0.750"
    assert cells["band_power"] == cells["mae_unimodal-ecg"] == cells["mae_unimodal-concat"] == "-"
    per_modality = table.split("## Held-out reconstruction")[1]
    early_line = next(line for line in per_modality.splitlines() if line.startswith("| mae_modality_drop |"))
    assert "| 0.500 | 0.600 | 0.900 | 0.800 | - | 0.700 |" in early_line and "log_band_power" in early_line

    comparison = {entry["name"]: entry for entry in json.loads((output_dir / "comparison.json").read_text())}
    assert comparison["mae_modality_drop"]["relative_reconstruction_error.eeg"] == 0.5
    assert comparison["band_power"]["relative_reconstruction_error.mean"] is None


def test_exported_classifier_loads_in_fresh_process_and_reproduces_probe(synthetic_run, synthetic_dataset_dir, tmp_path):
    output_dir, results = synthetic_run
    folder = output_dir / "mae_modality_drop-sleep-staging"
    for name in ("config.json", "model.safetensors", "preprocessor_config.json", "modeling_physiomae.py", "README.md"):
        assert (folder / name).is_file(), name
    predictions = np.load(output_dir / "predictions" / "mae_modality_drop-sleep_staging.npz")
    from datasets import load_from_disk

    test_split = load_from_disk(str(synthetic_dataset_dir))["probe_test"].with_format("numpy")
    rows = predictions["window_index"][:12]
    batch = test_split[rows.tolist()]
    np.savez(tmp_path / "inputs.npz", input_values=batch["input_values"].astype(np.float32), channel_mask=batch["channel_mask"])
    script = textwrap.dedent(
        f"""
        import sys, numpy as np, torch
        from transformers import AutoModelForSequenceClassification
        assert "modeling_physiomae" not in sys.modules
        model = AutoModelForSequenceClassification.from_pretrained({str(folder)!r}, trust_remote_code=True).eval()
        assert "modeling_physiomae" not in sys.modules, "our package leaked into the fresh process"
        data = np.load({str(tmp_path / 'inputs.npz')!r})
        channel_mask = data["channel_mask"]
        modality_mask = np.stack([channel_mask[:, channels].any(1) for channels in model.config.modality_channel_slices.values()], 1)
        with torch.no_grad():
            logits = model(input_values=torch.from_numpy(data["input_values"]), modality_mask=torch.from_numpy(modality_mask)).logits
        np.save({str(tmp_path / 'logits.npy')!r}, logits.double().numpy())
        print(model.config.id2label)
        """
    )
    environment = isolated_environment(tmp_path / "hf-home")
    completed = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    logits = np.load(tmp_path / "logits.npy")
    assert (logits.argmax(1) == predictions["prediction"][:12]).all()
    np.testing.assert_allclose(logits, predictions["decision_function"][:12], atol=1e-3)
    assert "REM" in completed.stdout


def test_model_card_metadata_holds_the_measured_results(synthetic_run):
    output_dir, results = synthetic_run
    row = next(row for row in results["ranking"] if row["name"] == "mae_modality_drop")
    for task_name, suffix in (("sleep_staging", "sleep-staging"), ("arousal", "arousal"), ("age", "age")):
        readme = (output_dir / f"mae_modality_drop-{suffix}" / "README.md").read_text()
        metadata = read_card_metadata(readme)
        assert metadata["library_name"] == "transformers"
        assert metadata["license"] and metadata["datasets"] and "physiomae" in metadata["tags"]
        (entry,) = metadata["model-index"]
        (result,) = entry["results"]
        assert result["task"]["type"] == task_name
        measured = row["tasks"][task_name]["metrics"]
        for metric in result["metrics"]:
            assert metric["value"] == pytest.approx(measured[metric["type"]], abs=1e-6)
        assert set(metadata["metrics"]) == set(measured)
        assert "Not a medical device" in readme and "Ghassemi" in readme and "{{" not in readme


def test_real_segment_mode_reports_the_baseline(real_segments_dir, training_outputs, tmp_path):
    results = run_eval(
        [
            "--real_segments_dir", str(real_segments_dir),
            "--real_segments_limit", "60",
            "--checkpoints", str(training_outputs["early"]),
            "--output_dir", str(tmp_path),
            "--bootstrap_resamples", "20",
            "--c_grid", "0.1", "1.0",
            "--cv_folds", "3",
            "--no_analyses",
            "--no_export_classifiers",
        ]
    )
    assert results["tasks_scored"] == ["sleep_staging"]
    assert set(results["tasks_skipped"]) == {"arousal", "age"}
    assert results["data"]["real_segments"] and "subject" in " ".join(results["notes"])
    assert results["data"]["report"]["windows"] >= 100
    names = {row["name"] for row in results["ranking"]}
    assert names == {"band_power", "mae_modality_drop"}
    baseline = next(row for row in results["ranking"] if row["name"] == "band_power")
    # 5 balanced stages, real signals: band powers carry stage information (chance = 0.2)
    assert baseline["tasks"]["sleep_staging"]["metrics"]["balanced_accuracy"] > 0.3
    assert "spo2" in results["data"]["modalities_absent_from_probe_test"]
    assert "subject" in (tmp_path / "comparison.md").read_text()


def test_eval_refuses_a_model_folder_that_is_not_physiomae(tmp_path):
    from physiomae.evaluation.variants import discover_variants

    folder = tmp_path / "bert"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "bert", "hidden_size": 8}')
    with pytest.raises(ValueError, match=r"holds a 'bert' model, not a PhysioMAE one"):
        discover_variants(folder)


def test_label_efficiency_on_real_segments_from_two_folders(real_segments_dir, training_outputs, tmp_path):
    """Probe-train from one folder of real excerpts, probe-test from another; the probes refitted on label shares:
    the full share reproduces the main table's score for every variant, and a share draws fewer records."""
    names = sorted(path.name for path in real_segments_dir.iterdir() if path.is_dir())[::8]  # 63 excerpts
    for folder, chosen in ((tmp_path / "train", names[:40]), (tmp_path / "test", names[40:])):
        folder.mkdir()
        for name in chosen:
            (folder / name).symlink_to(real_segments_dir / name, target_is_directory=True)
    results = run_eval([
        "--real_segments_dir", str(tmp_path / "test"), "--real_segments_train_dir", str(tmp_path / "train"),
        "--checkpoints", str(training_outputs["early"]), "--output_dir", str(tmp_path / "out"),
        "--bootstrap_resamples", "0", "--c_grid", "0.1", "1.0", "--cv_folds", "3", "--no_analyses",
        "--no_export_classifiers", "--no_robustness", "--label_fractions", "0.25", "1", "--label_seeds", "0", "1",
    ])
    assert results["data"]["probe_train_records"] == 40 and results["data"]["probe_test_records"] == len(names) - 40
    assert results["paired_differences"] == {}, "no bootstrap resamples, no paired intervals"
    assert "Paired differences" not in (tmp_path / "out" / "comparison.md").read_text()
    efficiency = results["label_efficiency"]["sleep_staging"]
    assert efficiency["records"]["1"] == 40 and efficiency["records"]["0.25"] < 20
    for row in results["ranking"]:
        full = efficiency["variants"][row["name"]]["1"]
        assert full["mean"] == pytest.approx(row["tasks"]["sleep_staging"]["metrics"]["balanced_accuracy"], abs=1e-9)
        assert full["std"] == pytest.approx(0.0, abs=1e-12)
        assert 0.0 <= efficiency["variants"][row["name"]]["0.25"]["mean"] <= 1.0
    table = (tmp_path / "out" / "label_efficiency.md").read_text()
    assert "mae_modality_drop − band_power" in table and (tmp_path / "out" / "label_efficiency_sleep_staging.png").is_file()
