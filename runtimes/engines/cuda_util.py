"""Thin helpers over cuda-python's runtime API: checked calls, device and pinned buffers, streams,
events. Used by the native TensorRT runner and by the onnxruntime GPU runners for device timing.

Why cuda-python (`cuda.bindings.runtime`) and not PyCUDA: PyCUDA ships only a source
distribution that compiles against a local CUDA toolkit (no binary wheels), so a plain
`pip install` fails on a machine that has a driver but no toolkit. cuda-python has binary wheels
that need only the driver, and NVIDIA's own TensorRT samples moved to it in 10.13/10.14
(`NVIDIA/TensorRT: CHANGELOG.md`, `samples/python/common_runtime.py`).

Every `cuda.bindings.runtime` call returns a tuple whose first item is a `cudaError_t`; `call`
checks it and returns the rest. Nothing here imports CUDA at module level: `import runtimes`
works on a machine without it, and `availability()` says why the GPU path cannot run.
"""

from __future__ import annotations

import ctypes
import importlib
from collections.abc import Callable
from functools import cache
from types import ModuleType
from typing import Any

import numpy as np

from runtimes.base import RunnerError


class CudaError(RunnerError):
    """A CUDA runtime call failed; the message names the call and CUDA's own error text."""


@cache
def cudart() -> ModuleType:
    """The runtime module: `cuda.bindings.runtime` (cuda-python >= 12.6.1), else the older
    `cuda.cudart` path of the same bindings."""
    try:
        return importlib.import_module("cuda.bindings.runtime")
    except ImportError:
        return importlib.import_module("cuda.cudart")


def _error_text(rt: ModuleType, err: Any) -> str:
    try:
        _, text = rt.cudaGetErrorString(err)
        return text.decode() if isinstance(text, bytes) else str(text)
    except Exception:  # the error text is a courtesy; never mask the real failure
        return str(err)


def call(result: Any, what: str) -> Any:
    """Check a `(cudaError_t, *values)` tuple: return None, the value, or the values."""
    rt = cudart()
    if isinstance(result, tuple):
        err, values = result[0], result[1:]
    else:
        err, values = result, ()
    if err != rt.cudaError_t.cudaSuccess:
        raise CudaError(
            f"{what} failed: {err.name if hasattr(err, 'name') else err} ({_error_text(rt, err)})"
        )
    if not values:
        return None
    return values[0] if len(values) == 1 else values


# -- availability -----------------------------------------------------------------------------
def cuda_python_version() -> str | None:
    """The installed bindings' version (cuda-bindings, or the older cuda-python that held them);
    its major is the CUDA major the bindings' runtime needs from the driver."""
    from importlib import metadata

    for dist in ("cuda-bindings", "cuda-python"):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def cuda_version_text(version: int) -> str:
    """CUDA's integer version (1000 * major + 10 * minor, as cudaDriverGetVersion gives it)."""
    return f"{version // 1000}.{version % 1000 // 10}"


def device_count_problem(
    error: str, *, text: str, driver_version: int, runtime_version: int, bindings: str | None
) -> str:
    """What a failed cudaGetDeviceCount means, in words a user can act on. cuda-python's runtime
    returns cudaErrorInsufficientDriver (35), not "no device", both when no driver is installed
    (cudaDriverGetVersion gives 0) and when the driver is older than its CUDA major (cuda-python
    13 on a CUDA 12 driver)."""
    runtime = f"cuda-python {bindings or '?'} (a CUDA {cuda_version_text(runtime_version)} runtime)"
    if error == "cudaErrorInsufficientDriver":
        if driver_version <= 0:
            return f"no NVIDIA driver found: {runtime} needs one ({error})"
        major = driver_version // 1000
        return (
            f"the NVIDIA driver supports CUDA {cuda_version_text(driver_version)}, older than "
            f"{runtime} needs: install cuda-python for CUDA {major} "
            f"(pip install 'cuda-python>={major},<{major + 1}') or update the driver ({error})"
        )
    if error == "cudaErrorNoDevice":
        return f"no CUDA device: the driver found none ({error})"
    return f"CUDA cannot be used: {text} ({error})"


