"""`trt`: native TensorRT (10.x and 11.x) on a graphgen ONNX file, through the ONNX parser.

Build: parser errors surface as a failed result carrying the parser's messages; the builder config
pins a workspace limit and TF32 (off by default, for parity: TensorRT enables it by default,
Polygraphy clears it, so we state ours); one optimization profile spans the requested batches.
Precision: TensorRT 11 removed the fp16 builder flags and every network is strongly typed, so fp16
means graphgen's float16 graph. TensorRT 10 runs the same graph as a strongly typed network by
default; `fp16_flag=True` takes the older weakly typed route (BuilderFlag.FP16). `describe()`
records which path ran.

Caches: the serialized engine and the timing cache live on disk under a key made of the model's
hash, the TensorRT version, the GPU and the build options. An entry whose checksum or
deserialization fails is rebuilt, never trusted.

Run: the name-based API (`set_input_shape`, `set_tensor_address`, `execute_async_v3`) on our own
CUDA stream; `timed_run` brackets the work with CUDA events. Reference: ENGINES.md §4,
`NVIDIA/TensorRT: samples/python/common_runtime.py`, `python/docstrings/infer/pyCoreDoc.h`.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from resnet_common.fileio import atomic_write_bytes
from runtimes.base import Runner, RunnerError, UnsupportedError, check_timing

DEFAULT_WORKSPACE_BYTES = 4 << 30
CACHE_ENV = "BENCH_RUNTIMES_CACHE"


class ProfileError(UnsupportedError):
    """A batch the engine's optimization profile does not cover: rebuild with that batch."""


# -- pure logic (tested without an engine) ----------------------------------------------------
@dataclass(frozen=True)
class BatchProfile:
    """min/opt/max of the batch dimension. Kernels are tuned for `opt`; narrow ranges run faster
    (NVIDIA/TensorRT#1166), so the profile spans exactly the requested batches."""

    min: int
    opt: int
    max: int

    def covers(self, batch: int) -> bool:
        return self.min <= batch <= self.max

    def check(self, batch: int, *, what: str = "engine") -> None:
        if not self.covers(batch):
            raise ProfileError(
                f"batch {batch} is outside the {what}'s optimization profile "
                f"[min {self.min}, opt {self.opt}, max {self.max}]; "
                f"ask for batch sizes that include {batch} so the engine is rebuilt for them"
            )

    def shapes(self, input_shape: Sequence[int]) -> tuple[tuple[int, ...], ...]:
        """(min, opt, max) full input shapes: the batch dim replaced, the others kept."""
        rest = tuple(int(d) for d in input_shape[1:])
        if any(d < 0 for d in rest):
            raise UnsupportedError(
                f"input shape {tuple(input_shape)} has a dynamic dimension besides the batch; "
                "build the graph with a fixed --image-size"
            )
        return tuple((b, *rest) for b in (self.min, self.opt, self.max))


def batch_profile(
    batch_sizes: Sequence[int], *, fixed_batch: int | None = None, opt: int | None = None
) -> BatchProfile:
    """The profile for the requested batches: min and max are their extremes, opt is the largest
    (throughput is what big batches are for) unless given. A graph with a fixed batch admits
    only that batch."""
    batches = sorted({int(b) for b in batch_sizes})
    if not batches or batches[0] < 1:
        raise UnsupportedError(f"batch sizes must be positive integers, got {list(batch_sizes)}")
    if fixed_batch is not None and fixed_batch > 0:
        if batches != [fixed_batch]:
            raise ProfileError(
                f"the graph has a fixed batch of {fixed_batch} but batches {batches} were asked "
                "for; build it with --batch dynamic"
            )
        return BatchProfile(fixed_batch, fixed_batch, fixed_batch)
    chosen = batches[-1] if opt is None else int(opt)
    if not batches[0] <= chosen <= batches[-1]:
        raise UnsupportedError(f"opt batch {chosen} lies outside [{batches[0]}, {batches[-1]}]")
    return BatchProfile(batches[0], chosen, batches[-1])


