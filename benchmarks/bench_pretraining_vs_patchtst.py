"""PhysioMAE pretraining throughput side by side with transformers' PatchTSTForPretraining, in one run.

What it measures (every number is a median over `--steps` timed repeats after `--warmup` untimed ones):

1. Pretraining steps/s and windows/s for each model size (`tiny`, `base`; sizes from `configs/<size>.yaml`
   through train.py's own `parse_arguments` + `build_model_config`): one step = forward + backward + gradient
   clipping + AdamW step, exactly the work of train.py's `optimizer_step` (AdamW with train.py's decay /
   no-decay groups, clipping at `max_grad_norm`), on random windows (batch, 13 channels, 3,000 samples), all
   modalities present, 70 % masking and per-batch input modality dropout (`mae_modality_drop`).
   The peer, `PatchTSTForPretraining`, gets the same width (d_model), depth, heads, feed-forward width,
   patch length 100 and stride 100 (1-s patches at 100 Hz), random masking with ratio 0.7, the same dropout,
   SDPA attention, the same input as `past_values` (batch, 3,000, 13) and the same batch size and optimizer.
   Reported: each model's windows/s and the ratio PhysioMAE / PatchTST.
2. Achieved model FLOP/s: `torch.utils.flop_counter.FlopCounterMode` counts the FLOPs of one forward +
   backward (matmul, SDPA, convolution; element-wise work and the optimizer are not counted), divided by the
   median step time; as a fraction of the FLOP/s of a plain matrix multiply of the same width measured in
   the same run: `(tokens x hidden) @ (hidden x 4*hidden)` forward + backward in the same precision, with
   `tokens` = batch x the tokens PhysioMAE's encoder sees per window (the visible ones), repeated back to back
   within each timed call (about 0.2 s) so that it is timed warm.
3. Embedding extraction windows/s: `PhysioMAEModel` (all tokens, no masking) under `torch.no_grad`, batch 64.
4. Data loading windows/s: the DataLoader train.py builds (`physiomae.training.data.build_training_data`: `with_format("torch")`,
   its sampler, collator, batch size and `num_workers` from the size's YAML, `accelerator.prepare`) over a
   dataset written by the builder (`--dataset-dir`, or a small synthetic cohort generated and built in a temporary
   folder), against what training consumes (the PhysioMAE pretraining windows/s of item 1 for that size).
5. ATen operators (dispatcher calls, deterministic, unlike the timings) of one step: forward, forward + backward,
   the whole step, and the forward's by the innermost model module they run in (`--skip-counts` to skip).
6. `--profile`: a `torch.profiler` table of the top operators of one PhysioMAE and one PatchTST step.

On CUDA the pretraining benchmark runs in fp32 and in bf16 autocast (`--precisions` to choose) and names the
GPU. Self-contained: needs torch, transformers, PyYAML and this repository (datasets + the builder's
dependencies only for item 4, which is skipped with a reason when they are missing).

Usage:
    python benchmarks/bench_pretraining_vs_patchtst.py --device cpu --sizes tiny base --out results.json
    python benchmarks/bench_pretraining_vs_patchtst.py --device cuda --out results.json   # fp32 + bf16
    python benchmarks/bench_pretraining_vs_patchtst.py --device cuda --sizes base --precisions bf16 \
        --batch-sizes 16 256 1024 --skip-counts --skip-data --skip-embedding --peak-flops 7.9e14   # a batch sweep

On CPU `torch.set_num_threads(--threads, default 2)` and, unless `--batch-size` is given, the batch is the YAML's
`per_device_batch_size` capped at `--cpu-max-batch` (32) so that `base` finishes in minutes; the JSON records the
batch actually used. The load average is recorded before and after every measurement: on a shared machine
wall-clock numbers move with it.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import inspect
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from modeling_physiomae import PhysioMAEConfig, PhysioMAEForPreTraining, PhysioMAEModel  # noqa: E402
from physiomae.io import atomic_write_json  # noqa: E402

CONFIG_FILES = {"tiny": "configs/tiny.yaml", "base": "configs/base.yaml"}
EMBEDDING_BATCH_SIZE = 64


# ----------------------------------------------------------------------------------------- settings
@dataclass
class SizeSettings:
    """One model size: the PhysioMAEConfig train.py would build and the training settings that matter here."""

    name: str
    config: PhysioMAEConfig
    batch_size: int
    num_workers: int
    max_grad_norm: float
    learning_rate: float
    weight_decay: float
    adam_betas: tuple[float, float]
    mixed_precision: str
    source: str
    training_args: Any = None
    data_args: Any = None


def load_size_settings(name: str) -> SizeSettings:
    """The size's config through train.py's own argument parsing; plain YAML reading if train.py cannot be used."""
    yaml_path = REPO_ROOT / CONFIG_FILES[name]
    try:
        import train

        model_args, data_args, training_args = train.parse_arguments(
            [str(yaml_path), "--output_dir", str(Path(tempfile.gettempdir()) / "bench_pretraining_unused"),
             "--dataset_dir", str(Path(tempfile.gettempdir()) / "bench_pretraining_unused_data")]
        )  # the paths are placeholders: nothing is written, the loading benchmark sets its own dataset
        config = train.build_model_config(model_args, training_args)
        return SizeSettings(
            name=name,
            config=config,
            batch_size=training_args.per_device_batch_size,
            num_workers=data_args.num_workers,
            max_grad_norm=training_args.max_grad_norm,
            learning_rate=training_args.learning_rate,
            weight_decay=training_args.weight_decay,
            adam_betas=(training_args.adam_beta1, training_args.adam_beta2),
            mixed_precision=training_args.mixed_precision,
            source=f"{CONFIG_FILES[name]} via train.build_model_config",
            training_args=training_args,
            data_args=data_args,
        )
    except ImportError as error:  # train.py's optional imports missing: read the YAML ourselves
        import yaml

        values = yaml.safe_load(yaml_path.read_text()) or {}
        fields = set(inspect.signature(PhysioMAEConfig.__init__).parameters) - {"self", "kwargs"}
        config = PhysioMAEConfig(**{key: value for key, value in values.items() if key in fields})
        return SizeSettings(
            name=name,
            config=config,
            batch_size=int(values.get("per_device_batch_size", 32)),
            num_workers=int(values.get("num_workers", 0)),
            max_grad_norm=float(values.get("max_grad_norm", 1.0)),
            learning_rate=float(values.get("learning_rate", 1e-3)),
            weight_decay=float(values.get("weight_decay", 0.05)),
            adam_betas=(float(values.get("adam_beta1", 0.9)), float(values.get("adam_beta2", 0.95))),
            mixed_precision=str(values.get("mixed_precision", "no")),
            source=f"{CONFIG_FILES[name]} read directly (train.py not importable: {error})",
        )


def load_average() -> list[float] | None:
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None


# ----------------------------------------------------------------------------------------- timing
def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timing_summary(durations: list[float], cpu_durations: list[float], warmup: int) -> dict[str, Any]:
    return {
        "median_s": statistics.median(durations),
        "min_s": min(durations),
        "max_s": max(durations),
        "median_cpu_s": statistics.median(cpu_durations),
        "steps": len(durations),
        "warmup": warmup,
    }


def time_interleaved(functions: dict[str, Callable[[], Any]], device: torch.device, warmup: int,
                     steps: int) -> dict[str, dict[str, Any]]:
    """
    Time several functions in turn (A, B, C, A, B, C, ...) so that all of them see the same machine load; each
    gets `warmup` untimed calls first. Per function: median / min / max wall seconds and median process CPU
    seconds (all threads) of its timed calls, plus the load average before and after the whole measurement.
    """
    for function in functions.values():
        for _ in range(warmup):
            function()
    synchronize(device)
    load_before = load_average()
    durations: dict[str, list[float]] = {name: [] for name in functions}
    cpu_durations: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(steps):
        for name, function in functions.items():
            started, cpu_started = time.perf_counter(), time.process_time()
            function()
            synchronize(device)
            durations[name].append(time.perf_counter() - started)
            cpu_durations[name].append(time.process_time() - cpu_started)
    load_after = load_average()
    return {
        name: {**timing_summary(durations[name], cpu_durations[name], warmup), "load_average_before": load_before,
               "load_average_after": load_after}
        for name in functions
    }


def time_calls(function: Callable[[], Any], device: torch.device, warmup: int, steps: int) -> dict[str, Any]:
    """`time_interleaved` for a single function."""
    return time_interleaved({"only": function}, device, warmup, steps)["only"]


def autocast_context(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def count_forward_backward_flops(step_forward: Callable[[], torch.Tensor]) -> int:
    """FLOPs (matmul / SDPA / convolution) of one forward + backward as counted by FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        step_forward().backward()
    return int(counter.get_total_flops())


