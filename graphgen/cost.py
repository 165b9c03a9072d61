"""The cost model: params and MACs from a plan, and the same counts by walking any ONNX graph.

Definitions (the README repeats them):
- `macs`: multiply-accumulates of the conv and fully connected layers at batch 1, what the ResNet
  paper calls "FLOPs" (He et al. 2015, 3.3: "3.6 billion FLOPs (multiply-adds)").
- `flops`: 2 x macs, one multiply and one add per MAC; BN, ReLU, additions and pooling are not
  counted (they are about 1% of a ResNet's arithmetic and vanish when BN is folded).
- `params`: trainable parameters (conv and fc weights and biases, BN scale and shift); BN running
  statistics are state, not parameters, as in torch's `parameters()`.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import onnx

from graphgen.errors import GraphError
from graphgen.plan import INPUT, Plan, last_use

FLOAT_TYPES = {
    onnx.TensorProto.FLOAT,
    onnx.TensorProto.FLOAT16,
    onnx.TensorProto.DOUBLE,
    onnx.TensorProto.BFLOAT16,
}


@dataclass
class Cost:
    name: str
    params: int
    macs: int
    input_shape: list[int | str]
    output_shape: list[int | str]
    op_counts: dict[str, int] = field(default_factory=dict)

    @property
    def flops(self) -> int:
        return 2 * self.macs

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["flops"] = self.flops
        return data


def plan_cost(plan: Plan, *, batch: int | str = "N") -> Cost:
    s = plan.spec
    kinds = Counter(type(op).__name__ for op in plan.ops)
    return Cost(
        s.name,
        plan.params,
        plan.macs,
        [batch, 3, s.image_size, s.image_size],
        [batch, s.classes],
        dict(sorted(kinds.items())),
    )


FP32 = 4  # bytes per value


@dataclass(frozen=True)
class Memory:
    """A plan's size at batch 1 in fp32, from the plan alone (nothing is built): what `graphgen
    list` shows and what the size limits check before anything is allocated."""

    weight_values: int  # every initializer: parameters and BN running statistics
    largest_activation: int  # values of the largest single tensor
    peak_activation: int  # values live at once in a forward pass that frees tensors when done

    @property
    def weight_bytes(self) -> int:
        """About the fp32 file's size: the weights, plus a few KB of graph."""
        return FP32 * self.weight_values

    @property
    def inference_bytes(self) -> int:
        """Weights plus the peak of live activations: an engine's floor at batch 1."""
        return FP32 * (self.weight_values + self.peak_activation)


def plan_memory(plan: Plan) -> Memory:
    """Walk the plan once: each op's output is live from the op until its last reader."""
    frees = last_use(plan)
    live = {INPUT: math.prod(plan.input_shape)}
    total = peak = largest = live[INPUT]
    for index, op in enumerate(plan.ops):
        size = math.prod(op.shape)
        live[op.out] = size
        total += size
        peak, largest = max(peak, total), max(largest, size)
        for name in frees.get(index, ()):
            if name != op.out:
                total -= live.pop(name, 0)
    weights = sum(math.prod(s) for s in plan.tensor_shapes().values())
    return Memory(weights, largest, peak)


def _dims(value_info: onnx.ValueInfoProto) -> list[int | str]:
    shape = value_info.type.tensor_type.shape
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in shape.dim]


def graph_cost(model: onnx.ModelProto, *, name: str | None = None) -> Cost:
    """Walk an ONNX classifier: conv and Gemm/MatMul MACs from inferred shapes, params from
    initializers (BN running mean and variance excluded)."""
    graph = model.graph
    _refuse_foreign_ops(graph)
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False).graph
    except Exception as err:  # shape inference raises several types for broken graphs
        raise GraphError(f"shape inference failed: {err}") from None
    shapes = {
        vi.name: _dims(vi) for vi in [*inferred.value_info, *inferred.input, *inferred.output]
    }
    init = {t.name: list(t.dims) for t in graph.initializer}
    init_types = {t.name: t.data_type for t in graph.initializer}
    constants = _constant_shapes(graph)

    bn_stats = set()
    for node in graph.node:
        if node.op_type == "BatchNormalization":
            bn_stats.update(node.input[3:5])
    # QDQ graphs (graphgen quantize): int8 weights read through a DequantizeLinear are
    # parameters; the scales and zero points of Q/DQ nodes are not.
    qdq = [n for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    qparams = {name for node in qdq for name in node.input[1:3]}
    quantized = {node.input[0] for node in qdq if node.op_type == "DequantizeLinear"}
    params = sum(
        int(np.prod(dims))
        for n, dims in init.items()
        if n not in bn_stats
        and n not in qparams
        and (init_types[n] in FLOAT_TYPES or n in quantized)
    )
    # Weights some exporters put in Constant nodes instead of initializers.
    weight_inputs = {
        name
        for node in graph.node
        if node.op_type in ("Conv", "Gemm", "MatMul")
        for name in node.input[1:3]
    }
    params += sum(int(np.prod(constants[n])) for n in weight_inputs if n in constants)

    macs = 0
    for node in graph.node:
        if node.op_type == "Conv":
            w = init.get(node.input[1]) or constants.get(node.input[1]) or shapes.get(node.input[1])
            out = shapes.get(node.output[0])
            if not w or not out or len(out) < 3 or not _known(out[2:]) or not _known(w):
                raise GraphError(f"cannot size Conv node {node.name!r}: shapes not inferred")
            spatial = math.prod(int(d) for d in out[2:])
            macs += int(w[0]) * spatial * math.prod(int(d) for d in w[1:])
        elif node.op_type in ("Gemm", "MatMul"):
            macs += _matmul_macs(node, shapes, init, constants)

    inputs = [i for i in graph.input if i.name not in init]
    if not inputs or not graph.output:
        raise GraphError("the graph has no inputs or outputs")
    counts = Counter(node.op_type for node in graph.node)
    return Cost(
        name or graph.name or "model",
        params,
        macs,
        _dims(inputs[0]),
        _dims(graph.output[0]),
        dict(sorted(counts.items())),
    )


def _matmul_macs(
    node: onnx.NodeProto,
    shapes: dict[str, Any],
    init: dict[str, Any],
    constants: dict[str, Any],
) -> int:
    """Per-sample MACs of a Gemm or MatMul: the batch (Gemm's M, MatMul's leading dim) is 1."""
    a = shapes.get(node.input[0])
    b = init.get(node.input[1]) or constants.get(node.input[1]) or shapes.get(node.input[1])
    if not a or not b or not _known(b[-2:]):
        raise GraphError(f"cannot size {node.op_type} node {node.name!r}: shapes not inferred")
    attrs = {at.name: at.i for at in node.attribute}
    if node.op_type == "Gemm":
        k, n_out = (b[1], b[0]) if attrs.get("transB") else (b[0], b[1])
        return int(k) * int(n_out)
    if len(b) == 1:  # matrix-vector: [..., K] x [K]
        k, n_out = b[0], 1
    else:
        k, n_out = b[-2], b[-1]
    rows = a[1:-1] if len(a) > 2 else []  # rows per sample beyond the batch dimension
    if not _known(rows):
        raise GraphError(f"cannot size MatMul node {node.name!r}: shapes not inferred")
    return int(np.prod(rows, dtype=np.int64)) * int(k) * int(n_out)


STANDARD_DOMAINS = ("", "ai.onnx")


def _refuse_foreign_ops(graph: onnx.GraphProto) -> None:
    """Ops outside the ONNX standard (onnxruntime's com.microsoft contrib ops, say) hide their
    shapes from onnx's inference and their arithmetic from the count: a FusedConv is no Conv.
    Saying so beats "cannot size Conv node: shapes not inferred" or a silent undercount."""
    foreign: dict[str, set[str]] = {}
    for node in graph.node:
        if node.domain not in STANDARD_DOMAINS:
            foreign.setdefault(node.domain, set()).add(node.op_type)
    if foreign:
        ops = "; ".join(f"{d}: {', '.join(sorted(t))}" for d, t in sorted(foreign.items()))
        raise GraphError(
            f"cannot count this graph: it has ops outside the ONNX standard ({ops}), which onnx "
            "cannot infer shapes or MACs through; an onnxruntime-optimised file? give the model "
            "as exported, before onnxruntime optimised it"
        )


def _known(dims: list[Any]) -> bool:
    return all(isinstance(d, int) and d > 0 for d in dims)


def _constant_shapes(graph: onnx.GraphProto) -> dict[str, list[int]]:
    shapes = {}
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    shapes[node.output[0]] = list(attr.t.dims)
    return shapes
