#!/usr/bin/env bash
# The whole GPU check in one run, for a machine with an NVIDIA GPU (see docs/gpu.md). Two modes:
#
# online (pip reaches PyPI): a dedicated venv (.venv-gpu) with one coherent set of GPU engines.
#   onnxruntime-gpu goes in first; its build decides the rest: TensorRT is the CUDA variant and
#   major its TensorRT provider links (libnvinfer.so.N), from NVIDIA's index (PyPI's
#   tensorrt-*-libs are placeholders that download from https://pypi.nvidia.com at install
#   time, so that index is probed first; unreachable, TensorRT is skipped with that reason);
#   cuda-python is bounded to onnxruntime-gpu's CUDA major. Plain onnxruntime is never left
#   beside onnxruntime-gpu.
# offline (no network, e.g. a lent GPU machine whose `python3` is itself a venv holding PyTorch
#   with CUDA, onnx, onnxruntime (CPU) and cuda-python): no venv is made. A venv made from a
#   venv sees the base interpreter's packages, not the parent venv's, so the check runs on that
#   interpreter as it is, with the project on PYTHONPATH (nothing installed into the machine's
#   environment) and, when the machine lacks a pure-Python helper (rich, pyyaml, safetensors,
#   matplotlib, pytest, hypothesis), the wheels of .gpu-wheels/ it lacks installed with
#   `pip --target` into $WORK/site (`bash scripts/gpu-wheels.sh` fills .gpu-wheels/ where there
#   is network). TensorRT and onnxruntime-gpu cannot be had: their checks are skipped, with the
#   reason, and everything else runs.
#
# Then, in both modes, an import check (numpy, onnx, onnxruntime, torch, the project: it names
# what is missing and stops the run), and each step timed and recorded (one failing does not
# stop the others; a check that cannot run here is skipped with the probe's reason):
#   1. the engines this machine has (`bench-runtimes list`; online also the environment step)
#   2. one `bench-runtimes run` over ResNet-18 and ResNet-50, fp32 and fp16, batch 1 and 32, on
#      trt, ort-cuda, ort-trt, torch-cuda and ort-cpu, each record with its parity check against
#      torch float64 (missing engines become "skipped" records with their reason)
#   3. torch-cuda parity in bf16 (the fp32 graph's module in bfloat16), then the bf16 routes
#      through bench-runtimes (trt on graphgen's bfloat16 graph, strongly typed; ort-trt with
#      trt_bf16_enable; torch-cuda) in latency and throughput mode (trt's execution contexts on
#      streams of their own; the others record "no throughput mode" as a skip)
#   4. resnet-train a few hundred steps on CUDA (mixed precision and channels-last are what the
#      loop uses on CUDA), with --export (the exported graph is verified against the module);
#      then the exported graph through `bench-runtimes parity` (torch-cuda vs ort-cpu)
#   5. resnet-train under torchrun, one process, nccl
#   6. `pytest -m gpu` (TensorRT and onnxruntime-gpu tests skip with their reason when absent)
#   7. one table: every step with its status and time, then every benchmark record with its
#      parity verdict; written to $OUT/gpu-check.md
# The exit status is non-zero when a step failed (a skip is not a failure). Budget: 8 minutes
# after the install.
#
# $OUT holds only what a caller fetches (a device machine returns at most 8 files from it):
# gpu-check.md, gpu-check.log, steps.tsv, bench-results.jsonl (and parity-*.json with
# PARITY_CLI=1). Models, engine caches, training runs and the offline site live in $WORK.
#
# Environment: MODE (online|offline; default: offline when PyPI cannot be reached in 8 s),
# PYTHON (offline: the interpreter, default python3), VENV (online: default .venv-gpu), OUT
# (default gpu-check-out; relative or absolute), WORK (default gpu-check-work), WHEELS (default
# .gpu-wheels), SKIP_INSTALL=1 to reuse what the last run installed, INSTALL_ONLY=1 to stop
# after the install and the import check, ORT_SPEC (default onnxruntime-gpu), TRT_SPEC (default:
# derived from onnxruntime-gpu, e.g. "tensorrt-cu13>=10,<11"), PARITY_CLI=1 to also run
# `bench-runtimes parity` on the default models at batch 4 (8 more engine builds: over budget),
# SIMULATE=1 to run without a GPU (a CPU rehearsal of the script: every GPU check is skipped
# with its reason, the rest runs; its table is labelled as a CPU simulation).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
start=$SECONDS

