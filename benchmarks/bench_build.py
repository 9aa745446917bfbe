"""Benchmark of the PhysioNet 2018 builder: speed relative to `wfdb.rdrecord` on short records, and full-size nights
built with several processes (time per night, peak memory per worker, projection to the whole challenge).

    python benchmarks/bench_build.py [--records 10 40] [--hours 0.5] [--work_dir /tmp/bench_build]
    python benchmarks/bench_build.py --full-size-nights 2 4 8 --num_proc 1 2 [--hours 8] [--stream_steps 60]

Short records (`--records`): writes a synthetic cohort (challenge layout, 13 channels at 200 Hz), then for each
record count N runs, each in a fresh subprocess (so that peak memory is per run): (a) `wfdb.rdrecord` alone on the
N records, (b) the full build (`PhysioNet2018.download_and_prepare`: read, preprocess, label, write Arrow). Peak
memory is the subprocess's maximum resident set size (`VmHWM`), which includes the imports (torch,
transformers, datasets) - the part that matters is whether it grows with N.

Full-size nights (`--full-size-nights`): writes max(N) synthetic nights of `--hours` hours, then for every night
count N and every `--num_proc` P runs `build_to_folder` (what `python -m dataset_scripts.physionet2018 build` runs)
in a fresh subprocess while this process reads `/proc/PID/status` of it and of its worker processes every 50 ms:
peak RSS (`VmHWM`) and peak anonymous RSS (`RssAnon`) per process, and the wall time of the preparation (parallel
over records) and of `save_to_disk` (one process). From these it projects the 1,983 nights of the challenge
(`--project_nights`, `--project_hours`, `--project_cores`). With `--stream_steps N`, the smallest and the largest
build (and the largest re-saved in `--stream_reshard` Arrow files per split) are then streamed by `train.py
--streaming` (tiny model, N steps, `--stream_workers` DataLoader workers) with the same memory sampling: the memory
of streaming must grow neither with the windows nor with the files.

Each mode replaces its own section of benchmarks/results_build.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path


REPO_ROOT = Path(__file__).resolve().parents[1]

_RDRECORD_CHILD = """
import json, resource, sys, time
def memory_mb(field):  # VmHWM: peak RSS of this process (getrusage's maxrss can carry the parent's); VmRSS: now
    return int(dict(line.split(":", 1) for line in open("/proc/self/status"))[field].split()[0]) / 1024
import wfdb
paths = json.loads(sys.argv[1])
def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
cpu_started = cpu()
started = time.perf_counter()
samples = 0
for path in paths:
    record = wfdb.rdrecord(path)
    samples += record.p_signal.shape[0]
    del record
print(json.dumps({"seconds": time.perf_counter() - started, "cpu_seconds": cpu() - cpu_started, "samples": samples,
                  "peak_rss_mb": memory_mb("VmHWM")}))
"""

_BUILD_CHILD = """
import json, resource, sys, time
def memory_mb(field):  # VmHWM: peak RSS of this process (getrusage's maxrss can carry the parent's); VmRSS: now
    return int(dict(line.split(":", 1) for line in open("/proc/self/status"))[field].split()[0]) / 1024
sys.path.insert(0, sys.argv[3])
import modeling_physiomae  # imports before timing: the build itself is measured
from dataset_scripts.physionet2018 import PhysioNet2018
rss_after_imports = memory_mb("VmRSS")
def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
cpu_started = cpu()
started = time.perf_counter()
builder = PhysioNet2018(data_dir=sys.argv[1], cache_dir=sys.argv[2])
builder.download_and_prepare()
seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds, "cpu_seconds": cpu() - cpu_started, "windows": builder.build_report["totals"]["windows_kept"],
                  "records": builder.build_report["totals"]["records_built"],
                  "rss_after_imports_mb": rss_after_imports,
                  "peak_rss_mb": memory_mb("VmHWM")}))
"""


_FULL_BUILD_CHILD = """
import json, resource, sys, time
def memory_mb(field):  # VmHWM: peak RSS of this process (getrusage's maxrss can carry the parent's); VmRSS: now
    return int(dict(line.split(":", 1) for line in open("/proc/self/status"))[field].split()[0]) / 1024