def file_digest(path: str | Path) -> str:
    """sha256 of a model file and of its external-data file, when it has one."""
    path = Path(path)
    h = hashlib.sha256()
    for part in (path, path.with_name(path.name + ".data")):
        if part.exists():
            with part.open("rb") as f:
                for chunk in iter(lambda f=f: f.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()


def cache_key(
    *,
    model_digest: str,
    engine_version: str,
    gpu_name: str,
    compute_capability: str,
    options: dict[str, Any],
) -> str:
    """A stable hex key: any change of model bytes, engine version, GPU or option gives a new
    entry. Options are serialised canonically (sorted keys), so dict order does not matter."""
    blob = json.dumps(
        {
            "model": model_digest,
            "engine": engine_version,
            "gpu": gpu_name,
            "cc": compute_capability,
            "options": options,
        },
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def default_cache_dir() -> Path:
    env = os.environ.get(CACHE_ENV)
    base = Path(env) if env else Path.home() / ".cache" / "resnet-graphgen"
    return base


class EngineCache:
    """Serialized engines on disk, one `<key>.engine` with a `<key>.json` sidecar holding the
    key, the plan's sha256 and its size. `load` returns None (and removes the entry) when the
    sidecar is missing or unreadable, the key differs, or the bytes do not match the checksum."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def paths(self, key: str) -> tuple[Path, Path]:
        return self.folder / f"{key}.engine", self.folder / f"{key}.json"

    def load(self, key: str) -> tuple[bytes | None, str]:
        """(plan, status): status is "hit", "miss" or "corrupt: <why>"."""
        plan_path, meta_path = self.paths(key)
        if not plan_path.exists() and not meta_path.exists():
            return None, "miss"
        try:
            meta = json.loads(meta_path.read_text())
            plan = plan_path.read_bytes()
        except (OSError, ValueError) as exc:
            self.remove(key)
            return None, f"corrupt: {type(exc).__name__}"
        if not isinstance(meta, dict) or meta.get("key") != key:
            self.remove(key)
            return None, "corrupt: sidecar key mismatch"
        if meta.get("size") != len(plan) or meta.get("sha256") != hashlib.sha256(plan).hexdigest():
            self.remove(key)
            return None, "corrupt: checksum mismatch"
        return plan, "hit"

    def store(self, key: str, plan: bytes, info: dict[str, Any]) -> None:
        plan_path, meta_path = self.paths(key)
        meta = {
            "key": key,
            "size": len(plan),
            "sha256": hashlib.sha256(plan).hexdigest(),
            **info,
        }
        atomic_write_bytes(plan_path, plan)  # the plan first: a sidecar never points at nothing
        atomic_write_bytes(
            meta_path, json.dumps(meta, indent=1, sort_keys=True, default=str).encode()
        )

    def remove(self, key: str) -> None:
        for path in self.paths(key):
            path.unlink(missing_ok=True)


def trt_major(version: str) -> int:
    return int(version.split(".", 1)[0])


# -- the runner -------------------------------------------------------------------------------
def _import_trt() -> Any:
    try:
        return importlib.import_module("tensorrt")
    except ImportError as exc:
        raise RunnerError(f"tensorrt failed to import: {exc}") from exc


def _make_logger(trt: Any, min_severity: Any) -> Any:
    """An ILogger that keeps the messages, so a failed build or parse can say why."""

    class _Collecting(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.messages: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            if int(severity) <= int(min_severity):
                self.messages.append(f"[{getattr(severity, 'name', severity)}] {msg}")

    return _Collecting()


class TensorRTRunner(Runner):
    """Native TensorRT, one engine per (model, precision, batch profile, options, GPU)."""

    name: ClassVar[str] = "trt"
    device: ClassVar[str] = "cuda"
    precisions: ClassVar[tuple[str, ...]] = ("fp32", "fp16")
    clock = "cuda events"

    def __init__(
        self,
        model_path: str | Path,
        *,
        precision: str = "fp32",
        batch_sizes: tuple[int, ...] = (1,),
        threads: int | None = None,
        timing: str = "device",
        tf32: bool = False,
        fp16_flag: bool = False,
        workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
        opt_batch: int | None = None,
        builder_optimization_level: int | None = None,
        cache_dir: str | Path | None = None,
        device_id: int = 0,
        **options: Any,
    ) -> None:
        super().__init__(
            model_path, precision=precision, batch_sizes=batch_sizes, threads=threads, **options
        )
        self.timing = check_timing(timing)
        self.tf32 = bool(tf32)
        self.fp16_flag = bool(fp16_flag)
        self.workspace_bytes = int(workspace_bytes)
        self.opt_batch = opt_batch
        self.builder_optimization_level = builder_optimization_level
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir() / "trt"
        self.device_id = int(device_id)
        self._facts: dict[str, Any] = {}
        self._profile: BatchProfile | None = None
        self._reset_handles()

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
        self._mem_baseline = 0
        self._mem_peak = 0
        self._logger: Any = None
        self._runtime_obj: Any = None

    # -- availability ---------------------------------------------------------------------------
    @classmethod
    def availability(cls) -> str | None:
        if importlib.util.find_spec("tensorrt") is None:
            return "tensorrt not installed"
        from runtimes import cuda_util

        reason = cuda_util.availability()
        if reason:
            return reason
        try:
            importlib.import_module("tensorrt")
        except Exception as exc:  # libnvinfer missing or mismatched: say so in `list`
            return f"tensorrt failed to import: {exc}"
        return None

    # -- build ----------------------------------------------------------------------------------
    def _precision_path(self, major: int) -> tuple[str, bool]:
        """(description, strongly_typed) of how precision is chosen on this TensorRT."""
        if self.fp16_flag:
            if major >= 11:
                raise UnsupportedError(
                    "fp16_flag needs TensorRT 10: TensorRT 11 removed BuilderFlag.FP16; "
                    "fp16 comes from the float16 graph"
                )
            if self.precision != "fp16":
                raise UnsupportedError("fp16_flag only applies to precision fp16")
            return "weakly typed, BuilderFlag.FP16 (TensorRT 10)", False
        return f"strongly typed, precision from the graph (TensorRT {major})", True

    def _build_options(self, major: int) -> dict[str, Any]:
        return {
            "precision": self.precision,
            "precision_path": self._precision_path(major)[0],
            "tf32": self.tf32,
            "workspace_bytes": self.workspace_bytes,
            "profile": None if self._profile is None else vars(self._profile),
            "builder_optimization_level": self.builder_optimization_level,
        }

    def _parse(self, trt: Any, builder: Any, logger: Any, strongly_typed: bool, major: int) -> Any:
        flags = 0
        if strongly_typed and major < 11:  # always on (and deprecated) in 11
            flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(self.model_path)):
            errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
            detail = "; ".join(errors) or "; ".join(logger.messages[-5:]) or "no message"
            raise RunnerError(f"TensorRT's ONNX parser rejected {self.model_path}: {detail}")
        return network, parser

    def _build(self, trt: Any, logger: Any, network: Any, builder: Any, major: int) -> bytes:
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, self.workspace_bytes)
        if self.tf32:
            config.set_flag(trt.BuilderFlag.TF32)
        else:
            config.clear_flag(trt.BuilderFlag.TF32)
        if self.fp16_flag:
            config.set_flag(trt.BuilderFlag.FP16)
        if self.builder_optimization_level is not None:
            config.builder_optimization_level = int(self.builder_optimization_level)
        profile = builder.create_optimization_profile()
        for i in range(network.num_inputs):
            tensor = network.get_input(i)
            lo, opt, hi = self._profile.shapes(tuple(tensor.shape))
            profile.set_shape(tensor.name, lo, opt, hi)
        config.add_optimization_profile(profile)

        timing_path = self._timing_cache_path()
        cache_bytes, status = b"", "new"
        if timing_path.exists():
            cache_bytes, status = timing_path.read_bytes(), "loaded"
        try:
            timing_cache = config.create_timing_cache(cache_bytes)
        except Exception:
            timing_cache = None
        if timing_cache is None or not config.set_timing_cache(timing_cache, False):
            status = "corrupt, rebuilt"  # never trust a cache TensorRT will not read
            timing_cache = config.create_timing_cache(b"")
            config.set_timing_cache(timing_cache, False)
        self._facts["timing_cache"] = status

        start = time.perf_counter()
        plan = builder.build_serialized_network(network, config)
        self._facts["build_time_s"] = round(time.perf_counter() - start, 3)
        if plan is None:
            errors = [m for m in logger.messages if "ERROR" in m][-5:]
            raise RunnerError(
                f"TensorRT failed to build {self.model_path.name}: "
                + ("; ".join(errors) or "build_serialized_network returned None")
            )
        atomic_write_bytes(timing_path, bytes(config.get_timing_cache().serialize()))
        return bytes(plan)

    def _timing_cache_path(self) -> Path:
        gpu = self._facts["gpu"]
        tag = cache_key(
            model_digest="timing-cache",
            engine_version=self._facts["tensorrt"],
            gpu_name=gpu["name"],
            compute_capability=gpu["compute_capability"],
            options={},
        )
        return self.cache_dir / f"timing-{tag}.cache"

    # -- lifecycle ------------------------------------------------------------------------------
    def activate_impl(self) -> None:
        from runtimes import cuda_util

        reason = self.availability()
        if reason:
            raise RunnerError(f"trt unavailable: {reason}")
        if not self.model_path.exists():
            raise UnsupportedError(f"model file not found: {self.model_path}")
        trt = self._trt = _import_trt()
        version = str(trt.__version__)
        major = trt_major(version)
        cuda_util.set_device(self.device_id)
        gpu = cuda_util.device_info(self.device_id)
        self._facts = {"tensorrt": version, "gpu": gpu}
        self._mem_baseline = cuda_util.used_device_memory()
        precision_path, strongly_typed = self._precision_path(major)
        self._facts["precision_path"] = precision_path

        logger = self._logger = _make_logger(trt, trt.Logger.WARNING)
        builder = trt.Builder(logger)
        network, _parser = self._parse(trt, builder, logger, strongly_typed, major)
        fixed = None
        first = tuple(network.get_input(0).shape)
        if first and first[0] > 0:
            fixed = int(first[0])
        self._profile = batch_profile(self.batch_sizes, fixed_batch=fixed, opt=self.opt_batch)

        key = cache_key(
            model_digest=file_digest(self.model_path),
            engine_version=version,
            gpu_name=gpu["name"],
            compute_capability=gpu["compute_capability"],
            options=self._build_options(major),
        )
        self._facts["cache_key"] = key
        cache = EngineCache(self.cache_dir)
        plan, status = cache.load(key)
        runtime = trt.Runtime(logger)
        engine = None
        if plan is not None:
            try:
                engine = runtime.deserialize_cuda_engine(plan)
            except Exception:  # a plan TensorRT cannot read is rebuilt, never trusted
                engine = None
        if plan is not None and engine is None:
            cache.remove(key)
            status = "corrupt: deserialization failed"
        if engine is None:
            plan = self._build(trt, logger, network, builder, major)
            cache.store(key, plan, {"tensorrt": version, "gpu": gpu, "model": str(self.model_path)})
            engine = runtime.deserialize_cuda_engine(plan)
            if engine is None:
                raise RunnerError(
                    "TensorRT could not deserialize the engine it just built: "
                    + "; ".join(logger.messages[-3:])
                )
            status = "built" if status == "miss" else f"rebuilt ({status})"
        self._facts["engine_cache"] = status
        self._runtime_obj = runtime
        self._engine = engine
        self._context = engine.create_execution_context()
        if self._context is None:
            raise RunnerError("TensorRT could not create an execution context (out of memory?)")
        self._allocate(trt, engine)

    def _allocate(self, trt: Any, engine: Any) -> None:
        from runtimes import cuda_util

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
        from runtimes import cuda_util

        used = cuda_util.used_device_memory() - self._mem_baseline
        self._mem_peak = max(self._mem_peak, used)

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
        mem_peak, facts = self._mem_peak, self._facts
        self._reset_handles()
        self._mem_peak, self._facts = mem_peak, facts

    # -- running --------------------------------------------------------------------------------
    def _set_shapes(self, feeds: dict[str, np.ndarray]) -> dict[str, tuple[int, ...]]:
        missing = [n for n in self._inputs if n not in feeds]
        if missing:
            raise RunnerError(f"missing inputs {missing}; the engine takes {self._inputs}")
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
        if not self._bound_shapes:
            assert self._bound is not None, "bind() first"
            self.bind(self._bound)
        if self.timing == "end-to-end":
            self._timer.start()
            self._stage(self._bound, self._bound_shapes)
            self._enqueue()
            self._fetch(self._bound_shapes)
        else:
            self._timer.start()
            self._enqueue()
        return self._timer.stop_seconds()

    def peak_device_memory_bytes(self) -> int | None:
        """Device memory in use above what was in use before `activate` (sampled at load,
        after each `infer` and here, never inside `timed_run`; device-wide, so other processes
        on the GPU count too)."""
        if self._context is not None:
            self._sample_memory()
        return self._mem_peak or None

    # -- what ran -------------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info.update(
            {
                "engine": "tensorrt",
                "version": self._facts.get("tensorrt"),
                "gpu": self._facts.get("gpu"),
                "timing": self.timing,
                "clock": self.clock,
                "tf32": self.tf32,
                "precision_path": self._facts.get("precision_path"),
                "workspace_bytes": self.workspace_bytes,
                "profile": None if self._profile is None else vars(self._profile),
                "engine_cache": self._facts.get("engine_cache"),
                "cache_key": self._facts.get("cache_key"),
                "timing_cache": self._facts.get("timing_cache"),
                "build_time_s": self._facts.get("build_time_s"),
                "cache_dir": str(self.cache_dir),
            }
        )
        return info


TrtRunner = TensorRTRunner  # the registry's name for it
