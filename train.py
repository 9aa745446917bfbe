#!/usr/bin/env python
"""Pretrain PhysioMAE with Accelerate: every strategy of DESIGN.md, exact resume, export and push.

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

Reconstruction quality (MAE strategies: mae_modality_drop, mae, mae_unimodal). The records of the pretraining
split whose name hashes below `--reconstruction_eval_fraction` (`probing.record_split_is_test`, the sha1 split
of eval.py) are held out: none of their windows is trained on (the split is made before
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

import contextlib
import copy
import dataclasses
import hashlib
import inspect
import json
import logging
import math
import os
import re
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Literal, Optional

import numpy as np
import torch

from physiomae.io import atomic_write_json

logger = logging.getLogger("physiomae.train")

STRATEGIES = (
    "mae_modality_drop",
    "mae",
    "mae_unimodal",
    "contrastive_pairwise",
    "contrastive_loo",
    "random_init",
)
RECONSTRUCTION_STRATEGIES = ("mae_modality_drop", "mae", "mae_unimodal")
"""Strategies with a masked-patch decoder: target statistics and the held-out reconstruction error."""
RECONSTRUCTION_EVAL_NAME = "reconstruction_eval.json"
RECONSTRUCTION_EVAL_SEED_OFFSET = 1_000_000_007
"""The evaluation generator's seed is the run seed plus this: its masks are independent of the training draws."""
CHECKPOINT_PREFIX = "checkpoint-"
TMP_CHECKPOINT_PREFIX = ".tmp-checkpoint-"
OLD_CHECKPOINT_PREFIX = ".old-checkpoint-"
TRAINER_STATE_NAME = "trainer_state.json"
RANK_STATE_PATTERN = "rank_state_{rank}.pt"
EXPORT_COMPLETE_MARKER = "config.json"


# ----------------------------------------------------------------------------------------- arguments
@dataclass
class ModelArguments:
    """Which model to build: a starting configuration plus size/behaviour overrides (None = keep)."""

    config_name: Optional[str] = field(
        default=None,
        metadata={"help": "A folder or config.json holding a PhysioMAEConfig to start from (default: PhysioMAEConfig())."},
    )
    config_overrides: Optional[str] = field(
        default=None,
        metadata={"help": "Comma-separated key=value overrides of any config field, e.g. 'mask_ratio=0.6,fusion=early'."},
    )
    hidden_size: Optional[int] = field(default=None, metadata={"help": "Encoder width."})
    num_hidden_layers: Optional[int] = field(default=None, metadata={"help": "Encoder depth."})
    num_attention_heads: Optional[int] = field(default=None, metadata={"help": "Encoder attention heads."})
    intermediate_size: Optional[int] = field(default=None, metadata={"help": "Encoder MLP width (default 4x hidden)."})
    decoder_hidden_size: Optional[int] = field(default=None, metadata={"help": "Decoder width."})
    decoder_num_hidden_layers: Optional[int] = field(default=None, metadata={"help": "Decoder depth."})
    decoder_num_attention_heads: Optional[int] = field(default=None, metadata={"help": "Decoder attention heads."})
    decoder_intermediate_size: Optional[int] = field(default=None, metadata={"help": "Decoder MLP width."})
    tokenizer_conv_channels: Optional[int] = field(default=None, metadata={"help": "Channels of the patch tokenizer convolution."})
    mask_ratio: Optional[float] = field(default=None, metadata={"help": "Share of present tokens hidden from the encoder."})
    modality_dropout_prob: Optional[float] = field(
        default=None, metadata={"help": "Input modality dropout probability (mae_modality_drop only; mae forces 0)."}
    )
    modality_dropout_mode: Optional[str] = field(default=None, metadata={"help": "'batch' or 'sample'."})
    pooling: Optional[str] = field(default=None, metadata={"help": "'mean' or 'per_modality'."})
    norm_patch_loss: Optional[bool] = field(default=None, metadata={"help": "Reconstruct per-patch normalised targets."})
    hidden_dropout_prob: Optional[float] = field(default=None, metadata={"help": "Residual dropout."})
    attention_probs_dropout_prob: Optional[float] = field(default=None, metadata={"help": "Attention dropout."})
    projection_dim: Optional[int] = field(default=None, metadata={"help": "Contrastive projection width."})
    contrastive_temperature: Optional[float] = field(default=None, metadata={"help": "Initial InfoNCE temperature."})
    decoder_type: Optional[str] = field(
        default=None,
        metadata={"help": "'in_place' (one shared ViT-MAE decoder), 'cross_attention' (one per modality) or "
                  "'bottleneck' (per modality, reading only each modality's mean visible token)."},
    )
    tokenizer_type: Optional[str] = field(
        default=None, metadata={"help": "'conv' or 'conv+log_band_power' (spectral tokens beside the convolution)."}
    )
    reconstruction_target: Optional[str] = field(
        default=None, metadata={"help": "'waveform', 'log_band_power' or 'waveform+log_band_power'."}
    )


@dataclass
class DataArguments:
    """Where the windows come from: a saved builder output, or a raw challenge folder that is built first."""

    dataset_dir: Optional[str] = field(
        default=None,
        metadata={
            "help": "Output of `python -m dataset_scripts.physionet2018 build` (the save_to_disk folder, or the "
            "build output folder that holds it as dataset/)."
        },
    )
    data_dir: Optional[str] = field(
        default=None,
        metadata={
            "help": "Raw challenge-layout folder (training/, test/, age-sex.csv), built with the dataset builder first "
            "(into --dataset_dir, default OUTPUT/data/dataset); an existing build there is reused."
        },
    )
    build_num_proc: Optional[int] = field(default=None, metadata={"help": "Processes of the dataset build (--data_dir)."})
    split: str = field(default="pretrain", metadata={"help": "Split to pretrain on (falls back to probe_train when absent)."})
    streaming: bool = field(
        default=False,
        metadata={"help": "Stream the split as an IterableDataset (sharded per process); requires --max_steps."},
    )
    streaming_num_shards: int = field(default=16, metadata={"help": "Shards of the streamed dataset (>= processes x workers)."})
    shuffle_buffer_size: int = field(default=2048, metadata={"help": "Shuffle buffer of the streamed dataset."})
    num_workers: int = field(default=0, metadata={"help": "DataLoader worker processes per training process."})
    max_train_windows: Optional[int] = field(default=None, metadata={"help": "Use only the first N windows (quick runs)."})
    dataloader_drop_last: bool = field(default=False, metadata={"help": "Drop the last incomplete batch of each epoch."})
    reconstruction_eval_fraction: float = field(
        default=0.1,
        metadata={"help": "Share of the split's records held out of training to measure the reconstruction error "
                  "(by sha1 of the record name; 0: none held out, not measured). MAE strategies."},
    )
    reconstruction_eval_steps: int = field(
        default=100, metadata={"help": "Measure the held-out reconstruction error every N steps (0: only at the end)."}
    )
    reconstruction_eval_max_windows: int = field(
        default=256, metadata={"help": "Held-out windows scored per evaluation, evenly spaced (0: not measured)."}
    )
    target_statistics_max_windows: int = field(
        default=2048,
        metadata={"help": "Training windows (evenly spaced) behind the reconstruction targets' mean/std, computed "
                  "before the first step. MAE strategies."},
    )


