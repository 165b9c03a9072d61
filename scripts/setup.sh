#!/usr/bin/env bash
# Create .venv (if missing) and install the project with the extras named in $1 (default: dev).
# torch is pinned to the CPU build by constraints.txt; see the README for the GPU extra.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-dev}"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -c constraints.txt -e ".[${extras}]"
