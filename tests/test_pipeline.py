"""modeling_physiomae/pipeline_physiomae.py and the Hub folders our classes write: every plain save_pretrained /
push_to_hub folder loads with trust_remote_code in a fresh process, and the sleep-staging pipeline stages a night
like the classifier does."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import HIDE_OUR_PACKAGE, isolated_environment, tiny_config
from modeling_physiomae import (
    PhysioMAEConfig, PhysioMAEFeatureExtractor, PhysioMAEForContrastivePreTraining, PhysioMAEForPreTraining,
    PhysioMAEForSequenceClassification, PhysioMAEModel,
)
from modeling_physiomae.configuration_physiomae import FEATURE_EXTRACTOR_AUTO_MAP, HUB_CODE_FILES, MODEL_AUTO_MAP

REPO_ROOT = Path(__file__).resolve().parents[1]
STAGES = {0: "W", 1: "N1", 2: "N2", 3: "N3", 4: "REM"}


def stager(seed: int = 0) -> PhysioMAEForSequenceClassification:
    torch.manual_seed(seed)
    config = tiny_config(modalities={"eeg": ["C4-M1"], "ecg": ["ECG"]}, num_labels=5, id2label=STAGES,
                         label2id={name: index for index, name in STAGES.items()})
    return PhysioMAEForSequenceClassification(config).eval()


def night(seconds: int = 150, sampling_rate: int = 100) -> dict[str, np.ndarray]:
    """C4-M1 and ECG; the last 30 s of both are missing (NaN): that epoch has no modality."""
    generator = np.random.default_rng(0)
    time = np.arange(seconds * sampling_rate) / sampling_rate
    channels = {"C4-M1": np.sin(2 * np.pi * 2 * time) + 0.3 * generator.standard_normal(time.size),
                "ECG": np.sin(2 * np.pi * 1.1 * time) ** 15 + 0.05 * generator.standard_normal(time.size)}
    for values in channels.values():
        values[-30 * sampling_rate:] = np.nan
    return channels


class FakeHubApi:
    """The network edge of `push_to_hub`: commits land in a local folder standing for the Hub repo."""

    def __init__(self, root: Path):
        self.root = root

    def create_repo(self, repo_id, **kwargs):
        (self.root / repo_id).mkdir(parents=True, exist_ok=True)
        return type("RepoUrl", (), {"repo_id": repo_id})()

    def create_commit(self, repo_id, operations, **kwargs):
        for operation in operations:
            target = self.root / repo_id / operation.path_in_repo
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(Path(operation.path_or_fileobj).read_bytes())
        return f"commit to {repo_id}"


CHILD = HIDE_OUR_PACKAGE + textwrap.dedent(
    """
    import numpy as np
    import torch
    from transformers import (AutoConfig, AutoFeatureExtractor, AutoModel, AutoModelForPreTraining,
                              AutoModelForSequenceClassification, pipeline)

    folders, work = Path(sys.argv[1]), Path(sys.argv[2])
    loaded = {}
    for name, auto in (("encoder", AutoModel), ("pretraining", AutoModelForPreTraining), ("contrastive", AutoModel),
                       ("classifier", AutoModelForSequenceClassification), ("pushed", AutoModelForSequenceClassification)):
        loaded[name] = type(auto.from_pretrained(folders / name, trust_remote_code=True)).__module__
    loaded["config"] = type(AutoConfig.from_pretrained(folders / "config", trust_remote_code=True)).__module__
    loaded["extractor"] = type(AutoFeatureExtractor.from_pretrained(folders / "extractor", trust_remote_code=True)).__module__
    staging = pipeline("sleep-staging", model=str(folders / "pushed"), trust_remote_code=True)
    loaded["pipeline"] = type(staging).__module__
    rows = staging(dict(np.load(work / "night.npz")), sampling_rate=100, progress_bar=False)
    (work / "rows.json").write_text(json.dumps(rows))
    (work / "loaded.json").write_text(json.dumps(loaded))
    """
)


def test_every_save_pretrained_and_push_to_hub_writes_a_hub_folder(tmp_path, monkeypatch):
    import transformers.utils.hub as transformers_hub
    from huggingface_hub.errors import EntryNotFoundError

    folders = tmp_path / "folders"
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
        assert {*HUB_CODE_FILES} <= {path.name for path in (folders / name).iterdir()}, name
        assert ("custom_pipelines" in saved) == (name == "classifier"), name  # only a sleep-staging classifier
    assert json.loads((folders / "config" / "config.json").read_text())["auto_map"] == {"AutoConfig": MODEL_AUTO_MAP["AutoConfig"]}
    assert json.loads((folders / "extractor" / "preprocessor_config.json").read_text())["auto_map"] == FEATURE_EXTRACTOR_AUTO_MAP
    assert "auto_map" not in classifier.config.to_dict() and "custom_pipelines" not in classifier.config.to_dict()

    # push_to_hub, as users and trainer.push_to_hub() call it; the Hub is the only thing replaced
    monkeypatch.setattr(transformers_hub, "hf_api", lambda: FakeHubApi(tmp_path / "hub"))
    monkeypatch.setattr(transformers_hub.ModelCard, "load", staticmethod(
        lambda *args, **kwargs: (_ for _ in ()).throw(EntryNotFoundError("no card"))))
    classifier.push_to_hub("org/stager")
    extractor.push_to_hub("org/stager")
    (folders / "pushed").symlink_to(tmp_path / "hub" / "org" / "stager", target_is_directory=True)
    assert {*HUB_CODE_FILES, "config.json", "model.safetensors", "preprocessor_config.json"} <= {
        path.name for path in (folders / "pushed").iterdir()}

    work = tmp_path / "work"
    work.mkdir()
    np.savez(work / "night.npz", **night())
    (work / "child.py").write_text(CHILD)
    completed = subprocess.run([sys.executable, str(work / "child.py"), str(folders), str(work), str(REPO_ROOT)],
                               cwd=work, env=isolated_environment(tmp_path / "hf_home", OMP_NUM_THREADS="1"),
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-4000:]
    loaded = json.loads((work / "loaded.json").read_text())
    assert all(module.startswith("transformers_modules.") for module in loaded.values()), loaded
    expected = staging_rows_in_process(classifier, extractor)
    child_rows = json.loads((work / "rows.json").read_text())
    assert [row["stage"] for row in child_rows] == [row["stage"] for row in expected]
    for child_row, row in zip(child_rows, expected):
        if row["probabilities"] is not None:
            np.testing.assert_allclose(list(child_row["probabilities"].values()), list(row["probabilities"].values()),
                                       rtol=1e-5, atol=1e-6)


def staging_rows_in_process(classifier, extractor):
    from transformers import pipeline

    return pipeline("sleep-staging", model=classifier, feature_extractor=extractor)(night(), sampling_rate=100,
                                                                                    progress_bar=False)


def test_pipeline_rows_are_the_classifiers_softmax_per_epoch():
    classifier = stager(1)
    extractor = PhysioMAEFeatureExtractor.from_config(classifier.config)
    rows = staging_rows_in_process(classifier, extractor)
    features = extractor(night(), sampling_rate=100)
    assert [row["onset"] for row in rows] == [0.0, 30.0, 60.0, 90.0, 120.0]
    seen = features["modality_mask"].any(dim=1)
    assert seen.tolist() == [True, True, True, True, False]
    with torch.no_grad():
        probabilities = torch.softmax(classifier(input_values=features["input_values"][seen],
                                                 modality_mask=features["modality_mask"][seen]).logits, dim=-1)
    for row, expected in zip(rows[:4], probabilities):
        assert row["stage"] == STAGES[int(expected.argmax())]
        np.testing.assert_allclose([row["probabilities"][STAGES[index]] for index in range(5)], expected.numpy(), rtol=1e-5)
        assert abs(sum(row["probabilities"].values()) - 1.0) < 1e-5
    assert rows[4] == {"onset": 120.0, "stage": None, "probabilities": None}  # no modality present: not staged


def test_only_sleep_staging_classifiers_name_the_pipeline():
    from modeling_physiomae.pipeline_physiomae import is_sleep_staging_config

    assert is_sleep_staging_config(stager().config)
    assert not is_sleep_staging_config(PhysioMAEConfig(num_labels=2))
    assert not is_sleep_staging_config(PhysioMAEConfig(num_labels=5, id2label={0: "W", 1: "N2", 2: "N1", 3: "N3", 4: "REM"}))
    with pytest.raises(TypeError, match="unexpected arguments"):
        from transformers import pipeline

        pipeline("sleep-staging", model=stager(), feature_extractor=PhysioMAEFeatureExtractor())(night(), sampling_rate=100,
                                                                                                  colour="red")


def test_physiomae_stage_writes_the_hypnogram_of_an_edf_night(real_segments_dir, tmp_path):
    """physiomae-stage on a real excerpt written as EDF+: one CSV row per 30-s epoch (stage, probabilities) and a
    PNG, with the pipeline's stages."""
    import csv

    import wfdb

    from helpers import write_edf
    from physiomae import stage

    record_dir = sorted(path for path in real_segments_dir.iterdir() if path.name.startswith("seg-"))[0]
    record = wfdb.rdrecord(str(record_dir / record_dir.name))
    edf = write_edf(tmp_path / "night.edf", [(name, record.p_signal[:, index], record.fs, unit)
                                               for index, (name, unit) in enumerate(zip(record.sig_name, record.units))
                                               if np.ptp(record.p_signal[:, index]) > 0])
    model_dir = tmp_path / "stager"
    classifier = stager(2)
    classifier.save_pretrained(model_dir)
    PhysioMAEFeatureExtractor.from_config(classifier.config).save_pretrained(model_dir)

    result = stage.main([str(edf), "--model", str(model_dir), "--out", str(tmp_path / "out" / "night.csv"), "--no_progress"])
    with open(tmp_path / "out" / "night.csv") as handle:
        rows = list(csv.DictReader(handle))
    expected = stage.stage_night(str(edf), str(model_dir), progress_bar=False)
    assert [row["onset_seconds"] for row in rows] == ["0", "30"] and result["epochs"] == 2
    assert [row["stage"] for row in rows] == [row["stage"] for row in expected]
    for row in rows:
        assert abs(sum(float(row[f"p_{label}"]) for label in STAGES.values()) - 1.0) < 1e-3
    assert (tmp_path / "out" / "night.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert abs(sum(result["minutes"].values()) - 1.0) < 1e-9  # two 30-s epochs
    with pytest.raises(SystemExit):
        stage.main([str(tmp_path / "missing.edf"), "--model", str(model_dir), "--out", str(tmp_path / "x.csv")])
