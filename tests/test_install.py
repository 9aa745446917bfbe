"""A real non-editable install: the wheel into a fresh venv, then the console scripts from a folder outside the
checkout (tiny build, a few training steps, eval with classifier export). The fresh venv reuses the test venv's
third-party packages through a path entry (no network), but our packages come only from the wheel."""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
OUR_TOP_LEVEL = ("modeling_physiomae", "physiomae", "dataset_scripts")
NOT_INSTALLED = ("train", "eval", "run_experiment", "finetune")  # the checkout's scripts are physiomae.cli's


def run(command: list[str], cwd: Path, env: dict[str, str], timeout: int = 600) -> str:
    completed = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert completed.returncode == 0, f"{command} failed ({completed.returncode}):\n{completed.stdout[-3000:]}\n{completed.stderr[-5000:]}"
    return completed.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    work = tmp_path_factory.mktemp("install")
    wheel_dir = work / "wheel"
    # built from a copy of the sources: setuptools reuses a build/ folder it finds, so a stale one in the checkout
    # (from an older layout) would slip files into the wheel
    source = work / "source"
    shutil.copytree(ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "outputs", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheel_dir),
                    str(source)], check=True, capture_output=True, timeout=600)
    wheel = next(wheel_dir.glob("physiomae-*.whl"))
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    venv_site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                    check=True, capture_output=True, text=True).stdout.strip())
    # Third-party packages from the test venv; a plain path entry, so its editable-install hooks are not run.
    (venv_site / "test-venv-packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True,
                   capture_output=True, timeout=600)
    outside = work / "elsewhere"
    outside.mkdir()
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH",)}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(work / "hf_home"), OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "1"),
               PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}")
    return venv, outside, env


def test_our_packages_come_from_the_wheel(installed):
    venv, outside, env = installed
    # where each top-level module would be imported from (find_spec locates without running the module)
    code = "import importlib.util, json; print(json.dumps({n: importlib.util.find_spec(n).origin for n in %r}))" % (OUR_TOP_LEVEL,)
    locations = json.loads(run([str(venv / "bin" / "python"), "-c", code], outside, env))
    for name, location in locations.items():
        assert str(ROOT) not in location and str(venv) in location, f"{name} imported from {location}, not the wheel"
    # no top-level module that another project's `import train` / `import eval` would collide with
    code = "import importlib.util, json; print(json.dumps([n for n in %r if importlib.util.find_spec(n)]))" % (NOT_INSTALLED,)
    assert json.loads(run([str(venv / "bin" / "python"), "-c", code], outside, env)) == []


def test_console_scripts_build_train_eval_from_outside_the_checkout(installed):
    venv, outside, env = installed
    python = str(venv / "bin" / "python")
    run([python, "-m", "dataset_scripts.synthetic_psg", "--out", "cohort", "--train", "4", "--test", "2", "--hours", "0.1",
         "--quiet"], outside, env)
    run(["physiomae-build", "build", "--data_dir", "cohort", "--output_dir", "data"], outside, env)
    run(["physiomae-train", "tiny", "--dataset_dir", "data", "--output_dir", "run", "--max_steps", "3",
         "--per_device_batch_size", "4", "--save_steps", "0", "--logging_steps", "1", "--report_to", "none",
         "--disable_tqdm", "--reconstruction_eval_fraction", "0"], outside, env)
    assert (outside / "run" / "export" / "README.md").is_file()
    card = (outside / "run" / "export" / "README.md").read_text()
    assert "## Intended use" in card and "## Limitations" in card and "{{" not in card, "the export card is not the packaged model_card.md rendered"
    run(["physiomae-eval", "eval_tiny", "--dataset_dir", "data", "--checkpoints", "run", "--output_dir", "eval",
         "--tasks", "sleep_staging", "--bootstrap_resamples", "0", "--robustness", "false", "--analyses", "false",
         "--cv_folds", "2"], outside, env)
    assert (outside / "eval" / "comparison.md").is_file()
    exported = sorted(path.name for path in (outside / "eval").rglob("config.json"))
    assert exported, "eval exported no classifier"

    # eval's exported sleep-staging classifier stages a night of the cohort through physiomae-stage
    stager = next(path.parent for path in (outside / "eval").rglob("config.json") if path.parent.name.endswith("sleep-staging"))
    record = sorted((outside / "cohort" / "training").glob("tr*"))[0]
    printed = run(["physiomae-stage", str(record / record.name), "--model", str(stager), "--out", "night.csv",
                   "--no_progress"], outside, env)
    assert "minutes per stage" in printed and (outside / "night.png").is_file()
    rows = (outside / "night.csv").read_text().splitlines()
    assert rows[0].startswith("onset_seconds,stage,p_W") and len(rows) > 2


def test_shipped_models_load_and_stage_from_the_installed_package(installed, real_segments_dir):
    """The models shipped in the wheel: AutoModel from physiomae.pretrained.ENCODER (the folder's own code, in a
    fresh process), and physiomae-stage without --model stages a real excerpt as the stager's card records."""
    venv, outside, env = installed
    code = ("import json; from transformers import AutoModel; from physiomae.pretrained import ENCODER, SLEEP_STAGER; "
            "model = AutoModel.from_pretrained(ENCODER, trust_remote_code=True); "
            "print(json.dumps({'encoder': ENCODER, 'stager': SLEEP_STAGER, 'class': type(model).__name__, "
            "'module': type(model).__module__, "
            "'parameters': sum(p.numel() for p in model.parameters())}))")
    loaded = json.loads(run([str(venv / "bin" / "python"), "-c", code], outside, env).strip().splitlines()[-1])
    assert loaded["class"] == "PhysioMAEModel" and loaded["parameters"] > 0
    assert loaded["module"].startswith("transformers_modules"), f"not the folder's own code: {loaded['module']}"
    for key in ("encoder", "stager"):
        assert str(venv) in loaded[key] and str(ROOT) not in loaded[key], f"{key} not installed from the wheel: {loaded[key]}"

    from physiomae.release import parse_reference_rows

    reference = parse_reference_rows((Path(loaded["stager"]) / "README.md").read_text())
    name, expected = next(iter(reference.items()))
    record = outside / "real" / name
    record.parent.mkdir(exist_ok=True)
    shutil.copytree(real_segments_dir / name, record)
    run(["physiomae-stage", str(record / name), "--out", "real.csv", "--no_progress"], outside, env)
    rows = (outside / "real.csv").read_text().splitlines()
    assert rows[0] == "onset_seconds,stage,p_W,p_N1,p_N2,p_N3,p_REM"
    assert [row.split(",")[1] for row in rows[1:]] == [row["stage"] for row in expected]
    staged = [[float(value) for value in row.split(",")[2:]] for row in rows[1:]]
    recorded = [[row["probabilities"][stage] for stage in ("W", "N1", "N2", "N3", "REM")] for row in expected]
    assert np.allclose(staged, recorded, atol=2e-4)
