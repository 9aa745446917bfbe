"""Finding the records of a PhysioNet/CinC 2018 challenge-layout folder: `training/` and/or `test/` subfolders (each
with record folders and optionally a `RECORDS` file), a flat folder with a `RECORDS` file, or record folders
directly; `age-sex.csv` at the root is optional. What is listed but unusable is a listing problem, never dropped.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from dataset_scripts import challenge_format


@dataclass
class RecordFiles:
    """Paths of one record. Optional files are `None` when absent."""

    name: str
    header: str
    notes: str | None = None
    masks: str | None = None
    subset: str = ""  # "training", "test" or "" (flat layout)

    @property
    def labelled(self) -> bool:
        return self.notes is not None or self.masks is not None


@dataclass
class RecordListing:
    """Records found under a data folder, plus what was listed but could not be used."""

    records: list[RecordFiles]
    problems: list[dict]
    age_sex_path: str | None


def _record_files_in(folder: Path, name: str, subset: str) -> RecordFiles | None:
    header = folder / f"{name}.hea"
    if not header.is_file():
        return None
    notes = folder / f"{name}.{challenge_format.ANNOTATION_EXTENSION}"
    masks = folder / f"{name}{challenge_format.MASK_FILE_SUFFIX}"
    return RecordFiles(
        name=name,
        header=str(header),
        notes=str(notes) if notes.is_file() else None,
        masks=str(masks) if masks.is_file() else None,
        subset=subset,
    )


def _records_in_folder(folder: Path, subset: str, problems: list[dict]) -> list[RecordFiles]:
    """Records of one folder: from its RECORDS file when present, else record folders / loose headers."""
    found: list[RecordFiles] = []
    listing = folder / "RECORDS"
    if listing.is_file():
        for line_number, line in enumerate(listing.read_text(errors="replace").splitlines(), start=1):
            entry = line.strip().rstrip("/")
            if not entry or entry.startswith("#"):
                continue
            name = Path(entry).name
            record = _record_files_in(folder / entry, name, subset) or _record_files_in(
                (folder / entry).parent, name, subset
            )
            if record is None:
                problems.append(
                    {"record": name, "where": f"{listing}:{line_number}", "problem": "listed in RECORDS but no header (.hea) found"}
                )
            else:
                found.append(record)
        return found
    for child in sorted(folder.iterdir()):
        if child.is_dir():
            record = _record_files_in(child, child.name, subset)
            if record is not None:
                found.append(record)
            elif any(child.glob("*.mat")) or any(child.glob("*.arousal")):
                problems.append({"record": child.name, "where": str(child), "problem": "record folder without header (.hea)"})
        elif child.suffix == ".hea":
            found.append(_record_files_in(folder, child.stem, subset))
    return found


def find_records(data_dir: str | os.PathLike) -> RecordListing:
    """Find every record under `data_dir` in one of the accepted layouts (module docstring)."""
    root = Path(data_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"data_dir {root} is not a folder")
    problems: list[dict] = []
    subsets = [(root / subset, subset) for subset in ("training", "test") if (root / subset).is_dir()]
    records: list[RecordFiles] = []
    for folder, subset in subsets or [(root, "")]:
        records.extend(_records_in_folder(folder, subset, problems))
    unique: dict[str, RecordFiles] = {}
    for record in records:
        if record.name in unique:
            problems.append({"record": record.name, "where": record.header, "problem": f"duplicate record name (kept {unique[record.name].header})"})
            continue
        unique[record.name] = record
    age_sex = root / "age-sex.csv"
    return RecordListing(
        records=sorted(unique.values(), key=lambda record: record.name),
        problems=problems,
        age_sex_path=str(age_sex) if age_sex.is_file() else None,
    )


def listing_fingerprint(listing: RecordListing) -> str:
    """Hash of every input file's path, size and modification time (so changed data rebuilds)."""
    paths = [listing.age_sex_path] if listing.age_sex_path else []
    for record in listing.records:
        paths += [record.header, record.notes, record.masks, _signal_path_guess(record)]
    return files_fingerprint(paths)


def files_fingerprint(paths) -> str:
    """SHA-1 over each path's name, size and modification time (None entries skipped, missing files marked)."""
    digest = hashlib.sha1()
    for path in paths:
        if path is None:
            continue
        try:
            stat = os.stat(path)
            digest.update(f"{path}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{path}|missing\n".encode())
    return digest.hexdigest()


def _signal_path_guess(record: RecordFiles) -> str:
    return str(Path(record.header).with_suffix(".mat"))
