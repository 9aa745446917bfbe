"""Arousal scores of the PhysioNet/CinC Challenge 2018, and the rank AUROC: the one implementation behind the
`arousal_auprc` metric module (`arousal_auprc.py`, next to this file) and `physiomae.evaluation.probing`
(eval.py's gross AUPRC, macro AUROC and their record bootstrap).

Self-contained on purpose (numpy and scipy only), like `sleep_staging/staging_scores.py`: `evaluate.load`
copies this file next to the metric script (`from .arousal_scores import ...`), and the package imports it as
`physiomae.metrics.arousal_auprc.arousal_scores` without importing `evaluate`.

The challenge's scorer (`score2018.py`, class `Challenge2018Score`) histograms the predicted probabilities
into `10**digits + 1` bins (probabilities rounded to `digits` = 3 decimals; a value outside
`[-0.5e-3, 1 + 0.5e-3]` or NaN is an error), pools the counts of target-arousal samples (reference > 0) and
non-arousal samples (reference == 0) over *all* records ("gross"; samples with a negative reference are not
scored) and sweeps the threshold over the bins. AUPRC is the step sum `sum_k (recall_{k-1} - recall_k) *
precision_{k-1}` (no trapezoids: the average precision of the rounded scores), AUROC the trapezoid sum over
(TPR, TNR), i.e. the Mann-Whitney AUROC of the rounded scores with ties counted one half.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

CHALLENGE_DIGITS = 3  # Challenge2018Score's default input_digits


def challenge_bins(probability, digits: int = CHALLENGE_DIGITS) -> np.ndarray:
    """Bin index `0..10**digits` of each probability, exactly as the challenge's
    `numpy.histogram(p, bins=10**digits + 1, range=(-0.5 / 10**digits, 1 + 0.5 / 10**digits))` assigns it
    (the same edges; about `round(p, digits)`, halves going wherever those float edges put them).
    Raises `ValueError` for NaN or values outside that range, as the challenge's scorer does."""
    scale = 10**digits
    probability = np.asarray(probability, dtype=np.float64)
    edges = np.linspace(-0.5 / scale, 1.0 + 0.5 / scale, scale + 2)
    bins = np.searchsorted(edges, probability, side="right") - 1
    bins[probability == edges[-1]] = scale  # the histogram's last bin includes its right edge
    invalid = (bins < 0) | (bins > scale)  # NaN sorts past the last edge
    if invalid.any():
        raise ValueError(f"arousal probabilities must lie in [0, 1] (not NaN); found e.g. {probability[invalid][:5].tolist()}")
    return bins


def challenge_gross_scores(references, probability, digits: int = CHALLENGE_DIGITS) -> tuple[float, float]:
    """`(gross_auroc, gross_auprc)` of the challenge over all given samples pooled; NaN, NaN when the scored
    samples hold a single class. Negative references are ignored (their probabilities are not checked)."""
    references = np.asarray(references).reshape(-1)
    probability = np.asarray(probability).reshape(-1)
    if references.shape != probability.shape:
        raise ValueError(f"{len(probability)} probabilities for {len(references)} references")
    scored = references >= 0
    bins = challenge_bins(probability[scored], digits)
    is_positive = references[scored] > 0
    scale = 10**digits
    positives = np.bincount(bins[is_positive], minlength=scale + 1).astype(np.float64)
    negatives = np.bincount(bins[~is_positive], minlength=scale + 1).astype(np.float64)
    total_positives, total_negatives = positives.sum(), negatives.sum()
    if total_positives == 0 or total_negatives == 0:
        return float("nan"), float("nan")
    # Counts at or above each bin (the samples called positive when the threshold is that bin).
    positives_at_or_above = np.cumsum(positives[::-1])[::-1]
    negatives_at_or_above = np.cumsum(negatives[::-1])[::-1]
    # AUPRC: raising the threshold past bin k loses recall positives[k] / P at precision TP / (TP + FP) of
    # threshold k (> 0 samples there whenever positives[k] > 0).
    has_positives = positives > 0
    precision = positives_at_or_above[has_positives] / (positives_at_or_above + negatives_at_or_above)[has_positives]
    auprc = float(np.sum(positives[has_positives] * precision) / total_positives)
    # AUROC: pairs (positive, negative) with the positive in a higher bin, plus half the pairs in one bin.
    positives_above = positives_at_or_above - positives
    auroc = float(np.sum(negatives * (positives_above + 0.5 * positives)) / (total_positives * total_negatives))
    return auroc, auprc


def challenge_gross_auprc(references, probability, digits: int = CHALLENGE_DIGITS) -> float:
    """The challenge's gross AUPRC (its ranking score); see `challenge_gross_scores`."""
    return challenge_gross_scores(references, probability, digits)[1]


def binary_auroc(is_positive, scores) -> float:
    """AUROC of raw scores by the rank-sum (Mann-Whitney) statistic, ties counted one half; NaN without both
    classes. Same value as `sklearn.metrics.roc_auc_score`, without its per-call validation cost (the record
    bootstrap calls this thousands of times)."""
    is_positive = np.asarray(is_positive, dtype=bool)
    num_positive = int(is_positive.sum())
    num_negative = len(is_positive) - num_positive
    if num_positive == 0 or num_negative == 0:
        return float("nan")
    ranks = rankdata(scores)  # average ranks for ties
    return float((ranks[is_positive].sum() - num_positive * (num_positive + 1) / 2.0) / (num_positive * num_negative))


def arousal_scores(references, prediction_scores, digits: int = CHALLENGE_DIGITS) -> dict[str, float | int]:
    """Everything the `arousal_auprc` metric reports.

    Args:
        references: 1 = target arousal, 0 = no arousal, negative (-1 = not scored, also -100) = ignored.
            Any positive value counts as arousal, as in the challenge's scorer.
        prediction_scores: probability of arousal of every sample, in [0, 1] (rounded to `digits` decimals).

    Returns:
        `gross_auprc`, `gross_auroc` (NaN when the scored samples hold a single class), `num_scored`,
        `num_positive` and `num_ignored` (sample counts).
    """
    references = np.asarray(references).reshape(-1)
    auroc, auprc = challenge_gross_scores(references, prediction_scores, digits)
    return {
        "gross_auprc": auprc,
        "gross_auroc": auroc,
        "num_scored": int((references >= 0).sum()),
        "num_positive": int((references > 0).sum()),
        "num_ignored": int((references < 0).sum()),
    }
