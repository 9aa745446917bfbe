"""Command-line helpers shared by train.py and eval.py: a leading YAML file gives HfArgumentParser defaults."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Sequence


YAML_SUFFIXES = (".yaml", ".yml")


def load_yaml_defaults(yaml_path: str | os.PathLike, dataclass_types: Sequence[type], program: str) -> dict[str, Any]:
    """Read a YAML config and check that every key is a field of one of `dataclass_types`.

    Raises FileNotFoundError for a missing file and ValueError (naming the file and the keys) for a file that is
    not a mapping or has keys that are not argument fields; `program` names the script whose `--help` lists them.
    """
    import yaml

    path = Path(yaml_path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    with open(path) as handle:
        values = yaml.safe_load(handle) or {}
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a mapping of argument names to values, got {type(values).__name__}")
    known = {item.name for cls in dataclass_types for item in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{path}: unknown keys {unknown}; valid keys are the fields listed by `{program} --help`")
    return values


def split_yaml_argument(argv: Sequence[str]) -> tuple[str | None, list[str]]:
    """(leading YAML path or None, the remaining command-line arguments)."""
    argv = list(argv)
    if argv and argv[0].endswith(YAML_SUFFIXES) and not argv[0].startswith("-"):
        return argv[0], argv[1:]
    return None, argv
