"""The training data of one model: the saved dataset's windows in the model's channel order, batched straight from
Arrow, in an order that depends only on (seed, epoch); the held-out records of the reconstruction evaluation;
the windows behind the target statistics."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import torch

from modeling_physiomae.configuration_physiomae import ChannelLayout
from physiomae.saved_dataset import ChannelMapping, check_window_geometry, dataset_layout, is_saved_dataset, locate_saved_dataset
from physiomae.strategies import get_strategy
from physiomae.training.arguments import DataArguments, PretrainingArguments

logger = logging.getLogger("physiomae.train")


def resolve_dataset_dir(data_args: DataArguments, output_dir: Path, accelerator) -> Path:
    """The save_to_disk folder of the dataset; builds it from --data_dir first when asked to.

    --dataset_dir names the saved dataset (the builder's O/dataset) or the build folder O holding it. With
    --data_dir an existing build there is reused; otherwise the builder writes O/dataset and
    O/build_report.json, with O = the parent of --dataset_dir when that is named `dataset`, else --dataset_dir,
    else OUTPUT/data.
    """
    candidate = Path(data_args.dataset_dir) if data_args.dataset_dir else None
    if not data_args.data_dir:
        return locate_saved_dataset(candidate)
    if candidate is None:
        build_root = output_dir / "data"
    else:
        build_root = candidate.parent if candidate.name == "dataset" else candidate
    target = build_root / "dataset"
    if accelerator.is_main_process:
        if is_saved_dataset(target):
            logger.info("reusing the dataset already built in %s", target)
        else:
            build_dataset(Path(data_args.data_dir), build_root, data_args.build_num_proc)
    accelerator.wait_for_everyone()
    return target


def build_dataset(data_dir: Path, build_root: Path, num_proc: int | None = None) -> None:
    """Run the dataset builder (dataset_scripts.physionet2018) on a raw challenge folder: build_root/dataset."""
    if not data_dir.is_dir():
        raise FileNotFoundError(f"--data_dir {data_dir} is not a folder")
    from dataset_scripts.physionet2018 import build_to_folder

    logger.info("building the dataset from %s into %s", data_dir, build_root)
    report = build_to_folder(str(data_dir), str(build_root), num_proc=num_proc)
    totals = report.get("totals", {})
    logger.info("dataset built: %s records, %s windows kept, %s skipped %s", totals.get("records_built"),
                totals.get("windows_kept"), totals.get("windows_skipped"), totals.get("windows_skipped_by_reason"))


class WindowCollator:
    """Builds a batch in the model's channel order (`ChannelMapping`: channels selected by name from the dataset's).

    Returns `input_values` float16/float32 (batch, model_channels, window_length), `modality_mask` bool
    (batch, model_modalities) and `sample_ids` (list of "record:window"). `__call__` takes a list of rows
    (streaming); `from_arrays` takes whole-batch arrays (the fast map-style path, see `ArrowWindowDataset`).
    """

    def __init__(self, config, layout: ChannelLayout):
        self.mapping = ChannelMapping.for_config(config, layout)
        self.num_dataset_channels = self.mapping.num_dataset_channels
        self.num_dataset_modalities = self.mapping.num_dataset_modalities
        self.channel_names = list(config.channel_names)
        self.channel_modality = np.asarray(config.channel_modality_indices)  # modality index of every model channel

    def from_arrays(self, input_values: np.ndarray, modality_mask: np.ndarray, channel_mask: np.ndarray | None,
                    records: list, windows: list) -> dict[str, Any]:
        input_values, present = self.mapping.model_inputs(input_values, channel_mask, modality_mask=modality_mask)
        # the model's own value checks read the batch back from the device (and are skipped under torch.compile):
        # check here, on the host, where it costs nothing
        non_finite = ~np.isfinite(input_values) & present[:, self.channel_modality, None]
        if non_finite.any():
            sample, channel, _ = np.argwhere(non_finite)[0]
            raise ValueError(
                f"window {records[sample]}:{int(windows[sample])} has NaN/inf values in present channel "
                f"{self.channel_names[channel]!r}; rebuild the dataset or mark the channel absent"
            )
        return {
            # float16 datasets stay float16 until they reach the device (half the bytes between processes and
            # to the GPU); the training loop casts to float32 there.
            "input_values": torch.from_numpy(
                np.array(input_values, dtype=np.float16 if input_values.dtype == np.float16 else np.float32)
            ),
            "modality_mask": torch.from_numpy(present),  # (batch, model_modalities)
            "sample_ids": [f"{record}:{int(window)}" for record, window in zip(records, windows)],
        }

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        def stacked(name):
            return np.stack([np.asarray(row[name]) for row in rows]) if name in rows[0] else None

        return self.from_arrays(
            stacked("input_values"), stacked("modality_mask").astype(bool),
            None if stacked("channel_mask") is None else stacked("channel_mask").astype(bool),
            [row.get("record", "?") for row in rows], [row.get("window", -1) for row in rows],
        )


def arrow_column_to_numpy(column, shape: tuple[int, ...]) -> np.ndarray:
    """A fixed-shape (nested list / Array2D extension) Arrow column as one numpy array of `shape`."""
    array = column.combine_chunks() if hasattr(column, "combine_chunks") else column
    while True:
        if hasattr(array, "storage"):  # datasets' Array2D extension type
            array = array.storage
        elif hasattr(array, "flatten") and hasattr(array.type, "value_type"):
            array = array.flatten()
        else:
            break
    return array.to_numpy(zero_copy_only=False).reshape(shape)


class ArrowWindowDataset(torch.utils.data.Dataset):
    """Map-style view of a split that hands the DataLoader whole batches (`__getitems__`) read straight from
    Arrow: one take + one conversion per batch instead of one per row (about 2x faster on CPU)."""

    def __init__(self, split_dataset, collator: WindowCollator):
        self.dataset = split_dataset.with_format("arrow")
        self.collator = collator
        self.window_length = split_dataset.features["input_values"].shape[-1]

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.__getitems__([index])

    def __getitems__(self, indices: list[int]) -> dict[str, Any]:
        table = self.dataset[list(indices)]
        batch_size = table.num_rows
        names = table.column_names
        collator = self.collator
        return collator.from_arrays(
            arrow_column_to_numpy(table.column("input_values"),
                                  (batch_size, collator.num_dataset_channels, self.window_length)),
            arrow_column_to_numpy(table.column("modality_mask"), (batch_size, collator.num_dataset_modalities)),
            arrow_column_to_numpy(table.column("channel_mask"), (batch_size, collator.num_dataset_channels))
            if "channel_mask" in names else None,
            table.column("record").to_pylist() if "record" in names else ["?"] * batch_size,
            table.column("window").to_pylist() if "window" in names else [-1] * batch_size,
        )


def free_memory_bytes(device: torch.device) -> int | None:
    """Bytes free on `device` (a CUDA device's free memory, the host's MemAvailable for the CPU); None if unknown."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type == "cpu":
        try:
            for line in Path("/proc/meminfo").read_text().splitlines():
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            return None
    return None