def calling_module(prefixes: tuple[str, ...] = ("PhysioMAE", "PatchTST")) -> str:
    """Class name of the innermost model module (named with one of `prefixes`) whose method is on the Python stack;
    "other" outside every one (e.g. the loss's backward, the optimizer)."""
    frame = sys._getframe(1)
    while frame is not None:
        owner = frame.f_locals.get("self")
        if isinstance(owner, torch.nn.Module) and type(owner).__name__.startswith(prefixes):
            return type(owner).__name__
        frame = frame.f_back
    return "other"


def returns_a_view(func) -> bool:
    """True for operators that only make a view or alias of their input (reshape, transpose, detach, ...): metadata
    changes that launch no kernel."""
    return bool(func.is_view) or any(
        value.alias_info is not None and not value.alias_info.is_write for value in func._schema.returns
    ) or func._schema.name == "aten::_unsafe_view"


def count_aten_operators(run: Callable[[], Any], by_module: bool = False, computing_only: bool = False) -> int | dict[str, int]:
    """Number of ATen operator calls while `run` executes; with `computing_only`, only those that compute (not
    `returns_a_view`: roughly, the kernels launched); with `by_module`, per `calling_module` instead (functions count
    for the module that calls them)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class OperatorCounter(TorchDispatchMode):
        """Counts every operator that reaches the dispatcher's Python mode."""

        def __init__(self):
            super().__init__()
            self.calls = 0
            self.by_module: dict[str, int] = {}

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if computing_only and returns_a_view(func):
                return func(*args, **(kwargs or {}))
            self.calls += 1
            if by_module:
                module = calling_module()
                self.by_module[module] = self.by_module.get(module, 0) + 1
            return func(*args, **(kwargs or {}))

    counter = OperatorCounter()
    with counter:
        run()
    return dict(sorted(counter.by_module.items(), key=lambda item: -item[1])) if by_module else counter.calls


