"""Run the whole PhysioMAE experiment from one YAML file: data -> dataset -> pretraining -> evaluation.

    python run_experiment.py configs/demo.yaml                  # what `make demo` runs
    python run_experiment.py configs/experiment_base.yaml       # the same on the real PhysioNet 2018 data
    python run_experiment.py configs/release.yaml               # the shipped models (physiomae.pretrained)

Steps (each one a separate, resumable command that can also be run by hand):
1. data: `data_dir` (a challenge-layout folder, or a list of them, listed together in OUTPUT/raw/RECORDS) or,
   when it is empty, a synthetic cohort generated with `python -m dataset_scripts.synthetic_psg` into OUTPUT/cohort;
2. dataset: `python -m dataset_scripts.physionet2018 build` into OUTPUT/data (reused when present);
3. pretraining: `accelerate launch train.py TRAIN_CONFIG --strategy S` for every strategy, into OUTPUT/runs/S
   (a finished run, one with OUTPUT/runs/S/export, is skipped; an interrupted one resumes from its last checkpoint);
4. evaluation: `python eval.py EVAL_CONFIG --checkpoints OUTPUT/runs/*` into OUTPUT/eval (on
   `real_segments_dir` instead of the dataset's probe splits when it is set);
5. fine-tuning (when `finetune_strategies` is not empty): `python finetune.py` from each listed strategy's
   export against random initialisation, into OUTPUT/finetune;
6. release (when `release_dir` is set): the `release_strategy` export and its eval.py sleep-staging classifier,
   scored end to end and carded, into `release_dir` (`physiomae.release`);
then the comparison table is printed with the location of every output.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

from physiomae.config_files import read_yaml_mapping, resolve_config
from physiomae.io import atomic_write_text
from physiomae.strategies import STRATEGY_NAMES

STRATEGIES = list(STRATEGY_NAMES)
STEP_SECONDS: dict[str, float] = {}  # wall time of every step this run ran, by title (printed at the end)


@dataclass
class ExperimentSettings:
    """The experiment's YAML file (keys = field names)."""

    output_dir: str = "outputs/demo"
    data_dir: str | list[str] | None = None  # challenge-layout folder(s); None -> generate a synthetic cohort
    synthetic_train: int = 24
    synthetic_test: int = 24
    synthetic_hours: float = 1.0
    synthetic_seed: int = 0
    build_num_proc: int = 2
    train_config: str = "configs/tiny.yaml"
    train_args: list[str] = field(default_factory=list)  # extra train.py flags, e.g. ["--max_steps", "300"]
    strategies: list[str] = field(default_factory=lambda: list(STRATEGIES))
    num_processes: int = 1  # processes per strategy (GPUs, or CPU processes through torchrun)
    mixed_precision: str = "no"
    eval_config: str = "configs/eval_tiny.yaml"
    eval_args: list[str] = field(default_factory=list)
    real_segments_dir: str | None = None  # labelled real excerpts to probe / fine-tune on instead of the probe splits
    real_segments_train_dir: str | None = None  # other labelled excerpts to fit on: real_segments_dir is then all test
    finetune_strategies: list[str] = field(default_factory=list)  # fine-tune these strategies' exports (finetune.py)
    finetune_args: list[str] = field(default_factory=list)  # extra finetune.py flags, e.g. ["--max_steps", "300"]
    release_dir: str | None = None  # write the shipped encoder + sleep stager here (physiomae.release)
    release_report_dir: str | None = None  # and the release's measured numbers and plot here
    release_strategy: str = "mae_modality_drop"
    release_name: str = "physiomae-tiny"  # the shipped folders: NAME (encoder) and NAME-sleep-staging
    release_dtype: str = "float32"  # their weights' dtype, e.g. bfloat16 to halve a larger model's files

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> "ExperimentSettings":
        values = read_yaml_mapping(path)
        known = {item.name for item in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise SystemExit(f"{path}: unknown setting(s) {unknown}; known: {sorted(known)}")
        settings = cls(**values)
        bad = sorted(set(settings.strategies) - set(STRATEGIES))
        if bad:
            raise SystemExit(f"{path}: unknown strategies {bad}; choose from {STRATEGIES}")
        if settings.release_dir and not {settings.release_strategy, "random_init"} <= set(settings.strategies):
            raise SystemExit(f"{path}: a release needs the strategies {settings.release_strategy} and random_init")
        if settings.release_dir and not settings.real_segments_dir:
            raise SystemExit(f"{path}: a release is scored on real_segments_dir, which is not set")
        missing = sorted(set(settings.finetune_strategies) - set(settings.strategies))
        if missing:
            raise SystemExit(f"{path}: finetune_strategies {missing} are not among the strategies {settings.strategies}")
        return settings


def run_step(title: str, command: list[str], env: dict[str, str] | None = None) -> None:
    """Run one step in a subprocess, streaming its output; stop the experiment if it fails."""
    print(f"\n=== {title}\n$ {shlex.join(command)}", flush=True)
    started = time.perf_counter()
    completed = subprocess.run(command, env={**os.environ, **(env or {})})
    if completed.returncode != 0:
        raise SystemExit(f"step '{title}' failed with exit code {completed.returncode}: {shlex.join(command)}")
    STEP_SECONDS[title] = time.perf_counter() - started
    print(f"=== {title}: done in {STEP_SECONDS[title]:.0f} s", flush=True)


def prepare_data(settings: ExperimentSettings, output_dir: Path) -> Path:
    """Return the raw challenge-layout folder, generating the synthetic cohort when none is given. Several
    folders become one: OUTPUT/raw/RECORDS lists the records of each (their RECORDS file, else their
    sub-folders) by absolute path, which the builder reads as one data folder."""
    if isinstance(settings.data_dir, str):
        return Path(settings.data_dir)
    if settings.data_dir:
        return list_records(settings.data_dir, output_dir / "raw")
    cohort_dir = output_dir / "cohort"
    if (cohort_dir / "age-sex.csv").is_file():
        print(f"=== synthetic cohort: reusing {cohort_dir}")
        return cohort_dir
    run_step(
        "synthetic cohort",
        [sys.executable, "-m", "dataset_scripts.synthetic_psg", "--out", str(cohort_dir),
         "--train", str(settings.synthetic_train), "--test", str(settings.synthetic_test),
         "--hours", str(settings.synthetic_hours), "--seed", str(settings.synthetic_seed)],
    )
    return cohort_dir


def list_records(folders: list[str], raw_dir: Path) -> Path:
    """OUTPUT/raw/RECORDS: every record the builder finds in each folder (`find_records`, any accepted layout), by
    absolute path without extension; what a folder lists but lacks is printed, and the builder reports it again."""
    from dataset_scripts.physionet2018 import find_records

    lines = []
    for folder in folders:
        listing = find_records(folder)
        for problem in listing.problems:
            print(f"=== data: {problem['where']}: {problem['record']}: {problem['problem']}")
        lines += [str(Path(record.header).resolve().with_suffix("")) for record in listing.records]
    raw_dir.mkdir(parents=True, exist_ok=True)
    text = "".join(f"{line}\n" for line in lines)
    if not (raw_dir / "RECORDS").is_file() or (raw_dir / "RECORDS").read_text() != text:
        atomic_write_text(raw_dir / "RECORDS", text)  # rewritten only when it changes: the build's fingerprint stays
    print(f"=== data: {len(lines)} records of {len(folders)} folders listed in {raw_dir / 'RECORDS'}")
    return raw_dir


def build_dataset(settings: ExperimentSettings, raw_dir: Path, output_dir: Path) -> Path:
    """Build (or reuse) the windowed dataset; return the builder's output folder."""
    data_dir = output_dir / "data"
    if (data_dir / "dataset").is_dir():
        print(f"=== dataset: reusing {data_dir / 'dataset'}")
        return data_dir
    run_step(
        "dataset build",
        [sys.executable, "-m", "dataset_scripts.physionet2018", "build", "--data_dir", str(raw_dir),
         "--output_dir", str(data_dir), "--num_proc", str(settings.build_num_proc)],
    )
    return data_dir


def launcher_command(settings: ExperimentSettings) -> tuple[list[str], dict[str, str]]:
    """`accelerate launch` on GPUs or one CPU process; torchrun for several CPU processes.

    `accelerate launch --cpu --num_processes 2` silently runs one process, so real CPU multi-process
    goes through torchrun with ACCELERATE_USE_CPU=true (gloo).
    """
    import torch

    if settings.num_processes > 1 and not torch.cuda.is_available():
        return (
            [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(settings.num_processes)],
            {"ACCELERATE_USE_CPU": "true"},
        )
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_machines", "1",
               "--num_processes", str(settings.num_processes), "--mixed_precision", settings.mixed_precision,
               "--dynamo_backend", "no"]
    if settings.num_processes > 1:
        command.append("--multi_gpu")
    return command, {}


