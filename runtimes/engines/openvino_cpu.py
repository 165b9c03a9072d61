"""OpenVINO on the CPU: a second CPU engine, independent of onnxruntime, on the same ONNX file.

OpenVINO's CPU plugin defaults to bf16 (or f16) inference on CPUs that have those units, which
would make an "fp32" run silently lower precision; the runner pins INFERENCE_PRECISION_HINT to
f32 and records what the compiled model reports. fp16 graphs keep their fp16 weights and run
with f32 arithmetic, as onnxruntime's CPU provider does. int8 graphs (QDQ) become FakeQuantize
ops that OpenVINO's low-precision transformations turn into u8/i8 convolutions, whatever the
hint. The runner records the runtime precision of every compiled convolution and refuses a
graph none of whose convolutions runs in int8; OpenVINO 2026.4 keeps some in f32 by its own
choice (ResNet-50's stride-2 1x1 convs at stage entries), which `describe` reports. Whether an
integer conv runs as u8 or i8 is the CPU's choice too (the stem conv, whose input is signed,
runs as i8 on an AMX Xeon and ran as u8 on the CPUs the suite ran on before); both are int8.

Every OpenVINO call in the project goes through `shared_core()`, one `ov.Core` for the process;
see its docstring for why a Core per runner crashed the process.
"""

from __future__ import annotations

import importlib.util
import threading
from typing import Any

import numpy as np

from runtimes.base import Runner, RunnerError

INT8_KERNELS = ("u8", "i8")  # OpenVINO's runtime precisions of a quantized convolution

_core: Any = None
_core_lock = threading.Lock()


def shared_core() -> Any:
    """The process's one `openvino.Core`, made on first use and never destroyed.

    OpenVINO's CPU plugin (one per Core) installs an alternate signal stack of its own on the
    thread that first uses the device (`sigaltstack`, sized from the kernel's AT_MINSIGSTKSZ,
    which grows with AVX-512 and AMX state), remembers the one it replaced, and on
    destruction frees its stack and puts the remembered one back. Cores
    destroyed in any order other than the reverse of their creation (an interleaved sweep
    deactivates its runners in load order) therefore reinstate a stack that was already freed:
    the next signal with a handler (Ctrl-C, SIGCHLD, faulthandler's SIGSEGV) is delivered onto
    unmapped memory and the kernel kills the process (exit 139, no traceback, an empty
    crash.log). One Core that lives as long as the process keeps one stack, always mapped;
    it is also what OpenVINO recommends ("a single Core instance per application": plugins
    are not shared between Cores). The lock makes creation happen once.
    """
    global _core
    with _core_lock:
        if _core is None:
            import openvino as ov

            _core = ov.Core()
        return _core


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
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "f32"}
        if self.threads is not None:
            config["INFERENCE_NUM_THREADS"] = self.threads
        try:
            self.compiled = shared_core().compile_model(str(self.model_path), "CPU", config)
        except Exception as err:  # OpenVINO raises RuntimeError subclasses per failure
            raise RunnerError(f"{self.name}: cannot compile {self.model_path}: {err}") from err
        self.request = self.compiled.create_infer_request()
        self.conv_kernels: dict[str, int] = {}
        if self.precision == "int8":
            self.conv_kernels = runtime_conv_precisions(self.compiled)
            ints = sum(v for k, v in self.conv_kernels.items() if k in INT8_KERNELS)
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
        info = super().describe()
        # describe() must work where openvino is missing (a sweep's skipped record, `list`).
        reason = self.availability()
        if reason is not None:
            info["version"] = None
            info["unavailable"] = reason
            return info
        import openvino as ov

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
