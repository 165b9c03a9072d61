#!/usr/bin/env bash
# Set up (if needed) and run the whole check: ruff lint, ruff format, mypy, then the pytest suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy  # files and strictness: [tool.mypy] in pyproject.toml
.venv/bin/python -m pytest -q "$@"
