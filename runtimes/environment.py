"""The machine a sweep ran on, recorded once per result folder.

Results from several folders merge into one report keyed by `machine`, so a record never needs
to repeat any of this. The measured matmul peaks let a report show each result as a fraction
of what this machine reaches, which is more honest than a datasheet number, and each precision
is measured on its own: bf16 and int8 run on other units than fp32 (AMX tiles, AVX-512 BF16,
VNNI), whose peaks on an AMX Xeon are 10x and more the fp32 one, so dividing an int8 result
by the fp32 peak (as reports did) made it look like 80% of a machine it used 6% of.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.metadata
import os
import platform
import shutil
import socket
import subprocess
import time
from typing import Any

import numpy as np

ENGINE_PACKAGES = (
    "numpy",
    "onnx",
    "onnxruntime",
    "onnxruntime-gpu",
    "openvino",
    "torch",
    "tensorrt",
    "cuda-python",
)
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_WAIT_POLICY")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_cores() -> dict[str, int | None]:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {"logical": os.cpu_count(), "usable": usable}


def package_versions() -> dict[str, str]:
    versions = {}
    for name in ENGINE_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def gpus() -> list[dict[str, str]]:
    """GPUs from nvidia-smi (name, driver, memory); empty where there is none."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return _torch_gpus()
    try:
        out = subprocess.run(
            [smi, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    rows = [[c.strip() for c in line.split(",")] for line in out.splitlines() if line.strip()]
    return [dict(zip(("name", "driver", "memory"), row, strict=False)) for row in rows]


def _torch_gpus() -> list[dict[str, str]]:
    try:
        import torch
    except ImportError:
        return []
    if not torch.cuda.is_available():
        return []
    return [
        {"name": torch.cuda.get_device_name(i), "driver": f"cuda {torch.version.cuda}"}
        for i in range(torch.cuda.device_count())
    ]


def _best_rate(run: Any, flop: float, seconds: float, trials: int) -> float:
    """Best of `trials` short trials (each the fastest of its runs over seconds / trials):
    a peak is the best the machine did, so a noisy neighbour can only lower it."""
    run()  # warm the BLAS threads and caches
    best = float("inf")
    for _ in range(trials):
        deadline = time.perf_counter() + seconds / trials
        runs = 0
        while runs < 2 or time.perf_counter() < deadline:
            t0 = time.perf_counter()
            run()
            best = min(best, time.perf_counter() - t0)
            runs += 1
    return flop / best / 1e9


def matmul_peak(n: int = 1024, seconds: float = 1.5, trials: int = 5) -> dict[str, float]:
    """The fp32 GEMM rate (GFLOP/s, 2 n^3 per product) of each BLAS this machine has: numpy's,
    torch's (MKL/oneDNN) and onnxruntime's (MLAS). numpy alone understates the CPU when its
    OpenBLAS runs a conservative kernel (OPENBLAS_CORETYPE), which made engines read 142% and
    251% of "peak"; the report divides by the best of the three."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    flop = 2.0 * n**3
    share = seconds / 3
    rates = {"numpy": _best_rate(lambda: a @ b, flop, share, trials)}
    try:
        import torch

        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        rates["torch"] = _best_rate(lambda: torch.mm(ta, tb), flop, share, trials)
    except ImportError:
        pass
    with contextlib.suppress(Exception):  # onnxruntime missing or unable: the others stand
        rates["onnxruntime"] = ort_gemm_rate(
            "MatMul", a, b, np.float32, seconds=share, trials=trials
        )
    return {k: round(v, 1) for k, v in rates.items()}


def ort_gemm_rate(
    op: str, a: np.ndarray, b: np.ndarray, out: type[np.generic], *, seconds: float, trials: int
) -> float:
    """The rate (G(FL)OP/s, 2 n^3 per product) of onnxruntime's CPU provider running one `op`
    node (MatMul, MatMulInteger) on the square matrices `a` and `b`, as `_best_rate` measures
    it. ImportError when onnxruntime is missing."""
    import onnxruntime as ort
    from onnx import helper

    n = a.shape[0]

    def tensor(name: str, dtype: np.dtype[Any] | type[np.generic]) -> Any:
        return helper.make_tensor_value_info(
            name, helper.np_dtype_to_tensor_dtype(np.dtype(dtype)), [n, n]
        )

    graph = helper.make_graph(
        [helper.make_node(op, ["a", "b"], ["c"])],
        op,
        [tensor("a", a.dtype), tensor("b", b.dtype)],
        [tensor("c", out)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = min(model.ir_version, 9)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(
        model.SerializeToString(), sess_options=opts, providers=["CPUExecutionProvider"]
    )
    feeds = {"a": a, "b": b}
    return _best_rate(lambda: session.run(None, feeds), 2.0 * n**3, seconds, trials)


# The CPU flags that decide which units bf16 and int8 run on (x86 names from /proc/cpuinfo).
BF16_FLAGS = ("amx_bf16", "avx512_bf16")
INT8_FLAGS = ("amx_int8", "avx512_vnni", "avx_vnni")
SHOWN_FLAGS = ("avx2", "avx512f", *BF16_FLAGS, *INT8_FLAGS, "amx_tile")
# The matmul unit each precision's work runs on (CPU engines run fp16 graphs in fp32 kernels).
PEAK_OF = {"fp32": "fp32", "fp16": "fp32", "bf16": "bf16", "int8": "int8", "int8-bf16": "int8"}


def cpu_flags() -> list[str]:
    """The flags of SHOWN_FLAGS this CPU has, in that order."""
    from runtimes.int8 import cpu_flags as all_flags

    have = all_flags()
    return [f for f in SHOWN_FLAGS if f in have]


def openvino_gemm_rate(
    unit: str, n: int = 1024, *, seconds: float, trials: int, threads: int | None = None
) -> tuple[float, str]:
    """OpenVINO's CPU plugin on one n x n by n x n MatMul with constant weights (its
    FullyConnected kernel), at `unit`: "fp32" (f32 hint), "bf16" (bf16 hint: AMX or AVX-512
    BF16 where present) or "int8" (FakeQuantize on both inputs, which OpenVINO's low-precision
    transformations turn into a u8 x i8 kernel: AMX or VNNI where present). Returns the rate
    (G(FL)OP/s, 2 n^3 per product) and the precision the kernel actually ran in, read from the
    compiled model (on a CPU without bf16 units the bf16 hint comes back f32)."""
    import openvino as ov
    import openvino.opset13 as ops

    from runtimes.engines.openvino_cpu import shared_core

    rng = np.random.default_rng(0)
    a = ops.parameter([n, n], ov.Type.f32, name="a")
    x: Any = a
    w: Any = ops.constant(rng.standard_normal((n, n)).astype(np.float32))
    if unit == "int8":

        def c(v: float) -> Any:
            return ops.constant(np.array(v, np.float32))

        x = ops.fake_quantize(a, c(0.0), c(4.0), c(0.0), c(4.0), 256)
        w = ops.fake_quantize(w, c(-4.0), c(4.0), c(-4.0), c(4.0), 255)
    model = ov.Model([ops.matmul(x, w, False, False)], [a], f"gemm-{unit}")
    config: dict[str, Any] = {
        "INFERENCE_PRECISION_HINT": "bf16" if unit == "bf16" else "f32",
        "PERFORMANCE_HINT": "LATENCY",
    }
    if threads is not None:
        config["INFERENCE_NUM_THREADS"] = threads
    compiled = shared_core().compile_model(model, "CPU", config)
    ran = "?"
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        if info["layerType"].astype(str) in ("FullyConnected", "MatMul"):
            ran = info["runtimePrecision"].astype(str)
    request = compiled.create_infer_request()
    data = rng.uniform(0, 4, (n, n)).astype(np.float32)
    request.set_input_tensor(ov.Tensor(data, shared_memory=True))
    return _best_rate(request.infer, 2.0 * n**3, seconds, trials), ran


def torch_bf16_rate(n: int = 1024, *, seconds: float, trials: int) -> float:
    """torch.mm in bfloat16 (oneDNN: AMX or AVX-512 BF16 where present, else emulated)."""
    import torch

    a = torch.randn(n, n, dtype=torch.bfloat16)
    b = torch.randn(n, n, dtype=torch.bfloat16)
    return _best_rate(lambda: torch.mm(a, b), 2.0 * n**3, seconds, trials)


def matmul_peaks(
    precisions: tuple[str, ...] | list[str] = ("fp32",),
    *,
    seconds: float = 1.5,
    trials: int = 5,
) -> dict[str, dict[str, Any]]:
    """The machine's matmul peak for each unit the `precisions` run on (PEAK_OF; fp32
    always): {"fp32": {"gflops": best, "by": {engine: rate}}, "bf16": ..., "int8": ...}, each
    measured with the engines' own kernels (numpy/torch/onnxruntime/OpenVINO fp32; torch and
    OpenVINO bf16; onnxruntime MatMulInteger and OpenVINO int8). A rate whose kernel ran in
    another precision than asked (OpenVINO's bf16 on a CPU without bf16 units) is labelled
    with what ran. Only the units asked for are measured: each costs about `seconds`."""
    units = ["fp32", *sorted({PEAK_OF.get(p, "fp32") for p in precisions} - {"fp32"})]
    share = seconds / 3
    out: dict[str, dict[str, Any]] = {}
    for unit in units:
        rates: dict[str, float] = {}
        if unit == "fp32":
            rates.update(matmul_peak(seconds=seconds, trials=trials))
        elif unit == "bf16":
            with contextlib.suppress(Exception):  # torch missing: the others stand
                rates["torch"] = round(torch_bf16_rate(seconds=share, trials=trials), 1)
        elif unit == "int8":
            from runtimes.int8 import int8_matmul_peak

            rates.update(int8_matmul_peak(seconds=share, trials=trials))
        with contextlib.suppress(Exception):  # openvino missing or unable
            rate, ran = openvino_gemm_rate(unit, seconds=share, trials=trials)
            asked = {"fp32": "f32", "bf16": "bf16", "int8": "u8"}[unit]
            key = "openvino" if ran in (asked, "i8") else f"openvino (ran {ran})"
            rates[key] = round(rate, 1)
        if rates:
            out[unit] = {"gflops": max(rates.values()), "by": rates}
    return out


def collect(
    *,
    machine: str | None = None,
    threads: int | None = None,
    precisions: tuple[str, ...] | list[str] = ("fp32",),
) -> dict[str, Any]:
    """Everything about this host a report needs; `machine` labels it in merged reports; the
    matmul peaks of the units `precisions` run on."""
    uname = platform.uname()
    return {
        "machine": machine or socket.gethostname(),
        "collected_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "cpu": {
            "model": cpu_model(),
            **cpu_cores(),
            "arch": uname.machine,
            "flags": cpu_flags(),
        },
        "gpus": gpus(),
        "os": f"{uname.system} {uname.release}",
        "python": platform.python_version(),
        "packages": package_versions(),
        "threads": {
            "requested": threads,
            **{k: os.environ[k] for k in THREAD_VARS if k in os.environ},
        },
        **_peak_fields(precisions),
    }


def _peak_fields(precisions: tuple[str, ...] | list[str]) -> dict[str, Any]:
    peaks = matmul_peaks(precisions)
    fp32 = peaks.get("fp32") or {"gflops": None, "by": {}}
    return {
        "matmul_peak_gflops": fp32["gflops"],  # fp32, as reports before version 2 read it
        "matmul_peak_by_blas": fp32["by"],
        "matmul_peaks": peaks,
    }
