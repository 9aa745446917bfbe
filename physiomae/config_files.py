"""Command-line helpers shared by train.py and eval.py: a leading YAML file gives HfArgumentParser defaults."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Sequence


YAML_SUFFIXES = (".yaml", ".yml")
PACKAGED_CONFIGS_DIR = Path(__file__).resolve().parent / "configs"  # the checkout's configs/, installed with the package


def resolve_config(name_or_path: str | os.PathLike) -> str:
    """A config file path: `name_or_path` when it exists, else the packaged config of that name (`demo`,
    `demo.yaml` or `configs/demo.yaml` all name `configs/demo.yaml`), so installed console scripts find them from
    any folder. A name that is neither is returned unchanged (the reader then says the file does not exist)."""
    path = Path(name_or_path)
    if path.is_file():
        return str(path)
    name = path.name if path.suffix in YAML_SUFFIXES else f"{path.name}.yaml"
    packaged = PACKAGED_CONFIGS_DIR / name
    if packaged.is_file() and (len(path.parts) == 1 or path.parent.name == "configs"):
        return str(packaged)
    return str(name_or_path)


def packaged_config_names() -> list[str]:
    return sorted(path.stem for path in PACKAGED_CONFIGS_DIR.glob("*.yaml"))


def read_yaml_mapping(yaml_path: str | os.PathLike) -> dict[str, Any]:
    """The mapping in a YAML file; FileNotFoundError for a missing file (naming the packaged configs), ValueError
    naming the file and the line for malformed YAML or a document that is not a mapping."""
    import yaml

    path = Path(resolve_config(yaml_path))
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist (packaged configs: {packaged_config_names()})")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        problem = getattr(error, "problem", None) or str(error)
        raise ValueError(f"{where}: malformed YAML ({problem})") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a mapping of names to values, got {type(values).__name__}")
    return values


def load_yaml_defaults(yaml_path: str | os.PathLike, dataclass_types: Sequence[type], program: str) -> dict[str, Any]:
    """Read a YAML config and check that every key is a field of one of `dataclass_types`.

    Raises FileNotFoundError for a missing file and ValueError (naming the file and the keys) for a file that is
    not a mapping or has keys that are not argument fields; `program` names the script whose `--help` lists them.
    """
    path = resolve_config(yaml_path)
    values = read_yaml_mapping(path)
    known = {item.name for cls in dataclass_types for item in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{path}: unknown keys {unknown}; valid keys are the fields listed by `{program} --help`")
    return values


def split_yaml_argument(argv: Sequence[str]) -> tuple[str | None, list[str]]:
    """(leading YAML path or None, the remaining command-line arguments)."""
    argv = list(argv)
    if argv and not argv[0].startswith("-") and (argv[0].endswith(YAML_SUFFIXES) or Path(resolve_config(argv[0])).is_file()):
        return argv[0], argv[1:]
    return None, argv
