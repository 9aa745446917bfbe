"""What every figure of the project shares: one colour per modality, the smoothing of logged training curves and
the atomic save.

`MODALITY_COLORS` is the single modality -> colour mapping. Every plot that draws one line, bar or marker series
per modality takes its colour from `modality_color` (the loss curves of train.py, their held-out reconstruction
panel, the modality-tuning bars of eval.py), so EEG is the same blue in every panel of every figure. Lines that
stand for all modalities together (the overall training loss, the mean reconstruction error, the mean tuning
entropy) are drawn in `OVERALL_COLOR`. Stage colours (physiomae.stage) are a separate, stage-keyed palette.

The palette is Okabe & Ito's colour-blind-safe set (Okabe & Ito 2008, "Color Universal Design"). Imports
matplotlib only inside the functions that draw.
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path
from typing import Iterable

import numpy as np

MODALITY_COLORS: dict[str, str] = {
    "eeg": "#0072B2",   # blue
    "eog": "#E69F00",   # orange
    "emg": "#009E73",   # bluish green
    "resp": "#56B4E9",  # sky blue
    "spo2": "#D55E00",  # vermillion
    "ecg": "#CC79A7",   # reddish purple
}
"""One colour per modality of `modeling_physiomae.configuration_physiomae.DEFAULT_MODALITIES`."""

OVERALL_COLOR = "black"
"""The colour of a line that stands for all modalities together (overall loss, mean across modalities)."""

REFERENCE_COLOR = "grey"
"""Reference lines (e.g. the error of predicting the mean)."""

# Colours for a modality name outside MODALITY_COLORS (a custom montage): chosen by a stable hash of the name, so
# one name gets one colour in every figure and every run. None of them is in MODALITY_COLORS or black.
_FALLBACK_COLORS = ("#882255", "#117733", "#999933", "#44AA99", "#AA4499", "#332288", "#DDCC77", "#88CCEE")


def modality_color(name: str) -> str:
    """The colour of modality `name` (case-insensitive): `MODALITY_COLORS`, or a fixed fallback colour for a name
    outside it."""
    key = str(name).lower()
    if key in MODALITY_COLORS:
        return MODALITY_COLORS[key]
    return _FALLBACK_COLORS[zlib.crc32(key.encode()) % len(_FALLBACK_COLORS)]


def smoothing_span(num_points: int) -> int:
    """The default EMA span (in logged points) for a series of `num_points`: a twentieth of the series, at least
    3 and at most 200; 1 (no smoothing) below 8 points. A 2,000-line log is smoothed over ~100 lines, a 15-line
    log over 3."""
    if num_points < 8:
        return 1
    return int(min(200, max(3, round(num_points / 20))))


def exponential_moving_average(values: Iterable[float | None], span: int) -> np.ndarray:
    """Debiased exponential moving average with `alpha = 2 / (span + 1)` over the *finite* values, in order.

    Debiased (the TensorBoard smoothing): the average starts from nothing rather than from the first value, so
    each output is the weighted mean of the values seen so far with weights `(1 - alpha)**age`, and the first
    output is the first value. A missing value (None or NaN, e.g. a modality dropped for a whole logging
    interval) stays NaN in the output and leaves the average unchanged. `span <= 1` returns the values."""
    raw = np.array([math.nan if value is None else float(value) for value in values], dtype=float)
    if span <= 1:
        return raw
    decay = 1.0 - 2.0 / (span + 1.0)
    smoothed = np.full_like(raw, math.nan)
    numerator = denominator = 0.0
    for index, value in enumerate(raw):
        if not math.isfinite(value):
            continue
        numerator = decay * numerator + (1.0 - decay) * value
        denominator = decay * denominator + (1.0 - decay)
        smoothed[index] = numerator / denominator
    return smoothed


def save_figure(figure, path: str | Path, dpi: int = 110) -> Path:
    """Write `figure` to `path` atomically (format from the suffix, png by default)."""
    from physiomae.io import atomic_path

    path = Path(path)
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=dpi, format=path.suffix.lstrip(".").lower() or "png")
    return path


def new_figure(**figure_kwargs):
    """A `matplotlib.figure.Figure` outside pyplot (no global state, nothing to close; saved with
    `save_figure`)."""
    from matplotlib.figure import Figure

    return Figure(**figure_kwargs)
