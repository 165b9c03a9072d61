"""The counts the paper and torchvision publish, from the plan and from walking the graph."""

import pytest

from graphgen.cost import graph_cost, plan_cost
from graphgen.onnx_io import build
from graphgen.plan import expand
from graphgen.spec import STANDARD_VARIANTS, cifar_spec, imagenet_spec
from tests._graphs import built

# torchvision's parameter counts (option B); MACs with the paper's stride on the first 1x1.
IMAGENET_B = {
    18: (11_689_512, 1_814_073_344),
    34: (21_797_672, 3_663_761_408),
    50: (25_557_032, 3_857_973_248),
    101: (44_549_160, 7_570_194_432),
    152: (60_192_808, 11_282_415_616),
}
# torchvision's published GMACs for v1.5 (stride on the 3x3): 4.09, 7.80, 11.51.
IMAGENET_V15_MACS = {50: 4_089_184_256, 101: 7_801_405_440, 152: 11_513_626_624}
# He et al. 2015, Table 6 (0.27M, 0.46M, ...), exact with option A and BN scale/shift.
CIFAR_A_PARAMS = {
    20: 269_722,
    32: 464_154,
    44: 658_586,
    56: 853_018,
    110: 1_727_962,
    1202: 19_421_274,
}
PAPER_GFLOPS = {18: 1.8, 34: 3.6, 50: 3.8, 101: 7.6, 152: 11.3}  # Table 1, multiply-adds


@pytest.mark.parametrize("depth", sorted(IMAGENET_B))
def test_imagenet_params_and_macs(depth):
    plan = expand(imagenet_spec(depth))
    assert (plan.params, plan.macs) == IMAGENET_B[depth]
    assert plan.macs / 1e9 == pytest.approx(PAPER_GFLOPS[depth], rel=0.02)


@pytest.mark.parametrize("depth", sorted(IMAGENET_V15_MACS))
def test_v15_macs(depth):
    plan = expand(imagenet_spec(depth, stride_at="3x3"))
    assert plan.macs == IMAGENET_V15_MACS[depth]
    assert plan.params == IMAGENET_B[depth][0]  # v1 and v1.5 differ only in MACs


@pytest.mark.parametrize("depth", sorted(CIFAR_A_PARAMS))
def test_cifar_params(depth):
    assert expand(cifar_spec(depth)).params == CIFAR_A_PARAMS[depth]


def test_cifar_resnet20_macs():
    assert expand(cifar_spec(20)).macs == 40_551_040


def test_flops_are_twice_macs():
    cost = plan_cost(expand(cifar_spec(20)))
    assert cost.to_dict()["flops"] == 2 * cost.macs


@pytest.mark.parametrize("name", list(STANDARD_VARIANTS))
def test_graph_walk_agrees_with_plan(name):
    model = built(name)
    plan = expand(STANDARD_VARIANTS[name])
    walked = graph_cost(model)
    assert (walked.params, walked.macs) == (plan.params, plan.macs)
    assert walked.output_shape == ["N", plan.spec.classes]


def test_graph_walk_on_folded_and_fixed_batch_graphs():
    spec = cifar_spec(20)
    walked = graph_cost(build(spec, fold=True, batch=4))
    assert walked.macs == expand(spec).macs
    assert walked.input_shape == [4, 3, 32, 32]
    assert "BatchNormalization" not in walked.op_counts


def _foreign(nodes, inputs, outputs, initializers=()):
    from onnx import helper

    graph = helper.make_graph(nodes, "foreign", inputs, outputs, initializer=list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_graph_walk_on_foreign_graphs():
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    f32 = TensorProto.FLOAT
    # Conv weights from a Constant node, grouped, with bias; Gemm with transA; MatMul with a
    # 1-D right operand and one of two activations with a symbolic batch.
    w = numpy_helper.from_array(np.zeros((8, 2, 3, 3), np.float32), "w")
    nodes = [
        helper.make_node("Constant", [], ["w"], value=w),
        helper.make_node("Conv", ["x", "w", "bias"], ["c"], group=2, pads=[1, 1, 1, 1]),
        helper.make_node("GlobalAveragePool", ["c"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Transpose", ["f"], ["ft"]),
        helper.make_node("Gemm", ["ft", "g"], ["y"], transA=1),
        helper.make_node("MatMul", ["y", "v"], ["z"]),
        helper.make_node("MatMul", ["s", "t"], ["u"]),
    ]
    inits = [
        numpy_helper.from_array(np.zeros(8, np.float32), "bias"),
        numpy_helper.from_array(np.zeros((8, 5), np.float32), "g"),
        numpy_helper.from_array(np.zeros(5, np.float32), "v"),
    ]
    inputs = [
        helper.make_tensor_value_info("x", f32, ["N", 4, 6, 6]),
        helper.make_tensor_value_info("s", f32, ["N", 4, 5]),
        helper.make_tensor_value_info("t", f32, ["N", 5, 6]),
    ]
    outputs = [
        helper.make_tensor_value_info("z", f32, None),
        helper.make_tensor_value_info("u", f32, None),
    ]
    cost = graph_cost(_foreign(nodes, inputs, outputs, inits))
    assert cost.params == 8 * 2 * 9 + 8 + 40 + 5
    assert cost.macs == 8 * 36 * 2 * 9 + 8 * 5 + 5 + 4 * 5 * 6
