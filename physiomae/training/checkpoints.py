"""Checkpoint folders of a run: OUTPUT/checkpoints/checkpoint-STEP/ (Accelerate state, trainer_state.json written
last, rank_state_R.pt per process), saved through .tmp-checkpoint-STEP and renamed, so a crash never leaves a
half checkpoint that looks complete. Saving, loading and rotating them, finding the one to resume from, and
cleaning what an interrupted save left behind."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from physiomae.io import atomic_write_json

logger = logging.getLogger("physiomae.train")


CHECKPOINT_PREFIX = "checkpoint-"


TMP_CHECKPOINT_PREFIX = ".tmp-checkpoint-"


OLD_CHECKPOINT_PREFIX = ".old-checkpoint-"


TRAINER_STATE_NAME = "trainer_state.json"


RANK_STATE_PATTERN = "rank_state_{rank}.pt"


def checkpoint_step(path: Path) -> int | None:
    match = re.fullmatch(re.escape(CHECKPOINT_PREFIX) + r"(\d+)", path.name)
    return int(match.group(1)) if match else None


def list_checkpoints(checkpoints_dir: Path) -> list[Path]:
    """Complete checkpoints (they hold trainer_state.json, written last), oldest first."""
    if not checkpoints_dir.is_dir():
        return []
    found = [path for path in checkpoints_dir.iterdir()
             if path.is_dir() and checkpoint_step(path) is not None and (path / TRAINER_STATE_NAME).is_file()]
    return sorted(found, key=checkpoint_step)


def recover_checkpoint_dir(checkpoints_dir: Path) -> None:
    """Clean what an interrupted save left behind (main process, at start).

    `.tmp-checkpoint-N` is an unfinished save: deleted. `.old-checkpoint-N` is a good checkpoint that was being
    replaced: restored when the replacement never landed, deleted otherwise.
    """
    if not checkpoints_dir.is_dir():
        return
    for path in sorted(checkpoints_dir.iterdir()):
        if path.name.startswith(TMP_CHECKPOINT_PREFIX):
            logger.warning("removing the unfinished checkpoint %s left by an interrupted save", path)
            shutil.rmtree(path, ignore_errors=True)
        elif path.name.startswith(OLD_CHECKPOINT_PREFIX):
            final = checkpoints_dir / (CHECKPOINT_PREFIX + path.name[len(OLD_CHECKPOINT_PREFIX):])
            if (final / TRAINER_STATE_NAME).is_file():
                shutil.rmtree(path, ignore_errors=True)
            else:
                shutil.rmtree(final, ignore_errors=True)
                os.replace(path, final)
                logger.warning("restored %s from an interrupted replacement", final)


def resolve_resume_path(resume: str | None, checkpoints_dir: Path, per_modality: bool = False) -> Path | None:
    """The checkpoint to resume from: None (start afresh), the newest complete one for 'latest', or the named
    folder. With `per_modality` (one run folder per modality), a named checkpoint of another modality's run means
    this run's newest."""
    if not resume:
        return None
    if resume == "latest":
        checkpoints = list_checkpoints(checkpoints_dir)
        if not checkpoints:
            logger.warning("--resume_from_checkpoint latest: no checkpoint in %s, starting from scratch", checkpoints_dir)
            return None
        return checkpoints[-1]
    path = Path(resume)
    if not (path / TRAINER_STATE_NAME).is_file():
        raise FileNotFoundError(f"--resume_from_checkpoint {path} is not a complete checkpoint (no {TRAINER_STATE_NAME})")
    if per_modality and path.parent != checkpoints_dir:
        return resolve_resume_path("latest", checkpoints_dir)
    return path


def save_checkpoint(accelerator, checkpoints_dir: Path, step: int, rank_state: dict[str, Any],
                    trainer_state: dict[str, Any], save_total_limit: int | None) -> Path:
    """Save checkpoint-STEP (every process calls this): the Accelerate state, this process's `rank_state` (its
    generator state and data position) as rank_state_R.pt, and `trainer_state` (with `global_step` and `saved_at`
    added) as trainer_state.json, written last by the main process. Everything goes into .tmp-checkpoint-STEP,
    which is then renamed (a checkpoint of the same step is replaced through .old-checkpoint-STEP); then only the
    newest `save_total_limit` checkpoints are kept (all when it is None or <= 0)."""
    final = checkpoints_dir / f"{CHECKPOINT_PREFIX}{step}"
    temporary = checkpoints_dir / f"{TMP_CHECKPOINT_PREFIX}{step}"
    if accelerator.is_main_process:
        shutil.rmtree(temporary, ignore_errors=True)
        temporary.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(temporary))
    torch.save(rank_state, temporary / RANK_STATE_PATTERN.format(rank=accelerator.process_index))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        atomic_write_json(temporary / TRAINER_STATE_NAME, {
            "global_step": step,
            **trainer_state,
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        })
        if final.exists():
            old = checkpoints_dir / f"{OLD_CHECKPOINT_PREFIX}{step}"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
            os.replace(temporary, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(temporary, final)
        rotate_checkpoints(checkpoints_dir, save_total_limit)
        logger.info("saved checkpoint %s", final)
    accelerator.wait_for_everyone()
    return final


def rotate_checkpoints(checkpoints_dir: Path, save_total_limit: int | None) -> None:
    """Delete all but the newest `save_total_limit` complete checkpoints (nothing when it is None or <= 0)."""
    if not save_total_limit or save_total_limit <= 0:
        return
    for stale in list_checkpoints(checkpoints_dir)[:-save_total_limit]:
        shutil.rmtree(stale, ignore_errors=True)


def load_checkpoint(accelerator, checkpoint: Path, layout: dict[str, int]) -> tuple[dict[str, Any], dict | None]:
    """Restore the Accelerate state of `checkpoint` (weights, optimizer, scheduler, model buffers). Returns its
    trainer_state.json and this process's rank state (generator state, epoch, batch_in_epoch), or None for the
    rank state when the checkpoint was written with another process/batch `layout` (`num_processes`,
    `per_device_batch_size`, `gradient_accumulation_steps`) or holds no file for this process: the data position
    and the masking draws of that run cannot be continued then."""
    state = json.loads((checkpoint / TRAINER_STATE_NAME).read_text())
    accelerator.load_state(str(checkpoint))
    rank_file = checkpoint / RANK_STATE_PATTERN.format(rank=accelerator.process_index)
    if not rank_file.is_file() or any(state.get(name) != value for name, value in layout.items()):
        return state, None
    return state, torch.load(rank_file, map_location="cpu", weights_only=True)
