#!/usr/bin/env python
"""Pretraining throughput of PhysioMAE: windows/s for one optimizer step (forward + backward + AdamW).

Two measurements per model size (`configs/tiny.yaml`, `configs/base.yaml` model fields):

- `step`: the model alone on in-memory random windows (batch on the device, no data loading), timed over
  `--steps` optimizer steps after warm-up; on CUDA also the peak memory.
- `pipeline` (optional, `--pipeline`): `train.py` end to end on a synthetic Arrow dataset (data loading,
  collation, logging included), read from the windows/s it logs between its first logged step (warm-up,
  compilation) and its last (the final held-out evaluation); `--pipeline_modes eager compiled` adds the same
  run with `--torch_compile`.

Results go to `benchmarks/results_train_<tag>.json`; `benchmarks/results_train.md` is regenerated from every
such JSON file next to it (so CPU and GPU runs from different machines end up in one table).

    python benchmarks/bench_train.py --tag cpu
    python benchmarks/bench_train.py --tag gpu --device cuda --precisions no bf16 --pipeline
    python benchmarks/bench_train.py --render_only      # results_train.md from the results_train_*.json files
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

SIZES = {"tiny": REPO_ROOT / "configs" / "tiny.yaml", "base": REPO_ROOT / "configs" / "base.yaml"}


def model_config_for(size: str, strategy: str = "mae_modality_drop"):
    import train

    model_args, _, training_args = train.parse_arguments(
        [str(SIZES[size]), "--output_dir", "unused", "--strategy", strategy, "--dataset_dir", "unused"]
    )
    return train.build_model_config(model_args, training_args)


def time_steps(size: str, device: str, precision: str, batch_size: int, steps: int, warmup: int) -> dict:
    """Windows/s of forward + backward + clip + AdamW on random windows already on the device."""
    from modeling_physiomae.modeling_physiomae import PhysioMAEForPreTraining

    config = model_config_for(size)
    torch.manual_seed(0)
    model = PhysioMAEForPreTraining(config).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device == "cuda")
    generator = torch.Generator(device=device).manual_seed(0)
    input_values = torch.randn(batch_size, config.num_channels, config.window_length, device=device)
    modality_mask = torch.ones(batch_size, config.num_modalities, dtype=torch.bool, device=device)
    autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    scaler = torch.amp.GradScaler(device) if precision == "fp16" else None

    def one_step() -> float:
        with torch.autocast(device_type=device, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            loss = model(input_values=input_values, modality_mask=modality_mask, generator=generator).loss
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        else:
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    for _ in range(warmup):
        one_step()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    losses = [one_step() for _ in range(steps)]
    if device == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    result = {
        "kind": "step", "size": size, "device": device, "precision": precision, "batch_size": batch_size,
        "steps": steps, "seconds_per_step": elapsed / steps, "windows_per_s": batch_size * steps / elapsed,
        "parameters_m": sum(parameter.numel() for parameter in model.parameters()) / 1e6,
        "final_loss_finite": all(loss == loss and abs(loss) != float("inf") for loss in losses),
        "threads": torch.get_num_threads(),
    }
    if device == "cuda":
        result["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return result


def write_random_dataset(path: Path, num_windows: int, seed: int = 0) -> None:
    """`num_windows` random windows in the builder's row schema and metadata (physionet2018.make_info) as split `pretrain`."""
    import datasets
    import numpy as np

    from dataset_scripts.physionet2018 import default_feature_extractor, make_info

    extractor = default_feature_extractor()
    layout = extractor.channel_layout
    channels, modalities = len(layout.channel_names), len(layout.modalities)
    windows = np.random.default_rng(seed).standard_normal((num_windows, channels, layout.window_length),
                                                          dtype=np.float32).astype(np.float16)
    rows = {
        "input_values": windows,
        "channel_mask": np.ones((num_windows, channels), dtype=bool),
        "modality_mask": np.ones((num_windows, modalities), dtype=bool),
        "sleep_stage": [-1] * num_windows, "arousal": [-1] * num_windows, "age": [-1.0] * num_windows,
        "sex": [-1] * num_windows, "record": [f"te{index // 64:05d}" for index in range(num_windows)],
        "window": [index % 64 for index in range(num_windows)],
    }
    info = make_info(layout, extractor)  # features given: inferring them from the arrays is 100x slower
    datasets.DatasetDict({"pretrain": datasets.Dataset.from_dict(rows, features=info.features, info=info)}).save_to_disk(str(path))


