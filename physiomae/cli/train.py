#!/usr/bin/env python
"""Pretrain PhysioMAE with Accelerate: every pretraining strategy, exact resume, export and push.

Usage::

    python train.py configs/tiny.yaml --dataset_dir BUILD/dataset --output_dir outputs/tiny --max_steps 200
    python train.py configs/tiny.yaml --data_dir RAW_CHALLENGE_FOLDER --output_dir outputs/tiny   # builds first
    accelerate launch train.py configs/base.yaml --output_dir outputs/base        # GPU(s), bf16 from the YAML
    ACCELERATE_USE_CPU=true torchrun --nproc_per_node 2 train.py configs/tiny.yaml --dataset_dir D --output_dir O

The optional first argument is a YAML file whose keys are the field names of the argument dataclasses
below; its values become the defaults and the command line overrides them. `python train.py --help`
lists every field.

Strategies: mae_modality_drop (MAE + input modality dropout), mae (no dropout), mae_unimodal (one MAE per
modality, `--modalities` picks them), contrastive_pairwise / contrastive_loo (late fusion, InfoNCE),
random_init (no training: the seeded untrained model is exported).

Steps are optimizer steps; each takes `gradient_accumulation_steps` consecutive batches of a continuous
stream (epochs follow each other without a short final step). Every random draw is reproducible: data
order from (seed, epoch), masking/modality dropout from a per-process generator (seed, process index)
that is checkpointed, so a resumed run repeats the uninterrupted run's losses exactly (same seed, CPU).
Exit codes: 0 done, 1 error (NaN/inf loss, failed push after a complete export, bad arguments or data),
143/130 stopped by SIGTERM/SIGINT after saving a checkpoint.

Reconstruction quality (MAE strategies): records of the pretraining split are held out by the builder's sha1
split (`--reconstruction_eval_fraction`); every `--reconstruction_eval_steps` steps the main process scores the
relative reconstruction error 1 - R^2 per modality on them (details: `physiomae.training.reconstruction_eval`).

Where things are: arguments `physiomae.training.arguments`, strategies `physiomae.strategies`, data
`physiomae.training.data` (over `physiomae.saved_dataset`), the run folder `physiomae.training.run_folder`, the
Accelerator and optimizer `.run_setup`, the run loop `.pretraining`, checkpoints `.checkpoints`, train_log.jsonl
`.run_log`, the held-out evaluation `.reconstruction_eval`, export and plots `physiomae.training.export`.

Output layout of a run (OUTPUT = --output_dir)::

    OUTPUT/run_args.json                      every argument of the run (token redacted), written at start
    OUTPUT/train_log.jsonl                    one JSON line per logged step (loss = mean since the last line)
    OUTPUT/reconstruction_eval.json           final held-out relative reconstruction error (MAE strategies)
    OUTPUT/loss_curves.png                    loss (overall and per modality), held-out reconstruction error, lr
    OUTPUT/checkpoints/checkpoint-STEP/       Accelerate state + trainer_state.json + rank_state_R.pt
    OUTPUT/export/                            the Hub-format model folder (save_for_hub)
    OUTPUT/tensorboard/                       TensorBoard events (when tensorboard is installed)

`mae_unimodal` trains one model per modality: each has its own run folder OUTPUT/unimodal/<modality>/
(checkpoints, train_log.jsonl, reconstruction_eval.json for its single modality) and its export in
OUTPUT/export/<modality>/; OUTPUT/reconstruction_eval.json then gathers them under `runs`.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import sys
from pathlib import Path
from typing import Any

from physiomae.saved_dataset import feature_extractor_settings, find_saved_dataset, load_split
from physiomae.strategies import get_strategy
from physiomae.training.arguments import (
    DataArguments, ModelArguments, PretrainingArguments, build_model_config, check_resume_arguments, parse_arguments,
    redact, unimodal_config,
)
from physiomae.training.checkpoints import recover_checkpoint_dir, resolve_resume_path
from physiomae.training.data import build_training_data, resolve_dataset_dir
from physiomae.training.export import PushToHubError, export_model, plot_loss_curves, push_export
from physiomae.training.pretraining import NonFiniteLossError, PretrainingRun, SignalCatcher, TrainingStopped
from physiomae.training.reconstruction_eval import gather_unimodal_reconstruction_evals, reconstruction_summary_text
from physiomae.training.run_folder import EXPORT_COMPLETE_MARKER, prepare_output_dir, run_paths, write_run_args
from physiomae.training.run_setup import make_accelerator

logger = logging.getLogger("physiomae.train")


def main(argv: list[str] | None = None, hub_api=None) -> dict[str, Any]:
    """Parse arguments, train every model of the strategy, export (and push). Returns a summary dict."""
    model_args, data_args, training_args = parse_arguments(argv)
    return run(model_args, data_args, training_args, hub_api=hub_api)


def run(model_args: ModelArguments, data_args: DataArguments, training_args: PretrainingArguments,
        hub_api=None) -> dict[str, Any]:
    # 1. The run folder and its arguments (checked against the checkpointed run before anything is written).
    output_dir = Path(training_args.output_dir)
    strategy = get_strategy(training_args.strategy)
    accelerator = make_accelerator(training_args, output_dir)
    prepare_output_dir(output_dir, training_args, accelerator)
    if training_args.resume_from_checkpoint:
        check_resume_arguments(output_dir / "run_args.json", model_args, training_args)
    arguments = {**dataclasses.asdict(model_args), **dataclasses.asdict(data_args), **dataclasses.asdict(training_args)}
    write_run_args(output_dir, arguments, accelerator)
    base_config = build_model_config(model_args, training_args)

    # 2. The data (built first from --data_dir when asked) and the preprocessing it went through.
    dataset_dir = split_dataset = extractor_settings = None
    if strategy.trains:
        dataset_dir = resolve_dataset_dir(data_args, output_dir, accelerator)
    elif data_args.dataset_dir:  # random_init reads a dataset, when there is one, for its preprocessing only
        dataset_dir = find_saved_dataset(data_args.dataset_dir)
    if dataset_dir is not None:
        split_dataset = load_split(dataset_dir, data_args.split)
        extractor_settings = feature_extractor_settings(split_dataset, dataset_dir)
    if accelerator.trackers == [] and accelerator.log_with:
        accelerator.init_trackers("physiomae", config={key: value for key, value in redact(arguments).items()
                                                       if isinstance(value, (int, float, str, bool))})

    # 3. Train and export each model: one, or one per modality (mae_unimodal).
    modalities = base_config.modality_names if strategy.per_modality else [None]
    summary: dict[str, Any] = {"strategy": strategy.name, "output_dir": str(output_dir), "exports": [],
                               "reconstruction_eval": {}}
    log_paths = {}
    with SignalCatcher() as signals:
        for modality in modalities:
            config = unimodal_config(base_config, modality) if modality else base_config
            paths = run_paths(output_dir, modality)
            log_paths[modality or ""] = paths.log_path
            if accelerator.is_main_process:
                recover_checkpoint_dir(paths.checkpoints_dir)
            accelerator.wait_for_everyone()
            if modality and training_args.resume_from_checkpoint and (paths.export_dir / EXPORT_COMPLETE_MARKER).is_file():
                logger.info("%s: already trained and exported in %s, skipping", modality, paths.export_dir)
                summary["exports"].append(str(paths.export_dir))
                continue
            accelerator.free_memory()
            data = build_training_data(split_dataset, config, data_args, training_args, accelerator) if strategy.trains else None
            pretraining = PretrainingRun(accelerator, config, strategy.name, data, paths, training_args, signals,
                                         tag=modality or "")
            pretraining.build()
            card_facts: dict[str, Any] = {"seed": training_args.seed}
            if strategy.trains:
                pretraining.train(resolve_resume_path(training_args.resume_from_checkpoint, paths.checkpoints_dir,
                                                      per_modality=strategy.per_modality))
                card_facts.update({"steps": pretraining.global_step,
                                   "windows_per_step": training_args.per_device_batch_size * accelerator.num_processes
                                   * training_args.gradient_accumulation_steps,
                                   "skipped_windows_without_modality": data.dropped_rows})
                if strategy.reconstructs and data.reconstruction_eval is None:
                    summary["reconstruction_eval"][modality or ""] = {"not_measured": data.held_out_note}
                if pretraining.reconstruction_result is not None:
                    summary["reconstruction_eval"][modality or ""] = pretraining.reconstruction_result
                    card_facts["held-out relative reconstruction error (1-R²)"] = reconstruction_summary_text(
                        pretraining.reconstruction_result, data.reconstruction_eval)
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                model = copy.deepcopy(accelerator.unwrap_model(pretraining.model))
                export_model(model, paths.export_dir, strategy.name, training_args, extractor_settings, card_facts)
            summary["exports"].append(str(paths.export_dir))
            accelerator.wait_for_everyone()

    # 4. What the run leaves besides the exports: the gathered reconstruction errors, the loss curves, the push.
    if accelerator.is_main_process and strategy.per_modality:
        gather_unimodal_reconstruction_evals(output_dir, modalities)
    if accelerator.is_main_process and strategy.trains:
        plot_loss_curves(log_paths, output_dir / "loss_curves.png")
    if accelerator.trackers:
        accelerator.end_training()
    if training_args.push_to_hub and accelerator.is_main_process:
        for modality in modalities:
            repo = training_args.hub_model_id + (f"-{modality}" if modality else "")
            push_export(run_paths(output_dir, modality).export_dir,
                        dataclasses.replace(training_args, hub_model_id=repo), hub_api)
    accelerator.wait_for_everyone()
    return summary


def cli() -> int:
    try:
        main()
    except TrainingStopped as stopped:
        logger.warning("%s", stopped)
        return 130 if "SIGINT" in str(stopped) else 143
    except (NonFiniteLossError, PushToHubError, FileExistsError, FileNotFoundError, ValueError) as error:
        print(f"train.py error: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(cli())
