"""The block-kind table: every registered kind is checked here the moment it is declared."""

import re

import numpy as np
import pytest

from graphgen.blocks import BLOCK_KINDS, BlockKind, block_kind, find_block, register_block
from graphgen.errors import SpecError
from graphgen.flavors import FLAVORS, apply_flavor
from graphgen.importers.onnx_graph import import_onnx
from graphgen.importers.state_dict import import_state_dict
from graphgen.layouts import TORCHVISION
from graphgen.numpy_forward import forward_nhwc
from graphgen.onnx_io import build, save
from graphgen.plan import Conv, expand
from graphgen.spec import Spec, cifar_spec, cifar_step
from graphgen.weights import init_weights
from tests._graphs import normal_input, run_ort

KINDS = sorted(BLOCK_KINDS)


def _tiny(kind: str, **fields) -> Spec:
    """Two stages, so a unit strides and changes width; small enough to run everywhere."""
    base = dict(
        layers=(1, 2),
        widths=(4, 8),
        block=kind,
        stem="cifar",
        classes=3,
        image_size=8,
        stem_width=4,
    )
    return Spec(**(base | fields))


def _main_convs(plan, prefix: str) -> list[Conv]:
    return [
        op
        for op in plan.ops
        if isinstance(op, Conv) and re.fullmatch(rf"{prefix}\.conv\d", op.name)
    ]


@pytest.mark.parametrize("name", KINDS)
def test_a_row_says_what_the_plan_builds(name):
    kind = BLOCK_KINDS[name]
    plan = expand(_tiny(name))
    for (stage, index), width in (((0, 0), 4), ((1, 0), 8), ((1, 1), 8)):
        convs = _main_convs(plan, re.escape(kind.layout.block(stage, index)))
        assert len(convs) == kind.layers
        assert convs[-1].cout == width * kind.expansion
    assert plan.spec.depth == 1 + kind.layers * 3 + 1
    assert plan.spec.block_kind is kind
    assert any(op.name == kind.layout.final_bn for op in plan.ops) == kind.preact


@pytest.mark.parametrize("name", KINDS)
def test_stride_at_changes_the_plan_only_where_the_row_says(name):
    kind = BLOCK_KINDS[name]
    one, three = (expand(_tiny(name, stride_at=s)) for s in ("1x1", "3x3"))
    assert (one.ops != three.ops) == kind.branch.stride_at_matters


@pytest.mark.parametrize("name", KINDS)
def test_bottleneck_bias_is_taken_only_where_the_row_says(name):
    kind = BLOCK_KINDS[name]
    if not kind.takes_bottleneck_bias:
        with pytest.raises(SpecError, match="bottleneck_bias needs block"):
            _tiny(name, bottleneck_bias=True)
        return
    biased = [
        op.name
        for op in expand(_tiny(name, bottleneck_bias=True)).ops
        if isinstance(op, Conv) and op.bias
    ]
    assert biased and all(name.endswith(("conv1", "conv3")) for name in biased)


@pytest.mark.parametrize("name", KINDS)
def test_cifar_depth_rule_follows_the_layers_per_block(name):
    kind = BLOCK_KINDS[name]
    assert cifar_step(name) == 3 * kind.layers
    spec = cifar_spec(2 * cifar_step(name) + 2, block=name)
    assert spec.layers == (2, 2, 2) and spec.depth == 2 * cifar_step(name) + 2


@pytest.mark.parametrize("name", KINDS)
@pytest.mark.parametrize("flavor", FLAVORS)
def test_flavours_keep_the_branch(name, flavor):
    kind = BLOCK_KINDS[name]
    flavoured = apply_flavor(_tiny(name), flavor).block_kind
    assert flavoured.branch == kind.branch
    assert flavoured.preact == (flavor == "gluon-v2")


@pytest.mark.parametrize("name", KINDS)
@pytest.mark.parametrize("shortcut", ["A", "B", "none"])
def test_graph_runs_as_the_numpy_pass_and_imports_back(name, shortcut, tmp_path):
    spec = _tiny(name, shortcut=shortcut)
    plan = expand(spec)
    weights = init_weights(plan, seed=3)
    x = normal_input(spec)
    graph = build(spec, weights=dict(weights))
    expected = forward_nhwc(plan, dict(weights), x.transpose(0, 2, 3, 1))
    got = run_ort(graph, x)
    assert np.linalg.norm(got - expected) <= 1e-5 * np.linalg.norm(expected)
    if shortcut == "none":
        return  # plain nets have no units to read a block kind from: importers refuse them
    if kind_layout(name) is not TORCHVISION:
        return  # the importers read torchvision's names (timm's ResNetV2: issue 25's 2nd half)
    assert import_onnx(save(graph, tmp_path / "net.onnx")).spec == spec
    np.savez(tmp_path / "net.npz", **weights)
    imported, _, _ = import_state_dict(tmp_path / "net.npz", image_size=8, stride_at="1x1")
    assert imported == spec


def test_registering_a_taken_name_is_refused():
    with pytest.raises(ValueError, match="'basic' is already registered"):
        register_block(
            BlockKind("basic", BLOCK_KINDS["basic"].branch, False, BLOCK_KINDS["basic"].unit)
        )
    assert BLOCK_KINDS["basic"] is block_kind("basic")


def test_unknown_kind_is_refused_with_the_choices():
    with pytest.raises(SpecError, match="unknown block 'wide'; choose one of basic, bottleneck"):
        block_kind("wide")
    with pytest.raises(SpecError, match="unknown block 'wide'"):
        cifar_spec(20, block="wide")


def kind_layout(name: str):
    return BLOCK_KINDS[name].layout


def test_find_block_wants_exactly_one_kind():
    assert find_block(layers=3, preact=True, layout=TORCHVISION).name == "preact_bottleneck"
    with pytest.raises(LookupError, match="2 block kinds have layers=3, preact=True"):
        find_block(layers=3, preact=True)
    with pytest.raises(LookupError, match="0 block kinds"):
        find_block(layers=5)