def pretrain_all(settings: ExperimentSettings, data_dir: Path, output_dir: Path) -> list[Path]:
    """Pretrain every strategy; a run whose export exists is reused."""
    launcher, env = launcher_command(settings)
    run_dirs = []
    for strategy in settings.strategies:
        run_dir = output_dir / "runs" / strategy
        run_dirs.append(run_dir)
        if (run_dir / "export").is_dir():
            print(f"=== pretraining {strategy}: reusing {run_dir}")
            continue
        run_step(
            f"pretraining {strategy}",
            launcher + ["-m", "physiomae.cli.train", resolve_config(settings.train_config), "--strategy", strategy,
                        "--dataset_dir", str(data_dir), "--output_dir", str(run_dir),
                        "--mixed_precision", settings.mixed_precision, "--resume_from_checkpoint", "latest",
                        *settings.train_args],
            env,
        )
    return run_dirs


def probe_data_flags(settings: ExperimentSettings, data_dir: Path) -> list[str]:
    """eval.py's / finetune.py's data: the real excerpts when set, else the dataset's probe splits."""
    if not settings.real_segments_dir:
        return ["--dataset_dir", str(data_dir)]
    flags = ["--real_segments_dir", settings.real_segments_dir]
    return flags + (["--real_segments_train_dir", settings.real_segments_train_dir] if settings.real_segments_train_dir else [])


