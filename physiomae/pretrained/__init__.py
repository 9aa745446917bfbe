"""The models shipped with the package: pretrained on real PhysioNet 2018 excerpts, installed by `pip install`.

    from transformers import AutoModel, pipeline
    from physiomae.pretrained import ENCODER, SLEEP_STAGER

    encoder = AutoModel.from_pretrained(ENCODER, trust_remote_code=True)
    staging = pipeline("sleep-staging", model=SLEEP_STAGER, trust_remote_code=True)

- `ENCODER` (folder `physiomae-tiny/`): the encoder pretrained with masked autoencoding and input modality dropout
  (`mae_modality_drop`) on 1,749 real 60-s excerpts that are not test excerpts.
- `SLEEP_STAGER` (folder `physiomae-tiny-sleep-staging/`): that encoder with a linear sleep-staging head (the
  linear probe fitted on 750 labelled excerpts, folded into the classifier); `physiomae-stage NIGHT.edf` uses it
  when no `--model` is given.

Each folder is a Hub folder (config with `auto_map`, safetensors, `preprocessor_config.json`, the model's code
files) whose README.md is the model card with the measured numbers. Both are rebuilt by
`python run_experiment.py configs/release.yaml` (see `physiomae.release`).
"""

from pathlib import Path

PRETRAINED_DIR = Path(__file__).resolve().parent
ENCODER_NAME = "physiomae-tiny"
SLEEP_STAGER_NAME = "physiomae-tiny-sleep-staging"
ENCODER = str(PRETRAINED_DIR / ENCODER_NAME)
SLEEP_STAGER = str(PRETRAINED_DIR / SLEEP_STAGER_NAME)

__all__ = ["ENCODER", "ENCODER_NAME", "PRETRAINED_DIR", "SLEEP_STAGER", "SLEEP_STAGER_NAME", "folder"]


def folder(name: str) -> str:
    """The shipped folder `name` (e.g. "physiomae-tiny-sleep-staging"); FileNotFoundError naming the shipped ones."""
    path = PRETRAINED_DIR / name
    if not (path / "config.json").is_file():
        shipped = sorted(child.name for child in PRETRAINED_DIR.iterdir() if (child / "config.json").is_file())
        raise FileNotFoundError(f"no shipped model {name!r}; shipped: {shipped}")
    return str(path)