def availability(device: int = 0) -> str | None:
    """None when a CUDA device can be used through cuda-python, else the reason."""
    try:
        rt = cudart()
    except ImportError:
        return "cuda-python not installed"
    except Exception as exc:  # a broken install: say so rather than crash `list`
        return f"cuda-python failed to import: {exc}"
    err, *rest = rt.cudaGetDeviceCount()
    if err != rt.cudaError_t.cudaSuccess:
        driver = rt.cudaDriverGetVersion()
        runtime = rt.cudaRuntimeGetVersion()
        return device_count_problem(
            getattr(err, "name", str(err)),
            text=_error_text(rt, err),
            driver_version=int(driver[1]) if driver[0] == rt.cudaError_t.cudaSuccess else 0,
            runtime_version=int(runtime[1]) if runtime[0] == rt.cudaError_t.cudaSuccess else 0,
            bindings=cuda_python_version(),
        )
    count = rest[0] if rest else 0
    if count == 0:
        return "no CUDA device"
    if device >= count:
        return f"no CUDA device {device} (found {count})"
    return None


def device_info(device: int = 0) -> dict[str, Any]:
    """Name, compute capability, memory and versions: what an engine cache is keyed on."""
    rt = cudart()
    prop = call(rt.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
    name = prop.name.decode(errors="replace") if isinstance(prop.name, bytes) else str(prop.name)
    return {
        "device": device,
        "name": name.rstrip("\x00").strip(),
        "compute_capability": f"{prop.major}.{prop.minor}",
        "total_memory_bytes": int(prop.totalGlobalMem),
        "driver_version": call(rt.cudaDriverGetVersion(), "cudaDriverGetVersion"),
        "runtime_version": call(rt.cudaRuntimeGetVersion(), "cudaRuntimeGetVersion"),
    }


def set_device(device: int) -> None:
    call(cudart().cudaSetDevice(device), f"cudaSetDevice({device})")


def used_device_memory() -> int:
    """Bytes in use on the current device (all processes): total minus free."""
    free, total = call(cudart().cudaMemGetInfo(), "cudaMemGetInfo")
    return int(total) - int(free)


# -- device memory per runner -----------------------------------------------------------------
# GPU runners that started loading in this process: "device" counts every one (each allocates
# device memory), "torch" the torch-cuda ones (the only ones torch's allocator counters see).
_gpu_loads = {"device": 0, "torch": 0}


class MemoryMeter:
    """The device memory one runner added: `read()` minus its value when the runner started
    loading, sampled only until another GPU runner of this process that `read()` can see
    starts loading.

    The readings are not per engine: `cudaMemGetInfo` is device-wide (every engine, every
    process) and torch's counters cover every torch tensor of the process. An interleaved group
    loads its engines one after another and then times them together, so a reading taken after
    the next engine loaded would count that engine too: the meter stops there and `scope` says
    so. Other processes on the GPU always count in device-wide readings; `scope` says that too.
    `domain` is "device" for cudaMemGetInfo readings (any GPU engine's load stops them) or
    "torch" for torch's allocator (only another torch-cuda load does)."""

    def __init__(self, read: Callable[[], int], *, what: str, domain: str = "device") -> None:
        _gpu_loads["device"] += 1
        if domain != "device":
            _gpu_loads[domain] += 1
        self._domain = domain
        self._load = _gpu_loads[domain]
        self._read = read
        self._what = what
        self._baseline = read()
        self.peak = 0

    @property
    def alone(self) -> bool:
        """No other GPU runner whose memory `read()` sees started loading since this one did."""
        return _gpu_loads[self._domain] == self._load

    def sample(self) -> None:
        if self.alone:
            self.peak = max(self.peak, self._read() - self._baseline)

    @property
    def scope(self) -> str:
        text = f"{self._what}, above what was in use when this runner started loading"
        if not self.alone:
            text += "; sampling stopped when another engine of this process loaded"
        return text


# -- streams and events -----------------------------------------------------------------------
class Stream:
    """A non-blocking CUDA stream; `handle` is the integer TensorRT and onnxruntime take."""

    def __init__(self) -> None:
        rt = cudart()
        self._stream = call(
            rt.cudaStreamCreateWithFlags(rt.cudaStreamNonBlocking), "cudaStreamCreateWithFlags"
        )

    @property
    def raw(self) -> Any:
        return self._stream

    @property
    def handle(self) -> int:
        return int(self._stream)

    def synchronize(self) -> None:
        call(cudart().cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")

    def destroy(self) -> None:
        if self._stream is not None:
            stream, self._stream = self._stream, None
            call(cudart().cudaStreamDestroy(stream), "cudaStreamDestroy")


class EventTimer:
    """Two CUDA events around work enqueued on one stream: device time, not host time."""

    def __init__(self, stream: Stream) -> None:
        rt = cudart()
        self.stream = stream
        self._start: Any = None
        self._end: Any = None
        self._start = call(rt.cudaEventCreate(), "cudaEventCreate")
        self._end = call(rt.cudaEventCreate(), "cudaEventCreate")

    def start(self) -> None:
        call(cudart().cudaEventRecord(self._start, self.stream.raw), "cudaEventRecord")

    def stop_seconds(self) -> float:
        """Record the end event, wait for it, return the elapsed device time in seconds."""
        rt = cudart()
        call(rt.cudaEventRecord(self._end, self.stream.raw), "cudaEventRecord")
        call(rt.cudaEventSynchronize(self._end), "cudaEventSynchronize")
        ms = call(rt.cudaEventElapsedTime(self._start, self._end), "cudaEventElapsedTime")
        return float(ms) * 1e-3

    def destroy(self) -> None:
        rt = cudart()
        events, self._start, self._end = (self._start, self._end), None, None
        for event in events:
            if event is not None:
                call(rt.cudaEventDestroy(event), "cudaEventDestroy")


# -- memory -----------------------------------------------------------------------------------
class DeviceBuffer:
    """`nbytes` of device memory from cudaMalloc; `ptr` is what set_tensor_address takes."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = int(nbytes)
        self._ptr = call(cudart().cudaMalloc(max(self.nbytes, 1)), f"cudaMalloc({nbytes})")

    @property
    def ptr(self) -> int:
        return int(self._ptr)

    def copy_from_host(self, array: np.ndarray, stream: Stream) -> None:
        """Async host-to-device copy of a C-contiguous array that fits the buffer. The array
        must stay alive until the stream is synchronised."""
        _check_fits(array, self.nbytes)
        rt = cudart()
        call(
            rt.cudaMemcpyAsync(
                self.ptr,
                array.ctypes.data,
                array.nbytes,
                rt.cudaMemcpyKind.cudaMemcpyHostToDevice,
                stream.raw,
            ),
            "cudaMemcpyAsync(host to device)",
        )

    def copy_to_host(self, array: np.ndarray, stream: Stream) -> None:
        """Async device-to-host copy of `array.nbytes` into a C-contiguous, writable array."""
        _check_fits(array, self.nbytes)
        rt = cudart()
        call(
            rt.cudaMemcpyAsync(
                array.ctypes.data,
                self.ptr,
                array.nbytes,
                rt.cudaMemcpyKind.cudaMemcpyDeviceToHost,
                stream.raw,
            ),
            "cudaMemcpyAsync(device to host)",
        )

    def close(self) -> None:
        """Free the memory; idempotent, so cleanup after a partial activation can call it."""
        if self._ptr is not None:
            ptr, self._ptr = self._ptr, None
            call(cudart().cudaFree(ptr), "cudaFree")

    free = close


class PinnedArray:
    """A numpy array over page-locked host memory (cudaMallocHost), so end-to-end timing
    measures DMA copies the way trtexec does, not pageable-memory staging."""

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype) -> None:
        dtype = np.dtype(dtype)
        count = int(np.prod(shape, dtype=np.int64))
        nbytes = max(count * dtype.itemsize, 1)
        self._ptr = call(cudart().cudaMallocHost(nbytes), f"cudaMallocHost({nbytes})")
        raw = (ctypes.c_byte * nbytes).from_address(int(self._ptr))
        flat = np.frombuffer(memoryview(raw).cast("B"), dtype=np.uint8, count=nbytes)
        self.array: np.ndarray = flat[: count * dtype.itemsize]
        self.array = self.array.view(dtype).reshape(shape)

    def view(self, shape: tuple[int, ...]) -> np.ndarray:
        """The first prod(shape) elements, reshaped: a smaller batch in a max-size buffer."""
        count = int(np.prod(shape, dtype=np.int64))
        view: np.ndarray = self.array.reshape(-1)[:count].reshape(shape)
        return view

    def close(self) -> None:
        """Free the page-locked memory; idempotent (see DeviceBuffer.close)."""
        if self._ptr is not None:
            self.array = np.empty(0, dtype=np.uint8)
            ptr, self._ptr = self._ptr, None
            call(cudart().cudaFreeHost(ptr), "cudaFreeHost")

    free = close


def _check_fits(array: np.ndarray, nbytes: int) -> None:
    if not array.flags.c_contiguous:
        raise ValueError("CUDA copies need a C-contiguous array")
    if array.nbytes > nbytes:
        raise ValueError(f"array of {array.nbytes} bytes does not fit a {nbytes}-byte buffer")
