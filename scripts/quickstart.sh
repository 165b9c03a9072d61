#!/usr/bin/env bash
# Set up (CPU engines) and run the main job on its built-in default: ResNet-18 and ResNet-50 at
# batch 1 on every engine usable here. The report lands in bench-results/ (report.md, report.html).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh cpu
.venv/bin/bench-runtimes run "$@"
