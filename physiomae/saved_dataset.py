"""A dataset saved by the builder (`dataset_scripts.physionet2018`, `save_to_disk`), as train.py, eval.py and
finetune.py read it: where it is, its splits, its channel layout, how its channels feed a model, and the
feature-extractor settings it was built with.

Layout: the builder records the axes of `input_values` / `channel_mask` / `modality_mask` in the dataset's
`info.description` (JSON with `channel_names`, `modalities`, `sampling_rate`, `window_seconds` and
`feature_extractor`, the extractor's `to_dict()`). A dataset without that metadata has the default layout
(`PhysioMAEConfig()`'s 13 channels in 6 modalities).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from modeling_physiomae.configuration_physiomae import ChannelLayout

logger = logging.getLogger(__name__)

SAVED_DATASET_MARKERS = ("dataset_dict.json", "dataset_info.json")
BUILD_REPORT_NAME = "build_report.json"


# ----------------------------------------------------------------------------------------------- location
def is_saved_dataset(path: str | Path | None) -> bool:
    """Whether `path` is a `save_to_disk` folder (a DatasetDict or a single Dataset)."""
    return path is not None and any((Path(path) / name).is_file() for name in SAVED_DATASET_MARKERS)


def find_saved_dataset(path: str | Path) -> Path | None:
    """The saved dataset at `path` or in `path/dataset`; None when neither holds one."""
    for candidate in (Path(path), Path(path) / "dataset"):
        if is_saved_dataset(candidate):
            return candidate
    return None


def locate_saved_dataset(path: str | Path, argument: str = "--dataset_dir") -> Path:
    """The saved dataset at `path`, or in `path/dataset` (the builder's output folder: dataset/ +
    build_report.json). FileNotFoundError naming both places otherwise."""
    found = find_saved_dataset(path)
    if found is not None:
        return found
    path = Path(path)
    raise FileNotFoundError(
        f"{argument} {path} holds no dataset saved with save_to_disk (looked for {' / '.join(SAVED_DATASET_MARKERS)} "
        f"in it and in {path / 'dataset'}); build it with `python -m dataset_scripts.physionet2018 build "
        f"--data_dir RAW --output_dir {path}` (or `physiomae-build`)"
    )


def load_split(dataset_dir: str | Path, split: str, fallbacks: Sequence[str] = ("probe_train", "train")):
    """Split `split` of the saved dataset; the first present of `fallbacks` (with a warning) when it is absent.
    A folder holding a single Dataset is that split. KeyError naming the splits there otherwise."""
    return load_splits(dataset_dir, [split], fallbacks={split: fallbacks})[split]


def load_splits(dataset_dir: str | Path, splits: Sequence[str], fallbacks: dict[str, Sequence[str]] | None = None):
    """`{name: Dataset}` for each of `splits` of the saved dataset at `dataset_dir` (see `locate_saved_dataset`).
    A name `a+b` is splits `a` and `b` concatenated (no fallback applies to its parts)."""
    import datasets

    dataset_dir = locate_saved_dataset(dataset_dir)
    loaded = datasets.load_from_disk(str(dataset_dir))
    if isinstance(loaded, datasets.Dataset):
        if len(splits) > 1:
            raise ValueError(f"{dataset_dir} holds a single Dataset, not the splits {list(splits)}")
        logger.info("%s holds a single Dataset; using it as split %s", dataset_dir, splits[0])
        return {splits[0]: loaded}
    result = {}
    for split in splits:
        if split in loaded:
            result[split] = loaded[split]
            continue
        if "+" in split:  # datasets' split syntax: "pretrain+probe_train" is both, concatenated in that order
            parts = [part.strip() for part in split.split("+")]
            absent = [part for part in parts if part not in loaded]
            if absent or not all(parts):
                raise KeyError(f"split {split!r}: {absent or 'an empty name'} not in {dataset_dir}; "
                               f"available splits: {list(loaded)}")
            result[split] = datasets.concatenate_datasets([loaded[part] for part in parts])
            continue
        fallback = next((name for name in (fallbacks or {}).get(split, ()) if name in loaded), None)
        if fallback is None:
            raise KeyError(f"split {split!r} is absent from {dataset_dir}; available splits: {list(loaded)}")
        logger.warning("split %r is absent from %s (splits: %s); falling back to %r", split, dataset_dir,
                       list(loaded), fallback)
        result[split] = loaded[fallback]
    return result


def build_report(dataset_dir: str | Path) -> dict[str, Any] | None:
    """The builder's build_report.json next to the saved dataset (in it, or in its parent), None when absent."""
    dataset_dir = Path(dataset_dir)
    for path in (dataset_dir / BUILD_REPORT_NAME, dataset_dir.parent / BUILD_REPORT_NAME):
        if path.is_file():
            try:
                return json.loads(path.read_text())
            except (OSError, ValueError) as error:
                logger.warning("%s is unreadable (%s); ignored", path, error)
                return None
    return None


