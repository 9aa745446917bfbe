"""Time PhysioMAE pretraining steps (forward + backward) on the CPU for the tiny and paper-size configs.

For each config: `PhysioMAEForPreTraining` in training mode (70 % masking, input modality dropout per
batch, the 6 default modalities all present), a batch of 32 random windows (13 channels x 3,000
samples), `torch.set_num_threads(THREADS)`; a few warm-up steps, then the median (and min / max) of
several timed forward + backward passes (no optimizer step). The encoder alone (`PhysioMAEModel`, all
180 tokens, no masking, `torch.no_grad`) is timed too: that is the cost of embedding windows for the
linear probes.

The model sizes come from `configs/tiny.yaml` and `configs/base.yaml` (the keys that are
`PhysioMAEConfig` fields); without those files, hidden 64/2 layers/4 heads/decoder 32x1 and the
config defaults (hidden 256, 8 layers, 8 heads).

Usage: python benchmarks/bench_model.py [--threads 2] [--batch-size 32] [--warmup 5] [--repeats 9] [--output benchmarks/results_model.md]
The machine's load average is printed with the result: on a shared machine wall-clock numbers move with it.
"""

from __future__ import annotations

import argparse
import inspect
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from modeling_physiomae import PhysioMAEConfig, PhysioMAEForPreTraining, PhysioMAEModel  # noqa: E402

FALLBACK_SIZES = {
    "tiny": dict(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        decoder_hidden_size=32,
        decoder_num_hidden_layers=1,
        decoder_num_attention_heads=2,
    ),
    "paper": {},
}
CONFIG_FILES = {"tiny": "configs/tiny.yaml", "paper": "configs/base.yaml"}


def model_settings(name: str) -> tuple[dict, str]:
    """PhysioMAEConfig keyword arguments for `name` and where they came from."""
    path = REPO_ROOT / CONFIG_FILES[name]
    if path.is_file():
        import yaml

        fields = set(inspect.signature(PhysioMAEConfig.__init__).parameters) - {"self", "kwargs"}
        settings = {key: value for key, value in (yaml.safe_load(path.read_text()) or {}).items() if key in fields}
        return settings, CONFIG_FILES[name]
    return dict(FALLBACK_SIZES[name]), "built-in fallback"


def time_calls(function, warmup: int, repeats: int) -> tuple[list[float], list[float]]:
    """Wall-clock and process CPU seconds of each timed call."""
    for _ in range(warmup):
        function()
    wall, cpu = [], []
    for _ in range(repeats):
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        function()
        wall.append(time.perf_counter() - start_wall)
        cpu.append(time.process_time() - start_cpu)
    return wall, cpu


def benchmark(name: str, batch_size: int, warmup: int, repeats: int) -> dict:
    settings, source = model_settings(name)
    settings.update(modality_dropout_prob=1.0, modality_dropout_mode="batch")
    config = PhysioMAEConfig(**settings)
    torch.manual_seed(0)
    model = PhysioMAEForPreTraining(config).train()
    input_values = torch.randn(batch_size, config.num_channels, config.window_length)
    generator = torch.Generator().manual_seed(0)

    def training_step():
        model.zero_grad(set_to_none=True)
        model(input_values, generator=generator).loss.backward()

    step_times, step_cpu = time_calls(training_step, warmup, repeats)

    encoder = PhysioMAEModel(config).eval()

    def embed():
        with torch.no_grad():
            encoder(input_values)

    embed_times, _ = time_calls(embed, warmup, repeats)
    return {
        "name": name,
        "source": source,
        "hidden": config.hidden_size,
        "layers": config.num_hidden_layers,
        "heads": config.num_attention_heads,
        "decoder": f"{config.decoder_hidden_size}x{config.decoder_num_hidden_layers}",
        "parameters": sum(parameter.numel() for parameter in model.parameters()),
        "encoder_parameters": sum(parameter.numel() for parameter in encoder.parameters()),
        "step_median": statistics.median(step_times),
        "step_min": min(step_times),
        "step_max": max(step_times),
        "step_cpu_median": statistics.median(step_cpu),
        "embed_median": statistics.median(embed_times),
        "batch_size": batch_size,
    }


def markdown(results: list[dict], threads: int, repeats: int, warmup: int) -> str:
    load = " / ".join(f"{value:.1f}" for value in os.getloadavg())
    lines = [
        "# PhysioMAE model benchmark (CPU)",
        "",
        f"`python benchmarks/bench_model.py` on {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, "
        f"torch {torch.__version__}, `torch.set_num_threads({threads})`, {warmup} warm-up + {repeats} timed repeats, "
        f"load average at the end {load} (the machine was shared; wall-clock numbers move with the load).",
        "",
        "Pretraining step = `PhysioMAEForPreTraining` forward + backward (training mode: 70 % masking, per-batch input "
        "modality dropout, 6 modalities / 13 channels all present, 30-s windows of 3,000 samples). Embedding = "
        "`PhysioMAEModel` forward under `torch.no_grad` on all 180 tokens.",
        "",
        "| config | width / layers / heads | decoder | parameters (pretraining / encoder) | batch | "
        "fwd+bwd per batch, median (min-max) | process CPU per batch | windows/s (training) | embedding per batch, median |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for result in results:
        lines.append(
            f"| {result['name']} (`{result['source']}`) | {result['hidden']} / {result['layers']} / {result['heads']} | "
            f"{result['decoder']} | {result['parameters'] / 1e6:.2f} M / {result['encoder_parameters'] / 1e6:.2f} M | "
            f"{result['batch_size']} | {result['step_median'] * 1e3:.0f} ms ({result['step_min'] * 1e3:.0f}-"
            f"{result['step_max'] * 1e3:.0f}) | {result['step_cpu_median']:.2f} s | "
            f"{result['batch_size'] / result['step_median']:.0f} | "
            f"{result['embed_median'] * 1e3:.0f} ms |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--configs", nargs="+", default=["tiny", "paper"], choices=sorted(CONFIG_FILES))
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "benchmarks" / "results_model.md")
    arguments = parser.parse_args()
    torch.set_num_threads(arguments.threads)
    results = [benchmark(name, arguments.batch_size, arguments.warmup, arguments.repeats) for name in arguments.configs]
    table = markdown(results, arguments.threads, arguments.repeats, arguments.warmup)
    print(table)
    if arguments.output:
        temporary = arguments.output.with_suffix(".tmp")
        temporary.write_text(table)
        os.replace(temporary, arguments.output)


if __name__ == "__main__":
    main()
