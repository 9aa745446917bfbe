"""Today's model computes the same training step as the per-modality implementation it replaced.

`tests/data/step_reference.pt` holds, for each case of `tests/step_reference.py`, the weights, the outputs and
the gradients of one training-mode forward + backward of the per-modality implementation (one tokenizer,
decoder, head and projection module per modality; commit recorded in the file). The weights are converted to
today's stacked layout with `load_per_modality_state_dict`, the step is run on the same fixed inputs, noise
and dropped modalities, and the reference gradients are converted the same way to be compared.

Tolerance: float32 summation order differs (batched matmuls instead of per-modality ones, one reduction over
all modalities instead of one per modality): relative 1e-4, absolute 1e-6 on gradients (whose scale is
1e-3..1e-1), 1e-5 relative on losses. The padding of the stacked weights gets exactly zero gradient.
"""

from __future__ import annotations

import copy

import pytest
import torch

from physiomae.convert_per_modality_checkpoint import PER_MODALITY_KEY, convert_folder, load_per_modality_state_dict
from tests.step_reference import CASES, MODALITY_MASK, REFERENCE_FILE, case_model, run_case

REFERENCE = torch.load(REFERENCE_FILE, weights_only=True)


def converted(model: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`tensors` (weights or gradients, per-modality layout) in `model`'s layout, via a scratch copy of it."""
    scratch = copy.deepcopy(model)
    result = load_per_modality_state_dict(scratch, tensors)
    remaining = {key: value for key, value in tensors.items() if not PER_MODALITY_KEY.search(key)}
    missing, unexpected = scratch.load_state_dict(remaining, strict=False)
    assert not unexpected, unexpected
    buffers = dict(scratch.named_buffers())
    # every parameter the plain load did not find was filled by the conversion (gradients have no buffers)
    assert not {key for key in missing if key not in buffers} - set(result["filled"])
    return {key: value.detach().clone() for key, value in scratch.state_dict().items()}


@pytest.mark.parametrize("name", list(CASES))
def test_step_equals_per_modality_implementation(name):
    reference = REFERENCE["cases"][name]
    model = case_model(name)
    model.load_state_dict(converted(model, reference["state_dict"]))
    torch.set_num_threads(1)
    result = run_case(model, name)

    for key, expected in reference["outputs"].items():
        actual = result["outputs"][key]
        if isinstance(expected, list):  # per-modality predictions: compared where the modality is present
            # (an absent modality's prediction is never scored; the in-place decoder's absent tokens used to
            # attend to themselves only, they now attend to the present tokens: early fusion masks keys only)
            present = torch.tensor(MODALITY_MASK)
            assert len(actual) == len(expected)
            for modality, (value, wanted) in enumerate(zip(actual, expected)):
                rows = present[:, modality]
                torch.testing.assert_close(value[rows], wanted[rows], rtol=1e-4, atol=1e-5, msg=f"{key}[{modality}]")
        elif expected.dtype.is_floating_point:
            torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6, equal_nan=True, msg=key)
        else:
            assert torch.equal(actual, expected), key

    # gradients: the reference's, in today's layout (zero where today's layout pads)
    gradient_model = case_model(name)
    parameters = dict(gradient_model.named_parameters())
    expected_gradients = converted(gradient_model, {key: value for key, value in reference["gradients"].items()})
    actual_gradients = result["gradients"]
    assert set(actual_gradients) == {key for key in parameters if key in expected_gradients and parameters[key].requires_grad}
    for key, actual in actual_gradients.items():
        torch.testing.assert_close(actual, expected_gradients[key], rtol=1e-4, atol=1e-6, msg=key)


@pytest.mark.parametrize("name", ["bottleneck_default", "in_place_waveform_lbp_late", "contrastive"])
def test_folder_saved_with_per_modality_weights_converts(name, tmp_path):
    """A folder written in the per-modality layout converts (physiomae.convert_per_modality_checkpoint) into one
    that loads with from_pretrained, nothing missing or unexpected, and computes the reference step."""
    from safetensors.torch import save_file

    reference = REFERENCE["cases"][name]
    model_class = type(case_model(name))
    old, new = tmp_path / "old", tmp_path / "new"
    config = case_model(name).config
    config.architectures = [model_class.__name__]
    config.save_pretrained(old)
    saved = {key: value.contiguous() for key, value in reference["state_dict"].items()}
    # early versions also saved the (config-derived) band-power matrix, per tokenizer and in the pretraining model
    prefix = "physiomae." if any(key.startswith("physiomae.") for key in saved) else ""
    saved[f"{prefix}embeddings.tokenizers.0.band_matrix"] = torch.rand(51, 6)
    saved["band_matrix"] = torch.rand(51, 6)
    save_file(saved, old / "model.safetensors")
    result = convert_folder(old, new)
    assert result["loaded"]
    model, loading_info = model_class.from_pretrained(new, output_loading_info=True)
    assert not loading_info["missing_keys"] and not loading_info["unexpected_keys"], loading_info
    torch.set_num_threads(1)
    outputs = run_case(model, name)
    torch.testing.assert_close(outputs["outputs"]["loss"], reference["outputs"]["loss"], rtol=1e-5, atol=1e-6)
    # the encoder alone loads from the converted folder too
    from modeling_physiomae import PhysioMAEModel

    encoder, encoder_info = PhysioMAEModel.from_pretrained(new, output_loading_info=True)
    assert not encoder_info["missing_keys"], encoder_info
    for key, value in encoder.state_dict().items():
        torch.testing.assert_close(value, model.physiomae.state_dict()[key], rtol=0, atol=0, msg=key)


def test_a_folder_the_converter_does_not_know_is_refused(tmp_path):
    from safetensors.torch import save_file

    model = case_model("bottleneck_default")
    model.config.architectures = [type(model).__name__]
    model.config.save_pretrained(tmp_path / "old")
    save_file({"physiomae.embeddings.tokenizers.0.convolution.weight": torch.zeros(3, 3)}, tmp_path / "old" / "model.safetensors")
    with pytest.raises(ValueError, match="not a per-modality PhysioMAE folder"):
        convert_folder(tmp_path / "old", tmp_path / "new")
    assert not (tmp_path / "new").exists()
