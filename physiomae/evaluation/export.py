"""Task classifiers: each fitted probe folded into the linear `classifier` layer of a
`PhysioMAEForSequenceClassification` with the encoder's weights, checked against the probe, and saved as a
Hub-format folder with a rendered model card. Not copied to the Hub.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from modeling_physiomae.configuration_physiomae import ChannelLayout

from ..model_card import ModelCardInputs, TaskCardResult, render_model_card
from ..saved_dataset import ChannelMapping
from . import probing
from .data import ProbeData
from .variants import EncoderVariant, safe_name


def build_task_classifier(encoder, probe: probing.FittedProbe, task: probing.ProbeTask):
    """`PhysioMAEForSequenceClassification` = the encoder's weights + the probe folded into `classifier`."""
    from modeling_physiomae.modeling_physiomae import PhysioMAEForSequenceClassification

    config = encoder.config.__class__.from_dict(encoder.config.to_dict())
    config.num_labels = task.num_classes
    config.id2label = dict(enumerate(task.label_names))
    config.label2id = {label: index for index, label in enumerate(task.label_names)}
    config.problem_type = "single_label_classification"
    config.architectures = ["PhysioMAEForSequenceClassification"]
    classifier = PhysioMAEForSequenceClassification(config)
    classifier.physiomae.load_state_dict(encoder.state_dict(), strict=True)
    weight, bias = probing.fold_probe_into_linear(probe, task.num_classes)
    with torch.no_grad():
        classifier.classifier.weight.copy_(torch.as_tensor(weight, dtype=classifier.classifier.weight.dtype))
        classifier.classifier.bias.copy_(torch.as_tensor(bias, dtype=classifier.classifier.bias.dtype))
    return classifier.eval()


@torch.no_grad()
def classifier_logits(classifier, input_values: np.ndarray, channel_mask: np.ndarray,
                      layout: ChannelLayout | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Logits of a task classifier on dataset windows and which windows it could see (any modality present)."""
    mapping = ChannelMapping.for_config(classifier.config, layout)
    model_values, modality_mask = mapping.model_inputs(input_values, channel_mask)
    present = modality_mask.any(axis=1)
    logits = np.full((len(model_values), classifier.config.num_labels), np.nan)
    if present.any():
        output = classifier(input_values=torch.from_numpy(model_values[present]), modality_mask=torch.from_numpy(modality_mask[present]))
        logits[present] = output.logits.double().numpy()
    return logits, present


def load_feature_extractor(folder: Path):
    """The encoder folder's saved feature extractor, or None (then `save_for_hub` builds one for the config)."""
    from modeling_physiomae.feature_extraction_physiomae import PhysioMAEFeatureExtractor

    if (folder / "preprocessor_config.json").is_file():
        return PhysioMAEFeatureExtractor.from_pretrained(str(folder))
    return None


def card_inputs(variant: EncoderVariant, task: probing.ProbeTask | None, data: ProbeData, repo_id: str) -> ModelCardInputs:
    """Text of a classifier's (or encoder's) model card."""
    what = f"the `{task.name}` probe ({task.description})" if task else "no task head"
    return ModelCardInputs(
        model_name=repo_id.split("/")[-1],
        repo_id=repo_id,
        summary=(
            f"Variant `{variant.name}` (training strategy `{variant.strategy}`), a PhysioMAE encoder with "
            f"{what} folded into its linear `classifier` layer: the logits equal the fitted probe's decision "
            "function (StandardScaler + LogisticRegression folded into one linear map)."
        ),
        intended_use=(
            f"Research on representation learning for polysomnography: {task.description if task else 'embeddings'}, "
            "from the PhysioNet/CinC 2018 channel set (absent modalities are allowed and marked "
            "in `modality_mask`)."
        ),
        training_data=(
            f"Encoder: pretrained as `{variant.strategy}` (see the encoder's own card). Probe: fitted on the "
            f"probe-train split and scored on probe-test of {data.description}."
            + (" " + " ".join(data.notes) if data.notes else "")
        ),
        data_limitations=(
            "Results measured on the evaluation data named above; if that is the embedded synthetic cohort they "
            "say nothing about real recordings. The labelled records come from one sleep laboratory (Massachusetts "
            "General Hospital); performance on other populations, montages or devices is unknown."
        ),
        age_definition=(
            f"binary, `{probing.TASKS['age'].label_names[1]}` when age >= {probing.AGE_THRESHOLD_YEARS:g} years "
            "(records of unknown age excluded)"
        ),
        auto_class="AutoModelForSequenceClassification" if task else "AutoModel",
    )


def export_task_classifiers(
    variant: EncoderVariant,
    encoder,
    probes: dict[str, probing.FittedProbe],
    task_results: dict[str, dict],
    baseline_results: dict[str, dict],
    tasks: Sequence[probing.ProbeTask],
    data: ProbeData,
    output_dir: Path,
    repo_prefix: str,
    num_check_windows: int = 64,
) -> dict[str, dict]:
    """One Hub folder per task, `OUTPUT/<variant>-<task suffix>`, with a rendered model card.

    The folded head is checked before saving: its logits on the first `num_check_windows` probe-test windows
    must equal the probe's decision function on the same windows' embeddings (max abs difference recorded).
    """
    from ..hub import save_for_hub

    exported = {}
    check_input_values, check_channel_mask = next(probing.iterate_signal_batches(data.test_split, num_check_windows))
    check_embeddings = probing.encode_windows(encoder, data.test_split.select(range(len(check_input_values))),
                                              layout=data.layout).embeddings
    for task in tasks:
        probe = probes[task.name]
        classifier = build_task_classifier(encoder, probe, task)
        logits, seen = classifier_logits(classifier, check_input_values, check_channel_mask, data.layout)
        expected = probing.folded_decision_function(probe, task.num_classes, check_embeddings[seen])
        difference = float(np.abs(logits[seen] - expected).max()) if seen.any() else float("nan")
        tolerance = 1e-3 * max(1.0, float(np.abs(expected).max()) if seen.any() else 1.0)
        if not difference <= tolerance:
            raise RuntimeError(f"{variant.name}/{task.name}: folded head differs from the probe by {difference:.2e}")
        folder_name = f"{safe_name(variant.name)}-{task.hub_suffix}"
        repo_id = f"{repo_prefix}/{folder_name}" if repo_prefix else folder_name
        result = task_results[task.name]
        card = render_model_card(
            card_inputs(variant, task, data, repo_id),
            [
                TaskCardResult(
                    task_name=task.name,
                    task_title=task.description,
                    dataset_name=data.description,
                    metrics=result["metrics"],
                    intervals=result["intervals"],
                    baseline_metrics=baseline_results.get(task.name, {}).get("metrics", {}),
                )
            ],
        )
        feature_extractor = load_feature_extractor(variant.encoder_folders[0])
        save_for_hub(classifier, str(output_dir / folder_name), feature_extractor=feature_extractor, readme_text=card)
        exported[task.name] = {"folder": folder_name, "max_abs_logit_difference_vs_probe": difference}
    return exported