# ----------------------------------------------------------------------------------------------- layout
def _description_metadata(dataset) -> dict[str, Any]:
    """The builder's JSON in `dataset.info.description`; {} when there is none."""
    description = getattr(getattr(dataset, "info", None), "description", None) or ""
    try:
        return json.loads(description) if description.strip().startswith("{") else {}
    except json.JSONDecodeError:
        return {}


def dataset_layout(dataset) -> ChannelLayout:
    """The channel layout recorded in `dataset.info.description` (the builder's JSON), the default layout otherwise;
    `sampling_rate` / `window_seconds` are None where the dataset does not record them.

    Older datasets recorded only `channel_names` / `modality_names`: their modalities are then split by the
    default modalities' channel counts when those add up, else each channel is its own modality."""
    metadata = _description_metadata(dataset)
    default = ChannelLayout().modalities
    modalities = metadata.get("modalities")
    if not modalities and metadata.get("channel_names"):
        channel_names = list(metadata["channel_names"])
        if [channel for channels in default.values() for channel in channels] == channel_names:
            modalities = default
        else:
            modalities = {name: [name] for name in channel_names}
    return ChannelLayout(
        modalities={name: list(channels) for name, channels in (modalities or default).items()},
        sampling_rate=metadata.get("sampling_rate"),
        window_seconds=metadata.get("window_seconds"),
    )


def check_window_geometry(dataset, config) -> None:
    """The dataset's windows must have the model's sampling rate and length (sampling rate x window seconds)."""
    layout = dataset_layout(dataset)
    if layout.sampling_rate is not None and int(layout.sampling_rate) != int(config.sampling_rate):
        raise ValueError(f"the dataset's windows are sampled at {layout.sampling_rate} Hz but the model expects "
                         f"{config.sampling_rate} Hz")
    feature = dataset.features.get("input_values")
    shape = getattr(feature, "shape", None)
    if shape is not None and shape[-1] != config.window_length:
        raise ValueError(
            f"the dataset's windows have {shape[-1]} samples but the model expects {config.window_length} "
            f"({config.window_seconds} s at {config.sampling_rate} Hz)"
        )


def feature_extractor_settings(dataset, dataset_dir: str | Path | None = None) -> dict[str, Any] | None:
    """The feature-extractor settings the dataset was built with: its layout metadata, else the build report's
    `feature_extractor` (datasets built before the metadata carried it), else None (unknown)."""
    settings = _description_metadata(dataset).get("feature_extractor")
    if settings is None and dataset_dir is not None:
        settings = (build_report(dataset_dir) or {}).get("feature_extractor")
    return dict(settings) if settings else None


