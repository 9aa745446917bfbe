"""Shared test setup: offline Hub, a throwaway HF_HOME, and the location of the real shared data."""

import os
import sys
import tempfile
from pathlib import Path

# Must happen before transformers / huggingface_hub / datasets are imported by any test module.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("HF_HOME", tempfile.mkdtemp(prefix="physiomae-hf-home-"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))


def _find_shared_data() -> Path | None:
    candidates = [os.environ.get("PHYSIOMAE_SHARED_DATA")]
    candidates += [str(parent / "shared" / "data") for parent in REPO_ROOT.parents]
    candidates += ["/work/shared/data"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "physionet2018-labels").is_dir():
            return Path(candidate)
    return None


SHARED_DATA = _find_shared_data()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Read-only folder with the real PhysioNet 2018 files (never write into it)."""
    if SHARED_DATA is None:
        pytest.skip("real PhysioNet 2018 data not found (set PHYSIOMAE_SHARED_DATA to ../shared/data)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def real_segments_dir(shared_data) -> Path:
    """The 500 real 60-s excerpts in challenge layout (read-only)."""
    return shared_data / "physionet2018-segments"


@pytest.fixture(scope="session")
def real_labels_dir(shared_data) -> Path:
    """Real tr03-0005 header/annotations/arousal masks, age-sex.csv and SHA1SUMS (read-only)."""
    return shared_data / "physionet2018-labels"
