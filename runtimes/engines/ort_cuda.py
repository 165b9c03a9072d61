"""`ort-cuda`: onnxruntime's CUDA execution provider, and `OrtGpuRunner`, the base it shares
with `ort-trt` (runtimes/engines/ort_trt.py).

Both extend `OrtRunner`, which sets `session.disable_cpu_ep_fallback` and fails when the session's
first provider is not the one asked for: a CPU fallback is a failed result, never a pass. The TRT
provider additionally has to have built at least one TensorRT engine (found in its engine cache
after the first run); otherwise every node ran on the CUDA provider and the result is not TRT's.

Timing: inputs are copied to the device once and bound with IO binding (outputs stay on the
device), so a timed run is the session alone; CUDA events on the stream handed to the provider as
`user_compute_stream` bracket it. `timing="end-to-end"` times host arrays in and out instead.
Options follow the providers' docs (onnxruntime.ai/docs/execution-providers).
"""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from runtimes.base import RunnerError, UnsupportedError
from runtimes.engines.ort import OrtRunner, provider_reason

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from runtimes.base import RunnerArgs

CUDA_EP = "CUDAExecutionProvider"
CONV_ALGO_SEARCH = ("EXHAUSTIVE", "HEURISTIC", "DEFAULT")


class OrtGpuRunner(OrtRunner):
    """Shared by both providers: device selection, stream, IO binding, event timing."""

    device: ClassVar[str] = "cuda"
    packages: ClassVar[tuple[str, ...]] = ("onnxruntime-gpu", "onnxruntime")
    precisions: ClassVar[tuple[str, ...]] = ("fp32", "fp16")

    @property
    def clock(self) -> str:
        return "cuda events" if self.timing == "device" else "perf_counter_ns"

    def __init__(
        self,
        model_path: str | Path,
        *,
        device_id: int = 0,
        cudnn_conv_algo_search: str = "EXHAUSTIVE",
        tf32: bool = False,
        **common: Unpack[RunnerArgs],
    ) -> None:
        super().__init__(model_path, **common)
        if cudnn_conv_algo_search not in CONV_ALGO_SEARCH:
            raise UnsupportedError(
                f"cudnn_conv_algo_search must be one of {', '.join(CONV_ALGO_SEARCH)}"
            )
        self.device_id = int(device_id)
        self.cudnn_conv_algo_search = cudnn_conv_algo_search
        self.tf32 = bool(tf32)
        self._stream: Any = None
        self._timer: Any = None
        self._io: Any = None
        self._facts: dict[str, Any] = {}
        self._memory: Any = None  # cuda_util.MemoryMeter, from activate on

    @classmethod
    def availability(cls) -> str | None:
        reason = provider_reason(cls.provider)
        if reason:
            return reason
        from runtimes.engines import cuda_util

        return cuda_util.availability()

    def cuda_options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {
            "device_id": str(self.device_id),
            "cudnn_conv_algo_search": self.cudnn_conv_algo_search,
            "use_tf32": "1" if self.tf32 else "0",
        }
        if self._stream is not None:
            opts["user_compute_stream"] = str(self._stream.handle)
        return opts

    def activate_impl(self) -> None:
        from runtimes.engines import cuda_util

        reason = self.availability()
        if reason:
            raise RunnerError(f"{self.name} unavailable: {reason}")
        self._preload_libraries()
        cuda_util.set_device(self.device_id)
        self._facts["gpu"] = cuda_util.device_info(self.device_id)
        self._memory = cuda_util.MemoryMeter(
            cuda_util.used_device_memory, what="device-wide (every process on the GPU)"
        )
        self._stream = cuda_util.Stream()
        self._timer = cuda_util.EventTimer(self._stream)
        super().activate_impl()  # creates the session and rejects a provider fallback
        self.input_names = [i.name for i in self.session.get_inputs()]
        self._sample_memory()

    def _preload_libraries(self) -> None:
        """onnxruntime-gpu >= 1.21 can load CUDA/cuDNN from the nvidia-* wheels (or torch's);
        without it the provider library fails to load and the session falls back to CPU."""
        import onnxruntime as ort

        preload = getattr(ort, "preload_dlls", None)
        if preload is None:
            self._facts["preload_dlls"] = "not available"
            return
        try:
            # preload_dlls reports missing or mismatched libraries with print(): keep stdout clean
            # for `parity --json` and friends.
            with contextlib.redirect_stdout(sys.stderr):
                preload()
            self._facts["preload_dlls"] = "ok"
        except Exception as exc:  # system-wide CUDA may still work; the fallback check decides
            self._facts["preload_dlls"] = f"failed: {exc}"

    def _sample_memory(self) -> None:
        if self._memory is not None:
            self._memory.sample()

    def check_batch(self, feeds: dict[str, np.ndarray]) -> None:
        """Hook: the TRT provider refuses batches outside its profile."""

    def infer_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.check_batch(feeds)
        outputs = super().infer_impl(feeds)
        self._sample_memory()
        return outputs

    def bind(self, feeds: dict[str, np.ndarray]) -> None:
        """Copy the inputs to the device once and bind them; outputs are allocated on the
        device by onnxruntime and never copied back while timing."""
        import onnxruntime as ort

        super().bind(feeds)
        self.check_batch(feeds)
        io = self.session.io_binding()
        self._device_inputs = {}
        for name in self.input_names:
            value = ort.OrtValue.ortvalue_from_numpy(
                np.ascontiguousarray(feeds[name]), "cuda", self.device_id
            )
            self._device_inputs[name] = value  # keep the device memory alive
            io.bind_ortvalue_input(name, value)
        for name in self.output_names:
            io.bind_output(name, "cuda", self.device_id)
        io.synchronize_inputs()
        self._io = io

    def timed_run(self) -> float:
        assert self._io is not None, "bind() first"
        if self.timing == "end-to-end":
            start = time.perf_counter_ns()
            self.session.run(self.output_names, self._bound)
            return (time.perf_counter_ns() - start) * 1e-9
        self._timer.start()
        self.session.run_with_iobinding(self._io)
        return float(self._timer.stop_seconds())

    def peak_device_memory_bytes(self) -> int | None:
        """Device memory in use above what was in use before `activate` (sampled at load, after
        each `infer` and here, never inside `timed_run`, and only until another GPU engine of
        this process loads: see cuda_util.MemoryMeter)."""
        if getattr(self, "session", None) is not None:
            self._sample_memory()
        return (self._memory.peak or None) if self._memory is not None else None

    def deactivate_impl(self) -> None:
        """Safe on partial state (an `activate` that failed halfway) and when called twice."""
        self._io = None
        self._device_inputs = {}
        super().deactivate_impl()
        timer, stream, self._timer, self._stream = self._timer, self._stream, None, None
        if timer is not None:
            timer.destroy()
        if stream is not None:
            stream.destroy()

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info.update(
            io_binding=self.timing == "device",
            cudnn_conv_algo_search=self.cudnn_conv_algo_search,
            tf32=self.tf32,
            device_memory=None if self._memory is None else self._memory.scope,
            **self._facts,
        )
        return info


class OrtCudaRunner(OrtGpuRunner):
    """onnxruntime's CUDA provider."""

    name = "ort-cuda"
    provider = CUDA_EP

    def providers(self) -> list[str | tuple[str, dict[str, Any]]]:
        return [(CUDA_EP, self.cuda_options())]
