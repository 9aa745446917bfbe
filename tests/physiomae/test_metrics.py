"""Tests of the `evaluate` metric modules in `physiomae.metrics` (`sleep_staging`, `arousal_auprc`): offline
loading from the package's folders (in this process and in a fresh one with the network off), agreement with
scikit-learn and with the PhysioNet 2018 challenge's scoring, the Trainer `compute_metrics` hooks, and one
implementation shared with `physiomae.evaluation.probing` (eval.py)."""

from __future__ import annotations

import filecmp
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pytest

# A throwaway module / metric cache for `evaluate` (it reads these when imported): nothing may land in the
# user's ~/.cache/huggingface. conftest.py already makes HF_HOME temporary and the Hub offline.
if "evaluate" not in sys.modules:
    _EVALUATE_CACHE = tempfile.mkdtemp(prefix="physiomae-evaluate-cache-")
    os.environ["HF_MODULES_CACHE"] = os.path.join(_EVALUATE_CACHE, "modules")
    os.environ["HF_METRICS_CACHE"] = os.path.join(_EVALUATE_CACHE, "metrics")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_EVALUATE_OFFLINE"] = "1"

from sklearn.metrics import (  # noqa: E402
    average_precision_score,
    balanced_accuracy_score,
    cohen_kappa_score,
    f1_score,
    roc_auc_score,
)

from physiomae import metrics as physiomae_metrics  # noqa: E402
from physiomae.evaluation import probing  # noqa: E402
from physiomae.metrics.arousal_auprc import arousal_scores  # noqa: E402
from physiomae.metrics.sleep_staging import staging_scores  # noqa: E402
from helpers import isolated_environment  # noqa: E402

STAGES = ("W", "N1", "N2", "N3", "REM")


@pytest.fixture(scope="module")
def modules_cache() -> Path:
    import evaluate

    cache = Path(evaluate.config.HF_MODULES_CACHE).resolve()
    if not str(cache).startswith(str(Path(tempfile.gettempdir()).resolve())):
        pytest.skip(f"evaluate was imported earlier with a non-temporary HF_MODULES_CACHE ({cache})")
    return cache


@pytest.fixture(scope="module")
def sleep_staging(modules_cache):
    return physiomae_metrics.load_metric("sleep_staging")


@pytest.fixture(scope="module")
def arousal(modules_cache):
    return physiomae_metrics.load_metric("arousal_auprc")


def random_staging(seed: int, size: int = 600, num_classes: int = 5, absent: int | None = None):
    """Correlated predictions / references with undefined (-1) references; `absent` never occurs in the references."""
    generator = np.random.default_rng(seed)
    references = generator.integers(0, num_classes, size)
    if absent is not None:
        references[references == absent] = (absent + 1) % num_classes
    predictions = np.where(generator.random(size) < 0.55, references, generator.integers(0, num_classes, size))
    references[generator.random(size) < 0.15] = -1
    return predictions, references


def random_arousal(seed: int, size: int = 5000):
    generator = np.random.default_rng(seed)
    references = (generator.random(size) < 0.2).astype(np.int64)
    probability = np.clip(0.3 * references + 0.7 * generator.random(size), 0.0, 1.0)
    references[generator.random(size) < 0.1] = -1
    probability[references == -1] = generator.random(int((references == -1).sum()))
    return probability, references