sys.path.insert(0, sys.argv[4])
import datasets
import modeling_physiomae  # imports before timing: the build itself is measured
from dataset_scripts import physionet2018
rss_after_imports = memory_mb("VmRSS")
save_seconds = []
save_to_disk = datasets.DatasetDict.save_to_disk
def timed_save_to_disk(self, *args, **kwargs):
    started = time.perf_counter()
    result = save_to_disk(self, *args, **kwargs)
    save_seconds.append(time.perf_counter() - started)
    return result
datasets.DatasetDict.save_to_disk = timed_save_to_disk
def cpu():  # user + system of this process and of its finished workers
    return sum(usage.ru_utime + usage.ru_stime for usage in (resource.getrusage(resource.RUSAGE_SELF),
                                                              resource.getrusage(resource.RUSAGE_CHILDREN)))
cpu_started, started = cpu(), time.perf_counter()
report = physionet2018.build_to_folder(sys.argv[1], sys.argv[2], num_proc=int(sys.argv[3]))
seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds, "cpu_seconds": cpu() - cpu_started, "save_to_disk_seconds": sum(save_seconds),
                  "rss_after_imports_mb": rss_after_imports,
                  "windows": report["totals"]["windows_kept"], "records": report["totals"]["records_built"],
                  "records_skipped": report["totals"]["records_skipped"]}))
