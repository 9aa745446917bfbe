"""Linear probing of frozen PhysioMAE encoders: tasks, features, probes, metrics and confidence intervals.

Nothing here is copied to the Hub: it is the evaluation toolkit behind `eval.py`.

Pipeline, per task:
1. `encode_windows` turns every window of a split into the encoder's pooled embedding (frozen encoder, no
   masking, all present modalities, `torch.no_grad`), or `band_power_features` into the hand-crafted
   baseline features (log band powers per channel).
2. `fit_probe` fits `StandardScaler` + `LogisticRegression(class_weight="balanced")` on probe-train, with
   the inverse regularisation `C` chosen by cross-validation grouped by record (`GroupKFold`).
3. `score_probe` scores probe-test (balanced accuracy, macro F1, macro AUROC, Cohen's kappa for stages,
   the challenge's gross AUPRC for arousal) with 95 % bootstrap intervals that resample test *records*
   (`bootstrap_samples`); `paired_difference` compares two probes on the same resamples.
4. `fold_probe_into_linear` turns the fitted scaler + logistic regression into one linear layer whose
   outputs equal the probe's decision function, so that a `PhysioMAEForSequenceClassification` carries it.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from scipy.signal import welch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from dataset_scripts.labels import STAGE_NAMES
from physiomae.metrics.arousal_auprc.arousal_scores import binary_auroc, challenge_gross_auprc
from physiomae.metrics.sleep_staging.staging_scores import confusion_counts, confusion_metrics
from modeling_physiomae.configuration_physiomae import ChannelLayout
from physiomae.saved_dataset import ChannelMapping, dataset_layout

# Binary age task: "older" means age >= this many years (the cohort's mean age is about 55; 60 is a common
# clinical cut-off for "older adult" and splits the PhysioNet 2018 cohort into two groups of similar size).
AGE_THRESHOLD_YEARS = 60.0
SLEEP_STAGE_NAMES = list(STAGE_NAMES)  # the builder's ClassLabel names (dataset_scripts.labels)

DEFAULT_C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0)


# ----------------------------------------------------------------------------------------------- tasks
@dataclass(frozen=True)
class ProbeTask:
    """One downstream task: which dataset column holds its label and how to turn it into class indices.

    `labels_from_column` returns integer class indices with -1 where the window has no label for this task
    (those windows are excluded from the task's probe and scores).
    """

    name: str
    column: str
    label_names: tuple[str, ...]
    hub_suffix: str
    description: str

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    def labels_from_column(self, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values)
        if self.name == "age":
            values = values.astype(np.float64)
            labels = np.where(values >= AGE_THRESHOLD_YEARS, 1, 0)
            return np.where(np.isfinite(values) & (values >= 0), labels, -1).astype(np.int64)
        labels = values.astype(np.int64)
        return np.where((labels >= 0) & (labels < self.num_classes), labels, -1)


TASKS: dict[str, ProbeTask] = {
    "sleep_staging": ProbeTask(
        name="sleep_staging",
        column="sleep_stage",
        label_names=tuple(SLEEP_STAGE_NAMES),
        hub_suffix="sleep-staging",
        description="5-class sleep staging of 30-s windows (W, N1, N2, N3, REM)",
    ),
    "arousal": ProbeTask(
        name="arousal",
        column="arousal",
        label_names=("no_arousal", "arousal"),
        hub_suffix="arousal",
        description="binary: the window holds >= 3 s of target arousal (windows labelled -1 excluded)",
    ),
    "age": ProbeTask(
        name="age",
        column="age",
        label_names=(f"younger_than_{AGE_THRESHOLD_YEARS:g}", f"{AGE_THRESHOLD_YEARS:g}_or_older"),
        hub_suffix="age",
        description=f"binary: the subject is {AGE_THRESHOLD_YEARS:g} years or older (unknown age excluded)",
    ),
}


# ----------------------------------------------------------------------------------------------- split data
@dataclass
class SplitTable:
    """The non-signal columns of one dataset split, as numpy arrays (one row per window).

    Attributes:
        records (`np.ndarray` of str, shape `(num_windows,)`): record name of each window (the bootstrap and
            cross-validation group).
        labels (`dict[str, np.ndarray]`): task name -> class indices `(num_windows,)`, -1 where unlabelled.
        channel_mask (`np.ndarray` of bool, shape `(num_windows, num_dataset_channels)`).
    """

    records: np.ndarray
    labels: dict[str, np.ndarray]
    channel_mask: np.ndarray

    @property
    def num_windows(self) -> int:
        return len(self.records)


def read_split_table(split, tasks: Sequence[ProbeTask] = tuple(TASKS.values())) -> SplitTable:
    """Read records, task labels and channel masks of a `datasets.Dataset` split (no signals)."""
    missing = [column for column in ("record", "channel_mask") if column not in split.column_names]
    if missing:
        raise ValueError(f"dataset split lacks the column(s) {missing}; it has {split.column_names}")
    records = np.asarray(split["record"], dtype=object)
    channel_mask = np.asarray(split["channel_mask"], dtype=bool)
    labels = {}
    for task in tasks:
        if task.column in split.column_names:
            labels[task.name] = task.labels_from_column(np.asarray(split[task.column]))
        else:
            labels[task.name] = np.full(len(records), -1, dtype=np.int64)
    return SplitTable(records=records, labels=labels, channel_mask=channel_mask)


def iterate_signal_batches(split, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield `(input_values float32 (batch, channels, samples), channel_mask bool (batch, channels))`."""
    numpy_split = split.with_format("numpy", columns=["input_values", "channel_mask"])
    for start in range(0, len(split), batch_size):
        batch = numpy_split[start : start + batch_size]
        input_values = np.asarray(batch["input_values"], dtype=np.float32)
        if not np.isfinite(input_values).all():
            raise ValueError(f"non-finite input_values in windows {start}..{start + len(input_values) - 1}")
        yield input_values, np.asarray(batch["channel_mask"], dtype=bool)


def record_split_is_test(record: str, test_fraction: float = 0.22) -> bool:
    """Deterministic split by record name, the builder's (`dataset_scripts.record_split`): the record is
    in the test share when the position of sha1(name) in the hash range is below `test_fraction`."""
    from dataset_scripts.record_split import record_split_position

    return record_split_position(record) < test_fraction


# ----------------------------------------------------------------------------------------------- embeddings
@dataclass
class EncodedSplit:
    """Pooled embeddings of a split.

    Attributes:
        embeddings (`np.ndarray` float32, shape `(num_windows, embedding_size)`).
        empty_windows (`np.ndarray` bool, shape `(num_windows,)`): windows in which none of the model's
            modalities was present; the encoder cannot see them, their embedding is left at zero and they
            are counted in the report.
    """

    embeddings: np.ndarray
    empty_windows: np.ndarray


@torch.no_grad()
def encode_windows(
    encoder,
    split,
    batch_size: int = 64,
    removed_modality: str | None = None,
    layout: ChannelLayout | None = None,
    device: torch.device | str | None = None,
) -> EncodedSplit:
    """Frozen-encoder pooled embeddings (`pooler_output`) of every window of `split`.

    The encoder is a `PhysioMAEModel`; it runs in eval mode, without masking, on all present modalities
    (minus `removed_modality`). Dataset channels are mapped to the model's channels by name (`layout`: the
    split's own, `dataset_layout(split)`, by default).
    """
    device = torch.device(device) if device is not None else next(encoder.parameters()).device
    encoder.eval()
    mapping = ChannelMapping.for_config(encoder.config, layout or dataset_layout(split))
    embedding_chunks, empty_chunks = [], []
    for input_values, channel_mask in iterate_signal_batches(split, batch_size):
        model_values, modality_mask = mapping.model_inputs(input_values, channel_mask, removed_modality)
        empty = ~modality_mask.any(axis=1)
        embeddings = np.zeros((len(model_values), encoder.config.embedding_size), dtype=np.float32)
        if (~empty).any():
            outputs = encoder(
                input_values=torch.from_numpy(model_values[~empty]).to(device),
                modality_mask=torch.from_numpy(modality_mask[~empty]).to(device),
            )
            embeddings[~empty] = outputs.pooler_output.float().cpu().numpy()
        embedding_chunks.append(embeddings)
        empty_chunks.append(empty)
    if not embedding_chunks:
        return EncodedSplit(np.zeros((0, encoder.config.embedding_size), np.float32), np.zeros(0, bool))
    return EncodedSplit(np.concatenate(embedding_chunks), np.concatenate(empty_chunks))


# ----------------------------------------------------------------------------------------------- baseline
# Bands (Hz) of the hand-crafted baseline. Every channel gets the five EEG bands; respiration and SpO2
# channels also get two low-frequency bands (breathing is 0.15-0.5 Hz, slow periodic breathing and
# desaturation cycles below that).
EEG_BANDS: dict[str, tuple[float, float]] = {
    "delta": (0.5, 4.0),
    "theta": (4.0, 8.0),
    "alpha": (8.0, 12.0),
    "sigma": (12.0, 16.0),
    "beta": (16.0, 30.0),
}
LOW_FREQUENCY_BANDS: dict[str, tuple[float, float]] = {"very_low": (0.05, 0.15), "breathing": (0.15, 0.5)}
LOW_FREQUENCY_MODALITIES = ("resp", "spo2")


def band_power_feature_names(
    dataset_modalities: dict[str, list[str]] | None = None,
) -> list[tuple[str, str, str]]:
    """`(modality, channel, band)` of every baseline feature, in feature order (default: the default layout)."""
    dataset_modalities = dataset_modalities or ChannelLayout().modalities
    names = []
    for modality, channels in dataset_modalities.items():
        bands = dict(EEG_BANDS)
        if modality in LOW_FREQUENCY_MODALITIES:
            bands.update(LOW_FREQUENCY_BANDS)
        for channel in channels:
            names.extend((modality, channel, band) for band in bands)
    return names


def band_power_features(
    input_values: np.ndarray,
    sampling_rate: int = 100,
    dataset_modalities: dict[str, list[str]] | None = None,
) -> np.ndarray:
    """Log band powers per channel: `(batch, channels, samples)` -> `(batch, num_features)` float32.

    Welch periodogram with 10-s segments (0.1 Hz resolution, so the low-frequency bands are resolved in a
    30-s window), power summed inside each band, `log(power + 1e-8)`.
    """
    dataset_modalities = dataset_modalities or ChannelLayout().modalities
    segment_length = min(input_values.shape[-1], 10 * sampling_rate)
    frequencies, power = welch(input_values, fs=sampling_rate, nperseg=segment_length, axis=-1)
    # power: (batch, channels, frequencies)
    features = []
    channel_index = 0
    for modality, channels in dataset_modalities.items():
        bands = dict(EEG_BANDS)
        if modality in LOW_FREQUENCY_MODALITIES:
            bands.update(LOW_FREQUENCY_BANDS)
        for _ in channels:
            for low, high in bands.values():
                in_band = (frequencies >= low) & (frequencies < high)
                features.append(np.log(power[:, channel_index, in_band].sum(axis=-1) + 1e-8))
            channel_index += 1
    if channel_index != input_values.shape[1]:
        raise ValueError(f"band_power_features: {input_values.shape[1]} channels given, {channel_index} named")
    return np.stack(features, axis=1).astype(np.float32)  # (batch, num_features)


def compute_band_power_split(split, batch_size: int = 256, layout: ChannelLayout | None = None) -> np.ndarray:
    """Baseline features of every window of `split` (its channels and sampling rate: `layout`, default the split's)."""
    layout = layout or dataset_layout(split)
    sampling_rate = int(layout.sampling_rate or 100)
    chunks = [band_power_features(values, sampling_rate, layout.modalities)
              for values, _ in iterate_signal_batches(split, batch_size)]
    return (np.concatenate(chunks) if chunks
            else np.zeros((0, len(band_power_feature_names(layout.modalities))), np.float32))


def band_power_feature_modality(dataset_modalities: dict[str, list[str]] | None = None) -> np.ndarray:
    """Modality name of each baseline feature, `(num_features,)`."""
    return np.asarray([modality for modality, _, _ in band_power_feature_names(dataset_modalities)], dtype=object)


# ----------------------------------------------------------------------------------------------- probe
@dataclass
class ProbeSettings:
    """How probes are fitted and scored (eval.py's --c_grid, --cv_folds, --max_iter, --bootstrap_resamples, --seed):
    `fit_probe` takes the first three, `score_probe` the last two."""

    c_grid: Sequence[float] = DEFAULT_C_GRID
    cv_folds: int = 5
    max_iter: int = 2000
    bootstrap_resamples: int = 200
    seed: int = 0


@dataclass
class FittedProbe:
    """A fitted StandardScaler + LogisticRegression and how its C was chosen.

    Attributes:
        pipeline: the fitted sklearn `Pipeline` (`scaler`, `logistic`).
        regularization_c (`float`): the chosen inverse regularisation strength.
        cross_validation (`dict[str, float | None]`): mean grouped-CV balanced accuracy per C (None where
            every fold failed), or empty when CV was impossible.
        selection_note (`str`): how C was chosen.
        classes (`np.ndarray`): class indices the probe knows (all the task's classes present in training).
    """

    pipeline: Pipeline
    regularization_c: float
    cross_validation: dict[str, float | None]
    selection_note: str
    classes: np.ndarray

    def decision_function(self, features: np.ndarray) -> np.ndarray:
        return self.pipeline.decision_function(features)

    def predict(self, features: np.ndarray) -> np.ndarray:
        return self.pipeline.predict(features)

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        return self.pipeline.predict_proba(features)


def make_probe_pipeline(regularization_c: float, max_iter: int = 2000) -> Pipeline:
    return Pipeline(
        [
            ("scaler", StandardScaler()),
            ("logistic", LogisticRegression(C=regularization_c, class_weight="balanced", max_iter=max_iter)),
        ]
    )


def _grouped_cv_balanced_accuracy(features, labels, groups, regularization_c, folds, max_iter) -> float | None:
    scores = []
    for train_index, validation_index in folds:
        if len(np.unique(labels[train_index])) < 2:
            continue
        pipeline = make_probe_pipeline(regularization_c, max_iter).fit(features[train_index], labels[train_index])
        predictions = pipeline.predict(features[validation_index])
        num_classes = int(max(labels.max(), predictions.max())) + 1
        confusion = confusion_counts(labels[validation_index], predictions, num_classes)
        scores.append(confusion_metrics(confusion)["balanced_accuracy"])
    return float(np.mean(scores)) if scores else None


def fit_probe(
    features: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray,
    c_grid: Sequence[float] = DEFAULT_C_GRID,
    num_folds: int = 5,
    max_iter: int = 2000,
) -> FittedProbe:
    """Fit the probe; C maximises the mean balanced accuracy of `GroupKFold` CV over records (`groups`).

    With fewer than two records, CV is impossible and C=1 is used (said in `selection_note`). The probe is fitted in
    float32, the features' precision (the embeddings and band powers are float32; L-BFGS in float32 takes about half
    the time of float64 and reaches the same optimum within its tolerance). BLAS runs on one thread here: L-BFGS
    makes many small matrix products, and splitting them over threads costs more than they take (on 2 cores, a
    3,420 x 64 probe with its CV took 0.22 s on one OpenBLAS thread and 5.6 s on two;
    `benchmarks/RESULTS.md`).
    """
    with threadpool_limits(limits=1, user_api="blas"):
        return _fit_probe(features, labels, groups, c_grid, num_folds, max_iter)


def _fit_probe(features, labels, groups, c_grid, num_folds, max_iter) -> FittedProbe:
    features = np.asarray(features, dtype=np.float32)
    labels = np.asarray(labels)
    if len(features) != len(labels) or len(labels) != len(groups):
        raise ValueError(f"fit_probe: {len(features)} feature rows, {len(labels)} labels, {len(groups)} groups")
    if len(np.unique(labels)) < 2:
        raise ValueError(f"fit_probe: probe-train holds a single class {np.unique(labels)}; nothing to fit")
    num_groups = len(np.unique(groups))
    cross_validation: dict[str, float | None] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        if num_groups >= 2 and len(c_grid) > 1:
            folds = list(GroupKFold(n_splits=min(num_folds, num_groups)).split(features, labels, groups))
            for regularization_c in c_grid:
                cross_validation[repr(float(regularization_c))] = _grouped_cv_balanced_accuracy(
                    features, labels, groups, regularization_c, folds, max_iter
                )
            scored = {key: value for key, value in cross_validation.items() if value is not None}
            if scored:
                best = max(scored, key=lambda key: (scored[key], -abs(math.log10(float(key)))))
                chosen_c = float(best)
                note = f"GroupKFold({min(num_folds, num_groups)}) over {num_groups} records, balanced accuracy"
            else:
                chosen_c, note = 1.0, "every CV fold held a single class; C=1"
        else:
            chosen_c = float(c_grid[0]) if len(c_grid) == 1 else 1.0
            note = f"no CV ({num_groups} record(s), {len(c_grid)} C value(s)); C={chosen_c:g}"
        pipeline = make_probe_pipeline(chosen_c, max_iter).fit(features, labels)
    return FittedProbe(pipeline, chosen_c, cross_validation, note, pipeline.classes_)


# ----------------------------------------------------------------------------------------------- metrics
# The metric computations themselves (`challenge_gross_auprc`, `binary_auroc`, `confusion_counts`,
# `confusion_metrics`) are imported at the top from `physiomae.metrics`: the same files the `evaluate` modules
# `sleep_staging` and `arousal_auprc` import, so eval.py and a Trainer's `compute_metrics` report the same numbers.
def macro_auroc(labels: np.ndarray, scores: np.ndarray, num_classes: int) -> float:
    """Mean one-vs-rest AUROC over the classes that have both positives and negatives in `labels`.

    `scores`: `(n,)` decision values / positive-class probabilities for binary tasks, `(n, num_classes)`
    class probabilities otherwise.
    """
    labels = np.asarray(labels)
    if np.ndim(scores) == 1:
        return binary_auroc(labels == 1, scores)
    per_class = [binary_auroc(labels == class_index, scores[:, class_index]) for class_index in range(num_classes)]
    per_class = [value for value in per_class if np.isfinite(value)]
    return float(np.mean(per_class)) if per_class else float("nan")


def task_metrics(task: ProbeTask, labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """Metrics of one task from the probe's class probabilities `(n, num_classes)`."""
    labels = np.asarray(labels)
    predictions = probabilities.argmax(axis=1)
    from_confusion = confusion_metrics(confusion_counts(labels, predictions, task.num_classes))
    metrics = {
        "balanced_accuracy": from_confusion["balanced_accuracy"],
        "macro_f1": from_confusion["macro_f1"],
        "macro_auroc": macro_auroc(labels, probabilities[:, 1] if task.num_classes == 2 else probabilities, task.num_classes),
    }
    if task.name == "sleep_staging":
        metrics["cohen_kappa"] = from_confusion["cohen_kappa"]
    if task.name == "arousal":
        metrics["gross_auprc"] = challenge_gross_auprc(labels, probabilities[:, 1])
    return metrics


def full_probabilities(probe: FittedProbe, features: np.ndarray, num_classes: int) -> np.ndarray:
    """`predict_proba` spread over all the task's classes (zeros for classes absent from probe-train)."""
    probabilities = np.zeros((len(features), num_classes))
    if len(features):
        probabilities[:, probe.classes] = probe.predict_proba(features)
    return probabilities


def bootstrap_samples(
    metric_function: Callable[[np.ndarray], dict[str, float]],
    records: np.ndarray,
    num_resamples: int = 200,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """The record bootstrap's draws: `{metric: (num_resamples,) values}` (NaN where a resample leaves it undefined).

    `metric_function(window_indices)` scores the windows at `window_indices`. Each resample draws as many
    records as there are, with replacement, and takes all windows of each drawn record (so within-record
    correlation is kept). The draws depend only on the record names, `num_resamples` and `seed`: two sets of
    predictions on the same windows scored with the same seed see the same resamples, so their samples pair up
    (`paired_difference`).
    """
    unique_records, record_of_window = np.unique(records, return_inverse=True)
    windows_of_record = [np.flatnonzero(record_of_window == index) for index in range(len(unique_records))]
    generator = np.random.default_rng(seed)
    samples: dict[str, list[float]] = {}
    for _ in range(num_resamples):
        drawn = generator.integers(0, len(unique_records), size=len(unique_records))
        window_indices = np.concatenate([windows_of_record[index] for index in drawn])
        for name, value in metric_function(window_indices).items():
            samples.setdefault(name, []).append(value)
    return {name: np.asarray(values, dtype=np.float64) for name, values in samples.items()}


def percentile_interval(values: np.ndarray, confidence: float = 0.95) -> list[float | None]:
    """`[low, high]` percentile interval of the finite `values` (`[None, None]` when none is finite)."""
    finite = values[np.isfinite(values)]
    tail = (1.0 - confidence) / 2.0
    return [float(np.quantile(finite, tail)), float(np.quantile(finite, 1.0 - tail))] if len(finite) else [None, None]


def percentile_intervals(samples: dict[str, np.ndarray], confidence: float = 0.95) -> tuple[dict[str, list[float]], int]:
    """`{metric: [low, high]}` of `bootstrap_samples` and the largest number of undefined (NaN) resamples of a
    metric, which were left out."""
    intervals = {name: percentile_interval(values, confidence) for name, values in samples.items()}
    undefined = max((int((~np.isfinite(values)).sum()) for values in samples.values()), default=0)
    return intervals, undefined


def bootstrap_intervals(
    metric_function: Callable[[np.ndarray], dict[str, float]],
    records: np.ndarray,
    num_resamples: int = 200,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[dict[str, list[float]], int]:
    """Percentile bootstrap over test records (`bootstrap_samples`): `{metric: [low, high]}` and the number of
    resamples per metric that were undefined (NaN, e.g. a resample with a single class) and left out."""
    return percentile_intervals(bootstrap_samples(metric_function, records, num_resamples, seed), confidence)


def paired_difference(
    value: float, reference_value: float, samples: np.ndarray, reference_samples: np.ndarray, confidence: float = 0.95
) -> dict:
    """`value - reference_value` with the percentile interval of the per-resample differences.

    `samples` and `reference_samples` are one metric's `bootstrap_samples` of two sets of predictions on the same
    windows with the same seed, so resample i scores both on the same records: the interval of the difference is
    narrower than the two separate intervals suggest when the two move together. `resolved` is True when the
    interval excludes 0; resamples undefined for either side are left out (`undefined`).
    """
    if samples.shape != reference_samples.shape:
        raise ValueError(f"paired_difference: {samples.shape} and {reference_samples.shape} resamples do not pair")
    low, high = percentile_interval(samples - reference_samples, confidence)
    return {"difference": float(value - reference_value), "ci95": [low, high],
            "resolved": low is not None and (low > 0 or high < 0),
            "undefined": int((~np.isfinite(samples - reference_samples)).sum())}


@dataclass
class TaskResult:
    """Scores of one probe on one task (probe-test), with bootstrap intervals and bookkeeping."""

    task: str
    metrics: dict[str, float]
    intervals: dict[str, list[float | None]] = field(default_factory=dict)
    num_train_windows: int = 0
    num_test_windows: int = 0
    num_train_records: int = 0
    num_test_records: int = 0
    regularization_c: float | None = None
    cross_validation: dict[str, float | None] = field(default_factory=dict)
    selection_note: str = ""
    undefined_bootstrap_resamples: int = 0

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def score_probe(
    task: ProbeTask,
    probe: FittedProbe,
    test_features: np.ndarray,
    test_labels: np.ndarray,
    test_records: np.ndarray,
    num_bootstrap: int = 200,
    seed: int = 0,
) -> tuple[dict[str, float], dict[str, list[float | None]], int]:
    """Point metrics on probe-test plus their record-bootstrap intervals (`num_bootstrap=0` skips them)."""
    probabilities = full_probabilities(probe, test_features, task.num_classes)
    metrics = task_metrics(task, test_labels, probabilities)
    if num_bootstrap <= 0:
        return metrics, {}, 0
    intervals, undefined = percentile_intervals(
        task_bootstrap_samples(task, test_labels, probabilities, test_records, num_bootstrap, seed)
    )
    return metrics, intervals, undefined


def task_bootstrap_samples(
    task: ProbeTask, labels: np.ndarray, probabilities: np.ndarray, records: np.ndarray, num_resamples: int, seed: int
) -> dict[str, np.ndarray]:
    """`bootstrap_samples` of every `task_metrics` metric of class probabilities `(n, num_classes)` on test windows."""
    return bootstrap_samples(lambda indices: task_metrics(task, labels[indices], probabilities[indices]), records,
                             num_resamples, seed)


# ----------------------------------------------------------------------------------------------- folding
def fold_probe_into_linear(probe: FittedProbe, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Fold StandardScaler + LogisticRegression into one linear map `logits = features @ weight.T + bias`.

    With `z = (x - mean) / scale` and decision `coef @ z + intercept`:
    `weight = coef / scale`, `bias = intercept - weight @ mean`.
    Multiclass: `weight` is `(num_classes, features)` and the logits are the probe's `decision_function`
    (argmax = `predict`, softmax = `predict_proba`). Binary: sklearn keeps one row (the decision for class
    1); the head gets two logits `[0, decision]`, so the logit difference is the decision function, argmax
    equals `predict` (ties at 0 go to class 0 in both) and softmax equals `predict_proba`.
    Classes absent from probe-train get a logit of -1e4 (never predicted).
    """
    scaler = probe.pipeline.named_steps["scaler"]
    logistic = probe.pipeline.named_steps["logistic"]
    scale = np.where(scaler.scale_ == 0, 1.0, scaler.scale_) if scaler.scale_ is not None else 1.0
    mean = scaler.mean_ if scaler.mean_ is not None else 0.0
    coefficient = logistic.coef_ / scale  # (rows, features)
    intercept = logistic.intercept_ - coefficient @ np.broadcast_to(mean, (coefficient.shape[1],))
    num_features = coefficient.shape[1]
    weight = np.zeros((num_classes, num_features))
    bias = np.full(num_classes, -1e4)
    if len(probe.classes) == 2:
        negative_class, positive_class = probe.classes
        weight[positive_class], bias[positive_class] = coefficient[0], intercept[0]
        bias[negative_class] = 0.0
    else:
        weight[probe.classes], bias[probe.classes] = coefficient, intercept
    return weight, bias


def folded_decision_function(probe: FittedProbe, num_classes: int, features: np.ndarray) -> np.ndarray:
    """The probe's decision function in the folded head's layout: `(n, num_classes)` logits."""
    decision = probe.decision_function(features)
    logits = np.full((len(features), num_classes), -1e4)
    if len(probe.classes) == 2:
        logits[:, probe.classes[0]] = 0.0
        logits[:, probe.classes[1]] = decision
    else:
        logits[:, probe.classes] = decision
    return logits
