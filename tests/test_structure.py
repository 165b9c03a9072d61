"""graphgen.structure: one spec-vs-graph node diff for float graphs and, Q/DQ bypassed, for
int8 QDQ graphs, so both checks name the same node for the same rewiring."""

from __future__ import annotations

from collections.abc import Callable

import onnx
import pytest

from graphgen.onnx_io import build, plan_of
from graphgen.quantize import quantize, seeded_calibration
from graphgen.spec import cifar_spec
from graphgen.structure import int8_structure_diff, structure_diff

SPEC = cifar_spec(8)  # option A: Slice and Pad shortcuts too


def _fp32() -> onnx.ModelProto:
    return build(SPEC, seed=1)


def _int8() -> onnx.ModelProto:
    model = build(SPEC, seed=1, fold=True)
    return quantize(model, seeded_calibration(model, plan_of(model), count=2))


def _diff(model: onnx.ModelProto) -> str | None:
    quantized = any(n.op_type == "QuantizeLinear" for n in model.graph.node)
    return int8_structure_diff(model) if quantized else structure_diff(model)


def _rewire(model: onnx.ModelProto) -> None:
    (add,) = [n for n in model.graph.node if n.name == "layer2.0.add"]
    add.input[1] = add.input[0]  # the residual input reads the branch instead


def _drop_last(model: onnx.ModelProto) -> None:
    del model.graph.node[-1]


@pytest.mark.parametrize("make", [_fp32, _int8], ids=["fp32", "int8"])
def test_a_built_graph_is_its_spec(make: Callable[[], onnx.ModelProto]) -> None:
    assert _diff(make()) is None


@pytest.mark.parametrize("make", [_fp32, _int8], ids=["fp32", "int8"])
def test_a_rewired_add_is_named(make: Callable[[], onnx.ModelProto]) -> None:
    model = make()
    _rewire(model)
    problem = _diff(model) or ""
    assert "(layer2.0.add) differs from the spec's: expected Add(" in problem, problem


@pytest.mark.parametrize(
    ("make", "aside"), [(_fp32, ""), (_int8, " (Q/DQ aside)")], ids=["fp32", "int8"]
)
def test_a_missing_node_is_counted(make: Callable[[], onnx.ModelProto], aside: str) -> None:
    model = make()
    qdq = ("QuantizeLinear", "DequantizeLinear")
    expected = len([n for n in model.graph.node if n.op_type not in qdq])
    _drop_last(model)
    assert _diff(model) == f"{expected - 1} nodes{aside} where the spec gives {expected}"
