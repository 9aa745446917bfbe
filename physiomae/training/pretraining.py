"""One pretraining run with Accelerate: the optimizer step, logging, checkpoints, exact resume, the held-out
reconstruction evaluation, and the run folder around it (see train.py for the folder layout).

Reconstruction quality (MAE strategies: mae_modality_drop, mae, mae_unimodal). The records of the pretraining
split whose name hashes below `--reconstruction_eval_fraction` (`record_split_position` of the builder,
the sha1 split that also assigns probe_test) are held out: none of their windows is trained on (the split is made before
`--max_train_windows`). When the hash picks no record, or every record, nothing is held out and the error is
not measured (a warning says so). Before the first step (never again on resume: the statistics are model
buffers, restored with the checkpoint) the model's per-dimension target statistics are computed with
`set_target_statistics` on up to `--target_statistics_max_windows` training windows, evenly spaced over the
training rows, collated like the training batches. Every `--reconstruction_eval_steps` steps and at the last
step, the main process runs the model in eval mode (no modality dropout, no grad) on up to
`--reconstruction_eval_max_windows` held-out windows (evenly spaced over the held-out rows) with a generator
reseeded from the run seed every time, so every evaluation hides the same patches; it sums the model's
`reconstruction_error_sum` / `reconstruction_reference_sum` over them. Per modality, their ratio is the
relative reconstruction error 1 - R^2 of the hidden patches against the training mean of every target dimension
(1.0 = predicting the training mean; null for a modality absent from the held-out windows). It is logged as two
extra fields of that step's train_log.jsonl line (a line is written at every evaluation step, whatever
`--logging_steps` says)::

    {"step": 100, "loss": ..., ..., "relative_reconstruction_error": {"eeg": 0.81, ..., "spo2": null},
     "relative_reconstruction_error_mean": 0.85}

and the final values go to OUTPUT/reconstruction_eval.json (atomic write) and the export's README. Only the main
process evaluates, with the unwrapped model (no collective); the other processes go on and wait for it in the
next step's gradient reduction. Contrastive strategies and random_init have no target statistics and no
reconstruction evaluation (random_init exports identity statistics; nothing is held out for them).
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import logging
import math
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch

from physiomae.io import atomic_write_json
from physiomae.strategies import get_strategy
from physiomae.training.arguments import PretrainingArguments, redact
from physiomae.training.checkpoints import (
    CHECKPOINT_PREFIX, OLD_CHECKPOINT_PREFIX, RANK_STATE_PATTERN, TMP_CHECKPOINT_PREFIX, TRAINER_STATE_NAME,
    list_checkpoints,
)
from physiomae.training.data import ReconstructionEvalData, TrainingData, iterate_batches

logger = logging.getLogger("physiomae.train")


RECONSTRUCTION_EVAL_NAME = "reconstruction_eval.json"


RECONSTRUCTION_EVAL_SEED_OFFSET = 1_000_000_007


EXPORT_COMPLETE_MARKER = "config.json"


class TrainingStopped(RuntimeError):
    """The run stopped early on purpose (a signal); a checkpoint was saved."""


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or inf; the last good state was saved before stopping."""


@dataclass
class RunPaths:
    """Where one trained model's files go."""

    run_dir: Path
    checkpoints_dir: Path
    log_path: Path
    export_dir: Path
    sample_ids_dir: Path


def run_paths(output_dir: Path, modality: str | None) -> RunPaths:
    if modality is None:
        return RunPaths(output_dir, output_dir / "checkpoints", output_dir / "train_log.jsonl", output_dir / "export",
                        output_dir / "sample_ids")
    run_dir = output_dir / "unimodal" / modality
    return RunPaths(run_dir, run_dir / "checkpoints", run_dir / "train_log.jsonl", output_dir / "export" / modality,
                    run_dir / "sample_ids")


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


