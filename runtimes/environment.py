"""The machine a sweep ran on, recorded once per result folder.

Results from several folders merge into one report keyed by `machine`, so a record never needs
to repeat any of this. The measured fp32 matmul peak lets a report show each result as a
fraction of what this machine's BLAS reaches, which is more honest than a datasheet number.
"""

from __future__ import annotations

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


def matmul_peak_gflops(n: int = 1024, seconds: float = 0.5) -> float:
    """Best fp32 GEMM rate numpy's BLAS reaches here, over about `seconds` (2 n^3 per product)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    a @ b  # warm the BLAS threads
    best = float("inf")
    deadline = time.perf_counter() + seconds
    runs = 0
    while runs < 3 or time.perf_counter() < deadline:
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
        runs += 1
    return 2 * n**3 / best / 1e9


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
        "matmul_peak_gflops": round(matmul_peak_gflops(), 1),
    }
