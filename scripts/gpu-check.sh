#!/usr/bin/env bash
# The whole GPU check in one run, for a machine with an NVIDIA GPU (see docs/gpu.md):
#   1. a dedicated venv (.venv-gpu) with the gpu extra's engines. onnxruntime-gpu goes in first;
#      its build decides the rest: TensorRT's wheel is the CUDA variant and major version its
#      TensorRT provider links against (libnvinfer.so.N), cuda-python matches its CUDA major.
#      Plain onnxruntime is never left beside onnxruntime-gpu.
#   2. one `bench-runtimes run` over ResNet-18 and ResNet-50 (graphgen builds them once into
#      $GRAPHGEN_CACHE, float32 I/O), fp32 and fp16, batch 1 and 32, on trt, ort-cuda, ort-trt,
#      torch on CUDA and ort-cpu, each record with its parity check against torch float64 (the
#      benchmark's engines are the parity's, so every engine is built once: 4 native TensorRT
#      and 4 TensorRT-provider builds)
#   3. `pytest -m gpu`
#   4. one table: every record with its parity verdict
# Every step runs even when an earlier one failed; the exit status is non-zero on any failure.
# Budget (one H200/H100, estimates, never yet measured): install 1-3 min with a warm pip cache
# (~6 GB of wheels; more when they must be downloaded), the run 4-5 min (8 engine builds of
# 15-40 s each, 40 records of ~3 s), pytest -m gpu 1-2 min (small 64-px engines); a second run
# reuses the engine and timing caches under $BENCH_RUNTIMES_CACHE and the venv (SKIP_INSTALL=1).
#
# Environment: VENV (default .venv-gpu), OUT (default gpu-check-out), TORCH_CUDA_RUNTIME (the
# registry name of torch on CUDA, default torch-cuda), SKIP_INSTALL=1 to reuse the venv as is,
# ORT_SPEC (default onnxruntime-gpu), TRT_SPEC (default: derived from onnxruntime-gpu, e.g.
# "tensorrt-cu13>=10,<11"), PARITY_CLI=1 to also run `bench-runtimes parity` at batch 4 (builds
# 8 more engines: over budget).
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

driver_cuda_major() {  # the newest CUDA major the driver supports (nvidia-smi's "CUDA Version")
  nvidia-smi | sed -n 's/.*CUDA Version: *\([0-9]*\)\..*/\1/p' | head -1
}

ort_build() {  # "<CUDA major> <TensorRT major or 0>" of the installed onnxruntime-gpu, read from
  # its files without loading any CUDA library
  "$PY" - <<'EOF'
import importlib.util, pathlib, re
spec = importlib.util.find_spec("onnxruntime")
root = pathlib.Path(next(iter(spec.submodule_search_locations)))
info = (root / "capi" / "build_and_package_info.py").read_text()
cuda = re.search(r"cuda_version\s*=\s*['\"](\d+)", info)
trt = 0
for lib in (root / "capi").glob("libonnxruntime_providers_tensorrt*"):
    found = re.findall(rb"libnvinfer\.so\.(\d+)", lib.read_bytes())
    trt = max([trt] + [int(x) for x in found])
print(cuda.group(1) if cuda else 0, trt)
EOF
}