class SignalCatcher:
    """Turns SIGTERM/SIGINT into a flag the loop checks after each step (a second SIGINT interrupts at once)."""

    def __init__(self):
        self.received = 0
        self.previous = {}

    def __enter__(self):
        for signum in (signal.SIGTERM, signal.SIGINT):
            try:
                self.previous[signum] = signal.signal(signum, self.handle)
            except ValueError:  # not the main thread
                pass
        return self

    def handle(self, signum, frame):
        if self.received and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signum
        logger.warning("received %s: saving a checkpoint after the current step, then stopping",
                       signal.Signals(signum).name)

    def __exit__(self, *exc):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        return False


class PretrainingRun:
    """Trains one model (one strategy, or one modality of mae_unimodal) with Accelerate."""

    def __init__(self, accelerator, config, strategy: str, data: TrainingData | None, paths: RunPaths,
                 training_args: PretrainingArguments, signals: SignalCatcher, tag: str = ""):
        self.accelerator = accelerator
        self.config = config
        self.strategy = strategy
        self.data = data
        self.paths = paths
        self.args = training_args
        self.signals = signals
        self.tag = tag
        self.global_step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.reconstruction_result: dict[str, Any] | None = None  # the last evaluation (main process)

    # -------------------------------------------------------------- setup
    def total_steps(self) -> int:
        if self.args.max_steps > 0:
            return self.args.max_steps
        per_epoch = math.ceil(self.data.batches_per_epoch / self.args.gradient_accumulation_steps)
        return per_epoch * self.args.num_epochs

    def build(self) -> None:
        from accelerate.utils import set_seed
        from transformers import get_cosine_schedule_with_warmup

        set_seed(self.args.seed)
        strategy = get_strategy(self.strategy)
        self.model = strategy.load_model_class()(self.config)
        self.model_accepts_generator = "generator" in inspect.signature(self.model.forward).parameters
        # the masked autoencoders' masking draws are made here, outside the (possibly compiled) forward
        self.masking = getattr(getattr(self.model, "physiomae", None), "masking", None)
        if not strategy.trains:
            return
        optimizer = build_adamw(
            self.model, self.args.learning_rate, self.args.weight_decay, (self.args.adam_beta1, self.args.adam_beta2)
        )
        self.steps = self.total_steps()
        scheduler = get_cosine_schedule_with_warmup(
            optimizer, num_warmup_steps=int(round(self.args.warmup_ratio * self.steps)), num_training_steps=self.steps
        )
        self.model, self.optimizer, self.scheduler = self.accelerator.prepare(self.model, optimizer, scheduler)
        self.forward_model = self.model
        if self.args.torch_compile:
            # one graph for the whole training forward (no graph breaks: the model reads no data back to the host);
            # under DDP, dynamo splits the graph at gradient buckets itself, so fullgraph is not asked for there
            self.forward_model = torch.compile(
                self.model,
                fullgraph=self.accelerator.num_processes == 1,
                backend=self.args.torch_compile_backend,
                mode=self.args.torch_compile_mode,
            )
        # Masking / modality dropout randomness: one generator per process, never seeded inside the model.
        self.generator = torch.Generator(device=self.accelerator.device)
        self.generator.manual_seed(self.args.seed * 1000 + self.accelerator.process_index)

    # -------------------------------------------------------------- checkpoints
    def save_checkpoint(self, generator_state: torch.Tensor | None = None) -> Path:
        """Accelerate state into .tmp-checkpoint-STEP, then renamed to checkpoint-STEP (atomic)."""
        accelerator = self.accelerator
        final = self.paths.checkpoints_dir / f"{CHECKPOINT_PREFIX}{self.global_step}"
        temporary = self.paths.checkpoints_dir / f"{TMP_CHECKPOINT_PREFIX}{self.global_step}"
        if accelerator.is_main_process:
            shutil.rmtree(temporary, ignore_errors=True)
            temporary.mkdir(parents=True)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(temporary))
        torch.save(
            {
                "generator_state": (generator_state if generator_state is not None else self.generator.get_state()).cpu(),
                "epoch": self.epoch,
                "batch_in_epoch": self.batch_in_epoch,
            },
            temporary / RANK_STATE_PATTERN.format(rank=accelerator.process_index),
        )
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            atomic_write_json(temporary / TRAINER_STATE_NAME, {
                "global_step": self.global_step,
                "epoch": self.epoch,
                "batch_in_epoch": self.batch_in_epoch,
                "batches_per_epoch": self.data.batches_per_epoch,
                "total_steps": self.steps,
                "num_processes": accelerator.num_processes,
                "per_device_batch_size": self.args.per_device_batch_size,
                "gradient_accumulation_steps": self.args.gradient_accumulation_steps,
                "seed": self.args.seed,
                "strategy": self.strategy,
                "modalities": self.config.modality_names,
                "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            })
            if final.exists():
                old = self.paths.checkpoints_dir / f"{OLD_CHECKPOINT_PREFIX}{self.global_step}"
                shutil.rmtree(old, ignore_errors=True)
                os.replace(final, old)
                os.replace(temporary, final)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(temporary, final)
            self.rotate_checkpoints()
            logger.info("saved checkpoint %s", final)
        accelerator.wait_for_everyone()
        return final

    def rotate_checkpoints(self) -> None:
        limit = self.args.save_total_limit
        if not limit or limit <= 0:
            return
        for stale in list_checkpoints(self.paths.checkpoints_dir)[:-limit]:
            shutil.rmtree(stale, ignore_errors=True)

    def load_checkpoint(self, checkpoint: Path) -> None:
        accelerator = self.accelerator
        state = json.loads((checkpoint / TRAINER_STATE_NAME).read_text())
        accelerator.load_state(str(checkpoint))
        self.global_step = int(state["global_step"])
        layout_changed = (
            state.get("num_processes") != accelerator.num_processes
            or state.get("per_device_batch_size") != self.args.per_device_batch_size
            or state.get("gradient_accumulation_steps") != self.args.gradient_accumulation_steps
        )
        rank_file = checkpoint / RANK_STATE_PATTERN.format(rank=accelerator.process_index)
        if rank_file.is_file() and not layout_changed:
            rank_state = torch.load(rank_file, map_location="cpu", weights_only=True)
            self.generator.set_state(rank_state["generator_state"].to(self.generator.get_state().device))
            self.epoch, self.batch_in_epoch = int(rank_state["epoch"]), int(rank_state["batch_in_epoch"])
        else:
            logger.warning(
                "checkpoint %s was written with another process/batch layout: weights and optimizer are restored, the "
                "data position restarts at the next epoch and masking is reseeded (the loss sequence will differ)",
                checkpoint,
            )
            self.epoch, self.batch_in_epoch = int(state.get("epoch", 0)) + 1, 0
            self.generator.manual_seed(self.args.seed * 1000 + accelerator.process_index + 7919 * self.global_step)
        logger.info("resumed from %s at step %d (epoch %d, batch %d)", checkpoint, self.global_step, self.epoch,
                    self.batch_in_epoch)

    # -------------------------------------------------------------- logging
    def truncate_log(self, keep_through_step: int) -> None:
        """Drop log lines after the resumed step (they belong to the interrupted future)."""
        if not self.paths.log_path.is_file():
            return
        kept = []
        for line in self.paths.log_path.read_text().splitlines():
            try:
                if json.loads(line).get("step", 0) <= keep_through_step:
                    kept.append(line)
            except json.JSONDecodeError:
                continue  # a line cut by a crash
        temporary = self.paths.log_path.with_suffix(".jsonl.tmp")
        temporary.write_text("".join(line + "\n" for line in kept))
        os.replace(temporary, self.paths.log_path)

    # -------------------------------------------------------------- reconstruction targets and quality
    def set_target_statistics(self) -> None:
        """Per-dimension mean/std of the reconstruction targets over the training windows (every process, the
        same windows: identical buffers). Called before the first step only; a resume restores them."""
        if self.data is None or self.data.statistics_windows is None:
            return
        model = self.accelerator.unwrap_model(self.model)
        if not hasattr(model, "set_target_statistics"):
            return
        started = time.perf_counter()
        counts = model.set_target_statistics(self.data.statistics_batches(self.accelerator.device))
        logger.info("%starget statistics from %d training windows (%s patches) in %.1f s",
                    f"{self.tag}: " if self.tag else "", len(self.data.statistics_windows), counts,
                    time.perf_counter() - started)

    @torch.no_grad()
    def evaluate_reconstruction(self) -> dict[str, Any] | None:
        """Relative reconstruction error (1 - R^2) per modality on the held-out windows; None when not measured.

        Eval mode (no dropout, no modality dropout), the unwrapped model (no collective: the main process alone
        may call it), a generator reseeded from the run seed (the same hidden patches every time)."""
        evaluation = self.data.reconstruction_eval if self.data is not None else None
        if evaluation is None:
            return None
        accelerator = self.accelerator
        model = accelerator.unwrap_model(self.model)
        was_training = model.training
        model.eval()
        generator = torch.Generator(device=accelerator.device)
        generator.manual_seed(self.args.seed + RECONSTRUCTION_EVAL_SEED_OFFSET)
        names = self.config.modality_names
        error_sum = torch.zeros(len(names), dtype=torch.float64, device=accelerator.device)
        reference_sum = torch.zeros(len(names), dtype=torch.float64, device=accelerator.device)
        kwargs = {"generator": generator} if self.model_accepts_generator else {}
        try:
            for batch in evaluation.batches:
                outputs = model(input_values=batch["input_values"].to(accelerator.device).float(),
                                modality_mask=batch["modality_mask"].to(accelerator.device), **kwargs)
                error_sum += outputs.reconstruction_error_sum.detach().double()  # (num_modalities,)
                reference_sum += outputs.reconstruction_reference_sum.detach().double()
        finally:
            model.train(was_training)
        errors, references = error_sum.cpu().tolist(), reference_sum.cpu().tolist()
        per_modality = {
            name: (error / reference if reference > 0 and math.isfinite(error) and math.isfinite(reference) else None)
            for name, error, reference in zip(names, errors, references)
        }
        present = [value for value in per_modality.values() if value is not None]
        return {
            "step": self.global_step,
            "relative_reconstruction_error": per_modality,
            "relative_reconstruction_error_mean": sum(present) / len(present) if present else None,
        }

    def reconstruction_eval_due(self, last_step: bool) -> bool:
        if self.data is None or self.data.reconstruction_eval is None:
            return False
        every = self.data.reconstruction_eval.every_steps
        return last_step or (every > 0 and self.global_step % every == 0)

    def write_reconstruction_eval(self) -> None:
        """OUTPUT/reconstruction_eval.json (this run's folder) with the last evaluation and what it measured."""
        result = self.reconstruction_result
        if result is None or not self.accelerator.is_main_process:
            return
        evaluation = self.data.reconstruction_eval
        config = self.config
        atomic_write_json(self.paths.run_dir / RECONSTRUCTION_EVAL_NAME, {
            **result,
            "definition": "per modality: sum over the hidden patches of the held-out windows of the weighted squared "
                          "error of the standardised target, divided by the same sum for predicting the training mean "
                          "of every target dimension (1 - R^2; 1.0 = predicting the training mean; null = modality "
                          "absent from the held-out windows); mean = over the modalities measured",
            "strategy": self.strategy,
            "modalities": config.modality_names,
            "held_out": {"fraction": evaluation.fraction, "records": evaluation.num_records,
                         "windows_scored": evaluation.num_windows, "windows_available": evaluation.num_windows_available,
                         "split": "sha1 of the record name (dataset_scripts.physionet2018.record_split_position)"},
            "target_statistics_windows": len(self.data.statistics_windows) if self.data.statistics_windows else None,
            "reconstruction_target": getattr(config, "reconstruction_target", None),
            "decoder_type": getattr(config, "decoder_type", None),
            "mask_ratio": config.mask_ratio,
            "seed": self.args.seed,
        })

    # -------------------------------------------------------------- one step
    def forward_batch(self, batch: dict[str, Any]):
        device = self.accelerator.device
        input_values = batch["input_values"].to(device, non_blocking=True).float()
        modality_mask = batch["modality_mask"].to(device, non_blocking=True)
        kwargs = {}
        if self.masking is not None:  # draws from the run's generator (saved in checkpoints), made outside the forward
            noise, modality_dropout_noise = self.masking.draw_noise(input_values.shape[0], self.generator, device)
            kwargs = {"noise": noise, "modality_dropout_noise": modality_dropout_noise}
        elif self.model_accepts_generator:
            kwargs = {"generator": self.generator}
        return self.forward_model(input_values=input_values, modality_mask=modality_mask, **kwargs)

    def optimizer_step(self, batches: Iterator) -> tuple[StepRecord, torch.Tensor | None, list[list[str]]]:
        """One optimizer step over `gradient_accumulation_steps` batches; returns the reduced record."""
        accelerator = self.accelerator
        accumulation = self.args.gradient_accumulation_steps
        names = self.config.modality_names
        loss_sum = torch.zeros((), device=accelerator.device, dtype=torch.float64)
        modality_sum = torch.zeros(len(names), device=accelerator.device, dtype=torch.float64)
        modality_count = torch.zeros(len(names), device=accelerator.device, dtype=torch.float64)
        non_finite_count = torch.zeros((), device=accelerator.device, dtype=torch.float64)
        windows, seen_ids = 0, []
        self.model.train()
        for micro_step in range(accumulation):
            epoch, batch_index, batch = next(batches)
            self.epoch = epoch
            self.batch_in_epoch = batch_index + 1
            seen_ids.append(batch["sample_ids"])
            windows += batch["input_values"].shape[0]
            last = micro_step == accumulation - 1
            context = accelerator.no_sync(self.model) if not last else contextlib.nullcontext()
            with context:
                outputs = self.forward_batch(batch)
                loss = outputs.loss
                # No host sync here: a non-finite loss is counted on the device and acted on after the step's
                # reduction; its backward runs on a zeroed loss so that every process stays in step.
                non_finite_count += (~torch.isfinite(loss.detach())).double()
                accelerator.backward(torch.nan_to_num(loss, nan=0.0, posinf=0.0, neginf=0.0))
            loss_sum += loss.detach().double()
            per_modality = getattr(outputs, "loss_per_modality", None)
            if per_modality is not None:
                per_modality = per_modality.detach().double().reshape(-1)
                finite = torch.isfinite(per_modality)
                modality_sum += torch.where(finite, per_modality, torch.zeros_like(per_modality))
                modality_count += finite.double()
        if self.data.streaming is False and self.batch_in_epoch >= self.data.batches_per_epoch:
            self.epoch, self.batch_in_epoch = self.epoch + 1, 0

        flags = torch.tensor([float(windows), float(self.signals.received), float(accumulation)],
                             device=accelerator.device, dtype=torch.float64)
        packed = torch.cat([loss_sum.reshape(1), modality_sum, modality_count, non_finite_count.reshape(1), flags])
        reduced = accelerator.reduce(packed, reduction="sum") if accelerator.num_processes > 1 else packed
        reduced = reduced.cpu()
        count = len(names)
        any_non_finite, total_windows, signal_sum, total_batches = reduced[1 + 2 * count:].tolist()
        modality_sums, modality_counts = reduced[1:1 + count], reduced[1 + count:1 + 2 * count]
        record = StepRecord(
            loss=float(reduced[0] / total_batches),
            loss_per_modality={
                name: (float(modality_sums[index] / modality_counts[index]) if modality_counts[index] > 0 else None)
                for index, name in enumerate(names)
            },
            windows=int(total_windows),
            non_finite=any_non_finite > 0,
            stop_signal=int(self.signals.received or (signal.SIGTERM if signal_sum > 0 else 0)),
        )
        grad_norm = None
        if record.non_finite:
            self.optimizer.zero_grad(set_to_none=True)
            return record, grad_norm, seen_ids
        if self.args.max_grad_norm and self.args.max_grad_norm > 0:
            grad_norm = accelerator.clip_grad_norm_(self.model.parameters(), self.args.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return record, grad_norm, seen_ids

    # -------------------------------------------------------------- loop
    def train(self, resume: Path | None) -> None:
        from tqdm.auto import tqdm

        accelerator = self.accelerator
        if resume is not None:
            self.load_checkpoint(resume)  # restores the target statistics with the weights
        else:
            self.set_target_statistics()
        if accelerator.is_main_process:
            self.paths.run_dir.mkdir(parents=True, exist_ok=True)
            self.truncate_log(self.global_step)
        if self.global_step >= self.steps:
            logger.info("%s: already trained for %d steps", self.tag or "run", self.steps)
            result_path = self.paths.run_dir / RECONSTRUCTION_EVAL_NAME
            if accelerator.is_main_process and self.data.reconstruction_eval is not None:
                if result_path.is_file():  # measured at the last step before the stop
                    self.reconstruction_result = json.loads(result_path.read_text())
                else:  # stopped between the last checkpoint and the file
                    self.reconstruction_result = self.evaluate_reconstruction()
                    self.write_reconstruction_eval()
            return
        accelerator.wait_for_everyone()
        batches = iterate_batches(self.data, accelerator, self.epoch, self.batch_in_epoch)
        log_handle = open(self.paths.log_path, "a") if accelerator.is_main_process else None
        ids_handle = None
        if self.args.log_sample_ids:
            self.paths.sample_ids_dir.mkdir(parents=True, exist_ok=True)
            ids_handle = open(self.paths.sample_ids_dir / f"rank_{accelerator.process_index}.jsonl", "a")
        progress = tqdm(total=self.steps, initial=self.global_step, desc=f"pretraining {self.tag}".strip(),
                        disable=self.args.disable_tqdm or not accelerator.is_local_main_process, dynamic_ncols=True)
        window_count, interval_start = 0, time.perf_counter()
        interval = IntervalMeans()
        try:
            while self.global_step < self.steps:
                generator_state = self.generator.get_state().clone()
                position = (self.epoch, self.batch_in_epoch)
                record, grad_norm, seen_ids = self.optimizer_step(batches)
                if record.non_finite:
                    self.epoch, self.batch_in_epoch = position
                    self.save_checkpoint(generator_state=generator_state)
                    raise NonFiniteLossError(
                        f"non-finite loss ({record.loss}) at step {self.global_step + 1}"
                        f"{' (' + self.tag + ')' if self.tag else ''}; the last good state (step {self.global_step}) "
                        f"is saved in {self.paths.checkpoints_dir / (CHECKPOINT_PREFIX + str(self.global_step))}"
                    )
                self.global_step += 1
                window_count += record.windows
                interval.add(record)
                if ids_handle is not None:
                    ids_handle.write(json.dumps({"step": self.global_step, "sample_ids": seen_ids}) + "\n")
                    ids_handle.flush()
                progress.update(1)
                last_step = self.global_step >= self.steps
                evaluate_now = self.reconstruction_eval_due(last_step)
                reconstruction = None
                if evaluate_now and accelerator.is_main_process:  # the others go on to the next step and wait there
                    reconstruction = self.evaluate_reconstruction()
                    self.reconstruction_result = reconstruction
                if (self.global_step == 1 or last_step or evaluate_now
                        or self.global_step % max(1, self.args.logging_steps) == 0):
                    elapsed = time.perf_counter() - interval_start
                    entry = {
                        "step": self.global_step,
                        "epoch": round(self.global_step * self.args.gradient_accumulation_steps
                                       / self.data.batches_per_epoch, 4) if self.data.batches_per_epoch else self.epoch,
                        "loss": interval.loss(),  # mean over the steps since the previous line
                        "loss_per_modality": interval.loss_per_modality(),
                        "step_loss": record.loss,  # this step's loss alone
                        "learning_rate": self.scheduler.get_last_lr()[0],
                        "grad_norm": float(grad_norm) if grad_norm is not None else None,
                        "windows_per_s": window_count / elapsed if elapsed > 0 else None,
                    }
                    if reconstruction is not None:
                        entry["relative_reconstruction_error"] = reconstruction["relative_reconstruction_error"]
                        entry["relative_reconstruction_error_mean"] = reconstruction["relative_reconstruction_error_mean"]
                    if self.tag:
                        entry["modality"] = self.tag
                    window_count, interval_start, interval = 0, time.perf_counter(), IntervalMeans()
                    if log_handle is not None:
                        log_handle.write(json.dumps(entry) + "\n")
                        log_handle.flush()
                    progress.set_postfix(loss=f"{record.loss:.4f}", lr=f"{entry['learning_rate']:.2e}")
                    scalars = {f"{self.tag + '/' if self.tag else ''}train/loss": record.loss,
                               f"{self.tag + '/' if self.tag else ''}train/learning_rate": entry["learning_rate"]}
                    for name, value in record.loss_per_modality.items():
                        if value is not None:
                            scalars[f"{self.tag + '/' if self.tag else ''}train/loss_{name}"] = value
                    if reconstruction is not None:
                        prefix = f"{self.tag + '/' if self.tag else ''}held_out/"
                        for name, value in reconstruction["relative_reconstruction_error"].items():
                            if value is not None:
                                scalars[f"{prefix}relative_reconstruction_error_{name}"] = value
                        if reconstruction["relative_reconstruction_error_mean"] is not None:
                            scalars[f"{prefix}relative_reconstruction_error_mean"] = reconstruction[
                                "relative_reconstruction_error_mean"]
                    if accelerator.trackers:
                        accelerator.log(scalars, step=self.global_step)
                if record.stop_signal:
                    self.save_checkpoint()
                    raise TrainingStopped(
                        f"stopped by {signal.Signals(record.stop_signal).name} at step {self.global_step}; "
                        f"checkpoint saved, continue with --resume_from_checkpoint latest"
                    )
                if (self.args.save_steps > 0 and self.global_step % self.args.save_steps == 0) or last_step:
                    self.save_checkpoint()
            self.write_reconstruction_eval()
            if ids_handle is not None:
                ids_handle.write(json.dumps({"step": self.global_step, "parameter_checksum": self.parameter_checksum()}) + "\n")
        finally:
            progress.close()
            if log_handle is not None:
                log_handle.close()
            if ids_handle is not None:
                ids_handle.close()

    def parameter_checksum(self) -> str:
        """SHA-1 of this process's parameters (diagnostic: data-parallel replicas must agree)."""
        digest = hashlib.sha1()
        for name, parameter in sorted(self.accelerator.unwrap_model(self.model).state_dict().items()):
            digest.update(name.encode())
            digest.update(parameter.detach().float().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()


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


def reconstruction_summary_text(result: dict[str, Any], evaluation: ReconstructionEvalData | None) -> str:
    """One line for the export README, e.g. 'eeg 0.812, ecg 0.901, mean 0.857 (step 300, 64 windows of 3
    held-out records)'."""
    def number(value):
        return "n/a" if value is None else f"{value:.3f}"

    values = ", ".join(f"{name} {number(value)}" for name, value in result["relative_reconstruction_error"].items())
    where = f"step {result['step']}"
    if evaluation is not None:
        where += f", {evaluation.num_windows} windows of {evaluation.num_records} held-out records"
    return f"{values}, mean {number(result['relative_reconstruction_error_mean'])} ({where})"


def gather_unimodal_reconstruction_evals(output_dir: Path, modalities: list[str]) -> None:
    """OUTPUT/reconstruction_eval.json of mae_unimodal: each modality's run file under `runs`."""
    runs = {}
    for modality in modalities:
        path = run_paths(output_dir, modality).run_dir / RECONSTRUCTION_EVAL_NAME
        if path.is_file():
            runs[modality] = json.loads(path.read_text())
    if not runs:
        return
    per_modality = {modality: run["relative_reconstruction_error"].get(modality) for modality, run in runs.items()}
    present = [value for value in per_modality.values() if value is not None]
    atomic_write_json(output_dir / RECONSTRUCTION_EVAL_NAME, {
        "strategy": "mae_unimodal",
        "relative_reconstruction_error": per_modality,  # each modality from its own single-modality model
        "relative_reconstruction_error_mean": sum(present) / len(present) if present else None,
        "runs": runs,
    })
