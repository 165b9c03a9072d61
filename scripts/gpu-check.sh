#!/usr/bin/env bash
# The whole GPU check in one run, for a machine with an NVIDIA GPU (see docs/gpu.md). Two modes:
#
# online (pip reaches PyPI): a dedicated venv (.venv-gpu) with the gpu extra's engines.
#   onnxruntime-gpu goes in first; its build decides the rest: TensorRT's wheel is the CUDA
#   variant and major version its TensorRT provider links against (libnvinfer.so.N), cuda-python
#   matches its CUDA major. Plain onnxruntime is never left beside onnxruntime-gpu.
# offline (no network, e.g. a lent GPU machine with Python, PyTorch with CUDA, onnx, onnxruntime
#   (CPU) and cuda-python already installed): a venv that sees the machine's packages
#   (--system-site-packages), the project installed without dependencies or build isolation (or
#   put on PYTHONPATH when setuptools is missing), and the pure-Python helpers it needs (rich,
#   pyyaml, safetensors, matplotlib, pytest, hypothesis) from a local wheel folder when the
#   machine lacks them: `bash scripts/gpu-wheels.sh` on a networked machine fills .gpu-wheels/.
#   TensorRT and onnxruntime-gpu cannot be had: their checks are recorded as skipped, with the
#   reason, and everything else runs.
#
# Then, in both modes, each step timed and recorded (one failing does not stop the others):
#   1. the engines this machine has (`bench-runtimes list`, the environment)
#   2. one `bench-runtimes run` over ResNet-18 and ResNet-50, fp32 and fp16, batch 1 and 32, on
#      trt, ort-cuda, ort-trt, torch-cuda and ort-cpu, each record with its parity check against
#      torch float64 (missing engines become "skipped" records with their reason)
#   3. torch-cuda parity in bf16 (the fp32 graph's module in bfloat16)
#   4. resnet-train a few hundred steps on CUDA (mixed precision and channels-last are what the
#      loop uses on CUDA), with --export (the exported graph is verified against the module);
#      then the exported graph through `bench-runtimes parity` (torch-cuda vs ort-cpu)
#   5. resnet-train under torchrun, one process, nccl
#   6. `pytest -m gpu` (TensorRT and onnxruntime-gpu tests skip with their reason when absent)
#   7. one table: every step with its status and time, then every benchmark record with its
#      parity verdict; the same table is written to $OUT/gpu-check.md
# The exit status is non-zero when a step failed (a skip is not a failure). Budget: 8 minutes
# after the install.
#
# Environment: MODE (online|offline; default: offline when PyPI cannot be reached in 8 s), VENV
# (default .venv-gpu), OUT (default gpu-check-out), WHEELS (default .gpu-wheels), SKIP_INSTALL=1
# to reuse the venv as is, ORT_SPEC (default onnxruntime-gpu), TRT_SPEC (default: derived from
# onnxruntime-gpu, e.g. "tensorrt-cu13>=10,<11"), PARITY_CLI=1 to also run `bench-runtimes
# parity` on the default models at batch 4 (8 more engine builds: over budget).
set -uo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
VENV="${VENV:-.venv-gpu}"
OUT="${OUT:-gpu-check-out}"
WHEELS="${WHEELS:-.gpu-wheels}"
export BENCH_RUNTIMES_CACHE="${BENCH_RUNTIMES_CACHE:-$PWD/$OUT/engine-cache}"
export GRAPHGEN_CACHE="${GRAPHGEN_CACHE:-$PWD/$OUT/models}"
failures=()
STEPS_FILE="$OUT/steps.tsv"  # name, status, seconds, note: the table's first part

step() {  # step NAME COMMAND...: run, time, and remember a failure without stopping
  local name="$1"; shift
  local t0=$SECONDS rc=0
  echo "==> $name"
  "$@" || rc=$?
  local dt=$((SECONDS - t0))
  if [ "$rc" = 0 ]; then
    echo "    ok (${dt} s)"
    printf '%s\tok\t%s\t\n' "$name" "$dt" >> "$STEPS_FILE"
  else
    echo "    FAILED (${dt} s)"
    printf '%s\tFAILED\t%s\texit %s\n' "$name" "$dt" "$rc" >> "$STEPS_FILE"
    failures+=("$name")
  fi
}

