"""Ablation of the pretraining design on real data: held-out 1 - R^2 and the staging probe, one variant per call.

    python benchmarks/bench_pretraining_ablation.py --name bottleneck_lbp_fixed --scaling fixed \
        --cfg '{"decoder_type": "bottleneck", "reconstruction_target": "log_band_power"}'

Data: the 999 real unlabelled excerpts (`../shared/data/physionet2018-unlabelled`, pretraining; 10 % of the
excerpts, chosen by `probing.record_split_is_test(name, 0.1)`, held out for the reconstruction error) and the
500 real labelled excerpts (`../shared/data/physionet2018-segments`, probe; split 50/50 by
`record_split_is_test(name, 0.5)`, as eval.py's real-segment mode). Both are built once with the project's
builder without scaling (`--work_dir`, reused), then scaled here: `robust` = the feature extractor's per-record
robust scaling (a record is one 60-s excerpt), `fixed` = one scale per channel for the whole data set (the
median per-excerpt robust standard deviation of the unlabelled set).

Per variant: the tiny model (configs/tiny.yaml sizes) trained `--steps` AdamW steps (batch `--batch`, lr
`--lr`, 5 % warmup, cosine), modality dropout as in mae_modality_drop; before and after training the held-out
relative reconstruction error per modality (70 % masking, fixed masks) and the probe's balanced accuracy on
three feature sets of the frozen encoder: `last_mean` (mean of all tokens of the last layer), `last_per_mod`
(per-modality means, concatenated: `pooling="per_modality"`), `all_layers_per_mod` (the same for every layer).
The band-power baseline is fitted on the same scaled windows. One JSON line per variant is appended to
`--results` (default benchmarks/results_pretraining_ablation.jsonl). Run variants one at a time (threads).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import balanced_accuracy_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from modeling_physiomae import PhysioMAEConfig, PhysioMAEFeatureExtractor, PhysioMAEForPreTraining  # noqa: E402
from physiomae.evaluation import probing  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, decoder_hidden_size=32,
            decoder_num_hidden_layers=1, decoder_num_attention_heads=2, decoder_intermediate_size=64, tokenizer_conv_channels=16)


def build_unscaled(source: Path, work_dir: Path) -> dict[str, np.ndarray]:
    """All windows of a challenge-layout folder, filtered and resampled but not scaled (cached as .npz)."""
    cache = work_dir / f"{source.name}.npz"
    if not cache.is_file():
        from dataset_scripts.physionet2018 import PhysioNet2018

        builder = PhysioNet2018(data_dir=str(source), cache_dir=str(work_dir / "cache" / source.name),
                                feature_extractor=PhysioMAEFeatureExtractor(scaling="none"))
        builder.download_and_prepare()
        splits = [split for split in builder.as_dataset().values() if len(split)]
        arrays = {key: [] for key in ("input_values", "channel_mask", "record", "sleep_stage")}
        for split in splits:
            for key in arrays:
                arrays[key].append(np.asarray(split.with_format("numpy")[key]))
        np.savez(cache, **{key: np.concatenate(values) for key, values in arrays.items()})
    data = np.load(cache, allow_pickle=True)
    return {key: data[key] for key in data.files}


def per_record_robust_statistics(values: np.ndarray, records: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median and IQR / 1.349 per channel over each record's windows, broadcast to `(windows, channels, 1)`."""
    median, scale = np.zeros((len(values), values.shape[1], 1), np.float32), np.ones((len(values), values.shape[1], 1), np.float32)
    for record in np.unique(records):
        rows = records == record
        samples = values[rows].transpose(1, 0, 2).reshape(values.shape[1], -1)
        low, middle, high = np.percentile(samples, [25, 50, 75], axis=1)
        spread = (high - low) / 1.349
        spread = np.where(spread > 1e-6, spread, samples.std(axis=1))
        median[rows, :, 0], scale[rows, :, 0] = middle, np.where(spread > 1e-6, spread, 1.0)
    return median, scale


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", required=True)
    parser.add_argument("--scaling", choices=("robust", "fixed"), default="robust")
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cfg", default="{}", help="JSON of PhysioMAEConfig overrides on the tiny sizes")
    parser.add_argument("--work_dir", default="outputs/bench_ablation")
    parser.add_argument("--results", default=str(Path(__file__).with_name("results_pretraining_ablation.jsonl")))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    work_dir = Path(args.work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    unlabelled = build_unscaled(SHARED / "physionet2018-unlabelled", work_dir)
    labelled = build_unscaled(SHARED / "physionet2018-segments", work_dir)

    _, unlabelled_scale = per_record_robust_statistics(unlabelled["input_values"].astype(np.float32), unlabelled["record"])
    present = unlabelled["channel_mask"]
    fixed_scale = np.array([np.median(unlabelled_scale[present[:, channel], channel, 0]) if present[:, channel].any() else 1.0
                            for channel in range(present.shape[1])], np.float32)

    def scaled(data: dict) -> np.ndarray:
        values = data["input_values"].astype(np.float32)
        if args.scaling == "robust":
            median, scale = per_record_robust_statistics(values, data["record"])
            return np.clip((values - median) / scale, -20, 20)
        return np.clip(values / fixed_scale[None, :, None], -20, 20)

    config = PhysioMAEConfig(**{**TINY, **json.loads(args.cfg)})
    slices = list(config.modality_channel_slices.values())
    pretrain_values = torch.from_numpy(scaled(unlabelled))
    pretrain_modalities = torch.from_numpy(np.stack([unlabelled["channel_mask"][:, part].any(1) for part in slices], 1))
    probe_values = scaled(labelled)
    probe_modalities = np.stack([labelled["channel_mask"][:, part].any(1) for part in slices], 1)
    held_out = np.array([probing.record_split_is_test(str(record), 0.1) for record in unlabelled["record"]])
    train_rows, held_rows = np.flatnonzero(~held_out), np.flatnonzero(held_out)
    stages = labelled["sleep_stage"].astype(int)
    probe_records = labelled["record"].astype(str)
    is_test = np.array([probing.record_split_is_test(record, 0.5) for record in probe_records])

    model = PhysioMAEForPreTraining(config)
    model.set_target_statistics([(pretrain_values[train_rows[i:i + 256]], pretrain_modalities[train_rows[i:i + 256]])
                                 for i in range(0, len(train_rows), 256)])

    @torch.no_grad()
    def reconstruction_error() -> dict[str, float | None]:
        model.eval()
        generator = torch.Generator().manual_seed(123)
        error, reference = torch.zeros(config.num_modalities, dtype=torch.float64), torch.zeros(config.num_modalities, dtype=torch.float64)
        for start in range(0, len(held_rows), 64):
            rows = held_rows[start:start + 64]
            output = model(pretrain_values[rows], pretrain_modalities[rows], generator=generator)
            error += output.reconstruction_error_sum.double()
            reference += output.reconstruction_reference_sum.double()
        model.train()
        return {name: (float(e / r) if r > 0 else None) for name, e, r in zip(config.modality_names, error, reference)}

    def probe(features: np.ndarray) -> float:
        train, test = ~is_test & (stages >= 0), is_test & (stages >= 0)
        fitted = probing.fit_probe(features[train], stages[train], probe_records[train], c_grid=(0.001, 0.01, 0.1, 1.0), max_iter=1000)
        return round(float(balanced_accuracy_score(stages[test], fitted.predict(features[test]))), 4)

    @torch.no_grad()
    def probes() -> dict[str, float]:
        encoder = model.physiomae.eval()
        chunks = []
        for start in range(0, len(probe_values), 100):
            output = encoder(torch.from_numpy(probe_values[start:start + 100]), torch.from_numpy(probe_modalities[start:start + 100]),
                             output_hidden_states=True)
            weights = output.token_mask.reshape(-1, config.num_modalities, config.num_patches, 1).float()
            layers = list(output.hidden_states[1:-1]) + [output.last_hidden_state]
            # each (batch, M, hidden) -> (batch, layers, M, hidden)
            chunks.append(torch.stack([(layer.reshape(len(weights), config.num_modalities, config.num_patches, -1) * weights).sum(2)
                                       / weights.sum(2).clamp(min=1) for layer in layers], 1))
        model.train()
        features = torch.cat(chunks).numpy()[:, :, probe_modalities.any(0)]
        last = features[:, -1]
        return {"last_mean": probe(last.mean(1)), "last_per_mod": probe(last.reshape(len(last), -1)),
                "all_layers_per_mod": probe(features.reshape(len(features), -1))}

    result = {"name": args.name, "args": vars(args), "config": json.loads(args.cfg),
              "band_power": probe(probing.band_power_features(probe_values)),
              "untrained": {"recon": reconstruction_error(), "probe": probes()}}
    decay = [parameter for parameter in model.parameters() if parameter.ndim >= 2]
    no_decay = [parameter for parameter in model.parameters() if parameter.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
                                  lr=args.lr, betas=(0.9, 0.95))
    warmup = max(1, int(0.05 * args.steps))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, step / args.steps))))
    generator, rng = torch.Generator().manual_seed(args.seed), np.random.default_rng(args.seed)
    order, position, started = rng.permutation(train_rows), 0, time.time()
    model.train()
    for _ in range(args.steps):
        if position + args.batch > len(order):
            order, position = rng.permutation(train_rows), 0
        rows = order[position:position + args.batch]
        position += args.batch
        loss = model(pretrain_values[rows], pretrain_modalities[rows], generator=generator).loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
    result["train_seconds"] = round(time.time() - started, 1)
    recon = reconstruction_error()
    measured = [value for value in recon.values() if value is not None]
    result["trained"] = {"recon": recon, "recon_mean": float(np.mean(measured)), "probe": probes()}
    print(json.dumps(result))
    with open(args.results, "a") as handle:
        handle.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
