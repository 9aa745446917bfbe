"""physiomae/saved_dataset.py: locating a saved dataset, its splits, its recorded layout, and mapping its channels to
a model; train.py's collator and eval.py's encoder read a dataset in another channel order the same way."""
from __future__ import annotations

import json

import numpy as np
import pytest

from modeling_physiomae import PhysioMAEConfig, PhysioMAEFeatureExtractor
from modeling_physiomae.configuration_physiomae import ChannelLayout
from physiomae.saved_dataset import (
    ChannelMapping, dataset_layout, feature_extractor_settings, load_split, load_splits, locate_saved_dataset,
)


def write_dataset(path, modalities=None, num_windows=12, seed=0, extractor_kwargs=None):
    """A DatasetDict in the builder's schema and metadata (`helpers.builder_split`) for the layout `modalities`
    (default: the builder's), in which every channel carries its own signal, whatever its position."""
    import datasets

    from helpers import builder_split

    channels = [channel for channels in (modalities or PhysioMAEConfig().modalities).values() for channel in channels]
    random = np.random.default_rng(seed)
    base = {name: random.standard_normal((num_windows, 3000)) for name in sorted(channels)}
    channel_mask = np.ones((num_windows, len(channels)), dtype=bool)
    channel_mask[::3, channels.index("ECG")] = False  # some windows lack the ECG
    rows = {"input_values": np.stack([base[name] for name in channels], axis=1), "channel_mask": channel_mask,
            "sleep_stage": [index % 5 for index in range(num_windows)],
            "window": [index % 4 for index in range(num_windows)]}

    def split(prefix):
        records = [f"{prefix}00-{index // 4:04d}" for index in range(num_windows)]
        return builder_split({**rows, "record": records}, modalities, **(extractor_kwargs or {}))

    datasets.DatasetDict({"pretrain": split("te"), "probe_train": split("tr"), "probe_test": split("tr")}).save_to_disk(str(path))
    return path


PERMUTED = {"resp": ["Chest", "ABD", "AIRFLOW"], "ecg": ["ECG"], "spo2": ["SaO2"], "emg": ["Chin1-Chin2"],
            "eog": ["E1-M2"], "eeg": ["O2-M1", "C4-M1", "C3-M2", "O1-M2", "F4-M1", "F3-M2"]}


def test_locate_and_load_splits(tmp_path):
    write_dataset(tmp_path / "build" / "dataset")
    assert locate_saved_dataset(tmp_path / "build") == tmp_path / "build" / "dataset"
    assert locate_saved_dataset(tmp_path / "build" / "dataset") == tmp_path / "build" / "dataset"
    with pytest.raises(FileNotFoundError, match=r"--dataset_dir .*nowhere holds no dataset .*nowhere/dataset"):
        locate_saved_dataset(tmp_path / "nowhere")
    assert len(load_split(tmp_path / "build", "pretrain")) == 12
    assert load_split(tmp_path / "build", "unlabelled")["record"][0].startswith("tr")  # falls back to probe_train
    with pytest.raises(KeyError, match=r"'validation' is absent .*available splits: \['pretrain', 'probe_train', 'probe_test'\]"):
        load_splits(tmp_path / "build", ["validation"])


def test_layout_and_extractor_settings_are_read_from_the_dataset(tmp_path):
    import datasets

    write_dataset(tmp_path / "d", modalities=PERMUTED, extractor_kwargs={"clip_value": 7.5})
    split = datasets.load_from_disk(str(tmp_path / "d"))["probe_train"]
    layout = dataset_layout(split)
    assert layout.modalities == PERMUTED and layout.channel_names[:2] == ["Chest", "ABD"] and layout.sampling_rate == 100
    assert feature_extractor_settings(split)["clip_value"] == 7.5
    assert dataset_layout(datasets.Dataset.from_dict({"x": [1]})).modalities == PhysioMAEConfig().modalities
    old_style = datasets.Dataset.from_dict({"x": [1]}, info=datasets.DatasetInfo(description=json.dumps(
        {"channel_names": PhysioMAEConfig().channel_names})))  # datasets saved before `modalities` was recorded
    assert dataset_layout(old_style).modalities == PhysioMAEConfig().modalities
    assert dataset_layout(old_style).sampling_rate is None  # not recorded: unknown, not assumed


