#!/usr/bin/env python
"""The device's dense matrix-multiply rate, the ceiling the pretraining FLOP/s are compared with.

One square product `(n x n) @ (n x n)` (2 n^3 FLOPs) per precision through torch, on random normal inputs (never
zeros: they run faster than real data), timed with CUDA events (or a synchronised host clock on the CPU) over
`--repeats` products after `--warmup` untimed ones; the median is reported. Precisions: bf16, fp16, fp32 with TF32
allowed (`tf32`) and strict fp32 (`fp32`). The result is checked against a float64 product of a slice, so that a
broken kernel cannot report a rate.

    python benchmarks/gpu_matmul_peak.py --out peak.json                    # CUDA: n = 8192
    python benchmarks/gpu_matmul_peak.py --device cpu --size 512 --out peak.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "tf32": torch.float32, "fp32": torch.float32}
TOLERANCE = {"bf16": 2e-2, "fp16": 5e-3, "tf32": 5e-3, "fp32": 1e-5}  # relative error of the checked slice


def time_products(first: torch.Tensor, second: torch.Tensor, warmup: int, repeats: int) -> list[float]:
    """Seconds of each of `repeats` products, after `warmup` untimed ones."""
    output = torch.empty(first.shape[0], second.shape[1], dtype=first.dtype, device=first.device)
    for _ in range(warmup):
        torch.matmul(first, second, out=output)
    durations = []
    if first.device.type == "cuda":
        torch.cuda.synchronize()
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            torch.matmul(first, second, out=output)
            end.record()
            end.synchronize()
            durations.append(start.elapsed_time(end) / 1e3)
    else:
        for _ in range(repeats):
            started = time.perf_counter()
            torch.matmul(first, second, out=output)
            durations.append(time.perf_counter() - started)
    return durations


def measure(precision: str, size: int, device: torch.device, warmup: int, repeats: int) -> dict:
    previous_tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    try:
        generator = torch.Generator(device=device).manual_seed(0)
        first = torch.randn(size, size, device=device, generator=generator).to(DTYPES[precision])
        second = torch.randn(size, size, device=device, generator=generator).to(DTYPES[precision])
        durations = time_products(first, second, warmup, repeats)
        rows = slice(0, min(size, 64))  # check: 64 output rows against float64
        reference = first[rows].double() @ second.double()
        product = (first[rows] @ second).double()
        relative_error = float((product - reference).norm() / reference.norm())
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous_tf32
    median = statistics.median(durations)
    return {
        "precision": precision, "size": size, "repeats": repeats, "warmup": warmup,
        "median_s": median, "min_s": min(durations),
        "flops_per_s": 2 * size**3 / median, "best_flops_per_s": 2 * size**3 / min(durations),
        "relative_error": relative_error, "correct": relative_error < TOLERANCE[precision],
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    parser.add_argument("--size", type=int, default=None, help="n of the square product (default 8192 CUDA, 512 CPU)")
    parser.add_argument("--precisions", nargs="+", default=None, choices=sorted(DTYPES),
                        help="default: bf16 fp16 tf32 fp32 on CUDA, fp32 on the CPU")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", type=Path, default=None)
    arguments = parser.parse_args(argv)
    if arguments.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda was asked for but torch.cuda.is_available() is False")
    device = torch.device(arguments.device)
    on_gpu = device.type == "cuda"
    size = arguments.size or (8192 if on_gpu else 512)
    precisions = arguments.precisions or (["bf16", "fp16", "tf32", "fp32"] if on_gpu else ["fp32"])
    report = {
        "device": torch.cuda.get_device_name(device) if on_gpu else "cpu",
        "torch": torch.__version__,
        "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "results": [],
    }
    for precision in precisions:
        row = measure(precision, size, device, arguments.warmup, arguments.repeats)
        report["results"].append(row)
        print(f"{precision:>5} n={size}: {row['flops_per_s'] / 1e12:.2f} TFLOP/s (median of {row['repeats']}), "
              f"relative error {row['relative_error']:.1e}{'' if row['correct'] else ' WRONG'}", flush=True)
    if arguments.out:
        arguments.out.parent.mkdir(parents=True, exist_ok=True)
        arguments.out.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
