"""train.py --windows_on_device: the split collated once and held on the training device gives the same batches, steps
and weights as the Arrow DataLoader, resumes from the same checkpoints, and refuses what it cannot do."""
from __future__ import annotations

import shutil

import pytest
import torch

from physiomae.training.data import ArrowWindowDataset, DeviceWindowDataset, WindowCollator, check_fits_on_device
from test_data_streaming import sample_ids_per_step
from test_pretraining import (  # noqa: F401  (one_torch_thread, tiny_dataset: the training tests' fixtures)
    assert_same_weights, base_arguments, export_weights, one_torch_thread, read_log, run_train, tiny_dataset,
)


def test_device_windows_hold_the_arrow_batches(tiny_dataset):
    """Collated in chunks smaller than the split, the held windows give back exactly what Arrow gives for any rows."""
    import datasets

    from modeling_physiomae import PhysioMAEConfig
    from physiomae.saved_dataset import dataset_layout

    split = datasets.load_from_disk(str(tiny_dataset))["pretrain"]
    arrow = ArrowWindowDataset(split, WindowCollator(PhysioMAEConfig(), dataset_layout(split)))
    held = DeviceWindowDataset(arrow, torch.device("cpu"), chunk_size=5)
    assert len(held) == len(arrow) == 24
    rows = [23, 0, 7, 5, 11, 4]
    expected, got = arrow.__getitems__(rows), held.__getitems__(rows)
    assert got["input_values"].dtype == expected["input_values"].dtype == torch.float16
    assert torch.equal(got["input_values"], expected["input_values"])
    assert torch.equal(got["modality_mask"], expected["modality_mask"])
    assert got["sample_ids"] == expected["sample_ids"]


def test_windows_on_device_train_the_same_steps_and_resume_from_an_arrow_checkpoint(tiny_dataset, tmp_path):
    def arguments(output_dir, *extra):
        return base_arguments(tiny_dataset, output_dir, "--max_steps", 6, "--per_device_batch_size", 4,
                              "--save_steps", 3, "--log_sample_ids", *extra)

    arrow, held = tmp_path / "arrow", tmp_path / "held"
    run_train(arguments(arrow))
    run_train(arguments(held, "--windows_on_device"))
    assert [entry["loss"] for entry in read_log(held / "train_log.jsonl")] == \
        [entry["loss"] for entry in read_log(arrow / "train_log.jsonl")]
    assert sample_ids_per_step(held) == sample_ids_per_step(arrow)
    assert_same_weights(export_weights(arrow / "export"), export_weights(held / "export"))

    # the data position of a checkpoint means the same batches with the windows held on the device
    resumed = tmp_path / "resumed"
    shutil.copytree(arrow / "checkpoints" / "checkpoint-3", resumed / "checkpoints" / "checkpoint-3")
    run_train(arguments(resumed, "--windows_on_device", "--resume_from_checkpoint", "latest"))
    assert [entry["step"] for entry in read_log(resumed / "train_log.jsonl")] == [4, 5, 6]
    assert sample_ids_per_step(resumed) == sample_ids_per_step(arrow)[3:]
    assert_same_weights(export_weights(arrow / "export"), export_weights(resumed / "export"))


@pytest.mark.parametrize("extra", [("--num_workers", "2"), ("--streaming",)])
def test_windows_on_device_refuse_workers_and_streaming(tiny_dataset, tmp_path, extra):
    with pytest.raises(ValueError, match="--windows_on_device"):
        run_train(base_arguments(tiny_dataset, tmp_path / "run", "--max_steps", 2, "--windows_on_device", *extra))
    assert not (tmp_path / "run" / "export").exists()


def test_a_split_too_large_for_the_device_is_refused_with_its_sizes():
    check_fits_on_device(2**30, 4 * 2**30, torch.device("cpu"), 100)  # a quarter of the free memory: fits
    check_fits_on_device(2**30, None, torch.device("cpu"), 100)  # free memory unknown: not refused
    with pytest.raises(ValueError, match=r"1000 training windows need 3\.00 GiB on cuda:0, more than 50% of its "
                                         r"4\.00 GiB free"):
        check_fits_on_device(3 * 2**30, 4 * 2**30, torch.device("cuda:0"), 1000)