absolute() {  # the device machine sets OUT to an absolute folder; anything else is repo-relative
  case "$1" in
    /*) printf '%s\n' "$1" ;;
    *) printf '%s\n' "$PWD/$1" ;;
  esac
}
OUT=$(absolute "${OUT:-gpu-check-out}")
WORK=$(absolute "${WORK:-gpu-check-work}")
VENV=$(absolute "${VENV:-.venv-gpu}")
WHEELS=$(absolute "${WHEELS:-.gpu-wheels}")
SITE="$WORK/site"  # offline: the helper wheels the machine lacks (pip install --target)
NVIDIA_INDEX="https://pypi.nvidia.com"
export BENCH_RUNTIMES_CACHE="${BENCH_RUNTIMES_CACHE:-$WORK/engine-cache}"
export GRAPHGEN_CACHE="${GRAPHGEN_CACHE:-$WORK/models}"
SIMULATE="${SIMULATE:-0}"
mkdir -p "$OUT" "$WORK" "$BENCH_RUNTIMES_CACHE" "$GRAPHGEN_CACHE" || exit 2
# This run's results only: the last run's go (caches, models and the offline site stay in WORK).
rm -rf "$WORK/bench" "$WORK/bench-bf16" "$WORK/train" "$WORK/ddp" "$OUT/bench-results.jsonl" "$OUT"/parity-*.json
exec > >(tee "$OUT/gpu-check.log") 2>&1
log_writer=$!
finish() {  # let tee write the whole log before the caller collects OUT
  exec >&- 2>&-
  wait "$log_writer" 2>/dev/null || true
}
trap finish EXIT
failures=()
STEPS_FILE="$OUT/steps.tsv"  # name, status, seconds, note: the table's first part
: > "$STEPS_FILE"

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
  return "$rc"
}

skip() {  # skip NAME REASON: a check that cannot run here, recorded with why
  echo "==> $1"
  echo "    skipped: $2"
  printf '%s\tskipped\t0\t%s\n' "$1" "$2" >> "$STEPS_FILE"
}

if [ "$SIMULATE" = 1 ]; then
  echo "gpu-check: SIMULATE=1: a CPU rehearsal, not a GPU run; every GPU check is skipped"
elif ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu-check: no NVIDIA GPU here (nvidia-smi missing or failing); nothing to check" \
    "(SIMULATE=1 rehearses the script without one)" >&2
  exit 2
else
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
fi
if [ -z "${MODE:-}" ]; then
  MODE=online
  timeout 8 python3 -m pip download -q --no-deps -d "$WORK/pip-probe" "pip-install-test==0.5" \
    >/dev/null 2>&1 || MODE=offline
fi
echo "gpu-check: $MODE mode; results in $OUT, work files in $WORK"

if [ "$MODE" = offline ]; then
  # The machine's interpreter as it is (itself a venv on a lent machine): see the header.
  PY=$("${PYTHON:-python3}" -c 'import sys; print(sys.executable)') || {
    echo "gpu-check: no usable ${PYTHON:-python3}" >&2
    exit 2
  }
  export PYTHONPATH="$PWD:$SITE${PYTHONPATH:+:$PYTHONPATH}"
else
  PY="$VENV/bin/python"
fi
echo "gpu-check: python $PY"

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

import_check() {  # what every later step imports; names each module that is missing or broken
  "$PY" - <<'EOF'
import importlib, sys

need = ["numpy", "onnx", "onnxruntime", "torch", "yaml", "rich",
        "graphgen", "runtimes", "train", "reports", "resnet_common"]
wanted = {"safetensors": "training checkpoints", "matplotlib": "report plots",
          "pytest": "pytest -m gpu", "hypothesis": "pytest -m gpu"}
missing = []
for name in need + list(wanted):
    try:
        module = importlib.import_module(name)
    except Exception as exc:  # ImportError, or a broken build that fails while importing
        why = f"{name}: {type(exc).__name__}: {exc}"
        print(f"    MISSING {why}" + (f" (needed for {wanted[name]})" if name in wanted else ""))
        if name in need:
            missing.append(why)
        continue
    version = getattr(module, "__version__", "")
    print(f"    ok {name} {version} ({getattr(module, '__file__', None) or 'namespace'})")
if missing:
    print(f"    cannot run: {len(missing)} missing: " + "; ".join(missing), file=sys.stderr)
    sys.exit(1)
EOF
}

missing_wheels() {  # the wheels in $WHEELS whose distribution this interpreter lacks
  "$PY" - "$WHEELS" <<'EOF'
import importlib.metadata as md, pathlib, re, sys

for wheel in sorted(pathlib.Path(sys.argv[1]).glob("*.whl")):
    dist = re.sub(r"[-_.]+", "-", wheel.name.split("-")[0]).lower()
    try:
        md.version(dist)
    except md.PackageNotFoundError:
        print(wheel)
EOF
}

offline_install() {  # no network, no venv: see the header
  local -a wheels=()
  if [ -d "$WHEELS" ]; then
    mapfile -t wheels < <(missing_wheels)
  fi
  if [ "${#wheels[@]}" -gt 0 ]; then
    echo "    from $WHEELS into $SITE: ${wheels[*]##*/}"
    "$PY" -m pip install -q --no-index --no-deps --target "$SITE" "${wheels[@]}" || return 1
  fi
  echo "    the project from $PWD on PYTHONPATH (nothing installed into $PY's environment)"
}

