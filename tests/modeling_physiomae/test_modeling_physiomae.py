"""Tests of the PhysioMAE models: masking, modality dropout, missing modalities, attention, losses, Trainer."""

from __future__ import annotations

import math

import pytest
import torch

from modeling_physiomae import (
    PhysioMAEConfig,
    PhysioMAEForContrastivePreTraining,
    PhysioMAEForPreTraining,
    PhysioMAEForSequenceClassification,
    PhysioMAEModel,
)
from modeling_physiomae.configuration_physiomae import HUB_CODE_FILES
from modeling_physiomae.modeling_physiomae import PhysioMAEGroupedLinear
from helpers import tiny_config as shared_tiny_config

SMALL_MODALITIES = {"eeg": ["C3-M2", "C4-M1"], "eog": ["E1-M2"], "resp": ["ABD", "CHEST"]}


def tiny_config(modalities=SMALL_MODALITIES, **overrides) -> PhysioMAEConfig:
    return shared_tiny_config(**{"modalities": modalities, "decoder_intermediate_size": 32, **overrides})


def random_windows(config: PhysioMAEConfig, batch_size: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch_size, config.num_channels, config.window_length, generator=generator)


def all_modality_subsets(num_modalities: int) -> torch.Tensor:
    """Every non-empty subset as a (2**M - 1, M) boolean mask."""
    rows = [
        [bool(code >> index & 1) for index in range(num_modalities)] for code in range(1, 2**num_modalities)
    ]
    return torch.tensor(rows)


def replace_absent_data(config: PhysioMAEConfig, input_values, modality_mask, fill: float) -> torch.Tensor:
    """A copy of input_values whose absent modalities hold other data (`fill` everywhere, NaN allowed)."""
    changed = input_values.clone()
    for modality_index, channels in enumerate(config.modality_channel_slices.values()):
        absent = ~modality_mask[:, modality_index]
        changed[absent, channels] = fill
    return changed


def expected_visible(num_tokens: int, mask_ratio: float = 0.7) -> int:
    """int(n * (1 - mask_ratio)) for the ratios used here, computed exactly with fractions."""
    from fractions import Fraction

    return max(1, math.floor(num_tokens * (1 - Fraction(str(mask_ratio)))))


