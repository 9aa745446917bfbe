"""train.py: strategies, exact resume, atomic checkpoints, 2 processes, export, push, NaN stop, held-out reconstruction error."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from physiomae.training.checkpoints import list_checkpoints
from physiomae.training.data import held_out_record_rows

NUM_CHANNELS, WINDOW_LENGTH, SAMPLING_RATE = 13, 3000, 100


def synthetic_windows(num_windows: int, seed: int) -> np.ndarray:
    """Windows whose channels share one hidden state (a frequency and amplitude per window), so masked patches
    are predictable from the visible ones and from the other modalities. (num_windows, 13, 3000) float16."""
    random = np.random.default_rng(seed)
    time_axis = np.arange(WINDOW_LENGTH) / SAMPLING_RATE
    frequency = random.uniform(0.3, 3.0, size=(num_windows, 1, 1))
    amplitude = random.uniform(0.5, 1.5, size=(num_windows, 1, 1))
    channel_phase = np.linspace(0, np.pi, NUM_CHANNELS)[None, :, None]
    channel_gain = np.linspace(0.6, 1.4, NUM_CHANNELS)[None, :, None]
    signals = amplitude * channel_gain * np.sin(2 * np.pi * frequency * time_axis[None, None, :] + channel_phase)
    signals += 0.1 * random.standard_normal(signals.shape)
    return signals.astype(np.float16)


def write_tiny_dataset(path, num_pretrain: int = 48, num_probe: int = 8, seed: int = 0, nan_window: int | None = None):
    """A DatasetDict in the builder's row schema and metadata (`helpers.builder_split`) (pretrain / probe_train /
    probe_test) saved with save_to_disk."""
    import datasets

    from helpers import builder_split

    def split(prefix: str, count: int, split_seed: int):
        windows = synthetic_windows(count, split_seed)
        if nan_window is not None and prefix == "te":
            windows[:] = np.nan
        return builder_split({
            "input_values": windows,
            "sleep_stage": [index % 5 for index in range(count)],
            "arousal": [0] * count,
            "age": [50.0] * count,
            "sex": [index % 2 for index in range(count)],
            "record": [f"{prefix}00-{index // 8:04d}" for index in range(count)],
            "window": [index % 8 for index in range(count)],
        })

    dataset = datasets.DatasetDict({
        "pretrain": split("te", num_pretrain, seed),
        "probe_train": split("tr", num_probe, seed + 1),
        "probe_test": split("tr", num_probe, seed + 2),
    })
    dataset.save_to_disk(str(path))
    return Path(path)


# ----------------------------------------------------------------------------------------- helpers
import os  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from helpers import REPO_ROOT, isolated_environment  # noqa: E402

TINY_YAML = str(REPO_ROOT / "configs" / "tiny.yaml")
MAE_STRATEGIES = ("mae_modality_drop", "mae", "mae_unimodal")


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """One intra-op thread: on a shared 2-core machine two threads thrash (10x slower) and timings vary."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory) -> Path:
    return write_tiny_dataset(tmp_path_factory.mktemp("tiny-dataset") / "dataset", num_pretrain=24)


def run_train(arguments: list, hub_api=None):
    """train.main in this process (fresh Accelerate singletons for every run)."""
    from accelerate.state import AcceleratorState, GradientState

    import train

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    return train.main([str(argument) for argument in arguments], hub_api=hub_api)


def base_arguments(dataset: Path, output_dir: Path, *extra) -> list:
    return [TINY_YAML, "--dataset_dir", dataset, "--output_dir", output_dir, "--report_to", "none", "--disable_tqdm",
            "--logging_steps", "1", *extra]


def read_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def export_weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def assert_same_weights(left: dict, right: dict) -> None:
    assert left.keys() == right.keys()
    for name in left:
        assert torch.equal(left[name], right[name]), f"weights differ at {name}"