# ----------------------------------------------------------------------------------------------- channel mapping
@dataclass(frozen=True)
class ChannelMapping:
    """How a dataset's channels feed a model whose config may hold a subset of them (unimodal models) in any
    order. Channels match by name, case-insensitively.

    Attributes:
        dataset_channel_index (`list[int]`): for each model channel (config order), its index in the dataset.
        model_modality_names (`list[str]`): the model's modalities in config order.
        modality_channel_index (`list[list[int]]`): for each model modality, the dataset indices of its channels.
        modality_source (`list[int | None]`): for each model modality, the dataset modality of the same name and
            the same channels (its `modality_mask` column), or None.
    """

    dataset_channel_index: list[int]
    model_modality_names: list[str]
    modality_channel_index: list[list[int]]
    modality_source: list[int | None]
    num_dataset_channels: int
    num_dataset_modalities: int

    @classmethod
    def for_config(cls, config, layout: ChannelLayout | None = None) -> "ChannelMapping":
        layout = layout or ChannelLayout()
        lookup = {name.lower(): index for index, name in enumerate(layout.channel_names)}
        missing = [name for name in config.channel_names if name.lower() not in lookup]
        if missing:
            raise ValueError(f"model channels {missing} are not in the dataset's channels {layout.channel_names}")
        dataset_modalities = {name: [channel.lower() for channel in channels]
                              for name, channels in layout.modalities.items()}
        modality_source = []
        for name, channels in config.modalities.items():
            same = dataset_modalities.get(name) == [channel.lower() for channel in channels]
            modality_source.append(layout.modality_names.index(name) if same else None)
        return cls(
            dataset_channel_index=[lookup[name.lower()] for name in config.channel_names],
            model_modality_names=list(config.modalities),
            modality_channel_index=[[lookup[channel.lower()] for channel in channels]
                                    for channels in config.modalities.values()],
            modality_source=modality_source,
            num_dataset_channels=len(layout.channel_names),
            num_dataset_modalities=len(layout.modalities),
        )

    @property
    def is_identity(self) -> bool:
        return self.dataset_channel_index == list(range(self.num_dataset_channels))

    def model_values(self, input_values: np.ndarray) -> np.ndarray:
        """(batch, dataset_channels, samples) -> (batch, model_channels, samples); no copy when the orders agree."""
        return input_values if self.is_identity else input_values[:, self.dataset_channel_index]

    def model_modality_mask(self, channel_mask: np.ndarray | None = None, modality_mask: np.ndarray | None = None,
                            removed_modality: str | None = None) -> np.ndarray:
        """The model's `modality_mask` (batch, model_modalities) bool: a model modality is present when any of its
        channels is (`channel_mask`, batch x dataset_channels); without a channel mask, the dataset modality of
        the same name (`modality_mask`, batch x dataset_modalities); without either, present. `removed_modality`
        is additionally marked absent, as at test time when that sensor is missing."""
        if channel_mask is None and modality_mask is None:
            raise ValueError("model_modality_mask needs the dataset's channel_mask or modality_mask")
        batch = len(channel_mask if channel_mask is not None else modality_mask)
        columns = []
        for source, channel_index in zip(self.modality_source, self.modality_channel_index):
            if source is not None and modality_mask is not None:
                columns.append(np.asarray(modality_mask[:, source], dtype=bool))
            elif channel_mask is not None:
                columns.append(np.asarray(channel_mask)[:, channel_index].any(axis=1))
            else:
                columns.append(np.ones(batch, dtype=bool))
        mask = np.stack(columns, axis=1) if columns else np.zeros((batch, 0), dtype=bool)
        if removed_modality is not None and removed_modality in self.model_modality_names:
            mask[:, self.model_modality_names.index(removed_modality)] = False
        return mask

    def model_inputs(self, input_values: np.ndarray, channel_mask: np.ndarray | None = None,
                     removed_modality: str | None = None, modality_mask: np.ndarray | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
        """Dataset batch -> the model's `input_values` (batch, model_channels, samples) and modality mask."""
        return (self.model_values(input_values),
                self.model_modality_mask(channel_mask, modality_mask, removed_modality))
