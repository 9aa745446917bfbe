"""`physiomae-stage`: stage a night with a sleep-staging classifier, write the hypnogram as CSV and PNG.

    physiomae-stage NIGHT.edf --out hypnogram.csv                    # the stager shipped with the package
    physiomae-stage NIGHT.edf --model outputs/stager --out hypnogram.csv
    physiomae-stage records/tr03-0005 --model org/physiomae-sleep-staging --out tr03-0005.csv --png tr03-0005.png

NIGHT is an EDF/EDF+/BDF file or a WFDB record (its .hea, or the path without extension); the model is the
sleep stager shipped with the package (`physiomae.pretrained.SLEEP_STAGER`) unless `--model` names a folder or Hub
id of another sleep-staging classifier (finetune.py's output, or eval.py's exported `*-sleep-staging`
classifier); it is loaded with `pipeline("sleep-staging", model=..., trust_remote_code=True)`.

CSV (one row per 30-s epoch): `onset_seconds,stage,p_W,p_N1,p_N2,p_N3,p_REM`; an epoch in which none of the
model's modalities is present has an empty stage and empty probabilities. PNG (default: the CSV's name with
.png): the hypnogram (W, REM, N1, N2, N3 from top to bottom, as sleep labs draw it) above the stacked stage
probabilities, against hours from the start of the recording. Prints minutes per stage.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path
from typing import Any

from physiomae.io import atomic_path, atomic_write_text
from physiomae.pretrained import SLEEP_STAGER

HYPNOGRAM_ORDER = ("W", "REM", "N1", "N2", "N3")  # top to bottom
STAGE_COLOURS = {"W": "#f4a261", "REM": "#e76f51", "N1": "#a8dadc", "N2": "#457b9d", "N3": "#1d3557"}


def stage_night(night: str, model: str, windows_per_batch: int = 64, device: str | None = None,
                progress_bar: bool = True) -> list[dict[str, Any]]:
    """The pipeline's rows for `night` (see `modeling_physiomae.pipeline_physiomae`)."""
    from transformers import pipeline

    staging = pipeline("sleep-staging", model=model, trust_remote_code=True, device=device)
    return staging(str(night), windows_per_batch=windows_per_batch, progress_bar=progress_bar)


def hypnogram_csv(rows: list[dict[str, Any]], labels: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["onset_seconds", "stage", *(f"p_{label}" for label in labels)])
    for row in rows:
        probabilities = row["probabilities"] or {}
        writer.writerow([f"{row['onset']:g}", row["stage"] or "",
                         *(f"{probabilities[label]:.4f}" if label in probabilities else "" for label in labels)])
    return buffer.getvalue()


def plot_hypnogram(rows: list[dict[str, Any]], labels: list[str], output_png: Path, epoch_seconds: float,
                   title: str = "") -> None:
    """Hypnogram above stacked stage probabilities, against hours (atomic write)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    hours = np.array([row["onset"] for row in rows] + [rows[-1]["onset"] + epoch_seconds]) / 3600.0
    order = [stage for stage in HYPNOGRAM_ORDER if stage in labels] + [label for label in labels if label not in HYPNOGRAM_ORDER]
    level = np.array([order.index(row["stage"]) if row["stage"] in order else np.nan for row in rows], dtype=float)
    probabilities = np.array([[(row["probabilities"] or {}).get(label, np.nan) for label in order] for row in rows])
    figure, (stage_axis, probability_axis) = plt.subplots(2, 1, figsize=(11, 5), sharex=True,
                                                          gridspec_kw={"height_ratios": [2, 1.3]})
    stage_axis.step(hours, np.append(level, level[-1]), where="post", color="black", linewidth=1.2)
    for index, stage in enumerate(order):
        shown = np.where(level == index, index, np.nan)
        stage_axis.step(hours, np.append(shown, shown[-1]), where="post", color=STAGE_COLOURS.get(stage, "grey"),
                        linewidth=4)
    stage_axis.set_yticks(range(len(order)), order)
    stage_axis.set_ylim(len(order) - 0.5, -0.5)
    stage_axis.set_ylabel("stage")
    stage_axis.set_title(title)
    stage_axis.grid(axis="x", alpha=0.3)
    filled = np.nan_to_num(probabilities, nan=0.0)
    probability_axis.stackplot(hours[:-1], filled.T, step="post", labels=order,
                               colors=[STAGE_COLOURS.get(stage, "grey") for stage in order])
    probability_axis.set_ylim(0, 1)
    probability_axis.set_ylabel("probability")
    probability_axis.set_xlabel("hours from the start of the recording")
    probability_axis.legend(loc="upper right", ncol=len(order), fontsize=7)
    figure.tight_layout()
    with atomic_path(output_png) as temporary:
        figure.savefig(temporary, dpi=110, format="png")
    plt.close(figure)


def stage_minutes(rows: list[dict[str, Any]], labels: list[str], epoch_seconds: float) -> dict[str, float]:
    minutes = {label: 0.0 for label in labels}
    minutes["unscored"] = 0.0
    for row in rows:
        minutes[row["stage"] or "unscored"] += epoch_seconds / 60.0
    return minutes


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="physiomae-stage", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("night", help="EDF/EDF+/BDF file or WFDB record")
    parser.add_argument("--model", default=SLEEP_STAGER,
                        help="folder or Hub id of a sleep-staging classifier (default: the shipped stager)")
    parser.add_argument("--out", required=True, help="hypnogram CSV to write")
    parser.add_argument("--png", help="hypnogram figure (default: --out with .png)")
    parser.add_argument("--windows_per_batch", type=int, default=64, help="30-s windows per model call")
    parser.add_argument("--device", default=None, help="e.g. cpu, cuda:0 (default: the pipeline's choice)")
    parser.add_argument("--no_progress", action="store_true", help="hide the progress bar")
    arguments = parser.parse_args(argv)
    night = Path(arguments.night)
    if not night.exists() and not night.with_suffix(".hea").exists():
        parser.error(f"{night} does not exist (an EDF file, or a WFDB record's .hea or its path without extension)")
    rows = stage_night(arguments.night, arguments.model, arguments.windows_per_batch, arguments.device,
                       progress_bar=not arguments.no_progress)
    if not rows:
        raise ValueError(f"{night}: the pipeline returned no epoch")
    labels = next((list(row["probabilities"]) for row in rows if row["probabilities"]), [])
    epoch_seconds = rows[1]["onset"] - rows[0]["onset"] if len(rows) > 1 else 30.0
    out = Path(arguments.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, hypnogram_csv(rows, labels))
    png = Path(arguments.png) if arguments.png else out.with_suffix(".png")
    plot_hypnogram(rows, labels, png, epoch_seconds, title=night.name)
    minutes = stage_minutes(rows, labels, epoch_seconds)
    print(f"{night}: {len(rows)} epochs of {epoch_seconds:g} s -> {out}, {png}")
    print("minutes per stage: " + ", ".join(f"{stage} {value:.1f}" for stage, value in minutes.items()))
    return {"csv": str(out), "png": str(png), "epochs": len(rows), "minutes": minutes}


def cli() -> int:
    try:
        main()
    except (FileNotFoundError, ValueError, OSError) as error:
        print(f"physiomae-stage error: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(cli())
