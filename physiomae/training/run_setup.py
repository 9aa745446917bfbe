"""What a pretraining run is built with: the Accelerator (trackers, logging per process, intra-op threads) and the
AdamW optimizer."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from physiomae.training.arguments import PretrainingArguments

logger = logging.getLogger("physiomae.train")


def make_accelerator(training_args: PretrainingArguments, output_dir: Path):
    """The run's Accelerator (TensorBoard tracker when installed and asked for), and logging set up per process."""
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration

    log_with = None
    if training_args.report_to in ("auto", "tensorboard"):
        try:
            import tensorboard  # noqa: F401

            log_with = "tensorboard"
        except ImportError:
            if training_args.report_to == "tensorboard":
                raise ImportError("--report_to tensorboard needs the tensorboard package (pip install tensorboard)")
    accelerator = Accelerator(
        mixed_precision=training_args.mixed_precision,
        gradient_accumulation_steps=training_args.gradient_accumulation_steps,
        step_scheduler_with_optimizer=False,
        log_with=log_with,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "tensorboard")),
    )
    logging.basicConfig(
        level=logging.INFO if accelerator.is_main_process else logging.WARNING,
        format=f"%(asctime)s %(levelname)s [rank {accelerator.process_index}] %(name)s: %(message)s",
        force=True,
    )
    threads = intra_op_threads(training_args.num_threads, int(os.environ.get("LOCAL_WORLD_SIZE", 1)))
    torch.set_num_threads(threads)
    logger.info("%d intra-op thread(s) per process", threads)
    return accelerator


def intra_op_threads(requested: int | None, local_processes: int) -> int:
    """torch intra-op threads for one process: `requested`; else OMP_NUM_THREADS when set; else the cores this
    process may run on (its CPU affinity) shared among the run's processes on this machine (torchrun's
    LOCAL_WORLD_SIZE). torch's default, every core in every process, makes two CPU processes on two cores run
    ~15x slower each. Jobs started side by side do not know of each other: give them --num_threads."""
    if requested:
        return int(requested)
    if os.environ.get("OMP_NUM_THREADS", "").strip().isdigit() and int(os.environ["OMP_NUM_THREADS"]) > 0:
        return int(os.environ["OMP_NUM_THREADS"])
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, local_processes))


def build_adamw(model: torch.nn.Module, learning_rate: float, weight_decay: float, betas: tuple[float, float]):
    """train.py's AdamW: no weight decay on biases, norms and embeddings; the fused kernel (one operator for every
    parameter, no host reads of the step count) where torch has it for the parameters' device, else the multi-tensor
    (foreach) one."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        # biases by name too: the stacked per-modality biases are (modalities, 1, width)
        exempt = parameter.ndim < 2 or name.endswith("bias") or "norm" in name.lower() or "embedding" in name.lower()
        (no_decay if exempt else decay).append(parameter)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    try:
        return torch.optim.AdamW(groups, lr=learning_rate, betas=betas, fused=True)
    except (RuntimeError, TypeError, ValueError):  # no fused AdamW for this device / torch version
        return torch.optim.AdamW(groups, lr=learning_rate, betas=betas, foreach=True)
