"""`arousal_auprc`: an `evaluate` metric for arousal detection, the PhysioNet/CinC Challenge 2018's gross AUPRC
(its ranking score) and gross AUROC, with unscored samples (-1) ignored.

Load it offline from its folder (no Hub access):

    import evaluate
    from physiomae.metrics import METRICS_DIR
    arousal = evaluate.load(str(METRICS_DIR / "arousal_auprc"))
    arousal.compute(prediction_scores=[0.1, 0.8, 0.4, 0.9], references=[0, 1, -1, 1])

The computation lives in `arousal_scores.py` next to this file (numpy and scipy only), which `evaluate.load`
copies along with this script and which `physiomae.evaluation.probing` imports too, so that eval.py's probes
and a `Trainer`'s `compute_metrics` report the same numbers.
"""

import datasets
import evaluate

from .arousal_scores import CHALLENGE_DIGITS, arousal_scores

_DESCRIPTION = """\
Gross area under the precision-recall curve (AUPRC) and under the ROC curve (AUROC) of arousal
probabilities, as scored by the PhysioNet/CinC Challenge 2018 ("You Snooze, You Win", score2018.py):
probabilities are rounded to 3 decimals, counts of target-arousal and non-arousal samples are pooled over all
samples of all records ("gross", not a mean over records), samples whose reference is negative (-1 = not
scored, e.g. apnoea/hypopnoea regions; also -100) are ignored, and the AUPRC is the step sum
sum_k (R_{k-1} - R_k) P_{k-1} over thresholds (the average precision of the rounded scores, no trapezoidal
interpolation). AUROC is the trapezoid area over the same thresholds (Mann-Whitney with ties counted half).
A sample can be a signal sample (the challenge) or a 30-s window (PhysioMAE's arousal task).
"""

_CITATION = """\
@inproceedings{ghassemi2018snooze,
  title     = {You Snooze, You Win: the PhysioNet/Computing in Cardiology Challenge 2018},
  author    = {Ghassemi, Mohammad M. and Moody, Benjamin E. and Lehman, Li-wei H. and Song, Christopher and
               Li, Qiao and Sun, Haoqi and Mark, Roger G. and Westover, M. Brandon and Clifford, Gari D.},
  booktitle = {2018 Computing in Cardiology Conference (CinC)},
  volume    = {45},
  pages     = {1--4},
  year      = {2018},
  doi       = {10.22489/CinC.2018.049}
}
"""

_KWARGS_DESCRIPTION = """
Args:
    prediction_scores (`list` of `float`): probability of arousal of each sample, in [0, 1] (NaN or values
        outside raise ValueError, as in the challenge's scorer).
    references (`list` of `int`): 1 = target arousal, 0 = no arousal, negative (-1) = not scored (ignored).
    digits (`int`, optional): decimals the probabilities are rounded to; default 3, the challenge's.
Returns:
    gross_auprc (`float`), gross_auroc (`float`): NaN when the scored samples hold a single class.
    num_scored (`int`), num_positive (`int`), num_ignored (`int`): sample counts.
Examples:
    >>> arousal = evaluate.load("physiomae/metrics/arousal_auprc")
    >>> results = arousal.compute(prediction_scores=[0.1, 0.2, 0.8, 0.9, 0.95], references=[0, 0, 1, 1, -1])
    >>> results["gross_auprc"], results["gross_auroc"], results["num_ignored"]
    (1.0, 1.0, 1)
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ArousalAuprc(evaluate.Metric):
    """The challenge's gross AUPRC / AUROC of arousal probabilities."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"prediction_scores": datasets.Value("float64"), "references": datasets.Value("int64")}
            ),
            format="numpy",
            homepage="https://physionet.org/content/challenge-2018/1.0.0/",
            reference_urls=[
                "https://physionet.org/content/challenge-2018/1.0.0/score2018.py",
                "https://moody-challenge.physionet.org/2018/",
            ],
        )

    def _compute(self, prediction_scores, references, digits=CHALLENGE_DIGITS):
        return arousal_scores(references, prediction_scores, digits)
