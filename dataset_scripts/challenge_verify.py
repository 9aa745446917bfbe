"""Checking a downloaded copy of the PhysioNet/CinC 2018 data against the official `training_SHA1SUMS` and
`test_SHA1SUMS` (`python -m dataset_scripts.physionet2018 verify`)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class VerificationResult:
    """Outcome of `verify_download`: `missing`/`corrupted` files, `absent_records` (present_only mode), `checked` count."""

    checked: int = 0
    ok: int = 0
    missing: list[str] = field(default_factory=list)
    corrupted: list[dict] = field(default_factory=list)
    absent_records: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.missing and not self.corrupted


def read_sha1sums(path: str | os.PathLike) -> list[tuple[str, str]]:
    """`sha1  relative/path` lines (as written by sha1sum) -> [(sha1, path)]; raises naming bad lines."""
    entries = []
    for line_number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split(None, 1)
        if len(parts) != 2 or len(parts[0]) != 40:
            raise ValueError(f"{path}:{line_number}: not a 'sha1  path' line: {line!r}")
        entries.append((parts[0].lower(), parts[1].strip().lstrip("*")))
    return entries


def _file_sha1(path: Path, chunk_size: int = 1 << 22) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as stream:
        while chunk := stream.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def verify_download(data_dir: str | os.PathLike, sums_dir: str | os.PathLike, present_only: bool = False) -> VerificationResult:
    """Check a downloaded copy against `training_SHA1SUMS` and `test_SHA1SUMS`.

    Files of `training_SHA1SUMS` are looked for under `data_dir/training/` (else `data_dir/`), those of
    `test_SHA1SUMS` under `data_dir/test/` (else `data_dir/`). With `present_only`, records whose folder
    is absent are listed in `absent_records` instead of as missing files (partial downloads); files missing
    inside a present record folder are still errors.
    """
    data_dir, sums_dir = Path(data_dir), Path(sums_dir)
    result = VerificationResult()
    for sums_name, subset in (("training_SHA1SUMS", "training"), ("test_SHA1SUMS", "test")):
        sums_path = sums_dir / sums_name
        if not sums_path.is_file():
            raise FileNotFoundError(f"{sums_path} not found (give --sums_dir the folder holding {sums_name})")
        base = data_dir / subset if (data_dir / subset).is_dir() else data_dir
        absent = set()
        for expected, relative in read_sha1sums(sums_path):
            target = base / relative
            record_folder = relative.split("/", 1)[0] if "/" in relative else None
            if present_only and record_folder is not None and not (base / record_folder).is_dir():
                absent.add(record_folder)
                continue
            if present_only and record_folder is None and not target.is_file():
                continue  # RECORDS / ANNOTATORS are often not part of a partial download
            result.checked += 1
            if not target.is_file():
                result.missing.append(f"{subset}/{relative}")
                continue
            actual = _file_sha1(target)
            if actual != expected:
                result.corrupted.append({"file": f"{subset}/{relative}", "expected": expected, "actual": actual})
            else:
                result.ok += 1
        result.absent_records.extend(sorted(absent))
    return result
