"""PhysioMAE's library: what the scripts share and the Hub copy of the model does not need.

- `physiomae.layout`: the dataset contract (stage names, record split, saved-dataset location and channel layout,
  dataset-to-model channel mapping).
- `physiomae.io`: atomic file writes.
- `physiomae.arguments`: YAML defaults for the scripts' argument parsers.
- `physiomae.evaluation`: linear probes, metrics, analyses and the evaluation run behind eval.py.
- `physiomae.model_card`, `physiomae.hub`: model cards and Hub export / push.

The model itself (what `trust_remote_code=True` loads) is the `modeling_physiomae` package; it imports nothing
from here. Importing this package imports nothing heavy.
"""
