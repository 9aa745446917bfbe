"""Finding the records of a folder of EDF/EDF+/BDF recordings (`edf_sleep`): PSG files, their hypnograms or stage
CSVs, and stage annotations inside the PSGs.

Files. Every `.edf`, `.rec` (EDF/EDF+) and `.bdf` (BDF/BDF+) file under `data_dir` (any depth, any case of the
suffix) is a recording (a PSG), except files whose name contains `hypnogram` (any case), which are hypnograms.
The record name is the PSG file's stem without a trailing `-PSG` / `_PSG` (`SC4001E0-PSG.edf` -> `SC4001E0`);
names must be unique. Stages come from the first of these that exists:

(a) an EDF+ hypnogram file in the same folder (annotations only, Sleep-EDF style), paired with its PSG by
    1. the PSG name with `PSG` replaced by `Hypnogram` (`night1-PSG.edf` + `night1-Hypnogram.edf`), or
       `STEM-Hypnogram.edf` / `STEM_Hypnogram.edf`;
    2. else the first `hypnogram_prefix_length` (6) characters of the names, when exactly one PSG and one
       hypnogram of the folder share them (Sleep-EDF: `SC4001E0-PSG.edf` + `SC4001EC-Hypnogram.edf`).
    Annotation onsets are moved by the difference of the two files' start times when both are known.
(b) a CSV of stages next to the recording, `STEM.csv` or `NAME.csv` (`night1.edf` + `night1.csv`), UTF-8, one
    of two forms (lines starting with `#` are comments):
    - with a header row naming an `onset` and a `stage` column (and optionally `duration`), onsets in seconds
      from the start of the recording: each row's stage holds for `duration` seconds, or, without one, until the
      next row's onset (the last row: one 30-s epoch). A row whose onset is not a plain number >= 0 is skipped, a
      duration that is not a number > 0 is read as absent; both are listed in the record's `labels.problems`;
          onset,stage
          0,W
          30,N1
    - without a header: one stage per line, line k (from 0) is the 30-s epoch [30 k, 30 k + 30) s.
(c) stage annotations inside the PSG file itself (EDF+/BDF+), e.g. `Sleep stage 2`; other annotations (events,
    lights off, ...) are counted as `other_annotations` and ignored. An EDF+ annotation without a duration holds
    until the next stage annotation (the last one: one 30-s epoch).
A recording with none of these is unlabelled.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

from dataset_scripts.challenge_records import files_fingerprint
from dataset_scripts.hypnograms import is_stage_annotation
from modeling_physiomae.recording_physiomae import RECORDING_SUFFIXES


HYPNOGRAM_PREFIX_LENGTH = 6


@dataclass
class EdfRecordFiles:
    """Files of one record: the PSG, and its hypnogram (EDF+) or stage CSV, or stages inside the PSG."""

    name: str
    psg: str
    hypnogram: str | None = None
    stages_csv: str | None = None
    psg_annotations: bool = False  # stage annotations found inside the PSG (source c)
    folder: str = ""

    @property
    def labelled(self) -> bool:
        return self.hypnogram is not None or self.stages_csv is not None or self.psg_annotations

    @property
    def label_source(self) -> str | None:
        if self.hypnogram is not None:
            return "hypnogram"
        if self.stages_csv is not None:
            return "csv"
        return "annotations" if self.psg_annotations else None


@dataclass
class EdfListing:
    """Records found under a data folder (duck-types `challenge_records.RecordListing` for `recording_builder.merge_report`)."""

    records: list[EdfRecordFiles]
    problems: list[dict]
    age_sex_path: str | None


def record_name_of(psg: Path) -> str:
    """`SC4001E0-PSG.edf` -> `SC4001E0`; `night1.edf` -> `night1`."""
    return re.sub(r"[-_ ]?psg$", "", psg.stem, flags=re.IGNORECASE) or psg.stem


def _is_recording_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in RECORDING_SUFFIXES and not path.name.startswith(".")


def _psg_has_stage_annotations(path: Path) -> bool:
    """Whether an EDF+/BDF+ file holds stage annotations (only the annotation channel is read, and only when the
    header declares EDF+/BDF+)."""
    import edfio

    try:
        with open(path, "rb") as stream:
            head = stream.read(236)
        reserved = head[192:236].decode("ascii", "replace").strip().upper()
        if not reserved.startswith(("EDF+", "BDF+")):
            return False
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # truncation etc. is reported when the record is built
            edf = edfio.read_bdf(path) if head[:1] == b"\xff" else edfio.read_edf(path, lazy_load_data=True)
            return any(is_stage_annotation(annotation.text) for annotation in edf.annotations)
    except Exception:  # broken files are reported when the record is built
        return False


def _pair_hypnograms(psgs: list[Path], hypnograms: list[Path], prefix_length: int, problems: list[dict]) -> dict[Path, Path]:
    """PSG -> hypnogram of one folder (rules in the module docstring); unpaired hypnograms go to `problems`."""
    by_lower = {hypnogram.name.lower(): hypnogram for hypnogram in hypnograms}
    pairs: dict[Path, Path] = {}
    for psg in psgs:
        stem, suffix = psg.stem, psg.suffix.lower()
        candidates = []
        if "psg" in stem.lower():
            candidates.append(re.sub("psg", "Hypnogram", stem, flags=re.IGNORECASE))
        candidates += [f"{stem}-Hypnogram", f"{stem}_Hypnogram", f"{record_name_of(psg)}-Hypnogram"]
        for candidate in candidates:
            for candidate_suffix in dict.fromkeys([suffix, *RECORDING_SUFFIXES]):
                match = by_lower.get(f"{candidate}{candidate_suffix}".lower())
                if match is not None and match not in pairs.values():
                    pairs[psg] = match
                    break
            if psg in pairs:
                break
    if prefix_length:
        for psg in psgs:
            if psg in pairs:
                continue
            prefix = psg.name[:prefix_length].lower()
            same_psgs = [other for other in psgs if other.name[:prefix_length].lower() == prefix]
            same_hypnograms = [hypnogram for hypnogram in hypnograms
                               if hypnogram.name[:prefix_length].lower() == prefix and hypnogram not in pairs.values()]
            if len(same_psgs) == 1 and len(same_hypnograms) == 1:
                pairs[psg] = same_hypnograms[0]
            elif same_hypnograms:
                problems.append({"record": record_name_of(psg), "where": str(psg),
                                 "problem": f"ambiguous hypnogram: {len(same_psgs)} recordings and {len(same_hypnograms)} "
                                            f"hypnograms share the prefix {psg.name[:prefix_length]!r}; none paired"})
    for hypnogram in hypnograms:
        if hypnogram not in pairs.values():
            problems.append({"record": None, "where": str(hypnogram), "problem": "hypnogram without a recording"})
    return pairs


def find_edf_records(data_dir: str | os.PathLike, hypnogram_prefix_length: int = HYPNOGRAM_PREFIX_LENGTH) -> EdfListing:
    """Every recording under `data_dir` with its stage source (rules in the module docstring)."""
    root = Path(data_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"data_dir {root} is not a folder")
    problems: list[dict] = []
    records: dict[str, EdfRecordFiles] = {}
    folders = [root] + sorted(path for path in root.rglob("*") if path.is_dir() and not any(
        part.startswith(".") for part in path.relative_to(root).parts))
    for folder in folders:
        files = sorted(path for path in folder.iterdir() if _is_recording_file(path))
        hypnograms = [path for path in files if "hypnogram" in path.name.lower()]
        psgs = [path for path in files if path not in hypnograms]
        pairs = _pair_hypnograms(psgs, hypnograms, hypnogram_prefix_length, problems)
        csv_files = {path.name.lower(): path for path in folder.iterdir() if path.is_file() and path.suffix.lower() == ".csv"}
        for psg in psgs:
            name = record_name_of(psg)
            stages_csv = csv_files.get(f"{psg.stem}.csv".lower()) or csv_files.get(f"{name}.csv".lower())
            hypnogram = pairs.get(psg)
            if hypnogram is not None and stages_csv is not None:
                problems.append({"record": name, "where": str(stages_csv), "problem": f"both a hypnogram ({hypnogram.name}) "
                                 "and a stage CSV; the hypnogram is used"})
                stages_csv = None
            record = EdfRecordFiles(
                name=name,
                psg=str(psg),
                hypnogram=str(hypnogram) if hypnogram else None,
                stages_csv=str(stages_csv) if stages_csv else None,
                folder=str(folder.relative_to(root)) if folder != root else "",
            )
            if not record.labelled:
                record.psg_annotations = _psg_has_stage_annotations(psg)
            if name in records:
                problems.append({"record": name, "where": str(psg), "problem": f"duplicate record name (kept {records[name].psg})"})
                continue
            records[name] = record
    age_sex = root / "age-sex.csv"
    return EdfListing(records=sorted(records.values(), key=lambda record: record.name), problems=problems,
                      age_sex_path=str(age_sex) if age_sex.is_file() else None)


def listing_fingerprint(listing: EdfListing) -> str:
    """Hash of every input file's path, size and modification time (so that changed data rebuilds)."""
    paths = [listing.age_sex_path] if listing.age_sex_path else []
    for record in listing.records:
        paths += [record.psg, record.hypnogram, record.stages_csv]
    return files_fingerprint(paths)