def check_fits_on_device(num_bytes: int, free_bytes: int | None, device: torch.device, num_windows: int,
                         share: float = 0.5) -> None:
    """Raise a ValueError naming the sizes when `num_bytes` of windows would take more than `share` of the free
    memory of `device` (the rest is left to the model, its activations and the optimizer)."""
    if free_bytes is not None and num_bytes > share * free_bytes:
        raise ValueError(
            f"--windows_on_device: the {num_windows} training windows need {num_bytes / 2**30:.2f} GiB on {device}, "
            f"more than {share:.0%} of its {free_bytes / 2**30:.2f} GiB free; train without --windows_on_device "
            f"(DataLoader workers) or with --streaming"
        )


class DeviceWindowDataset(torch.utils.data.Dataset):
    """
    The split collated once (as `ArrowWindowDataset` collates it, float16 datasets kept float16) and held on the
    training device: a batch is one `index_select` there, with no Arrow read, no collation and no host-to-device
    copy. Same rows, same values and same batches (the same sampler) as `ArrowWindowDataset`, so a run gives the
    same steps either way. For splits that fit on the device (`check_fits_on_device`), e.g. the real excerpts on
    a GPU. The DataLoader must run in the main process (`num_workers=0`): workers cannot hand out device tensors.
    """

    def __init__(self, windows: ArrowWindowDataset, device: torch.device, chunk_size: int = 1024):
        num_rows = len(windows)
        first = windows.__getitems__(list(range(min(chunk_size, num_rows))))
        values, mask = first["input_values"], first["modality_mask"]
        check_fits_on_device(num_rows * values[0].numel() * values.element_size(), free_memory_bytes(device), device,
                             num_rows)
        self.input_values = torch.empty((num_rows, *values.shape[1:]), dtype=values.dtype, device=device)
        self.modality_mask = torch.empty((num_rows, *mask.shape[1:]), dtype=mask.dtype, device=device)
        self.sample_ids: list[str] = []
        for start in range(0, num_rows, chunk_size):  # one chunk at a time on the host
            chunk = first if start == 0 else windows.__getitems__(list(range(start, min(start + chunk_size, num_rows))))
            stop = start + len(chunk["sample_ids"])
            self.input_values[start:stop].copy_(chunk["input_values"])
            self.modality_mask[start:stop].copy_(chunk["modality_mask"])
            self.sample_ids += chunk["sample_ids"]
        self.device = device

    def __len__(self) -> int:
        return len(self.sample_ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.__getitems__([index])

    def __getitems__(self, indices: list[int]) -> dict[str, Any]:
        rows = torch.as_tensor(indices, dtype=torch.long).to(self.device, non_blocking=True)
        return {
            "input_values": self.input_values.index_select(0, rows),  # (batch, model_channels, window_length)
            "modality_mask": self.modality_mask.index_select(0, rows),  # (batch, model_modalities)
            "sample_ids": [self.sample_ids[index] for index in indices],
        }


def batch_passthrough(batch: dict[str, Any]) -> dict[str, Any]:
    """collate_fn of ArrowWindowDataset loaders: the dataset already built the batch."""
    return batch


def usable_row_indices(dataset, collator: WindowCollator) -> list[int] | None:
    """Rows with at least one of the model's modalities present (None: all rows usable)."""
    columns = dataset.with_format("numpy")
    channel_mask = (np.asarray(columns["channel_mask"], dtype=bool) if "channel_mask" in dataset.column_names
                    and None in collator.mapping.modality_source else None)
    keep = collator.mapping.model_modality_mask(channel_mask, np.asarray(columns["modality_mask"], dtype=bool)).any(axis=1)
    if keep.all():
        return None
    return np.flatnonzero(keep).tolist()


class EpochShuffleSampler(torch.utils.data.Sampler):
    """A random permutation of the rows that depends only on (seed, epoch): identical in every process and
    reproducible after a resume. Accelerate shards its batches across processes and calls `set_epoch`."""

    def __init__(self, num_rows: int, seed: int):
        self.num_rows = num_rows
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.num_rows, generator=generator).tolist())

    def __len__(self) -> int:
        return self.num_rows


