#!/usr/bin/env python
"""Fine-tune a PhysioMAE encoder for sleep staging with `transformers.Trainer`.

One classifier (what a user keeps)::

    python finetune.py --model_name_or_path outputs/tiny/export --dataset_dir BUILD --output_dir outputs/stager

trains `PhysioMAEForSequenceClassification` from the encoder on probe-train (a validation share held out by
record), keeps the best checkpoint by validation balanced accuracy, scores probe-test, and saves the classifier
with its feature extractor into OUTPUT: a Hub folder that `pipeline("sleep-staging", model=OUTPUT,
trust_remote_code=True)` and `physiomae-stage NIGHT.edf --model OUTPUT` load. OUTPUT/finetune_results.json holds
the validation and test metrics (the `evaluate` sleep-staging metric module, as eval.py reports them).

Pretrained against random initialisation (the experiment's comparison)::

    python finetune.py --checkpoints outputs/real_segments/runs/mae_modality_drop \
        --real_segments_dir ../shared/data/physionet2018-segments --output_dir outputs/real_segments/finetune

For every checkpoint (a train.py output folder or a saved PhysioMAE folder) and every seed, two runs with the same
settings, batches and split: from the pretrained encoder and from random initialisation (the seed's init).
Writes OUTPUT/finetune.json and OUTPUT/finetune.md (mean and standard deviation over seeds, per-seed numbers).
Data: `--dataset_dir` (a built dataset's probe_train / probe_test) or `--real_segments_dir` (the real 60-s
excerpts, split by sha1 of the excerpt name, as in eval.py). Settings: `physiomae.finetuning`.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import shutil
import sys
from pathlib import Path

import numpy as np
from transformers import set_seed

from modeling_physiomae import PhysioMAEConfig, PhysioMAEFeatureExtractor, PhysioMAEForSequenceClassification
from physiomae.evaluation.data import load_probe_data, load_real_segments
from physiomae.evaluation.label_efficiency import label_efficiency, label_efficiency_markdown
from physiomae.evaluation.variants import discover_variants
from physiomae.finetuning import (
    STAGE_LABELS, FinetuningSettings, StagingWindows, finetune, predict_metrics, split_validation,
)
from physiomae.io import atomic_write_json, atomic_write_text

logger = logging.getLogger("physiomae.finetune")


def load_feature_extractor(folder):
    """The model folder's feature extractor (preprocessor_config.json), else one matching its config."""
    if (Path(folder) / "preprocessor_config.json").is_file():
        return PhysioMAEFeatureExtractor.from_pretrained(folder)
    return PhysioMAEFeatureExtractor.from_config(PhysioMAEConfig.from_pretrained(folder))


def staging_rows(data, config, validation_fraction: float):
    """(train, validation, test) rows for a model config."""
    train, validation = split_validation(StagingWindows(data.train_split, config), validation_fraction)
    return train, validation, StagingWindows(data.test_split, config)


def finetune_one(arguments, settings: FinetuningSettings, data) -> dict:
    """--model_name_or_path: one classifier, saved into --output_dir."""
    folder, output_dir = arguments.model_name_or_path, Path(arguments.output_dir)
    set_seed(arguments.seeds[0])
    model = PhysioMAEForSequenceClassification.from_pretrained(folder, **STAGE_LABELS)
    train, validation, test = staging_rows(data, model.config, arguments.validation_fraction)
    trainer = finetune(model, load_feature_extractor(folder), train, validation, settings,
                       output_dir / "checkpoints", arguments.seeds[0])
    trainer.save_model(str(output_dir))  # the best checkpoint's model + its feature extractor: a Hub folder
    results = {"data": data.description, "model_name_or_path": str(folder), "settings": dataclasses.asdict(settings),
               "best_checkpoint": trainer.state.best_model_checkpoint,
               "windows": {"train": len(train), "validation": len(validation), "test": len(test)},
               "validation": predict_metrics(trainer, validation), "test": predict_metrics(trainer, test)}
    atomic_write_json(output_dir / "finetune_results.json", results)
    print(f"saved the sleep-staging classifier in {output_dir}: test balanced accuracy "
          f"{results['test']['balanced_accuracy']:.3f}, macro F1 {results['test']['macro_f1']:.3f}, kappa "
          f"{results['test']['cohen_kappa']:.3f} ({len(test)} windows)")
    return results


