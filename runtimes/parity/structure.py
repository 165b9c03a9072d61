"""The structure check: a graphgen file must be exactly what graphgen emits for the spec in its
metadata, so a graph whose wiring no longer matches its spec fails parity even where its numbers
happen to agree (Polygraphy's comparator has no such check)."""

from __future__ import annotations

from pathlib import Path

import onnx

from graphgen.onnx_emit import DEFAULT_OPSET, emit_model
from graphgen.onnx_io import load, metadata, opset_of, plan_of, weights_of
from runtimes.models import ResolvedModel


def structure_check(path: str | Path) -> str | None:
    """None when the graph is exactly what graphgen emits for the spec in its metadata (same
    nodes, wiring and initializer names and shapes), else the first difference."""
    model = load(path)
    plan = plan_of(model, source=str(path))
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
    for index, (a, b) in enumerate(zip(expected.graph.node, model.graph.node, strict=False)):
        if a != b:
            return (
                f"node {index} ({a.name}) differs from the spec's: expected {a.op_type}"
                f"({', '.join(a.input)}), found {b.op_type}({', '.join(b.input)}) named {b.name}"
            )
    if len(expected.graph.node) != len(model.graph.node):
        return f"{len(model.graph.node)} nodes where the spec gives {len(expected.graph.node)}"
    return None


def check_structure(model: ResolvedModel, precision: str) -> str | None:
    """The structure check; an int8 graph must be, Q/DQ bypassed, the folded graph of its spec,
    and its fp32 reference must pass the fp32 check."""
    if precision != "int8":
        return structure_check(model.path)
    from graphgen.quantize import check_int8_structure

    problem = check_int8_structure(load(model.path), source=str(model.path))
    if problem is None and model.reference_path is not None:
        problem = structure_check(model.reference_path)
    return problem
