"""`ort-trt`: onnxruntime's TensorRT execution provider, with the CUDA provider behind it.

The provider has to have built at least one TensorRT engine (found in its engine cache after
the first run); otherwise every node ran on the CUDA provider and the result is not TRT's.
Profiles, cache keys and the cache folder come from `runtimes.engines.trt_profiles`, shared with
the native `trt` runner. Options follow the provider's docs
(onnxruntime.ai/docs/execution-providers/TensorRT-ExecutionProvider.html).

TensorRT is what the provider links (libnvinfer.so.N, read from the provider library): the
runner loads those libraries itself before the session (from the tensorrt_libs wheel when it is
installed), so a missing one is an error that names it, and the version recorded and keyed on is
the loaded library's, not whatever `tensorrt` Python wheel is installed beside it.

Precision: the provider builds weakly typed networks and has no strongly typed switch (checked
on onnxruntime-gpu 1.31.1's option names), so without `trt_fp16_enable` a float16 graph runs in
fp32 kernels. fp16 therefore sets `trt_fp16_enable` (TensorRT 10: each layer in fp16 or fp32, as
TensorRT finds fastest), and the built engines are read back with TensorRT's engine inspector:
the record carries the layers' precisions when the engine holds them, "unknown" when it was
built with names only, and an fp16 run whose engines have no fp16 layer is refused. bf16 is
the same on graphgen's bfloat16 graph with `trt_bf16_enable` (the provider's bf16 switch, next
to `trt_fp16_enable` in its options since onnxruntime 1.20), its layers read back the same way.
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.util
import json
import re
import sys
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from runtimes.base import RunnerError, UnsupportedError
from runtimes.engines.ort import provider_reason
from runtimes.engines.ort_cuda import CUDA_EP, OrtGpuRunner
from runtimes.engines.trt_profiles import (
    DEFAULT_WORKSPACE_BYTES,
    BatchProfile,
    batch_profile,
    cache_key,
    default_cache_dir,
    file_digest,
    layer_precisions,
    library_version,
    onnx_input_shapes,
    trt_major,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from runtimes.base import RunnerArgs

TRT_EP = "TensorrtExecutionProvider"


def profile_option(name: str, shape: tuple[int, ...]) -> str:
    """The TRT provider's shape syntax: `input:1x3x224x224`."""
    return f"{name}:{'x'.join(str(int(d)) for d in shape)}"


def installed_tensorrt_version() -> str | None:
    """The TensorRT Python wheel installed here, if any: not necessarily what the provider loads
    (see `load_provider_tensorrt`)."""
    from importlib import metadata

    for dist in ("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt-libs"):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


@cache
def _provider_needs(path: Path) -> tuple[str, ...]:
    found = re.findall(rb"lib(?:nvinfer|nvonnxparser)\.so\.\d+", path.read_bytes())
    return tuple(sorted({m.decode() for m in found}))


def provider_tensorrt_libraries() -> tuple[str, ...]:
    """The TensorRT sonames onnxruntime's TensorRT provider is linked against (libnvinfer.so.N,
    libnvonnxparser.so.N), read from the provider library without loading it; empty when this
    onnxruntime has no TensorRT provider library."""
    try:
        import onnxruntime as ort
    except ImportError:
        return ()
    path = Path(ort.__file__).parent / "capi" / "libonnxruntime_providers_tensorrt.so"
    return _provider_needs(path) if path.exists() else ()


def loaded_library_path(soname: str) -> str | None:
    """The file this process has mapped for `soname` (Linux: /proc/self/maps), or None."""
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.split(None, 5)[-1].strip()
                if Path(path).name.startswith(soname):
                    return path
    except OSError:
        pass
    return None


def load_provider_tensorrt() -> dict[str, str]:
    """Load the TensorRT libraries the provider links, before onnxruntime does (the loader then
    finds them loaded, by soname): from the tensorrt_libs wheel's folder when it is installed
    (TensorRT's pip libraries are not on the loader's path), else wherever the loader finds
    them. Returns what the provider will run: {"tensorrt": version, "libnvinfer": path}.
    RunnerError, in the loader's words, when one of them cannot be loaded."""
    needs = provider_tensorrt_libraries()
    nvinfer = next((n for n in needs if n.startswith("libnvinfer.so.")), None)
    if nvinfer is None or not sys.platform.startswith("linux"):
        raise RunnerError("ort-trt: this onnxruntime has no TensorRT provider library")
    major = int(nvinfer.rsplit(".", 1)[1])
    spec = importlib.util.find_spec("tensorrt_libs")
    folders = [Path(p) for p in (spec.submodule_search_locations or [])] if spec else []
    handles: dict[str, Any] = {}
    for soname in needs:
        local = [f / soname for f in folders if (f / soname).exists()]
        target = str(local[0]) if local else soname
        try:
            handles[soname] = ctypes.CDLL(target, mode=ctypes.RTLD_GLOBAL)
        except OSError as exc:
            raise RunnerError(
                f"ort-trt: onnxruntime's TensorRT provider is linked against {soname} (TensorRT "
                f"{major}), which cannot be loaded: {exc}. Install TensorRT {major} for it, e.g. "
                f"pip install --extra-index-url https://pypi.nvidia.com "
                f"'tensorrt-cu13>={major},<{major + 1}' (-cu12 for a CUDA 12 onnxruntime-gpu)"
            ) from exc
    get_version = handles[nvinfer].getInferLibVersion
    get_version.restype = ctypes.c_int32
    return {
        "tensorrt": library_version(int(get_version()), major),
        "libnvinfer": loaded_library_path(nvinfer) or nvinfer,
    }