install() {
  [ -x "$PY" ] || python3 -m venv "$VENV" || return 1
  "$PY" -m pip install -q --upgrade pip || return 1
  local driver_major
  driver_major=$(driver_cuda_major)
  # onnxruntime-gpu first, with the CUDA runtime and cuDNN wheels it loads (extras cuda, cudnn).
  "$PY" -m pip install -q -c constraints.txt "${ORT_SPEC:-onnxruntime-gpu}[cuda,cudnn]" || return 1
  local ort_cuda ort_trt
  read -r ort_cuda ort_trt <<<"$(ort_build)" || return 1
  echo "    onnxruntime-gpu: CUDA ${ort_cuda}, TensorRT provider for TensorRT ${ort_trt}; driver: CUDA ${driver_major:-?}"
  if [ "${ort_cuda:-0}" -lt 12 ]; then
    echo "    cannot tell which CUDA this onnxruntime-gpu was built for" >&2
    return 1
  fi
  if [ -n "$driver_major" ] && [ "$ort_cuda" -gt "$driver_major" ]; then
    echo "    onnxruntime-gpu needs CUDA ${ort_cuda}, the driver supports CUDA ${driver_major}:" \
      "set ORT_SPEC to a CUDA ${driver_major} build, or update the driver" >&2
    return 1
  fi
  # TensorRT: the CUDA variant onnxruntime-gpu uses, and the major its provider links against
  # (a newer major would leave ort-trt unable to load libnvinfer).
  local trt_spec="tensorrt-cu${ort_cuda}"
  [ "${ort_trt:-0}" -gt 0 ] && trt_spec="tensorrt-cu${ort_cuda}>=${ort_trt},<$((ort_trt + 1))"
  trt_spec="${TRT_SPEC:-$trt_spec}"
  local cublas="nvidia-cublas-cu${ort_cuda}"
  [ "$ort_cuda" -ge 13 ] && cublas="nvidia-cublas>=${ort_cuda},<$((ort_cuda + 1))"
  echo "    TensorRT: ${trt_spec}"
  # The gpu extra's packages, with TensorRT's CUDA variant named instead of the `tensorrt`
  # metapackage (which picks its own); torch from constraints.txt is PyPI's CUDA build. pytest
  # by hand: the dev extra would pull the CPU onnxruntime (through the cpu extra).
  "$PY" -m pip install -q -c constraints.txt -e . "$trt_spec" "$cublas" \
    "cuda-python>=12.6,<$((ort_cuda + 1))" torch "safetensors>=0.4" "matplotlib>=3.7" pytest \
    || return 1
  # onnxruntime and onnxruntime-gpu install the same `onnxruntime` module: if anything pulled
  # the CPU build, remove it and reinstall the GPU build's files over the shared folder.
  if "$PY" -m pip show -q onnxruntime >/dev/null 2>&1; then
    "$PY" -m pip uninstall -q -y onnxruntime || return 1
    "$PY" -m pip install -q --force-reinstall --no-deps "${ORT_SPEC:-onnxruntime-gpu}" || return 1
  fi
  if "$PY" -m pip show -q onnxruntime >/dev/null 2>&1; then
    echo "    plain onnxruntime is still installed beside onnxruntime-gpu" >&2
    return 1
  fi
}

environment() {  # what each engine sees; fails when one of them cannot reach the GPU
  "$PY" - <<'EOF'
import sys
bad = []
import onnxruntime as ort
providers = ort.get_available_providers()
print("onnxruntime", ort.__version__, providers)
bad += [p for p in ("CUDAExecutionProvider", "TensorrtExecutionProvider") if p not in providers]
try:
    import tensorrt
    print("tensorrt", tensorrt.__version__)
except Exception as exc:
    bad.append(f"tensorrt: {exc}")
from runtimes.engines import cuda_util
reason = cuda_util.availability()
print("cuda-python:", reason or cuda_util.device_info(0))
bad += [f"cuda-python: {reason}"] if reason else []
import torch
print("torch", torch.__version__, "CUDA", torch.version.cuda, "available", torch.cuda.is_available())
if torch.version.cuda is None or not torch.cuda.is_available():
    bad.append("torch has no usable CUDA")
print("problems:", bad or "none")
sys.exit(1 if bad else 0)
EOF
}

if [ "${SKIP_INSTALL:-0}" = 1 ]; then
  echo "==> install skipped (SKIP_INSTALL=1)"
else
  step "install the gpu extra into $VENV" install
  if [ "${#failures[@]}" -gt 0 ]; then
    echo "gpu-check: FAILED: the install; nothing else can run" >&2
    exit 1
  fi
fi
installed=$SECONDS
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
step "environment" environment

