#!/usr/bin/env bash
# Import the full-size Gluon zoo nets made by `make-gluon-fixtures.sh --full DIR` (both name
# styles, and MXNet's ONNX export of resnet50_v1) and check each against MXNet's own outputs.
# Prints one line per file: the rel. L2 against the numpy pass and against MXNet.
set -euo pipefail
dir="${1:?usage: $0 DIR (from make-gluon-fixtures.sh --full DIR)}"
py="$(cd "$(dirname "$0")/.." && pwd)/.venv/bin/graphgen"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
for net in resnet18_v1 resnet50_v1 resnet101_v1 resnet18_v2 resnet50_v2 resnet101_v2; do
    for file in "$net.params" "$net-0000.params" "$net.onnx"; do
        [[ -f "$dir/$file" ]] || continue
        line="$("$py" import "$dir/$file" --expect "$dir/$net.npz" -o "$out/x.onnx" | grep verified)"
        echo "$file: ${line#verified: }"
    done
done
