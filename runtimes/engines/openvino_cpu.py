"""OpenVINO on the CPU: a second CPU engine, independent of onnxruntime, on the same ONNX file.

OpenVINO's CPU plugin defaults to bf16 (or f16) inference on CPUs that have those units, which
would make an "fp32" run silently lower precision; the runner pins INFERENCE_PRECISION_HINT to
f32 and records what the compiled model reports. fp16 graphs keep their fp16 weights and run
with f32 arithmetic, as onnxruntime's CPU provider does. int8 graphs (QDQ) become FakeQuantize
ops that OpenVINO's low-precision transformations turn into u8/i8 convolutions, whatever the
hint. The runner records the runtime precision of every compiled convolution and refuses a
graph none of whose convolutions runs in int8; OpenVINO 2026.4 keeps some in f32 by its own
choice (ResNet-50's stride-2 1x1 convs at stage entries), which `describe` reports.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np

from runtimes.base import Runner, RunnerError


class OpenVinoRunner(Runner):
    name = "openvino"
    packages = ("openvino",)
    precisions = ("fp32", "fp16", "int8")

    @classmethod
    def availability(cls) -> str | None:
        if importlib.util.find_spec("openvino") is None:
            return "openvino not installed"
        return None

    def activate_impl(self) -> None:
        import openvino as ov

        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "f32"}
        if self.threads is not None:
            config["INFERENCE_NUM_THREADS"] = self.threads
        try:
            core = ov.Core()
            self.compiled = core.compile_model(str(self.model_path), "CPU", config)
        except Exception as err:  # OpenVINO raises RuntimeError subclasses per failure
            raise RunnerError(f"{self.name}: cannot compile {self.model_path}: {err}") from err
        self.request = self.compiled.create_infer_request()
        self.conv_kernels: dict[str, int] = {}
        if self.precision == "int8":
            self.conv_kernels = runtime_conv_precisions(self.compiled)
            ints = sum(v for k, v in self.conv_kernels.items() if k in ("u8", "i8"))
            if not ints:
                raise RunnerError(
                    f"{self.name}: no convolution of {self.model_path.name} compiled in int8 "
                    f"({self.conv_kernels}): not a QDQ graph OpenVINO quantizes"
                )
        self.output_names = [o.get_any_name() for o in self.compiled.outputs]

    def infer_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = self.request.infer(feeds)
        return {
            name: np.array(results[out], copy=True)
            for name, out in zip(self.output_names, self.compiled.outputs, strict=True)
        }

    def deactivate_impl(self) -> None:
        del self.request
        del self.compiled

    def describe(self) -> dict[str, Any]:
        import openvino as ov

        info = super().describe()
        info["version"] = f"openvino {ov.get_version()}"
        if self.is_active:
            info["inference_precision"] = str(
                self.compiled.get_property("INFERENCE_PRECISION_HINT")
            )
            info["threads"] = int(self.compiled.get_property("INFERENCE_NUM_THREADS"))
            if self.precision == "int8":
                info["conv_kernels"] = dict(self.conv_kernels)
        return info


def runtime_conv_precisions(compiled: Any) -> dict[str, int]:
    """Convolutions of a compiled model by the precision they run in ("u8", "i8", "f32")."""
    counts: dict[str, int] = {}
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        if "layerType" in info and info["layerType"].astype(str) == "Convolution":
            precision = info["runtimePrecision"].astype(str).lower()
            counts[precision] = counts.get(precision, 0) + 1
    return counts