@dataclass
class ReconstructionEvalData:
    """The held-out windows of the reconstruction evaluation, collated once like the training batches.

    `batches`: dicts with `input_values` `(batch, model_channels, window_length)` (float16 or float32, on the
    CPU) and `modality_mask` `(batch, model_modalities)` bool; the same windows in the same order at every
    evaluation.
    """

    batches: list[dict[str, Any]]
    fraction: float
    num_records: int  # held-out records (all removed from training)
    num_windows: int  # windows scored per evaluation
    num_windows_available: int  # usable held-out windows (at least one of the model's modalities present)
    every_steps: int = 0  # evaluate every N optimizer steps (0: only at the last step)


@dataclass
class TrainingData:
    """The dataloader of a run and how to position it at (epoch, batch)."""

    dataloader: Any
    batches_per_epoch: Optional[int]  # None when streaming
    num_rows: Optional[int]
    streaming: bool
    streamed_dataset: Any = None
    dropped_rows: int = 0
    statistics_windows: Optional[ArrowWindowDataset] = None  # training windows behind the target statistics
    reconstruction_eval: Optional[ReconstructionEvalData] = None  # None: the error is not measured
    held_out_note: str = ""  # why nothing is held out, when nothing is
    # settings the order of the batches depends on beyond the process/batch layout (a checkpoint's data position
    # is only continued under the same ones): the streamed order depends on the shards, the buffer and the workers
    order_settings: dict = field(default_factory=dict)

    def statistics_batches(self, device, batch_size: int = 64) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """`(input_values, modality_mask)` batches of `statistics_windows` on `device`, for `set_target_statistics`."""
        for start in range(0, len(self.statistics_windows), batch_size):
            batch = self.statistics_windows.__getitems__(list(range(start, min(start + batch_size, len(self.statistics_windows)))))
            yield batch["input_values"].to(device).float(), batch["modality_mask"].to(device)


def evenly_spaced(num_rows: int, count: int) -> list[int]:
    """`min(count, num_rows)` row indices spread evenly over `range(num_rows)` (all of them when count >= num_rows)."""
    if count >= num_rows:
        return list(range(num_rows))
    return np.unique(np.linspace(0, num_rows - 1, count).round().astype(int)).tolist()