def challenge_reference_scores(references, probability, digits: int = 3) -> tuple[float, float]:
    """The challenge scorer's procedure, written out independently: a histogram of the probabilities over
    `10**digits + 1` bins of the range `[-0.5 / scale, 1 + 0.5 / scale]`, then a threshold sweep that moves one
    bin at a time from "called positive" to "called negative", accumulating the AUROC trapezoids over
    (TPR, TNR) and the AUPRC steps recall decrease x previous precision."""
    scale = 10**digits
    value_range = (-0.5 / scale, 1.0 + 0.5 / scale)
    positives = np.histogram(probability[references > 0], bins=scale + 1, range=value_range)[0]
    negatives = np.histogram(probability[references == 0], bins=scale + 1, range=value_range)[0]
    true_positive, false_positive = int(positives.sum()), int(negatives.sum())
    false_negative = true_negative = 0
    recall, specificity, precision = 1.0, 0.0, true_positive / (true_positive + false_positive)
    auroc = auprc = 0.0
    for count_positive, count_negative in zip(positives, negatives):
        true_positive -= count_positive
        false_negative += count_positive
        false_positive -= count_negative
        true_negative += count_negative
        previous_recall, previous_specificity, previous_precision = recall, specificity, precision
        recall = true_positive / (true_positive + false_negative)
        specificity = true_negative / (true_negative + false_positive)
        if true_positive + false_positive > 0:
            precision = true_positive / (true_positive + false_positive)
        auroc += (previous_recall - recall) * (specificity + previous_specificity) / 2.0
        auprc += (previous_recall - recall) * previous_precision
    return auroc, auprc


# ----------------------------------------------------------------------------------------------- loading
def test_metrics_load_offline_from_the_package_folders(sleep_staging, arousal, modules_cache):
    assert sleep_staging.name == "sleep_staging" and arousal.name == "arousal_auprc"
    assert physiomae_metrics.METRIC_NAMES == ("sleep_staging", "arousal_auprc")
    for metric, name in ((sleep_staging, "sleep_staging"), (arousal, "arousal_auprc")):
        assert physiomae_metrics.metric_path(name) == physiomae_metrics.METRICS_DIR / name
        assert "Challenge 2018" in metric.description or "Sleep-staging" in metric.description
        assert metric.citation.strip().startswith("@") and metric.inputs_description.strip()
        # evaluate imported its copy from the temporary module cache
        copied = Path(sys.modules[type(metric).__module__].__file__).resolve()
        assert str(copied).startswith(str(modules_cache))
    assert set(sleep_staging.features) == {"predictions", "references"}
    assert set(arousal.features) == {"prediction_scores", "references"}
    with pytest.raises(ValueError, match="unknown PhysioMAE metric"):
        physiomae_metrics.metric_path("accuracy")
    # The .py file itself loads too.
    import evaluate

    by_file = evaluate.load(str(physiomae_metrics.METRICS_DIR / "arousal_auprc" / "arousal_auprc.py"), keep_in_memory=True)
    assert by_file.compute(prediction_scores=[0.1, 0.9], references=[0, 1])["gross_auprc"] == 1.0


def test_fresh_process_loads_both_metrics_offline_without_physiomae(tmp_path):
    """A new interpreter with the network off (socket connections fail), a fresh HF_HOME and module cache:
    `evaluate.load(<folder>)` of both metrics works and imports nothing of `physiomae` (the metric folders are
    self-contained); `physiomae.metrics.load_metric` then gives the same numbers."""
    predictions, references = random_staging(seed=11, size=200)
    probability, arousal_references = random_arousal(seed=12, size=400)
    inputs = tmp_path / "inputs.json"
    inputs.write_text(json.dumps({"predictions": predictions.tolist(), "references": references.tolist(),
                                  "probability": probability.tolist(), "arousal": arousal_references.tolist()}))
    script = textwrap.dedent(
        f"""
        import json, socket, sys

        def no_network(*args, **kwargs):
            raise OSError("network disabled in this test")

        socket.socket.connect = no_network
        socket.create_connection = no_network
        import evaluate

        data = json.load(open({str(inputs)!r}))
        staging = evaluate.load({str(physiomae_metrics.METRICS_DIR / "sleep_staging")!r})
        arousal = evaluate.load({str(physiomae_metrics.METRICS_DIR / "arousal_auprc")!r})
        results = {{
            "staging": staging.compute(predictions=data["predictions"], references=data["references"]),
            "arousal": arousal.compute(prediction_scores=data["probability"], references=data["arousal"]),
            "physiomae_imported": any(name.split(".")[0] == "physiomae" for name in sys.modules),
            "module_file": sys.modules[type(staging).__module__].__file__,
        }}
        from physiomae.metrics import load_metric

        results["staging_via_package"] = load_metric("sleep_staging").compute(
            predictions=data["predictions"], references=data["references"])
        print("RESULTS" + json.dumps(results))
        """
    )
    environment = isolated_environment(tmp_path / "hf_home", HF_EVALUATE_OFFLINE="1",
                                       HF_MODULES_CACHE=str(tmp_path / "modules"), OMP_NUM_THREADS="1",
                                       MKL_NUM_THREADS="1")
    completed = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=environment, capture_output=True,
                               text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    results = json.loads(completed.stdout.split("RESULTS", 1)[1])
    assert results["physiomae_imported"] is False
    assert results["module_file"].startswith(str(tmp_path / "modules"))
    assert results["staging"] == pytest.approx(staging_scores.sleep_staging_scores(references, predictions), nan_ok=True)
    assert results["staging_via_package"] == results["staging"]
    assert results["arousal"] == pytest.approx(arousal_scores.arousal_scores(arousal_references, probability))


