#!/usr/bin/env bash
# Fill .gpu-wheels/ (or $1) with the wheels scripts/gpu-check.sh installs offline when a GPU
# machine lacks them: the project's pure-Python helpers and their dependencies, for CPython 3.12
# on x86_64 Linux (a lent GPU machine's Python). Run it where pip reaches PyPI, then bring the
# folder (the device tool's `carry`, about 45 MB). Offline, gpu-check installs only the wheels
# whose distribution the machine lacks (`pip install --no-deps --target`), so the dependencies
# downloaded here (numpy, for one) never shadow the machine's own. Engines (torch, onnxruntime,
# TensorRT) are not included: the GPU machine has its own torch, and the offline check skips
# what it lacks.
set -euo pipefail
cd "$(dirname "$0")/.."
dest="${1:-.gpu-wheels}"
mkdir -p "$dest"
python3 -m pip download -q -d "$dest" --only-binary=:all: --python-version 3.12 \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
  --implementation cp \
  "rich>=13" "pyyaml>=6" "safetensors>=0.4" "matplotlib>=3.7" "pytest>=8" "hypothesis>=6.100"
du -sh "$dest"
