"""The `sleep-staging` pipeline: a whole night in, one row per 30-s epoch out.

    from transformers import pipeline

    staging = pipeline("sleep-staging", model="org/physiomae-sleep-staging", trust_remote_code=True)
    rows = staging("night.edf")            # or a WFDB record path, or {"channels": {...}, "sampling_rate": ...}
    rows[0]  # {"onset": 0.0, "stage": "W", "probabilities": {"W": 0.91, "N1": 0.05, ...}}

Every sleep-staging classifier saved by PhysioMAE (`PhysioMAEForSequenceClassification` whose labels are the
stages W, N1, N2, N3, REM) names this pipeline in its config (`custom_pipelines`), and this file travels with
the model, so `pipeline(...)` finds it with `trust_remote_code=True` where PhysioMAE is not installed.

Inputs (one night per call):
- a path to an EDF/EDF+/BDF file or a WFDB record (read by the feature extractor, channel names and sampling
  rates from the file);
- a dict `{"channels": {name: 1-D array}, "sampling_rate": Hz or {name: Hz}}` (or a dict of channels with the
  `sampling_rate=` call argument).

Output: a list of dicts, one per 30-s epoch from the start of the recording: `onset` (seconds), `stage` (the
most probable stage) and `probabilities` (stage -> probability). An epoch in which none of the model's
modalities is present cannot be staged: its `stage` and `probabilities` are None. The windows of a night go
through the model in batches of `windows_per_batch` (default 64) with a progress bar (`progress_bar=False` hides
it); `batch_size`, as for every pipeline, batches several nights.

Imports nothing of PhysioMAE but this folder's files (it is part of the Hub copy).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from transformers import Pipeline


SLEEP_STAGING_TASK = "sleep-staging"
SLEEP_STAGE_LABELS = ("W", "N1", "N2", "N3", "REM")
"""Labels a classifier must have (in this order) to be a sleep-staging classifier."""


def is_sleep_staging_config(config) -> bool:
    """Whether a model config is a sleep-staging classifier's: its labels are W, N1, N2, N3, REM in order."""
    id2label = getattr(config, "id2label", None) or {}
    labels = [id2label.get(index, id2label.get(str(index))) for index in range(len(id2label))]
    return tuple(labels) == SLEEP_STAGE_LABELS


def sleep_staging_custom_pipelines(config) -> dict | None:
    """The `custom_pipelines` entry a sleep-staging classifier's config.json carries (None for other models)."""
    if not is_sleep_staging_config(config):
        return None
    return {SLEEP_STAGING_TASK: {"impl": "pipeline_physiomae.SleepStagingPipeline",
                                 "pt": ["AutoModelForSequenceClassification"], "tf": [], "type": "multimodal"}}


class SleepStagingPipeline(Pipeline):
    """Stages a night of polysomnography with a PhysioMAE sleep-staging classifier (see the module docstring)."""

    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = True
    _load_tokenizer = False

    def _sanitize_parameters(self, sampling_rate=None, windows_per_batch=None, progress_bar=None, **kwargs):
        # not `batch_size`: Pipeline.__call__ takes that one for batching several inputs (nights)
        preprocess_kwargs = {} if sampling_rate is None else {"sampling_rate": sampling_rate}
        forward_kwargs = {}
        if windows_per_batch is not None:
            forward_kwargs["windows_per_batch"] = int(windows_per_batch)
        if progress_bar is not None:
            forward_kwargs["progress_bar"] = bool(progress_bar)
        if kwargs:
            raise TypeError(f"sleep-staging pipeline: unexpected arguments {sorted(kwargs)}")
        return preprocess_kwargs, forward_kwargs, {}

    def preprocess(self, inputs, sampling_rate=None) -> dict[str, Any]:
        if self.feature_extractor is None:
            raise ValueError("the sleep-staging pipeline needs the model's feature extractor (preprocessor_config.json)")
        if isinstance(inputs, dict) and "channels" in inputs:
            recording, rate = inputs["channels"], inputs.get("sampling_rate", sampling_rate)
        else:
            recording, rate = inputs, sampling_rate
        features = self.feature_extractor(recording, sampling_rate=rate, return_tensors="np", return_report=True)
        return {"input_values": features["input_values"], "modality_mask": features["modality_mask"],
                "onsets": [float(onset) for onset in features["report"]["window_onsets_seconds"]]}

    def _forward(self, model_inputs: dict[str, Any], windows_per_batch: int = 64,
                 progress_bar: bool = True) -> dict[str, Any]:
        from tqdm.auto import tqdm

        values, masks = model_inputs["input_values"], model_inputs["modality_mask"]  # (windows, C, T), (windows, M)
        seen = masks.any(axis=1)
        probabilities = np.full((len(values), self.model.config.num_labels), np.nan, dtype=np.float32)
        rows = np.flatnonzero(seen)
        device = self.model.device
        dtype = next(self.model.parameters()).dtype
        with torch.no_grad():
            for start in tqdm(range(0, len(rows), windows_per_batch), desc="sleep staging", unit="batch",
                              disable=not progress_bar):
                chosen = rows[start:start + windows_per_batch]
                logits = self.model(input_values=torch.as_tensor(values[chosen], device=device, dtype=dtype),
                                    modality_mask=torch.as_tensor(masks[chosen], device=device)).logits
                probabilities[chosen] = torch.softmax(logits.float(), dim=-1).cpu().numpy()
        return {"probabilities": probabilities, "seen": seen, "onsets": model_inputs["onsets"]}

    def postprocess(self, model_outputs: dict[str, Any]) -> list[dict[str, Any]]:
        id2label = self.model.config.id2label
        labels = [id2label.get(index, id2label.get(str(index))) for index in range(self.model.config.num_labels)]
        epochs = []
        for onset, seen, probabilities in zip(model_outputs["onsets"], model_outputs["seen"], model_outputs["probabilities"]):
            if not seen:
                epochs.append({"onset": onset, "stage": None, "probabilities": None})
                continue
            epochs.append({"onset": onset, "stage": labels[int(np.argmax(probabilities))],
                           "probabilities": {label: float(value) for label, value in zip(labels, probabilities)}})
        return epochs


def register_pipeline() -> None:
    """Register `sleep-staging` with transformers' PIPELINE_REGISTRY (for `pipeline("sleep-staging", model=obj)`)."""
    from transformers import AutoModelForSequenceClassification
    from transformers.pipelines import PIPELINE_REGISTRY

    if SLEEP_STAGING_TASK not in PIPELINE_REGISTRY.get_supported_tasks():
        PIPELINE_REGISTRY.register_pipeline(SLEEP_STAGING_TASK, pipeline_class=SleepStagingPipeline,
                                            pt_model=AutoModelForSequenceClassification, type="multimodal")


__all__ = ["SLEEP_STAGE_LABELS", "SLEEP_STAGING_TASK", "SleepStagingPipeline", "is_sleep_staging_config",
           "register_pipeline", "sleep_staging_custom_pipelines"]
