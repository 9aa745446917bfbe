"""Which encoders eval.py (and finetune.py) probe: variants of a checkpoint, how to load them, and the
reconstruction error their training run measured. Not copied to the Hub.

A checkpoint is a training output folder (`run_args.json` + `export/`) or any saved PhysioMAE folder. It gives
one `EncoderVariant` (its pooled embedding); a `mae_unimodal` run gives one variant per modality (that encoder
alone) and one that concatenates them.

Reconstruction quality is not measured here but read from the training run: train.py writes
`reconstruction_eval.json` (OUTPUT/ for one model, OUTPUT/unimodal/<modality>/ for each mae_unimodal model)
with the relative reconstruction error (1 - R^2 of the masked patches against the training mean, on records
held out of the pretraining split). `read_reconstruction_eval` returns it for a variant (None for bare model
folders and runs without the file); a concatenation of unimodal encoders takes each modality from its own
encoder's run (None unless every run has it).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..strategies import STRATEGIES

logger = logging.getLogger("physiomae.eval")

RECONSTRUCTION_EVAL_NAME = "reconstruction_eval.json"  # written by train.py into the run folder


def safe_name(name: str) -> str:
    """`name` usable as a file or folder name: characters other than letters, digits and -_. become "-"."""
    return "".join(character if character.isalnum() or character in "-_." else "-" for character in name)


@dataclass
class EncoderVariant:
    """Features from one or more frozen encoders (more than one = concatenated unimodal encoders).

    Attributes:
        name: display name (unique in a run).
        strategy: the training strategy (`run_args.json`), or "unknown" for a bare model folder.
        encoder_folders: Hub-format folders of the encoders, in concatenation order.
        source: the checkpoint path given on the command line.
    """

    name: str
    strategy: str
    encoder_folders: list[Path]
    source: str

    @property
    def is_concatenation(self) -> bool:
        return len(self.encoder_folders) > 1

    @property
    def is_untrained(self) -> bool:
        """The untrained floor (a strategy that does not train, e.g. `random_init`)."""
        strategy = STRATEGIES.get(self.strategy)
        return strategy is not None and not strategy.trains


def read_strategy(run_args_path: Path) -> str:
    """The strategy recorded by train.py (`arguments.strategy`, or a top-level `strategy`)."""
    try:
        run_args = json.loads(run_args_path.read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"{run_args_path}: unreadable run arguments ({error})") from error
    strategy = run_args.get("strategy") or (run_args.get("arguments") or {}).get("strategy")
    return str(strategy or "unknown")


def _is_model_folder(folder: Path) -> bool:
    """A saved model folder (config.json); a model of another type is refused, naming the folder and type."""
    config_path = folder / "config.json"
    if not config_path.is_file():
        return False
    try:
        model_type = json.loads(config_path.read_text()).get("model_type")
    except (OSError, ValueError) as error:
        raise ValueError(f"{config_path}: unreadable config ({error})") from None
    if model_type != "physiomae":
        raise ValueError(f"{folder} holds a {model_type!r} model, not a PhysioMAE one (config.json model_type); "
                         f"eval.py probes PhysioMAE encoders only")
    return True


def discover_variants(checkpoint: str | Path) -> list[EncoderVariant]:
    """Variants of one checkpoint: a training output folder (run_args.json + export/) or a model folder.

    The variant is named after the folder (the training output folder, or the model folder itself)."""
    folder = Path(checkpoint)
    if not folder.is_dir():
        raise FileNotFoundError(f"checkpoint {folder}: not a folder")
    run_args_path = folder / "run_args.json"
    if run_args_path.is_file():
        strategy = read_strategy(run_args_path)
        name = folder.name
        export = folder / "export"
        if _is_model_folder(export):
            return [EncoderVariant(name, strategy, [export], str(folder))]
        unimodal = sorted(path for path in export.iterdir() if _is_model_folder(path)) if export.is_dir() else []
        if not unimodal:
            raise FileNotFoundError(f"checkpoint {folder}: run_args.json found but no model under {export}")
        variants = [EncoderVariant(f"{name}-{path.name}", strategy, [path], str(folder)) for path in unimodal]
        if len(unimodal) > 1:
            variants.append(EncoderVariant(f"{name}-concat", strategy, unimodal, str(folder)))
        return variants
    if _is_model_folder(folder):
        strategy = "unknown"
        for candidate in (folder.parent / "run_args.json", folder.parent.parent / "run_args.json"):
            if candidate.is_file():  # OUTPUT/export or OUTPUT/export/<modality> of a training run
                strategy = read_strategy(candidate)
                break
        return [EncoderVariant(folder.name, strategy, [folder], str(folder))]
    raise FileNotFoundError(f"checkpoint {folder}: neither a training output (run_args.json) nor a model folder (config.json)")


def reconstruction_eval_path(encoder_folder: Path) -> Path | None:
    """train.py's reconstruction_eval.json for an exported encoder: OUTPUT/export -> OUTPUT/, and
    OUTPUT/export/<modality> -> OUTPUT/unimodal/<modality>/ (None: not a training run's export, or no file)."""
    folder = Path(encoder_folder)
    candidates = []
    if folder.name == "export" and (folder.parent / "run_args.json").is_file():
        candidates.append(folder.parent / RECONSTRUCTION_EVAL_NAME)
    if folder.parent.name == "export" and (folder.parent.parent / "run_args.json").is_file():
        candidates.append(folder.parent.parent / "unimodal" / folder.name / RECONSTRUCTION_EVAL_NAME)
    return next((path for path in candidates if path.is_file()), None)


def read_reconstruction_eval(variant: EncoderVariant) -> dict | None:
    """The held-out relative reconstruction error of the variant's encoder(s), as train.py measured it.

    Returns `{"relative_reconstruction_error": {modality: float | None}, "relative_reconstruction_error_mean":
    float | None, "step", "reconstruction_target", "sources"}`, or None when some encoder has no
    reconstruction_eval.json. The mean is over the modalities measured (not null)."""
    per_modality, steps, targets, sources = {}, [], [], []
    for folder in variant.encoder_folders:
        path = reconstruction_eval_path(folder)
        if path is None:
            return None
        try:
            payload = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            logger.warning("%s: unreadable reconstruction evaluation (%s); reported as missing", path, error)
            return None
        values = payload.get("relative_reconstruction_error") or {}
        modalities = payload.get("modalities") or list(values)
        for modality in modalities:  # a unimodal run reports its own modality only
            value = values.get(modality)
            per_modality[modality] = float(value) if value is not None and np.isfinite(value) else None
        steps.append(payload.get("step"))
        targets.append(payload.get("reconstruction_target"))
        sources.append(str(path))
    present = [value for value in per_modality.values() if value is not None]
    return {
        "relative_reconstruction_error": per_modality,
        "relative_reconstruction_error_mean": float(np.mean(present)) if present else None,
        "step": steps[0] if len(set(steps)) == 1 else steps,
        "reconstruction_target": targets[0] if len(set(targets)) == 1 else targets,
        "sources": sources,
    }


def load_encoder(folder: Path, device: str = "cpu"):
    """`PhysioMAEModel` from any saved PhysioMAE folder (encoder, pretraining, contrastive, classifier)."""
    from modeling_physiomae.modeling_physiomae import PhysioMAEModel

    from transformers.utils import logging as transformers_logging

    previous = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()  # a pretraining folder's decoder weights are expected extras
    try:
        model, loading_info = PhysioMAEModel.from_pretrained(str(folder), output_loading_info=True)
    finally:
        transformers_logging.set_verbosity(previous)
    if loading_info["missing_keys"]:  # scoring a randomly initialised encoder would be a silent wrong result
        missing = sorted(loading_info["missing_keys"])
        raise ValueError(f"{folder}: the saved weights lack {len(missing)} encoder tensor(s) (e.g. {missing[:3]}); "
                         f"not a PhysioMAE encoder checkpoint")
    return model.to(device).eval()

