"""OpenVINO on the CPU: a second CPU engine, independent of onnxruntime, on the same ONNX file.

OpenVINO's CPU plugin defaults to bf16 (or f16) inference on CPUs that have those units, which
would make an "fp32" run silently lower precision; the runner pins INFERENCE_PRECISION_HINT to
f32 and records what the compiled model reports. fp16 graphs keep their fp16 weights and run
with f32 arithmetic, as onnxruntime's CPU provider does.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np

from runtimes.base import Runner, RunnerError


class OpenVinoRunner(Runner):
    name = "openvino"
    packages = ("openvino",)
    precisions = ("fp32", "fp16")

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
        return info
