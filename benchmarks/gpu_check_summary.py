#!/usr/bin/env python
"""Bundle the results of `benchmarks/gpu_check.sh` and judge them against the GPU targets.

Reads the check's work folder (`stages.tsv`, `environment.txt`, `peak.json`, `patchtst_*.json`,
`results_train_gpu.json`) and writes into the output folder:

- `gpu_check.md`: the targets with the measured numbers and a verdict each, the stages (exit code, seconds),
  the device and versions;
- `gpu_check.json`: every number the stages wrote, in one file;
- `results_pretraining_vs_patchtst_gpu.{json,md}` and `results_train_gpu.json`: the repository's GPU results files,
  ready to be copied into `benchmarks/` (then `python benchmarks/bench_train.py --render_only`).

Targets (pretraining, model sizes of configs/tiny.yaml and configs/base.yaml):

1. base, bf16: PhysioMAE windows/s >= 3x PatchTST's at the same batch;
2. base, bf16: PhysioMAE's counted FLOP/s >= 25 % of the device's dense bf16 matmul rate, at the best batch;
3. tiny: PhysioMAE windows/s >= 1x PatchTST's at batch 256;
4. train.py end to end: windows/s >= 80 % of the model step's (same size, precision and batch).

    python benchmarks/gpu_check_summary.py WORK_DIR OUT_DIR [--smoke]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = Path(__file__).resolve().parent
DEVICE_BF16_FLOPS = 790e12  # measured on an H200 of this workplace: used only when the check's own measurement failed
TARGETS = {"base_ratio": 3.0, "base_peak_share": 0.25, "tiny_ratio": 1.0, "end_to_end_share": 0.80}


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def merged_patchtst_report(work_dir: Path) -> dict[str, Any] | None:
    """The `patchtst_*.json` reports of the sweep's invocations as one report (rows in invocation order)."""
    reports = [report for path in sorted(work_dir.glob("patchtst_*.json")) if (report := read_json(path))]
    if not reports:
        return None
    merged = {**reports[0], "pretraining": [], "embedding": [], "data_loading": [], "profiles": {}}
    merged["environment"] = {**reports[0]["environment"],
                             "command": " ; ".join(report["environment"]["command"] for report in reports)}
    for report in reports:
        for key in ("pretraining", "embedding", "data_loading"):
            merged[key] += report.get(key, [])
        merged["profiles"].update(report.get("profiles", {}))
    sys.path.insert(0, str(BENCHMARKS))
    from bench_pretraining_vs_patchtst import markdown_summary

    merged["markdown"] = markdown_summary(merged)
    return merged


def merged_train_results(work_dir: Path) -> dict[str, Any] | None:
    """`results_train_gpu.json` (steps, eager train.py) and `results_train_gpu_compiled.json` as one results file."""
    payloads = [payload for path in sorted(work_dir.glob("results_train_gpu*.json")) if (payload := read_json(path))]
    if not payloads:
        return None
    return {**payloads[0], "tag": "gpu", "note": "benchmarks/gpu_check.sh",
            "results": [row for payload in payloads for row in payload["results"]]}


def verdict(value: float | None, target: float) -> str:
    if value is None:
        return "not measured"
    return "**met**" if value >= target else "**missed**"


def peak_bf16(peak: dict | None) -> tuple[float, str]:
    for row in (peak or {}).get("results", []):
        if row["precision"] == "bf16" and row["correct"]:
            return row["flops_per_s"], f"measured here ({row['size']}^3 bf16 product)"
    if peak and peak.get("results"):  # the smoke run on the CPU measures fp32 only
        row = peak["results"][0]
        return row["flops_per_s"], f"measured here ({row['precision']}, {row['size']}^3)"
    return DEVICE_BF16_FLOPS, "assumed (790 TFLOP/s, an H200 of this workplace): the check's measurement failed"