# ----------------------------------------------------------------------------------------- arguments
def test_yaml_gives_defaults_and_command_line_wins(tmp_path, capsys):
    import train

    model_args, data_args, training_args = train.parse_arguments(
        [TINY_YAML, "--output_dir", str(tmp_path), "--max_steps", "5", "--modalities", "eeg", "ecg", "--dataset_dir", "d"]
    )
    assert model_args.hidden_size == 64 and model_args.num_hidden_layers == 2  # from the YAML
    assert training_args.max_steps == 5 and training_args.output_dir == str(tmp_path)  # command line wins
    assert training_args.modalities == ["eeg", "ecg"]

    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("hidden_size: 32\nnot_a_field: 1\n")
    with pytest.raises(ValueError, match="not_a_field"):
        train.parse_arguments([str(bad_yaml), "--output_dir", str(tmp_path)])
    with pytest.raises(ValueError, match="output_dir"):
        train.parse_arguments([TINY_YAML])
    no_data_yaml = tmp_path / "no-data.yaml"
    no_data_yaml.write_text("hidden_size: 32\n")
    with pytest.raises(ValueError, match="--dataset_dir .* or --data_dir"):
        train.parse_arguments([str(no_data_yaml), "--output_dir", str(tmp_path)])
    with pytest.raises(SystemExit) as exit_info:
        train.parse_arguments(["--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    for flag in ("--strategy", "--resume_from_checkpoint", "--mixed_precision", "--push_to_hub", "--streaming"):
        assert flag in help_text


# ----------------------------------------------------------------------------------------- strategies
@pytest.mark.parametrize(
    "strategy", ["mae_modality_drop", "mae", "contrastive_pairwise", "contrastive_loo", "mae_unimodal"]
)
def test_strategy_trains_and_loss_falls(strategy, tiny_dataset, tmp_path):
    """30 steps on one fixed batch of 8 windows: the mean of the last 3 losses is clearly below the first 3."""
    output_dir = tmp_path / strategy
    extra = ["--modalities", "eeg", "resp"] if strategy == "mae_unimodal" else []
    run_train(base_arguments(tiny_dataset, output_dir, "--strategy", strategy, "--max_steps", 30,
                             "--per_device_batch_size", 8, "--max_train_windows", 8, "--learning_rate", "3e-3",
                             "--warmup_ratio", "0.1", "--save_steps", 0, *extra))
    if strategy == "mae_unimodal":
        runs = {name: output_dir / "unimodal" / name / "train_log.jsonl" for name in ("eeg", "resp")}
        exports = {name: output_dir / "export" / name for name in ("eeg", "resp")}
    else:
        runs, exports = {strategy: output_dir / "train_log.jsonl"}, {strategy: output_dir / "export"}
    for name, log_path in runs.items():
        log = read_log(log_path)
        assert [entry["step"] for entry in log] == list(range(1, 31))
        losses = [entry["loss"] for entry in log]
        assert all(math.isfinite(loss) for loss in losses)
        first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
        assert last < 0.97 * first, f"{name}: loss did not fall ({first:.4f} -> {last:.4f})"
        assert log[-1]["windows_per_s"] > 0 and log[0]["learning_rate"] > 0
        if strategy.startswith("mae"):
            modality_losses = log[-1]["loss_per_modality"]
            expected = [name] if strategy == "mae_unimodal" else ["eeg", "eog", "emg", "resp", "spo2", "ecg"]
            assert list(modality_losses) == expected
            assert all(value is None or value > 0 for value in modality_losses.values())
    for name, folder in exports.items():
        config = json.loads((folder / "config.json").read_text())
        assert "AutoModel" in config["auto_map"]
        card = (folder / "README.md").read_text()  # model_card.md rendered: its sections, no placeholder left
        assert "## Intended use" in card and "## Training data" in card and "{{" not in card
        assert f"train.py --strategy {strategy}" in card
        if strategy == "mae_unimodal":
            assert list(config["modalities"]) == [name]
        if strategy.startswith("contrastive"):
            assert config["fusion"] == "late" and config["contrastive_loss"] == strategy.split("_", 1)[1]
    assert (output_dir / "loss_curves.png").stat().st_size > 1000
    run_args = json.loads((output_dir / "run_args.json").read_text())
    assert run_args["arguments"]["strategy"] == strategy


def test_torch_compile_trains_the_same_steps_as_eager(tiny_dataset, tmp_path, monkeypatch):
    """--torch_compile runs the training forward as one compiled graph (backend aot_eager here: traced forward and
    backward, no code generation, so the test takes seconds) and logs the same losses as the eager run."""
    import torch._dynamo

    import train

    compile_calls = []
    original_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda model, **options: (compile_calls.append(options),
                                                                     original_compile(model, **options))[1])
    logs, weights = {}, {}
    compiled_arguments = ["--torch_compile", "--torch_compile_backend", "aot_eager", "--torch_compile_mode", "default"]
    for name, extra in (("eager", []), ("compiled", compiled_arguments)):
        output_dir = tmp_path / name
        torch._dynamo.reset()
        run_train(base_arguments(tiny_dataset, output_dir, "--max_steps", 4, "--per_device_batch_size", 8,
                                 "--save_steps", 0, *extra))
        logs[name] = read_log(output_dir / "train_log.jsonl")
        weights[name] = export_weights(output_dir / "export")
    assert json.loads((tmp_path / "compiled" / "run_args.json").read_text())["arguments"]["torch_compile"] is True
    assert compile_calls == [{"fullgraph": True, "backend": "aot_eager", "mode": "default"}]  # the compiled run only
    with pytest.raises(SystemExit):  # a mode torch.compile does not have is refused when the arguments are read
        train.parse_arguments([TINY_YAML, "--output_dir", str(tmp_path), "--torch_compile_mode", "fastest"])
    eager_losses = [entry["loss"] for entry in logs["eager"]]
    compiled_losses = [entry["loss"] for entry in logs["compiled"]]
    assert len(eager_losses) == 4
    np.testing.assert_allclose(compiled_losses, eager_losses, rtol=1e-5)
    for key, value in weights["eager"].items():
        torch.testing.assert_close(weights["compiled"][key], value, rtol=1e-4, atol=1e-6, msg=key)


def test_random_init_exports_the_seeded_untrained_model(tmp_path):
    for name, seed in (("first", 3), ("again", 3), ("other", 4)):
        run_train([TINY_YAML, "--strategy", "random_init", "--seed", seed, "--output_dir", tmp_path / name,
                   "--report_to", "none"])
    first, again, other = (export_weights(tmp_path / name / "export") for name in ("first", "again", "other"))
    assert_same_weights(first, again)
    assert any(not torch.equal(first[name], other[name]) for name in first)
    assert not (tmp_path / "first" / "checkpoints").exists()


# ----------------------------------------------------------------------------------------- checkpoints
def resume_arguments(dataset, output_dir, *extra):
    # 12 windows, batch 4 -> 3 batches per epoch; 2 batches per step: steps cross epochs and resume mid-epoch.
    return base_arguments(dataset, output_dir, "--max_steps", 8, "--per_device_batch_size", 4,
                          "--max_train_windows", 12, "--gradient_accumulation_steps", 2, "--save_steps", 2,
                          "--save_total_limit", 2, *extra)


def test_crash_mid_save_then_resume_reproduces_the_uninterrupted_run(tiny_dataset, tmp_path, monkeypatch):
    from accelerate import Accelerator

    import train

    straight = tmp_path / "straight"
    run_train(resume_arguments(tiny_dataset, straight, "--report_to", "tensorboard"))
    straight_log = read_log(straight / "train_log.jsonl")
    assert [entry["step"] for entry in straight_log] == list(range(1, 9))
    assert sorted(path.name for path in (straight / "checkpoints").iterdir()) == ["checkpoint-6", "checkpoint-8"]
    assert list((straight / "tensorboard").rglob("events.out.tfevents*"))

    # Crash while writing checkpoint-6: Accelerate's files are written, trainer_state.json and the rename are not.
    interrupted = tmp_path / "interrupted"
    original_save_state = Accelerator.save_state

    def save_state_then_crash(self, output_dir=None, **kwargs):
        result = original_save_state(self, output_dir, **kwargs)
        if Path(output_dir).name.endswith("-6"):
            raise KeyboardInterrupt("simulated crash mid-save")
        return result

    monkeypatch.setattr(Accelerator, "save_state", save_state_then_crash)
    with pytest.raises(KeyboardInterrupt):
        run_train(resume_arguments(tiny_dataset, interrupted))
    monkeypatch.setattr(Accelerator, "save_state", original_save_state)
    checkpoints = interrupted / "checkpoints"
    assert (checkpoints / ".tmp-checkpoint-6").is_dir()
    assert [path.name for path in list_checkpoints(checkpoints)] == ["checkpoint-2", "checkpoint-4"]
    assert len(read_log(interrupted / "train_log.jsonl")) == 6  # steps 5 and 6 ran past the last good checkpoint

    with pytest.raises(FileExistsError, match="resume_from_checkpoint"):
        run_train(resume_arguments(tiny_dataset, interrupted))
    run_train(resume_arguments(tiny_dataset, interrupted, "--resume_from_checkpoint", "latest"))
    assert not (checkpoints / ".tmp-checkpoint-6").exists()
    resumed_log = read_log(interrupted / "train_log.jsonl")
    assert [entry["step"] for entry in resumed_log] == list(range(1, 9))
    assert [entry["loss"] for entry in resumed_log] == [entry["loss"] for entry in straight_log]
    assert [entry["loss_per_modality"] for entry in resumed_log] == [entry["loss_per_modality"] for entry in straight_log]
    assert_same_weights(export_weights(straight / "export"), export_weights(interrupted / "export"))

    # An explicit checkpoint path works as well (from step 4 again, same result).
    run_train(resume_arguments(tiny_dataset, interrupted, "--resume_from_checkpoint", checkpoints / "checkpoint-6"))
    assert [entry["loss"] for entry in read_log(interrupted / "train_log.jsonl")] == [entry["loss"] for entry in straight_log]

    # Resuming with another model size or strategy is refused before anything is written.
    run_args = (interrupted / "run_args.json").read_bytes()
    with pytest.raises(ValueError, match=r"hidden_size: None -> 48|hidden_size: \d+ -> 48"):
        run_train(resume_arguments(tiny_dataset, interrupted, "--resume_from_checkpoint", "latest", "--hidden_size", 48))
    with pytest.raises(ValueError, match=r"strategy: 'mae_modality_drop' -> 'mae'"):
        run_train(resume_arguments(tiny_dataset, interrupted, "--resume_from_checkpoint", "latest", "--strategy", "mae"))
    assert (interrupted / "run_args.json").read_bytes() == run_args


def test_non_finite_loss_stops_naming_the_step_after_saving_the_last_good_state(tiny_dataset, tmp_path, monkeypatch):
    from modeling_physiomae.modeling_physiomae import PhysioMAEForPreTraining

    import train

    original_forward = PhysioMAEForPreTraining.forward
    calls = {"count": 0}

    def forward_turning_nan(self, *args, **kwargs):
        outputs = original_forward(self, *args, **kwargs)
        calls["count"] += 1
        if calls["count"] >= 3:
            outputs.loss = outputs.loss * float("nan")
        return outputs

    monkeypatch.setattr(PhysioMAEForPreTraining, "forward", forward_turning_nan)
    output_dir = tmp_path / "nan"
    with pytest.raises(train.NonFiniteLossError, match=r"at step 3\b") as error_info:
        run_train(base_arguments(tiny_dataset, output_dir, "--max_steps", 10, "--per_device_batch_size", 4,
                                 "--save_steps", 0))
    assert "checkpoint-2" in str(error_info.value)
    state = json.loads((output_dir / "checkpoints" / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    assert [entry["step"] for entry in read_log(output_dir / "train_log.jsonl")] == [1, 2]


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tiny_dataset, tmp_path):
    output_dir = tmp_path / "signal"
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, str(REPO_ROOT / "train.py"),
               *map(str, base_arguments(tiny_dataset, output_dir, "--max_steps", 100000, "--per_device_batch_size", 2,
                                        "--save_steps", 0))]
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log_path = output_dir / "train_log.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        if log_path.is_file() and len(log_path.read_text().splitlines()) >= 2:
            break
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 143, output[-3000:]
    assert "SIGTERM" in output and "resume_from_checkpoint latest" in output
    assert "Traceback" not in output
    import train

    checkpoints = list_checkpoints(output_dir / "checkpoints")
    assert len(checkpoints) == 1
    state = json.loads((checkpoints[0] / "trainer_state.json").read_text())
    assert state["global_step"] == read_log(log_path)[-1]["step"] >= 2


# ----------------------------------------------------------------------------------------- data
def test_streaming_trains_from_an_iterable_dataset(tiny_dataset, tmp_path):
    output_dir = tmp_path / "streaming"
    run_train(base_arguments(tiny_dataset, output_dir, "--streaming", "--streaming_num_shards", 4, "--max_steps", 4,
                             "--per_device_batch_size", 4, "--shuffle_buffer_size", 8, "--save_steps", 0,
                             "--log_sample_ids"))
    log = read_log(output_dir / "train_log.jsonl")
    assert [entry["step"] for entry in log] == [1, 2, 3, 4] and all(math.isfinite(entry["loss"]) for entry in log)
    steps = [entry for entry in read_log(output_dir / "sample_ids" / "rank_0.jsonl") if "sample_ids" in entry]
    assert all(len(entry["sample_ids"][0]) == 4 for entry in steps)
    assert (output_dir / "export" / "model.safetensors").is_file()


def test_data_dir_is_built_with_the_dataset_builder_first(tmp_path):
    """--data_dir: a raw challenge-layout folder (synthetic cohort) is built into OUTPUT/data, then trained on."""
    from dataset_scripts.synthetic_psg import write_cohort

    cohort = tmp_path / "cohort"
    write_cohort(cohort, n_train=1, n_test=1, hours=0.05, seed=3)
    output_dir = tmp_path / "from-raw"
    run_train([TINY_YAML, "--data_dir", cohort, "--dataset_dir", output_dir / "data" / "dataset",
               "--output_dir", output_dir, "--max_steps", 2,
               "--per_device_batch_size", 2, "--report_to", "none", "--disable_tqdm", "--logging_steps", 1,
               "--save_steps", 0, "--log_sample_ids"])
    assert (output_dir / "data" / "dataset" / "dataset_dict.json").is_file()
    assert (output_dir / "data" / "build_report.json").is_file()
    assert [entry["step"] for entry in read_log(output_dir / "train_log.jsonl")] == [1, 2]
    seen = [sample for entry in read_log(output_dir / "sample_ids" / "rank_0.jsonl") if "sample_ids" in entry
            for batch in entry["sample_ids"] for sample in batch]
    assert seen and all(sample.startswith("te") for sample in seen), seen  # pretraining uses the unlabelled te* records


def test_export_carries_the_preprocessing_the_dataset_was_built_with(tmp_path):
    """A dataset built with other extractor settings (`--feature_extractor`) records them; every export trained on
    it (and random_init given it) saves them as its preprocessor_config.json, restricted to the model's channels."""
    from transformers import AutoFeatureExtractor

    from dataset_scripts import physionet2018
    from dataset_scripts.synthetic_psg import write_cohort

    cohort = tmp_path / "cohort"
    write_cohort(cohort, n_train=1, n_test=1, hours=0.05, seed=3)
    settings = {"clip_value": 7.5, "filter_order": 3, "min_distinct_values": 4}
    with pytest.raises(ValueError, match="neither a preprocessor_config.json"):
        physionet2018.read_extractor_settings("clip_value=7.5")
    assert physionet2018.main(["build", "--data_dir", str(cohort), "--output_dir", str(tmp_path / "built"),
                               "--feature_extractor", json.dumps(settings)]) == 0
    for strategy, extra in (("mae", ["--max_steps", 1]), ("random_init", [])):
        output_dir = tmp_path / strategy
        run_train([TINY_YAML, "--strategy", strategy, "--dataset_dir", tmp_path / "built", "--output_dir", output_dir,
                   "--per_device_batch_size", 2, "--report_to", "none", "--disable_tqdm", "--save_steps", 0,
                   "--modalities", "eeg", "ecg", *extra])
        saved = json.loads((output_dir / "export" / "preprocessor_config.json").read_text())
        assert {key: saved[key] for key in settings} == settings, strategy
        assert dict(saved["modalities"]) == json.loads((output_dir / "export" / "config.json").read_text())["modalities"]
        assert AutoFeatureExtractor.from_pretrained(output_dir / "export", trust_remote_code=True).clip_value == 7.5


def torchrun_train(arguments: list) -> None:
    """train.py in 2 CPU processes (`ACCELERATE_USE_CPU=true torchrun --nproc_per_node 2`); fails with its output."""
    # no OMP_NUM_THREADS: train.py itself gives each of the 2 processes its share of the cores
    environment = {**{key: value for key, value in os.environ.items() if key != "OMP_NUM_THREADS"},
                   "ACCELERATE_USE_CPU": "true", "PYTHONPATH": str(REPO_ROOT)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(REPO_ROOT / "train.py"), *map(str, arguments)]
    result = subprocess.run(command, cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]


@pytest.mark.parametrize("data_path", [(), ("--windows_on_device",)], ids=["arrow", "windows_on_device"])
def test_two_processes_with_torchrun_share_weights_and_split_the_data(tiny_dataset, tmp_path, data_path):
    output_dir = tmp_path / "ddp"
    torchrun_train(base_arguments(tiny_dataset, output_dir, "--max_steps", 3, "--per_device_batch_size", 4,
                                  "--save_steps", 0, "--log_sample_ids", "--reconstruction_eval_fraction", 0.5,
                                  "--reconstruction_eval_steps", 2, *data_path))

    cores = len(os.sched_getaffinity(0))
    assert json.loads((output_dir / "run_args.json").read_text())["intra_op_threads"] == max(1, cores // 2)
    per_rank = {rank: read_log(output_dir / "sample_ids" / f"rank_{rank}.jsonl") for rank in (0, 1)}
    checksums = {rank: [entry["parameter_checksum"] for entry in entries if "parameter_checksum" in entry] for rank, entries in per_rank.items()}
    assert len(checksums[0]) == 1 and checksums[0] == checksums[1], "the two ranks ended with different weights"
    steps = {rank: [entry for entry in entries if "sample_ids" in entry] for rank, entries in per_rank.items()}
    assert [entry["step"] for entry in steps[0]] == [entry["step"] for entry in steps[1]] == [1, 2, 3]
    for step_rank0, step_rank1 in zip(steps[0], steps[1]):
        ids_rank0 = {sample for batch in step_rank0["sample_ids"] for sample in batch}
        ids_rank1 = {sample for batch in step_rank1["sample_ids"] for sample in batch}
        assert len(ids_rank0) == len(ids_rank1) == 4
        assert not ids_rank0 & ids_rank1, f"both ranks trained on {ids_rank0 & ids_rank1} at step {step_rank0['step']}"
        assert {sample.split(":")[0] for sample in ids_rank0 | ids_rank1} == {"te00-0002"}  # the others are held out
    log = read_log(output_dir / "train_log.jsonl")
    assert len(log) == 3 and json.loads((output_dir / "run_args.json").read_text())["num_processes"] == 2
    # the main process alone evaluates the held-out records (no collective): no hang, one result
    assert [entry["step"] for entry in log if "relative_reconstruction_error" in entry] == [2, 3]
    assert json.loads((output_dir / "reconstruction_eval.json").read_text())["step"] == 3
    assert (output_dir / "export" / "model.safetensors").is_file()


# ----------------------------------------------------------------------------------------- export and push
LOAD_SCRIPT = r"""
import json, sys
sys.modules["modeling_physiomae"] = None  # our package must not be importable here: only the Hub copy
sys.modules["dataset_scripts"] = None
import torch
from transformers import AutoFeatureExtractor, AutoModel
folder, inputs_path, output_path = sys.argv[1:4]
model, info = AutoModel.from_pretrained(folder, trust_remote_code=True, output_loading_info=True)
extractor = AutoFeatureExtractor.from_pretrained(folder, trust_remote_code=True)
inputs = torch.load(inputs_path)
with torch.no_grad():
    pooled = model(input_values=inputs["input_values"], modality_mask=inputs["modality_mask"]).pooler_output
torch.save(pooled, output_path)
print(json.dumps({"model_module": type(model).__module__, "extractor_module": type(extractor).__module__,
                  "missing": list(info["missing_keys"]), "modalities": list(model.config.modalities)}))
"""


def test_export_loads_with_trust_remote_code_in_a_fresh_process(tiny_dataset, tmp_path):
    from modeling_physiomae import PhysioMAEModel

    output_dir = tmp_path / "trained"
    run_train(base_arguments(tiny_dataset, output_dir, "--max_steps", 3, "--per_device_batch_size", 4,
                             "--save_steps", 0))
    folder = output_dir / "export"
    inputs = {"input_values": torch.from_numpy(synthetic_windows(2, seed=9).astype(np.float32)),
              "modality_mask": torch.tensor([[True] * 6, [True, True, False, True, True, True]])}
    torch.save(inputs, tmp_path / "inputs.pt")
    with torch.no_grad():
        expected = PhysioMAEModel.from_pretrained(str(folder)).eval()(**inputs).pooler_output

    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    environment = isolated_environment(tmp_path / "fresh-hf-home", OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, "-c", LOAD_SCRIPT, str(folder), str(tmp_path / "inputs.pt"),
                             str(tmp_path / "pooled.pt")], cwd=workdir, env=environment, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["model_module"].startswith("transformers_modules"), report
    assert report["extractor_module"].startswith("transformers_modules"), report
    assert report["missing"] == [] and len(report["modalities"]) == 6
    torch.testing.assert_close(torch.load(tmp_path / "pooled.pt"), expected)


class FakeHfApi:
    """Records the calls train.py makes through huggingface_hub.HfApi."""

    def __init__(self):
        self.calls = []

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, repo_id, folder_path, **kwargs):
        self.calls.append(("upload_folder", repo_id, {"folder_path": folder_path,
                                                      "files": sorted(os.listdir(folder_path)), **kwargs}))
        return f"https://huggingface.co/{repo_id}/commit/0"


def test_push_to_hub_goes_through_hf_api_and_offline_fails_after_export(tmp_path):
    import train

    api = FakeHfApi()
    output_dir = tmp_path / "pushed"
    run_train([TINY_YAML, "--strategy", "random_init", "--output_dir", output_dir, "--report_to", "none",
               "--push_to_hub", "--hub_model_id", "physiomae-org/tiny-random", "--hub_private"], hub_api=api)
    assert [call[0] for call in api.calls] == ["create_repo", "upload_folder"]
    create, upload = api.calls
    assert create[1] == upload[1] == "physiomae-org/tiny-random" and create[2].get("private") is True
    assert Path(upload[2]["folder_path"]).resolve() == (output_dir / "export").resolve()
    for name in ("config.json", "model.safetensors", "preprocessor_config.json", "README.md",
                 "modeling_physiomae.py", "configuration_physiomae.py", "feature_extraction_physiomae.py"):
        assert name in upload[2]["files"]

    offline_dir = tmp_path / "offline"
    assert os.environ.get("HF_HUB_OFFLINE") == "1"  # set by conftest
    with pytest.raises(train.PushToHubError, match="export in .* is complete") as error_info:
        run_train([TINY_YAML, "--strategy", "random_init", "--output_dir", offline_dir, "--report_to", "none",
                   "--push_to_hub", "--hub_model_id", "physiomae-org/tiny-random"])
    assert "HF_HUB_OFFLINE" in str(error_info.value)
    assert (offline_dir / "export" / "model.safetensors").is_file()
    assert (offline_dir / "export" / "config.json").is_file()


# ----------------------------------------------------------------------------------------- reconstruction quality
def test_model_arguments_pass_decoder_and_target_through_and_held_out_records_follow_the_hash(tiny_dataset, tmp_path):
    import datasets

    import train

    model_args, _, training_args = train.parse_arguments(
        [TINY_YAML, "--output_dir", str(tmp_path), "--dataset_dir", "d", "--strategy", "mae",
         "--decoder_type", "cross_attention", "--reconstruction_target", "log_band_power"])
    config = train.build_model_config(model_args, training_args)
    assert config.decoder_type == "cross_attention" and config.reconstruction_target == "log_band_power"
    from modeling_physiomae import PhysioMAEConfig

    kept = train.build_model_config(train.ModelArguments(), train.PretrainingArguments(output_dir=str(tmp_path)))
    assert (kept.decoder_type, kept.reconstruction_target) == (PhysioMAEConfig().decoder_type,
                                                                PhysioMAEConfig().reconstruction_target)

    pretrain = datasets.load_from_disk(str(tiny_dataset))["pretrain"]  # records te00-0000 .. te00-0002
    held_rows, num_records, why = held_out_record_rows(pretrain, 0.5)  # sha1 share of 0000, 0001: ~0.17
    assert num_records == 2 and why == ""
    assert sorted(set(np.asarray(pretrain["record"])[held_rows])) == ["te00-0000", "te00-0001"]
    for fraction, reason in ((0.1, "no record"), (0.99, "every record"), (0.0, "is 0")):
        held_rows, num_records, why = held_out_record_rows(pretrain, fraction)
        assert held_rows is None and num_records == 0 and reason in why
    with pytest.raises(ValueError, match="reconstruction_eval_fraction"):
        train.parse_arguments([TINY_YAML, "--output_dir", str(tmp_path), "--dataset_dir", "d",
                               "--reconstruction_eval_fraction", "1.0"])


@pytest.fixture(scope="module")
def spo2_absent_in_held_out_dataset(tiny_dataset, tmp_path_factory) -> Path:
    """The tiny dataset with SpO2 absent from te00-0000 and te00-0001 (held out at fraction 0.5), present in te00-0002."""
    import datasets

    loaded = datasets.load_from_disk(str(tiny_dataset))
    spo2_channel = 11

    def drop_spo2(row):
        if row["record"] != "te00-0002":
            row["modality_mask"] = [index != 4 for index in range(6)]
            row["channel_mask"] = [index != spo2_channel for index in range(NUM_CHANNELS)]
        return row

    folder = tmp_path_factory.mktemp("spo2-absent") / "dataset"
    datasets.DatasetDict({**loaded, "pretrain": loaded["pretrain"].map(drop_spo2)}).save_to_disk(str(folder))
    return folder


def held_out_arguments(dataset, output_dir, *extra):
    return base_arguments(dataset, output_dir, "--max_steps", 4, "--per_device_batch_size", 4,
                          "--reconstruction_eval_fraction", 0.5, "--reconstruction_eval_steps", 2, *extra)


def test_reconstruction_error_on_held_out_records_is_logged_written_and_restored_on_resume(
        spo2_absent_in_held_out_dataset, tmp_path, monkeypatch):
    import train

    output_dir = tmp_path / "held-out"
    run_train(held_out_arguments(spo2_absent_in_held_out_dataset, output_dir, "--save_steps", 2, "--log_sample_ids"))
    log = read_log(output_dir / "train_log.jsonl")
    assert [entry["step"] for entry in log] == [1, 2, 3, 4]
    evaluated = {entry["step"]: entry for entry in log if "relative_reconstruction_error" in entry}
    assert list(evaluated) == [2, 4]  # every 2 steps and at the last
    for entry in evaluated.values():
        errors = entry["relative_reconstruction_error"]
        assert list(errors) == ["eeg", "eog", "emg", "resp", "spo2", "ecg"]
        assert errors["spo2"] is None  # absent from every held-out window
        present = [value for name, value in errors.items() if name != "spo2"]
        assert all(math.isfinite(value) and value > 0 for value in present)
        assert entry["relative_reconstruction_error_mean"] == pytest.approx(sum(present) / len(present))

    # the held-out records never reach the training stream
    trained = {sample.split(":")[0] for entry in read_log(output_dir / "sample_ids" / "rank_0.jsonl")
               if "sample_ids" in entry for batch in entry["sample_ids"] for sample in batch}
    assert trained == {"te00-0002"}

    result = json.loads((output_dir / "reconstruction_eval.json").read_text())
    assert result["step"] == 4 and result["strategy"] == "mae_modality_drop"
    assert result["relative_reconstruction_error"] == evaluated[4]["relative_reconstruction_error"]
    assert result["held_out"]["records"] == 2 and result["held_out"]["windows_scored"] == 16
    assert result["target_statistics_windows"] == 8
    assert "relative reconstruction error" in (output_dir / "export" / "README.md").read_text()
    assert (output_dir / "loss_curves.png").stat().st_size > 1000

    # Resume at step 2: the target statistics come from the checkpoint (not recomputed) and the step-4
    # evaluation (same held-out windows, same masks) repeats the uninterrupted run's numbers exactly.
    calls = []
    original = train.PretrainingRun.set_target_statistics
    monkeypatch.setattr(train.PretrainingRun, "set_target_statistics",
                        lambda self: (calls.append(self.global_step), original(self)))
    run_train(held_out_arguments(spo2_absent_in_held_out_dataset, output_dir, "--save_steps", 2,
                                 "--resume_from_checkpoint", output_dir / "checkpoints" / "checkpoint-2"))
    assert calls == []
    resumed = {entry["step"]: entry for entry in read_log(output_dir / "train_log.jsonl")
               if "relative_reconstruction_error" in entry}
    assert resumed[4]["relative_reconstruction_error"] == evaluated[4]["relative_reconstruction_error"]
    assert json.loads((output_dir / "reconstruction_eval.json").read_text())["relative_reconstruction_error"] == \
        result["relative_reconstruction_error"]


def test_unimodal_runs_each_measure_their_own_modality(tiny_dataset, tmp_path):
    output_dir = tmp_path / "unimodal"
    run_train(held_out_arguments(tiny_dataset, output_dir, "--strategy", "mae_unimodal", "--modalities", "eeg", "ecg",
                                 "--max_steps", 2, "--save_steps", 0))
    combined = json.loads((output_dir / "reconstruction_eval.json").read_text())
    assert set(combined["runs"]) == {"eeg", "ecg"}
    for modality in ("eeg", "ecg"):
        run = json.loads((output_dir / "unimodal" / modality / "reconstruction_eval.json").read_text())
        assert list(run["relative_reconstruction_error"]) == [modality]
        value = run["relative_reconstruction_error"][modality]
        assert math.isfinite(value) and value > 0
        assert combined["relative_reconstruction_error"][modality] == value
        last = read_log(output_dir / "unimodal" / modality / "train_log.jsonl")[-1]
        assert last["relative_reconstruction_error"] == {modality: value}


def test_contrastive_runs_hold_nothing_out(tiny_dataset, tmp_path):
    output_dir = tmp_path / "contrastive"
    run_train(held_out_arguments(tiny_dataset, output_dir, "--strategy", "contrastive_pairwise", "--max_steps", 6,
                                 "--save_steps", 0, "--log_sample_ids"))
    assert not (output_dir / "reconstruction_eval.json").exists()
    assert "relative_reconstruction_error" not in read_log(output_dir / "train_log.jsonl")[-1]
    trained = {sample.split(":")[0] for entry in read_log(output_dir / "sample_ids" / "rank_0.jsonl")
               if "sample_ids" in entry for batch in entry["sample_ids"] for sample in batch}
    assert trained == {"te00-0000", "te00-0001", "te00-0002"}  # 6 batches of 4 = the whole epoch, nothing held out


@pytest.fixture(scope="module")
def learnable_dataset(tmp_path_factory) -> Path:
    """96 pretraining windows of 12 records; at fraction 0.1, te00-0006 is held out."""
    return write_tiny_dataset(tmp_path_factory.mktemp("learnable-dataset") / "dataset", num_pretrain=96)


def test_held_out_reconstruction_error_falls_below_one(learnable_dataset, tmp_path):
    """200 steps of the tiny MAE on windows whose masked patches are predictable (one sinusoid per window): the
    held-out relative error of the log band powers must end clearly below 1 (= predicting the training mean)."""
    output_dir = tmp_path / "learns"
    run_train(base_arguments(learnable_dataset, output_dir, "--strategy", "mae", "--max_steps", 200,
                             "--per_device_batch_size", 8, "--learning_rate", "2e-3", "--reconstruction_target",
                             "log_band_power", "--reconstruction_eval_fraction", 0.1, "--reconstruction_eval_steps", 50,
                             "--logging_steps", 50, "--save_steps", 0))
    result = json.loads((output_dir / "reconstruction_eval.json").read_text())
    errors = result["relative_reconstruction_error"]
    assert result["held_out"]["records"] == 1 and all(value is not None for value in errors.values())
    assert result["relative_reconstruction_error_mean"] < 0.95, errors
    assert max(errors.values()) < 1.0, errors


def test_intra_op_threads_share_the_cores_among_the_processes_on_the_machine(monkeypatch):
    from physiomae.training.run_setup import intra_op_threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    assert intra_op_threads(None, 1) == 8 and intra_op_threads(None, 2) == 4 and intra_op_threads(None, 16) == 1
    assert intra_op_threads(3, 2) == 3  # --num_threads wins
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert intra_op_threads(None, 1) == 2  # then OMP_NUM_THREADS
    with pytest.raises(ValueError, match="--num_threads must be >= 1"):
        run_train([TINY_YAML, "--strategy", "random_init", "--output_dir", "unused", "--num_threads", "0"])


# ----------------------------------------------------------------------------------------- packaged GPU configs
TRAINING_CONFIGS = ("tiny", "base", "release_train", "release_base_train", "real_segments_train", "full_gpu",
                    "full_multi_gpu")
GPU_CONFIG_PROCESSES = {"full_gpu": 1, "full_multi_gpu": 8}  # the launch lines in the configs' headers
SMALL_MODEL = ("--hidden_size", 32, "--num_hidden_layers", 1, "--num_attention_heads", 2, "--intermediate_size", 64,
               "--decoder_hidden_size", 16, "--decoder_num_hidden_layers", 1, "--decoder_num_attention_heads", 2)


@pytest.mark.parametrize("name", TRAINING_CONFIGS)
def test_packaged_training_configs_parse(name, tmp_path):
    import train
    from physiomae.config_files import resolve_config

    model_args, _, training_args = train.parse_arguments(
        [resolve_config(name), "--output_dir", str(tmp_path), "--dataset_dir", str(tmp_path)])
    assert train.build_model_config(model_args, training_args).hidden_size == model_args.hidden_size


@pytest.mark.parametrize("name", sorted(GPU_CONFIG_PROCESSES))
def test_gpu_configs_scale_the_learning_rate_with_the_square_root_of_the_global_batch(name, tmp_path):
    """The documented rule (docs/training.md#gpu): lr = 5e-4 * sqrt(global batch / 256), from configs/base.yaml."""
    import train

    reference_args = train.parse_arguments([str(REPO_ROOT / "configs" / "base.yaml"), "--output_dir", str(tmp_path)])[2]
    _, data_args, training_args = train.parse_arguments([str(REPO_ROOT / "configs" / f"{name}.yaml"), "--output_dir",
                                                         str(tmp_path)])
    global_batch = training_args.per_device_batch_size * GPU_CONFIG_PROCESSES[name]
    expected = reference_args.learning_rate * (global_batch / reference_args.per_device_batch_size) ** 0.5
    assert training_args.learning_rate == pytest.approx(expected, rel=1e-6)
    assert training_args.mixed_precision == "bf16" and data_args.num_workers > 0
    assert not data_args.streaming or training_args.max_steps > 0  # streaming has no epoch length


@pytest.mark.parametrize("name", sorted(GPU_CONFIG_PROCESSES))
def test_gpu_configs_start_on_the_cpu(name, tiny_dataset, tmp_path):
    """Two steps of each GPU config with a small model, fp32 and no workers: the config's other settings (streaming,
    drop_last, evaluation steps) run as written."""
    output_dir = tmp_path / name
    run_train([str(REPO_ROOT / "configs" / f"{name}.yaml"), "--dataset_dir", tiny_dataset, "--output_dir", output_dir,
               "--report_to", "none", "--disable_tqdm", *SMALL_MODEL, "--max_steps", 2, "--per_device_batch_size", 4,
               "--mixed_precision", "no", "--num_workers", 0])
    assert [entry["step"] for entry in read_log(output_dir / "train_log.jsonl")] == [1, 2]
    assert (output_dir / "export" / "model.safetensors").is_file()