@dataclass
class PretrainingArguments:
    """How to train: strategy, optimisation, precision, logging, checkpoints and Hub export."""

    output_dir: Optional[str] = field(default=None, metadata={"help": "Run folder (required, on the command line or in YAML)."})
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Start afresh even if OUTPUT already holds checkpoints (they are deleted)."}
    )
    strategy: Literal[STRATEGIES] = field(default="mae_modality_drop", metadata={"help": "Pretraining strategy."})
    modalities: Optional[list[str]] = field(
        default=None,
        metadata={"help": "Restrict the model to these modalities (mae_unimodal: train one model for each of them)."},
    )
    seed: int = field(default=42, metadata={"help": "Seed of the initialisation, data order and masking generators."})
    max_steps: int = field(default=-1, metadata={"help": "Optimizer steps to train; overrides num_epochs when > 0."})
    num_epochs: int = field(default=1, metadata={"help": "Epochs to train when max_steps <= 0."})
    per_device_batch_size: int = field(default=32, metadata={"help": "Windows per batch per process."})
    learning_rate: float = field(default=1e-3, metadata={"help": "Peak AdamW learning rate."})
    weight_decay: float = field(default=0.05, metadata={"help": "AdamW weight decay (not on biases and norms)."})
    adam_beta1: float = field(default=0.9, metadata={"help": "AdamW beta1."})
    adam_beta2: float = field(default=0.95, metadata={"help": "AdamW beta2."})
    warmup_ratio: float = field(default=0.05, metadata={"help": "Share of the steps spent in linear warmup."})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Batches per optimizer step."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping norm (<= 0: off)."})
    mixed_precision: Literal["no", "bf16", "fp16"] = field(default="no", metadata={"help": "Accelerate mixed precision."})
    logging_steps: int = field(default=10, metadata={"help": "Log every N optimizer steps (and the first and last)."})
    save_steps: int = field(default=500, metadata={"help": "Checkpoint every N steps (0: only at the end)."})
    save_total_limit: Optional[int] = field(default=2, metadata={"help": "Keep only the newest N checkpoints."})
    resume_from_checkpoint: Optional[str] = field(
        default=None, metadata={"help": "'latest' or a checkpoint folder to continue from."}
    )
    report_to: Literal["auto", "tensorboard", "none"] = field(
        default="auto", metadata={"help": "Tracker: 'auto' = TensorBoard when installed."}
    )
    disable_tqdm: bool = field(default=False, metadata={"help": "Hide the progress bar."})
    log_sample_ids: bool = field(
        default=False,
        metadata={"help": "Per-process diagnostics in sample_ids/rank_R.jsonl: the record:window ids of every step and a "
                  "checksum of the final weights."},
    )
    push_to_hub: bool = field(default=False, metadata={"help": "Upload the export folder with huggingface_hub.HfApi."})
    hub_model_id: Optional[str] = field(default=None, metadata={"help": "ORG/NAME of the Hub repo."})
    hub_private: bool = field(default=False, metadata={"help": "Create the Hub repo as private."})
    hub_token: Optional[str] = field(default=None, metadata={"help": "Hub token (default: HF_TOKEN / cached login)."})


ARGUMENT_CLASSES = (ModelArguments, DataArguments, PretrainingArguments)


