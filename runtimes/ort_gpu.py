"""`ort-cuda` and `ort-trt`: onnxruntime's CUDA and TensorRT execution providers.

Both extend `OrtRunner`, which sets `session.disable_cpu_ep_fallback` and fails when the session's
first provider is not the one asked for: a CPU fallback is a failed result, never a pass. The TRT
provider additionally has to have built at least one TensorRT engine (found in its engine cache
after the first run); otherwise every node ran on the CUDA provider and the result is not TRT's.

Timing: inputs are copied to the device once and bound with IO binding (outputs stay on the
device), so a timed run is the session alone; CUDA events on the stream handed to the provider as
`user_compute_stream` bracket it. `timing="end-to-end"` times host arrays in and out instead.
Options follow ENGINES.md §3.2 and the providers' docs (onnxruntime.ai/docs/execution-providers).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from runtimes.base import RunnerError, UnsupportedError, check_timing
from runtimes.ort import OrtRunner, provider_reason
from runtimes.trt import (
    DEFAULT_WORKSPACE_BYTES,
    BatchProfile,
    batch_profile,
    cache_key,
    default_cache_dir,
    file_digest,
    trt_major,
)

CUDA_EP = "CUDAExecutionProvider"
TRT_EP = "TensorrtExecutionProvider"
CONV_ALGO_SEARCH = ("EXHAUSTIVE", "HEURISTIC", "DEFAULT")


def profile_option(name: str, shape: tuple[int, ...]) -> str:
    """The TRT provider's shape syntax: `input:1x3x224x224`."""
    return f"{name}:{'x'.join(str(int(d)) for d in shape)}"


def installed_tensorrt_version() -> str | None:
    """The TensorRT wheel installed next to onnxruntime-gpu (the provider loads its libraries)."""
    from importlib import metadata

    for dist in ("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt-libs"):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


class _OrtGpuRunner(OrtRunner):
    """Shared by both providers: device selection, stream, IO binding, event timing."""

    device: ClassVar[str] = "cuda"
    precisions: ClassVar[tuple[str, ...]] = ("fp32", "fp16")

    @property
    def clock(self) -> str:
        return "cuda events" if self.timing == "device" else "perf_counter_ns"

    def __init__(
        self,
        model_path: str | Path,
        *,
        precision: str = "fp32",
        batch_sizes: tuple[int, ...] = (1,),
        threads: int | None = None,
        timing: str = "device",
        device_id: int = 0,
        cudnn_conv_algo_search: str = "EXHAUSTIVE",
        tf32: bool = False,
        **options: Any,
    ) -> None:
        super().__init__(
            model_path, precision=precision, batch_sizes=batch_sizes, threads=threads, **options
        )
        check_timing(timing)
        if cudnn_conv_algo_search not in CONV_ALGO_SEARCH:
            raise UnsupportedError(
                f"cudnn_conv_algo_search must be one of {', '.join(CONV_ALGO_SEARCH)}"
            )
        self.timing = timing
        self.device_id = int(device_id)
        self.cudnn_conv_algo_search = cudnn_conv_algo_search
        self.tf32 = bool(tf32)
        self._stream: Any = None
        self._timer: Any = None
        self._io: Any = None
        self._facts: dict[str, Any] = {}
        self._mem_baseline = 0
        self._mem_peak = 0

    @classmethod
    def availability(cls) -> str | None:
        reason = provider_reason(cls.provider)
        if reason:
            return reason
        from runtimes import cuda_util

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
        from runtimes import cuda_util

        reason = self.availability()
        if reason:
            raise RunnerError(f"{self.name} unavailable: {reason}")
        self._preload_libraries()
        cuda_util.set_device(self.device_id)
        self._facts["gpu"] = cuda_util.device_info(self.device_id)
        self._mem_baseline = cuda_util.used_device_memory()
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
        from runtimes import cuda_util

        self._mem_peak = max(self._mem_peak, cuda_util.used_device_memory() - self._mem_baseline)

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
        return self._timer.stop_seconds()

    def peak_device_memory_bytes(self) -> int | None:
        """Device memory in use above what was in use before `activate` (device-wide; sampled
        at load, after each `infer` and here, never inside `timed_run`)."""
        if getattr(self, "session", None) is not None:
            self._sample_memory()
        return self._mem_peak or None

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
            device=self.device,
            timing=self.timing,
            clock=self.clock,
            io_binding=self.timing == "device",
            cudnn_conv_algo_search=self.cudnn_conv_algo_search,
            tf32=self.tf32,
            **self._facts,
        )
        return info


class OrtCudaRunner(_OrtGpuRunner):
    """onnxruntime's CUDA provider."""

    name = "ort-cuda"
    provider = CUDA_EP

    def providers(self) -> list[str | tuple[str, dict[str, Any]]]:
        return [(CUDA_EP, self.cuda_options())]


