"""The record split, the one for every builder and consumer: a record's place in [0, 1) is the first 32 bits of
sha1(record name) / 2**32. Builders put a labelled record in `probe_test` when its place is below the fraction
(22 %, as in the paper: 219 of 994 records), else in `probe_train`, and unlabelled records in `pretrain`; the probes,
train.py's held-out reconstruction records and finetune.py's validation records use the same place.

Pure Python, imports nothing of this project.
"""

from __future__ import annotations

import hashlib


PROBE_TEST_FRACTION = 0.22
SPLIT_NAMES = ("pretrain", "probe_train", "probe_test")


def record_split_position(record_name: str) -> float:
    """Where a record falls in [0, 1): the first 32 bits of sha1(name) / 2**32."""
    return int(hashlib.sha1(record_name.encode("utf-8")).hexdigest()[:8], 16) / 2**32


def assign_split(record_name: str, labelled: bool, probe_test_fraction: float = PROBE_TEST_FRACTION) -> str:
    """`pretrain` for unlabelled records; labelled ones go to `probe_test` when their split position is below the
    fraction, else to `probe_train`."""
    if not labelled:
        return "pretrain"
    return "probe_test" if record_split_position(record_name) < probe_test_fraction else "probe_train"
