"""The full data set: a build with several processes (the same rows and report as with one), and train.py
--streaming from the saved shards as an IterableDataset: exact resume mid-epoch, with and without DataLoader
workers. (Memory and time per night: benchmarks/bench_build.py, benchmarks/results_build.md.)"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from physiomae.training.checkpoints import list_checkpoints
from test_pretraining import (  # noqa: F401  (one_torch_thread, tiny_dataset: the training tests' fixtures)
    assert_same_weights, base_arguments, export_weights, one_torch_thread, read_log, run_train, tiny_dataset,
    torchrun_train,
)


def streaming_arguments(dataset, output_dir, *extra):
    # 12 windows in 4 shards, batch 4: 3 batches per epoch (with 2 workers, each reading 2 of the 4 shards: batches
    # of 4, 4, 2, 2); 2 batches per step: steps cross epochs, and checkpoint-5 (after 10 batches) is mid-epoch either
    # way (epoch 3, batch 1 / epoch 2, batch 2).
    return base_arguments(dataset, output_dir, "--streaming", "--streaming_num_shards", 4, "--shuffle_buffer_size", 8,
                          "--max_steps", 8, "--per_device_batch_size", 4, "--max_train_windows", 12,
                          "--gradient_accumulation_steps", 2, "--save_steps", 5, "--save_total_limit", 2,
                          "--log_sample_ids", *extra)


def sample_ids_per_step(output_dir: Path, rank: int = 0) -> list:
    rows = read_log(output_dir / "sample_ids" / f"rank_{rank}.jsonl")
    return [row["sample_ids"] for row in rows if "sample_ids" in row]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_streaming_resume_mid_epoch_reproduces_the_uninterrupted_run(tiny_dataset, tmp_path, monkeypatch, num_workers):
    from accelerate import Accelerator

    workers = ("--num_workers", num_workers)
    straight = tmp_path / "straight"
    run_train(streaming_arguments(tiny_dataset, straight, *workers))
    straight_log = read_log(straight / "train_log.jsonl")
    assert [entry["step"] for entry in straight_log] == list(range(1, 9))
    straight_ids = sample_ids_per_step(straight)
    # every epoch streams all 12 windows once, in an order that changes with the epoch
    streamed = [sample for step in straight_ids for batch in step for sample in batch]
    first, second = streamed[0:12], streamed[12:24]
    assert len(set(first)) == 12 and sorted(first) == sorted(second) and first != second

    # Crash while writing the last checkpoint (step 8), then resume from checkpoint-5 (mid-epoch).
    interrupted = tmp_path / "interrupted"
    original_save_state = Accelerator.save_state

    def save_state_then_crash(self, output_dir=None, **kwargs):
        result = original_save_state(self, output_dir, **kwargs)
        if Path(output_dir).name.endswith("-8"):
            raise KeyboardInterrupt("simulated crash mid-save")
        return result

    monkeypatch.setattr(Accelerator, "save_state", save_state_then_crash)
    with pytest.raises(KeyboardInterrupt):
        run_train(streaming_arguments(tiny_dataset, interrupted, *workers))
    monkeypatch.setattr(Accelerator, "save_state", original_save_state)
    assert [path.name for path in list_checkpoints(interrupted / "checkpoints")] == ["checkpoint-5"]
    run_train(streaming_arguments(tiny_dataset, interrupted, *workers, "--resume_from_checkpoint", "latest"))
    resumed_log = read_log(interrupted / "train_log.jsonl")
    assert [entry["step"] for entry in resumed_log] == list(range(1, 9))
    assert [entry["loss"] for entry in resumed_log] == [entry["loss"] for entry in straight_log]
    # the resumed run saw the same windows at every step after the checkpoint
    assert sample_ids_per_step(interrupted)[-3:] == straight_ids[-3:]
    assert_same_weights(export_weights(straight / "export"), export_weights(interrupted / "export"))


def test_two_processes_stream_disjoint_shards_and_resume_exactly(tiny_dataset, tmp_path):
    """configs/full_multi_gpu.yaml's data path on 2 CPU processes: each rank streams its own 2 of the 4 shards, the
    ranks end with one set of weights, and a resume from a mid-run checkpoint continues every rank's own stream."""
    import shutil

    def arguments(output_dir, *extra):
        return base_arguments(tiny_dataset, output_dir, "--streaming", "--streaming_num_shards", 4,
                              "--shuffle_buffer_size", 8, "--max_steps", 6, "--per_device_batch_size", 2,
                              "--max_train_windows", 12, "--save_steps", 3, "--save_total_limit", 3,
                              "--log_sample_ids", *extra)

    straight = tmp_path / "straight"
    torchrun_train(arguments(straight))
    ids = {rank: sample_ids_per_step(straight, rank) for rank in (0, 1)}
    assert len(ids[0]) == len(ids[1]) == 6
    streamed = {rank: {sample for step in ids[rank] for batch in step for sample in batch} for rank in (0, 1)}
    # 12 windows in 4 shards: 6 per rank, none on both, every window streamed
    assert len(streamed[0]) == len(streamed[1]) == 6 and not streamed[0] & streamed[1]

    resumed = tmp_path / "resumed"
    shutil.copytree(straight / "checkpoints" / "checkpoint-3", resumed / "checkpoints" / "checkpoint-3")
    torchrun_train(arguments(resumed, "--resume_from_checkpoint", "latest"))
    assert [entry["step"] for entry in read_log(resumed / "train_log.jsonl")] == [4, 5, 6]
    straight_losses = [entry["loss"] for entry in read_log(straight / "train_log.jsonl")]
    assert [entry["loss"] for entry in read_log(resumed / "train_log.jsonl")] == straight_losses[3:]
    for rank in (0, 1):
        assert sample_ids_per_step(resumed, rank) == ids[rank][3:]
    assert_same_weights(export_weights(straight / "export"), export_weights(resumed / "export"))


