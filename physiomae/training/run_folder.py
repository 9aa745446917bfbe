"""Where a pretraining run's files go (see train.py for the layout): the paths of one trained model, preparing
OUTPUT (refusing one that holds checkpoints unless resuming or overwriting), and OUTPUT/run_args.json."""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from physiomae.io import atomic_write_json
from physiomae.training.arguments import PretrainingArguments, redact
from physiomae.training.checkpoints import CHECKPOINT_PREFIX


RECONSTRUCTION_EVAL_NAME = "reconstruction_eval.json"


EXPORT_COMPLETE_MARKER = "config.json"


@dataclass
class RunPaths:
    """Where one trained model's files go."""

    run_dir: Path
    checkpoints_dir: Path
    log_path: Path
    export_dir: Path
    sample_ids_dir: Path


def run_paths(output_dir: Path, modality: str | None) -> RunPaths:
    """The paths of the run in OUTPUT, or of one modality's run of mae_unimodal (OUTPUT/unimodal/MODALITY/)."""
    if modality is None:
        return RunPaths(output_dir, output_dir / "checkpoints", output_dir / "train_log.jsonl", output_dir / "export",
                        output_dir / "sample_ids")
    run_dir = output_dir / "unimodal" / modality
    return RunPaths(run_dir, run_dir / "checkpoints", run_dir / "train_log.jsonl", output_dir / "export" / modality,
                    run_dir / "sample_ids")


def prepare_output_dir(output_dir: Path, training_args: PretrainingArguments, accelerator) -> None:
    """Create OUTPUT; refuse one holding checkpoints unless resuming or --overwrite_output_dir (which clears it)."""
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        has_checkpoints = any(path.name.startswith(CHECKPOINT_PREFIX)
                              for path in output_dir.glob("**/checkpoints/*"))
        if has_checkpoints and not training_args.resume_from_checkpoint:
            if not training_args.overwrite_output_dir:
                raise FileExistsError(
                    f"{output_dir} already holds checkpoints: continue with --resume_from_checkpoint latest, or start "
                    f"afresh with --overwrite_output_dir"
                )
        if training_args.overwrite_output_dir and not training_args.resume_from_checkpoint:
            for name in ("checkpoints", "unimodal", "sample_ids", "export", "tensorboard"):
                shutil.rmtree(output_dir / name, ignore_errors=True)
            for name in ("train_log.jsonl", "loss_curves.png", RECONSTRUCTION_EVAL_NAME):
                (output_dir / name).unlink(missing_ok=True)
    accelerator.wait_for_everyone()


def write_run_args(output_dir: Path, arguments: dict[str, Any], accelerator) -> None:
    """OUTPUT/run_args.json: every argument (token redacted), the command, processes, device, precision, torch."""
    if accelerator.is_main_process:
        atomic_write_json(output_dir / "run_args.json", {
            "arguments": redact(arguments),
            "command": sys.argv,
            "num_processes": accelerator.num_processes,
            "device": str(accelerator.device),
            "mixed_precision": accelerator.mixed_precision,
            "intra_op_threads": torch.get_num_threads(),
            "torch": torch.__version__,
        })
