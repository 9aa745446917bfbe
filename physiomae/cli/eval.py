"""Evaluate frozen PhysioMAE encoders with linear probes (sleep staging, arousal, age).

    python eval.py configs/eval_tiny.yaml --output_dir outputs/eval
    python eval.py --checkpoints RUN_A RUN_B MODEL_FOLDER --dataset_dir DATASET --output_dir outputs/eval
    python eval.py --real_segments_dir ../shared/data/physionet2018-segments --checkpoints RUN --output_dir out

A checkpoint is a training output folder (`run_args.json` + `export/`, one folder per modality for
`mae_unimodal`) or any saved / Hub-format PhysioMAE folder. The hand-crafted band-power baseline is always
reported. Writes OUTPUT/results.json, comparison.{json,md}, robustness.md, analysis/<variant>/*.png and one
Hub-format classifier per variant and task (OUTPUT/<variant>-sleep-staging, -arousal, -age). See
`physiomae/evaluation/runner.py` for the protocol.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

from transformers import HfArgumentParser

from physiomae.evaluation import probing
from physiomae.config_files import load_yaml_defaults, split_yaml_argument
from physiomae.evaluation.runner import EvaluationSettings, ProbeSettings, run_evaluation


@dataclass
class EvalArguments:
    """Command-line / YAML arguments of eval.py."""

    output_dir: str = field(default="outputs/eval", metadata={"help": "Where results, plots and classifiers go."})
    checkpoints: list[str] = field(
        default_factory=list,
        metadata={"help": "Training output folders (run_args.json + export/) or saved PhysioMAE model folders."},
    )
    dataset_dir: str | None = field(default=None, metadata={"help": "Dataset saved by the builder (probe_train/probe_test)."})
    real_segments_dir: str | None = field(
        default=None, metadata={"help": "Folder of real 60-s challenge segments (sleep staging only)."}
    )
    real_segments_limit: int | None = field(default=None, metadata={"help": "Use only N real segments, evenly spaced over the record list."})
    real_segments_test_fraction: float = field(default=0.5, metadata={"help": "Share of real segments in probe-test."})
    real_segments_train_dir: str | None = field(
        default=None, metadata={"help": "Other real segments to fit the probes on: probe-test is then all of "
                                        "--real_segments_dir (the test fraction is not used)."}
    )
    tasks: list[str] = field(default_factory=lambda: list(probing.TASKS), metadata={"help": "Tasks to probe."})
    batch_size: int = field(default=64, metadata={"help": "Windows per encoder forward pass."})
    c_grid: list[float] = field(default_factory=lambda: list(probing.DEFAULT_C_GRID), metadata={"help": "C values tried by CV."})
    cv_folds: int = field(default=5, metadata={"help": "GroupKFold folds (grouped by record)."})
    max_iter: int = field(default=2000, metadata={"help": "LogisticRegression max_iter."})
    bootstrap_resamples: int = field(default=200, metadata={"help": "Bootstrap resamples of test records (0 = no CIs)."})
    seed: int = field(default=0, metadata={"help": "Seed of the bootstrap."})
    robustness: bool = field(default=True, metadata={"help": "Re-score every task with each modality removed."})
    analyses: bool = field(default=True, metadata={"help": "Attention rollout and modality tuning (early fusion)."})
    analysis_windows: int = field(default=32, metadata={"help": "Probe-test windows used by the analyses."})
    export_classifiers: bool = field(default=True, metadata={"help": "Export one Hub-format classifier per task."})
    repo_prefix: str = field(default="", metadata={"help": "Hub namespace used in the model cards' repo ids."})
    device: str = field(default="cpu", metadata={"help": "Torch device of the encoders."})
    label_fractions: list[float] = field(
        default_factory=list,
        metadata={"help": "Label efficiency: refit every probe on these shares of the probe-train records "
                          "(e.g. 0.05 0.1 0.25 0.5 1); writes label_efficiency.{json,md} and a plot per task."},
    )
    label_seeds: list[int] = field(default_factory=lambda: [0, 1, 2], metadata={"help": "Seeds of the label shares."})


def parse_arguments(argv: list[str]) -> EvalArguments:
    """`[config.yaml] [--flag value ...]`: the YAML sets defaults, the command line overrides them."""
    parser = HfArgumentParser(EvalArguments)
    yaml_path, argv = split_yaml_argument(argv)
    if yaml_path is not None:
        try:
            parser.set_defaults(**load_yaml_defaults(yaml_path, [EvalArguments], program="eval.py"))
        except (FileNotFoundError, ValueError) as error:
            parser.error(str(error))
    (arguments,) = parser.parse_args_into_dataclasses(args=argv)
    return arguments


def main(argv: list[str] | None = None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    arguments = parse_arguments(sys.argv[1:] if argv is None else argv)
    settings = EvaluationSettings(
        checkpoints=arguments.checkpoints,
        output_dir=Path(arguments.output_dir),
        dataset_dir=arguments.dataset_dir,
        real_segments_dir=arguments.real_segments_dir,
        real_segments_limit=arguments.real_segments_limit,
        real_segments_test_fraction=arguments.real_segments_test_fraction,
        real_segments_train_dir=arguments.real_segments_train_dir,
        tasks=arguments.tasks,
        batch_size=arguments.batch_size,
        probe=ProbeSettings(
            c_grid=tuple(arguments.c_grid),
            cv_folds=arguments.cv_folds,
            max_iter=arguments.max_iter,
            bootstrap_resamples=arguments.bootstrap_resamples,
            seed=arguments.seed,
        ),
        robustness=arguments.robustness,
        analyses=arguments.analyses,
        analysis_windows=arguments.analysis_windows,
        export_classifiers=arguments.export_classifiers,
        repo_prefix=arguments.repo_prefix,
        device=arguments.device,
        label_fractions=tuple(arguments.label_fractions),
        label_seeds=tuple(arguments.label_seeds),
    )
    results = run_evaluation(settings)
    print((Path(arguments.output_dir) / "comparison.md").read_text())
    if arguments.label_fractions:
        print((Path(arguments.output_dir) / "label_efficiency.md").read_text())
    return results


def cli() -> int:
    """Console-script entry point (`physiomae-eval`): exit status 0 on success."""
    main()
    return 0


if __name__ == "__main__":
    sys.exit(cli())