def test_streaming_resume_with_another_shuffle_buffer_restarts_the_epoch(tiny_dataset, tmp_path):
    """The streamed order depends on the shards, the shuffle buffer and the workers: a checkpoint records them, and
    resuming under other ones does not pretend to continue its data position."""
    import json

    output_dir = tmp_path / "run"
    run_train(streaming_arguments(tiny_dataset, output_dir, "--max_steps", 5))
    state = json.loads((output_dir / "checkpoints" / "checkpoint-5" / "trainer_state.json").read_text())
    assert (state["streaming_num_shards"], state["shuffle_buffer_size"], state["num_workers"]) == (4, 8, 0)
    assert (state["epoch"], state["batch_in_epoch"]) == (3, 1)
    run_train(streaming_arguments(tiny_dataset, output_dir, "--max_steps", 6, "--shuffle_buffer_size", 4,
                                  "--resume_from_checkpoint", "latest"))
    state = json.loads((output_dir / "checkpoints" / "checkpoint-6" / "trainer_state.json").read_text())
    # the data position restarted at the next epoch (4): two batches of it make step 6
    assert (state["epoch"], state["batch_in_epoch"], state["shuffle_buffer_size"]) == (4, 2, 4)


def test_build_with_two_processes_gives_the_same_rows_and_report(tmp_path):
    """build_to_folder (the `build` command) with num_proc=2: each worker builds whole records; the saved rows and the
    merged report equal those of one process."""
    from datasets import load_from_disk

    from dataset_scripts import synthetic_psg
    from dataset_scripts.physionet2018 import build_to_folder

    synthetic_psg.write_cohort(tmp_path / "cohort", n_train=0, n_test=3, hours=0.1, seed=0)
    one = build_to_folder(str(tmp_path / "cohort"), str(tmp_path / "one"), num_proc=1)
    two = build_to_folder(str(tmp_path / "cohort"), str(tmp_path / "two"), num_proc=2)
    assert one["totals"] == two["totals"] and one["totals"]["records_built"] == 3
    assert one["records"] == two["records"]
    rows = {}
    for name in ("one", "two"):
        split = load_from_disk(str(tmp_path / name / "dataset"))["pretrain"].with_format("numpy")
        order = np.lexsort((split["window"], split["record"]))
        rows[name] = {column: split[column][order] for column in ("record", "window", "input_values", "channel_mask")}
    for column in rows["one"]:
        np.testing.assert_array_equal(rows["one"][column], rows["two"][column])
