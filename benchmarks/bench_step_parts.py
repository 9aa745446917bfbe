"""Where the time of one PhysioMAE pretraining step goes on this machine: forward + backward of each part alone.

Parts of `PhysioMAEForPreTraining` (a config's model fields, default `configs/tiny.yaml`), each on inputs of the
shape it meets in training (batch `--batch-size`, all modalities present, 70 % masking): the tokenizer on the
windows; the encoder layers on the visible tokens (`keep_count` of the sequence, key mask); the decoders on
their memory (bottleneck: each modality's mean visible token); the targets and the loss; then the whole
forward + backward. Medians of `--repeats` timed calls after 3 untimed ones, `torch.set_num_threads(--threads)`.

    python benchmarks/bench_step_parts.py --size tiny --out benchmarks/results_step_parts.md
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import time
from pathlib import Path

import torch
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from modeling_physiomae import PhysioMAEConfig, PhysioMAEForPreTraining  # noqa: E402
from modeling_physiomae.modeling_physiomae import keep_count  # noqa: E402


def median_ms(function, repeats: int) -> float:
    for _ in range(3):
        function()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e3


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="tiny")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", type=Path, default=None)
    arguments = parser.parse_args(argv)
    torch.set_num_threads(arguments.threads)
    settings = yaml.safe_load((REPO_ROOT / "configs" / f"{arguments.size}.yaml").read_text())
    fields = PhysioMAEConfig().to_dict()
    config = PhysioMAEConfig(**{key: value for key, value in settings.items() if key in fields})
    torch.manual_seed(0)
    model = PhysioMAEForPreTraining(config).train()
    batch = arguments.batch_size
    windows = torch.randn(batch, config.num_channels, config.window_length)
    visible = keep_count(config.num_modalities * config.num_patches, config.mask_ratio)
    tokens = torch.randn(batch, visible, config.hidden_size, requires_grad=True)
    key_mask = torch.ones(batch, 1, 1, visible, dtype=torch.bool)
    pooled = torch.randn(batch, config.num_modalities, config.hidden_size, requires_grad=True)
    hidden = (torch.rand(batch, config.num_modalities * config.num_patches) < config.mask_ratio).float()
    predictions = torch.randn(batch, config.num_modalities, config.num_patches, model.target_width, requires_grad=True)
    generator = torch.Generator().manual_seed(0)

    def encoder_layers():
        states = tokens
        for layer in model.physiomae.encoder.layers:
            states, _ = layer(states, attention_mask=key_mask)
        states.sum().backward()

    def decoders():
        if config.decoder_type == "bottleneck":  # memory: each modality's mean visible token
            output = model.decoder(pooled, torch.ones(batch, config.num_modalities, dtype=torch.bool))
        elif config.decoder_type == "cross_attention":  # memory: the visible tokens
            output = model.decoder(tokens, torch.ones(batch, visible, dtype=torch.bool))
        else:
            raise SystemExit("bench_step_parts.py times the per-modality decoders (bottleneck, cross_attention)")
        output.sum().backward()

    def whole_step():
        noise, modality_dropout_noise = model.draw_masking_noise(batch, generator)
        model(windows, noise=noise, modality_dropout_noise=modality_dropout_noise).loss.backward()

    parts = {
        f"tokenizer (all {config.num_modalities * config.num_patches} patches per window)":
            lambda: model.physiomae.embeddings.tokenizer(windows).sum().backward(),
        f"encoder layers ({visible} visible tokens)": encoder_layers,
        f"decoders ({config.decoder_type})": decoders,
        "targets + loss": lambda: model.forward_loss(windows, predictions, hidden)[0].backward(),
        "whole forward + backward": whole_step,
    }
    rows = [(name, median_ms(function, arguments.repeats)) for name, function in parts.items()]
    lines = [
        f"# One pretraining step by parts (`benchmarks/bench_step_parts.py --size {arguments.size}`)",
        "",
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, torch {torch.__version__}, "
        f"{arguments.threads} threads, batch {batch}; forward + backward of each part alone, median of "
        f"{arguments.repeats} calls (the parts overlap a little: the whole step also masks, pools and gathers).",
        "",
        "| part | ms |",
        "| --- | ---: |",
        *[f"| {name} | {milliseconds:.1f} |" for name, milliseconds in rows],
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if arguments.out:
        arguments.out.write_text(text)


if __name__ == "__main__":
    main()
