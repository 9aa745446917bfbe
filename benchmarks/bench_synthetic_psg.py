"""Benchmark: time to generate and write one synthetic 13-channel record, and its peak memory.

    python benchmarks/bench_synthetic_psg.py [--hours 1 8] [--repeats 5]

Each length runs in a fresh child process (so peak memory is that record's), `repeats` times;
the table reports the best wall and CPU times (the machine may be shared) and the peak RSS.
Writes benchmarks/results_synthetic_psg.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

_CHILD = r"""
import json, resource, sys, tempfile, time
sys.path.insert(0, sys.argv[3])
import numpy as np
from dataset_scripts import synthetic_psg
hours, repeats = float(sys.argv[1]), int(sys.argv[2])
rows = []
with tempfile.TemporaryDirectory() as folder:
    # warm-up: generating and writing import what they need (the header check loads the feature extractor)
    synthetic_psg.write_synthetic_record(synthetic_psg.generate_record(np.random.default_rng(0), "tr90-0000", 0.01), folder)
    for repeat in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        record = synthetic_psg.generate_record(np.random.default_rng(repeat), "tr90-0001", hours)
        generated_wall, generated_cpu = time.perf_counter(), time.process_time()
        synthetic_psg.write_synthetic_record(record, folder)
        rows.append({
            "generate_wall": generated_wall - wall, "generate_cpu": generated_cpu - cpu,
            "write_wall": time.perf_counter() - generated_wall, "write_cpu": time.process_time() - generated_cpu,
        })
        del record
peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"rows": rows, "peak_mib": peak_mib}))
"""


def run_length(hours: float, repeats: int) -> dict:
    """Run the child for one record length; return best timings and peak memory."""
    completed = subprocess.run(
        [sys.executable, "-c", _CHILD, str(hours), str(repeats), str(REPO_ROOT)],
        check=True, capture_output=True, text=True,
    )
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    best = {key: min(row[key] for row in result["rows"]) for key in result["rows"][0]}
    total_wall = min(row["generate_wall"] + row["write_wall"] for row in result["rows"])
    total_cpu = min(row["generate_cpu"] + row["write_cpu"] for row in result["rows"])
    return {"hours": hours, **best, "total_wall": total_wall, "total_cpu": total_cpu, "peak_mib": result["peak_mib"]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=float, nargs="+", default=[1.0, 8.0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "benchmarks" / "results_synthetic_psg.md")
    arguments = parser.parse_args(argv)
    results = [run_length(hours, arguments.repeats) for hours in arguments.hours]
    lines = [
        "# Synthetic PSG record: generate + write",
        "",
        f"`python benchmarks/bench_synthetic_psg.py --hours {' '.join(f'{h:g}' for h in arguments.hours)} "
        f"--repeats {arguments.repeats}` on {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}; best of {arguments.repeats}, one process per length.",
        "13 channels at 200 Hz, labelled record (.hea, .mat, .arousal, -arousal.mat).",
        "",
        "| hours | generate wall s | generate CPU s | write wall s | write CPU s | total wall s | total CPU s "
        "| peak RSS MiB |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in results:
        lines.append(
            f"| {row['hours']:g} | {row['generate_wall']:.3f} | {row['generate_cpu']:.3f} | {row['write_wall']:.3f} | "
            f"{row['write_cpu']:.3f} | {row['total_wall']:.3f} | {row['total_cpu']:.3f} | {row['peak_mib']:.0f} |"
        )
    text = "\n".join(lines) + "\n"
    arguments.output.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