def test_one_layout_type_for_config_extractor_and_saved_dataset(tmp_path):
    """The config, the feature extractor and a saved dataset all give a `ChannelLayout`, and they agree: the same
    channels, modalities, slices and modality mask."""
    import datasets

    config = PhysioMAEConfig(modalities=PERMUTED)
    extractor = PhysioMAEFeatureExtractor.from_config(config)
    write_dataset(tmp_path / "d", modalities=PERMUTED)
    saved = dataset_layout(datasets.load_from_disk(str(tmp_path / "d"))["probe_train"])
    assert config.channel_layout == extractor.channel_layout == saved == ChannelLayout(PERMUTED, 100, 30.0)
    assert (config.channel_names, config.modality_channel_slices, config.window_length) == (
        saved.channel_names, saved.modality_channel_slices, saved.window_length)
    channel_mask = np.zeros((2, saved.num_channels), dtype=bool)
    channel_mask[0, saved.channel_names.index("ECG")] = True
    expected = np.zeros((2, saved.num_modalities), dtype=bool)
    expected[0, saved.modality_names.index("ecg")] = True
    assert np.array_equal(saved.modality_mask(channel_mask), expected)
    assert np.array_equal(extractor.modality_mask_from_channel_mask(channel_mask), expected)


def test_channel_mapping_selects_model_channels_by_name():
    from helpers import tiny_config

    layout = ChannelLayout(modalities=PERMUTED)
    config = tiny_config()
    mapping = ChannelMapping.for_config(config, layout)
    values = np.arange(13)[None, :, None] * np.ones((2, 13, 4))  # value = dataset channel index
    channel_mask = np.ones((2, 13), dtype=bool)
    channel_mask[1, layout.channel_names.index("ECG")] = False
    model_values, modality_mask = mapping.model_inputs(values, channel_mask, removed_modality="eog")
    picked = [layout.channel_names[int(index)] for index in model_values[0, :, 0]]
    assert [name.lower() for name in picked] == [name.lower() for name in config.channel_names]  # "Chest" is CHEST
    ecg, eog = config.modality_names.index("ecg"), config.modality_names.index("eog")
    assert modality_mask[:, ecg].tolist() == [True, False] and not modality_mask[:, eog].any()
    without_c4 = {name: [channel for channel in channels if channel != "C4-M1"] for name, channels in PERMUTED.items()}
    with pytest.raises(ValueError, match=r"model channels \['C4-M1'\] are not in the dataset's channels"):
        ChannelMapping.for_config(config, ChannelLayout(modalities=without_c4))


def test_train_collator_and_eval_encoder_read_a_permuted_dataset_like_the_builders(tmp_path):
    """The same windows stored in another channel order (recorded in the dataset's info) give the same training
    batches and the same frozen embeddings: train.py and eval.py share one reader."""
    import datasets
    import torch

    from helpers import tiny_config
    from modeling_physiomae import PhysioMAEModel
    from physiomae.evaluation import probing
    from physiomae.evaluation.data import load_probe_data
    from physiomae.training.data import ArrowWindowDataset, WindowCollator

    write_dataset(tmp_path / "builder_order")
    write_dataset(tmp_path / "permuted", modalities=PERMUTED)
    config = tiny_config()
    splits = {name: datasets.load_from_disk(str(tmp_path / name))["pretrain"] for name in ("builder_order", "permuted")}
    batches = {name: ArrowWindowDataset(split, WindowCollator(config, dataset_layout(split))).__getitems__(list(range(12)))
               for name, split in splits.items()}
    assert torch.equal(batches["builder_order"]["input_values"], batches["permuted"]["input_values"])
    assert torch.equal(batches["builder_order"]["modality_mask"], batches["permuted"]["modality_mask"])
    assert not batches["permuted"]["modality_mask"].all()  # the ECG gaps came through

    torch.manual_seed(0)
    encoder = PhysioMAEModel(config).eval()
    data = {name: load_probe_data(tmp_path / name) for name in ("builder_order", "permuted")}  # eval.py's reader
    assert data["permuted"].layout.modalities == PERMUTED
    embeddings = {name: probing.encode_windows(encoder, item.test_split, layout=item.layout).embeddings
                  for name, item in data.items()}
    np.testing.assert_allclose(embeddings["builder_order"], embeddings["permuted"], rtol=0, atol=1e-6)


def test_channel_layouts_differ_in_channel_order():
    """The channel order is the layout: the same modalities in another order are another layout."""
    assert ChannelLayout(PERMUTED) != ChannelLayout(dict(reversed(list(PERMUTED.items()))))
    assert ChannelLayout(PERMUTED) == ChannelLayout({name: list(channels) for name, channels in PERMUTED.items()})