# ----------------------------------------------------------------------------------------- models
def build_patchtst(config: PhysioMAEConfig):
    """PatchTSTForPretraining at PhysioMAE's width, depth, heads, feed-forward width, patch length and input."""
    from transformers import PatchTSTConfig, PatchTSTForPretraining

    patchtst_config = PatchTSTConfig(
        num_input_channels=config.num_channels,
        context_length=config.window_length,
        patch_length=config.patch_length,
        patch_stride=config.patch_length,
        d_model=config.hidden_size,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        ffn_dim=config.intermediate_size,
        activation_function=config.hidden_act,
        attention_dropout=config.attention_probs_dropout_prob,
        ff_dropout=config.hidden_dropout_prob,
        positional_dropout=config.hidden_dropout_prob,
        do_mask_input=True,
        mask_type="random",
        random_mask_ratio=config.mask_ratio,
        attn_implementation="sdpa",
    )
    return PatchTSTForPretraining(patchtst_config)


def adamw_like_train_py(model: torch.nn.Module, settings: SizeSettings) -> torch.optim.Optimizer:
    """train.py's own AdamW (`physiomae.training.run_setup.build_adamw`), for both models."""
    from physiomae.training.run_setup import build_adamw

    return build_adamw(model, settings.learning_rate, settings.weight_decay, settings.adam_betas)


@dataclass
class PretrainingCase:
    """One model ready to train: how to compute its loss, and its optimizer."""

    label: str
    model: torch.nn.Module
    compute_loss: Callable[[], torch.Tensor]
    optimizer: torch.optim.Optimizer
    compile_s: float | None = None
    traced_loss: Callable[[], torch.Tensor] | None = None  # the forward alone (random draws made before), for dynamo


def physiomae_case(settings: SizeSettings, input_values: torch.Tensor, device: torch.device, precision: str,
                   compiled: bool = False) -> PretrainingCase:
    """As train.py: the masking draws come from the run's generator outside the forward (`--torch_compile`:
    the forward through `torch.compile(model, fullgraph=True)`)."""
    torch.manual_seed(0)
    model = PhysioMAEForPreTraining(settings.config).to(device).train()
    forward = torch.compile(model, fullgraph=True) if compiled else model
    generator = torch.Generator(device=device).manual_seed(0)
    modality_mask = torch.ones(input_values.shape[0], settings.config.num_modalities, dtype=torch.bool, device=device)

    def loss_with(noise: torch.Tensor, modality_dropout_noise: torch.Tensor) -> torch.Tensor:
        with autocast_context(device, precision):
            return forward(input_values=input_values, modality_mask=modality_mask, noise=noise,
                           modality_dropout_noise=modality_dropout_noise).loss

    def compute_loss() -> torch.Tensor:
        return loss_with(*model.draw_masking_noise(input_values.shape[0], generator, device))

    fixed_draws = model.draw_masking_noise(input_values.shape[0], torch.Generator(device=device).manual_seed(1), device)
    label = "PhysioMAEForPreTraining" + (" (torch.compile)" if compiled else "")
    return PretrainingCase(label, model, compute_loss, adamw_like_train_py(model, settings),
                           traced_loss=lambda: loss_with(*fixed_draws))


def count_graph_breaks(case: PretrainingCase) -> int:
    """Graph breaks `torch._dynamo.explain` finds in one training forward (0 = compiles as one graph)."""
    import torch._dynamo

    torch._dynamo.reset()
    return int(torch._dynamo.explain(case.traced_loss or case.compute_loss)().graph_break_count)


def patchtst_case(settings: SizeSettings, input_values: torch.Tensor, device: torch.device, precision: str) -> PretrainingCase:
    torch.manual_seed(0)
    model = build_patchtst(settings.config).to(device).train()
    # (batch, channels, samples) -> (batch, samples, channels): PatchTST's past_values layout
    past_values = input_values.transpose(1, 2).contiguous()

    def compute_loss() -> torch.Tensor:
        with autocast_context(device, precision):
            return model(past_values=past_values).loss

    return PretrainingCase("PatchTSTForPretraining", model, compute_loss, adamw_like_train_py(model, settings))


def training_step_function(case: PretrainingCase, max_grad_norm: float) -> Callable[[], None]:
    """forward + backward + clip + AdamW step + zero_grad, as train.py's optimizer_step."""

    def step() -> None:
        loss = case.compute_loss()
        loss.backward()
        if max_grad_norm and max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(case.model.parameters(), max_grad_norm)
        case.optimizer.step()
        case.optimizer.zero_grad(set_to_none=True)

    return step


