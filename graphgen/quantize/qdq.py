"""The QDQ writer: int8 weights read through DequantizeLinear, and Q/DQ pairs inserted into the
fp32 graph at the tensors the placement names.

- weights: int8, symmetric, one scale per output channel (axis 0), zero point 0, in [-127, 127];
  stored as int8 initializers under their torchvision names, each read through a DequantizeLinear;
- activations: one scale per tensor, zero point 0 (TensorRT requires zero points of 0): int8,
  amax / 127; tensors the placement marks unsigned are uint8, amax / 255;
- biases stay float32 (TensorRT's DequantizeLinear takes no int32; onnxruntime quantizes a
  float bias itself when it fuses a QLinearConv).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from graphgen.plan import INPUT, Conv, Linear, Plan
from graphgen.quantize.options import QMAX, QuantOptions
from graphgen.quantize.placement import placement_for


def quantize_weight(w: np.ndarray, qmax: int = QMAX) -> tuple[np.ndarray, np.ndarray]:
    """Per-output-channel symmetric int8: (q in [-qmax, qmax], scale per channel)."""
    flat = np.abs(w.reshape(w.shape[0], -1)).max(axis=1)
    scale = np.where(flat > 0, flat / qmax, 1.0).astype(np.float32)
    shape = (-1,) + (1,) * (w.ndim - 1)
    q = np.clip(np.rint(w / scale.reshape(shape)), -qmax, qmax).astype(np.int8)
    return q, scale


class QdqWriter:
    def __init__(self, weight_qmax: int = QMAX, *, dedicated: bool = False) -> None:
        self.weight_qmax = weight_qmax
        self.dedicated = dedicated
        self.unsigned: set[str] = set()
        self.amax: dict[str, float] = {}
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[TensorProto] = []
        self.readers: dict[str, int] = {}

    def const(self, name: str, array: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def quantize(self, tensor: str, amax: float, *, suffix: str = "") -> None:
        """A QuantizeLinear of `tensor`: int8 (scale amax / 127) or, for `unsigned` tensors,
        uint8 (scale amax / 255); zero point 0 either way."""
        unsigned = tensor in self.unsigned
        step = amax / (255 if unsigned else QMAX)
        scale = self.const(f"{tensor}.scale{suffix}", np.array(step, np.float32))
        zero = self.const(
            f"{tensor}.zero_point{suffix}", np.array(0, np.uint8 if unsigned else np.int8)
        )
        self.nodes.append(
            helper.make_node(
                "QuantizeLinear",
                [tensor, scale, zero],
                [f"{tensor}.q{suffix}"],
                name=f"{tensor}.Q{suffix}",
            )
        )
        self.amax[tensor] = amax
        self.readers[tensor] = 0

    def dequantize(self, tensor: str) -> str:
        """A DequantizeLinear for one more reader of `tensor`; returns its output's name.

        Every reader gets a DQ of its own. With `dedicated`, every reader past the first also
        gets its own Q, with scale and zero point initializers of its own (the same values):
        onnxruntime's x86 int8 -> uint8 rewrite and its conv fusion skip a Q that feeds two DQs,
        which left ResNet-50's block-entry convs (conv1 and downsample.0 read one tensor) in
        fp32; OpenVINO runs the separate Qs as int8 as long as their parameters are equal."""
        count = self.readers[tensor]
        self.readers[tensor] = count + 1
        suffix = "" if count == 0 else str(count)
        q = f"{tensor}.q"
        dedicated = self.dedicated and tensor not in self.unsigned
        if count and dedicated:
            self.quantize(tensor, self.amax[tensor], suffix=suffix)
            self.readers[tensor] = count + 1
            q = f"{tensor}.q{suffix}"
        scale, zero = (
            (f"{tensor}.scale{suffix}", f"{tensor}.zero_point{suffix}")
            if count and dedicated
            else (f"{tensor}.scale", f"{tensor}.zero_point")
        )
        name = f"{tensor}.dq{suffix}"
        self.nodes.append(
            helper.make_node("DequantizeLinear", [q, scale, zero], [name], name=f"{name}.DQ")
        )
        return name

    def weight(self, initializer: TensorProto) -> str:
        w = numpy_helper.to_array(initializer)
        q, scale = quantize_weight(w, self.weight_qmax)
        name = initializer.name
        initializer.CopyFrom(numpy_helper.from_array(q, name))
        s = self.const(f"{name}_scale", scale)
        z = self.const(f"{name}_zero_point", np.zeros(len(scale), np.int8))
        self.nodes.append(
            helper.make_node(
                "DequantizeLinear", [name, s, z], [f"{name}.dq"], name=f"{name}.DQ", axis=0
            )
        )
        return f"{name}.dq"


def insert_qdq(
    model: onnx.ModelProto, plan: Plan, amax: dict[str, float], *, options: QuantOptions
) -> onnx.ModelProto:
    """The fp32 graph emitted from `plan`, with Q/DQ pairs where `options.placement` puts them
    (in place; returns `model`). Node names are the plan's op names, so each op is found by
    name."""
    place = placement_for(plan, options.placement)
    ops = {op.name: op for op in plan.ops}
    reads = {(op_name, index): t for t, uses in place.inputs.items() for op_name, index in uses}
    inits = {t.name: t for t in model.graph.initializer}
    out = QdqWriter(options.weight_qmax, dedicated=options.placement == "ort")
    out.unsigned = place.unsigned
    quantized: set[str] = set()
    if INPUT in place.inputs:
        out.quantize(INPUT, amax[INPUT])
        quantized.add(INPUT)
    for node in model.graph.node:
        op = ops.get(node.name)
        if node.op_type in ("Conv", "Gemm") and isinstance(op, Conv | Linear):
            node.input[1] = out.weight(inits[node.input[1]])
        for index, name in enumerate(node.input):
            if name in quantized and ((node.name, index) in reads or name in place.outputs):
                node.input[index] = out.dequantize(name)
        out.nodes.append(node)
        for name in node.output:
            if name in place.outputs or name in place.inputs:
                out.quantize(name, amax[name])
                quantized.add(name)
    del model.graph.node[:]
    model.graph.node.extend(out.nodes)
    model.graph.initializer.extend(out.initializers)
    return model
