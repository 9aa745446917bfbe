"""Helpers shared by the test modules: a tiny model config and the environment of an isolated child process."""

from __future__ import annotations

import os
from pathlib import Path

from modeling_physiomae import PhysioMAEConfig


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


def isolated_environment(hf_home: str | os.PathLike, **extra: str) -> dict[str, str]:
    """Environment for a child process that must not see our package: no PYTHONPATH, a fresh HF_HOME, offline."""
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    environment.update(HF_HOME=str(Path(hf_home)), HF_HUB_OFFLINE="1", **extra)
    return environment