class TrainingStopped(RuntimeError):
    """The run stopped early on purpose (a signal); a checkpoint was saved."""


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or inf; the last good state was saved before stopping."""


class PushToHubError(RuntimeError):
    """The upload failed after the local export completed."""


def build_argument_parser():
    from transformers import HfArgumentParser

    parser = HfArgumentParser(ARGUMENT_CLASSES)
    parser.prog = "train.py"
    parser.usage = "train.py [CONFIG.yaml] [--field value ...]"
    parser.description = (
        "Pretrain PhysioMAE. An optional first positional argument names a YAML file whose keys are the field "
        "names below; its values become defaults and command-line flags override them."
    )
    return parser


def parse_arguments(argv: list[str] | None = None) -> tuple[ModelArguments, DataArguments, PretrainingArguments]:
    """YAML (optional first argument) gives defaults, the command line wins."""
    from physiomae.arguments import load_yaml_defaults, split_yaml_argument

    yaml_path, argv = split_yaml_argument(sys.argv[1:] if argv is None else argv)
    parser = build_argument_parser()
    if yaml_path is not None:
        parser.set_defaults(**load_yaml_defaults(yaml_path, ARGUMENT_CLASSES, program="train.py"))
    model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=argv, look_for_args_file=False)
    validate_arguments(model_args, data_args, training_args)
    return model_args, data_args, training_args


def validate_arguments(model_args: ModelArguments, data_args: DataArguments, training_args: PretrainingArguments) -> None:
    if not training_args.output_dir:
        raise ValueError("--output_dir is required (on the command line or as output_dir in the YAML file)")
    if training_args.strategy not in STRATEGIES:
        raise ValueError(f"--strategy must be one of {STRATEGIES}, got {training_args.strategy!r}")
    if training_args.strategy != "random_init" and not (data_args.dataset_dir or data_args.data_dir):
        raise ValueError("give --dataset_dir (a built dataset) or --data_dir (a raw challenge folder to build)")
    if training_args.per_device_batch_size < 1 or training_args.gradient_accumulation_steps < 1:
        raise ValueError("--per_device_batch_size and --gradient_accumulation_steps must be >= 1")
    if training_args.max_steps <= 0 and training_args.num_epochs < 1:
        raise ValueError("set --max_steps > 0 or --num_epochs >= 1")
    if data_args.streaming and training_args.max_steps <= 0:
        raise ValueError("--streaming needs --max_steps > 0 (a streamed dataset has no length to count epochs from)")
    if training_args.push_to_hub and not training_args.hub_model_id:
        raise ValueError("--push_to_hub needs --hub_model_id ORG/NAME")
    if not 0.0 <= training_args.warmup_ratio < 1.0:
        raise ValueError(f"--warmup_ratio must lie in [0, 1), got {training_args.warmup_ratio}")
    if not 0.0 <= data_args.reconstruction_eval_fraction < 1.0:
        raise ValueError(f"--reconstruction_eval_fraction must lie in [0, 1), got {data_args.reconstruction_eval_fraction}")
    if data_args.reconstruction_eval_steps < 0 or data_args.reconstruction_eval_max_windows < 0:
        raise ValueError("--reconstruction_eval_steps and --reconstruction_eval_max_windows must be >= 0")
    if data_args.target_statistics_max_windows < 1:
        raise ValueError("--target_statistics_max_windows must be >= 1")


# ----------------------------------------------------------------------------------------- model config
def build_model_config(model_args: ModelArguments, training_args: PretrainingArguments):
    """The base PhysioMAEConfig of the run: start config + overrides + what the strategy requires."""
    from modeling_physiomae.configuration_physiomae import PhysioMAEConfig

    if model_args.config_name:
        config = PhysioMAEConfig.from_pretrained(model_args.config_name)
    else:
        config = PhysioMAEConfig()
    for item in dataclasses.fields(ModelArguments):
        if item.name in ("config_name", "config_overrides"):
            continue
        value = getattr(model_args, item.name)
        if value is not None:
            setattr(config, item.name, value)
    if model_args.config_overrides:
        config.update_from_string(model_args.config_overrides)

    if training_args.modalities:
        unknown = [name for name in training_args.modalities if name not in config.modalities]
        if unknown:
            raise ValueError(f"--modalities {unknown} are not in the model's modalities {config.modality_names}")
        config.modalities = {name: list(config.modalities[name]) for name in training_args.modalities}

    strategy = training_args.strategy
    if strategy == "mae":
        config.modality_dropout_prob = 0.0
    elif strategy == "mae_modality_drop":
        if config.modality_dropout_prob <= 0:
            raise ValueError("strategy mae_modality_drop needs modality_dropout_prob > 0 (use strategy mae for 0)")
        if config.num_modalities < 2:
            raise ValueError("strategy mae_modality_drop needs at least two modalities")
    elif strategy.startswith("contrastive_"):
        config.fusion = "late"
        config.contrastive_loss = strategy.split("_", 1)[1]
        if config.num_modalities < 2:
            raise ValueError(f"strategy {strategy} needs at least two modalities")
    revalidate_config(config)
    return config


def revalidate_config(config) -> None:
    validate = getattr(config, "_validate", None)
    if callable(validate):
        validate()


def unimodal_config(config, modality: str):
    """A copy of `config` holding only `modality` (and no modality dropout: nothing would be left)."""
    single = copy.deepcopy(config)
    single.modalities = {modality: list(config.modalities[modality])}
    single.modality_dropout_prob = 0.0
    revalidate_config(single)
    return single


def model_class_for(strategy: str):
    from modeling_physiomae.modeling_physiomae import PhysioMAEForContrastivePreTraining, PhysioMAEForPreTraining

    return PhysioMAEForContrastivePreTraining if strategy.startswith("contrastive_") else PhysioMAEForPreTraining


# ----------------------------------------------------------------------------------------- data
def resolve_dataset_dir(data_args: DataArguments, output_dir: Path, accelerator) -> Path:
    """The save_to_disk folder of the dataset; builds it from --data_dir first when asked to.

    --dataset_dir names the saved dataset (the builder's O/dataset) or the build folder O holding it. With
    --data_dir an existing build there is reused; otherwise the builder writes O/dataset and
    O/build_report.json, with O = the parent of --dataset_dir when that is named `dataset`, else --dataset_dir,
    else OUTPUT/data.
    """
    candidate = Path(data_args.dataset_dir) if data_args.dataset_dir else None
    if data_args.data_dir:
        if candidate is None:
            build_root = output_dir / "data"
        else:
            build_root = candidate.parent if candidate.name == "dataset" else candidate
        target = build_root / "dataset"
        if accelerator.is_main_process:
            if is_saved_dataset(target):
                logger.info("reusing the dataset already built in %s", target)
            else:
                build_dataset(Path(data_args.data_dir), build_root, data_args.build_num_proc)
        accelerator.wait_for_everyone()
        return target
    if is_saved_dataset(candidate):
        return candidate
    if is_saved_dataset(candidate / "dataset"):
        return candidate / "dataset"
    raise FileNotFoundError(
        f"--dataset_dir {candidate} holds no dataset saved with save_to_disk (looked for dataset_dict.json / "
        f"dataset_info.json in it and in {candidate / 'dataset'}); build it with `python -m "
        f"dataset_scripts.physionet2018 build`, or pass --data_dir RAW_FOLDER to build it first"
    )


def is_saved_dataset(path: Path) -> bool:
    return (path / "dataset_dict.json").is_file() or (path / "dataset_info.json").is_file()


def build_dataset(data_dir: Path, build_root: Path, num_proc: int | None = None) -> None:
    """Run the dataset builder (dataset_scripts.physionet2018) on a raw challenge folder: build_root/dataset."""
    if not data_dir.is_dir():
        raise FileNotFoundError(f"--data_dir {data_dir} is not a folder")
    from dataset_scripts.physionet2018 import build_to_folder

    logger.info("building the dataset from %s into %s", data_dir, build_root)
    report = build_to_folder(str(data_dir), str(build_root), num_proc=num_proc)
    totals = report.get("totals", {})
    logger.info("dataset built: %s records, %s windows kept, %s skipped %s", totals.get("records_built"),
                totals.get("windows_kept"), totals.get("windows_skipped"), totals.get("windows_skipped_by_reason"))


def load_split(dataset_dir: Path, split: str):
    """The requested split of a saved DatasetDict (probe_train when `split` is absent)."""
    import datasets

    loaded = datasets.load_from_disk(str(dataset_dir))
    if isinstance(loaded, datasets.Dataset):
        logger.info("%s holds a single Dataset; using it as split %s", dataset_dir, split)
        return loaded
    if split in loaded:
        return loaded[split]
    for fallback in ("probe_train", "train"):
        if fallback in loaded:
            logger.warning("split %r is absent from %s (splits: %s); falling back to %r", split, dataset_dir,
                           list(loaded), fallback)
            return loaded[fallback]
    raise KeyError(f"split {split!r} is absent from {dataset_dir}; available splits: {list(loaded)}")


def dataset_layout(dataset) -> tuple[list[str], list[str]]:
    """Channel and modality names of the dataset's `input_values` / `modality_mask` axes.

    The builder writes windows in the default PhysioMAEConfig channel order; a dataset may record other names
    in its info metadata (`channel_names`, `modality_names` in `info.description` JSON).
    """
    from modeling_physiomae.configuration_physiomae import PhysioMAEConfig

    default = PhysioMAEConfig()
    channel_names, modality_names = default.channel_names, default.modality_names
    description = getattr(getattr(dataset, "info", None), "description", None) or ""
    try:
        metadata = json.loads(description) if description.strip().startswith("{") else {}
    except json.JSONDecodeError:
        metadata = {}
    channel_names = metadata.get("channel_names", channel_names)
    modality_names = metadata.get("modality_names", modality_names)
    return list(channel_names), list(modality_names)


def check_window_geometry(dataset, config) -> None:
    """The dataset's windows must have the model's length (sampling rate x window seconds)."""
    feature = dataset.features.get("input_values")
    shape = getattr(feature, "shape", None)
    if shape is not None and shape[-1] != config.window_length:
        raise ValueError(
            f"the dataset's windows have {shape[-1]} samples but the model expects {config.window_length} "
            f"({config.window_seconds} s at {config.sampling_rate} Hz)"
        )


class WindowCollator:
    """Builds a batch in the model's channel order (channels selected by name from the dataset's).

    Returns `input_values` float32 (batch, model_channels, window_length), `modality_mask` bool
    (batch, model_modalities) and `sample_ids` (list of "record:window"). `__call__` takes a list of rows
    (streaming); `from_arrays` takes whole-batch arrays (the fast map-style path, see `ArrowWindowDataset`).
    """

    def __init__(self, config, dataset_channel_names: list[str], dataset_modality_names: list[str]):
        lowered = [name.lower() for name in dataset_channel_names]
        missing = [name for name in config.channel_names if name.lower() not in lowered]
        if missing:
            raise ValueError(f"model channels {missing} are not in the dataset's channels {dataset_channel_names}")
        self.num_dataset_channels = len(dataset_channel_names)
        self.num_dataset_modalities = len(dataset_modality_names)
        self.channel_index = np.array([lowered.index(name.lower()) for name in config.channel_names])
        self.identity_channels = self.channel_index.tolist() == list(range(len(dataset_channel_names)))
        # For each model modality: the dataset modality of the same name, or (by channels) None.
        self.modality_source = [
            dataset_modality_names.index(name) if name in dataset_modality_names else None
            for name in config.modality_names
        ]
        self.modality_channel_index = [
            self.channel_index[config.modality_channel_slices[name]] for name in config.modality_names
        ]

    def from_arrays(self, input_values: np.ndarray, modality_mask: np.ndarray, channel_mask: np.ndarray | None,
                    records: list, windows: list) -> dict[str, Any]:
        # (batch, dataset_channels, window_length) -> (batch, model_channels, window_length)
        if not self.identity_channels:
            input_values = input_values[:, self.channel_index]
        present = []
        for source, channel_index in zip(self.modality_source, self.modality_channel_index):
            if source is not None:
                present.append(modality_mask[:, source])
            elif channel_mask is not None:
                present.append(channel_mask[:, channel_index].any(axis=1))
            else:
                present.append(np.ones(len(input_values), dtype=bool))
        return {
            # float16 datasets stay float16 until they reach the device (half the bytes between processes and
            # to the GPU); the training loop casts to float32 there.
            "input_values": torch.from_numpy(
                np.array(input_values, dtype=np.float16 if input_values.dtype == np.float16 else np.float32)
            ),
            "modality_mask": torch.from_numpy(np.stack(present, axis=1).astype(bool)),  # (batch, model_modalities)
            "sample_ids": [f"{record}:{int(window)}" for record, window in zip(records, windows)],
        }

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        def stacked(name):
            return np.stack([np.asarray(row[name]) for row in rows]) if name in rows[0] else None

        return self.from_arrays(
            stacked("input_values"), stacked("modality_mask").astype(bool),
            None if stacked("channel_mask") is None else stacked("channel_mask").astype(bool),
            [row.get("record", "?") for row in rows], [row.get("window", -1) for row in rows],
        )


def arrow_column_to_numpy(column, shape: tuple[int, ...]) -> np.ndarray:
    """A fixed-shape (nested list / Array2D extension) Arrow column as one numpy array of `shape`."""
    array = column.combine_chunks() if hasattr(column, "combine_chunks") else column
    while True:
        if hasattr(array, "storage"):  # datasets' Array2D extension type
            array = array.storage
        elif hasattr(array, "flatten") and hasattr(array.type, "value_type"):
            array = array.flatten()
        else:
            break
    return array.to_numpy(zero_copy_only=False).reshape(shape)


class ArrowWindowDataset(torch.utils.data.Dataset):
    """Map-style view of a split that hands the DataLoader whole batches (`__getitems__`) read straight from
    Arrow: one take + one conversion per batch instead of one per row (about 2x faster on CPU)."""

    def __init__(self, split_dataset, collator: WindowCollator):
        self.dataset = split_dataset.with_format("arrow")
        self.collator = collator
        self.window_length = split_dataset.features["input_values"].shape[-1]

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.__getitems__([index])

    def __getitems__(self, indices: list[int]) -> dict[str, Any]:
        table = self.dataset[list(indices)]
        batch_size = table.num_rows
        names = table.column_names
        collator = self.collator
        return collator.from_arrays(
            arrow_column_to_numpy(table.column("input_values"),
                                  (batch_size, collator.num_dataset_channels, self.window_length)),
            arrow_column_to_numpy(table.column("modality_mask"), (batch_size, collator.num_dataset_modalities)),
            arrow_column_to_numpy(table.column("channel_mask"), (batch_size, collator.num_dataset_channels))
            if "channel_mask" in names else None,
            table.column("record").to_pylist() if "record" in names else ["?"] * batch_size,
            table.column("window").to_pylist() if "window" in names else [-1] * batch_size,
        )


def batch_passthrough(batch: dict[str, Any]) -> dict[str, Any]:
    """collate_fn of ArrowWindowDataset loaders: the dataset already built the batch."""
    return batch


def usable_row_indices(dataset, collator: WindowCollator) -> list[int] | None:
    """Rows with at least one of the model's modalities present (None: all rows usable)."""
    modality_mask = np.asarray(dataset.with_format("numpy")["modality_mask"], dtype=bool)
    columns = [source for source in collator.modality_source if source is not None]
    if len(columns) != len(collator.modality_source):
        return None  # modalities defined by channel only: leave every row in, the model sees the mask
    keep = modality_mask[:, columns].any(axis=1)
    if keep.all():
        return None
    return np.flatnonzero(keep).tolist()


