"""train.py's arguments: the three dataclasses HfArgumentParser reads (a leading YAML file gives defaults), their
checks, the model config they describe, and the check that a resumed run asks for the model it checkpointed."""

from __future__ import annotations

import copy
import dataclasses
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

from physiomae.config_files import load_yaml_defaults, split_yaml_argument
from physiomae.strategies import STRATEGY_NAMES, get_strategy

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
    split: str = field(default="pretrain", metadata={"help": "Split to pretrain on (falls back to probe_train when absent); `a+b` concatenates splits a and b."})
    streaming: bool = field(
        default=False,
        metadata={"help": "Stream the split as an IterableDataset (sharded per process); requires --max_steps."},
    )
    streaming_num_shards: int = field(default=16, metadata={"help": "Shards of the streamed dataset (>= processes x workers)."})
    shuffle_buffer_size: int = field(default=2048, metadata={"help": "Shuffle buffer of the streamed dataset."})
    num_workers: int = field(default=0, metadata={"help": "DataLoader worker processes per training process."})
    windows_on_device: bool = field(
        default=False,
        metadata={"help": "Collate the training windows once and hold them on the training device (a GPU's memory): "
                  "batches are indexed there, with no loading per step. For splits that fit (checked); the same "
                  "batches as without it; needs --num_workers 0, not --streaming."},
    )
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
    strategy: Literal[STRATEGY_NAMES] = field(default="mae_modality_drop", metadata={"help": "Pretraining strategy."})
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
    num_threads: Optional[int] = field(
        default=None,
        metadata={"help": "torch intra-op threads per process (default: OMP_NUM_THREADS when set, else the cores this "
                  "process may use divided by the processes of the run on this machine)."},
    )
    torch_compile: bool = field(
        default=False,
        metadata={"help": "Run the training forward through torch.compile (one graph; the masking draws are made "
                  "outside it). Costs compilation time at the start; see benchmarks/results_pretraining_vs_patchtst_cpu.md."},
    )
    torch_compile_backend: str = field(default="inductor", metadata={"help": "torch.compile backend (with --torch_compile)."})
    torch_compile_mode: Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] = field(
        default="default",
        metadata={"help": "torch.compile mode (with --torch_compile): 'default'; 'reduce-overhead' (CUDA graphs: the "
                  "batch shapes are static); 'max-autotune' (autotuned kernels, CUDA graphs); "
                  "'max-autotune-no-cudagraphs'. The modes other than 'default' are the inductor backend's."},
    )
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
    if training_args.strategy not in STRATEGY_NAMES:
        raise ValueError(f"--strategy must be one of {STRATEGY_NAMES}, got {training_args.strategy!r}")
    if get_strategy(training_args.strategy).trains and not (data_args.dataset_dir or data_args.data_dir):
        raise ValueError("give --dataset_dir (a built dataset) or --data_dir (a raw challenge folder to build)")
    if training_args.per_device_batch_size < 1 or training_args.gradient_accumulation_steps < 1:
        raise ValueError("--per_device_batch_size and --gradient_accumulation_steps must be >= 1")
    if training_args.max_steps <= 0 and training_args.num_epochs < 1:
        raise ValueError("set --max_steps > 0 or --num_epochs >= 1")
    if data_args.streaming and training_args.max_steps <= 0:
        raise ValueError("--streaming needs --max_steps > 0 (a streamed dataset has no length to count epochs from)")
    if data_args.windows_on_device and (data_args.streaming or data_args.num_workers > 0):
        raise ValueError("--windows_on_device holds the whole split on the device and indexes it in the main process: "
                         "it excludes --streaming and needs --num_workers 0 "
                         f"(got streaming={data_args.streaming}, num_workers={data_args.num_workers})")
    if training_args.push_to_hub and not training_args.hub_model_id:
        raise ValueError("--push_to_hub needs --hub_model_id ORG/NAME")
    if not 0.0 <= training_args.warmup_ratio < 1.0:
        raise ValueError(f"--warmup_ratio must lie in [0, 1), got {training_args.warmup_ratio}")
    if not 0.0 <= data_args.reconstruction_eval_fraction < 1.0:
        raise ValueError(f"--reconstruction_eval_fraction must lie in [0, 1), got {data_args.reconstruction_eval_fraction}")
    if data_args.reconstruction_eval_steps < 0 or data_args.reconstruction_eval_max_windows < 0:
        raise ValueError("--reconstruction_eval_steps and --reconstruction_eval_max_windows must be >= 0")
    if training_args.num_threads is not None and training_args.num_threads < 1:
        raise ValueError(f"--num_threads must be >= 1, got {training_args.num_threads}")
    if data_args.target_statistics_max_windows < 1:
        raise ValueError("--target_statistics_max_windows must be >= 1")


def build_model_config(model_args: ModelArguments, training_args: PretrainingArguments):
    """The base PhysioMAEConfig of the run: start config + overrides + what the strategy sets and requires."""
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

    get_strategy(training_args.strategy).configure(config)
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
