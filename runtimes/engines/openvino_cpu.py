"""OpenVINO on the CPU: a second CPU engine, independent of onnxruntime, on the same ONNX file.

OpenVINO's CPU plugin defaults to bf16 (or f16) inference on CPUs that have those units, which
would make an "fp32" run silently lower precision; the runner sets INFERENCE_PRECISION_HINT
for every precision (f32 for fp32, fp16 and int8; bf16 for bf16 and int8-bf16) and records
what the compiled model runs: the hint as it came back and the runtime precision of every op,
by op kind. Where bf16 was asked and OpenVINO runs f32 (a CPU without AMX or AVX-512 BF16: the
plugin then takes the hint as f32), the record says so (`precision_ran`, `precision_note`):
nothing changes silently. fp16 graphs keep their fp16 weights and run with f32 arithmetic, as
onnxruntime's CPU provider does. bf16 is graphgen's bfloat16 graph with the bf16 hint. int8
graphs (QDQ) become FakeQuantize
ops that OpenVINO's low-precision transformations turn into u8/i8 convolutions, whatever the
hint. The runner records the runtime precision of every compiled convolution and refuses a
graph none of whose convolutions runs in int8; OpenVINO 2026.4 keeps some in f32 by its own
choice (ResNet-50's stride-2 1x1 convs at stage entries), which `describe` reports. Whether an
integer conv runs as u8 or i8 is the CPU's choice too (the stem conv, whose input is signed,
runs as i8 on an AMX Xeon and ran as u8 on the CPUs the suite ran on before); both are int8.

Modes: latency sets PERFORMANCE_HINT LATENCY (one stream) and times synchronous `infer()` calls
on input tensors bound once; throughput sets PERFORMANCE_HINT THROUGHPUT and keeps OpenVINO's
optimal number of infer requests in flight in an AsyncInferQueue, as its benchmark_app does
(`benchmarks/fidelity.py` compares the two).

Every OpenVINO call in the project goes through `shared_core()`, one `ov.Core` for the process;
see its docstring for why a Core per runner crashed the process.
"""

from __future__ import annotations

import importlib.util
import threading
import time
from typing import Any

import numpy as np

from resnet_common.extras import install_command
from runtimes.base import Burst, Runner, RunnerError

INT8_KERNELS = ("u8", "i8")  # OpenVINO's runtime precisions of a quantized convolution
# The inference-precision hint of each precision: the precision of OpenVINO's float arithmetic.
HINTS = {"fp32": "f32", "fp16": "f32", "bf16": "bf16", "int8": "f32", "int8-bf16": "bf16"}
PERFORMANCE_HINTS = {"latency": "LATENCY", "throughput": "THROUGHPUT"}
# Ops that compute (not data movement, constants or I/O): whose precision says what ran.
COMPUTE_OPS = ("Convolution", "FullyConnected", "MatMul", "Eltwise", "Reduce", "Pooling")

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
    precisions = ("fp32", "fp16", "bf16", "int8", "int8-bf16")
    modes = ("latency", "throughput")

    @classmethod
    def availability(cls) -> str | None:
        if importlib.util.find_spec("openvino") is None:
            return f"openvino not installed ({install_command('openvino')})"
        return None

    def config(self) -> dict[str, Any]:
        """The compile properties: precision hint, performance hint, threads."""
        config: dict[str, Any] = {
            "INFERENCE_PRECISION_HINT": HINTS[self.precision],
            "PERFORMANCE_HINT": PERFORMANCE_HINTS[self.mode],
        }
        if self.threads is not None:
            config["INFERENCE_NUM_THREADS"] = self.threads
        return config

    def activate_impl(self) -> None:
        self.queue: Any = None
        try:
            self.compiled = shared_core().compile_model(str(self.model_path), "CPU", self.config())
        except Exception as err:  # OpenVINO raises RuntimeError subclasses per failure
            raise RunnerError(f"{self.name}: cannot compile {self.model_path}: {err}") from err
        self.request = self.compiled.create_infer_request()
        self.op_precisions = runtime_precisions(self.compiled)
        self.conv_kernels: dict[str, int] = dict(self.op_precisions.get("Convolution", {}))
        if self.precision.startswith("int8"):
            ints = sum(v for k, v in self.conv_kernels.items() if k in INT8_KERNELS)
            if not ints:
                raise RunnerError(
                    f"{self.name}: no convolution of {self.model_path.name} compiled in int8 "
                    f"({self.conv_kernels}): not a QDQ graph OpenVINO quantizes"
                )
        self.ran, self.note = precision_ran(
            self.precision, self.op_precisions, hint=self.hint_back()
        )
        if self.mode == "throughput":
            from openvino import AsyncInferQueue

            self.queue = AsyncInferQueue(self.compiled, self.streams())
        self.output_names = [o.get_any_name() for o in self.compiled.outputs]

    def hint_back(self) -> str:
        """INFERENCE_PRECISION_HINT as the compiled model reports it ("f32", "bf16")."""
        value = self.compiled.get_property("INFERENCE_PRECISION_HINT")
        return str(getattr(value, "to_string", lambda: value)())

    def streams(self) -> int:
        """OpenVINO's own number of requests for the hint (OPTIMAL_NUMBER_OF_INFER_REQUESTS):
        1 in latency mode, one per stream (or more) in throughput mode."""
        if self.mode == "latency":
            return 1
        return int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))

    def infer_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = self.request.infer(feeds)
        return {
            name: np.array(results[out], copy=True)
            for name, out in zip(self.output_names, self.compiled.outputs, strict=True)
        }

    def bind(self, feeds: dict[str, np.ndarray]) -> None:
        """Input tensors set once on every request, sharing the arrays' memory, as
        benchmark_app does: the timed calls then carry no input conversion."""
        import openvino as ov

        super().bind(feeds)
        requests = [self.request] + ([] if self.queue is None else list(self.queue))
        for request in requests:
            for name, array in feeds.items():
                tensor = ov.Tensor(np.ascontiguousarray(array), shared_memory=True)
                request.set_tensor(name, tensor)

    def timed_run(self) -> float:
        if self._bound is None:
            raise RuntimeError(f"{self.name}: timed_run() called before bind()")
        start = time.perf_counter_ns()
        self.request.infer()  # the bound tensors; outputs stay in the request
        return (time.perf_counter_ns() - start) * 1e-9

    def burst(self, *, seconds: float | None = None, count: int | None = None) -> Burst:
        """Every request of the queue kept busy (a new one starts as soon as one is idle) until
        `seconds` passed or `count` were started, rounded up to a whole round of requests;
        then all are waited for. Latencies are OpenVINO's own per request (`latency`, ms)."""
        queue = self.queue
        if queue is None or self._bound is None:
            raise RuntimeError(f"{self.name}: burst() needs throughput mode and bind()")
        size = len(queue)
        started, seen = 0, set()
        latencies: list[float] = []
        t0 = last = time.perf_counter()
        deadline = t0 + (seconds or 0.0)
        while (
            (count is not None and started < count)
            or (count is None and time.perf_counter() < deadline)
            or started % size
        ):
            idle = queue.get_idle_request_id()  # blocks until a request is free
            if idle in seen:
                latencies.append(float(queue[idle].latency))
            seen.add(idle)
            last = time.perf_counter()
            queue.start_async()
            started += 1
        queue.wait_all()
        wall = time.perf_counter() - t0
        latencies += [float(queue[i].latency) for i in seen]
        # every start after the first `size` waited for a completion: those came before `last`
        return Burst(started, wall, latencies, max(0, started - size), last - t0)

    def deactivate_impl(self) -> None:
        self.queue = None
        self.request = None
        self.compiled = None

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
            info["inference_precision"] = self.hint_back()
            info["performance_hint"] = str(self.compiled.get_property("PERFORMANCE_HINT"))
            info["num_streams"] = int(self.compiled.get_property("NUM_STREAMS"))
            info["threads"] = int(self.compiled.get_property("INFERENCE_NUM_THREADS"))
            info["op_precisions"] = {k: dict(v) for k, v in self.op_precisions.items()}
            info["precision_ran"] = self.ran
            if self.note:
                info["precision_note"] = self.note
            if self.precision.startswith("int8"):
                info["conv_kernels"] = dict(self.conv_kernels)
        return info


