"""One pretraining run with Accelerate: the model, optimizer and schedule, the loop of optimizer steps, exact
resume, and when the run logs, evaluates and saves (train.py drives it; the folder layout is in train.py).

Where the rest is: the run folder and its paths `physiomae.training.run_folder`, the Accelerator and AdamW
`.run_setup`, checkpoint save/load/rotate `.checkpoints`, train_log.jsonl and tracker scalars `.run_log`, the
held-out reconstruction evaluation `.reconstruction_eval`, the batches `.data`.

The masking draws. A model that masks its input (`PhysioMAEForPreTraining`) has `draw_masking_noise`: the loop
draws `noise` and `modality_dropout_noise` with it from the run's generator (one per process, seeded from the run
seed and the process index, saved in every checkpoint) and passes them to the forward, so the draws stay outside a
`torch.compile`d forward and a resumed run repeats them. A model without it (the contrastive ones) draws nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import signal
import time
from pathlib import Path
from typing import Any, Iterator

import torch

from physiomae.strategies import get_strategy
from physiomae.training.arguments import PretrainingArguments
from physiomae.training.checkpoints import CHECKPOINT_PREFIX, load_checkpoint, save_checkpoint
from physiomae.training.data import TrainingData, iterate_batches
from physiomae.training.reconstruction_eval import evaluate_reconstruction, write_reconstruction_eval
from physiomae.training.run_folder import RECONSTRUCTION_EVAL_NAME, RunPaths
from physiomae.training.run_log import StepRecord, TrainLog, truncate_log
from physiomae.training.run_setup import build_adamw

logger = logging.getLogger("physiomae.train")


class TrainingStopped(RuntimeError):
    """The run stopped early on purpose (a signal); a checkpoint was saved."""


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or inf; the last good state was saved before stopping."""


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
        # the masking draws (see the module docstring), a method of the model itself: no wrapper has it
        self.draw_masking_noise = getattr(self.model, "draw_masking_noise", None)
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
        """checkpoint-STEP of this step: the Accelerate state, this process's generator state and data position
        (`generator_state` instead of the generator's own when given), and the run's trainer_state.json."""
        rank_state = {
            "generator_state": (generator_state if generator_state is not None else self.generator.get_state()).cpu(),
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
        }
        trainer_state = {
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "batches_per_epoch": self.data.batches_per_epoch,
            "total_steps": self.steps,
            **self.batch_layout(),
            "seed": self.args.seed,
            "strategy": self.strategy,
            "modalities": self.config.modality_names,
        }
        return save_checkpoint(self.accelerator, self.paths.checkpoints_dir, self.global_step, rank_state,
                               trainer_state, self.args.save_total_limit)

    def batch_layout(self) -> dict[str, int]:
        """What a checkpoint's data position and generator states depend on: the process/batch layout and, when
        streaming, the shards, shuffle buffer and workers that fix the order of the batches."""
        return {"num_processes": self.accelerator.num_processes,
                "per_device_batch_size": self.args.per_device_batch_size,
                "gradient_accumulation_steps": self.args.gradient_accumulation_steps,
                **(self.data.order_settings if self.data is not None else {})}

    def load_checkpoint(self, checkpoint: Path) -> None:
        state, rank_state = load_checkpoint(self.accelerator, checkpoint, self.batch_layout())
        self.global_step = int(state["global_step"])
        if rank_state is not None:
            self.generator.set_state(rank_state["generator_state"].to(self.generator.get_state().device))
            self.epoch, self.batch_in_epoch = int(rank_state["epoch"]), int(rank_state["batch_in_epoch"])
        else:
            logger.warning(
                "checkpoint %s was written with another process/batch layout: weights and optimizer are restored, the "
                "data position restarts at the next epoch and masking is reseeded (the loss sequence will differ)",
                checkpoint,
            )
            self.epoch, self.batch_in_epoch = int(state.get("epoch", 0)) + 1, 0
            self.generator.manual_seed(
                self.args.seed * 1000 + self.accelerator.process_index + 7919 * self.global_step)
        logger.info("resumed from %s at step %d (epoch %d, batch %d)", checkpoint, self.global_step, self.epoch,
                    self.batch_in_epoch)

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

    def evaluate_reconstruction(self) -> dict[str, Any] | None:
        """The held-out relative reconstruction error now (`reconstruction_eval.evaluate_reconstruction`, with the
        unwrapped model: no collective, the main process alone may call it); None when not measured."""
        evaluation = self.data.reconstruction_eval if self.data is not None else None
        if evaluation is None:
            return None
        return evaluate_reconstruction(self.accelerator.unwrap_model(self.model), evaluation, self.accelerator.device,
                                       self.args.seed, self.global_step)

    def reconstruction_eval_due(self, last_step: bool) -> bool:
        if self.data is None or self.data.reconstruction_eval is None:
            return False
        every = self.data.reconstruction_eval.every_steps
        return last_step or (every > 0 and self.global_step % every == 0)

    def write_reconstruction_eval(self) -> None:
        """RUN/reconstruction_eval.json with the last evaluation (main process)."""
        if self.reconstruction_result is None or not self.accelerator.is_main_process:
            return
        statistics_windows = len(self.data.statistics_windows) if self.data.statistics_windows else None
        write_reconstruction_eval(self.paths.run_dir, self.reconstruction_result, self.data.reconstruction_eval,
                                  self.config, self.strategy, statistics_windows, self.args.seed)

    # -------------------------------------------------------------- one step
    def forward_batch(self, batch: dict[str, Any]):
        device = self.accelerator.device
        input_values = batch["input_values"].to(device, non_blocking=True).float()
        modality_mask = batch["modality_mask"].to(device, non_blocking=True)
        kwargs = {}
        if self.draw_masking_noise is not None:  # from the run's generator, outside the (compiled) forward
            noise, modality_dropout_noise = self.draw_masking_noise(input_values.shape[0], self.generator, device)
            kwargs = {"noise": noise, "modality_dropout_noise": modality_dropout_noise}
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
            truncate_log(self.paths.log_path, self.global_step)
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
        progress = tqdm(total=self.steps, initial=self.global_step, desc=f"pretraining {self.tag}".strip(),
                        disable=self.args.disable_tqdm or not accelerator.is_local_main_process, dynamic_ncols=True)
        with TrainLog(accelerator, self.paths, self.args.log_sample_ids, self.tag) as log, contextlib.closing(progress):
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
                log.add_step(self.global_step, record, seen_ids)
                progress.update(1)
                last_step = self.global_step >= self.steps
                evaluate_now = self.reconstruction_eval_due(last_step)
                reconstruction = None
                if evaluate_now and accelerator.is_main_process:  # the others go on to the next step and wait there
                    reconstruction = self.evaluate_reconstruction()
                    self.reconstruction_result = reconstruction
                if (self.global_step == 1 or last_step or evaluate_now
                        or self.global_step % max(1, self.args.logging_steps) == 0):
                    learning_rate = self.scheduler.get_last_lr()[0]
                    log.write(self.global_step, self.logged_epoch(), record, learning_rate, grad_norm, reconstruction)
                    progress.set_postfix(loss=f"{record.loss:.4f}", lr=f"{learning_rate:.2e}")
                if record.stop_signal:
                    self.save_checkpoint()
                    raise TrainingStopped(
                        f"stopped by {signal.Signals(record.stop_signal).name} at step {self.global_step}; "
                        f"checkpoint saved, continue with --resume_from_checkpoint latest"
                    )
                if (self.args.save_steps > 0 and self.global_step % self.args.save_steps == 0) or last_step:
                    self.save_checkpoint()
            self.write_reconstruction_eval()
            if self.args.log_sample_ids:
                log.write_ids({"step": self.global_step, "parameter_checksum": self.parameter_checksum()})

    def logged_epoch(self) -> float:
        """The epoch of the log line: steps in epochs of batches (the epoch counter when streaming)."""
        if not self.data.batches_per_epoch:
            return self.epoch
        return round(self.global_step * self.args.gradient_accumulation_steps / self.data.batches_per_epoch, 4)

    def parameter_checksum(self) -> str:
        """SHA-1 of this process's parameters (diagnostic: data-parallel replicas must agree)."""
        digest = hashlib.sha1()
        for name, parameter in sorted(self.accelerator.unwrap_model(self.model).state_dict().items()):
            digest.update(name.encode())
            digest.update(parameter.detach().float().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()
