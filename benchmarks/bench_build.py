"""Benchmark of the PhysioNet 2018 builder: windows per second, relative to `wfdb.rdrecord`, and peak memory.

    python benchmarks/bench_build.py [--records 10 40] [--hours 0.5] [--work_dir /tmp/bench_build]

Writes a synthetic cohort (challenge layout, 13 channels at 200 Hz), then for each record count N runs, each
in a fresh subprocess (so that peak memory is per run): (a) `wfdb.rdrecord` alone on the N records, (b) the
full build (`PhysioNet2018.download_and_prepare`: read, preprocess, label, write Arrow). Peak memory is the
subprocess's maximum resident set size (`resource.getrusage`), which includes the imports (torch,
transformers, datasets) - the part that matters is whether it grows with N. Results go to
benchmarks/results_build.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path


REPO_ROOT = Path(__file__).resolve().parents[1]

_RDRECORD_CHILD = """
import json, resource, sys, time
import wfdb
paths = json.loads(sys.argv[1])
def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
cpu_started = cpu()
started = time.perf_counter()
samples = 0
for path in paths:
    record = wfdb.rdrecord(path)
    samples += record.p_signal.shape[0]
    del record
print(json.dumps({"seconds": time.perf_counter() - started, "cpu_seconds": cpu() - cpu_started, "samples": samples,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

_BUILD_CHILD = """
import json, resource, sys, time
sys.path.insert(0, sys.argv[3])
import modeling_physiomae  # imports before timing: the build itself is measured
from dataset_scripts.physionet2018 import PhysioNet2018
rss_after_imports = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
cpu_started = cpu()
started = time.perf_counter()
builder = PhysioNet2018(data_dir=sys.argv[1], cache_dir=sys.argv[2])
builder.download_and_prepare()
seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds, "cpu_seconds": cpu() - cpu_started, "windows": builder.build_report["totals"]["windows_kept"],
                  "records": builder.build_report["totals"]["records_built"],
                  "rss_after_imports_mb": rss_after_imports,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run_child(code: str, *arguments: str) -> dict:
    completed = subprocess.run(
        [sys.executable, "-c", code, *arguments], capture_output=True, text=True, check=False,
        env={**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"},
    )
    if completed.returncode:
        raise RuntimeError(f"benchmark child failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def subset_folder(cohort: Path, names: list[str], folder: Path) -> Path:
    """A flat folder of links to the first records (RECORDS file included)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for name in names:
        subset = "training" if name.startswith("tr") else "test"
        os.symlink(cohort / subset / name, folder / name)
    (folder / "RECORDS").write_text("".join(f"{name}/\n" for name in names))
    return folder


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, nargs="+", default=[10, 40])
    parser.add_argument("--hours", type=float, default=0.5)
    parser.add_argument("--work_dir", type=Path, default=Path("/tmp/physiomae_bench_build"))
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "benchmarks" / "results_build.md")
    arguments = parser.parse_args(argv)
    sys.path.insert(0, str(REPO_ROOT))
    from dataset_scripts import synthetic_psg

    most = max(arguments.records)
    cohort = arguments.work_dir / "cohort"
    shutil.rmtree(arguments.work_dir, ignore_errors=True)
    started = time.perf_counter()
    summary = synthetic_psg.write_cohort(cohort, n_train=most // 2, n_test=most - most // 2, hours=arguments.hours, seed=0)
    print(f"wrote {most} synthetic records of {arguments.hours} h in {time.perf_counter() - started:.1f} s", flush=True)
    # interleave labelled and unlabelled records so that every subset has the same mix
    names = [name for pair in zip(summary.training_records, summary.test_records) for name in pair]
    names += summary.test_records[len(summary.training_records):]

    rows = []
    for count in arguments.records:
        chosen = names[:count]
        folder = subset_folder(cohort, chosen, arguments.work_dir / f"subset-{count}")
        paths = [str(folder / name / name) for name in chosen]
        reading = run_child(_RDRECORD_CHILD, json.dumps(paths))
        building = run_child(_BUILD_CHILD, str(folder), str(arguments.work_dir / f"cache-{count}"), str(REPO_ROOT))
        row = {
            "records": count,
            "windows": building["windows"],
            "build_seconds": building["seconds"],
            "windows_per_second": building["windows"] / building["seconds"],
            "rdrecord_seconds": reading["seconds"],
            "build_over_rdrecord": building["seconds"] / reading["seconds"],
            "build_cpu_seconds": building["cpu_seconds"],
            "rdrecord_cpu_seconds": reading["cpu_seconds"],
            "windows_per_cpu_second": building["windows"] / building["cpu_seconds"],
            "cpu_build_over_rdrecord": building["cpu_seconds"] / reading["cpu_seconds"],
            "build_peak_rss_mb": building["peak_rss_mb"],
            "build_rss_after_imports_mb": building["rss_after_imports_mb"],
            "rdrecord_peak_rss_mb": reading["peak_rss_mb"],
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
        shutil.rmtree(arguments.work_dir / f"cache-{count}", ignore_errors=True)

    load = os.getloadavg()
    lines = [
        "# Builder benchmark (`benchmarks/bench_build.py`)",
        "",
        f"Synthetic records ({arguments.hours} h each, 13 channels at 200 Hz, `16+24` Matlab v4, every subset half labelled), "
        f"built with `num_proc=1` on {platform.processor() or platform.machine()} ({os.cpu_count()} CPUs, "
        f"load average {load[0]:.1f} at the end: the machine was shared, so times are upper bounds).",
        "`wfdb.rdrecord` = reading the same records with `wfdb.rdrecord` alone (physical float64, nothing else).",
        "CPU seconds (user + system of the subprocess) are less sensitive to the shared machine than wall seconds.",
        "Peak RSS is each subprocess's maximum resident set size; the build's includes importing torch/transformers/datasets "
        "(RSS right after the imports is given separately).",
        "",
        "| records | windows | build s (CPU s) | windows/s (per CPU s) | rdrecord s (CPU s) | build / rdrecord wall (CPU) "
        "| build peak RSS MB | RSS after imports MB | rdrecord peak RSS MB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        lines.append(
            f"| {row['records']} | {row['windows']} | {row['build_seconds']:.1f} ({row['build_cpu_seconds']:.1f}) | "
            f"{row['windows_per_second']:.1f} ({row['windows_per_cpu_second']:.1f}) | "
            f"{row['rdrecord_seconds']:.2f} ({row['rdrecord_cpu_seconds']:.2f}) | "
            f"{row['build_over_rdrecord']:.1f}x ({row['cpu_build_over_rdrecord']:.1f}x) | {row['build_peak_rss_mb']:.0f} | "
            f"{row['build_rss_after_imports_mb']:.0f} | {row['rdrecord_peak_rss_mb']:.0f} |"
        )
    if len(rows) >= 2:
        growth = rows[-1]["build_peak_rss_mb"] - rows[0]["build_peak_rss_mb"]
        lines += ["", f"Peak memory from {rows[0]['records']} to {rows[-1]['records']} records: {growth:+.0f} MB "
                  "(records are read one at a time; Arrow batches of 256 windows are flushed to disk)."]
    arguments.output.write_text("\n".join(lines) + "\n")
    print(f"wrote {arguments.output}")
    shutil.rmtree(arguments.work_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