# ----------------------------------------------------------------------------------------------- sleep staging
def test_stage_names_are_the_builders():
    from dataset_scripts.labels import STAGE_NAMES

    assert staging_scores.DEFAULT_STAGE_NAMES == tuple(STAGE_NAMES) == STAGES == tuple(probing.SLEEP_STAGE_NAMES)


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
@pytest.mark.parametrize("seed, absent", [(0, None), (1, None), (2, 3)])
def test_sleep_staging_equals_scikit_learn(sleep_staging, seed, absent):
    predictions, references = random_staging(seed, absent=absent)
    results = sleep_staging.compute(predictions=predictions, references=references)
    scored = references >= 0
    y_true, y_pred = references[scored], predictions[scored]
    present = np.unique(y_true)
    assert results["num_scored"] == scored.sum() and results["num_ignored"] == (~scored).sum() > 0
    assert results["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y_true, y_pred))
    assert results["cohen_kappa"] == pytest.approx(cohen_kappa_score(y_true, y_pred))
    assert results["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0))
    per_stage = f1_score(y_true, y_pred, labels=np.arange(5), average=None, zero_division=0)
    for index, stage in enumerate(STAGES):
        if index in present:
            assert results[f"f1_{stage}"] == pytest.approx(per_stage[index])
        else:  # a stage absent from the references has no F1 (and is not in macro F1)
            assert np.isnan(results[f"f1_{stage}"])
    if absent is None:  # every stage present: scikit-learn's default macro F1
        assert results["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    else:  # the absent stage is still predicted: scikit-learn's default would add an F1 of 0 for it
        assert (y_pred == absent).any()
        assert f1_score(y_true, y_pred, average="macro") < results["macro_f1"]


def test_sleep_staging_options_and_errors(sleep_staging):
    # -100 (PyTorch's ignore index) is ignored like -1; stage names name the per-stage keys
    results = sleep_staging.compute(predictions=[0, 1, 2, 1], references=[0, 1, 2, -100], stage_names=["a", "b", "c"])
    assert results["balanced_accuracy"] == 1.0 and results["num_ignored"] == 1
    assert {key for key in results if key.startswith("f1_")} == {"f1_a", "f1_b", "f1_c"}
    custom = physiomae_metrics.load_metric("sleep_staging", stage_names=("wake", "sleep"))
    assert set(custom.compute(predictions=[0, 1], references=[0, 1])) >= {"f1_wake", "f1_sleep"}
    nothing_scored = sleep_staging.compute(predictions=[0, 1], references=[-1, -1])
    assert nothing_scored["num_scored"] == 0 and np.isnan(nothing_scored["balanced_accuracy"])
    with pytest.raises(ValueError, match="predictions must lie in 0..4"):
        sleep_staging.compute(predictions=[0, 5], references=[0, 1])
    with pytest.raises(ValueError, match="references must lie in 0..2"):
        staging_scores.sleep_staging_scores([0, 3], [0, 1], stage_names=("a", "b", "c"))


# ----------------------------------------------------------------------------------------------- arousal
def test_arousal_gross_scores_equal_the_challenge_and_scikit_learn(arousal):
    """The AUPRC compared with is scikit-learn's `average_precision_score` of the probabilities rounded as the
    challenge rounds them: the step sum sum (R_k - R_{k-1}) P_k, which is the challenge's definition, not the
    trapezoidal `auc(recall, precision)` (linear interpolation between PR points overstates the area)."""
    from sklearn.metrics import auc, precision_recall_curve

    for seed in range(3):
        probability, references = random_arousal(seed)
        results = arousal.compute(prediction_scores=probability, references=references)
        scored = references >= 0
        rounded = np.round(probability[scored], 3)  # = the challenge's bins (no exact halves in random floats)
        reference_auroc, reference_auprc = challenge_reference_scores(references, probability)
        assert results["gross_auprc"] == pytest.approx(reference_auprc, abs=1e-12)
        assert results["gross_auroc"] == pytest.approx(reference_auroc, abs=1e-12)
        assert results["gross_auprc"] == pytest.approx(average_precision_score(references[scored], rounded), abs=1e-12)
        assert results["gross_auroc"] == pytest.approx(roc_auc_score(references[scored], rounded), abs=1e-12)
        assert results["gross_auroc"] == pytest.approx(arousal_scores.binary_auroc(references[scored] == 1, rounded))
        precision, recall, _ = precision_recall_curve(references[scored], rounded)
        assert abs(auc(recall, precision) - results["gross_auprc"]) > 1e-4  # the trapezoid is a different number
        assert results["num_scored"] == scored.sum() and results["num_ignored"] == (~scored).sum()
        assert results["num_positive"] == (references == 1).sum()
        assert results["gross_auprc"] == probing.challenge_gross_auprc(references, probability)


def test_arousal_rounding_validation_and_undefined_cases(arousal):
    # Bins are the challenge's numpy.histogram bins, halves included (np.round(p, 3) would differ on 0.0625
    # and on some of the k + 0.5 thousandths, which land wherever the histogram's float edges put them).
    values = np.concatenate([np.random.default_rng(0).random(500), np.arange(0, 1001) / 1000,
                             (np.arange(0, 1000) + 0.5) / 1000, [0.0625, 0.1875, 1.0004, 1.0005, -0.0005]])
    expected = [np.histogram([value], bins=1001, range=(-0.0005, 1.0005))[0].argmax() for value in values]
    np.testing.assert_array_equal(arousal_scores.challenge_bins(values), expected)
    # perfect ranking -> 1; unscored samples are ignored (their scores are not checked); a single class -> NaN
    perfect = arousal.compute(prediction_scores=[0.1, 0.2, 0.8, 0.9, float("nan")], references=[0, 0, 1, 1, -1])
    assert perfect["gross_auprc"] == 1.0 and perfect["gross_auroc"] == 1.0
    single_class = arousal.compute(prediction_scores=[0.1, 0.5, 0.9], references=[0, 0, -1])
    assert np.isnan(single_class["gross_auprc"]) and np.isnan(single_class["gross_auroc"])
    for invalid in (1.2, -0.01, float("nan")):
        with pytest.raises(ValueError, match="must lie in"):
            arousal.compute(prediction_scores=[0.2, invalid], references=[0, 1])
    coarse = arousal.compute(prediction_scores=[0.11, 0.14, 0.12], references=[0, 1, 1], digits=1)
    assert coarse["gross_auroc"] == 0.5  # all three fall into one bin of width 0.1


# ----------------------------------------------------------------------------------------------- Trainer
def test_trainer_compute_metrics_equal_the_metrics(sleep_staging, arousal):
    from scipy.special import softmax
    from transformers import EvalPrediction

    generator = np.random.default_rng(5)
    logits = generator.normal(size=(300, 5)).astype(np.float32)
    labels = generator.integers(0, 5, 300)
    labels[:20], labels[20:30] = -100, -1
    compute_metrics = physiomae_metrics.sleep_staging_compute_metrics()
    results = compute_metrics(EvalPrediction(predictions=logits, label_ids=labels))
    expected = sleep_staging.compute(predictions=logits.argmax(1), references=np.where(labels < 0, -1, labels))
    assert results == expected and results["num_ignored"] == 30
    assert compute_metrics(EvalPrediction(predictions=(logits, logits[:, :2]), label_ids=labels)) == expected  # again
    with pytest.raises(ValueError, match="expects logits"):
        compute_metrics(EvalPrediction(predictions=logits[:, :3], label_ids=labels))

    arousal_logits = generator.normal(size=(400, 2)) * 3
    arousal_labels = generator.integers(0, 2, 400)
    arousal_labels[:25] = -100
    results = physiomae_metrics.arousal_compute_metrics()(EvalPrediction(predictions=arousal_logits, label_ids=arousal_labels))
    probability = softmax(arousal_logits, axis=1)[:, 1]
    np.testing.assert_allclose(physiomae_metrics.arousal_probability(arousal_logits), probability, rtol=1e-12)
    expected = arousal.compute(prediction_scores=probability, references=np.where(arousal_labels < 0, -1, arousal_labels))
    assert results == pytest.approx(expected) and results["num_ignored"] == 25
    extreme = physiomae_metrics.arousal_probability(np.array([[0.0, 800.0], [800.0, 0.0]]))
    np.testing.assert_array_equal(extreme, [1.0, 0.0])


# ----------------------------------------------------------------------------------------------- one implementation
def test_probing_uses_the_metric_modules_computation(sleep_staging, arousal):
    """eval.py's point estimates (`probing.score_probe`) equal the metric modules' on the same predictions, and
    probing calls the very functions (and files) that the loaded `evaluate` modules run."""
    assert probing.confusion_metrics is staging_scores.confusion_metrics
    assert probing.confusion_counts is staging_scores.confusion_counts
    assert probing.challenge_gross_auprc is arousal_scores.challenge_gross_auprc
    assert probing.binary_auroc is arousal_scores.binary_auroc
    for metric, helper in ((sleep_staging, staging_scores), (arousal, arousal_scores)):
        copied_folder = Path(sys.modules[type(metric).__module__].__file__).parent
        assert filecmp.cmp(copied_folder / Path(helper.__file__).name, helper.__file__, shallow=False)

    generator = np.random.default_rng(7)
    records = np.repeat([f"r{index}" for index in range(12)], 40)
    labels = generator.integers(0, 5, len(records))
    features = generator.normal(size=(len(labels), 8))
    features[np.arange(len(labels)), labels] += 1.0
    task = probing.TASKS["sleep_staging"]
    probe = probing.fit_probe(features[:240], labels[:240], records[:240], c_grid=(1.0,))
    point, intervals, _ = probing.score_probe(task, probe, features[240:], labels[240:], records[240:], num_bootstrap=5)
    predictions = probing.full_probabilities(probe, features[240:], task.num_classes).argmax(1)
    from_module = sleep_staging.compute(predictions=predictions, references=labels[240:])
    for key in ("balanced_accuracy", "macro_f1", "cohen_kappa"):
        assert point[key] == from_module[key]
    assert set(intervals) == {"balanced_accuracy", "macro_f1", "cohen_kappa", "macro_auroc"}

    arousal_labels = (labels > 2).astype(np.int64)
    arousal_task = probing.TASKS["arousal"]
    probe = probing.fit_probe(features[:240], arousal_labels[:240], records[:240], c_grid=(1.0,))
    point, _, _ = probing.score_probe(arousal_task, probe, features[240:], arousal_labels[240:], records[240:], num_bootstrap=0)
    probability = probing.full_probabilities(probe, features[240:], 2)[:, 1]
    from_module = arousal.compute(prediction_scores=probability, references=arousal_labels[240:])
    assert point["gross_auprc"] == from_module["gross_auprc"]