def compare_with_random_init(arguments, settings: FinetuningSettings, data) -> dict:
    """--checkpoints: pretrained against random initialisation over seeds, on all of probe-train and, with
    --label_fractions, on each share of its records (`physiomae.evaluation.label_efficiency`: the same drawn records
    for both inits; the validation records are held out of the drawn ones)."""
    output_dir = Path(arguments.output_dir)
    fractions = sorted({1.0, *arguments.label_fractions})
    results = {"data": data.description, "settings": {**vars(arguments), **dataclasses.asdict(settings)}, "variants": {}}
    for checkpoint in arguments.checkpoints:
        for variant in discover_variants(checkpoint):
            if variant.is_concatenation:
                continue  # a concatenation of unimodal encoders is not one fine-tunable model
            folder = variant.encoder_folders[0]
            config = PhysioMAEConfig.from_pretrained(folder)
            rows, test = StagingWindows(data.train_split, config), StagingWindows(data.test_split, config)
            scores: dict[tuple, dict] = {}

            def score(init: str, mask: np.ndarray, seed: int) -> float:
                train, validation = split_validation(rows.subset(np.flatnonzero(mask)), arguments.validation_fraction)
                set_seed(seed)
                if init == "pretrained":
                    model = PhysioMAEForSequenceClassification.from_pretrained(folder, **STAGE_LABELS)
                else:
                    model = PhysioMAEForSequenceClassification(PhysioMAEConfig.from_pretrained(folder, **STAGE_LABELS))
                run_dir = output_dir / "runs" / variant.name / f"{init}-{len(train)}w-{seed}"
                trainer = finetune(model, load_feature_extractor(folder), train, validation, settings, run_dir, seed)
                metrics = {key: value for key, value in predict_metrics(trainer, test).items()
                           if key in ("balanced_accuracy", "macro_f1", "cohen_kappa")}
                shutil.rmtree(run_dir, ignore_errors=True)  # checkpoints of a comparison run are not kept
                logger.info("%s %s, %d training windows of %d records, seed %d: %s", variant.name, init, len(train),
                            len(np.unique(train.records)), seed, metrics)
                scores[(init, int(mask.sum()), seed)] = metrics
                return metrics["balanced_accuracy"]

            efficiency = label_efficiency(rows.records, rows.labels.numpy(), ["pretrained", "random_init"], score,
                                          fractions, arguments.seeds)
            full = int(len(rows))
            entry = {}
            for init in ("pretrained", "random_init"):
                runs = [{"seed": seed, **scores[(init, full, seed)]} for seed in arguments.seeds]
                entry[init] = {"runs": runs, "summary": summarise([{k: v for k, v in run.items() if k != "seed"} for run in runs])}
            entry["difference_balanced_accuracy"] = (
                entry["pretrained"]["summary"]["balanced_accuracy"]["mean"] - entry["random_init"]["summary"]["balanced_accuracy"]["mean"]
            )
            if len(fractions) > 1:
                entry["label_efficiency"] = efficiency
            results["variants"][variant.name] = entry
    atomic_write_json(output_dir / "finetune.json", results)
    atomic_write_text(output_dir / "finetune.md", markdown(results))
    print(markdown(results))
    return results


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
    for variant, entry in results["variants"].items():
        if "label_efficiency" in entry:
            lines += ["", label_efficiency_markdown(
                entry["label_efficiency"], f"{variant} fine-tuned on a share of the probe-train records (the validation "
                f"share held out of the drawn records), test balanced accuracy (mean ± std over seeds)",
                baseline="random_init").rstrip("\n")]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--model_name_or_path", help="one encoder (a saved PhysioMAE folder): train and keep a classifier")
    model.add_argument("--checkpoints", nargs="+", help="encoders to compare with random initialisation")
    parser.add_argument("--real_segments_dir")
    parser.add_argument("--real_segments_test_fraction", type=float, default=0.5)
    parser.add_argument("--real_segments_train_dir",
                        help="other real excerpts to train on; probe-test is then all of --real_segments_dir")
    parser.add_argument("--label_fractions", type=float, nargs="+", default=[],
                        help="with --checkpoints: also fine-tune on these shares of the probe-train records")
    parser.add_argument("--real_segments_limit", type=int, help="use only N real excerpts, evenly spaced (quick runs)")
    parser.add_argument("--dataset_dir")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="(one classifier: the first)")
    parser.add_argument("--validation_fraction", type=float, default=0.2,
                        help="share of probe-train records held out to choose the best checkpoint")
    defaults = FinetuningSettings()
    for item in dataclasses.fields(FinetuningSettings):  # one flag per setting, with its default
        default = getattr(defaults, item.name)
        if isinstance(default, bool):
            parser.add_argument(f"--{item.name}", action=argparse.BooleanOptionalAction, default=default)
        else:
            parser.add_argument(f"--{item.name}", type=type(default), default=default)
    arguments = parser.parse_args(argv)
    settings = FinetuningSettings(**{item.name: getattr(arguments, item.name) for item in dataclasses.fields(FinetuningSettings)})
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if arguments.real_segments_dir:
        data = load_real_segments(arguments.real_segments_dir, arguments.real_segments_limit,
                                  arguments.real_segments_test_fraction, arguments.real_segments_train_dir)
    elif arguments.dataset_dir:
        data = load_probe_data(arguments.dataset_dir)
    else:
        parser.error("give --real_segments_dir or --dataset_dir")
    Path(arguments.output_dir).mkdir(parents=True, exist_ok=True)
    if arguments.model_name_or_path:
        return finetune_one(arguments, settings, data)
    return compare_with_random_init(arguments, settings, data)


def cli() -> int:
    """Console-script entry point (`physiomae-finetune`): exit status 0 on success."""
    main()
    return 0


if __name__ == "__main__":
    sys.exit(cli())
