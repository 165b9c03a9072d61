"""`ort-cpu`: onnxruntime's CPU execution provider."""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

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
    precisions = ("fp32", "fp16", "int8")

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


def conv_kernels(optimized: Path) -> dict[str, int]:
    """Convs of an onnxruntime-optimised graph by kind: "int8" (QLinearConv, ConvInteger) or
    "float" (Conv, FusedConv, NCHWc Conv)."""
    import onnx

    model = onnx.load(str(optimized), load_external_data=False)
    ops = Counter(n.op_type for n in model.graph.node)
    ints = sum(ops[k] for k in INTEGER_CONVS)
    floats = sum(v for k, v in ops.items() if k in ("Conv", "FusedConv"))
    return {"int8": ints, "float": floats}
