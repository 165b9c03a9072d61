"""Building TensorRT engines, apart from running them (Polygraphy's split): parse the ONNX file,
configure the builder (workspace, TF32, precision path, one optimization profile), reuse the
timing cache, and keep built engines in the engine cache. On a cache hit nothing is parsed.

Precision: TensorRT 11 removed the fp16 builder flags and every network is strongly typed, so
fp16 means graphgen's float16 graph. TensorRT 10 runs the same graph as a strongly typed network
by default; `fp16_flag=True` takes the older weakly typed route (BuilderFlag.FP16). References:
NVIDIA/TensorRT `samples/python/common_runtime.py`, Polygraphy's `backend/trt/loader.py`
(NetworkFromOnnxPath, EngineBytesFromNetwork).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from resnet_common.fileio import atomic_write_bytes
from runtimes.base import RunnerError, UnsupportedError
from runtimes.engines.trt_profiles import BatchProfile, EngineCache, cache_key, file_digest


@dataclass(frozen=True)
class BuildOptions:
    """Everything that changes the engine TensorRT builds (and so its cache key)."""

    precision: str
    tf32: bool
    fp16_flag: bool
    workspace_bytes: int
    builder_optimization_level: int | None

    def precision_path(self, major: int) -> tuple[str, bool]:
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
        if self.precision == "int8":
            return (
                f"strongly typed, explicit quantization from the graph's Q/DQ (TensorRT {major})",
                True,
            )
        return f"strongly typed, precision from the graph (TensorRT {major})", True

    def key_options(self, major: int, profile: BatchProfile) -> dict[str, Any]:
        return {
            **asdict(self),
            "precision_path": self.precision_path(major)[0],
            "profile": asdict(profile),
        }


def make_logger(trt: Any, min_severity: Any) -> Any:
    """An ILogger that keeps the messages, so a failed build or parse can say why."""

    class _Collecting(trt.ILogger):  # type: ignore[misc]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.messages: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            if int(severity) <= int(min_severity):
                self.messages.append(f"[{getattr(severity, 'name', severity)}] {msg}")

    return _Collecting()


def parse(trt: Any, builder: Any, logger: Any, path: Path, *, strongly_typed: bool) -> Any:
    """The network of an ONNX file, or RunnerError with the parser's own messages."""
    major = int(str(trt.__version__).split(".", 1)[0])
    flags = 0
    if strongly_typed and major < 11:  # always on (and deprecated) in 11
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        detail = "; ".join(errors) or "; ".join(logger.messages[-5:]) or "no message"
        raise RunnerError(f"TensorRT's ONNX parser rejected {path}: {detail}")
    return network, parser  # the parser owns weights the network points at: keep both alive


def timing_cache_path(cache_dir: Path, *, version: str, gpu: dict[str, Any]) -> Path:
    """One timing cache per TensorRT version and GPU, shared by every model."""
    tag = cache_key(
        model_digest="timing-cache",
        engine_version=version,
        gpu_name=gpu["name"],
        compute_capability=gpu["compute_capability"],
        options={},
    )
    return cache_dir / f"timing-{tag}.cache"


def build_serialized(
    trt: Any,
    logger: Any,
    path: Path,
    options: BuildOptions,
    profile: BatchProfile,
    *,
    timing_cache: Path,
    facts: dict[str, Any],
) -> bytes:
    """Parse, configure and build; the serialized engine. `facts` records the timing cache's
    state and the build time."""
    major = int(str(trt.__version__).split(".", 1)[0])
    _, strongly_typed = options.precision_path(major)
    builder = trt.Builder(logger)
    network, _parser = parse(trt, builder, logger, path, strongly_typed=strongly_typed)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_bytes)
    if options.tf32:
        config.set_flag(trt.BuilderFlag.TF32)
    else:
        config.clear_flag(trt.BuilderFlag.TF32)
    if options.fp16_flag:
        config.set_flag(trt.BuilderFlag.FP16)
    if options.builder_optimization_level is not None:
        config.builder_optimization_level = int(options.builder_optimization_level)
    opt_profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        lo, opt, hi = profile.shapes(tuple(tensor.shape))
        opt_profile.set_shape(tensor.name, lo, opt, hi)
    config.add_optimization_profile(opt_profile)

    cache_bytes, status = b"", "new"
    if timing_cache.exists():
        cache_bytes, status = timing_cache.read_bytes(), "loaded"
    try:
        cache = config.create_timing_cache(cache_bytes)
    except Exception:
        cache = None
    if cache is None or not config.set_timing_cache(cache, False):
        status = "corrupt, rebuilt"  # never trust a cache TensorRT will not read
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, False)
    facts["timing_cache"] = status

    start = time.perf_counter()
    plan = builder.build_serialized_network(network, config)
    facts["build_time_s"] = round(time.perf_counter() - start, 3)
    if plan is None:
        errors = [m for m in logger.messages if "ERROR" in m][-5:]
        raise RunnerError(
            f"TensorRT failed to build {path.name}: "
            + ("; ".join(errors) or "build_serialized_network returned None")
        )
    timing_cache.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(timing_cache, bytes(config.get_timing_cache().serialize()))
    return bytes(plan)


def load_or_build(
    trt: Any,
    logger: Any,
    runtime: Any,
    path: Path,
    options: BuildOptions,
    profile: BatchProfile,
    *,
    cache_dir: Path,
    gpu: dict[str, Any],
    facts: dict[str, Any],
) -> Any:
    """A deserialized engine: from the engine cache when its key matches (the ONNX file is not
    parsed then), else built, stored and deserialized. An entry TensorRT cannot read is
    rebuilt, never trusted. `facts` gets the cache key and what happened."""
    version = str(trt.__version__)
    major = int(version.split(".", 1)[0])
    facts["precision_path"] = options.precision_path(major)[0]
    key = cache_key(
        model_digest=file_digest(path),
        engine_version=version,
        gpu_name=gpu["name"],
        compute_capability=gpu["compute_capability"],
        options=options.key_options(major, profile),
    )
    facts["cache_key"] = key
    cache = EngineCache(cache_dir)
    plan, status = cache.load(key)
    engine = None
    if plan is not None:
        try:
            engine = runtime.deserialize_cuda_engine(plan)
        except Exception:
            engine = None
        if engine is None:
            cache.remove(key)
            status = "corrupt: deserialization failed"
    if engine is None:
        plan = build_serialized(
            trt,
            logger,
            path,
            options,
            profile,
            timing_cache=timing_cache_path(cache_dir, version=version, gpu=gpu),
            facts=facts,
        )
        cache.store(key, plan, {"tensorrt": version, "gpu": gpu, "model": str(path)})
        engine = runtime.deserialize_cuda_engine(plan)
        if engine is None:
            raise RunnerError(
                "TensorRT could not deserialize the engine it just built: "
                + "; ".join(logger.messages[-3:])
            )
        status = "built" if status == "miss" else f"rebuilt ({status})"
    facts["engine_cache"] = status
    return engine