def held_out_record_rows(split_dataset, fraction: float) -> tuple[np.ndarray | None, int, str]:
    """Which rows belong to the held-out records: those whose `record_split_position` (the builder's sha1 split) is
    below `fraction`.

    Returns (boolean row mask or None when nothing is held out, number of held-out records, why nothing is).
    Nothing is held out when `fraction` is 0, the split has no `record` column, or the hash picks no record
    or every record (training needs at least one). The `record` column is read as Arrow and dictionary-encoded
    (one int32 per row, one Python string per record), so this costs a few bytes per window, not one object.
    """
    import pyarrow.compute as pc

    from dataset_scripts.record_split import record_split_position

    if fraction <= 0:
        return None, 0, "--reconstruction_eval_fraction is 0"
    if "record" not in split_dataset.column_names:
        return None, 0, "the split has no record column"
    column = split_dataset.with_format("arrow")["record"]
    encoded = pc.dictionary_encode(column.combine_chunks() if hasattr(column, "combine_chunks") else column)
    names = [str(name) for name in encoded.dictionary.to_pylist()]
    inverse = encoded.indices.to_numpy(zero_copy_only=False)  # (rows,) index into names
    held_names = np.array([record_split_position(name) < fraction for name in names], dtype=bool)
    if not held_names.any():
        return None, 0, f"no record of {len(names)} hashes into the held-out share {fraction:g}"
    if held_names.all():
        return None, 0, f"every record of {len(names)} hashes into the held-out share {fraction:g}"
    return held_names[inverse], int(held_names.sum()), ""


def build_reconstruction_eval(held_out, collator: WindowCollator, fraction: float, num_records: int,
                              max_windows: int, batch_size: int, every_steps: int) -> ReconstructionEvalData | None:
    """Collate up to `max_windows` usable held-out windows (evenly spaced) into fixed evaluation batches."""
    keep = usable_row_indices(held_out, collator)
    if keep is not None:
        held_out = held_out.select(keep, keep_in_memory=True)
    if len(held_out) == 0:
        return None
    chosen = evenly_spaced(len(held_out), max_windows)
    windows = ArrowWindowDataset(held_out, collator)
    batches = []
    for start in range(0, len(chosen), batch_size):
        batch = windows.__getitems__(chosen[start:start + batch_size])
        batches.append({"input_values": batch["input_values"], "modality_mask": batch["modality_mask"]})
    return ReconstructionEvalData(batches, fraction, num_records, len(chosen), len(held_out), every_steps)


