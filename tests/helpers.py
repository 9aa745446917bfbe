"""Helpers shared by the test modules: a tiny model config and the environment of an isolated child process."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import torch

from modeling_physiomae import PhysioMAEConfig, PhysioMAEForSequenceClassification

REPO_ROOT = Path(__file__).resolve().parents[1]  # tests/ mirrors the packages; this file sits at its top

TINY_MODEL_SETTINGS = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    decoder_hidden_size=16,
    decoder_num_hidden_layers=1,
    decoder_num_attention_heads=2,
    tokenizer_conv_channels=8,
)
"""Small sizes that keep every test model fast on CPU; tests override what they need."""


def tiny_config(**overrides) -> PhysioMAEConfig:
    """A `PhysioMAEConfig` with `TINY_MODEL_SETTINGS`, updated by `overrides`."""
    return PhysioMAEConfig(**{**TINY_MODEL_SETTINGS, **overrides})


HIDE_OUR_PACKAGE = """
import json, sys
from pathlib import Path

# Forget the editable install and the repository (sys.argv[3]): this process must not see our package.
sys.meta_path = [finder for finder in sys.meta_path if "physiomae" not in str(getattr(finder, "__module__", ""))]
sys.path_hooks = [hook for hook in sys.path_hooks if "physiomae" not in str(getattr(hook, "__module__", ""))]
repository = Path(sys.argv[3]).resolve()
sys.path = [entry for entry in sys.path if entry and Path(entry).resolve() != repository]
sys.path_importer_cache.clear()
try:
    import modeling_physiomae  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("modeling_physiomae is importable in the child process")
"""
"""Start of a child script that must load our folders through trust_remote_code only (argv[3]: the checkout)."""


def isolated_environment(hf_home: str | os.PathLike, **extra: str) -> dict[str, str]:
    """Environment for a child process that must not see our package: no PYTHONPATH, a fresh HF_HOME, offline."""
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    environment.update(HF_HOME=str(Path(hf_home)), HF_HUB_OFFLINE="1", **extra)
    return environment


def builder_split(rows: dict, modalities: dict | None = None, **extractor_kwargs):
    """A `datasets.Dataset` in the builder's row schema and metadata (`physionet2018.make_info`) for the layout of
    `PhysioMAEFeatureExtractor(modalities=modalities, **extractor_kwargs)` (default: the builder's own).

    `rows` holds `input_values` (windows, channels, samples) and optionally `channel_mask` (default: all present) and
    any label column; `modality_mask` is derived from the channel mask as the builder derives it, absent labels are
    -1 (unknown), `record` / `window` default to one record of consecutive windows."""
    import datasets
    import numpy as np

    from dataset_scripts.physionet2018 import default_feature_extractor, make_info

    extractor = default_feature_extractor(**({"modalities": modalities} if modalities else {}), **extractor_kwargs)
    layout = extractor.channel_layout
    values = np.asarray(rows["input_values"], dtype=np.float16)
    count = len(values)
    channel_mask = np.asarray(rows.get("channel_mask", np.ones((count, len(layout.channel_names)))), dtype=bool)
    columns = {"sleep_stage": [-1] * count, "arousal": [-1] * count, "age": [-1.0] * count, "sex": [-1] * count,
               "record": ["te00-0000"] * count, "window": list(range(count)), **rows,
               "input_values": values, "channel_mask": channel_mask, "modality_mask": layout.modality_mask(channel_mask)}
    return datasets.Dataset.from_dict(columns, info=make_info(layout, extractor))


def write_edf(path, channels, annotations=None):
    """channels: (label, values, rate, unit); annotations: (onset, duration or None, text) -> EDF+ when given."""
    import edfio
    import numpy as np

    signals = [edfio.EdfSignal(np.asarray(values, dtype=np.float64), rate, label=label, physical_dimension=unit)
               for label, values, rate, unit in channels]
    edf_annotations = None if annotations is None else [edfio.EdfAnnotation(*item) for item in annotations]
    edfio.Edf(signals, annotations=edf_annotations).write(str(path))
    return Path(path)


STAGES = {0: "W", 1: "N1", 2: "N2", 3: "N3", 4: "REM"}


def stager(seed: int = 0) -> PhysioMAEForSequenceClassification:
    torch.manual_seed(seed)
    config = tiny_config(modalities={"eeg": ["C4-M1"], "ecg": ["ECG"]}, num_labels=5, id2label=STAGES,
                         label2id={name: index for index, name in STAGES.items()})
    return PhysioMAEForSequenceClassification(config).eval()


def night(seconds: int = 150, sampling_rate: int = 100) -> dict[str, np.ndarray]:
    """C4-M1 and ECG; the last 30 s of both are missing (NaN): that epoch has no modality."""
    generator = np.random.default_rng(0)
    time = np.arange(seconds * sampling_rate) / sampling_rate
    channels = {"C4-M1": np.sin(2 * np.pi * 2 * time) + 0.3 * generator.standard_normal(time.size),
                "ECG": np.sin(2 * np.pi * 1.1 * time) ** 15 + 0.05 * generator.standard_normal(time.size)}
    for values in channels.values():
        values[-30 * sampling_rate:] = np.nan
    return channels


class FakeHubApi:
    """The network edge of `push_to_hub`: commits land in a local folder standing for the Hub repo."""

    def __init__(self, root: Path):
        self.root = root

    def create_repo(self, repo_id, **kwargs):
        (self.root / repo_id).mkdir(parents=True, exist_ok=True)
        return type("RepoUrl", (), {"repo_id": repo_id})()

    def create_commit(self, repo_id, operations, **kwargs):
        for operation in operations:
            target = self.root / repo_id / operation.path_in_repo
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(Path(operation.path_or_fileobj).read_bytes())
        return f"commit to {repo_id}"




def copy_segment(source: Path, folder: Path, name: str) -> Path:
    """Copy a real excerpt under a new record name (header text renamed, files writable); returns its folder."""
    target = folder / name
    target.mkdir(parents=True)
    for path in source.iterdir():
        destination = target / path.name.replace(source.name, name)
        if path.suffix == ".hea":
            destination.write_bytes(path.read_bytes().replace(source.name.encode(), name.encode()))
        else:
            shutil.copyfile(path, destination)
        destination.chmod(0o644)
    return target