nvidia_index() {  # TensorRT's libraries only come from NVIDIA's index: can pip reach it?
  "$PY" - "$NVIDIA_INDEX" <<'EOF'
import sys, urllib.request
try:
    urllib.request.urlopen(sys.argv[1] + "/tensorrt-libs/", timeout=8).close()
except Exception as exc:
    print(f"{sys.argv[1]} is not reachable ({exc}): PyPI's tensorrt-*-libs are placeholders "
          "that download TensorRT from there at install time")
EOF
}

online_install() {
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
  # (a newer major would leave ort-trt unable to load libnvinfer), from NVIDIA's index.
  local trt_spec="tensorrt-cu${ort_cuda}"
  [ "${ort_trt:-0}" -gt 0 ] && trt_spec="tensorrt-cu${ort_cuda}>=${ort_trt},<$((ort_trt + 1))"
  trt_spec="${TRT_SPEC:-$trt_spec}"
  local -a trt=("$trt_spec" --extra-index-url "$NVIDIA_INDEX")
  local unreachable
  unreachable=$(nvidia_index)
  if [ -n "$unreachable" ]; then
    echo "    TensorRT not installed: $unreachable" >&2
    printf '%s\n' "$unreachable" > "$WORK/tensorrt-skipped"
    trt=()
  else
    rm -f "$WORK/tensorrt-skipped"
    echo "    TensorRT: ${trt_spec} (from $NVIDIA_INDEX)"
  fi
  local cublas="nvidia-cublas-cu${ort_cuda}"
  [ "$ort_cuda" -ge 13 ] && cublas="nvidia-cublas>=${ort_cuda},<$((ort_cuda + 1))"
  # The gpu extra's packages, with TensorRT's CUDA variant named instead of the `tensorrt`
  # metapackage (which picks its own major); cuda-python of onnxruntime-gpu's CUDA major (a
  # newer major needs a newer driver); torch from constraints.txt is PyPI's CUDA build. pytest
  # by hand: the dev extra would pull the CPU onnxruntime (through the cpu extra).
  "$PY" -m pip install -q -c constraints.txt -e . "${trt[@]}" "$cublas" \
    "cuda-python>=${ort_cuda},<$((ort_cuda + 1))" torch "safetensors>=0.4" "matplotlib>=3.7" \
    pytest hypothesis || return 1
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

why_not() {  # why_not CHECK: one line saying why CHECK cannot run here; nothing when it can
  local reason rc=0
  reason=$("$PY" - "$1" "$MODE" "$SIMULATE" 2>"$WORK/why-not.err" <<'EOF'
import importlib, importlib.util, sys

check, mode, simulate = sys.argv[1:4]
offline = ", and cannot be installed offline" if mode == "offline" else ""


def imported(name):
    """(module, None), or (None, why not): not installed, or installed and failing to import."""
    if importlib.util.find_spec(name) is None:
        return None, f"{name} is not installed{offline}"
    try:
        return importlib.import_module(name), None
    except Exception as exc:
        return None, f"{name} is installed but does not import ({type(exc).__name__}: {exc})"


def torch_cuda():
    torch, why = imported("torch")
    if why:
        return None, why
    if torch.version.cuda is None:
        return None, f"torch {torch.__version__} is a CPU build"
    if simulate == "1" or not torch.cuda.is_available():
        return None, f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no CUDA device"
    return torch, None


def why():
    if check == "tensorrt":
        return imported("tensorrt")[1]
    if check == "onnxruntime-gpu":
        ort, reason = imported("onnxruntime")
        if reason:
            return reason
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            return (f"onnxruntime {ort.__version__} has no CUDA provider: it is the CPU build "
                    f"(onnxruntime-gpu is needed{offline})")
        return None
    if check == "torch-cuda":
        return torch_cuda()[1]
    if check == "nccl":
        torch, reason = torch_cuda()
        if reason:
            return reason
        import torch.distributed as dist
        if not dist.is_available():
            return f"torch {torch.__version__} is built without torch.distributed"
        if not dist.is_nccl_available():
            return f"torch {torch.__version__} is built without nccl"
        return None
    if check == "pytest":
        return imported("pytest")[1] or imported("hypothesis")[1]
    return f"unknown check {check}"


print(why() or "", end="")
EOF
) || rc=$?
  [ "$rc" = 0 ] || reason="the probe for $1 failed: $(tail -n 1 "$WORK/why-not.err")"
  printf '%s' "$reason"
}

if [ "${SKIP_INSTALL:-0}" = 1 ]; then
  echo "==> install skipped (SKIP_INSTALL=1)"
elif [ "$MODE" = offline ]; then
  step "install (offline: no venv, the project on PYTHONPATH)" offline_install
else
  step "install the gpu extra into $VENV" online_install
fi
if [ "${#failures[@]}" -eq 0 ]; then
  step "imports (numpy, onnx, onnxruntime, torch, the project)" import_check
fi
if [ "${#failures[@]}" -gt 0 ]; then
  echo "gpu-check: FAILED: ${failures[*]}; nothing else can run" >&2
  exit 1
fi
if [ "${INSTALL_ONLY:-0}" = 1 ]; then
  echo "gpu-check: install and imports ok (INSTALL_ONLY=1)"
  exit 0
fi
installed=$SECONDS
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

step "bench-runtimes list" "${BR[@]}" list
if [ "$MODE" = online ] && [ "$SIMULATE" != 1 ]; then
  step "environment" environment
fi
if [ -f "$WORK/tensorrt-skipped" ] && [ "$MODE" = online ]; then
  skip "TensorRT (trt, ort-trt)" "$(cat "$WORK/tensorrt-skipped")"
else
  reason=$(why_not tensorrt)
  [ -n "$reason" ] && skip "TensorRT (trt, ort-trt)" "$reason"
fi
reason=$(why_not onnxruntime-gpu)
[ -n "$reason" ] && skip "onnxruntime-gpu (ort-cuda, ort-trt)" "$reason"

RUNTIMES="trt,ort-cuda,ort-trt,torch-cuda,ort-cpu"
step "benchmark + parity: batch 1 and 32, fp32 and fp16 ($RUNTIMES)" "${BR[@]}" run \
  --models resnet18,resnet50 --runtimes "$RUNTIMES" --batch 1,32 --precision fp32,fp16 \
  --warmup-s 0.3 --duration-s 1 --out "$WORK/bench"

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
torch_cuda=$(why_not torch-cuda)
if [ -n "$torch_cuda" ]; then
  skip "torch-cuda parity bf16 (resnet18, resnet50)" "$torch_cuda"
else
  step "torch-cuda parity bf16 (resnet18, resnet50)" bf16_parity
fi
# The bf16 routes (TensorRT on graphgen's bfloat16 graph, the TensorRT provider's
# trt_bf16_enable, torch-cuda), each judged against torch float64 on the fp32 graph, in latency
# and throughput mode; run when at least one of their engines can run here.
bf16_usable=0
bf16_why=""
for check in tensorrt onnxruntime-gpu torch-cuda; do
  reason=$(why_not "$check")
  if [ -z "$reason" ]; then
    bf16_usable=1
  else
    bf16_why="${bf16_why:+$bf16_why; }$reason"
  fi
done
BF16_RUNTIMES="trt,ort-trt,torch-cuda"
if [ "$bf16_usable" = 1 ]; then
  step "bf16 routes, latency and throughput: batch 1 and 32 ($BF16_RUNTIMES)" "${BR[@]}" run \
    --models resnet18,resnet50 --runtimes "$BF16_RUNTIMES" --batch 1,32 --precision bf16 \
    --mode latency,throughput --warmup-s 0.3 --duration-s 1 --out "$WORK/bench-bf16"
else
  skip "bf16 routes, latency and throughput: batch 1 and 32 ($BF16_RUNTIMES)" "$bf16_why"
fi

TR=("$PY" -m train)
if [ -n "$torch_cuda" ]; then
  skip "resnet-train 200 steps on CUDA (AMP, channels-last) + verified export" "$torch_cuda"
else
  step "resnet-train 200 steps on CUDA (AMP, channels-last) + verified export" "${TR[@]}" \
    --depth 20 --dataset synthetic --synthetic-train 12800 --synthetic-val 1000 \
    --batch-size 64 --epochs 1 --workers 2 --device cuda --out "$WORK/train" \
    --export "$WORK/train/resnet20.onnx" --quiet
fi
if [ -f "$WORK/train/resnet20.onnx" ] && [ -z "$torch_cuda" ]; then
  step "parity of the exported graph (torch-cuda, ort-cpu)" "${BR[@]}" parity \
    --models "$WORK/train/resnet20.onnx" --runtimes torch-cuda,ort-cpu
elif [ -n "$torch_cuda" ]; then
  skip "parity of the exported graph (torch-cuda, ort-cpu)" "no training on CUDA: $torch_cuda"
else
  skip "parity of the exported graph (torch-cuda, ort-cpu)" \
    "the training step failed (see above) and wrote no export"
fi
reason=$(why_not nccl)
if [ -n "$reason" ]; then
  skip "resnet-train under torchrun, 1 process, nccl" "$reason"
else
  step "resnet-train under torchrun, 1 process, nccl" "$PY" -m torch.distributed.run \
    --standalone --nproc_per_node 1 -m train --depth 20 --dataset synthetic \
    --synthetic-train 2560 --synthetic-val 500 --batch-size 64 --epochs 1 --workers 0 \
    --device cuda --out "$WORK/ddp" --quiet
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

reason=$(why_not pytest)
if [ -n "$reason" ]; then
  skip "pytest -m gpu" "$reason (offline: bring $WHEELS, see scripts/gpu-wheels.sh)"
else
  step "pytest -m gpu" "$PY" -m pytest -q -m gpu -rs -p no:cacheprovider tests
fi

[ -f "$WORK/bench/results.jsonl" ] && cp "$WORK/bench/results.jsonl" "$OUT/bench-results.jsonl"
[ -f "$WORK/bench-bf16/results.jsonl" ] &&
  cat "$WORK/bench-bf16/results.jsonl" >> "$OUT/bench-results.jsonl"

table() {
  "$PY" - "$OUT" "$OUT/bench-results.jsonl" "$SIMULATE" "$MODE" "$PY" <<'EOF'
"""One table, printed and written to OUT/gpu-check.md: every step with its status, time and
note, then every benchmark record with its parity verdict (the record's own check against torch
float64; the parity CLI's verdict beside it when PARITY_CLI=1 ran it). Exit 1 when a record
failed, an ok record's parity did not pass, or there is no record at all; a skipped record
(an engine this machine lacks) is listed with its reason and is not a failure."""
import json, platform, sys
from pathlib import Path

out, results, simulate, mode, python = Path(sys.argv[1]), Path(sys.argv[2]), *sys.argv[3:6]
if simulate == "1":
    head = ("**CPU simulation (SIMULATE=1), not a GPU run**: no GPU on this machine; every GPU "
            "check is skipped with its reason, the rest ran.")
else:
    head = "GPU run."
lines = [f"{head} Mode: {mode}; python: {python}; host: {platform.node()}.", "",
         "| step | status | s | note |", "|---|---|---:|---|"]
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
for line in results.read_text().splitlines() if results.exists() else []:
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
    rt += " (throughput)" if r.get("mode") == "throughput" else ""
    status = str(r.get("status", ""))
    pv = verdict(r) if status == "ok" else "-"
    rel = (r.get("parity") or {}).get("rel_l2") if isinstance(r.get("parity"), dict) else None
    note = (r.get("reason") or "").replace("|", "/").replace("\n", " ")
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