class OrtTrtRunner(_OrtGpuRunner):
    """onnxruntime's TensorRT provider, with the CUDA provider behind it for nodes TensorRT
    does not take (as the provider's docs recommend). Engine and timing caches live under a
    folder keyed like the native runner's (model hash, onnxruntime + TensorRT versions, GPU,
    options): the provider's docs ask to invalidate them on any of those changes. Explicit
    min/opt/max profiles stop it from rebuilding engines mid-benchmark when the batch changes."""

    name = "ort-trt"
    provider = TRT_EP

    def __init__(
        self,
        model_path: str | Path,
        *,
        workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
        fp16_flag: bool = False,
        opt_batch: int | None = None,
        cache_dir: str | Path | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(model_path, **kwargs)
        self.workspace_bytes = int(workspace_bytes)
        self.fp16_flag = bool(fp16_flag)
        self.opt_batch = opt_batch
        self.cache_root = Path(cache_dir) if cache_dir else default_cache_dir() / "ort-trt"
        self._profile: BatchProfile | None = None
        self._shapes: dict[str, tuple[tuple[int, ...], ...]] = {}
        self._cache_dir: Path | None = None

    @classmethod
    def availability(cls) -> str | None:
        reason = provider_reason(TRT_EP)
        if reason:
            return reason
        reason = provider_reason(CUDA_EP)
        if reason:
            return reason
        from runtimes import cuda_util

        return cuda_util.availability()

    def _plan_profile(self) -> None:
        """Profiles from the graph's declared input shapes and the requested batches."""
        import onnx

        model = onnx.load(str(self.model_path), load_external_data=False)
        initializers = {t.name for t in model.graph.initializer}
        self._shapes = {}
        for value in model.graph.input:
            if value.name in initializers:
                continue
            dims = value.type.tensor_type.shape.dim
            shape = [d.dim_value if d.HasField("dim_value") else -1 for d in dims]
            fixed = shape[0] if shape and shape[0] > 0 else None
            self._profile = batch_profile(self.batch_sizes, fixed_batch=fixed, opt=self.opt_batch)
            self._shapes[value.name] = self._profile.shapes(shape)

    def _precision_path(self) -> str:
        version = installed_tensorrt_version()
        self._facts["tensorrt"] = version
        if self.fp16_flag:
            if self.precision != "fp16":
                raise UnsupportedError("fp16_flag only applies to precision fp16")
            if version is not None and trt_major(version) >= 11:
                raise UnsupportedError(
                    "fp16_flag (trt_fp16_enable) needs TensorRT 10: TensorRT 11 takes precision "
                    "from the float16 graph"
                )
            return "weakly typed, trt_fp16_enable (TensorRT 10)"
        return "precision from the graph (trt_fp16_enable off)"

    def trt_options(self) -> dict[str, Any]:
        import onnxruntime as ort

        gpu = self._facts["gpu"]
        path = self._precision_path()
        self._facts["precision_path"] = path
        key = cache_key(
            model_digest=file_digest(self.model_path),
            engine_version=f"onnxruntime {ort.__version__} / tensorrt {self._facts['tensorrt']}",
            gpu_name=gpu["name"],
            compute_capability=gpu["compute_capability"],
            options={
                "precision": self.precision,
                "precision_path": path,
                "workspace_bytes": self.workspace_bytes,
                "profile": vars(self._profile) if self._profile else None,
            },
        )
        self._cache_dir = self.cache_root / key
        self._cache_dir.mkdir(parents=True, exist_ok=True)
        self._facts["cache_key"] = key
        # Listed now, before the session exists: with explicit profiles the provider builds and
        # writes its engine while the session is created, so a later listing always finds one.
        self._engines_before = self._engine_files()
        names = list(self._shapes)
        opts: dict[str, Any] = {
            "device_id": str(self.device_id),
            "trt_max_workspace_size": str(self.workspace_bytes),
            "trt_engine_cache_enable": "True",
            "trt_engine_cache_path": str(self._cache_dir),
            "trt_timing_cache_enable": "True",
            "trt_timing_cache_path": str(self._cache_dir),
            "trt_profile_min_shapes": ",".join(
                profile_option(n, self._shapes[n][0]) for n in names
            ),
            "trt_profile_opt_shapes": ",".join(
                profile_option(n, self._shapes[n][1]) for n in names
            ),
            "trt_profile_max_shapes": ",".join(
                profile_option(n, self._shapes[n][2]) for n in names
            ),
        }
        if self.fp16_flag:
            opts["trt_fp16_enable"] = "True"
        if self._stream is not None:
            opts["user_compute_stream"] = str(self._stream.handle)
        return opts

    def providers(self) -> list[str | tuple[str, dict[str, Any]]]:
        return [(TRT_EP, self.trt_options()), (CUDA_EP, self.cuda_options())]

    def activate_impl(self) -> None:
        self._plan_profile()
        if importlib.util.find_spec("tensorrt") is not None:
            # Loading the wheel's libnvinfer first lets the provider find it by soname.
            importlib.import_module("tensorrt")
        self._engines_before: list[Path] = []
        self._engines_checked = False
        super().activate_impl()  # providers() -> trt_options() lists the cache first

    def _engine_files(self) -> list[Path]:
        if self._cache_dir is None:
            return []
        return sorted(p for p in self._cache_dir.iterdir() if p.suffix == ".engine")

    def check_batch(self, feeds: dict[str, np.ndarray]) -> None:
        for name in self._shapes:
            if name in feeds:
                self._profile.check(int(feeds[name].shape[0]), what="TensorRT provider")

    def infer_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = super().infer_impl(feeds)
        if not self._engines_checked:  # once: the engine exists after the first run at latest
            engines = self._engine_files()
            if not engines:
                raise RunnerError(
                    "ort-trt: the TensorRT provider built no engine; every node ran on the CUDA "
                    "provider, so this is not a TensorRT result"
                )
            self._facts["trt_engines"] = len(engines)
            self._facts["engine_cache"] = "hit" if self._engines_before else "built"
            self._engines_checked = True
        return outputs

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info.update(
            workspace_bytes=self.workspace_bytes,
            profile=vars(self._profile) if self._profile else None,
            cache_dir=str(self._cache_dir) if self._cache_dir else None,
        )
        return info
