"""The machine a sweep ran on, recorded once per result folder.

Results from several folders merge into one report keyed by `machine`, so a record never needs
to repeat any of this. The measured fp32 matmul peak lets a report show each result as a
fraction of what this machine's BLAS reaches, which is more honest than a datasheet number.
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


def collect(*, machine: str | None = None, threads: int | None = None) -> dict[str, Any]:
    """Everything about this host a report needs; `machine` labels it in merged reports."""
    uname = platform.uname()
    return {
        "machine": machine or socket.gethostname(),
        "collected_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "cpu": {"model": cpu_model(), **cpu_cores(), "arch": uname.machine},
        "gpus": gpus(),
        "os": f"{uname.system} {uname.release}",
        "python": platform.python_version(),
        "packages": package_versions(),
        "threads": {
            "requested": threads,
            **{k: os.environ[k] for k in THREAD_VARS if k in os.environ},
        },
        **_peak_fields(),
    }


def _peak_fields() -> dict[str, Any]:
    rates = matmul_peak()
    return {"matmul_peak_gflops": max(rates.values()), "matmul_peak_by_blas": rates}
