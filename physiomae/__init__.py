"""PhysioMAE's library: what the scripts share and the Hub copy of the model does not need.

- `physiomae.strategies`: the pretraining strategies, one record each.
- `physiomae.saved_dataset`: a built dataset as the scripts read it (location, splits, channel layout,
  preprocessing settings, dataset-to-model channel mapping).
- `physiomae.training`: what train.py runs (arguments, data, the run loop, checkpoints, export).
- `physiomae.io`: atomic file writes.
- `physiomae.plotting`: what every figure shares: `MODALITY_COLORS` (one colour per modality in every plot),
  the smoothing of logged curves, the atomic save.
- `physiomae.config_files`: YAML defaults for the scripts' argument parsers, packaged configs by name.
- `physiomae.evaluation`: linear probes, analyses and the evaluation run behind eval.py.
- `physiomae.metrics`: the `evaluate` metric modules (sleep staging, arousal gross AUPRC) and Trainer
  `compute_metrics`; the probes score with the same functions.
- `physiomae.finetuning`: Trainer fine-tuning for sleep staging (finetune.py); `physiomae.stage`: physiomae-stage.
- `physiomae.model_card`, `physiomae.hub`: model cards and Hub export / push.
- `physiomae.pretrained`: the shipped encoder and sleep stager (`ENCODER`, `SLEEP_STAGER`);
  `physiomae.release`: the release step that writes them.
- `physiomae.cli`: the programs train, eval, finetune and run_experiment (the checkout's top-level scripts link
  to them); nothing in the library imports them.

The model itself (what `trust_remote_code=True` loads) is the `modeling_physiomae` package; it imports nothing
from here. Importing this package imports nothing heavy.
"""
