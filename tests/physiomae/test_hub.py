"""Hub export: a saved folder loads through every Auto class in a fresh process that cannot import our
package, with identical outputs; export is atomic; pushing goes through a replaceable HfApi seam."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from modeling_physiomae import (
    PhysioMAEFeatureExtractor,
    PhysioMAEForContrastivePreTraining,
    PhysioMAEForPreTraining,
    PhysioMAEForSequenceClassification,
    PhysioMAEModel,
)
from physiomae.hub import (
    CODE_FILES,
    FEATURE_EXTRACTOR_AUTO_MAP,
    MODEL_AUTO_MAP,
    push_to_hub,
    save_for_hub,
)
from helpers import REPO_ROOT, HIDE_OUR_PACKAGE, FakeHubApi, isolated_environment, night, stager, tiny_config



def toy_recording(seconds: int = 65, sampling_rate: int = 200) -> dict[str, np.ndarray]:
    """A few named channels (one by an alias name) as a user would pass them."""
    generator = np.random.default_rng(0)
    time = np.arange(seconds * sampling_rate) / sampling_rate
    return {
        "C3-M2": np.sin(2 * np.pi * 10 * time) + 0.3 * generator.standard_normal(time.size),
        "C4-A1": np.sin(2 * np.pi * 2 * time) + 0.3 * generator.standard_normal(time.size),
        "E1-M2": 0.5 * generator.standard_normal(time.size),
        "ECG": np.sin(2 * np.pi * 1.1 * time) ** 15 + 0.05 * generator.standard_normal(time.size),
    }


CHILD_SCRIPT = HIDE_OUR_PACKAGE + textwrap.dedent(
    """
    import numpy as np
    import torch
    from transformers import (AutoConfig, AutoFeatureExtractor, AutoModel, AutoModelForPreTraining,
                              AutoModelForSequenceClassification)

    hub, work = Path(sys.argv[1]), Path(sys.argv[2])
    pretrained, classifier_folder = hub / "pretrained", hub / "classifier"
    inputs = np.load(work / "input_values.npy")
    modality_mask = torch.from_numpy(np.load(work / "modality_mask.npy"))
    noise = torch.from_numpy(np.load(work / "noise.npy"))
    input_values = torch.from_numpy(inputs)
    loaded = {}

    config = AutoConfig.from_pretrained(pretrained, trust_remote_code=True)
    loaded["config"] = type(config).__module__ + "." + type(config).__name__
    encoder = AutoModel.from_pretrained(pretrained, trust_remote_code=True).eval()
    pretraining = AutoModelForPreTraining.from_pretrained(pretrained, trust_remote_code=True).eval()
    classifier = AutoModelForSequenceClassification.from_pretrained(classifier_folder, trust_remote_code=True).eval()
    extractor = AutoFeatureExtractor.from_pretrained(pretrained, trust_remote_code=True)
    for name, model in (("encoder", encoder), ("pretraining", pretraining), ("classifier", classifier),
                        ("extractor", extractor)):
        loaded[name] = type(model).__module__ + "." + type(model).__name__
    with torch.no_grad():
        encoded = encoder(input_values, modality_mask=modality_mask)
        masked = pretraining(input_values, modality_mask=modality_mask, noise=noise, dropped_modality=2)
        logits = classifier(input_values, modality_mask=modality_mask).logits
    recording = dict(np.load(work / "recording.npz"))
    features = extractor(recording, sampling_rate=200)
    out = work / "child"
    out.mkdir()
    np.save(out / "last_hidden_state.npy", encoded.last_hidden_state.numpy())
    np.save(out / "pooler_output.npy", encoded.pooler_output.numpy())
    np.save(out / "loss.npy", masked.loss.numpy())
    np.save(out / "reconstruction.npy", torch.cat(masked.predicted_targets, dim=-1).numpy())
    np.save(out / "logits.npy", logits.numpy())
    np.save(out / "features.npy", features["input_values"].numpy())
    np.save(out / "features_modality_mask.npy", features["modality_mask"].numpy())
    loaded["id2label"] = classifier.config.id2label
    loaded["model_type"] = config.model_type

    # folders written by plain save_pretrained / push_to_hub (not save_for_hub), and the pipeline of the pushed one
    from transformers import pipeline

    plain = hub / "plain"
    for name, auto in (("encoder", AutoModel), ("pretraining", AutoModelForPreTraining), ("contrastive", AutoModel),
                       ("classifier", AutoModelForSequenceClassification), ("pushed", AutoModelForSequenceClassification)):
        loaded[f"plain_{name}"] = type(auto.from_pretrained(plain / name, trust_remote_code=True)).__module__
    loaded["plain_config"] = type(AutoConfig.from_pretrained(plain / "config", trust_remote_code=True)).__module__
    loaded["plain_extractor"] = type(AutoFeatureExtractor.from_pretrained(plain / "extractor", trust_remote_code=True)).__module__
    staging = pipeline("sleep-staging", model=str(plain / "pushed"), trust_remote_code=True)
    loaded["plain_pipeline"] = type(staging).__module__
    rows = staging(dict(np.load(work / "night.npz")), sampling_rate=100, progress_bar=False)
    (out / "rows.json").write_text(json.dumps(rows))
    (out / "loaded.json").write_text(json.dumps(loaded))
    """
)


def test_saved_folder_loads_through_every_auto_class_in_a_fresh_process(tmp_path, monkeypatch):
    """save_for_hub exports, and folders of plain save_pretrained / push_to_hub, load in one fresh process."""
    torch.manual_seed(0)
    config = tiny_config()
    pretraining = PhysioMAEForPreTraining(config).eval()
    classifier = PhysioMAEForSequenceClassification(
        tiny_config(num_labels=3, id2label={0: "W", 1: "N2", 2: "REM"}, label2id={"W": 0, "N2": 1, "REM": 2})
    ).eval()
    extractor = PhysioMAEFeatureExtractor.from_config(config)
    export = tmp_path / "export"
    save_for_hub(pretraining, export / "pretrained", feature_extractor=extractor, readme_text="# PhysioMAE test\n")
    save_for_hub(classifier, export / "classifier")

    # folder contents: safetensors only, auto_map everywhere, the code files
    for folder in (export / "pretrained", export / "classifier"):
        names = {path.name for path in folder.iterdir()}
        assert {"config.json", "model.safetensors", "preprocessor_config.json", *CODE_FILES} <= names
        assert not any(name.endswith((".bin", ".pt", ".pth")) for name in names)
        assert not any(name.startswith(".") for name in names)
        assert json.loads((folder / "config.json").read_text())["auto_map"] == MODEL_AUTO_MAP
        preprocessor = json.loads((folder / "preprocessor_config.json").read_text())
        assert preprocessor["auto_map"] == FEATURE_EXTRACTOR_AUTO_MAP
    assert (export / "pretrained" / "README.md").read_text() == "# PhysioMAE test\n"
    assert "auto_map" not in pretraining.config.to_dict()  # the live model's config is left as it was

    # inputs and the outputs expected from the parent's (package) models
    work = tmp_path / "work"
    work.mkdir()
    generator = torch.Generator().manual_seed(1)
    input_values = torch.randn(3, config.num_channels, config.window_length, generator=generator)
    modality_mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 0, 1, 1, 0, 1], [0, 0, 1, 0, 0, 0]], dtype=torch.bool)
    noise = torch.rand(3, config.num_modalities * config.num_patches, generator=generator)
    np.save(work / "input_values.npy", input_values.numpy())
    np.save(work / "modality_mask.npy", modality_mask.numpy())
    np.save(work / "noise.npy", noise.numpy())
    recording = toy_recording()
    np.savez(work / "recording.npz", **recording)
    with torch.no_grad():
        encoded = pretraining.physiomae(input_values, modality_mask=modality_mask)
        masked = pretraining(input_values, modality_mask=modality_mask, noise=noise, dropped_modality=2)
        logits = classifier(input_values, modality_mask=modality_mask).logits
    features = extractor(recording, sampling_rate=200)

    stager_model, stager_extractor = write_plain_folders(export / "plain", tmp_path / "hub", monkeypatch)
    np.savez(work / "night.npz", **night())

    # the child sees only a copy of the folders, a fresh HF_HOME, and no path to our package
    hub_copy = tmp_path / "hub_copy"
    shutil.copytree(export, hub_copy)
    script_dir = tmp_path / "script"
    script_dir.mkdir()
    (script_dir / "child.py").write_text(CHILD_SCRIPT)
    environment = isolated_environment(tmp_path / "fresh_hf_home", OMP_NUM_THREADS="1")
    completed = subprocess.run(
        [sys.executable, str(script_dir / "child.py"), str(hub_copy), str(work), str(REPO_ROOT)],
        cwd=work,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]

    child = work / "child"
    loaded = json.loads((child / "loaded.json").read_text())
    for name in ("config", "encoder", "pretraining", "classifier", "extractor"):
        assert loaded[name].startswith("transformers_modules."), loaded  # the Hub copy's code was used
    assert loaded["encoder"].endswith("PhysioMAEModel")
    assert loaded["pretraining"].endswith("PhysioMAEForPreTraining")
    assert loaded["classifier"].endswith("PhysioMAEForSequenceClassification")
    assert loaded["extractor"].endswith("PhysioMAEFeatureExtractor")
    assert loaded["id2label"] == {"0": "W", "1": "N2", "2": "REM"} and loaded["model_type"] == "physiomae"

    def compare(name, expected):
        np.testing.assert_allclose(np.load(child / f"{name}.npy"), expected, rtol=1e-5, atol=1e-6, err_msg=name)

    compare("last_hidden_state", encoded.last_hidden_state.numpy())
    compare("pooler_output", encoded.pooler_output.numpy())
    compare("loss", masked.loss.numpy())
    compare("reconstruction", torch.cat(masked.predicted_targets, dim=-1).numpy())
    compare("logits", logits.numpy())
    compare("features", features["input_values"].numpy())
    np.testing.assert_array_equal(np.load(child / "features_modality_mask.npy"), features["modality_mask"].numpy())

    # plain saves and the pushed classifier: the Hub copy's classes, and the pipeline's rows equal ours
    assert all(module.startswith("transformers_modules.") for key, module in loaded.items() if key.startswith("plain_")), loaded
    from transformers import pipeline

    expected = pipeline("sleep-staging", model=stager_model, feature_extractor=stager_extractor)(
        night(), sampling_rate=100, progress_bar=False)
    child_rows = json.loads((child / "rows.json").read_text())
    assert [row["stage"] for row in child_rows] == [row["stage"] for row in expected]
    for child_row, row in zip(child_rows, expected):
        if row["probabilities"] is not None:
            np.testing.assert_allclose(list(child_row["probabilities"].values()), list(row["probabilities"].values()),
                                       rtol=1e-5, atol=1e-6)


def write_plain_folders(folders: Path, hub_root: Path, monkeypatch):
    """Folders written by plain save_pretrained of every class, and a sleep-staging classifier pushed with
    push_to_hub through a stand-in Hub (the network edge); checks their contents. Returns (classifier, extractor)."""
    import transformers.utils.hub as transformers_hub
    from huggingface_hub.errors import EntryNotFoundError

    config = tiny_config()
    PhysioMAEModel(config).save_pretrained(folders / "encoder")
    PhysioMAEForPreTraining(config).save_pretrained(folders / "pretraining")
    PhysioMAEForContrastivePreTraining(tiny_config(fusion="late", contrastive_loss="pairwise")).save_pretrained(
        folders / "contrastive")
    classifier = stager()
    classifier.save_pretrained(folders / "classifier")
    config.save_pretrained(folders / "config")
    extractor = PhysioMAEFeatureExtractor.from_config(classifier.config)
    extractor.save_pretrained(folders / "extractor")
    for name in ("encoder", "pretraining", "contrastive", "classifier"):
        saved = json.loads((folders / name / "config.json").read_text())
        assert saved["auto_map"] == MODEL_AUTO_MAP, name
        assert {*CODE_FILES} <= {path.name for path in (folders / name).iterdir()}, name
        assert ("custom_pipelines" in saved) == (name == "classifier"), name  # only a sleep-staging classifier
    assert json.loads((folders / "config" / "config.json").read_text())["auto_map"] == {"AutoConfig": MODEL_AUTO_MAP["AutoConfig"]}
    assert json.loads((folders / "extractor" / "preprocessor_config.json").read_text())["auto_map"] == FEATURE_EXTRACTOR_AUTO_MAP
    assert "auto_map" not in classifier.config.to_dict() and "custom_pipelines" not in classifier.config.to_dict()

    # push_to_hub, as users and trainer.push_to_hub() call it
    monkeypatch.setattr(transformers_hub, "hf_api", lambda: FakeHubApi(hub_root))
    monkeypatch.setattr(transformers_hub.ModelCard, "load", staticmethod(
        lambda *args, **kwargs: (_ for _ in ()).throw(EntryNotFoundError("no card"))))
    classifier.push_to_hub("org/stager")
    extractor.push_to_hub("org/stager")
    shutil.copytree(hub_root / "org" / "stager", folders / "pushed")
    assert {*CODE_FILES, "config.json", "model.safetensors", "preprocessor_config.json"} <= {
        path.name for path in (folders / "pushed").iterdir()}
    return classifier, extractor


class FailingExtractor(PhysioMAEFeatureExtractor):
    """A feature extractor whose save fails midway, to test that export is atomic."""

    def save_pretrained(self, *args, **kwargs):
        raise OSError("disk full (simulated)")


def test_export_is_atomic_and_replaces_previous_export(tmp_path):
    model = PhysioMAEForPreTraining(tiny_config())
    folder = tmp_path / "export"
    save_for_hub(model, folder, readme_text="first")
    before = {path.name: path.read_bytes() for path in folder.iterdir()}

    with pytest.raises(OSError, match="disk full"):
        save_for_hub(model, folder, feature_extractor=FailingExtractor(), readme_text="second")
    assert {path.name: path.read_bytes() for path in folder.iterdir()} == before  # untouched
    assert [path.name for path in tmp_path.iterdir()] == ["export"]  # no partial folder left behind

    save_for_hub(model, folder, readme_text="second")
    assert (folder / "README.md").read_text() == "second"
    assert [path.name for path in tmp_path.iterdir()] == ["export"]


class RecordingApi:
    """Stands in for huggingface_hub.HfApi and records what would be sent."""

    def __init__(self):
        self.calls = []

    def create_repo(self, **kwargs):
        self.calls.append(("create_repo", kwargs))
        return f"https://huggingface.co/{kwargs['repo_id']}"

    def upload_folder(self, **kwargs):
        files = sorted(path.name for path in Path(kwargs["folder_path"]).iterdir())
        self.calls.append(("upload_folder", {**kwargs, "files": files}))
        return f"https://huggingface.co/{kwargs['repo_id']}/commit/abc"


def test_push_to_hub_uses_the_api_seam(tmp_path):
    folder = save_for_hub(PhysioMAEForPreTraining(tiny_config()), tmp_path / "export", readme_text="card")
    api = RecordingApi()
    result = push_to_hub(folder, "someone/physiomae-tiny", api=api, token="hf_test", private=True)
    assert result == "https://huggingface.co/someone/physiomae-tiny/commit/abc"
    (first, create), (second, upload) = api.calls
    assert first == "create_repo" and second == "upload_folder"
    assert create["repo_id"] == "someone/physiomae-tiny" and create["exist_ok"] is True and create["private"] is True
    assert create["token"] == "hf_test"
    assert Path(upload["folder_path"]) == folder and upload["repo_id"] == "someone/physiomae-tiny"
    assert set(upload["files"]) == {
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
        "README.md",
        *CODE_FILES,
    }

    with pytest.raises(FileNotFoundError, match="not a complete PhysioMAE export"):
        push_to_hub(tmp_path / "nothing", "someone/x", api=RecordingApi())


def test_push_to_hub_offline_fails_clearly_and_keeps_the_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = save_for_hub(PhysioMAEForPreTraining(tiny_config()), tmp_path / "export")
    before = sorted(path.name for path in folder.iterdir())
    with pytest.raises(RuntimeError, match=r"someone/physiomae-tiny.*HF_HUB_OFFLINE.*kept"):
        push_to_hub(folder, "someone/physiomae-tiny")  # the real HfApi
    assert sorted(path.name for path in folder.iterdir()) == before