class EpochShuffleSampler(torch.utils.data.Sampler):
    """A random permutation of the rows that depends only on (seed, epoch): identical in every process and
    reproducible after a resume. Accelerate shards its batches across processes and calls `set_epoch`."""

    def __init__(self, num_rows: int, seed: int):
        self.num_rows = num_rows
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.num_rows, generator=generator).tolist())

    def __len__(self) -> int:
        return self.num_rows


@dataclass
class ReconstructionEvalData:
    """The held-out windows of the reconstruction evaluation, collated once like the training batches.

    `batches`: dicts with `input_values` `(batch, model_channels, window_length)` (float16 or float32, on the
    CPU) and `modality_mask` `(batch, model_modalities)` bool; the same windows in the same order at every
    evaluation.
    """

    batches: list[dict[str, Any]]
    fraction: float
    num_records: int  # held-out records (all removed from training)
    num_windows: int  # windows scored per evaluation
    num_windows_available: int  # usable held-out windows (at least one of the model's modalities present)
    every_steps: int = 0  # evaluate every N optimizer steps (0: only at the last step)


@dataclass
class TrainingData:
    """The dataloader of a run and how to position it at (epoch, batch)."""

    dataloader: Any
    batches_per_epoch: Optional[int]  # None when streaming
    num_rows: Optional[int]
    streaming: bool
    streamed_dataset: Any = None
    dropped_rows: int = 0
    statistics_windows: Optional[ArrowWindowDataset] = None  # training windows behind the target statistics
    reconstruction_eval: Optional[ReconstructionEvalData] = None  # None: the error is not measured
    held_out_note: str = ""  # why nothing is held out, when nothing is

    def statistics_batches(self, device, batch_size: int = 64) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """`(input_values, modality_mask)` batches of `statistics_windows` on `device`, for `set_target_statistics`."""
        for start in range(0, len(self.statistics_windows), batch_size):
            batch = self.statistics_windows.__getitems__(list(range(start, min(start + batch_size, len(self.statistics_windows)))))
            yield batch["input_values"].to(device).float(), batch["modality_mask"].to(device)


