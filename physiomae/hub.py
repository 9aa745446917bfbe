"""Write a PhysioMAE model as a self-contained Hugging Face Hub folder, and push such a folder.

The folder loads with `trust_remote_code=True` in a process that never imported this package:

    config.json               (with `auto_map` for AutoConfig, AutoModel, AutoModelForPreTraining,
                               AutoModelForSequenceClassification and AutoFeatureExtractor; a sleep-staging
                               classifier also with `custom_pipelines` naming the sleep-staging pipeline)
    model.safetensors         (weights only as safetensors)
    preprocessor_config.json  (the feature extractor's settings, with its own `auto_map`)
    configuration_physiomae.py, modeling_physiomae.py, feature_extraction_physiomae.py, recording_physiomae.py,
    pipeline_physiomae.py
    README.md                 (optional model card)

Every `save_pretrained` of our classes writes the code files and the auto_map (the Hub copy does it,
`configuration_physiomae.copy_hub_code`); `save_for_hub` adds the atomic replacement, the card and the checks.

This module is not copied to the Hub.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import modeling_physiomae
from modeling_physiomae.configuration_physiomae import FEATURE_EXTRACTOR_AUTO_MAP, HUB_CODE_FILES, MODEL_AUTO_MAP

PACKAGE_DIR = Path(modeling_physiomae.__file__).resolve().parent  # the Hub copy of the model

CODE_FILES = HUB_CODE_FILES
REQUIRED_FILES = ("config.json", "model.safetensors", "preprocessor_config.json", *CODE_FILES)


def _default_feature_extractor(config):
    """The feature extractor matching the model's channels, sampling rate and window."""
    from modeling_physiomae.feature_extraction_physiomae import PhysioMAEFeatureExtractor

    return PhysioMAEFeatureExtractor.from_config(config)


def save_for_hub(model, folder, feature_extractor=None, readme_text: str | None = None) -> Path:
    """
    Save `model` (any PhysioMAE model class) as a Hub-ready folder, atomically.

    Everything is written into a temporary sibling folder first, checked, then moved into place (an
    existing folder is replaced only after the new one is complete), so a crash never leaves a
    half-written export.

    Args:
        model: a `PhysioMAEPreTrainedModel` (encoder, pretraining, classification or contrastive).
        folder: destination folder.
        feature_extractor: a `PhysioMAEFeatureExtractor`; default: one built for the model's config.
        readme_text: written as `README.md` when given.

    Returns:
        The destination folder as a `Path`.
    """
    folder = Path(folder).resolve()
    missing_code = [name for name in CODE_FILES if not (PACKAGE_DIR / name).is_file()]
    if missing_code:
        raise FileNotFoundError(f"cannot export: code file(s) {missing_code} missing from {PACKAGE_DIR}")
    if feature_extractor is None:
        feature_extractor = _default_feature_extractor(model.config)

    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.partial-", dir=folder.parent))
    os.chmod(staging, 0o755)  # mkdtemp makes it private; the export is an ordinary folder
    try:
        # The Hub copy's save_pretrained methods write the code files and the auto_map (model and extractor).
        model.save_pretrained(staging)
        feature_extractor.save_pretrained(staging)
        if readme_text is not None:
            (staging / "README.md").write_text(readme_text)

        for pickled in list(staging.glob("*.bin")) + list(staging.glob("*.pt")):
            pickled.unlink()  # safetensors only
        missing = [name for name in REQUIRED_FILES if not (staging / name).is_file()]
        if missing:
            raise RuntimeError(f"export to {folder} is incomplete, missing {missing}")
        saved_config = json.loads((staging / "config.json").read_text())
        if saved_config.get("auto_map") != MODEL_AUTO_MAP:
            raise RuntimeError(f"export to {folder}: config.json has no complete auto_map ({saved_config.get('auto_map')})")
        saved_preprocessor = json.loads((staging / "preprocessor_config.json").read_text())
        if saved_preprocessor.get("auto_map") != FEATURE_EXTRACTOR_AUTO_MAP:
            raise RuntimeError(f"export to {folder}: preprocessor_config.json has no auto_map "
                               f"({saved_preprocessor.get('auto_map')})")

        if folder.exists():
            backup = folder.parent / f".{folder.name}.replaced-{os.getpid()}"
            os.replace(folder, backup)
            os.replace(staging, folder)
            shutil.rmtree(backup, ignore_errors=True)
        else:
            os.replace(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def push_to_hub(folder, repo_id: str, api=None, token: str | None = None, private: bool = False) -> str:
    """
    Upload an exported folder to the Hub repo `repo_id` (created if needed).

    Args:
        folder: a folder written by `save_for_hub`.
        repo_id: `"user/name"`.
        api: an object with `create_repo` and `upload_folder` like `huggingface_hub.HfApi` (the seam
            tests replace); default a real `HfApi(token=token)`.
        token: Hub token; default the logged-in one.
        private: create the repo as private.

    Returns:
        The commit URL (or whatever `upload_folder` returns, as text).

    Raises:
        FileNotFoundError if the folder is not a complete export; RuntimeError with the reason (offline
        mode, no token, network or permission error) if the push fails. The folder is never modified.
    """
    folder = Path(folder)
    missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder} is not a complete PhysioMAE export (missing {missing}); run save_for_hub first")
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi(token=token)
    try:
        api.create_repo(repo_id=repo_id, token=token, private=private, exist_ok=True, repo_type="model")
        result = api.upload_folder(
            repo_id=repo_id,
            folder_path=str(folder),
            token=token,
            repo_type="model",
            commit_message=f"Upload PhysioMAE export {folder.name}",
        )
    except Exception as error:
        hints = []
        if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}:
            hints.append("HF_HUB_OFFLINE is set, so nothing can be uploaded (unset it)")
        if token is None:
            try:
                from huggingface_hub import get_token

                if get_token() is None:
                    hints.append("no Hugging Face token found (run `hf auth login` or pass token=...)")
            except ImportError:  # pragma: no cover
                pass
        hint_text = "; ".join(hints) if hints else "check the network, the token and write access to the repo"
        raise RuntimeError(
            f"pushing {folder} to the Hub repo {repo_id!r} failed: {type(error).__name__}: {error}. "
            f"Hint: {hint_text}. The local export in {folder} is kept unchanged."
        ) from error
    return str(result)


__all__ = ["save_for_hub", "push_to_hub", "MODEL_AUTO_MAP", "FEATURE_EXTRACTOR_AUTO_MAP", "CODE_FILES"]
