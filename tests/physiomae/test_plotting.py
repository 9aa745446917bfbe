"""Figures: one modality palette across every panel and plot (physiomae.plotting), smoothed loss curves."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from matplotlib.colors import to_hex

from physiomae.plotting import (MODALITY_COLORS, OVERALL_COLOR, exponential_moving_average, modality_color,
                                smoothing_span)

MODALITIES = ["eeg", "eog", "emg", "resp", "spo2", "ecg"]


def write_log(path, num_lines: int = 240, modalities=MODALITIES, evaluate_every: int = 40, seed: int = 0):
    """A train_log.jsonl as train.py writes it: a noisy, falling loss per modality (each line the interval mean),
    spo2 missing on some lines (dropped for a whole interval), and the held-out reconstruction error every
    `evaluate_every` lines."""
    random = np.random.default_rng(seed)
    lines = []
    for index in range(num_lines):
        step = 25 * (index + 1)
        per_modality = {}
        for offset, name in enumerate(modalities):
            trend = 0.4 + 0.6 * math.exp(-index / (60 + 10 * offset))
            per_modality[name] = None if name == "spo2" and len(modalities) > 1 and index % 7 == 3 else float(
                trend * math.exp(0.15 * random.standard_normal()))
        present = [value for value in per_modality.values() if value is not None]
        entry = {"step": step, "loss": sum(present) / len(present), "loss_per_modality": per_modality,
                 "learning_rate": 1e-4 * min(1.0, step / 500), "step_loss": present[0]}
        if (index + 1) % evaluate_every == 0:
            errors = {name: 0.3 + 0.6 * math.exp(-index / 100) + 0.02 * offset
                      for offset, name in enumerate(modalities)}
            entry["relative_reconstruction_error"] = errors
            entry["relative_reconstruction_error_mean"] = sum(errors.values()) / len(errors)
        lines.append(json.dumps(entry))
    path.write_text("\n".join(lines) + "\n")
    return path


def lines_by_gid(figure) -> dict:
    found = {}
    for axis in figure.axes:
        for line in axis.get_lines():
            if line.get_gid():
                assert line.get_gid() not in found, f"two lines share the gid {line.get_gid()}"
                found[line.get_gid()] = line
    return found


def total_variation(values) -> float:
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    return float(np.abs(np.diff(values)).sum())


def test_palette_covers_the_default_modalities_with_distinct_colours():
    from modeling_physiomae.configuration_physiomae import DEFAULT_MODALITIES

    assert set(DEFAULT_MODALITIES) <= set(MODALITY_COLORS)
    colours = [to_hex(modality_color(name)) for name in DEFAULT_MODALITIES]
    assert len(set(colours)) == len(colours)
    assert to_hex(OVERALL_COLOR) not in colours
    assert modality_color("EEG") == MODALITY_COLORS["eeg"]
    # a name outside the palette: one fixed colour, not one of the palette's
    assert modality_color("pleth") == modality_color("pleth")
    assert to_hex(modality_color("pleth")) not in colours


def test_exponential_moving_average():
    values = [1.0, 3.0, None, 2.0, math.nan, 5.0]
    np.testing.assert_array_equal(exponential_moving_average(values, 1), [1.0, 3.0, math.nan, 2.0, math.nan, 5.0])
    smoothed = exponential_moving_average(values, 3)  # alpha 0.5, debiased
    assert smoothed[0] == 1.0  # debiased: starts at the first value, not pulled towards 0
    assert smoothed[1] == pytest.approx((0.5 * 1 + 3) / 1.5)
    assert math.isnan(smoothed[2]) and math.isnan(smoothed[4])  # missing stays missing ...
    assert smoothed[3] == pytest.approx((0.25 * 1 + 0.5 * 3 + 2) / 1.75)  # ... and does not move the average
    np.testing.assert_allclose(exponential_moving_average([2.0] * 50, 10), 2.0)
    assert smoothing_span(5) == 1 and smoothing_span(15) == 3 and smoothing_span(2000) == 100 and smoothing_span(10 ** 6) == 200


def test_loss_curves_one_colour_per_modality_in_every_panel_and_smoothed(tmp_path):
    from physiomae.training.export import plot_loss_curves

    log = write_log(tmp_path / "train_log.jsonl")
    output = tmp_path / "loss_curves.png"
    figure = plot_loss_curves({"": log}, output)
    assert output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".loss_curves.png*")), "the temporary file was left behind"
    lines = lines_by_gid(figure)
    for name in MODALITIES:
        expected = to_hex(MODALITY_COLORS[name])
        smoothed, raw = lines[f"loss/-/{name}/smoothed"], lines[f"loss/-/{name}/raw"]
        reconstruction = lines[f"reconstruction/-/{name}"]
        assert to_hex(smoothed.get_color()) == to_hex(raw.get_color()) == to_hex(reconstruction.get_color()) \
            == expected, name
        assert raw.get_alpha() < 0.5 and raw.get_linewidth() < smoothed.get_linewidth()
        assert total_variation(smoothed.get_ydata()) < 0.3 * total_variation(raw.get_ydata()), name
        np.testing.assert_array_equal(np.isnan(smoothed.get_ydata()), np.isnan(raw.get_ydata()))
    for gid in ("loss/-/overall/smoothed", "loss/-/overall/raw", "reconstruction/-/mean"):
        assert to_hex(lines[gid].get_color()) == to_hex(OVERALL_COLOR), gid
    assert total_variation(lines["loss/-/overall/smoothed"].get_ydata()) < \
        0.3 * total_variation(lines["loss/-/overall/raw"].get_ydata())
    legend_labels = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert "eeg" in legend_labels and not any("raw" in label for label in legend_labels)


def test_loss_curves_of_per_modality_runs_take_the_modality_colour(tmp_path):
    """mae_unimodal: one log per modality, labelled with the modality; each run's loss is that modality's."""
    from physiomae.training.export import loss_curves_figure

    paths = {name: write_log(tmp_path / f"{name}.jsonl", num_lines=60, modalities=[name], evaluate_every=20,
                             seed=index) for index, name in enumerate(["eeg", "resp"])}
    paths["ecg"] = tmp_path / "missing.jsonl"  # a run without a log yet is left out
    lines = lines_by_gid(loss_curves_figure(paths))
    for name in ("eeg", "resp"):
        expected = to_hex(MODALITY_COLORS[name])
        for gid in (f"loss/{name}/overall/smoothed", f"reconstruction/{name}/{name}", f"lr/{name}"):
            assert to_hex(lines[gid].get_color()) == expected, gid
    assert not any("/ecg" in gid for gid in lines)
    assert loss_curves_figure({"": tmp_path / "missing.jsonl"}) is None


def test_modality_tuning_bars_use_the_palette(tmp_path):
    from physiomae.evaluation.analysis import ModalityTuning, modality_tuning_figure, plot_modality_tuning

    random = np.random.default_rng(0)
    layers, hidden = 3, 16
    tunings = [ModalityTuning(response_change=np.zeros((layers, hidden, len(MODALITIES))),
                              tuning=np.zeros((layers, hidden, len(MODALITIES))),
                              entropy=random.uniform(size=(layers, hidden)),
                              dominant=random.integers(0, len(MODALITIES), size=(layers, hidden)),
                              modality_names=list(MODALITIES), ablation=ablation)
               for ablation in ("mask", "zero_input")]
    figure = modality_tuning_figure(tunings)
    for tuning in tunings:
        for name in MODALITIES:
            patches = [patch for axis in figure.axes for patch in axis.patches
                       if patch.get_gid() == f"dominant/{tuning.ablation}/{name}"]
            assert len(patches) == layers
            assert {to_hex(patch.get_facecolor()) for patch in patches} == {to_hex(MODALITY_COLORS[name])}
        assert to_hex(lines_by_gid(figure)[f"entropy/{tuning.ablation}"].get_color()) == to_hex(OVERALL_COLOR)
    plot_modality_tuning(tunings, tmp_path / "modality_tuning.png")
    assert (tmp_path / "modality_tuning.png").read_bytes()[:4] == b"\x89PNG"
