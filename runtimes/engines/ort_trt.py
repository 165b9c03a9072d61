"""`ort-trt`: onnxruntime's TensorRT execution provider, with the CUDA provider behind it.

The provider has to have built at least one TensorRT engine (found in its engine cache after
the first run); otherwise every node ran on the CUDA provider and the result is not TRT's.
Profiles, cache keys and the cache folder come from `runtimes.engines.trt_profiles`, shared with
the native `trt` runner. Options follow the provider's docs
(onnxruntime.ai/docs/execution-providers/TensorRT-ExecutionProvider.html).
"""

from __future__ import annotations

import importlib
import importlib.util
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
    """The TensorRT wheel installed next to onnxruntime-gpu (the provider loads its libraries)."""
    from importlib import metadata

    for dist in ("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt-libs"):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


class OrtTrtRunner(OrtGpuRunner):
    """onnxruntime's TensorRT provider, with the CUDA provider behind it for nodes TensorRT
    does not take (as the provider's docs recommend). Engine and timing caches live under a
    folder keyed like the native runner's (model hash, onnxruntime + TensorRT versions, GPU,
    options): the provider's docs ask to invalidate them on any of those changes. Explicit
    min/opt/max profiles stop it from rebuilding engines mid-benchmark when the batch changes."""

    name = "ort-trt"
    provider = TRT_EP
    precisions: ClassVar[tuple[str, ...]] = ("fp32", "fp16", "int8")
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
        if self.precision == "int8":
            if version is not None and trt_major(version) >= 11:
                return "explicit quantization from the graph's Q/DQ (TensorRT 11, no flag)"
            # TensorRT 10 through the provider is weakly typed: a QDQ network builds with
            # explicit quantization once int8 is enabled; no calibration table is read.
            return "explicit quantization from the graph's Q/DQ, trt_int8_enable (TensorRT 10)"
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
        if "trt_int8_enable" in path:
            opts["trt_int8_enable"] = "True"
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
        self._engines_before = []
        self._engines_checked = False
        super().activate_impl()  # providers() -> trt_options() lists the cache first

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
