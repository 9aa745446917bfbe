"""benchmarks/gpu_check_summary.py: the GPU targets judged from the check's result files (no GPU needed)."""

import json
import sys
from pathlib import Path

from helpers import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

import gpu_check_summary  # noqa: E402


def pretraining_row(size, precision, batch_size, physiomae_windows_per_s, patchtst_windows_per_s, physiomae_flops_per_s):
    return {"size": size, "precision": precision, "batch_size": batch_size,
            "ratio_windows_per_s": physiomae_windows_per_s / patchtst_windows_per_s,
            "physiomae": {"windows_per_s": physiomae_windows_per_s, "achieved_flops_per_s": physiomae_flops_per_s},
            "patchtst": {"windows_per_s": patchtst_windows_per_s}}


def test_targets_are_judged_from_the_measured_rows():
    pretraining = {"pretraining": [
        pretraining_row("base", "bf16", 16, 300.0, 200.0, 10e12),
        pretraining_row("base", "bf16", 1024, 12000.0, 3000.0, 240e12),  # 4x, 30 % of 800 TFLOP/s
        pretraining_row("base", "fp32", 256, 5000.0, 1000.0, 900e12),  # fp32: not a bf16 target row
        pretraining_row("tiny", "bf16", 256, 900.0, 1000.0, 1e12),
    ]}
    train = {"results": [
        {"kind": "step", "size": "base", "precision": "bf16", "batch_size": 1024, "windows_per_s": 10000.0},
        {"kind": "pipeline", "size": "base", "precision": "bf16", "batch_size": 1024, "windows_per_s": 8500.0,
         "num_workers": 12},
        {"kind": "pipeline", "size": "base", "precision": "bf16", "batch_size": 1024, "windows_per_s": 7000.0,
         "num_workers": 12, "torch_compile": True},
        {"kind": "pipeline", "size": "tiny", "precision": "bf16", "batch_size": 256, "error": "OSError: disk full"},
    ]}
    rows = {row[0]: row for row in gpu_check_summary.target_rows(pretraining, train, peak_flops=800e12)}
    assert rows["1. base bf16 / PatchTST, batch 16"][3] == "**missed**"  # 1.5x
    assert rows["1. base bf16 / PatchTST, batch 1024"][3] == "**met**"
    assert not any("fp32" in label for label in rows)
    best = rows["2. base bf16 FLOP/s / device peak, best batch (1024)"]
    assert best[2].startswith("30.0%") and best[3] == "**met**"
    assert rows["3. tiny bf16 / PatchTST, batch 256"][3] == "**missed**"  # 0.9x
    assert rows["4. train.py / model step, base bf16 batch 1024"][2].startswith("85%")
    assert rows["4. train.py / model step, base bf16 batch 1024"][3] == "**met**"
    assert rows["4. train.py / model step, base bf16 batch 1024 (torch.compile) / eager step"][3] == "**missed**"
    failed = rows["4. train.py / model step, tiny bf16 batch 256"]
    assert "disk full" in failed[2] and failed[3] == "not measured"


def test_nothing_measured_is_said_so(tmp_path):
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "stages.tsv").write_text("install\t1\t3\t60\nmatmul_peak\tskipped\t0\t5\n")
    gpu_check_summary.main([str(tmp_path / "work"), str(tmp_path / "out")])
    report = (tmp_path / "out" / "gpu_check.md").read_text()
    assert report.count("not measured") >= 4 and "| install | 1 | 3 | 60 |" in report
    assert "assumed (790 TFLOP/s" in report  # no peak measured: the documented H200 rate, said to be assumed
    bundle = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert bundle["stages"][1] == {"stage": "matmul_peak", "exit_code": "skipped", "seconds": 0, "budget_s": "5"}
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["gpu_check.json", "gpu_check.md"]


def test_train_results_of_the_eager_and_compiled_stages_are_merged(tmp_path):
    for tag, kind in (("gpu", "step"), ("gpu_compiled", "pipeline")):
        (tmp_path / f"results_train_{tag}.json").write_text(json.dumps(
            {"tag": tag, "machine": {}, "results": [{"kind": kind, "size": "base"}]}))
    merged = gpu_check_summary.merged_train_results(tmp_path)
    assert merged["tag"] == "gpu" and [row["kind"] for row in merged["results"]] == ["step", "pipeline"]
