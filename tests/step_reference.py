"""Fixed training steps whose losses, outputs and gradients `tests/data/step_reference.pt` records.

`python tests/step_reference.py` runs every case of `CASES` with the model code of the checkout and writes the
file (with the commit it came from). The file in the repository was written by the per-modality implementation
(the one before the stacked tokenizers and batched decoders, commit recorded inside), so
`tests/physiomae/training/test_pretraining_step_numerics.py` checks that today's model computes the same step from the same weights.

Each case: a small config (dropout off), weights drawn by `torch.manual_seed`, four windows from a seeded
generator (sample 1 without SpO2, sample 2 with EEG and ECG only, sample 3 with EOG alone), fixed masking
`noise` and forced `dropped_modality`, so nothing random is left.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

REPOSITORY = Path(__file__).resolve().parents[1]
REFERENCE_FILE = Path(__file__).resolve().parent / "data" / "step_reference.pt"

SMALL = dict(
    hidden_size=16,
    num_hidden_layers=1,
    num_attention_heads=2,
    intermediate_size=32,
    decoder_hidden_size=8,
    decoder_num_hidden_layers=1,
    decoder_num_attention_heads=2,
    decoder_intermediate_size=16,
    tokenizer_conv_channels=4,
    window_seconds=10.0,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
)

CASES: dict[str, tuple[str, dict]] = {
    # name: (task, config overrides)
    "bottleneck_default": ("pretraining", {}),
    "bottleneck_late_sample_dropout": ("pretraining", {"fusion": "late", "modality_dropout_mode": "sample"}),
    "cross_attention_waveform_lbp_conv": (
        "pretraining",
        {"decoder_type": "cross_attention", "reconstruction_target": "waveform+log_band_power", "tokenizer_type": "conv"},
    ),
    "in_place_waveform_norm": (
        "pretraining",
        {"decoder_type": "in_place", "reconstruction_target": "waveform", "norm_patch_loss": True},
    ),
    "in_place_waveform_lbp_late": (
        "pretraining",
        {"decoder_type": "in_place", "reconstruction_target": "waveform+log_band_power", "fusion": "late"},
    ),
    "classification": ("classification", {"num_labels": 5}),
    "contrastive": ("contrastive", {"contrastive_loss": "pairwise"}),
}

BATCH_SIZE = 4
MODALITY_MASK = [
    [True, True, True, True, True, True],
    [True, True, True, True, False, True],
    [True, False, False, False, False, True],
    [False, True, False, False, False, False],
]
DROPPED_MODALITY = [0, 3, 5, 1]  # sample 3's only modality is never dropped (-1 after resolution)


def case_config(name: str):
    from modeling_physiomae import PhysioMAEConfig

    return PhysioMAEConfig(**{**SMALL, **CASES[name][1]})


def case_model(name: str):
    """The case's model with weights from `torch.manual_seed(0)` (only the generating run relies on them)."""
    from modeling_physiomae import (
        PhysioMAEForContrastivePreTraining,
        PhysioMAEForPreTraining,
        PhysioMAEForSequenceClassification,
    )

    task = CASES[name][0]
    model_class = {
        "pretraining": PhysioMAEForPreTraining,
        "classification": PhysioMAEForSequenceClassification,
        "contrastive": PhysioMAEForContrastivePreTraining,
    }[task]
    torch.manual_seed(0)
    return model_class(case_config(name))


def case_inputs(name: str) -> dict[str, torch.Tensor]:
    """The case's batch: windows with a 1/f-ish spectrum per channel, masks, noise and labels."""
    config = case_config(name)
    generator = torch.Generator().manual_seed(1234)
    white = torch.randn(BATCH_SIZE, config.num_channels, config.window_length, generator=generator)
    input_values = white.cumsum(dim=-1) * 0.05 + white  # some low-frequency power, like physiology
    modality_mask = torch.tensor(MODALITY_MASK)
    inputs = {"input_values": input_values, "modality_mask": modality_mask}
    task = CASES[name][0]
    if task == "pretraining":
        inputs["noise"] = torch.rand(BATCH_SIZE, config.num_modalities * config.num_patches, generator=generator)
        inputs["dropped_modality"] = torch.tensor(DROPPED_MODALITY)
    elif task == "classification":
        inputs["labels"] = torch.tensor([0, 2, 4, 1])
    return inputs


def run_case(model, name: str) -> dict[str, object]:
    """One training-mode forward and backward; returns the outputs that must not change and the gradients."""
    inputs = case_inputs(name)
    model.train()
    model.zero_grad(set_to_none=True)
    if CASES[name][0] == "pretraining":
        with torch.no_grad():  # non-trivial target statistics, from the same batch
            model.set_target_statistics([(inputs["input_values"], inputs["modality_mask"])])
    outputs = model(**inputs)
    outputs.loss.backward()
    recorded = {"loss": outputs.loss.detach()}
    if CASES[name][0] == "pretraining":
        recorded["loss_per_modality"] = outputs.loss_per_modality.detach()
        recorded["reconstruction_error_sum"] = outputs.reconstruction_error_sum.detach()
        recorded["reconstruction_reference_sum"] = outputs.reconstruction_reference_sum.detach()
        recorded["mask"] = outputs.mask.detach()
        recorded["dropped_modality"] = outputs.dropped_modality.detach()
        recorded["predicted_targets"] = [prediction.detach() for prediction in outputs.predicted_targets]
    elif CASES[name][0] == "classification":
        recorded["logits"] = outputs.logits.detach()
    else:
        recorded["modality_embeddings"] = outputs.modality_embeddings.detach()
    gradients = {key: parameter.grad.detach().clone() for key, parameter in model.named_parameters() if parameter.grad is not None}
    return {"outputs": recorded, "gradients": gradients}


def main() -> None:
    sys.path.insert(0, str(REPOSITORY))
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPOSITORY, capture_output=True, text=True, check=True
    ).stdout.strip()
    torch.set_num_threads(1)
    reference = {"commit": commit, "torch": str(torch.__version__), "cases": {}}
    for name in CASES:
        model = case_model(name)
        state_dict = {key: value.detach().clone() for key, value in model.state_dict().items()}
        result = run_case(model, name)
        # the statistics were set inside run_case: store the state the step ran with
        state_dict.update({key: value.detach().clone() for key, value in model.state_dict().items() if "target_" in key})
        reference["cases"][name] = {"state_dict": state_dict, **result}
        print(f"{name}: loss {float(result['outputs']['loss']):.6f}, {len(result['gradients'])} gradients")
    REFERENCE_FILE.parent.mkdir(parents=True, exist_ok=True)
    torch.save(reference, REFERENCE_FILE)
    print(f"wrote {REFERENCE_FILE} ({REFERENCE_FILE.stat().st_size / 1e6:.2f} MB) from commit {commit}")


if __name__ == "__main__":
    main()
