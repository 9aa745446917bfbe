#!/usr/bin/env bash
# Download, here, the wheels a bare GPU machine lacks for benchmarks/gpu_check.sh, into .whl/ (git-ignored through
# .git/info/exclude), for CPython 3.12 on manylinux x86_64, one version of each.
#
# The lent H200 image has torch, transformers, accelerate, huggingface_hub, numpy, scipy, scikit-learn, pandas,
# pyarrow, aiohttp, requests, xxhash, h5py, matplotlib, PyYAML, tqdm and safetensors, but not datasets (and its
# dill / multiprocess), wfdb, edfio or evaluate. fsspec is pinned to the newest version datasets allows, and
# shadows the image's through PYTHONPATH. soundfile (wfdb's FLAC reader, imported lazily) is not needed.
#
#   bash benchmarks/fetch_gpu_wheels.sh             # about 1.4 MB
#   bash benchmarks/fetch_gpu_wheels.sh --pyarrow   # also pyarrow 24 (49 MB): only if the image's pyarrow is < 24
#
# The versions are the ones this repository's tests run with (.venv). gpu_check.sh installs every .whl/*.whl with
# `pip install --no-index --no-deps --target /tmp/site` and puts /tmp/site on PYTHONPATH.
set -euo pipefail
cd "$(dirname "$0")/.."

WHEELS=(datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 fsspec==2026.9.0 evaluate==0.4.6 wfdb==4.3.1 edfio==0.4.18)
if [[ "${1:-}" == "--pyarrow" ]]; then
    WHEELS+=(pyarrow==24.0.0)
fi
PYTHON=${PYTHON:-python3}
[[ -x .venv/bin/python ]] && PYTHON=${PYTHON_FOR_PIP:-.venv/bin/python}

mkdir -p .whl "$(git rev-parse --git-dir)/info"
EXCLUDE="$(git rev-parse --git-dir)/info/exclude"
grep -qxF "/.whl/" "$EXCLUDE" 2>/dev/null || echo "/.whl/" >>"$EXCLUDE"

"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any -d .whl "${WHEELS[@]}"

# One version of each: drop any wheel of these names that is not the pinned version (two stop the whole install).
for pin in "${WHEELS[@]}"; do
    name=${pin%%==*}; version=${pin##*==}
    for wheel in .whl/"${name}"-*.whl; do
        [[ -e "$wheel" ]] || continue
        [[ "$(basename "$wheel")" == "${name}-${version}-"* ]] || { echo "removing other version: $wheel"; rm -f "$wheel"; }
    done
done
if [[ "${1:-}" != "--pyarrow" ]]; then rm -f .whl/pyarrow-*.whl; fi

ls -l .whl
echo "wheels: $(du -sh .whl | cut -f1)"
echo "working tree that travels: $( (git ls-files -z; git ls-files -z -o --exclude-standard) | xargs -0 -r du -cb 2>/dev/null \
    | tail -1 | awk '{printf "%.1f MiB", $1 / 1048576}') + wheels (limit: 64 MiB together)"
