#!/usr/bin/env bash
# The GPU check: run it first whenever a GPU is lent. On a bare machine it installs what is missing (the wheels of
# benchmarks/fetch_gpu_wheels.sh), prints the device and versions, measures the device's dense matmul rate, runs the
# pretraining throughput benchmarks (PhysioMAE beside PatchTST, tiny and base, fp32 and bf16, a batch sweep for
# base) and train.py end to end on a synthetic dataset (eager, with the windows held on the GPU, and with
# --torch_compile), and writes every result
# file (6 files) into ${OUT:-benchmarks/gpu_results}, judged against the targets (gpu_check_summary.py). Every
# stage has its own time budget and the whole check stops within GPU_CHECK_BUDGET_S (480 s); a stage that fails or
# runs out of time loses only its own numbers.
#
# Here, once:   bash benchmarks/fetch_gpu_wheels.sh
# Then the device tool's call (the machine's start, ~1-2 min, comes on top of the 8 minutes):
#   run(command="bash benchmarks/gpu_check.sh", carry=[".whl"], timeout_s=560)
# The files come back under the reply's files_at: gpu_check.md (targets, verdicts, stages, environment),
# gpu_check.json (every number), gpu_check.log (the whole output), and results_pretraining_vs_patchtst_gpu.{json,md}
# and results_train_gpu.json to copy into benchmarks/ (then: python benchmarks/bench_train.py --render_only).
#
# Smoke run on the CPU (tiny size, few steps, the .venv's python, no installs; proves the script end to end):
#   GPU_CHECK_SMOKE=1 OMP_NUM_THREADS=1 bash benchmarks/gpu_check.sh
# GPU_CHECK_SMOKE_COMPILE=1 adds the --torch_compile stage to the smoke run (minutes on a small CPU).
# Other knobs: GPU_CHECK_BUDGET_S (total seconds), GPU_CHECK_WORKERS (DataLoader workers of train.py, default 12),
# PYTHON (the interpreter).
set -uo pipefail
cd "$(dirname "$0")/.."

