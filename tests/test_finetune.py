"""finetune.py: Trainer fine-tuning from a saved encoder against random initialisation, on real excerpts."""

from __future__ import annotations

import json

import torch

from helpers import tiny_config
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
