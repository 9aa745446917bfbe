"""finetune.py: Trainer fine-tuning from a saved encoder against random initialisation, on real excerpts."""

from __future__ import annotations

import json

import torch

from helpers import REPO_ROOT, tiny_config
from modeling_physiomae import PhysioMAEForPreTraining, PhysioMAEForSequenceClassification


def test_finetune_compares_pretrained_and_random_init_per_seed(real_segments_dir, tmp_path):
    import finetune

    model_folder = tmp_path / "pretrained"
    PhysioMAEForPreTraining(tiny_config()).save_pretrained(model_folder)
    # the "pretrained" classifier starts from the saved encoder, the random one does not
    loaded = PhysioMAEForSequenceClassification.from_pretrained(model_folder, num_labels=5)
    saved = PhysioMAEForPreTraining.from_pretrained(model_folder)
    for name, parameter in loaded.physiomae.state_dict().items():
        torch.testing.assert_close(parameter, saved.physiomae.state_dict()[name], msg=name)

    results = finetune.main([
        "--checkpoints", str(model_folder), "--real_segments_dir", str(real_segments_dir), "--real_segments_limit", "40",
        "--output_dir", str(tmp_path / "out"), "--seeds", "0", "1", "--max_steps", "3", "--batch_size", "8",
        "--label_fractions", "0.5",
    ])
    entry = results["variants"]["pretrained"]
    for init in ("pretrained", "random_init"):
        runs = entry[init]["runs"]
        assert [run["seed"] for run in runs] == [0, 1]
        for run in runs:
            assert 0.0 <= run["balanced_accuracy"] <= 1.0 and -1.0 <= run["cohen_kappa"] <= 1.0
    difference = entry["pretrained"]["summary"]["balanced_accuracy"]["mean"] - entry["random_init"]["summary"]["balanced_accuracy"]["mean"]
    assert abs(entry["difference_balanced_accuracy"] - difference) < 1e-12
    saved_results = json.loads((tmp_path / "out" / "finetune.json").read_text())
    assert saved_results["variants"]["pretrained"]["pretrained"]["runs"][0]["seed"] == 0
    assert "pretrained − random" in (tmp_path / "out" / "finetune.md").read_text()
    # label efficiency: the full share is the comparison above; half the records is about half the windows
    efficiency = entry["label_efficiency"]
    for init in ("pretrained", "random_init"):
        assert efficiency["variants"][init]["1"]["runs"] == [run["balanced_accuracy"] for run in entry[init]["runs"]]
    assert efficiency["records"]["0.5"] < efficiency["records"]["1"]
    assert 0.3 < efficiency["windows"]["0.5"] / efficiency["windows"]["1"] < 0.7


def test_finetuned_classifier_and_its_checkpoints_load_with_auto_classes_and_the_pipeline(real_segments_dir, tmp_path):
    """--model_name_or_path: the best checkpoint (by validation balanced accuracy) is kept; every Trainer checkpoint
    and the output folder hold the feature extractor, and load in a fresh process through the Auto classes and
    pipeline("sleep-staging") on a real excerpt's WFDB record."""
    import subprocess
    import sys
    import textwrap
    from pathlib import Path

    import finetune
    from helpers import HIDE_OUR_PACKAGE, isolated_environment

    encoder_folder = tmp_path / "pretrained"
    PhysioMAEForPreTraining(tiny_config()).save_pretrained(encoder_folder)
    output_dir = tmp_path / "stager"
    results = finetune.main([
        "--model_name_or_path", str(encoder_folder), "--real_segments_dir", str(real_segments_dir),
        "--real_segments_limit", "40", "--output_dir", str(output_dir), "--max_steps", "4", "--eval_steps", "2",
        "--batch_size", "8",
    ])
    checkpoints = sorted(path.name for path in (output_dir / "checkpoints").iterdir() if path.name.startswith("checkpoint-"))
    assert checkpoints == ["checkpoint-2", "checkpoint-4"]
    assert Path(results["best_checkpoint"]).name in checkpoints
    assert set(results["test"]) >= {"balanced_accuracy", "macro_f1", "cohen_kappa", "f1_W", "f1_REM"}
    assert json.loads((output_dir / "finetune_results.json").read_text())["windows"]["validation"] > 0
    config = json.loads((output_dir / "config.json").read_text())
    assert "sleep-staging" in config["custom_pipelines"] and config["id2label"]["4"] == "REM"

    record = sorted(path for path in Path(real_segments_dir).iterdir() if path.is_dir())[0]
    child = HIDE_OUR_PACKAGE + textwrap.dedent(
        """
        from transformers import AutoFeatureExtractor, AutoModelForSequenceClassification, pipeline
        for folder in sys.argv[1:3]:
            AutoFeatureExtractor.from_pretrained(folder, trust_remote_code=True)
            AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)
        rows = pipeline("sleep-staging", model=sys.argv[1], trust_remote_code=True)(sys.argv[4], progress_bar=False)
        print(json.dumps(rows))
        """
    )
    script = tmp_path / "child.py"
    script.write_text(child)
    completed = subprocess.run(
        [sys.executable, str(script), str(output_dir), str(output_dir / "checkpoints" / "checkpoint-2"),
         str(REPO_ROOT), str(record / record.name)],
        cwd=tmp_path, env=isolated_environment(tmp_path / "hf_home", OMP_NUM_THREADS="1"),
        capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-4000:]
    rows = json.loads(completed.stdout.strip().splitlines()[-1])
    assert [row["onset"] for row in rows] == [0.0, 30.0]  # a 60-s excerpt: two epochs
    assert all(row["stage"] in {"W", "N1", "N2", "N3", "REM"} for row in rows)