def evenly_spaced(num_rows: int, count: int) -> list[int]:
    """`min(count, num_rows)` row indices spread evenly over `range(num_rows)` (all of them when count >= num_rows)."""
    if count >= num_rows:
        return list(range(num_rows))
    return np.unique(np.linspace(0, num_rows - 1, count).round().astype(int)).tolist()


def held_out_record_rows(split_dataset, fraction: float) -> tuple[np.ndarray | None, int, str]:
    """Which rows belong to the held-out records: `record_split_is_test(record, fraction)` (eval.py's sha1 split).

    Returns (boolean row mask or None when nothing is held out, number of held-out records, why nothing is).
    Nothing is held out when `fraction` is 0, the split has no `record` column, or the hash picks no record
    or every record (training needs at least one).
    """
    from physiomae.evaluation.probing import record_split_is_test

    if fraction <= 0:
        return None, 0, "--reconstruction_eval_fraction is 0"
    if "record" not in split_dataset.column_names:
        return None, 0, "the split has no record column"
    records = np.asarray(split_dataset.with_format(None)["record"], dtype=object).astype(str)
    names, inverse = np.unique(records, return_inverse=True)
    held_names = np.array([record_split_is_test(str(name), fraction) for name in names])
    if not held_names.any():
        return None, 0, f"no record of {len(names)} hashes into the held-out share {fraction:g}"
    if held_names.all():
        return None, 0, f"every record of {len(names)} hashes into the held-out share {fraction:g}"
    return held_names[inverse], int(held_names.sum()), ""


def build_reconstruction_eval(held_out, collator: WindowCollator, fraction: float, num_records: int,
                              max_windows: int, batch_size: int, every_steps: int) -> ReconstructionEvalData | None:
    """Collate up to `max_windows` usable held-out windows (evenly spaced) into fixed evaluation batches."""
    keep = usable_row_indices(held_out, collator)
    if keep is not None:
        held_out = held_out.select(keep, keep_in_memory=True)
    if len(held_out) == 0:
        return None
    chosen = evenly_spaced(len(held_out), max_windows)
    windows = ArrowWindowDataset(held_out, collator)
    batches = []
    for start in range(0, len(chosen), batch_size):
        batch = windows.__getitems__(chosen[start:start + batch_size])
        batches.append({"input_values": batch["input_values"], "modality_mask": batch["modality_mask"]})
    return ReconstructionEvalData(batches, fraction, num_records, len(chosen), len(held_out), every_steps)


def build_training_data(split_dataset, config, data_args: DataArguments, training_args: PretrainingArguments,
                        accelerator) -> TrainingData:
    """The training stream of one model, its target-statistics windows and its held-out evaluation windows.

    Order: the held-out records are split off the whole split (MAE strategies), then `--max_train_windows`
    takes the first N training windows, then windows without any of the model's modalities are skipped.
    """
    dataset_channels, dataset_modalities = dataset_layout(split_dataset)
    check_window_geometry(split_dataset, config)
    collator = WindowCollator(config, dataset_channels, dataset_modalities)
    columns = [name for name in ("input_values", "modality_mask", "channel_mask", "record", "window")
               if name in split_dataset.column_names]
    missing = {"input_values", "modality_mask"} - set(columns)
    if missing:
        raise ValueError(f"the dataset lacks the columns {sorted(missing)} (has {split_dataset.column_names})")
    split_dataset = split_dataset.select_columns(columns)

    reconstruction_eval, held_out_note = None, ""
    if training_args.strategy in RECONSTRUCTION_STRATEGIES:
        fraction = data_args.reconstruction_eval_fraction if data_args.reconstruction_eval_max_windows > 0 else 0.0
        held_rows, num_held_records, held_out_note = held_out_record_rows(split_dataset, fraction)
        if held_rows is None:
            logger.warning("the reconstruction error is not measured: %s (nothing held out)", held_out_note)
        else:
            reconstruction_eval = build_reconstruction_eval(
                split_dataset.select(np.flatnonzero(held_rows), keep_in_memory=True), collator, fraction, num_held_records,
                data_args.reconstruction_eval_max_windows, training_args.per_device_batch_size,
                data_args.reconstruction_eval_steps,
            )
            # in memory: an indices mapping written next to the saved dataset would need a writable folder
            split_dataset = split_dataset.select(np.flatnonzero(~held_rows), keep_in_memory=True)
            if reconstruction_eval is None:
                held_out_note = "no held-out window has any of the model's modalities"
                logger.warning("the reconstruction error is not measured: %s", held_out_note)
            else:
                logger.info("held out %d records (%d usable windows, %d scored per evaluation) of the split to "
                            "measure the reconstruction error", num_held_records,
                            reconstruction_eval.num_windows_available, reconstruction_eval.num_windows)
    if data_args.max_train_windows:
        split_dataset = split_dataset.select(range(min(data_args.max_train_windows, len(split_dataset))))
    keep = usable_row_indices(split_dataset, collator)
    dropped = 0
    if keep is not None:
        dropped = len(split_dataset) - len(keep)
        logger.warning("skipping %d of %d windows: none of the model's modalities %s is present", dropped,
                       len(split_dataset), config.modality_names)
        split_dataset = split_dataset.select(keep, keep_in_memory=True)
    if len(split_dataset) == 0:
        raise ValueError(f"no usable windows for modalities {config.modality_names}")
    statistics_windows = None
    if training_args.strategy in RECONSTRUCTION_STRATEGIES:
        statistics_windows = ArrowWindowDataset(
            split_dataset.select(evenly_spaced(len(split_dataset), data_args.target_statistics_max_windows),
                                 keep_in_memory=True), collator,
        )
    extras = {"statistics_windows": statistics_windows, "reconstruction_eval": reconstruction_eval,
              "held_out_note": held_out_note}

    if data_args.streaming:
        from datasets.distributed import split_dataset_by_node

        num_shards = max(data_args.streaming_num_shards, accelerator.num_processes * max(1, data_args.num_workers))
        num_shards = min(num_shards, len(split_dataset))
        streamed = split_dataset.to_iterable_dataset(num_shards=num_shards).with_format("torch")
        streamed = streamed.shuffle(seed=training_args.seed, buffer_size=data_args.shuffle_buffer_size)
        streamed = split_dataset_by_node(streamed, rank=accelerator.process_index, world_size=accelerator.num_processes)
        # Sharded by split_dataset_by_node already: the loader is not prepared (no second sharding),
        # batches are moved to the device by the training loop.
        dataloader = torch.utils.data.DataLoader(
            streamed, batch_size=training_args.per_device_batch_size, collate_fn=collator,
            num_workers=data_args.num_workers, drop_last=data_args.dataloader_drop_last,
        )
        return TrainingData(dataloader, None, None, True, streamed, dropped, **extras)

    dataset = ArrowWindowDataset(split_dataset, collator)
    sampler = EpochShuffleSampler(len(dataset), training_args.seed)
    dataloader = torch.utils.data.DataLoader(
        dataset, batch_size=training_args.per_device_batch_size, sampler=sampler, collate_fn=batch_passthrough,
        num_workers=data_args.num_workers, drop_last=data_args.dataloader_drop_last,
        persistent_workers=data_args.num_workers > 0, pin_memory=accelerator.device.type == "cuda",
    )
    dataloader = accelerator.prepare(dataloader)
    if len(dataloader) == 0:
        raise ValueError(
            f"{len(dataset)} windows give no batch of {training_args.per_device_batch_size} per process "
            f"(drop_last={data_args.dataloader_drop_last}, processes={accelerator.num_processes})"
        )
    return TrainingData(dataloader, len(dataloader), len(dataset), False, None, dropped, **extras)


