#!/usr/bin/env bash
# Import the full-size Gluon zoo nets made by `make-gluon-fixtures.sh --full DIR` (both name
# styles, and MXNet's ONNX export of resnet50_v1) and check each against MXNet's own outputs.
# Prints one line per file: the rel. L2 against MXNet's stored outputs (and, for the ONNX export,
# against the source graph). The .params files cannot show where a bottleneck strides: Gluon's
# model zoo strides v1 on the 1x1 and v2 on the 3x3, said with --stride-at.
set -euo pipefail
dir="${1:?usage: $0 DIR (from make-gluon-fixtures.sh --full DIR)}"
py="$(cd "$(dirname "$0")/.." && pwd)/.venv/bin/graphgen"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
for net in resnet18_v1 resnet50_v1 resnet101_v1 resnet18_v2 resnet50_v2 resnet101_v2; do
    stride=3x3
    [[ "$net" == *_v1 ]] && stride=1x1
    for file in "$net.params" "$net-0000.params" "$net.onnx"; do
        [[ -f "$dir/$file" ]] || continue
        line="$("$py" import "$dir/$file" --stride-at "$stride" --expect "$dir/$net.npz" \
            -o "$out/x.onnx" | grep verified)"
        echo "$file: ${line#verified: }"
    done
done
