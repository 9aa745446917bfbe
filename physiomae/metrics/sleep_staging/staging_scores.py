"""Sleep-staging scores from a confusion matrix: the one implementation behind the `sleep_staging` metric
module (`sleep_staging.py`, next to this file) and `physiomae.evaluation.probing` (eval.py's probes and
their record bootstrap, which calls `confusion_counts` + `confusion_metrics` thousands of times).

Self-contained on purpose: this file imports only numpy, so that `evaluate.load` can copy it next to the
metric script (a relative import, `from .staging_scores import ...`) and the metric folder works on its own
(outside this package, or pushed to the Hub as an evaluate module), while the package imports the same
file as `physiomae.metrics.sleep_staging.staging_scores` without importing `evaluate`.
"""

from __future__ import annotations

import numpy as np

# The builder's stage ClassLabel names, codes 0..4 (dataset_scripts.labels.STAGE_NAMES; a test checks they agree).
DEFAULT_STAGE_NAMES = ("W", "N1", "N2", "N3", "REM")


def confusion_counts(labels, predictions, num_classes: int) -> np.ndarray:
    """`(num_classes, num_classes)` float counts, rows = true class, columns = predicted class.

    Every label and prediction must lie in `0..num_classes - 1` (no checks: this is the bootstrap's fast path;
    `sleep_staging_scores` validates and drops unscored windows first)."""
    flat = np.asarray(labels, dtype=np.int64) * num_classes + np.asarray(predictions, dtype=np.int64)
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes).astype(np.float64)


def per_class_f1(confusion: np.ndarray) -> np.ndarray:
    """F1 of every class, `(num_classes,)`; NaN for a class absent from the labels (its F1 is undefined and
    it is left out of macro F1). A class that is present but never predicted correctly has F1 0, the same
    value as scikit-learn's `f1_score(..., average=None, zero_division=0)`."""
    true_counts = confusion.sum(axis=1)
    predicted_counts = confusion.sum(axis=0)
    correct = np.diag(confusion)
    denominator = true_counts + predicted_counts  # 2 TP + FP + FN
    f1 = np.divide(2.0 * correct, denominator, out=np.zeros_like(correct), where=denominator > 0)
    f1[true_counts == 0] = np.nan
    return f1


def confusion_metrics(confusion: np.ndarray) -> dict[str, float]:
    """Balanced accuracy, macro F1 and Cohen's kappa from a confusion matrix (rows = true class).

    The same values as scikit-learn's `balanced_accuracy_score`, `f1_score(average="macro", labels=<classes
    present in the labels>, zero_division=0)` and `cohen_kappa_score`. Macro F1 and balanced accuracy average
    over the classes present in the labels; a class that is predicted but absent from the labels still costs
    through the recall of the classes it was confused with, but gets no F1 of its own (scikit-learn's default
    `labels`, the union with the predictions, would add a zero for it). NaN when the matrix is empty.
    """
    true_counts = confusion.sum(axis=1)
    predicted_counts = confusion.sum(axis=0)
    total = confusion.sum()
    if total <= 0:
        return {"balanced_accuracy": float("nan"), "macro_f1": float("nan"), "cohen_kappa": float("nan")}
    present = true_counts > 0
    correct = np.diag(confusion)
    recall = correct[present] / true_counts[present]
    f1_denominator = true_counts[present] + predicted_counts[present]  # > 0 for every present class
    f1 = 2.0 * correct[present] / f1_denominator
    observed = correct.sum() / total
    expected = float((true_counts * predicted_counts).sum()) / total**2
    kappa = (observed - expected) / (1.0 - expected) if expected < 1.0 else float("nan")
    return {"balanced_accuracy": float(recall.mean()), "macro_f1": float(f1.mean()), "cohen_kappa": float(kappa)}


def sleep_staging_scores(references, predictions, stage_names=DEFAULT_STAGE_NAMES) -> dict[str, float | int]:
    """Everything the `sleep_staging` metric reports, from class indices.

    Args:
        references: true stage indices `(n,)`; negative values (-1 = undefined stage, also -100, the PyTorch
            ignore index) are not scored, only counted in `num_ignored`.
        predictions: predicted stage indices `(n,)`, each in `0..len(stage_names) - 1`.
        stage_names: class names in index order; they name the per-stage keys `f1_<name>`.

    Returns:
        `balanced_accuracy`, `macro_f1`, `cohen_kappa`, `f1_<stage>` for every stage (NaN for a stage absent
        from the scored references), `num_scored` and `num_ignored` (window counts). The scores are NaN when
        nothing is scored.
    """
    stage_names = tuple(str(name) for name in stage_names)
    num_classes = len(stage_names)
    if num_classes < 2 or len(set(stage_names)) != num_classes:
        raise ValueError(f"stage_names must hold at least two distinct names, got {stage_names}")
    references = np.asarray(references).reshape(-1)
    predictions = np.asarray(predictions).reshape(-1)
    if references.shape != predictions.shape:
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    for name, values in (("references", references), ("predictions", predictions)):
        if values.size and not np.issubdtype(values.dtype, np.integer):
            if not np.all(np.isfinite(values)) or not np.all(values == np.round(values)):
                raise ValueError(f"{name} must be class indices (integers); got dtype {values.dtype}")
    scored = references >= 0
    references = references[scored].astype(np.int64)
    predictions = predictions[scored].astype(np.int64)
    for name, values in (("references", references), ("predictions", predictions)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"scored {name} must lie in 0..{num_classes - 1} ({num_classes} stage names {stage_names}); "
                             f"found {values.min()}..{values.max()}")
    confusion = confusion_counts(references, predictions, num_classes)
    scores: dict[str, float | int] = dict(confusion_metrics(confusion))
    for name, value in zip(stage_names, per_class_f1(confusion)):
        scores[f"f1_{name}"] = float(value)
    scores["num_scored"] = int(scored.sum())
    scores["num_ignored"] = int((~scored).sum())
    return scores