def iterate_batches(data: TrainingData, accelerator, start_epoch: int, start_batch: int):
    """Yields (epoch, batch_index_in_epoch, batch) forever, starting at (start_epoch, start_batch)."""
    epoch, skip = start_epoch, start_batch
    while True:
        if data.streaming:
            data.streamed_dataset.set_epoch(epoch)
            loader = accelerator.skip_first_batches(data.dataloader, skip) if skip else data.dataloader
        else:
            data.dataloader.set_epoch(epoch)
            if skip >= data.batches_per_epoch:
                epoch, skip = epoch + 1, 0
                continue
            loader = accelerator.skip_first_batches(data.dataloader, skip) if skip else data.dataloader
        produced = False
        for offset, batch in enumerate(loader):
            produced = True
            yield epoch, skip + offset, batch
        if not produced and skip == 0:
            raise RuntimeError(f"the dataloader of process {accelerator.process_index} yielded no batch in epoch {epoch}")
        epoch, skip = epoch + 1, 0


# ----------------------------------------------------------------------------------------- checkpoints
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


def resolve_resume_path(resume: str | None, checkpoints_dir: Path) -> Path | None:
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
    return path


# ----------------------------------------------------------------------------------------- the run
@dataclass
class RunPaths:
    """Where one trained model's files go."""

    run_dir: Path
    checkpoints_dir: Path
    log_path: Path
    export_dir: Path
    sample_ids_dir: Path


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
        self.model = model_class_for(self.strategy)(self.config)
        self.model_accepts_generator = "generator" in inspect.signature(self.model.forward).parameters
        if self.strategy == "random_init":
            return
        decay, no_decay = [], []
        for name, parameter in self.model.named_parameters():
            if not parameter.requires_grad:
                continue
            (no_decay if parameter.ndim < 2 or "norm" in name.lower() or "embedding" in name.lower() else decay).append(parameter)
        # The model has hundreds of small parameter tensors (a tokenizer per modality, decoder layers): the multi-tensor
        # (foreach) AdamW cuts its operator count ~4.6x on CPU; on CUDA the fused kernel does one launch.
        on_cuda = self.accelerator.device.type == "cuda"
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": self.args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=self.args.learning_rate, betas=(self.args.adam_beta1, self.args.adam_beta2),
            **({"fused": True} if on_cuda else {"foreach": True}),
        )
        self.steps = self.total_steps()
        scheduler = get_cosine_schedule_with_warmup(
            optimizer, num_warmup_steps=int(round(self.args.warmup_ratio * self.steps)), num_training_steps=self.steps
        )
        self.model, self.optimizer, self.scheduler = self.accelerator.prepare(self.model, optimizer, scheduler)
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
                         "split": "sha1 of the record name (physiomae.evaluation.probing.record_split_is_test)"},
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
        kwargs = {"generator": self.generator} if self.model_accepts_generator else {}
        return self.model(input_values=input_values, modality_mask=modality_mask, **kwargs)

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


# ----------------------------------------------------------------------------------------- export
def build_feature_extractor(config, dataset_dir: Path | None):
    """The extractor saved with the model, for the model's channels: the dataset's own preprocessing settings
    when its build saved a preprocessor_config.json, the extractor's defaults otherwise."""
    try:
        from modeling_physiomae.feature_extraction_physiomae import PhysioMAEFeatureExtractor
    except ImportError as error:
        logger.warning("no feature extractor saved with the export: %s", error)
        return None
    settings: dict[str, Any] = {}
    for folder in ([dataset_dir, dataset_dir.parent] if dataset_dir is not None else []):
        if (folder / "preprocessor_config.json").is_file():
            settings = PhysioMAEFeatureExtractor.from_pretrained(str(folder)).to_dict()
            break
    for key in ("feature_extractor_type", "processor_class", "auto_map"):
        settings.pop(key, None)
    settings.update(modalities={name: list(channels) for name, channels in config.modalities.items()},
                    sampling_rate=config.sampling_rate, window_seconds=config.window_seconds)
    return PhysioMAEFeatureExtractor(**settings)