SMOKE=${GPU_CHECK_SMOKE:-0}
OUT_DIR=${OUT:-benchmarks/gpu_results}
BUDGET_S=${GPU_CHECK_BUDGET_S:-480}
SUMMARY_RESERVE_S=25
WORKERS=${GPU_CHECK_WORKERS:-12}
if [[ "$SMOKE" == 1 ]]; then
    PYTHON=${PYTHON:-$( [[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python3 )}
    BUDGET_S=${GPU_CHECK_BUDGET_S:-900}
else
    PYTHON=${PYTHON:-python3}
fi
WORK=$(mktemp -d /tmp/gpu_check.XXXXXX)
mkdir -p "$OUT_DIR"
LOG="$OUT_DIR/gpu_check.log"
: >"$LOG"
exec > >(tee -a "$LOG") 2>&1
TEE_PID=$!
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
START=$SECONDS

# stage NAME BUDGET_S COMMAND...: run COMMAND (a program or an exported function of this script) under `timeout`
# (its budget, or what is left of the total less the summary's reserve), log its exit code and seconds to
# $WORK/stages.tsv; never stops the script.
stage() {
    local name=$1 budget=$2; shift 2
    local left=$((BUDGET_S - (SECONDS - START) - SUMMARY_RESERVE_S))
    ((budget > left)) && budget=$left
    if ((budget < 10)); then
        echo "=== [$name] skipped: ${left} s of the check's ${BUDGET_S} s left"
        printf '%s\tskipped\t0\t%s\n' "$name" "$budget" >>"$WORK/stages.tsv"
        return 0
    fi
    echo "=== [$name] budget ${budget} s, at $((SECONDS - START)) s: $*"
    local began=$SECONDS
    timeout --signal=TERM --kill-after=15 "$budget" bash -c '"$@"' stage "$@"
    local code=$?
    echo "=== [$name] exit code ${code} after $((SECONDS - began)) s"
    printf '%s\t%s\t%s\t%s\n' "$name" "$code" "$((SECONDS - began))" "$budget" >>"$WORK/stages.tsv"
    return 0
}

install_wheels() {
    if [[ "$SMOKE" == 1 ]]; then echo "smoke run: using $PYTHON's packages"; return 0; fi
    if ! ls .whl/*.whl >/dev/null 2>&1; then echo "no .whl/*.whl (run benchmarks/fetch_gpu_wheels.sh here, carry .whl)"; return 1; fi
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
}

environment() {
    {
        date -u "+%Y-%m-%d %H:%M UTC"
        uname -srm
        echo "cpus: $(nproc --all)"
        command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm,power.limit --format=csv
        "$PYTHON" - <<'PY'
import importlib, platform, torch
print("python", platform.python_version(), "| torch", torch.__version__, "| cuda", torch.version.cuda,
      "| cuda available", torch.cuda.is_available())
if torch.cuda.is_available():
    properties = torch.cuda.get_device_properties(0)
    print("device", properties.name, f"| {properties.total_memory / 2**30:.0f} GiB | {properties.multi_processor_count} SMs",
          f"| capability {properties.major}.{properties.minor}")
for name in ("transformers", "accelerate", "datasets", "pyarrow", "fsspec", "huggingface_hub", "numpy", "scipy",
             "sklearn", "wfdb", "edfio", "evaluate", "triton"):
    try:
        print(f"{name} {importlib.import_module(name).__version__}")
    except Exception as error:  # a missing or broken package is named, not fatal
        print(f"{name}: NOT IMPORTABLE ({type(error).__name__}: {error})")
PY
    } | tee "$WORK/environment.txt"
}

export SMOKE PYTHON WORK
export -f install_wheels environment
echo "GPU check: smoke=${SMOKE}, python=${PYTHON}, budget ${BUDGET_S} s, results in ${OUT_DIR}, work folder ${WORK}"
stage install 60 install_wheels
[[ "$SMOKE" == 1 ]] || export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
stage environment 45 environment

if [[ "$SMOKE" == 1 ]]; then
    PEAK_ARGS=(--device cpu --size 256 --precisions fp32 --repeats 3)
    COMMON=(--device cpu --sizes tiny --precisions fp32 --steps 2 --warmup 1 --threads 1)
    SWEEP=(--device cpu --sizes tiny --precisions fp32 --batch-sizes 4 --steps 2 --warmup 1 --threads 1)
    TRAIN=(--device cpu --precisions no --batch_sizes tiny=8 --steps 3 --warmup 1 --threads 1 --pipeline_workers 0
           --pipeline_steps 4 --pipeline_sizes tiny)
    STEP_SIZES=(tiny)
else
    PEAK_ARGS=(--device cuda)
    COMMON=(--device cuda --sizes tiny base --batch-sizes 256 --precisions fp32 bf16 --steps 10 --warmup 3)
    SWEEP=(--device cuda --sizes base --batch-sizes 16 1024 --precisions bf16 --steps 10 --warmup 3)
    TRAIN=(--device cuda --precisions bf16 --batch_sizes tiny=256,base=1024 --steps 20 --warmup 3
           --pipeline_workers "$WORKERS" --pipeline_steps 32 --pipeline_sizes base tiny)
    STEP_SIZES=(tiny base)
fi

stage matmul_peak 45 "$PYTHON" benchmarks/gpu_matmul_peak.py "${PEAK_ARGS[@]}" --out "$WORK/peak.json"
PEAK_FLOPS=$("$PYTHON" -c "import json, sys; rows = json.load(open(sys.argv[1]))['results']; \
print(next((r['flops_per_s'] for r in rows if r['precision'] == 'bf16' and r['correct']), rows[0]['flops_per_s']))" \
    "$WORK/peak.json" 2>/dev/null || echo 7.9e14)
echo "device peak used for the FLOP shares: ${PEAK_FLOPS} FLOP/s"
stage patchtst_batch256 150 "$PYTHON" benchmarks/bench_pretraining_vs_patchtst.py "${COMMON[@]}" --skip-counts \
    --skip-data --skip-embedding --peak-flops "$PEAK_FLOPS" --out "$WORK/patchtst_1_batch256.json"
stage train_eager 200 "$PYTHON" benchmarks/bench_train.py --tag gpu --sizes "${STEP_SIZES[@]}" "${TRAIN[@]}" --pipeline \
    --pipeline_modes eager on_device --pipeline_workdir "$WORK/train" --results_dir "$WORK"
stage patchtst_sweep 90 "$PYTHON" benchmarks/bench_pretraining_vs_patchtst.py "${SWEEP[@]}" --skip-counts \
    --skip-data --skip-embedding --peak-flops "$PEAK_FLOPS" --out "$WORK/patchtst_2_sweep.json"
if [[ "$SMOKE" != 1 || "${GPU_CHECK_SMOKE_COMPILE:-0}" == 1 ]]; then
    stage train_compiled 240 "$PYTHON" benchmarks/bench_train.py --tag gpu_compiled --sizes "${TRAIN[@]}" --pipeline \
        --pipeline_modes compiled --pipeline_workdir "$WORK/train" --results_dir "$WORK"
else
    printf 'train_compiled\tskipped\t0\t0\n' >>"$WORK/stages.tsv"
    echo "=== [train_compiled] skipped in the smoke run (GPU_CHECK_SMOKE_COMPILE=1 runs it)"
fi

SUMMARY_RESERVE_S=0 stage summary 25 "$PYTHON" benchmarks/gpu_check_summary.py "$WORK" "$OUT_DIR" \
    $([[ "$SMOKE" == 1 ]] && echo --smoke)
echo "GPU check done in $((SECONDS - START)) s; files in ${OUT_DIR}:"
ls -l "$OUT_DIR"
exec 1>&- 2>&-
wait "$TEE_PID" 2>/dev/null  # the log is complete before the command returns
