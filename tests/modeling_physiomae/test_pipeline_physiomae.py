"""modeling_physiomae/pipeline_physiomae.py and physiomae/stage.py: the sleep-staging pipeline stages a night like
the classifier does, and physiomae-stage writes its hypnogram. (That plain save_pretrained / push_to_hub folders
and the pipeline load with trust_remote_code in a fresh process: tests/physiomae/test_hub.py.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import STAGES, night, stager
from modeling_physiomae import PhysioMAEConfig, PhysioMAEFeatureExtractor



def staging_rows_in_process(classifier, extractor):
    from transformers import pipeline

    return pipeline("sleep-staging", model=classifier, feature_extractor=extractor)(night(), sampling_rate=100,
                                                                                    progress_bar=False)


def test_pipeline_rows_are_the_classifiers_softmax_per_epoch():
    from transformers import pipeline

    classifier = stager(1)
    extractor = PhysioMAEFeatureExtractor.from_config(classifier.config)
    rows = staging_rows_in_process(classifier, extractor)
    staging = pipeline("sleep-staging", model=classifier, feature_extractor=extractor)
    calls = []
    classifier.register_forward_hook(lambda module, args, kwargs_or_output: calls.append(1))
    batched = staging(night(), sampling_rate=100, windows_per_batch=3, progress_bar=False)  # 4 staged windows
    # other batches, same rows (a batch whose windows have every modality runs attention without a mask: the
    # probabilities agree to float rounding)
    assert [(row["onset"], row["stage"]) for row in batched] == [(row["onset"], row["stage"]) for row in rows]
    for row, expected in zip(batched, rows):
        if expected["probabilities"] is not None:
            np.testing.assert_allclose(list(row["probabilities"].values()), list(expected["probabilities"].values()), rtol=1e-5)
    assert len(calls) == 2  # in batches of 3: 3 + 1 windows
    assert len(staging([night(), night()], sampling_rate=100, progress_bar=False)) == 2  # a list of nights
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
    from dataset_scripts.labels import STAGE_NAMES
    from modeling_physiomae.pipeline_physiomae import SLEEP_STAGE_LABELS, is_sleep_staging_config

    assert SLEEP_STAGE_LABELS == tuple(STAGE_NAMES)  # the Hub copy's own list (it imports nothing of ours)
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
    # the same excerpt as its WFDB record: the EDF's 16-bit quantisation aside, the same probabilities
    from_wfdb = stage.stage_night(str(record_dir / record_dir.name), str(model_dir), progress_bar=False)
    for edf_row, wfdb_row in zip(expected, from_wfdb):
        np.testing.assert_allclose(list(edf_row["probabilities"].values()), list(wfdb_row["probabilities"].values()),
                                   atol=2e-3)
    for row in rows:
        assert abs(sum(float(row[f"p_{label}"]) for label in STAGES.values()) - 1.0) < 1e-3
    assert (tmp_path / "out" / "night.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert abs(sum(result["minutes"].values()) - 1.0) < 1e-9  # two 30-s epochs
    with pytest.raises(SystemExit):
        stage.main([str(tmp_path / "missing.edf"), "--model", str(model_dir), "--out", str(tmp_path / "x.csv")])


def test_real_excerpts_written_as_edf_are_staged_right_by_a_stager_that_knows_them(real_segments_dir, tmp_path):
    """End to end on real signals: a stager fitted to two real excerpts per stage (their WFDB windows) stages the
    same excerpts written as EDF+ through pipeline("sleep-staging") with their scored stages. The EDF path, the
    extractor's file reading and the pipeline's epoch rows all sit between the fit and the answer."""
    import wfdb
    from transformers import pipeline

    from dataset_scripts import labels as label_tools
    from helpers import tiny_config, write_edf
    from modeling_physiomae import PhysioMAEForSequenceClassification

    chosen: dict[int, list] = {}
    for folder in sorted(path for path in real_segments_dir.iterdir() if path.name.startswith("seg-")):
        notes = label_tools.read_wfdb_annotations(folder / f"{folder.name}.arousal")
        stage = label_tools.STAGE_NOTE_TO_CODE[notes.aux_note[0]]
        if len(set(notes.aux_note)) == 1 and len(chosen.setdefault(stage, [])) < 2:
            chosen[stage].append(folder)
        if sum(len(folders) for folders in chosen.values()) == 10:
            break
    torch.manual_seed(0)
    config = tiny_config(num_labels=5, id2label=STAGES, label2id={name: index for index, name in STAGES.items()})
    model = PhysioMAEForSequenceClassification(config)
    extractor = PhysioMAEFeatureExtractor.from_config(config)
    values, masks, labels = [], [], []
    for stage, folders in chosen.items():
        for folder in folders:
            features = extractor(str(folder / folder.name))  # the WFDB record
            values.append(features["input_values"])
            masks.append(features["modality_mask"])
            labels += [stage] * len(features["input_values"])
    values, masks, labels = torch.cat(values), torch.cat(masks), torch.tensor(labels)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    model.train()
    for _ in range(80):  # fits them with a wide margin (measured: every right stage's probability > 0.996 above the next)
        loss = model(input_values=values, modality_mask=masks, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()

    staging = pipeline("sleep-staging", model=model, feature_extractor=extractor)
    for stage, folders in chosen.items():
        for folder in folders:
            record = wfdb.rdrecord(str(folder / folder.name))
            edf = write_edf(tmp_path / f"{folder.name}.edf", [
                (name, record.p_signal[:, index], record.fs, unit)
                for index, (name, unit) in enumerate(zip(record.sig_name, record.units))
                if np.ptp(record.p_signal[:, index]) > 0])
            rows = staging(str(edf), progress_bar=False)
            assert [row["onset"] for row in rows] == [0.0, 30.0]
            assert [row["stage"] for row in rows] == [STAGES[stage]] * 2, (folder.name, rows)