def evaluate_all(settings: ExperimentSettings, data_dir: Path, run_dirs: list[Path], output_dir: Path) -> Path:
    eval_dir = output_dir / "eval"
    data = probe_data_flags(settings, data_dir)
    run_step(
        "evaluation",
        [sys.executable, "-m", "physiomae.cli.eval", resolve_config(settings.eval_config), *data,
         "--checkpoints", *map(str, run_dirs), "--output_dir", str(eval_dir), *settings.eval_args],
    )
    return eval_dir


def finetune_all(settings: ExperimentSettings, data_dir: Path, output_dir: Path) -> Path | None:
    """Fine-tune the listed strategies' exports against random initialisation (finetune.py)."""
    if not settings.finetune_strategies:
        return None
    finetune_dir = output_dir / "finetune"
    data = probe_data_flags(settings, data_dir)
    run_step(
        "fine-tuning",
        [sys.executable, "-m", "physiomae.cli.finetune", *data, "--checkpoints",
         *(str(output_dir / "runs" / strategy) for strategy in settings.finetune_strategies),
         "--output_dir", str(finetune_dir), *settings.finetune_args],
    )
    return finetune_dir


def release(settings: ExperimentSettings, output_dir: Path, eval_dir: Path, finetune_dir: Path | None,
            config: str) -> None:
    """Write the shipped encoder and sleep stager (`physiomae.release`) and print the release's numbers."""
    from physiomae.release import write_release

    print(f"\n=== release into {settings.release_dir}", flush=True)
    started = time.perf_counter()
    report_dir = Path(settings.release_report_dir or output_dir / "release")
    write_release(output_dir / "runs" / settings.release_strategy, output_dir / "runs" / "random_init", eval_dir,
                  finetune_dir, settings.real_segments_dir, Path(settings.release_dir), report_dir,
                  command=f"python run_experiment.py {config}", strategy=settings.release_strategy,
                  name=settings.release_name, dtype=settings.release_dtype)
    print((report_dir / "release.md").read_text())
    STEP_SECONDS["release"] = time.perf_counter() - started
    print(f"=== release: done in {STEP_SECONDS['release']:.0f} s; shipped folders in {settings.release_dir}, "
          f"report in {report_dir}")


def print_summary(output_dir: Path, data_dir: Path, run_dirs: list[Path], eval_dir: Path) -> None:
    table = eval_dir / "comparison.md"
    print("\n" + "=" * 80)
    print(table.read_text() if table.is_file() else f"(no comparison table at {table})")
    print("Outputs:")
    print(f"  dataset + build report     {data_dir}/dataset, {data_dir}/build_report.json")
    for run_dir in run_dirs:
        print(f"  {run_dir.name:<26} {run_dir}/export (Hub format), {run_dir}/loss_curves.png")
    print(f"  comparison table           {eval_dir}/comparison.md, {eval_dir}/comparison.json")
    print(f"  robustness, analyses       {eval_dir}/robustness.md, {eval_dir}/analysis/")
    print(f"  task classifiers           {eval_dir}/*-sleep-staging, *-arousal, *-age")


def print_step_times(total_seconds: float) -> None:
    """Wall time of every step run (reused steps are not listed) and of the whole experiment."""
    print(f"\nStep times ({os.cpu_count()} CPU(s), OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}):")
    for title, seconds in STEP_SECONDS.items():
        print(f"  {title:<36} {seconds:7.0f} s")
    print(f"Experiment finished in {total_seconds / 60:.1f} min.")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="experiment YAML, a path or a packaged config's name (demo, real_segments, ...)")
    parser.add_argument("--output_dir", help="overrides the YAML's output_dir")
    parser.add_argument("--strategies", nargs="+", choices=STRATEGIES, help="overrides the YAML's strategies")
    arguments = parser.parse_args(argv)
    settings = ExperimentSettings.from_yaml(arguments.config)
    if arguments.output_dir:
        settings.output_dir = arguments.output_dir
    if arguments.strategies:
        settings.strategies = arguments.strategies
    output_dir = Path(settings.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    STEP_SECONDS.clear()
    started = time.perf_counter()
    raw_dir = prepare_data(settings, output_dir)
    data_dir = build_dataset(settings, raw_dir, output_dir)
    run_dirs = pretrain_all(settings, data_dir, output_dir)
    eval_dir = evaluate_all(settings, data_dir, run_dirs, output_dir)
    finetune_dir = finetune_all(settings, data_dir, output_dir)
    print_summary(output_dir, data_dir, run_dirs, eval_dir)
    if finetune_dir is not None:
        print((finetune_dir / "finetune.md").read_text())
    if settings.release_dir:
        release(settings, output_dir, eval_dir, finetune_dir, arguments.config)
    print_step_times(time.perf_counter() - started)


if __name__ == "__main__":
    main()
