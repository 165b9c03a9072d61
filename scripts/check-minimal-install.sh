#!/usr/bin/env bash
# A real minimal install: a fresh venv with `pip install .` and no extras (onnx, numpy, pyyaml,
# rich; no torch, onnxruntime, OpenVINO or matplotlib), in a temporary folder. Every command a
# new user runs first must work or say in one line which extra to install (exit 2), never print
# a traceback. tests/test_minimal_install.py checks the same by hiding the packages in the dev
# venv; this script is the check without tricks (about a minute: pip installs four packages).
#
#   bash scripts/check-minimal-install.sh          # exit 0 when every command behaved
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' >&2
# A copy of the tree, so that pip's build folder lands there and not in the checkout.
mkdir "$work/src"
(cd "$root" && git ls-files -z | xargs -0 cp --parents -t "$work/src")
"$work/venv/bin/python" -m pip install -q "$work/src" 2>&1 | grep -v '^WARNING: Location' >&2
bin="$work/venv/bin"
echo "installed: $("$bin/python" -m pip list --format=freeze 2>/dev/null | tr '\n' ' ')"
for extra in torch onnxruntime openvino matplotlib onnxscript; do
  if "$bin/python" -c "import $extra" 2>/dev/null; then
    echo "FAIL: $extra is installed: not a minimal install" >&2
    exit 1
  fi
done

d="$work/try"
mkdir "$d"
export GRAPHGEN_CACHE="$d/cache"
failures=0
check() {  # check CMD...: exit 0, or exit 2 with one "error:" line naming what to install
  local out rc errors
  out="$(cd "$d" && "$bin/$@" 2>&1)"
  rc=$?
  errors="$(printf '%s\n' "$out" | grep -c '^error:')"
  if grep -q Traceback <<<"$out"; then
    verdict="FAIL (traceback)"
  elif [ "$rc" -eq 0 ]; then
    verdict="ok"
  elif [ "$rc" -eq 2 ] && [ "$errors" -eq 1 ]; then
    verdict="ok: $(grep '^error:' <<<"$out")"
  else
    verdict="FAIL (exit $rc, $errors error lines)"
  fi
  case "$verdict" in FAIL*) failures=$((failures + 1)) ;; esac
  printf '%-72s exit %s  %s\n' "$*" "$rc" "$verdict"
  case "$verdict" in FAIL*) printf '%s\n' "$out" | tail -5 | sed 's/^/    /' ;; esac
}

check graphgen --help
check graphgen build --depth 20 -o r20.onnx
check graphgen list
check graphgen info r20.onnx
check graphgen quantize r20.onnx -o r20-int8.onnx
check graphgen import r20.onnx -o imported.onnx
check resnet-train --help
check resnet-train --depth 20 --dataset synthetic --epochs 1 --out run
check resnet-train experiment shortcuts --out exp
check bench-runtimes --help
check bench-runtimes list
check bench-runtimes run
check bench-runtimes run --runtimes ort-cpu --out b1
check bench-runtimes run --models cifar-resnet20 --iterations 3 --warmup 1 --out b2
check bench-runtimes loadgen --models cifar-resnet20 --runtimes onnx-ref --out b3
(cd "$root" && "$bin/python" benchmarks/graphgen_export.py >"$d/export.txt" 2>&1)
rc=$?
if [ "$rc" -eq 2 ] && [ "$(wc -l <"$d/export.txt")" -eq 1 ]; then
  echo "python benchmarks/graphgen_export.py                                      exit 2  ok: $(cat "$d/export.txt")"
else
  echo "python benchmarks/graphgen_export.py  FAIL (exit $rc)"; tail -5 "$d/export.txt"
  failures=$((failures + 1))
fi

if [ "$failures" -eq 0 ]; then
  echo "minimal install: every command worked or named what to install"
else
  echo "minimal install: $failures command(s) failed" >&2
  exit 1
fi
