"""PhysioMAEConfig: derived sizes, validation messages that name the field, JSON round trip."""

import pytest

from modeling_physiomae.configuration_physiomae import DEFAULT_MODALITIES, PhysioMAEConfig


def test_defaults_match_the_paper_layout():
    config = PhysioMAEConfig()
    assert config.num_hidden_layers == 8 and config.num_attention_heads == 8
    assert config.mask_ratio == pytest.approx(0.7)
    assert config.channel_names == [channel for channels in DEFAULT_MODALITIES.values() for channel in channels]
    assert config.num_channels == 13 and config.num_modalities == 6
    assert (config.window_length, config.patch_length, config.num_patches) == (3000, 100, 30)
    assert config.modality_channel_slices["resp"] == slice(8, 11)


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"window_seconds": 30.5}, "window_seconds"),
        ({"patch_seconds": 0.001, "sampling_rate": 100}, "patch_seconds"),
        ({"modalities": {"eeg": ["C4-M1"], "eog": ["c4-m1"]}}, "modalities"),
        ({"modalities": {"eeg": []}}, "modalities"),
        ({"hidden_size": 100, "num_attention_heads": 8}, "num_attention_heads"),
        ({"decoder_hidden_size": 30, "decoder_num_attention_heads": 4}, "decoder_num_attention_heads"),
        ({"mask_ratio": 0.0}, "mask_ratio"),
        ({"mask_ratio": 1.0}, "mask_ratio"),
        ({"modality_dropout_prob": 1.5}, "modality_dropout_prob"),
        ({"fusion": "middle"}, "fusion"),
        ({"pooling": "max"}, "pooling"),
        ({"contrastive_loss": "triplet"}, "contrastive_loss"),
    ],
)
def test_impossible_config_names_the_field(overrides, field):
    with pytest.raises(ValueError, match=rf"PhysioMAEConfig\.{field}"):
        PhysioMAEConfig(**overrides)


def test_json_round_trip_keeps_modality_order(tmp_path):
    # Not alphabetical on purpose: JSON with sort_keys would silently reorder the channels.
    modalities = {"resp": ["ABD"], "ecg": ["ECG"], "eeg": ["C4-M1", "O2-M1"]}
    config = PhysioMAEConfig(modalities=modalities, hidden_size=64, num_attention_heads=4, pooling="per_modality")
    config.save_pretrained(tmp_path)
    loaded = PhysioMAEConfig.from_pretrained(tmp_path)
    assert list(loaded.modalities) == ["resp", "ecg", "eeg"]
    assert loaded.channel_names == ["ABD", "ECG", "C4-M1", "O2-M1"]
    assert loaded.embedding_size == 3 * 64
    assert loaded.to_dict()["modalities"] == modalities