def encoder_tokens_per_window(config: PhysioMAEConfig) -> int:
    """Tokens PhysioMAE's encoder sees per window in training: 70 % masking after one modality is dropped."""
    patches_after_dropout = (config.num_modalities - 1) * config.num_patches if config.modality_dropout_prob > 0 else (
        config.num_modalities * config.num_patches
    )
    keep_per_million = int(round((1.0 - config.mask_ratio) * 1_000_000))
    return max(1, patches_after_dropout * keep_per_million // 1_000_000)


def reference_matmul_function(tokens: int, hidden_size: int, device: torch.device, precision: str,
                              min_sample_s: float = 0.2):
    """
    (tokens x hidden) @ (hidden x 4*hidden) forward + backward (both input gradients), repeated back to back so
    that one timed call lasts about `min_sample_s` (a single multiply is too short to time, and when it follows a
    model step its caches are cold). Returns the function and the FLOPs of one call of it.
    """
    generator = torch.Generator(device=device).manual_seed(0)
    activations = torch.randn(tokens, hidden_size, device=device, generator=generator, requires_grad=True)
    weight = torch.randn(hidden_size, 4 * hidden_size, device=device, generator=generator, requires_grad=True)
    upstream = torch.randn(tokens, 4 * hidden_size, device=device, generator=generator)
    if precision == "bf16":
        upstream = upstream.bfloat16()

    def forward_backward() -> None:
        with autocast_context(device, precision):
            product = activations @ weight
        activations.grad = weight.grad = None
        product.backward(upstream)

    for _ in range(3):  # warm up, then calibrate the number of back-to-back repeats
        forward_backward()
    synchronize(device)
    started = time.perf_counter()
    forward_backward()
    synchronize(device)
    repeats = max(1, int(min_sample_s / max(time.perf_counter() - started, 1e-6)))

    def repeated() -> None:
        for _ in range(repeats):
            forward_backward()

    return repeated, repeats * 3 * 2 * tokens * hidden_size * 4 * hidden_size, repeats


def measure_pretraining_side_by_side(cases: dict[str, PretrainingCase], settings: SizeSettings, batch_size: int,
                                     matmul_tokens: int, device: torch.device, precision: str, warmup: int,
                                     steps: int, count_operators: bool = True) -> dict[str, dict[str, Any]]:
    """
    Training steps of every case and the reference matmul, interleaved; FLOPs counted afterwards, and (unless
    `count_operators` is False) the ATen operators and graph breaks of each step.
    """
    functions = {name: training_step_function(case, settings.max_grad_norm) for name, case in cases.items()}
    matmul, matmul_flops, matmul_repeats = reference_matmul_function(matmul_tokens, settings.config.hidden_size,
                                                                     device, precision)
    functions["reference_matmul"] = matmul
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    timings = time_interleaved(functions, device, warmup, steps)
    results: dict[str, dict[str, Any]] = {}
    for name, case in cases.items():
        timing = timings[name]
        if name.endswith("_compiled"):  # the compiled step's operators are inductor's kernels: not comparable
            results[name] = {"model": case.label, **timing, "windows_per_s": batch_size / timing["median_s"],
                             "compile_s": case.compile_s}
            continue
        flops = count_forward_backward_flops(case.compute_loss)
        case.optimizer.zero_grad(set_to_none=True)
        results[name] = {
            "model": case.label,
            "parameters": sum(parameter.numel() for parameter in case.model.parameters()),
            **timing,
            "windows_per_s": batch_size / timing["median_s"],
            "windows_per_cpu_s": batch_size / timing["median_cpu_s"] if timing["median_cpu_s"] > 0 else None,
            "forward_backward_flops": flops,
            "achieved_flops_per_s": flops / timing["median_s"],
            "parameter_tensors": sum(1 for _ in case.model.parameters()),
        }
        if not count_operators:
            continue
        operators = count_aten_operators(training_step_function(case, settings.max_grad_norm))
        computing_operators = count_aten_operators(training_step_function(case, settings.max_grad_norm), computing_only=True)
        forward_operators = count_aten_operators(case.compute_loss)
        forward_by_module = count_aten_operators(case.compute_loss, by_module=True)
        case.optimizer.zero_grad(set_to_none=True)
        forward_backward_operators = count_aten_operators(lambda: case.compute_loss().backward())
        case.optimizer.zero_grad(set_to_none=True)
        results[name].update({
            "aten_operators_per_step": operators,
            "aten_operators_per_step_computing": computing_operators,
            "aten_operators_forward": forward_operators,
            "aten_operators_forward_by_module": forward_by_module,
            "aten_operators_forward_backward": forward_backward_operators,
            "graph_breaks": count_graph_breaks(case),
        })
    if device.type == "cuda":
        results["peak_memory_mib_both_models"] = torch.cuda.max_memory_allocated(device) / 2**20
    results["reference_matmul"] = {
        "shape": f"({matmul_tokens} x {settings.config.hidden_size}) @ ({settings.config.hidden_size} x "
                 f"{4 * settings.config.hidden_size})",
        "flops": matmul_flops,
        "repeats_per_timed_call": matmul_repeats,
        **timings["reference_matmul"],
        "flops_per_s": matmul_flops / timings["reference_matmul"]["median_s"],
    }
    return results


def profile_step(case: PretrainingCase, settings: SizeSettings, device: torch.device, row_limit: int = 15) -> str:
    """Top operators (by self time) of two training steps, as torch.profiler's table."""
    from torch.profiler import ProfilerActivity, profile

    step = training_step_function(case, settings.max_grad_norm)
    step()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as profiler:
        for _ in range(2):
            step()
        synchronize(device)
    sort_keys = ["self_device_time_total", "self_cuda_time_total"] if device.type == "cuda" else ["self_cpu_time_total"]
    for sort_key in sort_keys:  # the device column's name differs between torch versions
        try:
            return profiler.key_averages().table(sort_by=sort_key, row_limit=row_limit, max_name_column_width=60)
        except (AttributeError, KeyError, ValueError):
            continue
    return profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=row_limit, max_name_column_width=60)


