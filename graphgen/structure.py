"""The structure check: a graphgen file must be node for node what graphgen emits for the spec in
its metadata, so a graph whose wiring no longer matches its spec fails parity even where its
numbers happen to agree (Polygraphy's comparator has no such check).

One node diff serves both kinds of file: a float graph against the graph its spec gives with its
own weights, and an int8 QDQ graph, Q/DQ bypassed, against the folded graph of its spec.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import onnx

from graphgen.errors import GraphError
from graphgen.onnx_emit import DEFAULT_OPSET, emit_model
from graphgen.onnx_io import fixed_batch, metadata, opset_of, plan_of, weights_of


def structure_diff(model: onnx.ModelProto, *, source: str = "model") -> str | None:
    """None when the graph is exactly what graphgen emits for the spec in its metadata (same
    nodes, wiring and initializer names and shapes), else the first difference."""
    plan = plan_of(model, source=source)
    weights = weights_of(model)
    io_type = model.graph.input[0].type.tensor_type.elem_type
    try:
        expected = emit_model(
            plan,
            weights,
            dtype=metadata(model).get("graphgen.dtype", "float32"),
            io_dtype=onnx.helper.tensor_dtype_to_np_dtype(io_type).name,
            opset=opset_of(model) or DEFAULT_OPSET,
        )
    except KeyError as err:
        return f"initializer {err.args[0]} is missing from the graph"
    want = {t.name: list(t.dims) for t in expected.graph.initializer}
    have = {t.name: list(t.dims) for t in model.graph.initializer}
    if want != have:
        name = sorted(set(want) ^ set(have)) or [k for k in want if want[k] != have[k]]
        return f"initializers differ from the spec's at {name[0]}"
    return node_diff(expected.graph.node, model.graph.node)


def int8_structure_diff(model: onnx.ModelProto, *, source: str = "model") -> str | None:
    """None when the int8 graph, Q/DQ bypassed, is node for node the folded fp32 graph its spec
    gives (same ops, wiring, attributes), else the first difference."""
    try:
        plan = plan_of(model, source=source)
    except GraphError as err:
        return str(err)
    shapes = plan.tensor_shapes()
    stand_in = {k: np.zeros(v, np.float32) for k, v in shapes.items()}
    batch, opset = fixed_batch(model), opset_of(model) or DEFAULT_OPSET
    expected = list(emit_model(plan, stand_in, batch=batch, opset=opset).graph.node)
    problem = node_diff(expected, list(dequantized_nodes(model)), aside=" (Q/DQ aside)")
    if problem is not None:
        return problem
    have = {t.name: tuple(t.dims) for t in model.graph.initializer}
    for name, shape in shapes.items():
        if have.get(name) != tuple(shape):
            return f"initializer {name} is missing or misshapen ({have.get(name)} != {shape})"
    return None


def node_diff(
    expected: Sequence[onnx.NodeProto], found: Sequence[onnx.NodeProto], *, aside: str = ""
) -> str | None:
    """The first node of `found` that is not the spec's (op, wiring, attributes, name), or a
    count that differs; `aside` says what the count leaves out."""
    for index, (a, b) in enumerate(zip(expected, found, strict=False)):
        if a != b:
            return (
                f"node {index} ({a.name}) differs from the spec's: expected {a.op_type}"
                f"({', '.join(a.input)}), found {b.op_type}({', '.join(b.input)}) named {b.name}"
            )
    if len(expected) != len(found):
        return f"{len(found)} nodes{aside} where the spec gives {len(expected)}"
    return None


def dequantized_nodes(model: onnx.ModelProto) -> Iterator[onnx.NodeProto]:
    """The graph's nodes with every Q/DQ pair bypassed: the fp32 network it quantizes (each DQ
    output renamed back to the tensor its Q read; a weight's DQ reads the initializer itself)."""
    q_input = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "QuantizeLinear"}
    back: dict[str, str] = {}
    for n in model.graph.node:
        if n.op_type == "DequantizeLinear":
            src = n.input[0]
            back[n.output[0]] = q_input.get(src, src)
    for n in model.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        copy = onnx.NodeProto()
        copy.CopyFrom(n)
        for i, name in enumerate(copy.input):
            copy.input[i] = back.get(name, name)
        yield copy