def runtime_precisions(compiled: Any) -> dict[str, dict[str, int]]:
    """The compiled model's ops by kind (OpenVINO's layerType) and the precision each runs in:
    {"Convolution": {"bf16": 53}, "FullyConnected": {"bf16": 1}, ...}."""
    counts: dict[str, dict[str, int]] = {}
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        if "layerType" not in info or "runtimePrecision" not in info:
            continue
        kind = info["layerType"].astype(str)
        precision = info["runtimePrecision"].astype(str).lower()
        per_kind = counts.setdefault(kind, {})
        per_kind[precision] = per_kind.get(precision, 0) + 1
    return counts


def runtime_conv_precisions(compiled: Any) -> dict[str, int]:
    """Convolutions of a compiled model by the precision they run in ("u8", "i8", "f32")."""
    return dict(runtime_precisions(compiled).get("Convolution", {}))


def _float_parts(ops: dict[str, dict[str, int]]) -> dict[str, int]:
    """The precisions of the compute ops that are not integer: a graph's float arithmetic."""
    out: dict[str, int] = {}
    for kind in COMPUTE_OPS:
        for precision, n in ops.get(kind, {}).items():
            if precision not in INT8_KERNELS:
                out[precision] = out.get(precision, 0) + n
    return out


def precision_ran(
    asked: str, ops: dict[str, dict[str, int]], *, hint: str
) -> tuple[str, str | None]:
    """What the compiled model runs, in the suite's words ("bf16", "int8 + f32", ...), and a
    note when that is not what `asked` means (None when it is)."""
    floats = _float_parts(ops)
    main = max(floats, key=lambda k: floats[k]) if floats else "f32"
    if asked.startswith("int8"):
        ran = f"int8 + {main}"
        wanted = "bf16" if asked == "int8-bf16" else "f32"
    else:
        ran = "fp32" if main == "f32" else main
        wanted = {"fp32": "f32", "fp16": "f32", "bf16": "bf16"}[asked]
    if main == wanted or (asked.startswith("int8") and not floats):
        return ran, None
    if wanted == "bf16" and hint != "bf16":
        why = (
            f"OpenVINO took the bf16 hint as {hint} (this CPU has no bf16 units it uses: "
            "AMX or AVX-512 BF16)"
        )
    else:
        why = f"OpenVINO's compiled model runs {floats} (hint {hint})"
    what = "its float parts" if asked.startswith("int8") else "it"
    return ran, f"asked {asked}, ran {what} in {main}: {why}"
