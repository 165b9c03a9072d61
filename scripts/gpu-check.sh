#!/usr/bin/env bash
# The whole GPU check in one run, for a machine with an NVIDIA GPU (see docs/gpu.md):
#   1. a dedicated venv (.venv-gpu) with the `gpu` extra; onnxruntime-gpu replaces onnxruntime
#   2. parity: trt, ort-cuda, ort-trt, torch on CUDA, ort-cpu (fp32, then fp16) on ResNet-18
#      and ResNet-50 (graphgen builds them once into $GRAPHGEN_CACHE, float32 I/O)
#   3. benchmarks at batch 1 and 32 (`bench-runtimes run`; one engine per model and precision
#      serves both batches), one table at the end
#   4. `pytest -m gpu`
# Every step runs even when an earlier one failed; the exit status is non-zero on any failure.
# Budget: under 8 minutes on one modern GPU with a warm pip cache (engines are cached under
# $BENCH_RUNTIMES_CACHE, so a second run skips the builds).
#
# Environment: VENV (default .venv-gpu), OUT (default gpu-check-out), TORCH_CUDA_RUNTIME (the
# registry name of torch on CUDA, default torch-cuda), SKIP_INSTALL=1 to reuse the venv as is.
set -uo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
VENV="${VENV:-.venv-gpu}"
OUT="${OUT:-gpu-check-out}"
TORCH_CUDA_RUNTIME="${TORCH_CUDA_RUNTIME:-torch-cuda}"
export BENCH_RUNTIMES_CACHE="${BENCH_RUNTIMES_CACHE:-$PWD/$OUT/engine-cache}"
export GRAPHGEN_CACHE="${GRAPHGEN_CACHE:-$PWD/$OUT/models}"
failures=()

step() {  # step NAME COMMAND...: run, time, and remember a failure without stopping
  local name="$1"; shift
  local t0=$SECONDS
  echo "==> $name"
  if "$@"; then
    echo "    ok ($((SECONDS - t0)) s)"
  else
    echo "    FAILED ($((SECONDS - t0)) s)"
    failures+=("$name")
  fi
}

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu-check: no NVIDIA GPU here (nvidia-smi missing or failing); nothing to check" >&2
  exit 2
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
mkdir -p "$OUT" "$BENCH_RUNTIMES_CACHE" "$GRAPHGEN_CACHE"
PY="$VENV/bin/python"

install() {
  [ -x "$PY" ] || python3 -m venv "$VENV" || return 1
  "$PY" -m pip install -q --upgrade pip || return 1
  # cuda-python's major must not exceed the driver's CUDA major (nvidia-smi's "CUDA Version").
  local cuda_major
  cuda_major=$(nvidia-smi | sed -n 's/.*CUDA Version: *\([0-9]*\)\..*/\1/p' | head -1)
  local pins=()
  [ -n "$cuda_major" ] && pins+=("cuda-python<$((cuda_major + 1))")
  # The gpu extra never pulls plain onnxruntime; pytest is added by hand because the dev extra
  # would (through the cpu extra).
  "$PY" -m pip install -q -c constraints.txt -e ".[gpu]" pytest "${pins[@]}" || return 1
  # onnxruntime and onnxruntime-gpu install the same `onnxruntime` module: if anything pulled
  # the CPU build, remove it and reinstall the GPU build's files over the shared folder.
  if "$PY" -m pip show -q onnxruntime >/dev/null 2>&1; then
    "$PY" -m pip uninstall -q -y onnxruntime || return 1
    "$PY" -m pip install -q --force-reinstall --no-deps onnxruntime-gpu || return 1
  fi
  "$PY" - <<'EOF'
import onnxruntime as ort, sys
providers = ort.get_available_providers()
print("onnxruntime", ort.__version__, providers)
sys.exit(0 if "CUDAExecutionProvider" in providers else 1)
EOF
}

if [ "${SKIP_INSTALL:-0}" = 1 ]; then
  echo "==> install skipped (SKIP_INSTALL=1)"
else
  step "install the gpu extra into $VENV" install
fi
if [ ! -x "$PY" ]; then
  echo "gpu-check: no usable venv at $VENV" >&2
  exit 1
