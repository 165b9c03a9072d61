"""`ort-cpu`: onnxruntime's CPU execution provider."""

from __future__ import annotations

import functools
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

from runtimes.base import RunnerError
from runtimes.engines.ort import OrtRunner

# What onnxruntime's CPU provider turns a QDQ conv into when it runs it with integer kernels.
INTEGER_CONVS = ("QLinearConv", "ConvInteger")


class OrtCpuRunner(OrtRunner):
    """onnxruntime's CPU provider. fp16 graphs run with fp32 kernels between inserted casts.

    int8 graphs (QDQ) run with integer kernels where onnxruntime fuses DQ -> Conv -> Q into a
    QLinearConv. No silent fallback: at activation the optimised graph is saved and read
    back, and a conv left in float (a placement onnxruntime does not fuse) is a RunnerError.
    """

    name = "ort-cpu"
    precisions: ClassVar[tuple[str, ...]] = ("fp32", "fp16", "bf16", "int8")
    modes: ClassVar[tuple[str, ...]] = ("latency", "throughput")

    @classmethod
    def refusal_for(cls, precision: str) -> str | None:
        """bf16 runs only where this onnxruntime's CPU provider has a bfloat16 Conv: asked of
        onnxruntime itself on a one-Conv graph, so a release that adds one runs it."""
        if precision != "bf16" or cls.availability() is not None:
            return None
        return bf16_conv_problem()

    def activate_impl(self) -> None:
        self._kernels: dict[str, int] = {}
        if self.precision != "int8":
            super().activate_impl()
            return
        with tempfile.TemporaryDirectory(prefix="ort-int8-") as tmp:
            self._optimized: Path | None = Path(tmp) / "optimized.onnx"
            super().activate_impl()
            self._kernels = conv_kernels(self._optimized)
        self._optimized = None
        floats = self._kernels.get("float", 0)
        if floats:
            raise RunnerError(
                f"{self.name}: onnxruntime runs {floats} of {sum(self._kernels.values())} convs "
                f"of {self.model_path.name} in float, not int8 (quantize with the ort placement)"
            )

    def session_options(self) -> Any:
        opts = super().session_options()
        optimized = getattr(self, "_optimized", None)
        if optimized is not None:
            opts.optimized_model_filepath = str(optimized)
        return opts

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        if self.precision == "int8":
            info["conv_kernels"] = dict(getattr(self, "_kernels", {}))
        return info


@functools.cache
def bf16_conv_problem() -> str | None:
    """Why this onnxruntime's CPU provider cannot run a bfloat16 Conv (opset 22: Conv takes
    bfloat16 from Conv-22), in onnxruntime's own words; None when it can."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from graphgen.onnx_emit import BF16_MIN_OPSET

    weight = helper.make_tensor("w", TensorProto.BFLOAT16, [1, 1, 1, 1], [1.0])
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["x"], ["xb"], to=TensorProto.BFLOAT16),
            helper.make_node("Conv", ["xb", "w"], ["yb"], name="conv"),
            helper.make_node("Cast", ["yb"], ["y"], to=TensorProto.FLOAT),
        ],
        "bf16-conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 2, 2])],
        initializer=[weight],
    )
    opsets = [helper.make_opsetid("", BF16_MIN_OPSET)]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = helper.find_min_ir_version_for(opsets)
    onnx.checker.check_model(model)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    try:
        ort.InferenceSession(
            model.SerializeToString(), sess_options=opts, providers=["CPUExecutionProvider"]
        )
    except Exception as err:  # onnxruntime's NotImplemented and friends
        said = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return (
            f"onnxruntime {ort.__version__}'s CPU provider has no bfloat16 Conv "
            f"(asked with a one-Conv opset-{BF16_MIN_OPSET} graph, it said: {said})"
        )
    return None


def conv_kernels(optimized: Path) -> dict[str, int]:
    """Convs of an onnxruntime-optimised graph by kind: "int8" (QLinearConv, ConvInteger) or
    "float" (Conv, FusedConv, NCHWc Conv)."""
    import onnx

    model = onnx.load(str(optimized), load_external_data=False)
    ops = Counter(n.op_type for n in model.graph.node)
    ints = sum(ops[k] for k in INTEGER_CONVS)
    floats = sum(v for k, v in ops.items() if k in ("Conv", "FusedConv"))
    return {"int8": ints, "float": floats}