STRATEGY_SUMMARIES = {
    "mae_modality_drop": "Early-fusion masked autoencoder pretrained with input modality dropout (the proposal).",
    "mae": "Early-fusion masked autoencoder pretrained without modality dropout.",
    "mae_unimodal": "Masked autoencoder pretrained on a single modality.",
    "contrastive_pairwise": "Late-fusion encoder pretrained with pairwise (CLIP-style) InfoNCE between modalities.",
    "contrastive_loo": "Late-fusion encoder pretrained with leave-one-out InfoNCE between modalities.",
    "random_init": "Untrained encoder (random initialisation): the floor every pretrained variant is compared with.",
}


def build_readme(model, strategy: str, training_args: PretrainingArguments, extra: dict[str, Any]) -> str:
    """README rendered from the packaged model card template (model_card.md, physiomae.model_card)."""
    from physiomae.model_card import ModelCardInputs, render_model_card

    config = model.config
    repo_id = training_args.hub_model_id or f"physiomae-{strategy}"
    modality_text = ", ".join(f"{name} ({len(channels)} ch)" for name, channels in config.modalities.items())
    facts = "; ".join(f"{key}: {value}" for key, value in extra.items())
    summary = (f"{STRATEGY_SUMMARIES.get(strategy, strategy)} Modalities: {modality_text}. Encoder: hidden "
               f"{config.hidden_size}, {config.num_hidden_layers} layers, {config.num_attention_heads} heads.")
    inputs = ModelCardInputs(
        model_name=f"PhysioMAE ({strategy})",
        repo_id=repo_id,
        summary=summary,
        intended_use="Frozen feature extraction (pooled window embeddings) for linear probes on sleep staging, "
                     "arousal detection and age, and for fine-tuning.",
        training_data=f"Pretrained with `train.py --strategy {strategy}` on the unlabelled split of the "
                      f"PhysioNet/CinC 2018 layout ({facts}).",
        data_limitations="Pretraining data: one cohort (PhysioNet/CinC 2018) or its synthetic stand-in; other "
                         "montages and sites are untested.",
        age_definition="see eval.py (binary split at a documented threshold)",
        auto_class="AutoModel",
    )
    return render_model_card(inputs, [])


def export_model(model, folder: Path, strategy: str, training_args: PretrainingArguments, dataset_dir: Path | None,
                 extra: dict[str, Any]) -> Path:
    from physiomae.hub import save_for_hub

    model = model.float().cpu().eval()
    extractor = build_feature_extractor(model.config, dataset_dir)
    readme = build_readme(model, strategy, training_args, extra)
    save_for_hub(model, str(folder), feature_extractor=extractor, readme_text=readme)
    logger.info("exported %s", folder)
    return folder


def push_export(folder: Path, training_args: PretrainingArguments, hub_api=None) -> None:
    from physiomae.hub import push_to_hub

    try:
        push_to_hub(str(folder), training_args.hub_model_id, api=hub_api, token=training_args.hub_token,
                    private=training_args.hub_private)
    except Exception as error:
        raise PushToHubError(
            f"the export in {folder} is complete, but pushing it to {training_args.hub_model_id} failed: {error}. "
            f"Upload it later with physiomae.hub.push_to_hub or `huggingface-cli upload`."
        ) from error


# ----------------------------------------------------------------------------------------- plots
def plot_loss_curves(log_paths: dict[str, Path], output_png: Path) -> None:
    """Training loss (overall and per modality), the held-out relative reconstruction error per modality (a
    panel drawn when some log line holds it) and the learning rate, against the optimizer step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = {}
    for label, path in log_paths.items():
        if path.is_file():
            entries = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            if entries:
                runs[label] = entries
    if not runs:
        return
    has_reconstruction = any("relative_reconstruction_error" in entry for entries in runs.values() for entry in entries)
    if has_reconstruction:
        figure, (loss_axis, reconstruction_axis, lr_axis) = plt.subplots(
            3, 1, figsize=(9, 10), sharex=True, gridspec_kw={"height_ratios": [3, 2, 1]})
    else:
        figure, (loss_axis, lr_axis) = plt.subplots(2, 1, figsize=(9, 7), sharex=True,
                                                    gridspec_kw={"height_ratios": [3, 1]})
    for label, entries in runs.items():
        steps = [entry["step"] for entry in entries]
        prefix = f"{label}: " if label else ""
        loss_axis.plot(steps, [entry["loss"] for entry in entries], linewidth=2, label=f"{prefix}loss")
        modality_names = entries[-1].get("loss_per_modality") or {}
        if len(modality_names) > 1:
            for name in modality_names:
                values = [(entry.get("loss_per_modality") or {}).get(name) for entry in entries]
                values = [math.nan if value is None else value for value in values]
                loss_axis.plot(steps, values, linewidth=1, alpha=0.7, label=f"{prefix}{name}")
        lr_axis.plot(steps, [entry["learning_rate"] for entry in entries], label=label or "lr")
        if has_reconstruction:
            evaluated = [entry for entry in entries if "relative_reconstruction_error" in entry]
            evaluation_steps = [entry["step"] for entry in evaluated]
            names = list((evaluated[-1]["relative_reconstruction_error"] if evaluated else {}))
            for name in names:
                values = [entry["relative_reconstruction_error"].get(name) for entry in evaluated]
                reconstruction_axis.plot(evaluation_steps, [math.nan if value is None else value for value in values],
                                         marker="o", markersize=3, linewidth=1, label=f"{prefix}{name}")
            if len(names) > 1:
                means = [entry.get("relative_reconstruction_error_mean") for entry in evaluated]
                reconstruction_axis.plot(evaluation_steps, [math.nan if value is None else value for value in means],
                                         color="black", linewidth=2, label=f"{prefix}mean")
    positive = all(entry["loss"] > 0 for entries in runs.values() for entry in entries)
    if positive:
        loss_axis.set_yscale("log")
    loss_axis.set_ylabel("training loss")
    loss_axis.legend(fontsize=7, ncol=2)
    loss_axis.grid(alpha=0.3)
    if has_reconstruction:
        reconstruction_axis.axhline(1.0, color="grey", linestyle="--", linewidth=1, label="predicting the training mean")
        reconstruction_axis.set_ylabel("held-out rel. recon. error (1-R²)")
        reconstruction_axis.legend(fontsize=7, ncol=2)
        reconstruction_axis.grid(alpha=0.3)
    lr_axis.set_ylabel("learning rate")
    lr_axis.set_xlabel("optimizer step")
    lr_axis.grid(alpha=0.3)
    figure.tight_layout()
    temporary = output_png.with_name(f".{output_png.name}.tmp.png")
    figure.savefig(temporary, dpi=110)
    plt.close(figure)
    os.replace(temporary, output_png)


# ----------------------------------------------------------------------------------------- main
def redact(arguments: dict[str, Any]) -> dict[str, Any]:
    return {key: ("***" if key == "hub_token" and value else value) for key, value in arguments.items()}


def check_resume_arguments(run_args_path: Path, model_args: ModelArguments, training_args: PretrainingArguments) -> None:
    """A resumed run must build the model it checkpointed: the model arguments and the strategy must equal the
    ones in the run's run_args.json; otherwise a ValueError lists each difference (and nothing is overwritten)."""
    if not run_args_path.is_file():
        return
    saved = json.loads(run_args_path.read_text()).get("arguments", {})
    current = {**dataclasses.asdict(model_args), "strategy": training_args.strategy}
    changed = {key: (saved[key], value) for key, value in current.items() if key in saved and saved[key] != value}
    if changed:
        listing = ", ".join(f"{key}: {old!r} -> {new!r}" for key, (old, new) in sorted(changed.items()))
        raise ValueError(
            f"--resume_from_checkpoint: the model arguments differ from the checkpointed run's "
            f"({run_args_path}): {listing}; resume with the same settings, or start a new --output_dir"
        )