"""


def child_environment() -> dict:
    return {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1",
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "MKL_NUM_THREADS": os.environ.get("MKL_NUM_THREADS", "1")}


def run_child(code: str, *arguments: str) -> dict:
    completed = subprocess.run(
        [sys.executable, "-c", code, *arguments], capture_output=True, text=True, check=False, env=child_environment(),
    )
    if completed.returncode:
        raise RuntimeError(f"benchmark child failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def process_memory_mb(pid: int) -> tuple[float, float] | None:
    """(peak RSS `VmHWM`, current anonymous RSS `RssAnon`) of a process in MB, None when it has exited."""
    try:
        fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
        return int(fields["VmHWM"].split()[0]) / 1024, int(fields["RssAnon"].split()[0]) / 1024
    except (OSError, KeyError, ValueError):
        return None


def children_of(pid: int) -> list[int]:
    """Every descendant process of `pid` (from /proc/PID/task/*/children)."""
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                children = [int(value) for value in (task / "children").read_text().split()]
            except OSError:
                continue
            found += children
            pending += children
    return found


def run_monitored(command: list[str], interval: float = 0.05) -> tuple[str, dict, dict]:
    """Run a command, sampling the memory of it and of its descendants; returns (its stdout, main process memory,
    worker memory), each memory as {"peak_rss_mb", "peak_anon_mb", "processes"} (workers: the largest of any)."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=child_environment(), cwd=REPO_ROOT)
    peaks: dict[int, list[float]] = {}  # pid -> [peak RSS, peak anon, samples]
    while process.poll() is None:
        for pid in [process.pid, *children_of(process.pid)]:
            memory = process_memory_mb(pid)
            if memory is not None:
                peak = peaks.setdefault(pid, [0.0, 0.0, 0])
                peak[0], peak[1], peak[2] = max(peak[0], memory[0]), max(peak[1], memory[1]), peak[2] + 1
        time.sleep(interval)
    stdout, stderr = process.communicate()
    if process.returncode:
        raise RuntimeError(f"{' '.join(command[:3])} failed:\n{stderr[-3000:]}")
    main_peak = peaks.pop(process.pid, [0.0, 0.0, 0])
    # workers: descendants seen for at least half a second (not a helper that a library forks and execs for a moment)
    workers = [peak for peak in peaks.values() if peak[2] * interval >= 0.5]
    return (
        stdout,
        {"peak_rss_mb": main_peak[0], "peak_anon_mb": main_peak[1], "processes": 1},
        {"peak_rss_mb": max((peak[0] for peak in workers), default=0.0),
         "peak_anon_mb": max((peak[1] for peak in workers), default=0.0), "processes": len(workers)},
    )


def run_monitored_child(code: str, *arguments: str) -> tuple[dict, dict, dict]:
    """`run_monitored` of `python -c code arguments`, whose last stdout line is JSON (returned parsed)."""
    stdout, main_memory, worker_memory = run_monitored([sys.executable, "-c", code, *arguments])
    return json.loads(stdout.strip().splitlines()[-1]), main_memory, worker_memory


def subset_folder(cohort: Path, names: list[str], folder: Path) -> Path:
    """A flat folder of links to the first records (RECORDS file included)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for name in names:
        subset = "training" if name.startswith("tr") else "test"
        os.symlink(cohort / subset / name, folder / name)
    (folder / "RECORDS").write_text("".join(f"{name}/\n" for name in names))
    return folder


def write_cohort(folder: Path, count: int, hours: float) -> list[str]:
    """`count` synthetic records, half labelled; returns their names interleaved so that every prefix has the same mix."""
    from dataset_scripts import synthetic_psg

    started = time.perf_counter()
    summary = synthetic_psg.write_cohort(folder, n_train=count // 2, n_test=count - count // 2, hours=hours, seed=0)
    print(f"wrote {count} synthetic records of {hours} h in {time.perf_counter() - started:.1f} s", flush=True)
    names = [name for pair in zip(summary.training_records, summary.test_records) for name in pair]
    return names + summary.test_records[len(summary.training_records):]


def write_nights(folder: Path, count: int, hours: float) -> list[str]:
    """`count` synthetic nights: half unlabelled (split `pretrain`), half labelled ones whose names hash into
    `probe_train`, so that with the first 2k nights both splits hold k records and `num_proc` workers have work in
    both (`datasets` runs the splits one after the other, each over at most as many processes as it has records).
    Returns the names interleaved (unlabelled, labelled, ...)."""
    from dataset_scripts import synthetic_psg
    try:
        from dataset_scripts.record_split import assign_split
    except ImportError:
        from dataset_scripts.record_split import assign_split

    labelled, unlabelled, index = [], [], 0
    while len(labelled) < count // 2:
        name = synthetic_psg.record_name("training", index)
        if assign_split(name, labelled=True) == "probe_train":
            labelled.append((name, index))
        index += 1
    unlabelled = [(synthetic_psg.record_name("test", index), index) for index in range(count - count // 2)]
    for split, records in (("training", labelled), ("test", unlabelled)):
        for name, index in records:
            record = synthetic_psg.generate_record(synthetic_psg.record_rng(0, split, index), name, hours,
                                                   labelled=split == "training")
            synthetic_psg.write_synthetic_record(record, folder / split / name)
            del record
    names = [name for pair in zip(unlabelled, labelled) for name, _ in pair]
    return names + [name for name, _ in unlabelled[len(labelled):]]


def write_section(output: Path, title: str, lines: list[str]) -> None:
    """Replace the `## title` section of the results file (append it when absent), keeping the other sections."""
    header = "# Builder benchmark (`benchmarks/bench_build.py`)"
    text = output.read_text() if output.is_file() else header + "\n"
    sections, current = {}, None
    order = []
    for line in text.splitlines():
        if line.startswith("## "):
            current = line[3:].strip()
            order.append(current)
            sections[current] = []
        elif current is not None:
            sections[current].append(line)
    if title not in sections:
        order.append(title)
    sections[title] = [""] + lines
    body = [header, ""]
    for name in order:
        content = sections[name]
        while content and not content[-1].strip():
            content = content[:-1]
        body += [f"## {name}"] + content + [""]
    output.write_text("\n".join(body).rstrip() + "\n")


def short_records(arguments) -> None:
    most = max(arguments.records)
    cohort = arguments.work_dir / "cohort"
    names = write_cohort(cohort, most, arguments.hours)
    rows = []
    for count in arguments.records:
        chosen = names[:count]
        folder = subset_folder(cohort, chosen, arguments.work_dir / f"subset-{count}")
        paths = [str(folder / name / name) for name in chosen]
        reading = run_child(_RDRECORD_CHILD, json.dumps(paths))
        building = run_child(_BUILD_CHILD, str(folder), str(arguments.work_dir / f"cache-{count}"), str(REPO_ROOT))
        row = {
            "records": count,
            "windows": building["windows"],
            "build_seconds": building["seconds"],
            "windows_per_second": building["windows"] / building["seconds"],
            "rdrecord_seconds": reading["seconds"],
            "build_over_rdrecord": building["seconds"] / reading["seconds"],
            "build_cpu_seconds": building["cpu_seconds"],
            "rdrecord_cpu_seconds": reading["cpu_seconds"],
            "windows_per_cpu_second": building["windows"] / building["cpu_seconds"],
            "cpu_build_over_rdrecord": building["cpu_seconds"] / reading["cpu_seconds"],
            "build_peak_rss_mb": building["peak_rss_mb"],
            "build_rss_after_imports_mb": building["rss_after_imports_mb"],
            "rdrecord_peak_rss_mb": reading["peak_rss_mb"],
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
        shutil.rmtree(arguments.work_dir / f"cache-{count}", ignore_errors=True)

    load = os.getloadavg()
    lines = [
        f"`python benchmarks/bench_build.py --records {' '.join(map(str, arguments.records))} --hours {arguments.hours:g}`",
        "",
        f"Synthetic records ({arguments.hours:g} h each, 13 channels at 200 Hz, `16+24` Matlab v4, every subset half labelled), "
        f"built with `num_proc=1` on {platform.processor() or platform.machine()} ({os.cpu_count()} CPUs, "
        f"load average {load[0]:.1f} at the end: the machine was shared, so times are upper bounds).",
        "`wfdb.rdrecord` = reading the same records with `wfdb.rdrecord` alone (physical float64, nothing else).",
        "CPU seconds (user + system of the subprocess) are less sensitive to the shared machine than wall seconds.",
        "Peak RSS is each subprocess's maximum resident set size (`VmHWM`); the build's includes importing torch/transformers/datasets "
        "(RSS right after the imports is given separately).",
        "",
        "| records | windows | build s (CPU s) | windows/s (per CPU s) | rdrecord s (CPU s) | build / rdrecord wall (CPU) "
        "| build peak RSS MB | RSS after imports MB | rdrecord peak RSS MB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        lines.append(
            f"| {row['records']} | {row['windows']} | {row['build_seconds']:.1f} ({row['build_cpu_seconds']:.1f}) | "
            f"{row['windows_per_second']:.1f} ({row['windows_per_cpu_second']:.1f}) | "
            f"{row['rdrecord_seconds']:.2f} ({row['rdrecord_cpu_seconds']:.2f}) | "
            f"{row['build_over_rdrecord']:.1f}x ({row['cpu_build_over_rdrecord']:.1f}x) | {row['build_peak_rss_mb']:.0f} | "
            f"{row['build_rss_after_imports_mb']:.0f} | {row['rdrecord_peak_rss_mb']:.0f} |"
        )
    if len(rows) >= 2:
        growth = rows[-1]["build_peak_rss_mb"] - rows[0]["build_peak_rss_mb"]
        lines += ["", f"Peak memory from {rows[0]['records']} to {rows[-1]['records']} records: {growth:+.0f} MB "
                  "(records are read one at a time; Arrow batches of 256 windows are flushed to disk)."]
    write_section(arguments.output, "Short records: speed relative to `wfdb.rdrecord`", lines)


def projection(rows: list[dict], arguments) -> list[str]:
    """Project the challenge's nights from the largest build at each num_proc.

    The preparation is CPU-bound and parallel over records (one record per worker at a time, one thread each), so on
    `project_cores` free cores its wall time is its CPU time / cores: the CPU time per night is taken from the build
    with the most processes (it includes their start-up and the merge). `save_to_disk` runs in one process: its
    measured wall time per night is added as it is. The wall-clock speed-up measured with 2 processes is reported
    beside it (on a shared machine it says little)."""
    most = max(row["nights"] for row in rows)
    largest = {row["num_proc"]: row for row in rows if row["nights"] == most}
    if 1 not in largest:
        return []
    top = max(largest)
    length = arguments.project_hours / arguments.hours  # a real night relative to a synthetic one
    nights, cores = arguments.project_nights, arguments.project_cores
    cpu_per_night = largest[top]["cpu_seconds"] / most * length
    save_per_night = max(row["save_to_disk_seconds"] for row in largest.values()) / most * length
    prepare, save = nights * cpu_per_night / cores, nights * save_per_night
    one_wall = largest[1]["seconds"] - largest[1]["save_to_disk_seconds"]
    top_wall = largest[top]["seconds"] - largest[top]["save_to_disk_seconds"]
    lines = [
        f"Projection to the challenge ({nights} nights of {arguments.project_hours:g} h, 13 channels at 200 Hz) with "
        f"`num_proc={cores}` on {cores} free cores: {cpu_per_night:.1f} CPU s per night (measured with "
        f"`num_proc={top}` on {most} nights of {arguments.hours:g} h, scaled by {length:.4g} for the length), so the "
        f"preparation takes {nights} x {cpu_per_night:.1f} / {cores} = {prepare / 60:.1f} min, and `save_to_disk` "
        f"(one process, {save_per_night:.2f} s per night measured) {save / 60:.1f} min: **{(prepare + save) / 60:.1f} "
        f"min** in all. Assumed: the workers stay CPU-bound and independent up to {cores} processes (each reads, "
        "preprocesses and writes one record at a time; nothing is shared but the disk), i.e. the scaling beyond "
        f"{top} processes is a projection, not a measurement. Memory: {cores} workers x the worker peak RSS above.",
    ]
    if top > 1:
        used = largest[top]["cpu_seconds"] / largest[top]["seconds"]
        lines += ["", f"Measured wall-clock speed-up of the preparation from 1 to {top} processes on {most} nights: "
                      f"{one_wall / top_wall:.2f}x, with {used:.2f} cores used on average by the {top} processes: the "
                      f"other work on this {os.cpu_count()}-core machine left them about that much, so this wall-clock "
                      f"scaling says more about the machine than about the build. The CPU time per night with {top} "
                      f"processes is {largest[top]['cpu_seconds'] / largest[1]['cpu_seconds']:.2f}x that with 1 (the "
                      "overhead of the worker processes)."]
    return lines


def build_lines(rows: list[dict], setting: dict, arguments) -> list[str]:
    """The full-size section: command, setting, one table row per (nights, num_proc), the projection."""
    most = max(row["nights"] for row in rows)
    lines = [
        f"`python benchmarks/bench_build.py --full-size-nights {' '.join(map(str, arguments.full_size_nights))} "
        f"--num_proc {' '.join(map(str, arguments.num_proc))} --hours {arguments.hours:g}"
        + f" --repeats {arguments.repeats}"
        + (f" --stream_steps {arguments.stream_steps} --stream_workers {' '.join(map(str, arguments.stream_workers))}"
           if arguments.stream_steps else "") + "`",
        "",
        f"Synthetic nights of {arguments.hours:g} h (13 channels at 200 Hz, challenge layout, half unlabelled "
        f"(`pretrain`), half labelled (`probe_train`); {setting['raw_mb_per_night']:.0f} MB of `.mat` per night, {most} "
        f"written in {setting['generate_seconds']:.0f} s), built with `build_to_folder` (= `python -m "
        f"dataset_scripts.physionet2018 build`) on {setting['machine']}, shared with other work: load average "
        f"{setting['load']:.1f} at the end, so times are upper bounds). Prepare = reading, preprocessing, labelling and "
        f"writing Arrow, spread over `num_proc` processes (one record at a time per process); every build ran "
        f"{arguments.repeats} times: times are those of the run with the least CPU time, memory the largest of the "
        "runs. Save = "
        "`DatasetDict.save_to_disk` (one process). CPU s = user + system time of the build process and its workers; "
        "cores used = CPU s / wall s. Peak RSS = `VmHWM` of the process, peak anon = the largest `RssAnon` sampled "
        "every 50 ms (the memory a process owns, without the shared pages of imported libraries and memory-mapped "
        "files). With `num_proc=1` the main process does all the work; with more, `datasets` forks worker processes "
        "(their RSS counts the pages shared with the main process); a split runs over at most as many processes as it "
        "has records, one split after the other.",
        "",
        "| nights | num_proc | windows | total s | prepare s | save s | s per night | CPU s per night | cores used "
        "| dataset MB | main peak RSS MB (anon) | worker processes | worker peak RSS MB (anon) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        prepare = row["seconds"] - row["save_to_disk_seconds"]
        workers = row["workers"]
        lines.append(
            f"| {row['nights']} | {row['num_proc']} | {row['windows']} | {row['seconds']:.1f} | {prepare:.1f} | "
            f"{row['save_to_disk_seconds']:.2f} | {row['seconds'] / row['nights']:.2f} | "
            f"{row['cpu_seconds'] / row['nights']:.2f} | {row['cpu_seconds'] / row['seconds']:.2f} | "
            f"{row['dataset_mb']:.0f} | {row['main']['peak_rss_mb']:.0f} ({row['main']['peak_anon_mb']:.0f}) | "
            f"{workers['processes']} | "
            + (f"{workers['peak_rss_mb']:.0f} ({workers['peak_anon_mb']:.0f}) |" if workers["processes"] else "- |")
        )
    return lines + [""] + projection(rows, arguments)


def full_size_nights(arguments) -> None:
    most = max(arguments.full_size_nights)
    cohort = arguments.work_dir / "nights"
    started = time.perf_counter()
    names = write_nights(cohort, most, arguments.hours)
    generate_seconds = time.perf_counter() - started
    raw_mb = sum(path.stat().st_size for path in cohort.rglob("*.mat")) / 2**20
    rows = []
    for count in arguments.full_size_nights:
        folder = subset_folder(cohort, names[:count], arguments.work_dir / f"nights-{count}")
        for num_proc in arguments.num_proc:
            output = arguments.work_dir / f"build-{count}-{num_proc}"
            runs = []
            for _ in range(arguments.repeats):  # the machine is shared: times of the fastest run, memory of the largest
                shutil.rmtree(output, ignore_errors=True)
                runs.append(run_monitored_child(_FULL_BUILD_CHILD, str(folder), str(output), str(num_proc), str(REPO_ROOT)))
            result = min((run[0] for run in runs), key=lambda run: run["cpu_seconds"])
            main_memory, worker_memory = (
                {key: max(run[part][key] for run in runs) for key in runs[0][part]} for part in (1, 2))
            dataset_mb = sum(path.stat().st_size for path in (output / "dataset").rglob("*.arrow")) / 2**20
            row = {"nights": count, "num_proc": num_proc, **result, "dataset_mb": dataset_mb,
                   "main": main_memory, "workers": worker_memory, "repeats": arguments.repeats,
                   "cpu_seconds_of_every_run": [run[0]["cpu_seconds"] for run in runs]}
            rows.append(row)
            print(json.dumps(row), flush=True)
            keep = arguments.stream_steps and num_proc == arguments.num_proc[0] and count in (
                min(arguments.full_size_nights), most)
            if not keep:  # the smallest and the largest build are streamed from below
                shutil.rmtree(output, ignore_errors=True)

    setting = {"raw_mb_per_night": raw_mb / most, "generate_seconds": generate_seconds, "load": os.getloadavg()[0],
               "machine": f"{platform.processor() or platform.machine()} ({os.cpu_count()} CPUs"}
    write_section(arguments.output, "Full-size nights with several processes", build_lines(rows, setting, arguments))
    stream_rows = []
    if arguments.stream_steps:
        smallest = min(arguments.full_size_nights)
        for count in sorted({smallest, most}):
            build = arguments.work_dir / f"build-{count}-{arguments.num_proc[0]}"
            stream_rows += streaming_runs(build / "dataset", count, arguments)
        if arguments.stream_reshard:  # the largest build again, in many more Arrow files
            from datasets import load_from_disk

            saved = load_from_disk(str(build / "dataset"))
            resharded = arguments.work_dir / f"build-{most}-resharded"
            saved.save_to_disk(str(resharded), num_shards={split: arguments.stream_reshard for split in saved})
            del saved
            stream_rows += streaming_runs(resharded, most, arguments)
        write_section(arguments.output, "Streaming training from the built shards", streaming_lines(stream_rows, arguments))
    (arguments.output.with_suffix(".json")).write_text(
        json.dumps({"setting": setting, "builds": rows, "streaming": stream_rows}, indent=1) + "\n")


STREAM_SPLITS = "pretrain+probe_train"  # write_nights: unlabelled and probe_train nights


def streaming_runs(dataset: Path, nights: int, arguments) -> list[dict]:
    """`train.py configs/tiny.yaml --streaming` on every split of a build, once per `--stream_workers` value."""
    from datasets import load_from_disk

    saved = load_from_disk(str(dataset))
    windows = sum(len(saved[split]) for split in STREAM_SPLITS.split("+"))
    arrow_files = sum(len(saved[split].cache_files) for split in STREAM_SPLITS.split("+"))
    del saved
    rows = []
    for workers in arguments.stream_workers:
        output = arguments.work_dir / f"stream-{nights}-{workers}"
        command = [sys.executable, "train.py", "configs/tiny.yaml", "--dataset_dir", str(dataset), "--split",
                   STREAM_SPLITS, "--output_dir", str(output), "--streaming", "--max_steps", str(arguments.stream_steps),
                   "--per_device_batch_size", "16", "--shuffle_buffer_size", str(arguments.stream_buffer),
                   "--num_workers", str(workers), "--save_steps", "0", "--report_to", "none", "--disable_tqdm"]
        started = time.perf_counter()
        _, main_memory, worker_memory = run_monitored(command)
        row = {"nights": nights, "windows": windows, "arrow_files": arrow_files, "num_workers": workers,
               "seconds": time.perf_counter() - started, "main": main_memory, "workers": worker_memory}
        rows.append(row)
        print(json.dumps(row), flush=True)
        shutil.rmtree(output, ignore_errors=True)
    return rows


def streaming_lines(rows: list[dict], arguments) -> list[str]:
    lines = [
        f"The smallest and the largest build above, streamed by `python train.py configs/tiny.yaml --dataset_dir "
        f"BUILD/dataset --split {STREAM_SPLITS} --streaming --max_steps {arguments.stream_steps} "
        f"--per_device_batch_size 16 --shuffle_buffer_size {arguments.stream_buffer} --num_workers W` (the tiny model: "
        "the data path dominates the memory)"
        + (f", and the largest build re-saved in {arguments.stream_reshard} Arrow files per split (`save_to_disk("
           "num_shards=...)`)" if arguments.stream_reshard else "") + ". Peak RSS (`VmHWM`) counts the pages of the memory-mapped Arrow files "
        "that were read (shared, evictable page cache); peak anon (`RssAnon`, sampled every 50 ms) is the memory the "
        "process owns: the imports, the model, the shuffle buffer and the batches in flight. The held-out "
        "reconstruction windows, the target-statistics windows and the per-row record names are bounded by their "
        "own settings or are a few bytes per window.",
        "",
        "| nights | windows | Arrow files | num_workers | wall s | main peak RSS MB (anon) | workers | worker peak RSS MB (anon) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        workers = row["workers"]
        lines.append(
            f"| {row['nights']} | {row['windows']} | {row['arrow_files']} | {row['num_workers']} | {row['seconds']:.0f} | "
            f"{row['main']['peak_rss_mb']:.0f} ({row['main']['peak_anon_mb']:.0f}) | {workers['processes']} | "
            + (f"{workers['peak_rss_mb']:.0f} ({workers['peak_anon_mb']:.0f}) |" if workers["processes"] else "- |")
        )
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, nargs="+", default=[10, 40], help="short-record mode: record counts")
    parser.add_argument("--full-size-nights", dest="full_size_nights", type=int, nargs="+", default=None,
                        help="full-size mode: night counts to build (e.g. 2 4)")
    parser.add_argument("--num_proc", type=int, nargs="+", default=[1, 2], help="full-size mode: num_proc values")
    parser.add_argument("--hours", type=float, default=None, help="record length (default 0.5, full-size mode 8)")
    parser.add_argument("--stream_steps", type=int, default=0,
                        help="full-size mode: also stream the smallest and largest build with train.py for N steps")
    parser.add_argument("--stream_workers", type=int, nargs="+", default=[0, 2], help="--num_workers of those runs")
    parser.add_argument("--stream_buffer", type=int, default=512, help="--shuffle_buffer_size of those runs")
    parser.add_argument("--stream_reshard", type=int, default=32,
                        help="also stream the largest build re-saved in this many Arrow files per split (0: not)")
    parser.add_argument("--repeats", type=int, default=2,
                        help="full-size mode: builds per (nights, num_proc); times of the run with the least CPU time")
    parser.add_argument("--project_nights", type=int, default=1983)
    parser.add_argument("--project_hours", type=float, default=7.5, help="typical length of a challenge night")
    parser.add_argument("--project_cores", type=int, default=16)
    parser.add_argument("--work_dir", type=Path, default=Path("/tmp/physiomae_bench_build"))
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "benchmarks" / "results_build.md")
    arguments = parser.parse_args(argv)
    if arguments.hours is None:
        arguments.hours = 8.0 if arguments.full_size_nights else 0.5
    sys.path.insert(0, str(REPO_ROOT))
    shutil.rmtree(arguments.work_dir, ignore_errors=True)
    try:
        if arguments.full_size_nights:
            full_size_nights(arguments)
        else:
            short_records(arguments)
    finally:
        shutil.rmtree(arguments.work_dir, ignore_errors=True)
    print(f"wrote {arguments.output}")


if __name__ == "__main__":
    main()