def build_training_data(split_dataset, config, data_args: DataArguments, training_args: PretrainingArguments,
                        accelerator) -> TrainingData:
    """The training stream of one model, its target-statistics windows and its held-out evaluation windows.

    Order: the held-out records are split off the whole split (MAE strategies), then `--max_train_windows`
    takes the first N training windows, then windows without any of the model's modalities are skipped.
    """
    reconstructs = get_strategy(training_args.strategy).reconstructs
    check_window_geometry(split_dataset, config)
    collator = WindowCollator(config, dataset_layout(split_dataset))
    columns = [name for name in ("input_values", "modality_mask", "channel_mask", "record", "window")
               if name in split_dataset.column_names]
    missing = {"input_values", "modality_mask"} - set(columns)
    if missing:
        raise ValueError(f"the dataset lacks the columns {sorted(missing)} (has {split_dataset.column_names})")
    split_dataset = split_dataset.select_columns(columns)

    reconstruction_eval, held_out_note = None, ""
    if reconstructs:
        fraction = data_args.reconstruction_eval_fraction if data_args.reconstruction_eval_max_windows > 0 else 0.0
        held_rows, num_held_records, held_out_note = held_out_record_rows(split_dataset, fraction)
        if held_rows is None:
            logger.warning("the reconstruction error is not measured: %s (nothing held out)", held_out_note)
        else:
            reconstruction_eval = build_reconstruction_eval(
                split_dataset.select(np.flatnonzero(held_rows), keep_in_memory=True), collator, fraction, num_held_records,
                data_args.reconstruction_eval_max_windows, training_args.per_device_batch_size,
                data_args.reconstruction_eval_steps,
            )
            # in memory: an indices mapping written next to the saved dataset would need a writable folder
            split_dataset = split_dataset.select(np.flatnonzero(~held_rows), keep_in_memory=True)
            if reconstruction_eval is None:
                held_out_note = "no held-out window has any of the model's modalities"
                logger.warning("the reconstruction error is not measured: %s", held_out_note)
            else:
                logger.info("held out %d records (%d usable windows, %d scored per evaluation) of the split to "
                            "measure the reconstruction error", num_held_records,
                            reconstruction_eval.num_windows_available, reconstruction_eval.num_windows)
    if data_args.max_train_windows:
        split_dataset = split_dataset.select(range(min(data_args.max_train_windows, len(split_dataset))))
    keep = usable_row_indices(split_dataset, collator)
    dropped = 0
    if keep is not None:
        dropped = len(split_dataset) - len(keep)
        logger.warning("skipping %d of %d windows: none of the model's modalities %s is present", dropped,
                       len(split_dataset), config.modality_names)
        split_dataset = split_dataset.select(keep, keep_in_memory=True)
    if len(split_dataset) == 0:
        raise ValueError(f"no usable windows for modalities {config.modality_names}")
    statistics_windows = None
    if reconstructs:
        statistics_windows = ArrowWindowDataset(
            split_dataset.select(evenly_spaced(len(split_dataset), data_args.target_statistics_max_windows),
                                 keep_in_memory=True), collator,
        )
    extras = {"statistics_windows": statistics_windows, "reconstruction_eval": reconstruction_eval,
              "held_out_note": held_out_note}

    if data_args.streaming:
        from datasets.distributed import split_dataset_by_node

        num_shards = max(data_args.streaming_num_shards, accelerator.num_processes * max(1, data_args.num_workers))
        num_shards = min(num_shards, len(split_dataset))
        streamed = split_dataset.to_iterable_dataset(num_shards=num_shards).with_format("torch")
        streamed = streamed.shuffle(seed=training_args.seed, buffer_size=data_args.shuffle_buffer_size)
        streamed = split_dataset_by_node(streamed, rank=accelerator.process_index, world_size=accelerator.num_processes)
        # Sharded by split_dataset_by_node already: the loader is not prepared (no second sharding),
        # batches are moved to the device by the training loop.
        dataloader = torch.utils.data.DataLoader(
            streamed, batch_size=training_args.per_device_batch_size, collate_fn=collator,
            num_workers=data_args.num_workers, drop_last=data_args.dataloader_drop_last,
        )
        order_settings = {"streaming_num_shards": num_shards, "shuffle_buffer_size": data_args.shuffle_buffer_size,
                          "num_workers": data_args.num_workers}
        return TrainingData(dataloader, None, None, True, streamed, dropped, order_settings=order_settings, **extras)

    dataset = ArrowWindowDataset(split_dataset, collator)
    if data_args.windows_on_device:
        dataset = DeviceWindowDataset(dataset, accelerator.device)
        logger.info("holding the %d training windows on %s (%.2f GiB)", len(dataset), accelerator.device,
                    dataset.input_values.numel() * dataset.input_values.element_size() / 2**30)
    sampler = EpochShuffleSampler(len(dataset), training_args.seed)
    dataloader = torch.utils.data.DataLoader(
        dataset, batch_size=training_args.per_device_batch_size, sampler=sampler, collate_fn=batch_passthrough,
        num_workers=data_args.num_workers, drop_last=data_args.dataloader_drop_last,
        persistent_workers=data_args.num_workers > 0,
        pin_memory=accelerator.device.type == "cuda" and not data_args.windows_on_device,
    )
    dataloader = accelerator.prepare(dataloader)
    if len(dataloader) == 0:
        raise ValueError(
            f"{len(dataset)} windows give no batch of {training_args.per_device_batch_size} per process "
            f"(drop_last={data_args.dataloader_drop_last}, processes={accelerator.num_processes})"
        )
    return TrainingData(dataloader, len(dataloader), len(dataset), False, None, dropped, **extras)


def iterate_batches(data: TrainingData, accelerator, start_epoch: int, start_batch: int):
    """Yields (epoch, batch_index_in_epoch, batch) forever, starting at (start_epoch, start_batch)."""
    epoch, skip = start_epoch, start_batch
    while True:
        if data.streaming:
            data.streamed_dataset.set_epoch(epoch)
            loader = accelerator.skip_first_batches(data.dataloader, skip) if skip else data.dataloader
        else:
            data.dataloader.set_epoch(epoch)
            if skip >= data.batches_per_epoch:
                epoch, skip = epoch + 1, 0
                continue
            loader = accelerator.skip_first_batches(data.dataloader, skip) if skip else data.dataloader
        produced = False
        for offset, batch in enumerate(loader):
            produced = True
            yield epoch, skip + offset, batch
        if not produced and skip == 0:
            raise RuntimeError(f"the dataloader of process {accelerator.process_index} yielded no batch in epoch {epoch}")
        epoch, skip = epoch + 1, 0