def measure_embedding(settings: SizeSettings, device: torch.device, precision: str, warmup: int, steps: int) -> dict[str, Any]:
    torch.manual_seed(0)
    encoder = PhysioMAEModel(settings.config).to(device).eval()
    input_values = torch.randn(EMBEDDING_BATCH_SIZE, settings.config.num_channels, settings.config.window_length,
                               device=device)

    def embed() -> None:
        with torch.no_grad(), autocast_context(device, precision):
            encoder(input_values)

    timing = time_calls(embed, device, warmup, steps)
    del encoder
    return {"batch_size": EMBEDDING_BATCH_SIZE, **timing, "windows_per_s": EMBEDDING_BATCH_SIZE / timing["median_s"]}


# ----------------------------------------------------------------------------------------- data loading
def synthetic_dataset(work_dir: Path, records: int, hours: float) -> Path:
    """Generate `records` unlabelled synthetic records and build them with the builder's CLI; the saved dataset."""
    raw_dir, build_dir = work_dir / "raw", work_dir / "build"
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
    subprocess.run([sys.executable, "-m", "dataset_scripts.synthetic_psg", "--out", str(raw_dir), "--train", "0",
                    "--test", str(records), "--hours", str(hours), "--seed", "0", "--quiet"],
                   check=True, cwd=REPO_ROOT, env=environment)
    subprocess.run([sys.executable, "-m", "dataset_scripts.physionet2018", "build", "--data_dir", str(raw_dir),
                    "--output_dir", str(build_dir)], check=True, cwd=REPO_ROOT, env=environment,
                   stdout=subprocess.DEVNULL)
    return build_dir / "dataset"


def measure_data_loading(settings: SizeSettings, dataset_dir: Path, device: torch.device, min_windows: int,
                         num_workers: int | None = None) -> dict[str, Any]:
    """Windows/s of train.py's DataLoader (built by physiomae.training.data.build_training_data), iterated over enough epochs."""
    from accelerate import Accelerator

    from physiomae.saved_dataset import load_split
    from physiomae.training.data import build_training_data, resolve_dataset_dir

    data_args = settings.data_args
    workers = settings.num_workers if num_workers is None else num_workers
    data_args = type(data_args)(**{**vars(data_args), "num_workers": workers, "dataset_dir": str(dataset_dir)})
    accelerator = Accelerator(cpu=device.type == "cpu")
    split = load_split(resolve_dataset_dir(data_args, Path(tempfile.gettempdir()), accelerator), data_args.split)
    data = build_training_data(split, settings.config, data_args, settings.training_args, accelerator)
    windows, batches, epoch = 0, 0, 0
    first_batch_s = None
    started = time.perf_counter()
    while windows < min_windows:
        data.dataloader.set_epoch(epoch)
        for batch in data.dataloader:
            if first_batch_s is None:
                first_batch_s = time.perf_counter() - started
                steady_started, steady_windows = time.perf_counter(), 0
            else:
                steady_windows += batch["input_values"].shape[0]
            windows += batch["input_values"].shape[0]
            batches += 1
        epoch += 1
    synchronize(device)
    total_s = time.perf_counter() - started
    steady_s = time.perf_counter() - steady_started
    loader = data.dataloader
    del data
    with contextlib.suppress(Exception):
        loader._iterator = None  # let persistent workers go
    return {
        "dataset_rows": len(split),
        "batch_size": settings.batch_size,
        "num_workers": workers,
        "windows": windows,
        "batches": batches,
        "epochs": epoch,
        "first_batch_s": first_batch_s,
        "total_s": total_s,
        "windows_per_s_including_start": windows / total_s,
        "windows_per_s": steady_windows / steady_s if steady_s > 0 and steady_windows else windows / total_s,
        "load_average_after": load_average(),
    }