def make_accelerator(training_args: PretrainingArguments, output_dir: Path):
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
    return Accelerator(
        mixed_precision=training_args.mixed_precision,
        gradient_accumulation_steps=training_args.gradient_accumulation_steps,
        step_scheduler_with_optimizer=False,
        log_with=log_with,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "tensorboard")),
    )


def prepare_output_dir(output_dir: Path, training_args: PretrainingArguments, accelerator) -> None:
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


def run_paths(output_dir: Path, modality: str | None) -> RunPaths:
    if modality is None:
        return RunPaths(output_dir, output_dir / "checkpoints", output_dir / "train_log.jsonl", output_dir / "export",
                        output_dir / "sample_ids")
    run_dir = output_dir / "unimodal" / modality
    return RunPaths(run_dir, run_dir / "checkpoints", run_dir / "train_log.jsonl", output_dir / "export" / modality,
                    run_dir / "sample_ids")


def main(argv: list[str] | None = None, hub_api=None) -> dict[str, Any]:
    """Parse arguments, train every model of the strategy, export (and push). Returns a summary dict."""
    model_args, data_args, training_args = parse_arguments(argv)
    return run(model_args, data_args, training_args, hub_api=hub_api)


def run(model_args: ModelArguments, data_args: DataArguments, training_args: PretrainingArguments,
        hub_api=None) -> dict[str, Any]:
    output_dir = Path(training_args.output_dir)
    accelerator = make_accelerator(training_args, output_dir)
    logging.basicConfig(
        level=logging.INFO if accelerator.is_main_process else logging.WARNING,
        format=f"%(asctime)s %(levelname)s [rank {accelerator.process_index}] %(name)s: %(message)s",
        force=True,
    )
    prepare_output_dir(output_dir, training_args, accelerator)
    all_arguments = {**dataclasses.asdict(model_args), **dataclasses.asdict(data_args),
                     **dataclasses.asdict(training_args)}
    if training_args.resume_from_checkpoint:
        check_resume_arguments(output_dir / "run_args.json", model_args, training_args)  # before anything is written
    if accelerator.is_main_process:
        atomic_write_json(output_dir / "run_args.json", {
            "arguments": redact(all_arguments),
            "command": sys.argv,
            "num_processes": accelerator.num_processes,
            "device": str(accelerator.device),
            "mixed_precision": accelerator.mixed_precision,
            "torch": torch.__version__,
        })
    base_config = build_model_config(model_args, training_args)
    strategy = training_args.strategy

    dataset_dir, split_dataset = None, None
    if strategy != "random_init":
        dataset_dir = resolve_dataset_dir(data_args, output_dir, accelerator)
        split_dataset = load_split(dataset_dir, data_args.split)
    if accelerator.trackers == [] and accelerator.log_with:
        accelerator.init_trackers("physiomae", config={key: value for key, value in redact(all_arguments).items()
                                                       if isinstance(value, (int, float, str, bool))})

    modalities = base_config.modality_names if strategy == "mae_unimodal" else [None]
    summary: dict[str, Any] = {"strategy": strategy, "output_dir": str(output_dir), "exports": [],
                               "reconstruction_eval": {}}
    log_paths: dict[str, Path] = {}
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
            data = None
            if strategy != "random_init":
                data = build_training_data(split_dataset, config, data_args, training_args, accelerator)
            pretraining = PretrainingRun(accelerator, config, strategy, data, paths, training_args, signals,
                                         tag=modality or "")
            pretraining.build()
            extra: dict[str, Any] = {"seed": training_args.seed}
            if strategy != "random_init":
                resume = training_args.resume_from_checkpoint
                if resume and resume != "latest" and modality:
                    resume_path = resolve_resume_path(resume, paths.checkpoints_dir)
                    if resume_path is not None and resume_path.parent != paths.checkpoints_dir:
                        resume_path = resolve_resume_path("latest", paths.checkpoints_dir)
                else:
                    resume_path = resolve_resume_path(resume, paths.checkpoints_dir)
                pretraining.train(resume_path)
                extra.update({"steps": pretraining.global_step, "windows_per_step":
                              training_args.per_device_batch_size * accelerator.num_processes
                              * training_args.gradient_accumulation_steps,
                              "skipped_windows_without_modality": data.dropped_rows})
                if strategy in RECONSTRUCTION_STRATEGIES and data.reconstruction_eval is None:
                    summary["reconstruction_eval"][modality or ""] = {"not_measured": data.held_out_note}
                if pretraining.reconstruction_result is not None:
                    summary["reconstruction_eval"][modality or ""] = pretraining.reconstruction_result
                    extra["held-out relative reconstruction error (1-R²)"] = reconstruction_summary_text(
                        pretraining.reconstruction_result, data.reconstruction_eval)
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                model = accelerator.unwrap_model(pretraining.model)
                export_model(copy.deepcopy(model), paths.export_dir, strategy, training_args, dataset_dir, extra)
            summary["exports"].append(str(paths.export_dir))
            accelerator.wait_for_everyone()

    if accelerator.is_main_process and strategy == "mae_unimodal":
        gather_unimodal_reconstruction_evals(output_dir, modalities)
    if accelerator.is_main_process and strategy != "random_init":
        plot_loss_curves(log_paths, output_dir / "loss_curves.png")
    if accelerator.trackers:
        accelerator.end_training()
    if training_args.push_to_hub and accelerator.is_main_process:
        if strategy == "mae_unimodal":
            for modality in modalities:
                repo = training_args.hub_model_id
                folder = run_paths(output_dir, modality).export_dir
                push_args = dataclasses.replace(training_args, hub_model_id=f"{repo}-{modality}")
                push_export(folder, push_args, hub_api)
        else:
            push_export(output_dir / "export", training_args, hub_api)
    accelerator.wait_for_everyone()
    return summary


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
