"""Time `PhysioMAEFeatureExtractor.preprocess_record` on one full-size synthetic record.

A PhysioNet 2018 record is about 8 h of 13 channels at 200 Hz (75 M samples). The record here is random
(white noise per channel; SpO2 as whole percent), so file reading (wfdb) is not part of the timing. Two
references put the number in context:

- `numpy floor`: the least any preprocessing must do: one float32 copy of the input, naive decimation by
  slicing and a per-channel standardisation (no anti-aliasing, no filtering, no robust statistics);
- `resample_poly` and `sosfiltfilt` alone, as the extractor calls them, to show where the time goes.

Usage: python benchmarks/bench_feature_extraction.py [--hours 8] [--repeats 3] [--output results.json]
The machine's load average is printed with the result: on a shared machine wall-clock numbers move with it,
so the process CPU time is reported too (the whole pipeline is single-threaded).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import scipy
from scipy import signal as scipy_signal

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from modeling_physiomae.feature_extraction_physiomae import PhysioMAEFeatureExtractor  # noqa: E402


def synthetic_record(extractor: PhysioMAEFeatureExtractor, hours: float, sampling_rate: int, seed: int) -> np.ndarray:
    """(num_channels, num_samples) float32 noise, SpO2 rounded to whole percent around 95."""
    generator = np.random.default_rng(seed)
    num_samples = int(hours * 3600 * sampling_rate)
    record = generator.standard_normal((extractor.num_channels, num_samples), dtype=np.float32) * 30.0
    spo2_row = extractor.channel_names.index("SaO2") if "SaO2" in extractor.channel_names else None
    if spo2_row is not None:
        record[spo2_row] = np.round(95.0 + record[spo2_row] / 30.0)
    return record


def numpy_floor(record: np.ndarray, down: int) -> np.ndarray:
    """Copy, decimate by slicing, standardise per channel: the cheapest possible 'preprocessing'."""
    values = np.array(record[:, ::down], dtype=np.float32)
    values -= values.mean(axis=1, keepdims=True)
    values /= values.std(axis=1, keepdims=True)
    return values


def best_of(repeats: int, function, *args) -> dict[str, float]:
    """Best wall-clock and best CPU time (this process only: less sensitive to other users) of `repeats` runs."""
    wall, cpu = [], []
    for _ in range(repeats):
        wall_start, cpu_start = time.perf_counter(), time.process_time()
        function(*args)
        wall.append(time.perf_counter() - wall_start)
        cpu.append(time.process_time() - cpu_start)
    return {"wall_s": min(wall), "cpu_s": min(cpu)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=8.0)
    parser.add_argument("--sampling_rate", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()

    extractor = PhysioMAEFeatureExtractor()
    record = synthetic_record(extractor, args.hours, args.sampling_rate, args.seed)
    names = extractor.channel_names
    up, down = extractor._resample_factors(args.sampling_rate)
    eeg = record[extractor.modality_channel_slices["eeg"]]
    resampled_eeg = scipy_signal.resample_poly(eeg, up, down, axis=-1).astype(np.float64)
    eeg_sections = extractor._band_pass_sections("eeg")
    load_before = os.getloadavg()[0]

    results = {
        "record": f"{args.hours:g} h x {len(names)} channels at {args.sampling_rate} Hz ({record.size / 1e6:.1f} M samples)",
        "preprocess_record": best_of(args.repeats, extractor.preprocess_record, record, names, args.sampling_rate),
        "preprocess_record_2_threads": best_of(
            args.repeats, lambda: extractor.preprocess_record(record, names, args.sampling_rate, num_threads=2)
        ),
        "numpy_floor": best_of(args.repeats, numpy_floor, record, max(1, args.sampling_rate // 100)),
        "resample_poly_eeg_6ch": best_of(args.repeats, scipy_signal.resample_poly, eeg, up, down, -1),
        "sosfiltfilt_eeg_6ch": best_of(args.repeats, scipy_signal.sosfiltfilt, eeg_sections, resampled_eeg, -1),
    }
    preprocessed = extractor.preprocess_record(record, names, args.sampling_rate)
    start = time.perf_counter()
    windows, _ = extractor.cut_windows(preprocessed)
    results["cut_windows_s"] = time.perf_counter() - start
    results["num_windows"] = int(windows.shape[0])
    del preprocessed, windows

    tracemalloc.start()
    extractor.preprocess_record(record, names, args.sampling_rate)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    results["preprocess_record_peak_extra_memory_mb"] = peak / 2**20
    results["input_size_mb"] = record.nbytes / 2**20
    results["load_average_1min"] = [load_before, os.getloadavg()[0]]
    results["cpu_count"] = os.cpu_count()
    results["versions"] = {"python": platform.python_version(), "numpy": np.__version__, "scipy": scipy.__version__}

    for key, value in results.items():
        if isinstance(value, dict) and "wall_s" in value:
            value = f"wall {value['wall_s']:.3f} s, cpu {value['cpu_s']:.3f} s"
        print(f"{key:40s} {value:.3f}" if isinstance(value, float) else f"{key:40s} {value}")
    if args.output is not None:
        temporary = args.output.with_suffix(".tmp")
        temporary.write_text(json.dumps(results, indent=2) + "\n")
        os.replace(temporary, args.output)


if __name__ == "__main__":
    main()
