"""The shipped models (physiomae.pretrained) and the pieces of the release recipe (configs/release.yaml):
label shares, probe-train / probe-test from two folders of real excerpts, the combined data listing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from modeling_physiomae import PhysioMAEConfig
from modeling_physiomae.configuration_physiomae import HUB_CODE_FILES
from physiomae.evaluation.data import load_real_segments
from physiomae.evaluation.label_efficiency import label_efficiency, label_subset
from physiomae.model_card import read_card_metadata
from physiomae.pretrained import ENCODER, SLEEP_STAGER
from physiomae.release import parse_reference_rows, replace_folder
from physiomae.training.arguments import build_model_config, parse_arguments
from helpers import REPO_ROOT

ROOT = REPO_ROOT
RELEASE_CONFIG = ROOT / "configs" / "release_train.yaml"
RUN_METADATA = {"transformers_version", "architectures", "auto_map", "_name_or_path", "dtype", "torch_dtype",
                "custom_pipelines", "id2label", "label2id", "problem_type", "num_labels", "return_dict", "output_hidden_states"}


def model_fields(config: PhysioMAEConfig) -> dict:
    return {key: value for key, value in config.to_dict().items() if key not in RUN_METADATA}


# ----------------------------------------------------------------------------------------------- shipped folders
@pytest.mark.parametrize("folder", [ENCODER, SLEEP_STAGER])
def test_shipped_folders_are_complete_hub_folders_with_cards(folder):
    folder = Path(folder)
    for name in ("config.json", "model.safetensors", "preprocessor_config.json", "README.md", *HUB_CODE_FILES):
        assert (folder / name).is_file(), f"{folder} lacks {name}"
    # the folder's code is the package's Hub copy (the shipped model runs the code the tests check)
    for name in HUB_CODE_FILES:
        assert (folder / name).read_bytes() == (ROOT / "modeling_physiomae" / name).read_bytes(), (
            f"{folder}/{name} differs from modeling_physiomae/{name}: copy it with copy_hub_code")
    config = json.loads((folder / "config.json").read_text())
    assert config["auto_map"]["AutoModel"] == "modeling_physiomae.PhysioMAEModel"
    card = (folder / "README.md").read_text()
    metadata = read_card_metadata(card)
    assert metadata["model-index"][0]["results"][0]["metrics"], "the card carries no measured number"
    for needed in ("Not a medical device", "Open Data Commons Attribution", "subject identity", "Intended use"):
        assert needed in card, f"{folder}/README.md does not say {needed!r}"


@pytest.mark.parametrize("folder", [ENCODER, SLEEP_STAGER])
def test_shipped_configs_are_the_release_config(folder, tmp_path):
    model_args, _, training_args = parse_arguments([str(RELEASE_CONFIG), "--output_dir", str(tmp_path),
                                                    "--dataset_dir", str(tmp_path)])
    expected = model_fields(build_model_config(model_args, training_args))
    shipped = model_fields(PhysioMAEConfig.from_pretrained(folder))
    assert shipped == expected


def test_stager_config_names_the_pipeline_and_stages():
    config = json.loads((Path(SLEEP_STAGER) / "config.json").read_text())
    assert "sleep-staging" in config["custom_pipelines"]
    assert [config["id2label"][str(index)] for index in range(5)] == ["W", "N1", "N2", "N3", "REM"]


def test_the_card_numbers_are_the_release_report():
    report = json.loads((ROOT / "docs" / "release" / "release.json").read_text())
    card = read_card_metadata((Path(SLEEP_STAGER) / "README.md").read_text())
    metrics = {item["type"]: item["value"] for item in card["model-index"][0]["results"][0]["metrics"]}
    assert metrics["balanced_accuracy"] == pytest.approx(report["stager_pipeline"]["metrics"]["balanced_accuracy"], abs=1e-6)
    encoder_card = read_card_metadata((Path(ENCODER) / "README.md").read_text())
    probe = next(row for row in report["probe_ranking"] if row["name"] == report["facts"]["strategy"])
    encoder_metrics = {item["type"]: item["value"] for item in encoder_card["model-index"][0]["results"][0]["metrics"]}
    assert encoder_metrics["balanced_accuracy"] == pytest.approx(probe["tasks"]["sleep_staging"]["metrics"]["balanced_accuracy"], abs=1e-6)


def test_shipped_stager_reproduces_the_rows_of_its_card(real_segments_dir, tmp_path):
    """The pipeline's rows on the card's two reference excerpts (real WFDB records) are the recorded ones."""
    from transformers import pipeline

    reference = parse_reference_rows((Path(SLEEP_STAGER) / "README.md").read_text())
    assert len(reference) == 2
    staging = pipeline("sleep-staging", model=SLEEP_STAGER, trust_remote_code=True, device="cpu")
    for name, expected in reference.items():
        shutil.copytree(real_segments_dir / name, tmp_path / name)
        rows = staging(str(tmp_path / name / name), progress_bar=False)
        assert [row["onset"] for row in rows] == [row["onset"] for row in expected]
        assert [row["stage"] for row in rows] == [row["stage"] for row in expected]
        for row, recorded in zip(rows, expected):
            for stage, probability in recorded["probabilities"].items():
                assert row["probabilities"][stage] == pytest.approx(probability, abs=2e-4), (name, row["onset"], stage)


def test_shipped_encoder_embeds_a_real_excerpt(real_segments_dir):
    """AutoModel from the shipped folder: one embedding per 30-s window of a real excerpt, finite."""
    import torch
    from transformers import AutoFeatureExtractor, AutoModel

    model = AutoModel.from_pretrained(ENCODER, trust_remote_code=True).eval()
    extractor = AutoFeatureExtractor.from_pretrained(ENCODER, trust_remote_code=True)
    name = sorted(path.name for path in real_segments_dir.iterdir() if path.is_dir())[0]
    inputs = extractor(str(real_segments_dir / name / name), return_tensors="pt")
    with torch.no_grad():
        outputs = model(input_values=inputs["input_values"], modality_mask=inputs["modality_mask"])
    assert outputs.pooler_output.shape[0] == 2 and torch.isfinite(outputs.pooler_output).all()


# ----------------------------------------------------------------------------------------------- recipe pieces
def test_label_subset_is_stratified_seeded_and_nested_in_the_records():
    records = np.repeat([f"r{index:03d}" for index in range(100)], 2)
    labels = np.repeat(np.arange(100) % 5, 2)
    labels[:2] = -1  # a record without a scored stage never enters a share
    mask = label_subset(records, labels, 0.1, seed=0)
    chosen = np.unique(records[mask])
    assert len(chosen) == 5 * 2  # ceil(0.1 x 20 or 19) records per stage
    assert sorted(np.bincount(labels[mask] // 1, minlength=5) // 2) == [2, 2, 2, 2, 2]
    assert (mask == label_subset(records, labels, 0.1, seed=0)).all()
    assert not (mask == label_subset(records, labels, 0.1, seed=1)).all()
    assert (label_subset(records, labels, 1.0, seed=3) == (labels >= 0)).all()
    assert label_subset(records, labels, 0.001, seed=0).sum() == 5 * 2  # at least one record per stage
    with pytest.raises(ValueError, match="not in"):
        label_subset(records, labels, 0.0, seed=0)


def test_label_efficiency_gives_every_variant_the_same_rows():
    records = np.repeat([f"r{index}" for index in range(40)], 3)
    labels = np.repeat(np.arange(40) % 4, 3)
    seen: dict[tuple, list] = {}

    def score(name, mask, seed):
        seen.setdefault((int(mask.sum()), seed), []).append(tuple(np.flatnonzero(mask)))
        return float(mask.mean()) + (0.1 if name == "b" else 0.0)

    result = label_efficiency(records, labels, ["a", "b"], score, fractions=[0.25, 1.0], seeds=[0, 1])
    assert all(len(set(masks)) == 1 for masks in seen.values())  # one draw per (share, seed), both variants
    assert result["variants"]["b"]["1"]["mean"] == pytest.approx(1.1)
    assert result["records"]["0.25"] == 12 and result["windows"]["1"] == 120


def test_real_segments_from_two_folders_and_overlap_refused(real_segments_dir, tmp_path):
    names = sorted(path.name for path in real_segments_dir.iterdir() if path.is_dir())
    train_dir, test_dir = tmp_path / "train", tmp_path / "test"
    for folder, chosen in ((train_dir, names[:4]), (test_dir, names[4:7])):
        folder.mkdir()
        for name in chosen:
            (folder / name).symlink_to(real_segments_dir / name, target_is_directory=True)
    data = load_real_segments(test_dir, train_dir=train_dir)
    assert sorted(set(data.train_split["record"])) == names[:4]
    assert sorted(set(data.test_split["record"])) == names[4:7]
    assert data.report["probe_test"]["segments_requested"] == 3
    (train_dir / names[5]).symlink_to(real_segments_dir / names[5], target_is_directory=True)
    with pytest.raises(ValueError, match="in both"):
        load_real_segments(test_dir, train_dir=train_dir)


def test_several_data_folders_are_listed_as_one(real_segments_dir, tmp_path):
    import run_experiment
    from dataset_scripts.physionet2018 import find_records

    names = sorted(path.name for path in real_segments_dir.iterdir() if path.is_dir())
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    for name in names[:2]:
        (first / name).symlink_to(real_segments_dir / name, target_is_directory=True)
    (second / "RECORDS").write_text(f"{names[2]}/\n")
    (second / names[2]).symlink_to(real_segments_dir / names[2], target_is_directory=True)
    raw = run_experiment.list_records([str(first), str(second)], tmp_path / "raw")
    listing = find_records(raw)
    assert [record.name for record in listing.records] == names[:3] and not listing.problems
    assert all(record.labelled for record in listing.records)


def test_replace_folder_keeps_the_old_one_until_the_new_one_is_in_place(tmp_path):
    target, new = tmp_path / "model", tmp_path / ".model.new"
    target.mkdir()
    (target / "old.txt").write_text("old")
    new.mkdir()
    (new / "new.txt").write_text("new")
    replace_folder(new, target)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model"]
    assert (target / "new.txt").is_file() and not (target / "old.txt").exists()


def test_shipped_folders_by_name():
    from physiomae.pretrained import folder

    assert folder("physiomae-tiny") == ENCODER and folder("physiomae-tiny-sleep-staging") == SLEEP_STAGER
    with pytest.raises(FileNotFoundError, match="physiomae-tiny-sleep-staging"):
        folder("physiomae-huge")


def test_cast_weights_stores_bfloat16_that_loads_as_such(tmp_path):
    import torch
    from safetensors.torch import load_file

    from modeling_physiomae import PhysioMAEForSequenceClassification
    from physiomae.release import cast_weights

    copy = tmp_path / "stager"
    shutil.copytree(SLEEP_STAGER, copy)
    cast_weights(copy, "bfloat16")
    original, cast = load_file(Path(SLEEP_STAGER) / "model.safetensors"), load_file(copy / "model.safetensors")
    assert set(original) == set(cast)
    for key, value in original.items():
        assert cast[key].dtype == (torch.bfloat16 if value.is_floating_point() else value.dtype)
        torch.testing.assert_close(cast[key].float(), value.to(torch.bfloat16).float(), rtol=0, atol=0)
    assert next(PhysioMAEForSequenceClassification.from_pretrained(copy).parameters()).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="floating-point"):
        cast_weights(copy, "int8")
