"""Atomic file writes: the one implementation, used by the dataset builders here and, through `physiomae.io`
(which re-exports it), by the cohort writer, training, evaluation, export and the benchmarks. A write goes to a
temporary file in the target's folder and is moved into place with `os.replace`, so a reader (or a crashed run)
never sees a half-written file and a failed write overwrites nothing.

It lives in `dataset_scripts` (not in `physiomae`) because of the layering `modeling_physiomae` <
`dataset_scripts` < `physiomae`: the builders may not import the library (tests/test_layout.py), and the library
may import them. Imports nothing else of ours."""

from __future__ import annotations

import json
import math
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np


@contextmanager
def atomic_path(final_path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `final_path`; when the block succeeds, move it into place atomically."""
    final_path = Path(final_path)
    final_path.parent.mkdir(parents=True, exist_ok=True)
    file_descriptor, temporary_name = tempfile.mkstemp(prefix=f".{final_path.name}.", suffix=".tmp",
                                                       dir=final_path.parent)
    os.close(file_descriptor)
    temporary_path = Path(temporary_name)
    try:
        yield temporary_path
        os.chmod(temporary_path, 0o644)  # mkstemp creates 0600; outputs are world-readable
        os.replace(temporary_path, final_path)
    finally:
        if temporary_path.exists():
            temporary_path.unlink()


def atomic_write_bytes(final_path: str | os.PathLike, payload: bytes) -> Path:
    """Write `payload` to `final_path` atomically; returns the path."""
    with atomic_path(final_path) as temporary_path:
        with open(temporary_path, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
    return Path(final_path)


def atomic_write_text(final_path: str | os.PathLike, text: str, line_end: str = "\n",
                      encoding: str = "utf-8") -> Path:
    """Write `text` with its line ends set to `line_end` (the challenge headers use CRLF), atomically."""
    payload = text.replace("\r\n", "\n").replace("\n", line_end).encode(encoding)
    return atomic_write_bytes(final_path, payload)


def json_ready(value: Any) -> Any:
    """Strict-JSON form of `value`: numpy scalars and arrays as Python values, paths as strings, NaN / inf
    (undefined metrics, a diverged loss) as null."""
    if isinstance(value, dict):
        return {str(key): json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(item) for item in value]
    if isinstance(value, np.ndarray):
        return json_ready(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def atomic_write_json(final_path: str | os.PathLike, payload: Any, indent: int = 2, sort_keys: bool = False) -> Path:
    """Write `payload` as strict JSON (see `json_ready`) atomically; a value JSON cannot hold is an error that
    names its type, and the previous file stays."""
    text = json.dumps(json_ready(payload), indent=indent, sort_keys=sort_keys, allow_nan=False)
    return atomic_write_text(final_path, text + "\n")