RUNTIMES="trt,ort-cuda,ort-trt,${TORCH_CUDA_RUNTIME},ort-cpu"
step "benchmark + parity: batch 1 and 32, fp32 and fp16 ($RUNTIMES)" "$BR" run \
  --models resnet18,resnet50 --runtimes "$RUNTIMES" --batch 1,32 --precision fp32,fp16 \
  --warmup-s 0.3 --duration-s 1 --out "$OUT/bench"

parity() {  # exit 1 from the CLI is a disagreement; 2 is bad input or no usable engine
  local rc=0
  "$BR" parity --models resnet18,resnet50 --runtimes "$RUNTIMES" --precision "$1" \
    --batch 4 --json > "$OUT/parity-$1.json" || rc=$?
  head -c 4000 "$OUT/parity-$1.json"; echo
  return "$rc"
}
if [ "${PARITY_CLI:-0}" = 1 ]; then
  for precision in fp32 fp16; do
    step "parity CLI $precision ($RUNTIMES)" parity "$precision"
  done
fi

step "pytest -m gpu" "$PY" -m pytest -q -m gpu -rs tests

table() {
  "$PY" - "$OUT" <<'EOF'
"""One table: every benchmark record with its parity verdict (the record's own check against
torch float64; the parity CLI's verdict next to it when PARITY_CLI=1 ran it). Exit 1 when a
record is not ok, a parity check did not pass, or there is no record at all."""
import json, sys
from pathlib import Path

out = Path(sys.argv[1])
cli = {}
for f in out.glob("parity-*.json"):
    try:
        doc = json.loads(f.read_text())
    except ValueError:
        continue
    # `parity --json`: {"passed": ..., "models": [{"model", "precision", "results": [...]}]}
    for m in doc.get("models", []) if isinstance(doc, dict) else []:
        for r in m.get("results", []):
            key = (str(m.get("model", "")), m.get("precision", f.stem[7:]), r.get("runtime", ""))
            cli[key] = r.get("status", "-")
records = []
path = out / "bench" / "results.jsonl"
for line in path.read_text().splitlines() if path.exists() else []:
    try:
        records.append(json.loads(line))
    except ValueError:
        pass


def verdict(r):
    p = r.get("parity")
    if not isinstance(p, dict):
        return "-"
    if "error" in p:
        return "error"
    return "pass" if p.get("passed") else "FAIL"


head = f"{'model':<10} {'prec':<5} {'runtime':<11} {'batch':>5} {'status':<8} " \
       f"{'median ms':>10} {'p90 ms':>8} {'img/s':>9} {'parity':<7} {'cli':<5}"
print(head)
print("-" * len(head))
bad = 0
for r in records:
    lat = r.get("latency_ms") or {}
    model = str(r.get("model", ""))
    prec, rt = r.get("precision", ""), r.get("runtime", "")
    med, p90 = lat.get("median"), lat.get("p90")
    ips = r.get("throughput_ips")
    pv = verdict(r)
    print(f"{model[:10]:<10} {prec:<5} {rt:<11} {r.get('batch', ''):>5} "
          f"{str(r.get('status', ''))[:8]:<8} "
          f"{med if med is None else round(med, 3)!s:>10} "
          f"{p90 if p90 is None else round(p90, 3)!s:>8} "
          f"{ips if ips is None else round(ips)!s:>9} {pv:<7} "
          f"{cli.get((model, prec, rt), '-'):<5}")
    if r.get("status") != "ok":
        bad += 1
        print(f"    reason: {r.get('reason', '')}")
    elif pv != "pass":
        bad += 1
        print(f"    parity: {json.dumps(r.get('parity'))[:300]}")
bad += sum(1 for v in cli.values() if v not in ("pass", "skipped"))
sys.exit(1 if bad or not records else 0)
EOF
}
step "summary table" table

total=$((SECONDS - start))
echo "gpu-check: total ${total} s ($((SECONDS - installed)) s after the install)"
[ "$total" -le 480 ] || echo "gpu-check: WARNING: over the 8-minute budget"
if [ "${#failures[@]}" -gt 0 ]; then
  printf 'gpu-check: FAILED: %s\n' "${failures[@]}"
  exit 1
fi
echo "gpu-check: all steps passed"