# ---------------------------------------------------------------------------------------------- masking
def test_masking_counts_are_exact_per_sample():
    config = tiny_config(modalities=None)  # the six default modalities
    model = PhysioMAEForPreTraining(config).eval()
    batch_size = 5
    input_values = random_windows(config, batch_size)
    modality_mask = torch.tensor(
        [
            [1, 1, 1, 1, 1, 1],
            [1, 0, 0, 0, 0, 0],
            [0, 1, 1, 0, 0, 1],
            [1, 1, 0, 1, 0, 0],
            [0, 0, 0, 0, 1, 1],
        ],
        dtype=torch.bool,
    )
    noise = torch.rand(batch_size, config.num_modalities * config.num_patches, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        output = model(input_values, modality_mask=modality_mask, noise=noise)
    assert (output.dropped_modality == -1).all()  # eval mode: no modality dropout
    token_present = modality_mask.repeat_interleave(config.num_patches, dim=1)
    for sample in range(batch_size):
        present = int(token_present[sample].sum())
        visible = expected_visible(present)
        assert int(output.visible_token_mask[sample].sum()) == visible
        assert int(output.mask[sample].sum()) == present - visible
        # absent tokens are never scored
        assert output.mask[sample][~token_present[sample]].sum() == 0
        # the kept tokens are the present ones with the smallest noise
        present_indices = token_present[sample].nonzero().flatten()
        order = present_indices[noise[sample, present_indices].argsort()]
        kept = set(order[:visible].tolist())
        assert kept == set((output.mask[sample] == 0).nonzero().flatten().tolist()) - set(
            (~token_present[sample]).nonzero().flatten().tolist()
        )
        # ids_restore is a permutation that marks exactly the kept tokens as first
        assert sorted(output.ids_restore[sample].tolist()) == list(range(token_present.shape[1]))
        assert set((output.ids_restore[sample] < visible).nonzero().flatten().tolist()) == kept
    assert output.last_hidden_state.shape == (batch_size, expected_visible(180), config.hidden_size)
    # default target: 6 log band powers per channel and patch; no waveform part, so no reconstruction
    assert output.reconstruction is None
    for prediction, target, channels in zip(output.predicted_targets, output.targets, config.modalities.values()):
        assert prediction.shape == target.shape == (batch_size, config.num_patches, 6 * len(channels))
    assert output.loss_per_modality.shape == (config.num_modalities,)
    # modality 5 (ecg) is present in samples with hidden tokens: finite; all modalities here have some
    assert torch.isfinite(output.loss_per_modality).all()


def test_loss_per_modality_is_nan_where_nothing_hidden():
    config = tiny_config()
    model = PhysioMAEForPreTraining(config).eval()
    modality_mask = torch.tensor([[1, 0, 1], [1, 0, 0]], dtype=torch.bool)  # eog absent everywhere
    output = model(random_windows(config, 2), modality_mask=modality_mask, generator=torch.Generator().manual_seed(0))
    assert torch.isnan(output.loss_per_modality[1])
    assert torch.isfinite(output.loss_per_modality[[0, 2]]).all()
    assert torch.isclose(output.loss, output.loss_per_modality[[0, 2]].mean())


def test_encoder_masks_only_when_asked_and_ids_restore_unshuffles():
    config = tiny_config()
    model = PhysioMAEModel(config).eval()
    batch_size, sequence_length = 4, config.num_modalities * config.num_patches
    input_values = random_windows(config, batch_size)
    modality_mask = torch.tensor([[1, 1, 1], [1, 0, 1], [0, 1, 0], [1, 1, 0]], dtype=torch.bool)
    noise = torch.rand(batch_size, sequence_length, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        plain = model(input_values, modality_mask=modality_mask, output_hidden_states=True)
        masked = model(
            input_values, modality_mask=modality_mask, apply_masking=True, noise=noise, dropped_modality="eeg",
            output_hidden_states=True,
        )
    # a plain encoder call (feature extraction, fine-tuning) does not mask
    assert plain.mask is None and plain.ids_restore is None and plain.dropped_modality is None
    assert plain.last_hidden_state.shape == (batch_size, sequence_length, config.hidden_size)
    with pytest.raises(ValueError, match="apply_masking=True"):
        model(input_values, noise=noise)
    with pytest.raises(ValueError, match="apply_masking=True"):
        model(input_values, dropped_modality=0)

    # eeg is dropped where it is present with another modality; of the rest, int(0.3 * n) tokens stay visible
    assert masked.dropped_modality.tolist() == [0, 0, -1, 0]
    encoder_modalities = modality_mask & (torch.arange(3)[None] != masked.dropped_modality[:, None])
    candidates = encoder_modalities.repeat_interleave(config.num_patches, dim=1)
    visible_counts = [expected_visible(int(count)) for count in candidates.sum(dim=1)]
    # padded to a length fixed by the config (what a sample with every token a candidate keeps), not the batch's
    max_visible = expected_visible(sequence_length)
    assert max_visible > max(visible_counts)
    assert masked.mask.shape == masked.ids_restore.shape == (batch_size, sequence_length)
    assert masked.last_hidden_state.shape == (batch_size, max_visible, config.hidden_size)
    assert masked.token_mask.shape == (batch_size, max_visible) and masked.pooler_output is None
    assert masked.token_mask.sum(dim=1).tolist() == visible_counts
    assert (masked.last_hidden_state[~masked.token_mask] == 0).all()  # padding rows are zero
    for sample in range(batch_size):
        assert sorted(masked.ids_restore[sample].tolist()) == list(range(sequence_length))
    # token t was visible iff ids_restore[t] < number visible; every other present token is hidden (mask 1)
    kept = masked.ids_restore < masked.token_mask.sum(dim=1, keepdim=True)
    token_present = modality_mask.repeat_interleave(config.num_patches, dim=1)
    assert not (kept & ~candidates).any()
    assert torch.equal(masked.mask.bool(), token_present & ~kept)

    # ViT-MAE's unshuffle: append filler rows, gather with ids_restore -> every visible token back in its place
    visible_embeddings = masked.hidden_states[0]  # (batch, max_visible, hidden)
    filler = torch.zeros(batch_size, sequence_length - max_visible, config.hidden_size)
    index = masked.ids_restore[:, :, None].expand(-1, -1, config.hidden_size)
    restored = torch.gather(torch.cat([visible_embeddings, filler], dim=1), 1, index)  # (batch, M * P, hidden)
    torch.testing.assert_close(restored[kept], plain.hidden_states[0][kept], rtol=0, atol=0)
    assert (restored[~kept] == 0).all()
    # and the rows are the noise order: row r is the visible token with the r-th smallest noise
    for sample in range(batch_size):
        visible_tokens = kept[sample].nonzero().flatten()
        by_noise = visible_tokens[noise[sample, visible_tokens].argsort()]
        rows = masked.token_mask[sample]
        torch.testing.assert_close(
            visible_embeddings[sample, rows], plain.hidden_states[0][sample, by_noise], rtol=0, atol=0
        )


def test_masked_encoder_returns_the_kept_positions_and_the_prepared_inputs():
    config = tiny_config()
    model = PhysioMAEModel(config).eval()
    batch_size, sequence_length = 4, config.num_modalities * config.num_patches
    modality_mask = torch.tensor([[1, 1, 1], [1, 0, 1], [0, 1, 0], [1, 1, 0]], dtype=torch.bool)
    given = random_windows(config, batch_size)
    input_values = replace_absent_data(config, given, modality_mask, float("nan"))
    noise = torch.rand(batch_size, sequence_length, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        plain = model(input_values, modality_mask=modality_mask.long(), output_hidden_states=True)
        masked = model(input_values, modality_mask=modality_mask.long(), apply_masking=True, noise=noise,
                       dropped_modality="eeg", output_hidden_states=True)

    # the prepared inputs: the mask resolved to bool, absent modalities' channels zeroed (their NaNs never read)
    for outputs in (plain, masked):
        assert outputs.modality_mask.dtype == torch.bool and torch.equal(outputs.modality_mask, modality_mask)
    assert plain.input_values is None and plain.ids_keep is None  # without masking: row t is token t
    assert masked.input_values.dtype == torch.float32
    torch.testing.assert_close(masked.input_values, replace_absent_data(config, given, modality_mask, 0.0),
                               rtol=0, atol=0)
    everything = model(input_values.nan_to_num(), apply_masking=True, noise=noise)
    assert everything.modality_mask.all() and everything.modality_mask.shape == (batch_size, config.num_modalities)

    # ids_keep: row r of sample b is token ids_keep[b, r], ViT-MAE's argsort(ids_restore)[:, :max_visible]
    max_visible = masked.token_mask.shape[1]
    assert masked.ids_keep.shape == (batch_size, max_visible) and masked.ids_keep.dtype == torch.long
    assert torch.equal(masked.ids_keep, torch.argsort(masked.ids_restore, dim=1)[:, :max_visible])
    kept = masked.ids_restore < masked.token_mask.sum(dim=1, keepdim=True)
    for sample in range(batch_size):
        positions = masked.ids_keep[sample]
        assert len(set(positions.tolist())) == max_visible  # distinct, padding rows included
        assert sorted(positions[masked.token_mask[sample]].tolist()) == kept[sample].nonzero().flatten().tolist()
        assert not kept[sample, positions[~masked.token_mask[sample]]].any()  # padding rows point at hidden tokens
        rows = masked.token_mask[sample]
        torch.testing.assert_close(masked.hidden_states[0][sample, rows],
                                   plain.hidden_states[0][sample, positions[rows]], rtol=0, atol=0)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_draw_masking_noise_makes_the_draws_the_forward_makes(mode):
    config = tiny_config(modality_dropout_mode="sample", modality_dropout_prob=0.5, hidden_dropout_prob=0.0,
                         attention_probs_dropout_prob=0.0)
    model = PhysioMAEForPreTraining(config).train(mode == "train")
    batch_size, sequence_length = 6, config.num_modalities * config.num_patches
    input_values = random_windows(config, batch_size)
    drawing, passing = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    noise, modality_dropout_noise = model.draw_masking_noise(batch_size, passing)
    assert noise.shape == (batch_size, sequence_length)
    assert modality_dropout_noise.shape == (batch_size, 1 + config.num_modalities)
    assert (modality_dropout_noise != 0).any() == (mode == "train")  # drawn only when random dropout is on
    with torch.no_grad():
        drawn = model(input_values, generator=drawing)
        passed = model(input_values, noise=noise, modality_dropout_noise=modality_dropout_noise)
    for name in ("loss", "mask", "ids_restore", "dropped_modality", "reconstruction"):
        torch.testing.assert_close(getattr(passed, name), getattr(drawn, name), rtol=0, atol=0, msg=name)
    if mode == "train":
        assert (drawn.dropped_modality >= 0).any()  # the dropout draws were used
    # the same draws from the generator: the next ones agree too; the encoder's method is the head's
    assert torch.equal(drawing.get_state(), passing.get_state())
    again = model.physiomae.draw_masking_noise(batch_size, torch.Generator().manual_seed(7), device="cpu")
    assert torch.equal(again[0], noise) and torch.equal(again[1], modality_dropout_noise)


@pytest.mark.parametrize("decoder_type", ["in_place", "cross_attention", "bottleneck"])
def test_pretraining_runs_the_one_encoder_forward(decoder_type):
    config = tiny_config(decoder_type=decoder_type, modality_dropout_mode="sample", modality_dropout_prob=0.7)
    pretraining = PhysioMAEForPreTraining(config)
    encoder = PhysioMAEModel(config)
    encoder.load_state_dict(pretraining.physiomae.state_dict())
    input_values = random_windows(config, 6)
    modality_mask = torch.ones(6, 3, dtype=torch.bool)
    modality_mask[1, 0] = False
    calls = []
    pretraining.physiomae.register_forward_hook(lambda module, args, output: calls.append(type(module).__name__))
    for mode in ("train", "eval"):
        pretraining.train(mode == "train")
        encoder.train(mode == "train")
        noise = torch.rand(6, 90, generator=torch.Generator().manual_seed(11))
        with torch.no_grad():
            full = pretraining(
                input_values, modality_mask=modality_mask, noise=noise, generator=torch.Generator().manual_seed(3),
                output_hidden_states=True, output_attentions=True,
            )
            alone = encoder(
                input_values, modality_mask=modality_mask, apply_masking=True, noise=noise,
                generator=torch.Generator().manual_seed(3), output_hidden_states=True, output_attentions=True,
            )
        # the pretraining model's encoder output is exactly PhysioMAEModel's masked forward pass
        torch.testing.assert_close(full.last_hidden_state, alone.last_hidden_state, rtol=0, atol=0)
        for name in ("hidden_states", "attentions"):
            for mine, theirs in zip(getattr(full, name), getattr(alone, name), strict=True):
                torch.testing.assert_close(mine, theirs, rtol=0, atol=0)
        for name in ("mask", "ids_restore", "dropped_modality"):
            assert torch.equal(getattr(full, name), getattr(alone, name)), name
        assert torch.equal(full.visible_token_mask, alone.token_mask)
    assert (full.dropped_modality == -1).all()  # eval mode: no random modality dropout
    assert calls == ["PhysioMAEModel", "PhysioMAEModel"]  # one encoder call per forward pass

    # the other heads run the same single encoder forward, unmasked
    heads = (PhysioMAEForContrastivePreTraining(config), PhysioMAEForSequenceClassification(tiny_config(num_labels=2)))
    for head in heads:
        head.physiomae.load_state_dict(encoder.state_dict())
        head.eval()
        calls.clear()
        head.physiomae.register_forward_hook(lambda module, args, output: calls.append(output))
        with torch.no_grad():
            head(input_values, modality_mask=modality_mask)
            if isinstance(head, PhysioMAEForSequenceClassification):
                reference = encoder.eval()(input_values, modality_mask=modality_mask)
                torch.testing.assert_close(calls[0].pooler_output, reference.pooler_output, rtol=0, atol=0)
        assert len(calls) == 1 and calls[0].mask is None


# ---------------------------------------------------------------------------------------------- modality dropout
@pytest.mark.parametrize("decoder_type", ["in_place", "cross_attention", "bottleneck"])
def test_dropped_modality_is_invisible_to_the_encoder_and_fully_scored(decoder_type):
    config = tiny_config(decoder_type=decoder_type, reconstruction_target="waveform")
    model = PhysioMAEForPreTraining(config).eval()
    batch_size, dropped = 3, 1
    input_values = random_windows(config, batch_size)
    noise = torch.rand(batch_size, config.num_modalities * config.num_patches, generator=torch.Generator().manual_seed(2))
    changed = input_values.clone()
    changed[:, config.modality_channel_slices["eog"]] = 5.0 * torch.randn(batch_size, 1, config.window_length)
    with torch.no_grad():
        first = model(input_values, noise=noise, dropped_modality=dropped)
        second = model(changed, noise=noise, dropped_modality="eog")
    assert (first.dropped_modality == dropped).all()
    # encoder output and every reconstruction are blind to the dropped modality's data
    torch.testing.assert_close(first.last_hidden_state, second.last_hidden_state, rtol=0, atol=0)
    torch.testing.assert_close(first.reconstruction, second.reconstruction, rtol=0, atol=0)
    # ... but its loss is not: all its tokens are hidden and scored
    patches = slice(dropped * config.num_patches, (dropped + 1) * config.num_patches)
    assert (first.mask[:, patches] == 1).all()
    assert not torch.isclose(first.loss_per_modality[dropped], second.loss_per_modality[dropped])
    torch.testing.assert_close(first.loss_per_modality[[0, 2]], second.loss_per_modality[[0, 2]])
    # the dropped modality's loss is the MSE over all its patches
    eog = config.modality_channel_slices["eog"]
    expected = (first.reconstruction[:, eog] - input_values[:, eog]).pow(2).mean()
    torch.testing.assert_close(first.loss_per_modality[dropped], expected)
    # the remaining modalities keep exactly int(0.3 * their tokens) visible
    assert (first.visible_token_mask.sum(dim=1) == expected_visible(2 * config.num_patches)).all()


def test_norm_patch_loss_scores_normalised_patches():
    config = tiny_config(norm_patch_loss=True, reconstruction_target="waveform")
    model = PhysioMAEForPreTraining(config).eval()
    input_values = 3.0 + 2.0 * random_windows(config, 2)
    with torch.no_grad():
        output = model(input_values, dropped_modality="resp", generator=torch.Generator().manual_seed(0))
    resp = config.modality_channel_slices["resp"]
    # (batch, 2, 3000) -> (batch, 30 patches, 2 * 100 values), normalised per patch
    patches = input_values[:, resp].reshape(2, 2, 30, 100).permute(0, 2, 1, 3).reshape(2, 30, 200)
    normalised = (patches - patches.mean(-1, keepdim=True)) / (patches.var(-1, keepdim=True) + 1e-6) ** 0.5
    predicted = output.reconstruction[:, resp].reshape(2, 2, 30, 100).permute(0, 2, 1, 3).reshape(2, 30, 200)
    torch.testing.assert_close(output.loss_per_modality[2], (predicted - normalised).pow(2).mean())
    with pytest.raises(ValueError, match="dropped_modality"):
        model(input_values, dropped_modality="ecg")
    with pytest.raises(ValueError, match="dropped_modality values"):
        model(input_values, dropped_modality=torch.tensor([0, 5]))


def test_random_modality_dropout_batch_and_sample_modes():
    batch_size = 24
    modality_mask = torch.ones(batch_size, 3, dtype=torch.bool)
    modality_mask[0] = torch.tensor([True, False, False])  # a lone modality is never dropped
    modality_mask[1] = torch.tensor([False, True, True])
    input_values = random_windows(tiny_config(), batch_size)

    batch_model = PhysioMAEForPreTraining(tiny_config(modality_dropout_mode="batch")).train()
    seen = set()
    for seed in range(6):
        with torch.no_grad():
            dropped = batch_model(
                input_values, modality_mask=modality_mask, generator=torch.Generator().manual_seed(seed)
            ).dropped_modality
        assert dropped[0] == -1
        chosen = set(dropped[2:].tolist())
        assert len(chosen) == 1 and chosen != {-1}  # the same modality for the whole batch
        seen |= chosen
    assert len(seen) >= 2  # the choice varies with the generator

    sample_model = PhysioMAEForPreTraining(tiny_config(modality_dropout_mode="sample")).train()
    with torch.no_grad():
        output = sample_model(input_values, modality_mask=modality_mask, generator=torch.Generator().manual_seed(0))
    dropped = output.dropped_modality
    assert dropped[0] == -1 and dropped[1] in (1, 2)
    assert len(set(dropped[2:].tolist())) == 3  # per-sample choices differ
    # every sample still has visible tokens, and the dropped modality's tokens are all hidden
    assert (output.visible_token_mask.sum(dim=1) > 0).all()
    for sample in range(batch_size):
        if dropped[sample] >= 0:
            patches = slice(int(dropped[sample]) * 30, (int(dropped[sample]) + 1) * 30)
            assert (output.mask[sample, patches] == 1).all()

    # eval mode and probability 0 never drop unless forced
    assert (sample_model.eval()(input_values[:4]).dropped_modality == -1).all()
    no_dropout = PhysioMAEForPreTraining(tiny_config(modality_dropout_prob=0.0)).train()
    assert (no_dropout(input_values[:4]).dropped_modality == -1).all()


# ---------------------------------------------------------------------------------------------- gradients / determinism
@pytest.mark.parametrize("decoder_type", ["bottleneck", "in_place"])
def test_gradients_reach_every_tokenizer_and_decoder(decoder_type):
    config = tiny_config(modalities=None, modality_dropout_prob=0.0, decoder_type=decoder_type)
    model = PhysioMAEForPreTraining(config).train()
    output = model(random_windows(config, 2), generator=torch.Generator().manual_seed(0))
    output.loss.backward()
    # every modality's slice of the stacked tokenizer and head weights (leading axis = modality)
    tokenizer = model.physiomae.embeddings.tokenizer
    heads = model.decoder.heads if decoder_type == "in_place" else model.decoder.prediction
    for index in range(config.num_modalities):
        for name, parameter in tokenizer.named_parameters():
            assert parameter.grad is not None and parameter.grad[index].abs().sum() > 0, f"tokenizer {index} {name}"
        assert heads.weight.grad[index].abs().sum() > 0, f"decoder head {index}"
        assert tokenizer.spectral_projection.weight.grad[index].abs().sum() > 0, f"spectral projection {index}"
    assert model.physiomae.embeddings.modality_embeddings.grad.abs().sum(dim=1).gt(0).all()


def test_gradient_checkpointing_recomputes_layers_and_keeps_gradients():
    config = tiny_config(decoder_type="in_place", hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    model = PhysioMAEForPreTraining(config).train()
    if not model.supports_gradient_checkpointing:
        pytest.skip("transformers without GradientCheckpointingLayer (< 4.52)")
    input_values = random_windows(config, 3)

    def loss_and_gradients():
        model.zero_grad(set_to_none=True)
        forward_calls = []
        hook = model.physiomae.encoder.layers[0].mlp.register_forward_hook(lambda *args: forward_calls.append(1))
        torch.manual_seed(0)  # dropout; checkpointing replays it with the same random state
        loss = model(input_values, generator=torch.Generator().manual_seed(1)).loss
        loss.backward()
        hook.remove()
        gradients = {
            name: parameter.grad.clone() for name, parameter in model.named_parameters() if parameter.grad is not None
        }
        return loss.detach(), gradients, len(forward_calls)

    plain_loss, plain_gradients, plain_calls = loss_and_gradients()
    # transformers >= 5.24 renamed gradient_checkpointing_* to activation_checkpointing_* (old names still work)
    enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
    disable = getattr(model, "activation_checkpointing_disable", None) or model.gradient_checkpointing_disable
    enable()
    assert getattr(model, "is_activation_checkpointing", None) or model.is_gradient_checkpointing
    layers = [module for module in model.modules() if type(module).__name__ == "PhysioMAELayer"]
    assert len(layers) == config.num_hidden_layers + config.decoder_num_hidden_layers
    assert all(layer.gradient_checkpointing for layer in layers)
    checkpointed_loss, checkpointed_gradients, checkpointed_calls = loss_and_gradients()
    assert (plain_calls, checkpointed_calls) == (1, 2)  # the layer ran again in the backward pass
    torch.testing.assert_close(checkpointed_loss, plain_loss, rtol=0, atol=0)
    assert checkpointed_gradients.keys() == plain_gradients.keys()
    for name, gradient in plain_gradients.items():
        torch.testing.assert_close(checkpointed_gradients[name], gradient, rtol=1e-5, atol=1e-7, msg=name)
    disable()
    assert not any(layer.gradient_checkpointing for layer in layers)


def test_outputs_are_deterministic_given_generator_or_noise():
    config = tiny_config(modality_dropout_mode="sample", modality_dropout_prob=0.5)
    model = PhysioMAEForPreTraining(config).train()
    input_values = random_windows(config, 4)
    first = model(input_values, generator=torch.Generator().manual_seed(7))
    second = model(input_values, generator=torch.Generator().manual_seed(7))
    other = model(input_values, generator=torch.Generator().manual_seed(8))
    torch.testing.assert_close(first.loss, second.loss, rtol=0, atol=0)
    assert torch.equal(first.mask, second.mask) and torch.equal(first.dropped_modality, second.dropped_modality)
    assert not torch.equal(first.mask, other.mask)
    noise = torch.rand(4, 90)
    model.eval()
    torch.testing.assert_close(model(input_values, noise=noise).reconstruction, model(input_values, noise=noise).reconstruction)


# ---------------------------------------------------------------------------------------------- missing modalities
def restricted_encoder(model: PhysioMAEModel, keep: list[int]) -> PhysioMAEModel:
    """An encoder built with only the modalities `keep`, carrying `model`'s weights for them."""
    config = model.config
    names = [config.modality_names[index] for index in keep]
    small = PhysioMAEModel(tiny_config(modalities={name: config.modalities[name] for name in names}, pooling=config.pooling))
    state = {}
    for key, value in small.state_dict().items():
        if key.startswith("embeddings.tokenizer."):
            # per-modality weights: the kept modalities' rows (grouped layers) or slices (stacked layers)
            _, _, layer_name, kind = key.split(".")
            layer, full = getattr(model.embeddings.tokenizer, layer_name), model.state_dict()[key]
            if isinstance(layer, PhysioMAEGroupedLinear) and kind == "weight":
                state[key] = full[[row for modality in keep for row in layer.rows_of_group(modality)]]
            elif isinstance(layer, PhysioMAEGroupedLinear):  # bias (M * out,), modality-major
                state[key] = full.reshape(config.num_modalities, -1)[keep].reshape(-1)
            else:
                state[key] = full[keep]
        elif key == "embeddings.modality_embeddings":
            state[key] = model.embeddings.modality_embeddings.detach()[keep]
        else:
            state[key] = model.state_dict()[key]
    small.load_state_dict(state)
    return small.eval()


@pytest.mark.parametrize("pooling", ["mean", "per_modality"])
def test_any_modality_subset_equals_a_model_that_never_saw_the_absent_data(pooling):
    config = tiny_config(pooling=pooling)
    model = PhysioMAEModel(config).eval()
    modality_mask = all_modality_subsets(config.num_modalities)  # 7 subsets, one batch
    input_values = random_windows(config, len(modality_mask))
    with torch.no_grad():
        reference = model(input_values, modality_mask=modality_mask)
        for fill in (0.0, 1.0e3, float("nan")):
            changed = model(replace_absent_data(config, input_values, modality_mask, fill), modality_mask=modality_mask)
            torch.testing.assert_close(changed.last_hidden_state, reference.last_hidden_state, rtol=0, atol=0)
            torch.testing.assert_close(changed.pooler_output, reference.pooler_output, rtol=0, atol=0)
    assert torch.equal(reference.token_mask, modality_mask.repeat_interleave(config.num_patches, dim=1))
    assert reference.pooler_output.shape == (len(modality_mask), config.embedding_size)

    for sample, present in enumerate(modality_mask):
        keep = present.nonzero().flatten().tolist()
        small = restricted_encoder(model, keep)
        channels = torch.cat([torch.arange(config.num_channels)[list(config.modality_channel_slices.values())[i]] for i in keep])
        with torch.no_grad():
            alone = small(input_values[sample : sample + 1, channels])
        tokens = reference.token_mask[sample]
        torch.testing.assert_close(reference.last_hidden_state[sample, tokens], alone.last_hidden_state[0], atol=2e-5, rtol=1e-4)
        # absent positions are zero and pooling ignores them
        assert (reference.last_hidden_state[sample, ~tokens] == 0).all()
        if pooling == "mean":
            torch.testing.assert_close(reference.pooler_output[sample], alone.pooler_output[0], atol=2e-5, rtol=1e-4)
        else:
            per_modality = reference.pooler_output[sample].reshape(config.num_modalities, config.hidden_size)
            assert (per_modality[~present] == 0).all()
            torch.testing.assert_close(per_modality[present].flatten(), alone.pooler_output[0], atol=2e-5, rtol=1e-4)


def test_pretraining_ignores_absent_modalities_data():
    config = tiny_config()
    model = PhysioMAEForPreTraining(config).eval()
    modality_mask = all_modality_subsets(config.num_modalities)
    input_values = random_windows(config, len(modality_mask))
    noise = torch.rand(len(modality_mask), 90, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        reference = model(input_values, modality_mask=modality_mask, noise=noise, dropped_modality=0)
        changed = model(
            replace_absent_data(config, input_values, modality_mask, float("nan")),
            modality_mask=modality_mask,
            noise=noise,
            dropped_modality=0,
        )
    for field in ("loss", "loss_per_modality", "reconstruction", "mask", "last_hidden_state"):
        torch.testing.assert_close(getattr(changed, field), getattr(reference, field), rtol=0, atol=0, equal_nan=True)
    # eeg is dropped only where it is present together with another modality
    expected = [0 if present[0] and present.sum() > 1 else -1 for present in modality_mask]
    assert reference.dropped_modality.tolist() == expected


def test_input_errors_name_the_problem():
    config = tiny_config()
    model = PhysioMAEModel(config).eval()
    input_values = random_windows(config, 3)
    modality_mask = torch.tensor([[1, 1, 0], [0, 0, 0], [1, 0, 0]], dtype=torch.bool)
    with pytest.raises(ValueError, match=r"sample\(s\) \[1\].*no modality"):
        model(input_values, modality_mask=modality_mask)
    with pytest.raises(ValueError, match=r"sample\(s\) \[1\]"):
        PhysioMAEForPreTraining(config)(input_values, modality_mask=modality_mask)
    with pytest.raises(ValueError, match=r"4 channels.*expects 5.*C3-M2"):
        model(input_values[:, :4])
    with pytest.raises(ValueError, match=r"2999 samples.*expects 3000"):
        model(input_values[:, :, :2999])
    with pytest.raises(ValueError, match=r"modality_mask must have shape"):
        model(input_values, modality_mask=torch.ones(3, 2, dtype=torch.bool))
    broken = input_values.clone()
    broken[2, 3, 10] = float("nan")
    with pytest.raises(ValueError, match=r"sample 2, channel 'ABD'"):
        model(broken)


def test_finite_values_whose_sum_overflows_pass_the_nan_check():
    config = tiny_config()
    input_values = random_windows(config, 2)
    input_values[0, 0, :2] = 3.0e38  # finite; their float32 sum is inf
    with torch.no_grad():
        output = PhysioMAEModel(config).eval()(input_values)
    assert output.last_hidden_state.shape[0] == 2


def test_masked_forward_returns_the_band_powers_its_tokens_and_targets_use():
    from modeling_physiomae.modeling_physiomae import log_band_powers, spectral_band_matrix

    config = tiny_config()
    model = PhysioMAEForPreTraining(config).train()
    modality_mask = torch.tensor([[1, 1, 1], [1, 0, 1]], dtype=torch.bool)
    input_values = random_windows(config, 2)
    with torch.no_grad():
        encoded = model.physiomae(input_values, modality_mask=modality_mask, apply_masking=True)
        patches = encoded.input_values.reshape(2, config.num_channels, config.num_patches, -1)
        expected = log_band_powers(patches, spectral_band_matrix(config.patch_length, config.sampling_rate))
        torch.testing.assert_close(encoded.log_band_powers, expected, rtol=0, atol=0)
        torch.testing.assert_close(model.raw_targets(encoded.input_values, encoded.log_band_powers),
                                   model.raw_targets(encoded.input_values), rtol=0, atol=0)
        assert model.physiomae(input_values).log_band_powers is None  # without masking
        spectral_free = PhysioMAEModel(tiny_config(tokenizer_type="conv"))
        assert spectral_free(input_values, apply_masking=True).log_band_powers is None


def test_training_step_after_a_first_forward_under_inference_mode():
    """The index and weight tables derived from the config are made once per device and reused; one first made
    under inference_mode must still serve a training step (an inference tensor cannot be saved for backward)."""
    from modeling_physiomae import modeling_physiomae

    config = tiny_config()
    model = PhysioMAEForPreTraining(config)
    input_values = random_windows(config, 2)
    modeling_physiomae._CONSTANT_TENSORS.clear()
    with torch.inference_mode():
        model.eval()(input_values)
    model.train()(input_values).loss.backward()
    assert model.physiomae.embeddings.tokenizer.convolution.weight.grad is not None


# ---------------------------------------------------------------------------------------------- attention
def test_output_attentions_shapes_rows_and_masking():
    config = tiny_config()
    model = PhysioMAEModel(config).eval()
    modality_mask = torch.tensor([[1, 1, 1], [1, 0, 1], [0, 1, 0]], dtype=torch.bool)
    input_values = random_windows(config, 3)
    with torch.no_grad():
        explicit = model(input_values, modality_mask=modality_mask, output_attentions=True, output_hidden_states=True)
        fused = model(input_values, modality_mask=modality_mask)
    sequence_length = config.num_modalities * config.num_patches
    assert len(explicit.attentions) == config.num_hidden_layers
    assert len(explicit.hidden_states) == config.num_hidden_layers + 1
    token_mask = explicit.token_mask
    for attention in explicit.attentions:
        assert attention.shape == (3, config.num_attention_heads, sequence_length, sequence_length)
        torch.testing.assert_close(attention.sum(dim=-1), torch.ones(attention.shape[:-1]))
        for sample in range(3):
            present_rows = attention[sample][:, token_mask[sample]]  # (heads, present queries, keys)
            assert (present_rows[..., ~token_mask[sample]] == 0).all()
    # the explicit path and scaled_dot_product_attention agree
    torch.testing.assert_close(explicit.last_hidden_state, fused.last_hidden_state, atol=1e-5, rtol=1e-4)


def test_late_fusion_blocks_attention_across_modalities():
    config = tiny_config(fusion="late")
    model = PhysioMAEModel(config).eval()
    input_values = random_windows(config, 2)
    with torch.no_grad():
        output = model(input_values, output_attentions=True)
        reference = model(input_values)
        changed_input = input_values.clone()
        changed_input[:, config.modality_channel_slices["eog"]] += 3.0
        changed = model(changed_input)
    modality_of_token = torch.arange(config.num_modalities).repeat_interleave(config.num_patches)
    cross = modality_of_token[:, None] != modality_of_token[None, :]
    for attention in output.attentions:
        assert (attention[:, :, cross] == 0).all()
        assert attention[:, :, ~cross].sum() > 0
    # other modalities' tokens do not change when eog changes
    others = modality_of_token != 1
    torch.testing.assert_close(changed.last_hidden_state[:, others], reference.last_hidden_state[:, others], rtol=0, atol=0)
    assert not torch.allclose(changed.last_hidden_state[:, ~others], reference.last_hidden_state[:, ~others])

    early = PhysioMAEModel(tiny_config()).eval()
    with torch.no_grad():
        attention = early(input_values, output_attentions=True).attentions[0]
    assert attention[:, :, cross].sum() > 0


# ---------------------------------------------------------------------------------------------- contrastive
def correlated_toy_windows(config: PhysioMAEConfig, batch_size: int, seed: int) -> torch.Tensor:
    """Every modality of a sample carries the same latent rhythm (frequency and amplitude) plus noise."""
    generator = torch.Generator().manual_seed(seed)
    time = torch.arange(config.window_length) / config.sampling_rate
    frequency = 0.3 + 4.0 * torch.rand(batch_size, 1, 1, generator=generator)
    amplitude = 0.5 + 1.5 * torch.rand(batch_size, 1, 1, generator=generator)
    phase = 2 * math.pi * torch.rand(batch_size, config.num_channels, 1, generator=generator)
    signal = amplitude * torch.sin(2 * math.pi * frequency * time + phase)
    return signal + 0.2 * torch.randn(batch_size, config.num_channels, config.window_length, generator=generator)


@pytest.mark.parametrize("loss_name", ["pairwise", "loo"])
def test_contrastive_loss_is_finite_and_falls(loss_name):
    torch.manual_seed(0)
    config = tiny_config(contrastive_loss=loss_name)
    model = PhysioMAEForContrastivePreTraining(config).train()
    assert model.config.fusion == "late"
    assert torch.isclose(model.logit_scale.detach(), torch.tensor(math.log(1 / config.contrastive_temperature)))
    input_values = correlated_toy_windows(config, 16, seed=1)
    modality_mask = torch.ones(16, 3, dtype=torch.bool)
    modality_mask[3, 1] = False  # missing modalities are excluded per sample
    modality_mask[5, [0, 2]] = False
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4)
    losses = []
    for _ in range(20):
        output = model(input_values, modality_mask=modality_mask)
        assert torch.isfinite(output.loss)
        optimizer.zero_grad()
        output.loss.backward()
        optimizer.step()
        losses.append(output.loss.item())
    assert output.modality_embeddings.shape == (16, 3, config.projection_dim)
    norms = output.modality_embeddings.norm(dim=-1)
    torch.testing.assert_close(norms[modality_mask], torch.ones(int(modality_mask.sum())))
    assert (norms[~modality_mask] == 0).all()
    # starts near log(16); over 3 seeds tried, the last three steps average 0.6-0.86 of the first three
    assert sum(losses[-3:]) / 3 < 0.9 * sum(losses[:3]) / 3, losses


def test_contrastive_single_sample_gives_zero_loss_with_graph():
    model = PhysioMAEForContrastivePreTraining(tiny_config())
    output = model(random_windows(model.config, 1))
    assert output.loss.item() == 0.0 and output.loss.requires_grad


# ---------------------------------------------------------------------------------------------- classification
def test_classification_problem_types():
    config = tiny_config(num_labels=3)
    model = PhysioMAEForSequenceClassification(config).eval()
    input_values = random_windows(config, 4)
    output = model(input_values, labels=torch.tensor([0, 2, -1, 1]))
    assert output.logits.shape == (4, 3) and torch.isfinite(output.loss)
    assert model.config.problem_type == "single_label_classification"
    # ignored label (-1) does not enter the loss
    expected = torch.nn.functional.cross_entropy(output.logits[[0, 1, 3]], torch.tensor([0, 2, 1]))
    torch.testing.assert_close(output.loss, expected)

    multi = PhysioMAEForSequenceClassification(tiny_config(num_labels=3, problem_type="multi_label_classification"))
    assert torch.isfinite(multi(input_values, labels=torch.ones(4, 3)).loss)
    regression = PhysioMAEForSequenceClassification(tiny_config(num_labels=1))
    out = regression(input_values, labels=torch.randn(4))
    assert regression.config.problem_type == "regression" and torch.isfinite(out.loss)
    per_modality = PhysioMAEForSequenceClassification(tiny_config(num_labels=2, pooling="per_modality"))
    assert per_modality.classifier.in_features == 3 * 32
    # extra keyword arguments from training loops are tolerated
    assert model(input_values, extra_column=torch.zeros(4), num_items_in_batch=4).logits.shape == (4, 3)


class WindowDataset(torch.utils.data.Dataset):
    """16 toy windows whose label is the dominant rhythm band."""

    def __init__(self, config: PhysioMAEConfig):
        self.input_values = correlated_toy_windows(config, 16, seed=4)
        self.labels = torch.arange(16) % config.num_labels
        self.modality_mask = torch.ones(16, config.num_modalities, dtype=torch.bool)
        self.modality_mask[::4, 1] = False

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return {
            "input_values": self.input_values[index],
            "modality_mask": self.modality_mask[index],
            "labels": self.labels[index],
            "record_index": torch.tensor(index),  # an extra column the model must tolerate
        }


def test_trainer_fine_tunes_classifier_from_saved_pretrained_folder(tmp_path):
    from transformers import Trainer, TrainingArguments

    pretrained = PhysioMAEForPreTraining(tiny_config())
    pretrained.save_pretrained(tmp_path / "pretrained")
    classifier = PhysioMAEForSequenceClassification.from_pretrained(
        tmp_path / "pretrained", num_labels=3, id2label={0: "a", 1: "b", 2: "c"}, label2id={"a": 0, "b": 1, "c": 2}
    )
    # the encoder came from the pretrained folder, the head is new
    for name, parameter in pretrained.physiomae.state_dict().items():
        torch.testing.assert_close(classifier.physiomae.state_dict()[name], parameter)
    head_before = classifier.classifier.weight.detach().clone()
    arguments = TrainingArguments(
        output_dir=str(tmp_path / "trainer"),
        use_cpu=True,
        report_to=[],
        max_steps=2,
        per_device_train_batch_size=8,
        learning_rate=1e-3,
        save_strategy="no",
        logging_steps=1,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    trainer = Trainer(model=classifier, args=arguments, train_dataset=WindowDataset(classifier.config))
    result = trainer.train()
    assert trainer.state.global_step == 2
    assert math.isfinite(result.training_loss)
    assert not torch.equal(classifier.classifier.weight.detach(), head_before)
    logged = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(logged) == 2 and all(math.isfinite(value) for value in logged)


def test_auto_model_loads_encoder_of_pretraining_and_contrastive_folders(tmp_path):
    from transformers import AutoModel

    for model in (PhysioMAEForPreTraining(tiny_config()), PhysioMAEForContrastivePreTraining(tiny_config())):
        folder = tmp_path / type(model).__name__
        model.save_pretrained(folder)
        # a plain save_pretrained writes a Hub folder: weights, config with auto_map, and the code files
        assert sorted(path.name for path in folder.iterdir()) == sorted(["config.json", "model.safetensors", *HUB_CODE_FILES])
        encoder = AutoModel.from_pretrained(folder)
        assert isinstance(encoder, PhysioMAEModel)
        for name, parameter in model.physiomae.state_dict().items():
            torch.testing.assert_close(encoder.state_dict()[name], parameter, rtol=0, atol=0)
        assert encoder.config.fusion == model.config.fusion


# ---------------------------------------------------------------------------------------------- reconstruction targets
def test_log_band_powers_put_a_sinusoid_in_its_band():
    from modeling_physiomae.modeling_physiomae import SPECTRAL_BANDS_HZ, log_band_powers, spectral_band_matrix

    band_matrix = spectral_band_matrix(100, 100)
    matrix = torch.tensor(band_matrix)
    assert matrix.shape == (51, len(SPECTRAL_BANDS_HZ))  # 1-s patches at 100 Hz resolve all six bands
    torch.testing.assert_close(matrix.sum(dim=0), torch.ones(len(SPECTRAL_BANDS_HZ)))
    seconds = torch.arange(100) / 100.0
    for frequency, expected_band in ((2.0, 0), (10.0, 2), (14.0, 3), (40.0, 5)):
        patch = torch.sin(2 * math.pi * frequency * seconds)[None, None, None, :]  # (batch, P, channels, L)
        powers = log_band_powers(patch, band_matrix)[0, 0, 0]  # (bands,)
        assert int(powers.argmax()) == expected_band, (frequency, powers)
    # log power scales with amplitude squared: x3 amplitude adds log(9) where the power is
    tone = torch.sin(2 * math.pi * 10.0 * seconds)[None, None, None, :]
    difference = log_band_powers(3 * tone, band_matrix, eps=0.0) - log_band_powers(tone, band_matrix, eps=0.0)
    torch.testing.assert_close(difference[0, 0, 0, 2], torch.tensor(math.log(9.0)), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("target", ["log_band_power", "waveform+log_band_power"])
def test_target_statistics_standardise_and_predicting_the_mean_scores_one(target):
    config = tiny_config(reconstruction_target=target)
    model = PhysioMAEForPreTraining(config).eval()
    input_values = random_windows(config, 6)
    input_values[:, config.modality_channel_slices["resp"].start] = 0.0  # a silent channel: zero variance
    modality_mask = torch.ones(6, config.num_modalities, dtype=torch.bool)
    counts = model.set_target_statistics([(input_values[:3], modality_mask[:3]), (input_values[3:], modality_mask[3:])])
    assert counts == {name: 6 * config.num_patches for name in config.modality_names}
    for index, raw_target in enumerate(model.unpad_targets(model.raw_targets(input_values))):
        mean, std, weight = model.target_statistics(index)
        standardised = (raw_target - mean) / std
        flat = standardised.flatten(0, 1)
        valid = weight > 0
        torch.testing.assert_close(flat.mean(0)[valid], torch.zeros(int(valid.sum())), atol=1e-4, rtol=0)
        # each target part weighs 1 / number of parts
        torch.testing.assert_close(weight.sum(), torch.tensor(1.0))
    resp_weight = model.target_statistics(config.modality_names.index("resp"))[2]
    assert (resp_weight == 0).sum() > 0  # the silent channel's dimensions are left out
    # a model whose decoders predict 0 (= the training mean in standardised units) scores exactly 1 on that data
    torch.nn.init.zeros_(model.decoder.prediction.weight)
    torch.nn.init.zeros_(model.decoder.prediction.bias)
    with torch.no_grad():
        output = model(input_values, modality_mask=modality_mask, generator=torch.Generator().manual_seed(0))
    ratio = output.reconstruction_error_sum / output.reconstruction_reference_sum
    torch.testing.assert_close(ratio, torch.ones(config.num_modalities))


def test_bottleneck_decoders_see_only_the_pooled_modality_embeddings():
    config = tiny_config(decoder_type="bottleneck")
    model = PhysioMAEForPreTraining(config).eval()
    input_values = random_windows(config, 2)
    noise = torch.rand(2, config.num_modalities * config.num_patches, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        output = model(input_values, noise=noise)
        # every patch of a modality gets a prediction that differs only by its learned time position: replacing
        # the time positions by one shared vector makes all patches' predictions equal
        positions = model.decoder.time_position_embeddings  # (modality, P, width)
        positions.copy_(positions[:, :1].expand_as(positions))
        flat = model(input_values, noise=noise)
    assert not torch.allclose(output.predicted_targets[0][:, 0], output.predicted_targets[0][:, 1])
    torch.testing.assert_close(flat.predicted_targets[0][:, 0], flat.predicted_targets[0][:, 1])


def test_classifier_labels_outside_num_labels_are_a_clear_error():
    from modeling_physiomae import PhysioMAEForSequenceClassification

    config = tiny_config(num_labels=5)
    model = PhysioMAEForSequenceClassification(config).eval()
    values = torch.randn(2, len(config.channel_names), config.window_length)
    model(values, labels=torch.tensor([0, -1]))  # negative labels are ignored, not an error
    with pytest.raises(ValueError, match=r"labels \[7\] are outside the classifier's 5 classes"):
        model(values, labels=torch.tensor([7, 2]))