def target_rows(patchtst: dict | None, train: dict | None, peak_flops: float) -> list[list[str]]:
    rows: list[list[str]] = []
    pretraining = (patchtst or {}).get("pretraining", [])
    base_bf16 = [row for row in pretraining if row["size"] == "base" and row["precision"] == "bf16"]
    if not base_bf16:  # the smoke run measures tiny in fp32 only
        base_bf16 = [row for row in pretraining if row["size"] == "base"]
    for row in base_bf16:
        ratio = row["ratio_windows_per_s"]
        rows.append([f"1. base {row['precision']} / PatchTST, batch {row['batch_size']}", f">= {TARGETS['base_ratio']:.0f}x",
                     f"{ratio:.2f}x ({row['physiomae']['windows_per_s']:.0f} / {row['patchtst']['windows_per_s']:.0f} "
                     f"windows/s)", verdict(ratio, TARGETS["base_ratio"])])
    if base_bf16:
        best = max(base_bf16, key=lambda row: row["physiomae"]["achieved_flops_per_s"])
        share = best["physiomae"]["achieved_flops_per_s"] / peak_flops
        rows.append([f"2. base {best['precision']} FLOP/s / device peak, best batch ({best['batch_size']})",
                     f">= {TARGETS['base_peak_share']:.0%}",
                     f"{share:.1%} ({best['physiomae']['achieved_flops_per_s'] / 1e12:.1f} of "
                     f"{peak_flops / 1e12:.0f} TFLOP/s)", verdict(share, TARGETS["base_peak_share"])])
    else:
        rows.append(["1-2. base", "", "not measured", "not measured"])
    tiny = [row for row in pretraining if row["size"] == "tiny"]
    tiny_256 = [row for row in tiny if row["batch_size"] == 256] or tiny
    for row in tiny_256:
        ratio = row["ratio_windows_per_s"]
        rows.append([f"3. tiny {row['precision']} / PatchTST, batch {row['batch_size']}", f">= {TARGETS['tiny_ratio']:.0f}x",
                     f"{ratio:.2f}x ({row['physiomae']['windows_per_s']:.0f} / {row['patchtst']['windows_per_s']:.0f} "
                     f"windows/s)", verdict(ratio, TARGETS["tiny_ratio"])])
    if not tiny_256:
        rows.append(["3. tiny", "", "not measured", "not measured"])
    results = (train or {}).get("results", [])
    steps = {(row["size"], row["precision"], row["batch_size"]): row for row in results
             if row["kind"] == "step" and row.get("windows_per_s")}
    pipelines = [row for row in results if row["kind"] == "pipeline"]
    for row in pipelines:
        label = (f"4. train.py / model step, {row['size']} {row['precision']} batch {row['batch_size']}"
                 f"{', windows on the device' if row.get('windows_on_device') else ''}"
                 f"{' (torch.compile) / eager step' if row.get('torch_compile') else ''}")
        step = steps.get((row["size"], row["precision"], row["batch_size"]))
        if row.get("error") or not row.get("windows_per_s"):
            rows.append([label, f">= {TARGETS['end_to_end_share']:.0%}", f"failed: {row.get('error', 'no steady interval')}",
                         "not measured"])
        elif step is None:
            rows.append([label, f">= {TARGETS['end_to_end_share']:.0%}",
                         f"{row['windows_per_s']:.0f} windows/s; no step row at this batch", "not measured"])
        else:
            share = row["windows_per_s"] / step["windows_per_s"]
            rows.append([label, f">= {TARGETS['end_to_end_share']:.0%}",
                         f"{share:.0%} ({row['windows_per_s']:.0f} / {step['windows_per_s']:.0f} windows/s, "
                         f"{row['num_workers']} workers)", verdict(share, TARGETS["end_to_end_share"])])
    if not pipelines:
        rows.append(["4. train.py end to end", "", "not measured", "not measured"])
    return rows


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)] + ["| " + " | ".join(row) + " |" for row in rows]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("work_dir", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--smoke", action="store_true", help="a CPU smoke run: the numbers are not the targets' device")
    arguments = parser.parse_args(argv)
    work_dir, out_dir = arguments.work_dir, arguments.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)

    stages = []
    if (work_dir / "stages.tsv").exists():
        for line in (work_dir / "stages.tsv").read_text().splitlines():
            name, code, seconds, budget = line.split("\t")
            stages.append({"stage": name, "exit_code": code, "seconds": int(seconds), "budget_s": budget})
    peak = read_json(work_dir / "peak.json")
    patchtst = merged_patchtst_report(work_dir)
    train = merged_train_results(work_dir)
    environment = (work_dir / "environment.txt").read_text() if (work_dir / "environment.txt").exists() else ""
    peak_flops, peak_source = peak_bf16(peak)

    lines = ["# GPU check (benchmarks/gpu_check.sh)", ""]
    targets = table(["target", "wanted", "measured", "verdict"], target_rows(patchtst, train, peak_flops))
    if arguments.smoke:
        lines += ["**Smoke run on the CPU** (tiny sizes, few steps): it proves the script, not the targets.", ""]
    date = (patchtst or {}).get("environment", {}).get("date_utc") or (peak or {}).get("date_utc", "")
    device = (peak or {}).get("device") or (patchtst or {}).get("environment", {}).get("device_name", "?")
    lines += [f"{date}; device: {device}; device matmul peak: {peak_flops / 1e12:.1f} TFLOP/s, {peak_source}.", "",
              "## Targets", ""]
    lines += targets
    if peak:
        lines += ["", "## Device matmul rate (`gpu_matmul_peak.py`)", ""]
        lines += table(["precision", "n", "TFLOP/s (median)", "TFLOP/s (best)", "relative error"],
                       [[row["precision"], str(row["size"]), f"{row['flops_per_s'] / 1e12:.2f}",
                         f"{row['best_flops_per_s'] / 1e12:.2f}", f"{row['relative_error']:.1e}"
                         + ("" if row["correct"] else " WRONG")] for row in peak["results"]])
    if patchtst:
        lines += ["", "## PhysioMAE and PatchTST (`bench_pretraining_vs_patchtst.py`)", "", patchtst["markdown"]]
    if train:
        lines += ["", "## Model step and train.py end to end (`bench_train.py`)", ""]
        lines += table(["kind", "size", "precision", "batch", "workers", "windows/s", "first logged step s", "wall s"],
                       [[row["kind"] + (" (torch.compile)" if row.get("torch_compile") else ""), row["size"],
                         row["precision"], str(row["batch_size"]), str(row.get("num_workers", "")),
                         f"{row['windows_per_s']:.0f}" if row.get("windows_per_s") else f"failed: {row.get('error', '?')}",
                         f"{row['first_interval_s']:.1f}" if row.get("first_interval_s") else "",
                         f"{row['wall_s_including_startup_and_export']:.0f}"
                         if row.get("wall_s_including_startup_and_export") else ""]
                        for row in train["results"]])
    lines += ["", "## Stages", ""]
    stage_table = table(["stage", "exit code", "seconds", "budget s"],
                        [[stage["stage"], stage["exit_code"], str(stage["seconds"]), stage["budget_s"]] for stage in stages])
    lines += stage_table
    lines += ["", "Exit code 124: stopped at its time budget (what it wrote until then is kept); `skipped`: too little",
              "of the check's total time was left.", "", "## Environment", "", "```", environment.strip(), "```", ""]
    (out_dir / "gpu_check.md").write_text("\n".join(lines))

    bundle = {"stages": stages, "environment": environment, "peak": peak, "peak_bf16_flops_per_s": peak_flops,
              "peak_source": peak_source, "pretraining_vs_patchtst": patchtst, "train": train,
              "targets": TARGETS, "smoke": arguments.smoke}
    (out_dir / "gpu_check.json").write_text(json.dumps(bundle, indent=2) + "\n")
    if patchtst:
        (out_dir / "results_pretraining_vs_patchtst_gpu.json").write_text(json.dumps(patchtst, indent=2) + "\n")
        (out_dir / "results_pretraining_vs_patchtst_gpu.md").write_text(patchtst["markdown"])
    if train:
        (out_dir / "results_train_gpu.json").write_text(json.dumps(train, indent=2) + "\n")
    print("\n".join([*lines[2:lines.index("## Targets")], *targets, "", *stage_table]))


if __name__ == "__main__":
    main()