# ----------------------------------------------------------------------------------------- report
def markdown_summary(report: dict[str, Any]) -> str:
    lines = [
        f"Device: {report['environment']['device_name']}; torch {report['environment']['torch']}, transformers "
        f"{report['environment']['transformers']}; {report['environment']['date_utc']}",
        "",
        "Medians over the timed steps; `best` = the same from the fastest step of each (least disturbed by other "
        "processes on a shared machine).",
        "",
        "| size | precision | batch | PhysioMAE windows/s | PatchTST windows/s | ratio | ratio by CPU time | ratio, best "
        "steps | PhysioMAE GFLOP/step | PatchTST GFLOP/step | PhysioMAE GFLOP/s | PatchTST GFLOP/s | matmul GFLOP/s | "
        "PhysioMAE / matmul | PatchTST / matmul | PhysioMAE / matmul, best | ATen ops per step (PhysioMAE / PatchTST) | "
        "load before-after |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | "
        "---: | --- |",
    ]
    for row in report["pretraining"]:
        physiomae, patchtst, matmul = row["physiomae"], row["patchtst"], row["reference_matmul"]
        cpu_ratio = (physiomae["windows_per_cpu_s"] / patchtst["windows_per_cpu_s"]
                     if physiomae.get("windows_per_cpu_s") and patchtst.get("windows_per_cpu_s") else float("nan"))
        best_ratio = patchtst["min_s"] / physiomae["min_s"]
        best_fraction = (physiomae["forward_backward_flops"] / physiomae["min_s"]) / (matmul["flops"] / matmul["min_s"])
        operators = (f"{physiomae['aten_operators_per_step']} / {patchtst['aten_operators_per_step']}"
                     if "aten_operators_per_step" in physiomae else "")
        load_before = physiomae["load_average_before"][0] if physiomae["load_average_before"] else "?"
        load_after = physiomae["load_average_after"][0] if physiomae["load_average_after"] else "?"
        lines.append(
            f"| {row['size']} | {row['precision']} | {row['batch_size']} | {physiomae['windows_per_s']:.1f} | "
            f"{patchtst['windows_per_s']:.1f} | {row['ratio_windows_per_s']:.2f}x | {cpu_ratio:.2f}x | "
            f"{best_ratio:.2f}x | "
            f"{physiomae['forward_backward_flops'] / 1e9:.1f} | {patchtst['forward_backward_flops'] / 1e9:.1f} | "
            f"{physiomae['achieved_flops_per_s'] / 1e9:.1f} | {patchtst['achieved_flops_per_s'] / 1e9:.1f} | "
            f"{matmul['flops_per_s'] / 1e9:.1f} | {row['physiomae_flops_fraction_of_matmul']:.0%} | "
            f"{row['patchtst_flops_fraction_of_matmul']:.0%} | {best_fraction:.0%} | {operators} | "
            f"{load_before}-{load_after} |"
        )
    peak = report["environment"].get("peak_flops_per_s")
    if peak:
        lines += ["", f"Share of the device's measured dense matmul rate ({peak / 1e12:.0f} TFLOP/s, "
                  "`benchmarks/gpu_matmul_peak.py`, in the precision of the peak's measurement):", "",
                  "| size | precision | batch | PhysioMAE TFLOP/s | PatchTST TFLOP/s | PhysioMAE / peak | PatchTST / peak |",
                  "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
        for row in report["pretraining"]:
            physiomae, patchtst = row["physiomae"], row["patchtst"]
            lines.append(f"| {row['size']} | {row['precision']} | {row['batch_size']} | "
                         f"{physiomae['achieved_flops_per_s'] / 1e12:.2f} | {patchtst['achieved_flops_per_s'] / 1e12:.2f} | "
                         f"{physiomae['achieved_flops_per_s'] / peak:.1%} | {patchtst['achieved_flops_per_s'] / peak:.1%} |")
    lines += ["", "ATen operators (dispatcher calls) of one step: forward only / forward + backward / the whole training "
              "step (forward, backward, clipping, AdamW); of the whole step, those that compute (not views, aliases or "
              "detaches: roughly, the kernels launched); graph breaks of the training forward (`torch._dynamo.explain`).",
              "", "| size | precision | PhysioMAE fwd / fwd+bwd / step | PatchTST fwd / fwd+bwd / step | fwd+bwd ratio | "
              "computing, whole step (PhysioMAE / PatchTST) | "
              "parameter tensors (PhysioMAE / PatchTST) | graph breaks (PhysioMAE / PatchTST) | PhysioMAE compiled windows/s "
              "| compiled / PatchTST | compile s |",
              "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for row in report["pretraining"]:
        physiomae, patchtst, compiled = row["physiomae"], row["patchtst"], row.get("physiomae_compiled")

        def counts(result):
            return (f"{result.get('aten_operators_forward', '?')} / {result.get('aten_operators_forward_backward', '?')} / "
                    f"{result.get('aten_operators_per_step', '?')}")

        ratio = (physiomae["aten_operators_forward_backward"] / patchtst["aten_operators_forward_backward"]
                 if "aten_operators_forward_backward" in physiomae else float("nan"))
        compiled_cells = (f"{compiled['windows_per_s']:.1f} | {compiled['windows_per_s'] / patchtst['windows_per_s']:.2f}x | "
                          f"{compiled['compile_s']:.0f}" if compiled else "- | - | -")
        lines.append(
            f"| {row['size']} | {row['precision']} | {counts(physiomae)} | {counts(patchtst)} | {ratio:.2f}x | "
            f"{physiomae.get('aten_operators_per_step_computing', '?')} / {patchtst.get('aten_operators_per_step_computing', '?')} | "
            f"{physiomae.get('parameter_tensors', '?')} / {patchtst.get('parameter_tensors', '?')} | "
            f"{physiomae.get('graph_breaks', '?')} / {patchtst.get('graph_breaks', '?')} | {compiled_cells} |"
        )
    for row in report["pretraining"]:
        for name in ("physiomae", "patchtst"):
            by_module = row[name].get("aten_operators_forward_by_module")
            if by_module:
                lines += ["", f"Forward ATen operators of {row[name]['model']} ({row['size']}, {row['precision']}) by the "
                          "innermost module they run in (functions count for the module that calls them):", "",
                          "| module | operators |", "| --- | ---: |",
                          *[f"| {module} | {count} |" for module, count in by_module.items()]]
    if report.get("embedding"):
        lines += ["", "| size | precision | embedding windows/s (PhysioMAEModel, no_grad, batch 64) | best step |",
                  "| --- | --- | ---: | ---: |"]
        for row in report["embedding"]:
            lines.append(f"| {row['size']} | {row['precision']} | {row['windows_per_s']:.1f} | "
                         f"{row['batch_size'] / row['min_s']:.1f} |")
    if report.get("data_loading"):
        lines += ["", "| size | batch | num_workers | loading windows/s | training consumes windows/s | loading / training |",
                  "| --- | ---: | ---: | ---: | ---: | ---: |"]
        for row in report["data_loading"]:
            lines.append(
                f"| {row['size']} | {row['batch_size']} | {row['num_workers']} | {row['windows_per_s']:.0f} | "
                f"{row['training_windows_per_s']:.1f} | {row['loading_over_training']:.1f}x |"
            )
    for name in ("data_loading_skipped",):
        if report.get(name):
            lines += ["", f"Data loading skipped: {report[name]}"]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------- main
def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    parser.add_argument("--sizes", nargs="+", default=["tiny", "base"], choices=sorted(CONFIG_FILES))
    parser.add_argument("--precisions", nargs="+", default=None, choices=["fp32", "bf16"],
                        help="default: fp32 on CPU, fp32 and bf16 on CUDA")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 5 on CPU, 20 on CUDA)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 2 on CPU, 5 on CUDA)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="override the YAML's per_device_batch_size for every size (both models)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=None,
                        help="measure every size at each of these batch sizes (a sweep; overrides --batch-size)")
    parser.add_argument("--skip-counts", action="store_true",
                        help="skip the ATen operator counts and the graph-break search (FLOPs are still counted)")
    parser.add_argument("--peak-flops", type=float, default=None,
                        help="the device's measured dense matmul FLOP/s in the measured precision (e.g. from "
                             "benchmarks/gpu_matmul_peak.py): adds each model's share of it")
    parser.add_argument("--cpu-max-batch", type=int, default=32, help="cap of the YAML batch size on CPU")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads on CPU")
    parser.add_argument("--dataset-dir", type=Path, default=None,
                        help="a builder output (save_to_disk folder) for the loading benchmark; default: build a "
                             "synthetic one in a temporary folder")
    parser.add_argument("--synthetic-records", type=int, default=4)
    parser.add_argument("--synthetic-hours", type=float, default=1.0)
    parser.add_argument("--skip-data", action="store_true", help="skip the data loading benchmark")
    parser.add_argument("--skip-embedding", action="store_true")
    parser.add_argument("--profile", action="store_true", help="add torch.profiler top-operator tables")
    parser.add_argument("--torch-compile", action="store_true",
                        help="also time PhysioMAE's step with the forward through torch.compile(fullgraph=True)")
    parser.add_argument("--out", type=Path, default=None, help="JSON results file")
    parser.add_argument("--markdown", type=Path, default=None, help="also write the summary tables here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    arguments = parse_arguments(argv)
    if arguments.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda was asked for but torch.cuda.is_available() is False")
    device = torch.device(arguments.device)
    on_gpu = device.type == "cuda"
    if not on_gpu:
        torch.set_num_threads(arguments.threads)
    precisions = arguments.precisions or (["fp32", "bf16"] if on_gpu else ["fp32"])
    steps = arguments.steps or (20 if on_gpu else 5)
    warmup = arguments.warmup if arguments.warmup is not None else (5 if on_gpu else 2)

    import transformers

    report: dict[str, Any] = {
        "environment": {
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "device": device.type,
            "device_name": torch.cuda.get_device_name(device) if on_gpu else (platform.processor() or platform.machine()),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "python": platform.python_version(),
            "load_average_start": load_average(),
            "peak_flops_per_s": arguments.peak_flops,
        },
        "pretraining": [],
        "embedding": [],
        "data_loading": [],
        "profiles": {},
    }
    all_settings = {name: load_size_settings(name) for name in arguments.sizes}
    runs = []
    for name, settings in all_settings.items():
        default_batch = arguments.batch_size or (
            settings.batch_size if on_gpu else min(settings.batch_size, arguments.cpu_max_batch))
        runs += [(name, settings, batch_size) for batch_size in (arguments.batch_sizes or [default_batch])]
    for name, settings, batch_size in runs:
        config = settings.config
        input_values = torch.randn(batch_size, config.num_channels, config.window_length,
                                   generator=torch.Generator().manual_seed(0)).to(device)
        for precision in precisions:
            print(f"[{name} {precision}] batch {batch_size}: PhysioMAE and PatchTST steps interleaved ...", flush=True)
            cases = {
                "physiomae": physiomae_case(settings, input_values, device, precision),
                "patchtst": patchtst_case(settings, input_values, device, precision),
            }
            if arguments.torch_compile:
                compiled = physiomae_case(settings, input_values, device, precision, compiled=True)
                started = time.perf_counter()
                training_step_function(compiled, settings.max_grad_norm)()  # compiles forward and backward
                synchronize(device)
                compiled.compile_s = time.perf_counter() - started
                print(f"[{name} {precision}] torch.compile: {compiled.compile_s:.0f} s", flush=True)
                cases["physiomae_compiled"] = compiled
            tokens = batch_size * encoder_tokens_per_window(config)
            measured = measure_pretraining_side_by_side(cases, settings, batch_size, tokens, device, precision,
                                                        warmup, steps, count_operators=not arguments.skip_counts)
            physiomae, patchtst, matmul = measured["physiomae"], measured["patchtst"], measured["reference_matmul"]
            if arguments.profile:
                for label, case in cases.items():
                    report["profiles"][f"{name}/{precision}/{label}"] = profile_step(case, settings, device)
            del cases
            if on_gpu:
                torch.cuda.empty_cache()
            row = {
                "size": name,
                "source": settings.source,
                "precision": precision,
                "batch_size": batch_size,
                "yaml_batch_size": settings.batch_size,
                "model": {
                    "hidden_size": config.hidden_size,
                    "num_hidden_layers": config.num_hidden_layers,
                    "num_attention_heads": config.num_attention_heads,
                    "intermediate_size": config.intermediate_size,
                    "decoder": f"{config.decoder_hidden_size} x {config.decoder_num_hidden_layers} layers",
                    "patch_length": config.patch_length,
                    "mask_ratio": config.mask_ratio,
                    "encoder_tokens_per_window": encoder_tokens_per_window(config),
                    "patchtst_tokens_per_window": config.num_channels * config.num_patches,
                },
                "physiomae": physiomae,
                "patchtst": patchtst,
                "reference_matmul": matmul,
                "peak_memory_mib_both_models": measured.get("peak_memory_mib_both_models"),
                "ratio_windows_per_s": physiomae["windows_per_s"] / patchtst["windows_per_s"],
                "physiomae_compiled": measured.get("physiomae_compiled"),
                "physiomae_flops_fraction_of_matmul": physiomae["achieved_flops_per_s"] / matmul["flops_per_s"],
                "patchtst_flops_fraction_of_matmul": patchtst["achieved_flops_per_s"] / matmul["flops_per_s"],
                "physiomae_flops_fraction_of_peak": (physiomae["achieved_flops_per_s"] / arguments.peak_flops
                                                     if arguments.peak_flops else None),
            }
            report["pretraining"].append(row)
            print(f"[{name} {precision}] PatchTST {patchtst['windows_per_s']:.1f} windows/s, ratio "
                  f"{row['ratio_windows_per_s']:.2f}x; PhysioMAE at {row['physiomae_flops_fraction_of_matmul']:.0%} "
                  f"of matmul FLOP/s", flush=True)
            if not arguments.skip_embedding:
                embedding = measure_embedding(settings, device, precision, warmup, steps)
                report["embedding"].append({"size": name, "precision": precision, **embedding})
                print(f"[{name} {precision}] embedding {embedding['windows_per_s']:.1f} windows/s", flush=True)
        del input_values

    if not arguments.skip_data:
        work_dir = None
        try:
            dataset_dir = arguments.dataset_dir
            if dataset_dir is None:
                work_dir = Path(tempfile.mkdtemp(prefix="bench_pretraining_data_"))
                print(f"building a synthetic dataset ({arguments.synthetic_records} records x "
                      f"{arguments.synthetic_hours} h) in {work_dir} ...", flush=True)
                dataset_dir = synthetic_dataset(work_dir, arguments.synthetic_records, arguments.synthetic_hours)
            for name, settings in all_settings.items():
                if settings.training_args is None:
                    raise RuntimeError("train.py could not be imported, so its DataLoader cannot be rebuilt")
                training = [row for row in report["pretraining"] if row["size"] == name]
                training = [row for row in training if row["batch_size"] == settings.batch_size] or training
                # what training consumes: the precision train.py uses for this size when measured, else the fastest
                wanted = "bf16" if settings.mixed_precision == "bf16" else "fp32"
                consuming = next((row for row in training if row["precision"] == wanted), None) or max(
                    training, key=lambda row: row["physiomae"]["windows_per_s"])
                loading = measure_data_loading(settings, dataset_dir, device, min_windows=max(8 * settings.batch_size, 1024))
                training_windows_per_s = consuming["physiomae"]["windows_per_s"]
                report["data_loading"].append({
                    "size": name,
                    **loading,
                    "training_precision": consuming["precision"],
                    "training_windows_per_s": training_windows_per_s,
                    "loading_over_training": loading["windows_per_s"] / training_windows_per_s,
                })
                print(f"[{name}] loading {loading['windows_per_s']:.0f} windows/s (batch {settings.batch_size}, "
                      f"{loading['num_workers']} workers) vs training {training_windows_per_s:.1f}", flush=True)
        except (ImportError, subprocess.CalledProcessError, RuntimeError, FileNotFoundError) as error:
            report["data_loading_skipped"] = f"{type(error).__name__}: {error}"
            print(f"data loading benchmark skipped: {report['data_loading_skipped']}", flush=True)
        finally:
            if work_dir is not None:
                shutil.rmtree(work_dir, ignore_errors=True)

    report["environment"]["load_average_end"] = load_average()
    summary = markdown_summary(report)
    report["markdown"] = summary
    print()
    print(summary)
    for key, table in report["profiles"].items():
        print(f"--- profile {key}\n{table}")
    if arguments.out:
        atomic_write_json(arguments.out, report)
    if arguments.markdown:
        arguments.markdown.parent.mkdir(parents=True, exist_ok=True)
        temporary = arguments.markdown.with_name(arguments.markdown.name + ".tmp")
        temporary.write_text(summary)
        os.replace(temporary, arguments.markdown)
    return report


if __name__ == "__main__":
    main()
