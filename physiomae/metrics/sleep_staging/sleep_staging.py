"""`sleep_staging`: an `evaluate` metric for 30-s sleep staging (balanced accuracy, macro F1, Cohen's kappa,
per-stage F1), with undefined stages (-1) ignored and counted.

Load it offline from its folder (no Hub access):

    import evaluate
    from physiomae.metrics import METRICS_DIR
    sleep_staging = evaluate.load(str(METRICS_DIR / "sleep_staging"))
    sleep_staging.compute(predictions=[0, 2, 2, 4], references=[0, 2, -1, 3])

The computation lives in `staging_scores.py` next to this file (numpy only), which `evaluate.load` copies
along with this script and which `physiomae.evaluation.probing` imports too, so that eval.py's probes and a
`Trainer`'s `compute_metrics` report the same numbers.
"""

import datasets
import evaluate

from .staging_scores import DEFAULT_STAGE_NAMES, sleep_staging_scores

_DESCRIPTION = """\
Sleep-staging scores of per-window stage predictions (AASM stages of 30-s windows: W, N1, N2, N3, REM by
default). Balanced accuracy is the mean recall over the stages present in the references; macro F1 is the
mean F1 over the same stages (a stage absent from the references gets no F1: `f1_<stage>` is NaN and it is
left out of the mean); Cohen's kappa is computed over all scored windows. References below 0 (-1 = undefined
stage, e.g. movement or unscored epochs; also -100, the PyTorch ignore index) are not scored and are counted
in `num_ignored`. The values equal scikit-learn's `balanced_accuracy_score`, `f1_score(average="macro",
labels=<stages present in the references>)`, `f1_score(average=None)` and `cohen_kappa_score` on the scored
windows.
"""

_CITATION = """\
@article{berry2017aasm,
  title   = {AASM Scoring Manual Updates for 2017 (Version 2.4)},
  author  = {Berry, Richard B. and Brooks, Rita and Gamaldo, Charlene and Harding, Susan M. and Lloyd,
             Robin M. and Quan, Stuart F. and Troester, Matthew T. and Vaughn, Bradley V.},
  journal = {Journal of Clinical Sleep Medicine},
  volume  = {13},
  number  = {5},
  pages   = {665--666},
  year    = {2017}
}
@article{cohen1960kappa,
  title   = {A Coefficient of Agreement for Nominal Scales},
  author  = {Cohen, Jacob},
  journal = {Educational and Psychological Measurement},
  volume  = {20},
  number  = {1},
  pages   = {37--46},
  year    = {1960}
}
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): predicted stage index of each window, in 0..len(stage_names)-1 (class
        indices, not scores: take the argmax of the logits first, as
        `physiomae.metrics.sleep_staging_compute_metrics` does for a `Trainer`).
    references (`list` of `int`): true stage index of each window; negative values (-1 = undefined) are
        ignored and counted.
    stage_names (`list` of `str`, optional): stage names in index order; they name the `f1_<stage>` keys.
        Default: the value given to `evaluate.load(..., stage_names=...)`, else W, N1, N2, N3, REM.
Returns:
    balanced_accuracy (`float`), macro_f1 (`float`), cohen_kappa (`float`): NaN when no window is scored.
    f1_<stage> (`float`) for every stage: NaN for a stage absent from the scored references.
    num_scored (`int`): windows scored; num_ignored (`int`): windows with a negative reference.
Examples:
    >>> sleep_staging = evaluate.load("physiomae/metrics/sleep_staging")
    >>> results = sleep_staging.compute(predictions=[0, 1, 2, 3, 4, 2], references=[0, 1, 2, 3, 4, -1])
    >>> results["balanced_accuracy"], results["f1_REM"], results["num_scored"], results["num_ignored"]
    (1.0, 1.0, 5, 1)
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class SleepStaging(evaluate.Metric):
    """Sleep-staging metric; `stage_names` (init or compute argument) names the classes."""

    def __init__(self, stage_names=None, **kwargs):
        self.stage_names = tuple(stage_names) if stage_names is not None else DEFAULT_STAGE_NAMES
        super().__init__(**kwargs)

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
            format="numpy",
            reference_urls=[
                "https://aasm.org/clinical-resources/scoring-manual/",
                "https://scikit-learn.org/stable/modules/model_evaluation.html#balanced-accuracy-score",
                "https://physionet.org/content/challenge-2018/1.0.0/",
            ],
        )

    def _compute(self, predictions, references, stage_names=None):
        return sleep_staging_scores(references, predictions, self.stage_names if stage_names is None else stage_names)
