"""Checkpoint folders of a run: OUTPUT/checkpoints/checkpoint-STEP/ (Accelerate state, trainer_state.json written
last, rank_state_R.pt per process), saved through .tmp-checkpoint-STEP and renamed, so a crash never leaves a
half checkpoint that looks complete."""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path

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
