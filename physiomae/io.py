"""Atomic file writes for the library: `atomic_path`, `atomic_write_bytes`, `atomic_write_text`, `json_ready`,
`atomic_write_json`. A write goes to a temporary file in the target's folder and is moved into place with
`os.replace`, so a reader (or a crashed run) never sees a half-written file and a failed write overwrites nothing.

The one implementation is `dataset_scripts/files.py`, one layer down, because the dataset builders need it and
may not import `physiomae` (the layering modeling_physiomae < dataset_scripts < physiomae, tests/test_layout.py);
this module re-exports it so that the library imports it from here as before."""

from __future__ import annotations

from dataset_scripts.files import (
    atomic_path,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    json_ready,
)

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_json", "atomic_write_text", "json_ready"]
