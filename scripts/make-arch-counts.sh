#!/usr/bin/env bash
# Measure the `--arch` presets in torchvision and timm (params, fvcore MACs, state_dict names) into
# tests/fixtures/arch_counts.json, for tests/test_archs.py.
#
#   bash scripts/make-arch-counts.sh
#
# The Python is $REFVENV (default /work/refvenv) with torch, torchvision and timm; fvcore must be
# importable beside them: install it into that venv, or into another folder and give its
# site-packages as $FVCORE_SITE (appended to PYTHONPATH, so the venv's own packages win).
# CI never runs this script; graphgen itself needs only numpy, onnx and pyyaml here.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${REFVENV:-/work/refvenv}"
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$here/..${FVCORE_SITE:+:$FVCORE_SITE}"
export PYTHONDONTWRITEBYTECODE=1
exec "$venv/bin/python" "$here/arch_counts.py" --out "$here/../tests/fixtures/arch_counts.json"