def tensorrt_module(major: int) -> Any:
    """The `tensorrt` Python module when its major is the provider's, else None: importing a
    TensorRT of another major would load a second libnvinfer into the process."""
    version = installed_tensorrt_version()
    if version is None or trt_major(version) != major:
        return None
    try:
        return importlib.import_module("tensorrt")
    except Exception:  # a broken wheel: the inspection is a courtesy, the run does not need it
        return None


def inspect_engines(trt: Any, engines: list[Path]) -> dict[str, int] | str:
    """The layers' precisions over the provider's engine files (TensorRT's engine inspector),
    or why they are unknown."""
    runtime = trt.Runtime(trt.Logger(trt.Logger.ERROR))
    total: dict[str, int] = {}
    for path in engines:
        engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            return f"{path.name} does not deserialize with tensorrt {trt.__version__}"
        info = engine.create_engine_inspector().get_engine_information(
            trt.LayerInformationFormat.JSON
        )
        del engine  # its weights: device memory the session does not need twice
        counts = layer_precisions(json.loads(info))
        if counts is None:
            return "unknown: the provider built its engines with layer names only"
        for kind, count in counts.items():
            total[kind] = total.get(kind, 0) + count
    return total


class OrtTrtRunner(OrtGpuRunner):
    """onnxruntime's TensorRT provider, with the CUDA provider behind it for nodes TensorRT
    does not take (as the provider's docs recommend). Engine and timing caches live under a
    folder keyed like the native runner's (model hash, onnxruntime + TensorRT versions, GPU,
    options): the provider's docs ask to invalidate them on any of those changes. Explicit
    min/opt/max profiles stop it from rebuilding engines mid-benchmark when the batch changes."""

    name = "ort-trt"
    provider = TRT_EP
    precisions: ClassVar[tuple[str, ...]] = ("fp32", "fp16", "bf16", "int8")
    builds_for_batches: ClassVar[bool] = True

    def __init__(
        self,
        model_path: str | Path,
        *,
        workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
        fp16_flag: bool = False,
        opt_batch: int | None = None,
        cache_dir: str | Path | None = None,
        device_id: int = 0,
        cudnn_conv_algo_search: str = "EXHAUSTIVE",
        tf32: bool = False,
        **common: Unpack[RunnerArgs],
    ) -> None:
        super().__init__(
            model_path,
            device_id=device_id,
            cudnn_conv_algo_search=cudnn_conv_algo_search,
            tf32=tf32,
            **common,
        )
        self.workspace_bytes = int(workspace_bytes)
        self.fp16_flag = bool(fp16_flag)
        self.opt_batch = opt_batch
        self.cache_root = Path(cache_dir) if cache_dir else default_cache_dir() / "ort-trt"
        self._profile: BatchProfile | None = None
        self._shapes: dict[str, tuple[tuple[int, ...], ...]] = {}
        self._cache_dir: Path | None = None
        self._engines_before: list[Path] = []
        self._engines_checked = False

    @classmethod
    def availability(cls) -> str | None:
        reason = provider_reason(TRT_EP)
        if reason:
            return reason
        reason = provider_reason(CUDA_EP)
        if reason:
            return reason
        from runtimes.engines import cuda_util

        return cuda_util.availability()

    def _plan_profile(self) -> None:
        """Profiles from the graph's declared input shapes and the requested batches."""
        self._shapes = {}
        for name, shape in onnx_input_shapes(self.model_path).items():
            fixed = shape[0] if shape and shape[0] > 0 else None
            self._profile = batch_profile(self.batch_sizes, fixed_batch=fixed, opt=self.opt_batch)
            self._shapes[name] = self._profile.shapes(shape)

    def _precision_path(self) -> str:
        """How precision is chosen with the TensorRT the provider loaded (`_facts`)."""
        major = trt_major(self._facts["tensorrt"])
        if self.fp16_flag and self.precision != "fp16":
            raise UnsupportedError("fp16_flag only applies to precision fp16")
        if major >= 11:
            if self.fp16_flag:
                raise UnsupportedError(
                    "fp16_flag (trt_fp16_enable) needs TensorRT 10: TensorRT 11 takes precision "
                    "from the graph"
                )
            if self.precision == "int8":
                return "explicit quantization from the graph's Q/DQ (TensorRT 11, no flag)"
            return f"strongly typed, precision from the graph (TensorRT {major})"
        if self.precision == "fp16":
            # Weakly typed, with no strongly typed switch in the provider: without the flag a
            # float16 graph runs in fp32 kernels. The engine inspection records what ran.
            return f"weakly typed, trt_fp16_enable: fp16 or fp32 per layer (TensorRT {major})"
        if self.precision == "bf16":
            # The same for a bfloat16 graph, with the provider's bf16 switch.
            return f"weakly typed, trt_bf16_enable: bf16 or fp32 per layer (TensorRT {major})"
        if self.precision == "int8":
            # TensorRT 10 through the provider is weakly typed: a QDQ network builds with
            # explicit quantization once int8 is enabled; no calibration table is read.
            return (
                f"explicit quantization from the graph's Q/DQ, trt_int8_enable (TensorRT {major})"
            )
        return f"weakly typed, fp32 (TensorRT {major}; trt_fp16_enable off)"

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
        if "trt_fp16_enable:" in path:
            opts["trt_fp16_enable"] = "True"
        if "trt_bf16_enable:" in path:
            opts["trt_bf16_enable"] = "True"
        if "trt_int8_enable" in path:
            opts["trt_int8_enable"] = "True"
        if self._stream is not None:
            opts["user_compute_stream"] = str(self._stream.handle)
        return opts

    def providers(self) -> list[str | tuple[str, dict[str, Any]]]:
        return [(TRT_EP, self.trt_options()), (CUDA_EP, self.cuda_options())]

    def activate_impl(self) -> None:
        reason = self.availability()
        if reason:
            raise RunnerError(f"{self.name} unavailable: {reason}")
        self._plan_profile()
        self._facts.update(load_provider_tensorrt())  # before trt_options() keys on its version
        self._facts["tensorrt_wheel"] = installed_tensorrt_version()
        self._engines_before = []
        self._engines_checked = False
        super().activate_impl()  # providers() -> trt_options() lists the cache first
        if self._engine_files():  # with explicit profiles the engine is built by now
            self._check_engines()

    def _engine_files(self) -> list[Path]:
        if self._cache_dir is None:
            return []
        return sorted(p for p in self._cache_dir.iterdir() if p.suffix == ".engine")

    def check_batch(self, feeds: dict[str, np.ndarray]) -> None:
        if self._profile is None:
            raise RunnerError("ort-trt: no optimization profile (activate() first)")
        for name in self._shapes:
            if name in feeds:
                self._profile.check(int(feeds[name].shape[0]), what="TensorRT provider")

    def infer_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = super().infer_impl(feeds)
        if not self._engines_checked:  # once: the engine exists after the first run at latest
            self._check_engines()
        return outputs

    def _check_engines(self) -> None:
        """The provider built (or found) TensorRT engines; for fp16 and int8, which precisions
        their layers run (refused when none runs the one asked for)."""
        engines = self._engine_files()
        if not engines:
            raise RunnerError(
                "ort-trt: the TensorRT provider built no engine; every node ran on the CUDA "
                "provider, so this is not a TensorRT result"
            )
        self._facts["trt_engines"] = len(engines)
        self._facts["engine_cache"] = "hit" if self._engines_before else "built"
        self._engines_checked = True
        if self.precision == "fp32":
            return
        trt = tensorrt_module(trt_major(self._facts["tensorrt"]))
        layers: dict[str, int] | str
        if trt is None:
            layers = (
                "unknown: no tensorrt Python module of the provider's TensorRT "
                f"{self._facts['tensorrt']} here to inspect the engines with"
            )
        else:
            layers = inspect_engines(trt, engines)
        self._facts["layer_precisions"] = layers
        if isinstance(layers, dict) and self.precision not in layers:
            raise RunnerError(
                f"ort-trt: asked for {self.precision}, but no layer of the TensorRT engines runs "
                f"in {self.precision} ({layers})"
            )

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info.update(
            workspace_bytes=self.workspace_bytes,
            profile=vars(self._profile) if self._profile else None,
            cache_dir=str(self._cache_dir) if self._cache_dir else None,
        )
        return info
