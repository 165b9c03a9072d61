#!/usr/bin/env bash
# Make the MXNet Gluon fixtures under tests/fixtures/gluon/ (small nets, committed), or with
# --full DIR the full-size zoo nets for the hand checks and benchmarks/import_speed.py.
#
# MXNet 1.9.1 installs from PyPI only on Python 3.11 beside numpy<1.24, so it gets its own
# side venv ($MXVENV, default /tmp/mxvenv); the project's environment never sees it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${MXVENV:-/tmp/mxvenv}"
if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c "import mxnet" 2>/dev/null; then
    python3.11 -m venv "$venv"
    "$venv/bin/pip" install --quiet mxnet==1.9.1 'numpy<1.24' onnx==1.14.1 protobuf==3.20.3
fi
if [[ "${1:-}" == "--full" ]]; then
    exec "$venv/bin/python" "$here/gluon_fixtures.py" --full "${2:?usage: $0 --full DIR}"
fi
exec "$venv/bin/python" "$here/gluon_fixtures.py" --out "$here/../tests/fixtures/gluon"