fi
# The tensorrt and nvidia-* wheels keep their shared libraries in site-packages; the TensorRT
# provider of onnxruntime dlopens libnvinfer by name, so put those folders on the loader path.
libdirs=$("$PY" - <<'EOF'
import glob, os, site
dirs = []
for base in site.getsitepackages():
    dirs += glob.glob(os.path.join(base, "tensorrt_libs"))
    dirs += glob.glob(os.path.join(base, "nvidia", "*", "lib"))
print(":".join(dirs))
EOF
)
export LD_LIBRARY_PATH="${libdirs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
BR="$VENV/bin/bench-runtimes"

step "bench-runtimes list" "$BR" list

RUNTIMES="trt,ort-cuda,ort-trt,${TORCH_CUDA_RUNTIME},ort-cpu"
parity() {  # exit 1 from the CLI is a disagreement; 2 is bad input or no usable engine
  local rc=0
  "$BR" parity --models resnet18,resnet50 --runtimes "$RUNTIMES" --precision "$1" \
    --batch 4 --json > "$OUT/parity-$1.json" || rc=$?
  head -c 4000 "$OUT/parity-$1.json"; echo
  return "$rc"
}
for precision in fp32 fp16; do
  step "parity $precision ($RUNTIMES)" parity "$precision"
done

step "benchmark batch 1 and 32" "$BR" run --models resnet18,resnet50 \
  --runtimes "trt,ort-cuda,ort-trt,${TORCH_CUDA_RUNTIME}" --batch 1,32 --precision fp32,fp16 \
  --warmup-s 0.3 --duration-s 1 --no-parity --out "$OUT/bench"

step "pytest -m gpu" "$PY" -m pytest -q -m gpu -rs tests

table() {
  "$PY" - "$OUT" <<'EOF'
"""One table: every benchmark record, with the parity verdicts next to it."""
import json, sys
from pathlib import Path

out = Path(sys.argv[1])
parity = {}
for f in out.glob("parity-*.json"):
    try:
        doc = json.loads(f.read_text())
    except ValueError:
        continue
    # `parity --json`: {"passed": ..., "models": [{"model", "precision", "results": [...]}]}
    for m in doc.get("models", []) if isinstance(doc, dict) else []:
        for r in m.get("results", []):
            key = (str(m.get("model", "")), m.get("precision", f.stem[7:]), r.get("runtime", ""))
            parity[key] = r.get("status", "-")
records = []
path = out / "bench" / "results.jsonl"
for line in path.read_text().splitlines() if path.exists() else []:
    try:
        records.append(json.loads(line))
    except ValueError:
        pass
head = f"{'model':<10} {'prec':<5} {'runtime':<11} {'batch':>5} {'status':<8} " \
       f"{'median ms':>10} {'p90 ms':>8} {'img/s':>9} {'parity':<8}"
print(head)
print("-" * len(head))
for r in records:
    lat = r.get("latency_ms") or r.get("latency") or {}
    model = str(r.get("model", ""))
    prec, rt = r.get("precision", ""), r.get("runtime", "")
    pv = parity.get((model, prec, rt), "-")
    med, p90 = lat.get("median"), lat.get("p90")
    ips = r.get("throughput_ips") or r.get("throughput")
    print(f"{model[:10]:<10} {prec:<5} {rt:<11} {r.get('batch', ''):>5} "
          f"{str(r.get('status', ''))[:8]:<8} "
          f"{med if med is None else round(med, 3)!s:>10} "
          f"{p90 if p90 is None else round(p90, 3)!s:>8} "
          f"{ips if ips is None else round(ips)!s:>9} {pv:<8}")
    if r.get("status") not in (None, "ok"):
        print(f"    reason: {r.get('reason', '')}")
bad = [r for r in records if r.get("status") != "ok"]
sys.exit(1 if bad or not records else 0)
EOF
}
step "summary table" table

total=$((SECONDS - start))
echo "gpu-check: total ${total} s"
[ "$total" -le 480 ] || echo "gpu-check: WARNING: over the 8-minute budget"
if [ "${#failures[@]}" -gt 0 ]; then
  printf 'gpu-check: FAILED: %s\n' "${failures[@]}"
  exit 1
fi
echo "gpu-check: all steps passed"
