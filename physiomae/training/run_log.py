"""What a pretraining run records as it steps: OUTPUT/train_log.jsonl (main process; one JSON line per logged step,
the loss a mean over the steps since the previous line), the trackers' scalars (TensorBoard), and
OUTPUT/sample_ids/rank_R.jsonl (`--log_sample_ids`: the windows each step of this process read, then a checksum of
its parameters)."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from physiomae.training.run_folder import RunPaths


@dataclass
class StepRecord:
    """What one optimizer step measured, reduced over processes and accumulated batches."""

    loss: float
    loss_per_modality: dict[str, float | None]
    windows: int
    non_finite: bool
    stop_signal: int


class IntervalMeans:
    """Running means of the loss (and each modality's) over the steps between two log lines."""

    def __init__(self):
        self.loss_total, self.steps = 0.0, 0
        self.modality_totals: dict[str, float] = {}
        self.modality_counts: dict[str, int] = {}

    def add(self, record: StepRecord) -> None:
        self.loss_total += record.loss
        self.steps += 1
        for name, value in record.loss_per_modality.items():
            self.modality_totals.setdefault(name, 0.0)
            self.modality_counts.setdefault(name, 0)
            if value is not None:
                self.modality_totals[name] += value
                self.modality_counts[name] += 1

    def loss(self) -> float:
        return self.loss_total / max(1, self.steps)

    def loss_per_modality(self) -> dict[str, float | None]:
        return {name: (total / self.modality_counts[name] if self.modality_counts[name] else None)
                for name, total in self.modality_totals.items()}


def truncate_log(log_path: Path, keep_through_step: int) -> None:
    """Drop log lines after the resumed step (they belong to the interrupted future)."""
    if not log_path.is_file():
        return
    kept = []
    for line in log_path.read_text().splitlines():
        try:
            if json.loads(line).get("step", 0) <= keep_through_step:
                kept.append(line)
        except json.JSONDecodeError:
            continue  # a line cut by a crash
    temporary = log_path.with_suffix(".jsonl.tmp")
    temporary.write_text("".join(line + "\n" for line in kept))
    os.replace(temporary, log_path)


class TrainLog:
    """The log files of one run, open for appending between `with` and its end (train_log.jsonl on the main process,
    sample_ids/rank_R.jsonl with `log_sample_ids`), and the means since the last line written.

    `add_step` after every step, `write` for the steps that get a line (it also logs the trackers' scalars, names
    prefixed `TAG/` for a modality's run of mae_unimodal)."""

    def __init__(self, accelerator, paths: RunPaths, log_sample_ids: bool, tag: str = ""):
        self.accelerator = accelerator
        self.paths = paths
        self.log_sample_ids = log_sample_ids
        self.tag = tag
        self.log_handle = self.ids_handle = None
        self.window_count, self.interval_start, self.interval = 0, time.perf_counter(), IntervalMeans()

    def __enter__(self) -> "TrainLog":
        if self.accelerator.is_main_process:
            self.log_handle = open(self.paths.log_path, "a")
        if self.log_sample_ids:
            self.paths.sample_ids_dir.mkdir(parents=True, exist_ok=True)
            self.ids_handle = open(self.paths.sample_ids_dir / f"rank_{self.accelerator.process_index}.jsonl", "a")
        self.window_count, self.interval_start, self.interval = 0, time.perf_counter(), IntervalMeans()
        return self

    def __exit__(self, *exc) -> bool:
        for handle in (self.log_handle, self.ids_handle):
            if handle is not None:
                handle.close()
        return False

    def add_step(self, step: int, record: StepRecord, sample_ids: list[list[str]]) -> None:
        """Count a finished step into the interval's means; its windows' ids to sample_ids/ (`log_sample_ids`)."""
        self.window_count += record.windows
        self.interval.add(record)
        self.write_ids({"step": step, "sample_ids": sample_ids})

    def write_ids(self, line: dict[str, Any]) -> None:
        if self.ids_handle is not None:
            self.ids_handle.write(json.dumps(line) + "\n")
            self.ids_handle.flush()

    def write(self, step: int, epoch: float, record: StepRecord, learning_rate: float, grad_norm,
              reconstruction: dict[str, Any] | None) -> None:
        """One train_log.jsonl line for `step` (means since the previous line; `reconstruction` adds the held-out
        relative reconstruction error) and the trackers' scalars; the interval restarts."""
        elapsed = time.perf_counter() - self.interval_start
        entry = {
            "step": step,
            "epoch": epoch,
            "loss": self.interval.loss(),  # mean over the steps since the previous line
            "loss_per_modality": self.interval.loss_per_modality(),
            "step_loss": record.loss,  # this step's loss alone
            "learning_rate": learning_rate,
            "grad_norm": float(grad_norm) if grad_norm is not None else None,
            "windows_per_s": self.window_count / elapsed if elapsed > 0 else None,
        }
        if reconstruction is not None:
            entry["relative_reconstruction_error"] = reconstruction["relative_reconstruction_error"]
            entry["relative_reconstruction_error_mean"] = reconstruction["relative_reconstruction_error_mean"]
        if self.tag:
            entry["modality"] = self.tag
        self.window_count, self.interval_start, self.interval = 0, time.perf_counter(), IntervalMeans()
        if self.log_handle is not None:
            self.log_handle.write(json.dumps(entry) + "\n")
            self.log_handle.flush()
        if self.accelerator.trackers:
            self.accelerator.log(self.tracker_scalars(record, learning_rate, reconstruction), step=step)

    def tracker_scalars(self, record: StepRecord, learning_rate: float,
                        reconstruction: dict[str, Any] | None) -> dict[str, float]:
        """This step's loss, learning rate, per-modality losses and held-out errors, as tracker scalars."""
        prefix = f"{self.tag}/" if self.tag else ""
        scalars = {f"{prefix}train/loss": record.loss, f"{prefix}train/learning_rate": learning_rate}
        for name, value in record.loss_per_modality.items():
            if value is not None:
                scalars[f"{prefix}train/loss_{name}"] = value
        if reconstruction is not None:
            for name, value in reconstruction["relative_reconstruction_error"].items():
                if value is not None:
                    scalars[f"{prefix}held_out/relative_reconstruction_error_{name}"] = value
            if reconstruction["relative_reconstruction_error_mean"] is not None:
                scalars[f"{prefix}held_out/relative_reconstruction_error_mean"] = reconstruction[
                    "relative_reconstruction_error_mean"]
        return scalars
