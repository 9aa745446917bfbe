#!/usr/bin/env python
"""Fine-tune PhysioMAE encoders for sleep staging with `transformers.Trainer`, against random initialisation.

    python finetune.py --checkpoints outputs/real_segments/runs/mae_modality_drop \
        --real_segments_dir ../shared/data/physionet2018-segments --output_dir outputs/real_segments/finetune
    python finetune.py --checkpoints RUN_OR_MODEL_FOLDER --dataset_dir BUILD/dataset --seeds 0 1 2

For every checkpoint (a train.py output folder or a saved PhysioMAE folder) and every seed, two runs with the
same steps, learning rate, batches and split: `PhysioMAEForSequenceClassification.from_pretrained(export)`
and the same architecture from random initialisation (the seed's init). Probe-train windows train, probe-test
windows score (balanced accuracy, macro F1, Cohen's kappa; the real excerpts are split by sha1 of the excerpt
name, as in eval.py). Writes OUTPUT/finetune.json and OUTPUT/finetune.md (mean and standard deviation over
seeds, and the per-seed numbers).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import balanced_accuracy_score, cohen_kappa_score, f1_score
from transformers import Trainer, TrainingArguments, set_seed

from modeling_physiomae import PhysioMAEConfig, PhysioMAEForSequenceClassification
from physiomae.evaluation import probing
from physiomae.saved_dataset import ChannelMapping, DatasetLayout
from physiomae.io import atomic_write_json, atomic_write_text
from physiomae.evaluation.runner import discover_variants, load_probe_data, load_real_segments

logger = logging.getLogger("physiomae.finetune")


class StagingWindows(torch.utils.data.Dataset):
    """Labelled windows of a builder split as Trainer rows: `input_values`, `modality_mask`, `labels`."""

    def __init__(self, split, config: PhysioMAEConfig):
        mapping = ChannelMapping.for_config(config, DatasetLayout.of(split))
        values, masks = zip(*probing.iterate_signal_batches(split, 256))
        input_values, modality_mask = mapping.model_inputs(np.concatenate(values), np.concatenate(masks))
        labels = probing.TASKS["sleep_staging"].labels_from_column(np.asarray(split["sleep_stage"]))
        keep = (labels >= 0) & modality_mask.any(axis=1)
        self.input_values = torch.from_numpy(input_values[keep])
        self.modality_mask = torch.from_numpy(modality_mask[keep])
        self.labels = torch.from_numpy(labels[keep]).long()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"input_values": self.input_values[index], "modality_mask": self.modality_mask[index], "labels": self.labels[index]}


def staging_metrics(labels: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
    return {
        "balanced_accuracy": float(balanced_accuracy_score(labels, predictions)),
        "macro_f1": float(f1_score(labels, predictions, average="macro")),
        "cohen_kappa": float(cohen_kappa_score(labels, predictions)),
    }


def finetune_once(model, train_rows, test_rows, arguments, seed: int, output_dir: Path) -> dict[str, float]:
    """One Trainer run; returns the probe-test metrics."""
    training_arguments = TrainingArguments(
        output_dir=str(output_dir),
        max_steps=arguments.max_steps,
        per_device_train_batch_size=arguments.batch_size,
        per_device_eval_batch_size=128,
        learning_rate=arguments.learning_rate,
        weight_decay=arguments.weight_decay,
        warmup_steps=int(round(arguments.warmup_ratio * arguments.max_steps)),
        lr_scheduler_type="cosine",
        seed=seed,
        use_cpu=arguments.device == "cpu",
        save_strategy="no",
        report_to="none",
        logging_steps=max(1, arguments.max_steps // 5),
        disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=training_arguments, train_dataset=train_rows)
    trainer.train()
    logits = trainer.predict(test_rows).predictions
    logits = logits[0] if isinstance(logits, tuple) else logits
    return staging_metrics(test_rows.labels.numpy(), logits.argmax(axis=-1))


def summarise(runs: list[dict]) -> dict[str, dict[str, float]]:
    metrics = runs[0].keys()
    return {
        metric: {"mean": float(np.mean([run[metric] for run in runs])), "std": float(np.std([run[metric] for run in runs]))}
        for metric in metrics
    }


def markdown(results: dict) -> str:
    lines = [
        f"Fine-tuning for sleep staging ({results['data']}); {results['settings']['max_steps']} steps, lr "
        f"{results['settings']['learning_rate']}, batch {results['settings']['batch_size']}, seeds {results['settings']['seeds']}.",
        "",
        "| variant | init | balanced accuracy | macro F1 | kappa | per seed (balanced accuracy) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for variant, entry in results["variants"].items():
        for init in ("pretrained", "random_init"):
            summary = entry[init]["summary"]
            per_seed = ", ".join(f"{run['balanced_accuracy']:.3f}" for run in entry[init]["runs"])
            lines.append(
                f"| {variant} | {init} | {summary['balanced_accuracy']['mean']:.3f} ± {summary['balanced_accuracy']['std']:.3f} "
                f"| {summary['macro_f1']['mean']:.3f} | {summary['cohen_kappa']['mean']:.3f} | {per_seed} |"
            )
        lines.append(f"| {variant} | pretrained − random | {entry['difference_balanced_accuracy']:+.3f} | | | |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoints", nargs="+", required=True)
    parser.add_argument("--real_segments_dir")
    parser.add_argument("--real_segments_test_fraction", type=float, default=0.5)
    parser.add_argument("--real_segments_limit", type=int, help="use only N real excerpts, evenly spaced (quick runs)")
    parser.add_argument("--dataset_dir")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--max_steps", type=int, default=300)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--learning_rate", type=float, default=5e-4)
    parser.add_argument("--weight_decay", type=float, default=0.05)
    parser.add_argument("--warmup_ratio", type=float, default=0.1)
    parser.add_argument("--device", default="cpu")
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if arguments.real_segments_dir:
        data = load_real_segments(arguments.real_segments_dir, arguments.real_segments_limit, arguments.real_segments_test_fraction)
    elif arguments.dataset_dir:
        data = load_probe_data(arguments.dataset_dir)
    else:
        parser.error("give --real_segments_dir or --dataset_dir")
    output_dir = Path(arguments.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    results = {"data": data.description, "settings": vars(arguments), "variants": {}}
    for checkpoint in arguments.checkpoints:
        for variant in discover_variants(checkpoint):
            if variant.is_concatenation:
                continue  # a concatenation of unimodal encoders is not one fine-tunable model
            folder = variant.encoder_folders[0]
            config = PhysioMAEConfig.from_pretrained(folder)
            train_rows, test_rows = StagingWindows(data.train_split, config), StagingWindows(data.test_split, config)
            entry = {}
            for init in ("pretrained", "random_init"):
                runs = []
                for seed in arguments.seeds:
                    set_seed(seed)
                    labels = dict(num_labels=5, id2label=dict(enumerate(probing.SLEEP_STAGE_NAMES)),
                                  label2id={name: index for index, name in enumerate(probing.SLEEP_STAGE_NAMES)})
                    if init == "pretrained":
                        model = PhysioMAEForSequenceClassification.from_pretrained(folder, **labels)
                    else:
                        model = PhysioMAEForSequenceClassification(PhysioMAEConfig.from_pretrained(folder, **labels))
                    metrics = finetune_once(model, train_rows, test_rows, arguments, seed, output_dir / "runs" / variant.name / f"{init}-{seed}")
                    logger.info("%s %s seed %d: %s", variant.name, init, seed, metrics)
                    runs.append({"seed": seed, **metrics})
                entry[init] = {"runs": runs, "summary": summarise([{k: v for k, v in run.items() if k != "seed"} for run in runs])}
            entry["difference_balanced_accuracy"] = (
                entry["pretrained"]["summary"]["balanced_accuracy"]["mean"] - entry["random_init"]["summary"]["balanced_accuracy"]["mean"]
            )
            results["variants"][variant.name] = entry
    atomic_write_json(output_dir / "finetune.json", results)
    atomic_write_text(output_dir / "finetune.md", markdown(results))
    print(markdown(results))
    return results


def cli() -> int:
    """Console-script entry point (`physiomae-finetune`): exit status 0 on success."""
    main()
    return 0


if __name__ == "__main__":
    sys.exit(cli())
