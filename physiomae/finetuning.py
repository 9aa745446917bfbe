"""Fine-tuning a PhysioMAE encoder for sleep staging with `transformers.Trainer`: the rows, the validation split, the
Trainer settings that learn, and the saved classifier (finetune.py runs it).

The Trainer evaluates on a validation split held out of probe-train by record (never on probe-test), keeps the
best checkpoint by balanced accuracy (`load_best_model_at_end`), and saves the feature extractor with every
checkpoint (`processing_class`), so each checkpoint folder loads with `AutoFeatureExtractor` and, being a
sleep-staging classifier, with `pipeline("sleep-staging", model=FOLDER, trust_remote_code=True)`.

Defaults (measured to learn on the real excerpts, see finetune.py): AdamW lr 5e-4, warmup 10 %, cosine decay,
weight decay 0.05, batch 32, 300 steps. Trainer's default lr (5e-5) leaves this small model predicting one
stage for every window.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from physiomae.evaluation import probing
from physiomae.saved_dataset import ChannelMapping, dataset_layout

logger = logging.getLogger("physiomae.finetune")

STAGE_LABELS = dict(num_labels=len(probing.SLEEP_STAGE_NAMES), id2label=dict(enumerate(probing.SLEEP_STAGE_NAMES)),
                    label2id={name: index for index, name in enumerate(probing.SLEEP_STAGE_NAMES)})
"""Config keyword arguments of a sleep-staging classifier (the labels the sleep-staging pipeline recognises)."""


class StagingWindows(torch.utils.data.Dataset):
    """Labelled windows of a builder split as Trainer rows: `input_values`, `modality_mask`, `labels` (windows
    without a stage or without any of the model's modalities are left out)."""

    def __init__(self, split, config):
        mapping = ChannelMapping.for_config(config, dataset_layout(split))
        values, masks = zip(*probing.iterate_signal_batches(split, 256))
        input_values, modality_mask = mapping.model_inputs(np.concatenate(values), np.concatenate(masks))
        labels = probing.TASKS["sleep_staging"].labels_from_column(np.asarray(split["sleep_stage"]))
        keep = (labels >= 0) & modality_mask.any(axis=1)
        self.input_values = torch.from_numpy(input_values[keep])
        self.modality_mask = torch.from_numpy(modality_mask[keep])
        self.labels = torch.from_numpy(labels[keep]).long()
        self.records = np.asarray(split["record"], dtype=object)[keep].astype(str)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"input_values": self.input_values[index], "modality_mask": self.modality_mask[index],
                "labels": self.labels[index]}

    def subset(self, rows: np.ndarray) -> "StagingWindows":
        part = object.__new__(StagingWindows)
        part.input_values, part.modality_mask = self.input_values[rows], self.modality_mask[rows]
        part.labels, part.records = self.labels[rows], self.records[rows]
        return part


def split_validation(rows: StagingWindows, fraction: float) -> tuple[StagingWindows, StagingWindows]:
    """(train, validation): `fraction` of the records go to validation, by the builder's sha1 split of
    "NAME#validation" (a hash independent of the probe-train / probe-test split, which already chose these
    records by the hash of NAME), so no record is in both. ValueError when either side would be empty."""
    from dataset_scripts.record_split import record_split_position

    names = np.unique(rows.records)
    in_validation = {name for name in names if record_split_position(f"{name}#validation") < fraction}
    validation = np.array([record in in_validation for record in rows.records])
    if validation.all() or not validation.any():
        raise ValueError(f"the validation share {fraction:g} of {len(names)} records leaves "
                         f"{'no training' if validation.all() else 'no validation'} record; change --validation_fraction")
    return rows.subset(np.flatnonzero(~validation)), rows.subset(np.flatnonzero(validation))


@dataclass
class FinetuningSettings:
    """The Trainer settings of finetune.py (defaults that learn, see the module docstring)."""

    max_steps: int = 300
    batch_size: int = 32
    learning_rate: float = 5e-4
    weight_decay: float = 0.05
    warmup_ratio: float = 0.1
    eval_steps: int = 50
    save_total_limit: int = 2
    device: str = "cpu"
    disable_tqdm: bool = True


def training_arguments(settings: FinetuningSettings, output_dir: Path, seed: int):
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=str(output_dir),
        max_steps=settings.max_steps,
        per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=128,
        learning_rate=settings.learning_rate,
        weight_decay=settings.weight_decay,
        warmup_steps=int(round(settings.warmup_ratio * settings.max_steps)),
        lr_scheduler_type="cosine",
        seed=seed,
        use_cpu=settings.device == "cpu",
        eval_strategy="steps",
        eval_steps=settings.eval_steps,
        save_strategy="steps",
        save_steps=settings.eval_steps,
        save_total_limit=settings.save_total_limit,
        load_best_model_at_end=True,
        metric_for_best_model="balanced_accuracy",
        greater_is_better=True,
        report_to="none",
        logging_steps=max(1, settings.max_steps // 10),
        disable_tqdm=settings.disable_tqdm,
    )


def finetune(model, feature_extractor, train_rows: StagingWindows, validation_rows: StagingWindows,
             settings: FinetuningSettings, output_dir: Path, seed: int):
    """Train `model` with Trainer (best checkpoint by validation balanced accuracy, extractor saved with every
    checkpoint); returns the Trainer, whose model is the best checkpoint's."""
    from transformers import Trainer

    from physiomae.metrics import sleep_staging_compute_metrics

    trainer = Trainer(
        model=model,
        args=training_arguments(settings, output_dir, seed),
        train_dataset=train_rows,
        eval_dataset=validation_rows,
        processing_class=feature_extractor,
        compute_metrics=sleep_staging_compute_metrics(),
    )
    trainer.train()
    return trainer


def predict_metrics(trainer, rows: StagingWindows) -> dict[str, Any]:
    """The sleep-staging metrics of the trainer's model on `rows` (the same metric module as training)."""
    output = trainer.predict(rows, metric_key_prefix="test")
    return {key[len("test_"):]: value for key, value in output.metrics.items()
            if key.startswith("test_") and isinstance(value, (int, float)) and not key.endswith(("_runtime", "_per_second"))}
