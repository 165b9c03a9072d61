"""`trt`: native TensorRT (10.x and 11.x) running an engine built from a graphgen ONNX file.

Building (parse, builder config, profile, timing and engine caches) lives in
`runtimes.engines.trt_build`; this module runs: the name-based API (`set_input_shape`,
`set_tensor_address`, `execute_async_v3`) on our own CUDA stream, with `timed_run` bracketing
the work with CUDA events. References: NVIDIA/TensorRT `samples/python/common_runtime.py`,
`python/docstrings/infer/pyCoreDoc.h`.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from runtimes.base import Runner, RunnerError, UnsupportedError
from runtimes.engines.trt_build import BuildOptions, load_or_build, make_logger
from runtimes.engines.trt_profiles import (
    DEFAULT_WORKSPACE_BYTES,
    BatchProfile,
    batch_profile,
    default_cache_dir,
    fixed_batch_of,
    onnx_input_shapes,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from runtimes.base import RunnerArgs


def _import_trt() -> Any:
    try:
        return importlib.import_module("tensorrt")
    except ImportError as exc:
        raise RunnerError(f"tensorrt failed to import: {exc}") from exc


class TensorRTRunner(Runner):
    """Native TensorRT, one engine per (model, precision, batch profile, options, GPU)."""

    name: ClassVar[str] = "trt"
    packages: ClassVar[tuple[str, ...]] = (
        "tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt-libs",
    )  # fmt: skip
    device: ClassVar[str] = "cuda"
    # int8: explicit quantization, the QDQ graph parsed as it is into a strongly typed network
    # (no builder flag on TensorRT 10 either: NVIDIA's "Explicit Quantization" says to use
    # strong typing and specify no precision flags).
    precisions: ClassVar[tuple[str, ...]] = ("fp32", "fp16", "int8")
    builds_for_batches: ClassVar[bool] = True

    def __init__(
        self,
        model_path: str | Path,
        *,
        tf32: bool = False,
        fp16_flag: bool = False,
        workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
        opt_batch: int | None = None,
        builder_optimization_level: int | None = None,
        cache_dir: str | Path | None = None,
        device_id: int = 0,
        **common: Unpack[RunnerArgs],
    ) -> None:
        super().__init__(model_path, **common)
        self.options = BuildOptions(
            precision=self.precision,
            tf32=bool(tf32),
            fp16_flag=bool(fp16_flag),
            workspace_bytes=int(workspace_bytes),
            builder_optimization_level=builder_optimization_level,
        )
        self.opt_batch = opt_batch
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir() / "trt"
        self.device_id = int(device_id)
        self._facts: dict[str, Any] = {}
        self._profile: BatchProfile | None = None
        self._reset_handles()
        # Refuse an impossible precision path now (bad input), not after loading CUDA.
        if self.options.fp16_flag and self.precision != "fp16":
            raise UnsupportedError("fp16_flag only applies to precision fp16")

    @property
    def clock(self) -> str:
        return "cuda events"

    def _reset_handles(self) -> None:
        self._trt: Any = None
        self._engine: Any = None
        self._context: Any = None
        self._stream: Any = None
        self._timer: Any = None
        self._buffers: dict[str, Any] = {}
        self._pinned: dict[str, Any] = {}
        self._dtypes: dict[str, np.dtype] = {}
        self._inputs: list[str] = []
        self._outputs: list[str] = []
        self._bound_shapes: dict[str, tuple[int, ...]] = {}
        self._memory: Any = None  # cuda_util.MemoryMeter, from activate on
        self._logger: Any = None
        self._runtime_obj: Any = None

    # -- availability ---------------------------------------------------------------------------
    @classmethod
    def availability(cls) -> str | None:
        if importlib.util.find_spec("tensorrt") is None:
            return "tensorrt not installed"
        from runtimes.engines import cuda_util

        reason = cuda_util.availability()
        if reason:
            return reason
        try:
            importlib.import_module("tensorrt")
        except Exception as exc:  # libnvinfer missing or mismatched: say so in `list`
            return f"tensorrt failed to import: {exc}"
        return None

    # -- lifecycle ------------------------------------------------------------------------------
    def activate_impl(self) -> None:
        from runtimes.engines import cuda_util

        reason = self.availability()
        if reason:
            raise RunnerError(f"trt unavailable: {reason}")
        if not self.model_path.exists():
            raise UnsupportedError(f"model file not found: {self.model_path}")
        trt = self._trt = _import_trt()
        cuda_util.set_device(self.device_id)
        gpu = cuda_util.device_info(self.device_id)
        self._facts = {"tensorrt": str(trt.__version__), "gpu": gpu}
        self._memory = cuda_util.MemoryMeter(
            cuda_util.used_device_memory, what="device-wide (every process on the GPU)"
        )
        # The profile comes from the file's declared input shape, so a cached engine is found
        # without parsing the graph.
        fixed = fixed_batch_of(onnx_input_shapes(self.model_path))
        self._profile = batch_profile(self.batch_sizes, fixed_batch=fixed, opt=self.opt_batch)
        logger = self._logger = make_logger(trt, trt.Logger.WARNING)
        runtime = trt.Runtime(logger)
        engine = load_or_build(
            trt,
            logger,
            runtime,
            self.model_path,
            self.options,
            self._profile,
            cache_dir=self.cache_dir,
            gpu=gpu,
            facts=self._facts,
        )
        self._runtime_obj = runtime
        self._engine = engine
        self._context = engine.create_execution_context()
        if self._context is None:
            raise RunnerError("TensorRT could not create an execution context (out of memory?)")
        self._allocate(trt, engine)

    def _allocate(self, trt: Any, engine: Any) -> None:
        from runtimes.engines import cuda_util

        self._stream = cuda_util.Stream()
        self._timer = cuda_util.EventTimer(self._stream)
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            trt_dtype = engine.get_tensor_dtype(name)
            try:  # trt.nptype raises TypeError for types numpy lacks (bf16, fp8, int4)
                self._dtypes[name] = np.dtype(trt.nptype(trt_dtype))
            except TypeError as exc:
                raise UnsupportedError(
                    f"engine tensor {name!r} has type {trt_dtype}, which has no numpy type; "
                    "graphgen graphs keep float32 I/O"
                ) from exc
            if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                self._inputs.append(name)
                # (min, opt, max) of profile 0, the only one we build
                max_shape = tuple(engine.get_tensor_profile_shape(name, 0)[2])
                if not self._context.set_input_shape(name, max_shape):
                    raise RunnerError(f"TensorRT rejected the profile's max shape {max_shape}")
            else:
                self._outputs.append(name)
        # An empty list means every input shape is known, so the output shapes are concrete.
        unknown = self._context.infer_shapes()
        if unknown:
            raise RunnerError(f"TensorRT could not infer the shapes of {list(unknown)}")
        for name in self._inputs + self._outputs:
            shape = tuple(self._context.get_tensor_shape(name))  # max shapes after the inputs
            nbytes = int(np.prod(shape, dtype=np.int64)) * self._dtypes[name].itemsize
            self._buffers[name] = cuda_util.DeviceBuffer(nbytes)
            self._pinned[name] = cuda_util.PinnedArray(shape, self._dtypes[name])
            if not self._context.set_tensor_address(name, self._buffers[name].ptr):
                raise RunnerError(f"TensorRT rejected the device address for {name!r}")
        self._sample_memory()

    def _sample_memory(self) -> None:
        if self._memory is not None:
            self._memory.sample()

    def deactivate_impl(self) -> None:
        """Free everything; safe on partial state (an `activate` that failed halfway) and when
        called twice."""
        if self._stream is not None:
            # A failed kernel leaves a sticky error; free the rest anyway.
            with contextlib.suppress(Exception):
                self._stream.synchronize()
        for buf in list(self._buffers.values()) + list(self._pinned.values()):
            buf.close()
        if self._timer is not None:
            self._timer.destroy()
        if self._stream is not None:
            self._stream.destroy()
        self._context = None
        self._engine = None
        self._runtime_obj = None
        memory, facts = self._memory, self._facts
        self._reset_handles()
        self._memory, self._facts = memory, facts

    # -- running --------------------------------------------------------------------------------
    def _set_shapes(self, feeds: dict[str, np.ndarray]) -> dict[str, tuple[int, ...]]:
        missing = [n for n in self._inputs if n not in feeds]
        if missing:
            raise RunnerError(f"missing inputs {missing}; the engine takes {self._inputs}")
        if self._profile is None:
            raise RunnerError("trt: no optimization profile (activate() first)")
        shapes: dict[str, tuple[int, ...]] = {}
        for name in self._inputs:
            shape = tuple(int(d) for d in feeds[name].shape)
            self._profile.check(shape[0])
            if not self._context.set_input_shape(name, shape):
                raise RunnerError(f"TensorRT rejected input shape {shape} for {name!r}")
            shapes[name] = shape
        for name in self._outputs:
            shapes[name] = tuple(int(d) for d in self._context.get_tensor_shape(name))
        return shapes

    def _stage(self, feeds: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]]) -> None:
        for name in self._inputs:
            host = self._pinned[name].view(shapes[name])
            np.copyto(host, feeds[name], casting="same_kind")
            self._buffers[name].copy_from_host(host, self._stream)

    def _enqueue(self) -> None:
        if not self._context.execute_async_v3(self._stream.handle):
            raise RunnerError("TensorRT execute_async_v3 failed to enqueue")

    def _fetch(self, shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
        views = {}
        for name in self._outputs:
            views[name] = self._pinned[name].view(shapes[name])
            self._buffers[name].copy_to_host(views[name], self._stream)
        return views

    def infer_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        shapes = self._set_shapes(feeds)
        self._bound_shapes = {}  # infer changes the context's shapes: bind() again before timing
        self._stage(feeds, shapes)
        self._enqueue()
        views = self._fetch(shapes)
        self._stream.synchronize()
        self._sample_memory()
        return {name: np.array(view) for name, view in views.items()}

    def bind(self, feeds: dict[str, np.ndarray]) -> None:
        """Set shapes and copy the inputs to the device once: `timed_run` then times the engine
        alone (device mode) or with the copies (end-to-end mode)."""
        super().bind(feeds)
        shapes = self._set_shapes(feeds)
        self._stage(feeds, shapes)
        self._stream.synchronize()
        self._bound_shapes = shapes

    def timed_run(self) -> float:
        if self._bound is None:
            raise RuntimeError("trt: timed_run() called before bind()")
        if not self._bound_shapes:
            self.bind(self._bound)
        if self.timing == "end-to-end":
            self._timer.start()
            self._stage(self._bound, self._bound_shapes)
            self._enqueue()
            self._fetch(self._bound_shapes)
        else:
            self._timer.start()
            self._enqueue()
        return float(self._timer.stop_seconds())

    def peak_device_memory_bytes(self) -> int | None:
        """Device memory in use above what was in use before `activate` (sampled at load,
        after each `infer` and here, never inside `timed_run`, and only until another GPU
        engine of this process loads: see cuda_util.MemoryMeter)."""
        if self._context is not None:
            self._sample_memory()
        return (self._memory.peak or None) if self._memory is not None else None

    # -- what ran -------------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info.update(
            {
                "engine": "tensorrt",
                "version": self._facts.get("tensorrt"),
                "gpu": self._facts.get("gpu"),
                "tf32": self.options.tf32,
                "precision_path": self._facts.get("precision_path"),
                "workspace_bytes": self.options.workspace_bytes,
                "profile": None if self._profile is None else vars(self._profile),
                "engine_cache": self._facts.get("engine_cache"),
                "cache_key": self._facts.get("cache_key"),
                "timing_cache": self._facts.get("timing_cache"),
                "build_time_s": self._facts.get("build_time_s"),
                "cache_dir": str(self.cache_dir),
                "device_memory": None if self._memory is None else self._memory.scope,
            }
        )
        return info
