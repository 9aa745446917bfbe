"""What every recording builder writes: the row schema (`make_features`), the dataset's `info` (`make_info`: the
layout and preprocessing as JSON in `info.description`) and a record's rows (`windowed_record`: one float16 row
per kept window, skipped windows counted with their reason).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Iterator

import datasets
import numpy as np

from dataset_scripts import labels as label_tools

if TYPE_CHECKING:
    from modeling_physiomae.configuration_physiomae import ChannelLayout


FLOAT16_MAX = float(np.finfo(np.float16).max)


def default_feature_extractor(**kwargs):
    """The project's feature extractor (imported lazily so that labels/verify work without torch)."""
    from modeling_physiomae.feature_extraction_physiomae import PhysioMAEFeatureExtractor

    return PhysioMAEFeatureExtractor(**kwargs)


def make_features(layout: ChannelLayout) -> datasets.Features:
    """The row schema for a layout (13 channels x 3000 samples with the default extractor)."""
    return datasets.Features(
        {
            "input_values": datasets.Array2D(shape=(len(layout.channel_names), layout.window_length), dtype="float16"),
            "channel_mask": datasets.Sequence(datasets.Value("bool"), length=len(layout.channel_names)),
            "modality_mask": datasets.Sequence(datasets.Value("bool"), length=len(layout.modalities)),
            "sleep_stage": datasets.ClassLabel(names=list(label_tools.STAGE_NAMES)),
            "arousal": datasets.Value("int8"),
            "age": datasets.Value("float32"),
            "sex": datasets.ClassLabel(names=list(label_tools.SEX_NAMES)),
            "record": datasets.Value("string"),
            "window": datasets.Value("int32"),
        }
    )



@dataclass
class RecordWindows:
    """Rows of one record (an iterable made lazily, one float16 window at a time) and its report entry."""

    rows: Iterable[dict]
    report: dict



def dataset_description(layout: ChannelLayout, feature_extractor) -> str:
    """The dataset's `info.description`: JSON, so that consumers (`physiomae.saved_dataset`) read the axes' names
    and the preprocessing from the saved dataset itself."""
    return json.dumps(
        {
            "description": "PhysioNet/CinC Challenge 2018 polysomnography, 30-s windows preprocessed by PhysioMAEFeatureExtractor.",
            "channel_names": layout.channel_names,
            "modality_names": list(layout.modalities),
            "modalities": layout.modalities,
            "sampling_rate": layout.sampling_rate,
            "window_seconds": layout.window_seconds,
            # the settings the windows were preprocessed with: train.py exports them with the model
            "feature_extractor": feature_extractor.to_dict(),
        },
        default=str,
    )


def make_info(layout: ChannelLayout, feature_extractor) -> datasets.DatasetInfo:
    """The builder's DatasetInfo: row schema (`make_features`), layout and preprocessing (`dataset_description`)."""
    return datasets.DatasetInfo(
        description=dataset_description(layout, feature_extractor),
        features=make_features(layout),
        homepage="https://physionet.org/content/challenge-2018/1.0.0/",
        citation=(
            "Ghassemi MM, Moody BE, Lehman LH, Song C, Li Q, Sun H, Mark RG, Westover MB, Clifford GD. "
            "You Snooze, You Win: the PhysioNet/Computing in Cardiology Challenge 2018. CinC 2018; 45."
        ),
        license="ODC-By-1.0",
    )



def windowed_record(name: str, windows: np.ndarray, channel_mask: np.ndarray, layout: ChannelLayout,
                    sleep_stage: np.ndarray, arousal: np.ndarray, age: float, sex: int, record_seconds: float,
                    report: dict[str, Any]) -> RecordWindows:
    """A record's rows (one per kept window, float16) and the window part of its report, for every builder.

    Windows without any channel, or with non-finite values after preprocessing, are skipped and counted; which
    windows are kept is decided before anything is yielded (a record is all or nothing)."""
    num_windows = windows.shape[0]
    modality_mask = layout.modality_mask(channel_mask) if num_windows else np.zeros((0, len(layout.modalities)), bool)
    no_channel = ~channel_mask.any(axis=1)
    non_finite = ~np.isfinite(windows).all(axis=(1, 2)) & ~no_channel
    keep = ~(no_channel | non_finite)
    skipped = {
        reason: int(count)
        for reason, count in (
            ("no channel present in the window", no_channel.sum()),
            ("non-finite values after preprocessing", non_finite.sum()),
        )
        if count
    }
    clipped_values = sum(int((np.abs(windows[index]) > FLOAT16_MAX).sum()) for index in np.flatnonzero(keep))

    def rows() -> Iterator[dict]:
        for window_index in np.flatnonzero(keep):
            # (num_channels, window_length) float32 -> float16, clipped to its range
            window = np.clip(windows[window_index], -FLOAT16_MAX, FLOAT16_MAX).astype(np.float16)
            yield {
                "input_values": window,
                "channel_mask": channel_mask[window_index],
                "modality_mask": modality_mask[window_index],
                "sleep_stage": int(sleep_stage[window_index]),
                "arousal": int(arousal[window_index]),
                "age": float(age),
                "sex": int(sex),
                "record": name,
                "window": int(window_index),
            }

    kept_stages, kept_arousal = sleep_stage[keep], arousal[keep]
    report.update(
        status="built",
        windows_total=num_windows,
        windows_kept=int(keep.sum()),
        windows_skipped=skipped,
        trailing_seconds_not_windowed=round(record_seconds - num_windows * layout.window_seconds, 3),
        float16_clipped_values=clipped_values,
        sleep_stage_counts={
            name: int((kept_stages == code).sum()) for code, name in enumerate(label_tools.STAGE_NAMES)
        }
        | {"undefined": int((kept_stages == -1).sum())},
        arousal_counts={str(value): int((kept_arousal == value).sum()) for value in (1, 0, -1)},
    )
    return RecordWindows(rows=rows(), report=report)