skip() {  # skip NAME REASON: a check that cannot run here, recorded with why
  echo "==> $1"
  echo "    skipped: $2"
  printf '%s\tskipped\t0\t%s\n' "$1" "$2" >> "$STEPS_FILE"
}

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu-check: no NVIDIA GPU here (nvidia-smi missing or failing); nothing to check" >&2
  exit 2
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
mkdir -p "$OUT" "$BENCH_RUNTIMES_CACHE" "$GRAPHGEN_CACHE"
: > "$STEPS_FILE"
PY="$VENV/bin/python"
if [ -z "${MODE:-}" ]; then
  MODE=online
  timeout 8 python3 -m pip download -q --no-deps -d "$(mktemp -d)" "pip-install-test==0.5" \
    >/dev/null 2>&1 || MODE=offline
fi
echo "gpu-check: $MODE mode"

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

offline_install() {  # no network: the machine's packages, the project without dependencies
  [ -x "$PY" ] || python3 -m venv --system-site-packages "$VENV" || return 1
  local missing
  missing=$("$PY" - <<'EOF'
import importlib.util
need = {"rich": "rich", "yaml": "pyyaml", "safetensors": "safetensors", "matplotlib": "matplotlib",
        "pytest": "pytest", "hypothesis": "hypothesis"}
print(" ".join(pkg for mod, pkg in need.items() if importlib.util.find_spec(mod) is None))
EOF
)
  if [ -n "$missing" ]; then
    if [ -d "$WHEELS" ]; then
      echo "    from $WHEELS: $missing"
      # shellcheck disable=SC2086
      "$PY" -m pip install -q --no-index --find-links "$WHEELS" $missing || return 1
    else
      echo "    missing here and no $WHEELS folder: $missing (run scripts/gpu-wheels.sh where" \
        "there is network, and bring the folder)" >&2
    fi
  fi
  if ! "$PY" -m pip install -q --no-deps --no-build-isolation -e . 2>/dev/null; then
    echo "    could not install the project (no setuptools?): using PYTHONPATH=$PWD"
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
  fi
  "$PY" -c "import graphgen, runtimes, train, reports, resnet_common" || return 1
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
  if [ "$MODE" = offline ]; then
    step "install the project into $VENV (offline, no dependencies)" offline_install
  else
    step "install the gpu extra into $VENV" install
  fi
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
BR=("$PY" -m runtimes)  # the console scripts need an install; `python -m` works either way

step "bench-runtimes list" "${BR[@]}" list
if [ "$MODE" = offline ]; then
  "$PY" -c "import tensorrt" >/dev/null 2>&1 \
    || skip "TensorRT (trt, ort-trt)" "tensorrt is not installed and cannot be installed offline"
  "$PY" -c "import onnxruntime as o, sys; sys.exit('CUDAExecutionProvider' not in o.get_available_providers())" \
    >/dev/null 2>&1 || skip "onnxruntime-gpu (ort-cuda, ort-trt)" \
    "this onnxruntime has no CUDA provider and onnxruntime-gpu cannot be installed offline"
else
  step "environment" environment
fi

RUNTIMES="trt,ort-cuda,ort-trt,torch-cuda,ort-cpu"
step "benchmark + parity: batch 1 and 32, fp32 and fp16 ($RUNTIMES)" "${BR[@]}" run \
  --models resnet18,resnet50 --runtimes "$RUNTIMES" --batch 1,32 --precision fp32,fp16 \
  --warmup-s 0.3 --duration-s 1 --out "$OUT/bench"

bf16_parity() {  # the fp32 graph's module in bfloat16 on CUDA, against torch float64
  "$PY" - "$GRAPHGEN_CACHE" <<'EOF'
import sys
from runtimes import registry
from runtimes.inputs import feeds
from runtimes.models import resolve
from runtimes.parity import Tolerance, compare

bad = 0
for name in ("resnet18", "resnet50"):
    model = resolve(name, cache_dir=sys.argv[1])
    x = feeds(model.input_name, 4, model.image_size)
    with registry.create("torch", model.path, precision="fp64") as ref:
        expected = ref.infer(x)["logits"]
    with registry.create("torch-cuda", model.path, precision="bf16") as runner:
        result = compare(runner.infer(x)["logits"], expected, Tolerance(rtol=8e-2, atol=1e-2))
    m = result.metrics
    print(f"    {name} bf16: rel L2 {m.rel_l2:.2e}, max abs {m.max_abs:.2e}, top-1 {m.top1:.2f}"
          f" -> {'pass' if result else 'FAIL ' + '; '.join(result.failures)}")
    bad += not result
sys.exit(1 if bad else 0)
EOF
}
step "torch-cuda parity bf16 (resnet18, resnet50)" bf16_parity

TR=("$PY" -m train)
step "resnet-train 200 steps on CUDA (AMP, channels-last) + verified export" "${TR[@]}" \
  --depth 20 --dataset synthetic --synthetic-train 12800 --synthetic-val 1000 --batch-size 64 \
  --epochs 1 --workers 2 --device cuda --out "$OUT/train" --export "$OUT/train/resnet20.onnx" \
  --quiet
if [ -f "$OUT/train/resnet20.onnx" ]; then
  step "parity of the exported graph (torch-cuda, ort-cpu)" "${BR[@]}" parity \
    --models "$OUT/train/resnet20.onnx" --runtimes torch-cuda,ort-cpu
else
  skip "parity of the exported graph" "the training step wrote no export"
fi
if "$PY" -c "import torch.distributed as d, sys; sys.exit(not d.is_nccl_available())"; then
  step "resnet-train under torchrun, 1 process, nccl" "$PY" -m torch.distributed.run \
    --standalone --nproc_per_node 1 -m train --depth 20 --dataset synthetic \
    --synthetic-train 2560 --synthetic-val 500 --batch-size 64 --epochs 1 --workers 0 \
    --device cuda --out "$OUT/ddp" --quiet
else
  skip "resnet-train under torchrun (nccl)" "this torch build has no nccl"
fi

parity() {  # exit 1 from the CLI is a disagreement; 2 is bad input or no usable engine
  local rc=0
  "${BR[@]}" parity --models resnet18,resnet50 --runtimes "$RUNTIMES" --precision "$1" \
    --batch 4 --json > "$OUT/parity-$1.json" || rc=$?
  head -c 4000 "$OUT/parity-$1.json"; echo
  return "$rc"
}
if [ "${PARITY_CLI:-0}" = 1 ]; then
  for precision in fp32 fp16; do
    step "parity CLI $precision ($RUNTIMES)" parity "$precision"
  done
fi

if "$PY" -c "import pytest, hypothesis" >/dev/null 2>&1; then
  step "pytest -m gpu" "$PY" -m pytest -q -m gpu -rs -p no:cacheprovider tests
else
  skip "pytest -m gpu" "pytest or hypothesis is not installed (offline: bring $WHEELS)"
fi

table() {
  "$PY" - "$OUT" <<'EOF'
"""One table, printed and written to OUT/gpu-check.md: every step with its status, time and
note, then every benchmark record with its parity verdict (the record's own check against torch
float64; the parity CLI's verdict beside it when PARITY_CLI=1 ran it). Exit 1 when a record
failed, an ok record's parity did not pass, or there is no record at all; a skipped record
(an engine this machine lacks) is listed with its reason and is not a failure."""
import json, sys
from pathlib import Path

out = Path(sys.argv[1])
lines = ["| step | status | s | note |", "|---|---|---:|---|"]
steps = out / "steps.tsv"
for row in steps.read_text().splitlines() if steps.exists() else []:
    name, status, secs, note = (row.split("\t") + ["", "", "", ""])[:4]
    lines.append(f"| {name} | {status} | {secs} | {note} |")
cli = {}
for f in out.glob("parity-*.json"):
    try:
        doc = json.loads(f.read_text())
    except ValueError:
        continue
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


def num(value, digits):
    return "-" if value is None else f"{value:.{digits}f}"


lines += ["", "| model | precision | runtime | batch | status | median ms | p90 ms | img/s "
          "| parity | rel L2 | parity CLI | note |", "|---|---|---|---:|---|---:|---:|---:|---|---:|---|---|"]
bad = 0
for r in records:
    lat = r.get("latency_ms") or {}
    model, prec, rt = str(r.get("model", "")), r.get("precision", ""), r.get("runtime", "")
    status = str(r.get("status", ""))
    pv = verdict(r) if status == "ok" else "-"
    rel = (r.get("parity") or {}).get("rel_l2") if isinstance(r.get("parity"), dict) else None
    note = r.get("reason") or ""
    if status == "failed" or (status == "ok" and pv != "pass"):
        bad += 1
        note = note or json.dumps(r.get("parity"))[:200]
    lines.append(
        f"| {model} | {prec} | {rt} | {r.get('batch', '')} | {status} | {num(lat.get('median'), 3)}"
        f" | {num(lat.get('p90'), 3)} | {num(r.get('throughput_ips'), 0)} | {pv} | "
        f"{'-' if rel is None else f'{rel:.1e}'} | {cli.get((model, prec, rt), '-')} | {note} |"
    )
bad += sum(1 for v in cli.values() if v not in ("pass", "skipped"))
text = "\n".join(lines) + "\n"
print(text)
(out / "gpu-check.md").write_text(text)
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
