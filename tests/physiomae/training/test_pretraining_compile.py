"""The training forward compiles as one graph (no host reads of device data), and train.py can run it compiled.

Graph breaks are counted with `torch._dynamo.explain` (tracing only); `fullgraph=True` with the `aot_eager`
backend traces forward and backward without generating code, so these tests take seconds. The inductor backend
(train.py's default) is measured in benchmarks/, not here: compiling takes a minute or more on this CPU.
"""

from __future__ import annotations

import pytest
import torch

from modeling_physiomae import PhysioMAEForPreTraining
from tests.helpers import tiny_config

def masking_inputs(model, batch_size: int, seed: int):
    noise, modality_dropout_noise = model.draw_masking_noise(batch_size, torch.Generator().manual_seed(seed))
    return {"noise": noise, "modality_dropout_noise": modality_dropout_noise}


@pytest.mark.parametrize(
    "overrides",
    [
        {},  # the defaults: bottleneck decoders, spectral tokens, log band power target, batch-mode dropout
        {"modality_dropout_mode": "sample", "fusion": "late"},
        {"decoder_type": "cross_attention", "reconstruction_target": "waveform+log_band_power", "tokenizer_type": "conv"},
        {"decoder_type": "in_place", "reconstruction_target": "waveform", "norm_patch_loss": True},
    ],
)
def test_training_forward_has_no_graph_breaks(overrides):
    import torch._dynamo

    config = tiny_config(**overrides)
    model = PhysioMAEForPreTraining(config).train()
    input_values = torch.randn(3, config.num_channels, config.window_length)
    modality_mask = torch.ones(3, config.num_modalities, dtype=torch.bool)
    modality_mask[1, 0] = False

    def loss(values, present, noise, modality_dropout_noise):
        return model(values, present, noise=noise, modality_dropout_noise=modality_dropout_noise).loss

    torch._dynamo.reset()
    explanation = torch._dynamo.explain(loss)(input_values, modality_mask, **masking_inputs(model, 3, 0))
    reasons = [reason.reason.splitlines()[0] for reason in explanation.break_reasons]
    assert explanation.graph_break_count == 0, reasons
    assert explanation.graph_count == 1


def test_fullgraph_compiled_step_equals_eager_and_a_generator_is_refused():
    config = tiny_config(modality_dropout_prob=1.0)
    model = PhysioMAEForPreTraining(config).train()
    input_values = torch.randn(4, config.num_channels, config.window_length, generator=torch.Generator().manual_seed(0))
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    results = []
    for forward in (model, compiled):
        model.zero_grad(set_to_none=True)
        output = forward(input_values, **masking_inputs(model, 4, 5))
        output.loss.backward()
        results.append((output, {name: parameter.grad.clone() for name, parameter in model.named_parameters()}))
    (eager, eager_gradients), (graph, graph_gradients) = results
    assert torch.equal(eager.mask, graph.mask) and torch.equal(eager.dropped_modality, graph.dropped_modality)
    assert (eager.dropped_modality >= 0).all()  # the draws chose a modality for every window
    torch.testing.assert_close(graph.loss, eager.loss, rtol=1e-5, atol=1e-6)
    for name, gradient in eager_gradients.items():
        torch.testing.assert_close(graph_gradients[name], gradient, rtol=1e-4, atol=1e-6, msg=name)
    # generator draws cannot be traced: a clear error that says what to pass instead
    with pytest.raises(Exception, match="draw_masking_noise"):
        compiled(input_values, generator=torch.Generator().manual_seed(0))
