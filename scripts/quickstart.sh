#!/usr/bin/env bash
# Set up (CPU engines) and run the main job on its built-in default: ResNet-18 and ResNet-50 at
# batch 1 on every engine usable here.
#
# Each run measures afresh into a new folder, bench-results/<UTC date-time>/ (report.md,
# report.html, report.json), and points bench-results/latest at it: running the quickstart again
# is a new measurement beside the old one, never an error and never an overwrite.
# `quickstart.sh --resume` (or --retry-failed) continues the newest folder instead, for a run
# that was killed. Arguments go to `bench-runtimes run`; one that names --out is used as given.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh cpu

for arg in "$@"; do
  case "$arg" in
    --out | --out=*) exec .venv/bin/bench-runtimes run "$@" ;;
  esac
done

mkdir -p bench-results
out=""
for arg in "$@"; do
  case "$arg" in
    --resume | --retry-failed)
      if [ -L bench-results/latest ] && [ -d bench-results/latest ]; then
        out="bench-results/$(readlink bench-results/latest)"
      else
        echo "error: no earlier quickstart run to continue (bench-results/latest is missing)" >&2
        exit 2
      fi ;;
  esac
done
if [ -z "$out" ]; then
  stamp="$(date -u +%Y%m%d-%H%M%S)"
  out="bench-results/$stamp"
  n=1
  while [ -e "$out" ]; do  # two runs in one second
    n=$((n + 1))
    out="bench-results/$stamp-$n"
  done
  mkdir "$out"
  ln -sfn "$(basename "$out")" bench-results/latest
fi
echo "quickstart: results go to $out (bench-results/latest)"
.venv/bin/bench-runtimes run --out "$out" "$@"
