"""Reconstruction quality of a pretraining run (MAE strategies: mae_modality_drop, mae, mae_unimodal).

The records of the pretraining split whose name hashes below `--reconstruction_eval_fraction`
(`record_split_position` of the builder, the sha1 split that also assigns probe_test) are held out: none of their
windows is trained on (the split is made before `--max_train_windows`). When the hash picks no record, or every
record, nothing is held out and the error is not measured (a warning says so). Before the first step (never again
on resume: the statistics are model buffers, restored with the checkpoint) the model's per-dimension target
statistics are computed with `set_target_statistics` on up to `--target_statistics_max_windows` training windows,
evenly spaced over the training rows, collated like the training batches. Every `--reconstruction_eval_steps`
steps and at the last step, the main process runs the model in eval mode (no modality dropout, no grad) on up to
`--reconstruction_eval_max_windows` held-out windows (evenly spaced over the held-out rows), with the masking
drawn (`draw_masking_noise`) from a generator reseeded from the run seed every time, so every evaluation hides
the same patches; it sums the model's `reconstruction_error_sum` / `reconstruction_reference_sum` over them. Per
modality, their ratio is the relative reconstruction error 1 - R^2 of the hidden patches against the training
mean of every target dimension (1.0 = predicting the training mean; null for a modality absent from the held-out
windows). It is logged as two extra fields of that step's train_log.jsonl line (a line is written at every
evaluation step, whatever `--logging_steps` says)::

    {"step": 100, "loss": ..., ..., "relative_reconstruction_error": {"eeg": 0.81, ..., "spo2": null},
     "relative_reconstruction_error_mean": 0.85}

and the final values go to OUTPUT/reconstruction_eval.json (atomic write) and the export's README. Only the main
process evaluates, with the unwrapped model (no collective); the other processes go on and wait for it in the
next step's gradient reduction. Contrastive strategies and random_init have no target statistics and no
reconstruction evaluation (random_init exports identity statistics; nothing is held out for them).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from physiomae.io import atomic_write_json
from physiomae.training.data import ReconstructionEvalData
from physiomae.training.run_folder import RECONSTRUCTION_EVAL_NAME, run_paths


RECONSTRUCTION_EVAL_SEED_OFFSET = 1_000_000_007


@torch.no_grad()
def evaluate_reconstruction(model, evaluation: ReconstructionEvalData, device: torch.device, seed: int,
                            step: int) -> dict[str, Any]:
    """Relative reconstruction error (1 - R^2) per modality of `model` (a masked autoencoder, unwrapped) on the
    held-out windows at `step`.

    Eval mode (no dropout, no modality dropout; the model's mode is restored after), the masking drawn from a
    generator seeded with `seed + RECONSTRUCTION_EVAL_SEED_OFFSET` (the same hidden patches every time)."""
    was_training = model.training
    model.eval()
    generator = torch.Generator(device=device)
    generator.manual_seed(seed + RECONSTRUCTION_EVAL_SEED_OFFSET)
    names = model.config.modality_names
    error_sum = torch.zeros(len(names), dtype=torch.float64, device=device)
    reference_sum = torch.zeros(len(names), dtype=torch.float64, device=device)
    try:
        for batch in evaluation.batches:
            input_values = batch["input_values"].to(device).float()
            noise, modality_dropout_noise = model.draw_masking_noise(input_values.shape[0], generator, device)
            outputs = model(input_values=input_values, modality_mask=batch["modality_mask"].to(device), noise=noise,
                            modality_dropout_noise=modality_dropout_noise)
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
        "step": step,
        "relative_reconstruction_error": per_modality,
        "relative_reconstruction_error_mean": sum(present) / len(present) if present else None,
    }


def write_reconstruction_eval(run_dir: Path, result: dict[str, Any], evaluation: ReconstructionEvalData, config,
                              strategy: str, statistics_windows: int | None, seed: int) -> None:
    """RUN/reconstruction_eval.json: the last evaluation (`result`) and what it measured."""
    atomic_write_json(run_dir / RECONSTRUCTION_EVAL_NAME, {
        **result,
        "definition": "per modality: sum over the hidden patches of the held-out windows of the weighted squared "
                      "error of the standardised target, divided by the same sum for predicting the training mean "
                      "of every target dimension (1 - R^2; 1.0 = predicting the training mean; null = modality "
                      "absent from the held-out windows); mean = over the modalities measured",
        "strategy": strategy,
        "modalities": config.modality_names,
        "held_out": {"fraction": evaluation.fraction, "records": evaluation.num_records,
                     "windows_scored": evaluation.num_windows, "windows_available": evaluation.num_windows_available,
                     "split": "sha1 of the record name (dataset_scripts.record_split.record_split_position)"},
        "target_statistics_windows": statistics_windows,
        "reconstruction_target": getattr(config, "reconstruction_target", None),
        "decoder_type": getattr(config, "decoder_type", None),
        "mask_ratio": config.mask_ratio,
        "seed": seed,
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
