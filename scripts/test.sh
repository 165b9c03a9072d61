#!/usr/bin/env bash
# Set up (if needed) and run the whole check: ruff lint, ruff format, mypy, then the pytest suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy  # files and strictness: [tool.mypy] in pyproject.toml
# One pytest process for the whole suite: tests/conftest.py fails any test that leaves
# process-wide state changed (threads, signal handlers, the signal stack, cwd, environment), so
# no test needs a process of its own. (The SIGKILL resume test once ran apart: the full suite
# segfaulted at its end, because OpenVINO Cores freed the main thread's signal stack; see
# runtimes/engines/openvino_cpu.py, shared_core.)
exec .venv/bin/python -m pytest -q "$@"
