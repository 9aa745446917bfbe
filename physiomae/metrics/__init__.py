"""PhysioMAE's `evaluate` metrics, loadable offline from this package's folders, and `Trainer` hooks.

- `sleep_staging/` (`evaluate` module `sleep_staging`): balanced accuracy, macro F1, Cohen's kappa, per-stage
  F1 (`f1_W` ... `f1_REM`) and the counts of scored / ignored windows, from predicted and true stage indices
  (-1 = undefined, ignored).
- `arousal_auprc/` (`evaluate` module `arousal_auprc`): the PhysioNet/CinC Challenge 2018's gross AUPRC and
  gross AUROC of arousal probabilities (references 1 / 0 / -1, -1 ignored).

    from physiomae.metrics import load_metric, sleep_staging_compute_metrics
    load_metric("sleep_staging").compute(predictions=[0, 2, 4], references=[0, 2, -1])
    trainer = Trainer(..., compute_metrics=sleep_staging_compute_metrics())

`load_metric(name)` is `evaluate.load(str(METRICS_DIR / name))`: a local path, so nothing is fetched from the
Hub (it works with `HF_HUB_OFFLINE=1` / no network). `evaluate.load` copies the metric script and the files
it imports relatively into `HF_MODULES_CACHE` (`$HF_HOME/modules/evaluate_modules/metrics/<name>/<hash>/`)
and imports it from there.

Where the one implementation lives, and why: in `sleep_staging/staging_scores.py` and
`arousal_auprc/arousal_scores.py`, plain numpy (and scipy) functions next to each metric script. The metric
scripts import them relatively (`from .staging_scores import ...`); `evaluate.load` recognises such an import
as a local file, copies it into the module cache with the script and hashes both, so a loaded metric never
runs stale code and each metric folder is self-contained (it needs neither `physiomae` on the path nor a
particular installed version of it, and can be pushed to the Hub as is). `physiomae.evaluation.probing`
(eval.py's scores and its record bootstrap) imports the very same files as ordinary modules of this package,
without importing `evaluate` (several seconds), and calls their fast paths (`confusion_counts` +
`confusion_metrics`, `challenge_gross_auprc`, `binary_auroc`) directly. The alternative, metric scripts that
import `physiomae.metrics._compute`, would tie every loaded copy to whatever `physiomae` happens to be
importable and would not survive being copied out of the package.

Importing this package imports numpy only; `evaluate` is imported when a metric is loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from .sleep_staging.staging_scores import DEFAULT_STAGE_NAMES

if TYPE_CHECKING:  # pragma: no cover
    import evaluate
    from transformers import EvalPrediction

METRICS_DIR = Path(__file__).resolve().parent
METRIC_NAMES = ("sleep_staging", "arousal_auprc")

__all__ = [
    "METRICS_DIR",
    "METRIC_NAMES",
    "DEFAULT_STAGE_NAMES",
    "metric_path",
    "load_metric",
    "sleep_staging_compute_metrics",
    "arousal_compute_metrics",
]


def metric_path(name: str) -> Path:
    """Folder of the metric `name` (one of `METRIC_NAMES`); it holds `<name>.py`."""
    if name not in METRIC_NAMES:
        raise ValueError(f"unknown PhysioMAE metric {name!r}; known: {list(METRIC_NAMES)}")
    return METRICS_DIR / name


def load_metric(name: str, **kwargs) -> "evaluate.EvaluationModule":
    """`evaluate.load(str(metric_path(name)), **kwargs)`: works offline (a local path, no Hub look-up).

    `keep_in_memory` defaults to True (no Arrow cache files for the predictions); pass `keep_in_memory=False`
    with `num_process` / `process_id` for distributed evaluation. `sleep_staging` also takes `stage_names`.
    """
    import evaluate

    kwargs.setdefault("keep_in_memory", True)
    return evaluate.load(str(metric_path(name)), **kwargs)


def _first(value):
    """Models may return a tuple of outputs (logits first); `Trainer` passes it through."""
    return value[0] if isinstance(value, (tuple, list)) else value


def _predictions_and_labels(eval_pred) -> tuple[np.ndarray, np.ndarray]:
    predictions = np.asarray(_first(eval_pred.predictions))
    labels = np.asarray(_first(eval_pred.label_ids)).reshape(-1)
    if len(predictions) != len(labels):
        raise ValueError(f"compute_metrics: {len(predictions)} prediction rows for {len(labels)} labels")
    # -100 (the Trainer / PyTorch ignore index) and -1 (undefined) are both "not scored".
    labels = np.where(labels < 0, -1, labels).astype(np.int64)
    return predictions, labels


def sleep_staging_compute_metrics(
    stage_names: Sequence[str] = DEFAULT_STAGE_NAMES,
) -> Callable[["EvalPrediction"], dict[str, float]]:
    """A `compute_metrics` for `transformers.Trainer`: logits `(n, len(stage_names))` -> argmax -> the
    `sleep_staging` metric (labels -100 / -1 ignored and counted in `num_ignored`).

    The metric is loaded once, here; the returned function can be called for every evaluation.
    """
    stage_names = tuple(stage_names)
    metric = load_metric("sleep_staging", stage_names=stage_names)

    def compute_metrics(eval_pred: "EvalPrediction") -> dict[str, float]:
        logits, labels = _predictions_and_labels(eval_pred)
        if logits.ndim != 2 or logits.shape[1] != len(stage_names):
            raise ValueError(f"sleep staging compute_metrics expects logits (n, {len(stage_names)}) for stages "
                             f"{stage_names}; got shape {logits.shape}")
        return metric.compute(predictions=logits.argmax(axis=-1), references=labels)

    return compute_metrics


def arousal_probability(logits: np.ndarray, positive_index: int = 1) -> np.ndarray:
    """Probability of arousal from a classifier's logits: softmax column `positive_index` of `(n, 2)` logits,
    or the sigmoid of `(n,)` / `(n, 1)` logits."""
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim == 2 and logits.shape[1] == 2:
        difference = logits[:, positive_index] - logits[:, 1 - positive_index]
    elif logits.ndim == 1 or (logits.ndim == 2 and logits.shape[1] == 1):
        difference = logits.reshape(-1)
    else:
        raise ValueError(f"arousal logits must be (n, 2), (n, 1) or (n,); got shape {logits.shape}")
    # Softmax of two logits = sigmoid of their difference; written so that exp never overflows.
    exp_negative_magnitude = np.exp(-np.abs(difference))
    return np.where(difference >= 0, 1.0 / (1.0 + exp_negative_magnitude),
                    exp_negative_magnitude / (1.0 + exp_negative_magnitude))


def arousal_compute_metrics(
    positive_index: int = 1, digits: int | None = None
) -> Callable[["EvalPrediction"], dict[str, float]]:
    """A `compute_metrics` for `transformers.Trainer` on the arousal task: logits -> probability of arousal
    (`arousal_probability`) -> the `arousal_auprc` metric (gross AUPRC / AUROC; labels -100 / -1 ignored).
    `digits`: decimals of the challenge's rounding (default: the metric's, 3)."""
    metric = load_metric("arousal_auprc")
    options = {} if digits is None else {"digits": int(digits)}

    def compute_metrics(eval_pred: "EvalPrediction") -> dict[str, float]:
        logits, labels = _predictions_and_labels(eval_pred)
        return metric.compute(prediction_scores=arousal_probability(logits, positive_index), references=labels,
                              **options)

    return compute_metrics