def time_pipeline(size: str, device: str, precision: str, batch_size: int, steps: int, num_workers: int,
                  workdir: Path, torch_compile: bool = False, dataset_windows: int | None = None,
                  windows_on_device: bool = False) -> dict:
    """
    train.py end to end on a synthetic Arrow dataset (`dataset_windows`, default 1.2 batches per step: the ~10 %
    of records held out for the reconstruction error leave one epoch longer than the run, so that no epoch boundary,
    rare on a real build, drains the DataLoader's workers); windows/s as logged, the first logged
    interval (warm-up, compilation) and the last (the final held-out evaluation) excluded.
    """
    from accelerate.state import AcceleratorState, GradientState

    import train

    dataset_windows = dataset_windows or max(int(1.2 * steps * batch_size), 256)
    dataset = workdir / f"dataset-{dataset_windows}"
    if not dataset.exists():
        write_random_dataset(dataset, num_windows=dataset_windows)
    output_dir = workdir / (f"pipeline-{size}-{precision}{'-compiled' if torch_compile else ''}"
                            f"{'-on-device' if windows_on_device else ''}")
    num_workers = 0 if windows_on_device else num_workers  # the held windows are indexed in the main process
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    interval = max(1, steps // 4)
    start = time.perf_counter()
    train.main([str(SIZES[size]), "--dataset_dir", str(dataset), "--output_dir", str(output_dir),
                "--overwrite_output_dir", "--max_steps", str(steps), "--per_device_batch_size", str(batch_size),
                "--mixed_precision", precision, "--num_workers", str(num_workers), "--logging_steps", str(interval),
                "--reconstruction_eval_steps", "0", "--save_steps", "0", "--report_to", "none", "--disable_tqdm",
                *(["--torch_compile"] if torch_compile else []), *(["--windows_on_device"] if windows_on_device else [])])
    wall = time.perf_counter() - start
    log = [json.loads(line) for line in (output_dir / "train_log.jsonl").read_text().splitlines()]
    middle = log[1:-1] if len(log) > 2 else log[1:]
    steady = [entry["windows_per_s"] for entry in middle if entry.get("windows_per_s")]
    return {
        "kind": "pipeline", "size": size, "device": device, "precision": precision, "batch_size": batch_size,
        "steps": steps, "num_workers": num_workers, "torch_compile": torch_compile, "windows_on_device": windows_on_device,
        "dataset_windows": dataset_windows,
        "windows_per_s": sum(steady) / len(steady) if steady else None,
        "first_interval_s": batch_size / log[0]["windows_per_s"] if log[0].get("windows_per_s") else None,
        "wall_s_including_startup_and_export": wall, "final_loss": log[-1]["loss"],
    }


# --pipeline_modes: (--torch_compile, --windows_on_device) of each, run in this order
PIPELINE_MODES = {"eager": (False, False), "compiled": (True, False), "on_device": (False, True),
                  "compiled_on_device": (True, True)}


def render_markdown(folder: Path) -> str:
    lines = [
        "# Pretraining throughput (benchmarks/bench_train.py)",
        "",
        "Windows/s of one optimizer step (forward + backward + gradient clipping + AdamW) of",
        "`PhysioMAEForPreTraining` with input modality dropout. `step` = model on in-memory random windows;",
        "`pipeline` = `train.py` end to end (Arrow dataset, DataLoader, Accelerate, logging; \"windows on the",
        "device\" = `--windows_on_device`: the split collated once and indexed on the device). Model sizes are the",
        "model fields of `configs/tiny.yaml` (hidden 64, 2 layers) and `configs/base.yaml` (hidden 256, 8 layers,",
        "8 heads, decoders 128 x 2). Every window is 13 channels x 3,000 samples (30 s at 100 Hz).",
        "",
    ]
    for path in sorted(folder.glob("results_train_*.json")):
        payload = json.loads(path.read_text())
        machine = payload["machine"]
        lines += [f"## {payload['tag']}: {machine['device_name']}", "",
                  f"{machine['when']}, torch {machine['torch']}, {machine['cpu_count']} CPUs visible, "
                  f"load average at start {machine['load_average']}. {payload.get('note', '')}", "",
                  "| kind | size | device | precision | batch | threads / workers | windows/s | s/step | params (M) | peak GiB |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for row in payload["results"]:
            if "error" in row:
                lines.append(f"| {row['kind']} | {row['size']} | {row['device']} | {row['precision']} | "
                             f"{row['batch_size']} | | failed: {row['error']} | | | |")
                continue
            seconds = row.get("seconds_per_step")
            if seconds is None and row.get("windows_per_s"):
                seconds = row["batch_size"] / row["windows_per_s"]
            def number(value, digits):
                return "–" if value is None else f"{value:.{digits}f}"

            kind = row["kind"] + (" (torch.compile)" if row.get("torch_compile") else "") + (
                ", windows on the device" if row.get("windows_on_device") else "")
            lines.append(
                f"| {kind} | {row['size']} | {row['device']} | {row['precision']} | {row['batch_size']} | "
                f"{row.get('threads', row.get('num_workers', ''))} | {number(row['windows_per_s'], 1)} | "
                f"{number(seconds, 3)} | {number(row.get('parameters_m'), 2)} | {number(row.get('peak_memory_gib'), 2)} |"
            )
        lines.append("")
    lines += [
        "## Reading the numbers",
        "",
        "- On the H200 at batch 256 the step is bound by kernel launches and Python, not arithmetic: the tiny",
        "  model is barely faster than base, and bf16 autocast is slower than fp32 (extra casts). At batch 1024",
        "  base gains from bf16 (about 1.2-1.45x over fp32 across runs) and uses 8 GiB.",
        "- End to end (`pipeline`) reaches about half the model-only rate at batch 1024: loading windows from",
        "  Arrow (float16, 78 KB each) in the DataLoader workers is the limit. Batches are read with one Arrow",
        "  take per batch and travel as float16 (cast to float32 on the device).",
        "- A full PhysioNet 2018 pretraining epoch (989 te* records x ~960 windows, about 0.95 M windows) takes",
        "  roughly 3-4 minutes on one H200 at ~5k windows/s, and about 15-20 hours on this 2-core CPU for base.",
        "- The CPU machine is shared with other jobs; its numbers vary by about 2x between runs.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tag", default="cpu", help="name of this machine's results file")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--precisions", nargs="+", default=None, help="default: no on CPU, no + bf16 on CUDA")
    parser.add_argument("--sizes", nargs="*", default=["tiny", "base"], help="sizes of the step runs (none: no step runs)")
    parser.add_argument("--batch_sizes", default=None, help="size=batch,... (default CPU tiny=16,base=16; CUDA 256)")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads on CPU")
    parser.add_argument("--pipeline", action="store_true", help="also time train.py end to end")
    parser.add_argument("--pipeline_workers", type=int, default=0)
    parser.add_argument("--pipeline_steps", type=int, default=None, help="train.py steps (default max(steps, 8))")
    parser.add_argument("--pipeline_modes", nargs="+", default=["eager"], choices=list(PIPELINE_MODES),
                        help="train.py as it is, with --torch_compile and/or with --windows_on_device (in this order)")
    parser.add_argument("--pipeline_workdir", default=None,
                        help="folder for the synthetic datasets and run folders (kept; default: a temporary one)")
    parser.add_argument("--pipeline_sizes", nargs="+", default=None, help="sizes of the pipeline runs (default --sizes)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 3 on CUDA, 2 on CPU)")
    parser.add_argument("--render_only", action="store_true",
                        help="only rewrite results_train.md from the results_train_*.json files in --results_dir")
    parser.add_argument("--results_dir", default=str(REPO_ROOT / "benchmarks"))
    parser.add_argument("--note", default="")
    args = parser.parse_args()
    if args.render_only:
        markdown = Path(args.results_dir) / "results_train.md"
        markdown.write_text(render_markdown(Path(args.results_dir)))
        print(f"wrote {markdown}")
        return

    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    if args.threads:
        torch.set_num_threads(args.threads)
    precisions = args.precisions or (["no", "bf16"] if device == "cuda" else ["no"])
    default_batch = {"tiny": 256, "base": 256} if device == "cuda" else {"tiny": 16, "base": 16}
    if args.batch_sizes:
        default_batch.update({key: int(value) for key, value in (item.split("=") for item in args.batch_sizes.split(","))})
    steps = args.steps or (30 if device == "cuda" else 8)
    device_name = torch.cuda.get_device_name(0) if device == "cuda" else (platform.processor() or platform.machine())
    payload = {
        "tag": args.tag,
        "note": args.note,
        "machine": {"device_name": f"{device} ({device_name})", "torch": torch.__version__,
                    "cpu_count": os.cpu_count(), "load_average": [round(load, 2) for load in os.getloadavg()],
                    "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())},
        "results": [],
    }
    results_dir = Path(args.results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    target = results_dir / f"results_train_{args.tag}.json"

    def record(row: dict) -> None:
        """Print the row and rewrite the results file with it: a run stopped from outside keeps what it measured."""
        print(json.dumps(row), flush=True)
        payload["results"].append(row)
        temporary = target.with_suffix(".json.tmp")
        temporary.write_text(json.dumps(payload, indent=2) + "\n")
        os.replace(temporary, target)

    for size in args.sizes:
        for precision in precisions:
            try:
                warmup = args.warmup if args.warmup is not None else (3 if device == "cuda" else 2)
                row = time_steps(size, device, precision, default_batch[size], steps, warmup=warmup)
            except Exception as error:  # record, keep going (e.g. out of memory)
                row = {"kind": "step", "size": size, "device": device, "precision": precision,
                       "batch_size": default_batch[size], "error": f"{type(error).__name__}: {error}"[:200]}
            record(row)
    if args.pipeline:
        with contextlib.ExitStack() as stack:
            workdir = args.pipeline_workdir or stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-train-"))
            Path(workdir).mkdir(parents=True, exist_ok=True)
            for mode, (torch_compile, on_device) in PIPELINE_MODES.items():
                if mode not in args.pipeline_modes:
                    continue
                for size in args.pipeline_sizes or args.sizes:
                    precision = precisions[-1]
                    try:
                        row = time_pipeline(size, device, precision, default_batch[size],
                                            args.pipeline_steps or max(steps, 8), args.pipeline_workers, Path(workdir),
                                            torch_compile=torch_compile, windows_on_device=on_device)
                    except Exception as error:  # record, keep going
                        row = {"kind": "pipeline", "size": size, "device": device, "precision": precision,
                               "batch_size": default_batch[size], "torch_compile": torch_compile,
                               "windows_on_device": on_device,
                               "error": f"{type(error).__name__}: {error}"[:300]}
                    record(row)
    markdown = results_dir / "results_train.md"
    temporary = markdown.with_suffix(".md.tmp")
    temporary.write_text(render_markdown(results_dir))
    os.replace(temporary, markdown)
    print(f"wrote {target} and {markdown}")


if __name__ == "__main__":
    main()
