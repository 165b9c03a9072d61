"""The zoo variants' spec fields: each one through the plan, the ONNX graph (unfolded and folded),
the numpy pass and the cost model; refused where the network has no such part; left out of a
spec's dict at its default; compared when weights record a spec."""

import json

import numpy as np
import pytest

from graphgen.cost import graph_cost
from graphgen.errors import GraphError, SpecError
from graphgen.inject import check_recorded_spec
from graphgen.numpy_forward import forward_nhwc
from graphgen.onnx_io import build
from graphgen.plan import AvgPool, ChannelConv, Conv, expand
from graphgen.spec import STATED_FIELDS, VARIANT_FIELDS, imagenet_spec, spec_from_mapping
from graphgen.weights import init_weights
from tests._graphs import normal_input, run_ort

SMALL = dict(layers=(1, 2, 1, 1), widths=(8, 16, 32, 64), stem_width=8, image_size=40, classes=5)
V1_5 = dict(stride_at="3x3")
VARIANTS = {
    "groups": imagenet_spec(50, **SMALL, groups=4, width_per_group=16, **V1_5),
    "width_per_group": imagenet_spec(50, **SMALL, width_per_group=128, **V1_5),
    "deep-stem": imagenet_spec(18, **SMALL, stem_type="deep"),
    "tiered-stem-conv-pool": imagenet_spec(50, **SMALL, stem_type="deep_tiered", stem_pool="conv"),
    "avg-down-odd-maps": imagenet_spec(50, **SMALL, downsample="avg", **V1_5),
    "avg-down-C": imagenet_spec(18, **SMALL, downsample="avg", shortcut="C"),
    "se": imagenet_spec(50, **SMALL, attention="se", se_ratio=0.25, se_divisor=4),
    "se-basic-plain": imagenet_spec(18, **SMALL, attention="se", shortcut="none"),
    "eca": imagenet_spec(50, **SMALL, attention="eca", eca_gamma=1, eca_beta=0),
    "resnetv2": imagenet_spec(50, **SMALL, block="resnetv2_bottleneck", downsample="avg"),
    "resnetv2-deep-basic": imagenet_spec(18, **SMALL, block="resnetv2_basic", stem_type="deep"),
}


@pytest.mark.parametrize("fold", [False, True], ids=["unfolded", "folded"])
@pytest.mark.parametrize("name", list(VARIANTS))
def test_graph_computes_the_numpy_pass(name, fold):
    spec = VARIANTS[name]
    plan = expand(spec)
    weights = init_weights(plan, seed=2)
    x = normal_input(spec)
    expected = forward_nhwc(plan, dict(weights), x.transpose(0, 2, 3, 1))
    graph = build(spec, weights=dict(weights), fold=fold)
    got = run_ort(graph, x)
    assert np.linalg.norm(got - expected) <= 1e-5 * np.linalg.norm(expected)
    assert expected.std() > 0.01  # the net did not collapse to a constant
    cost = graph_cost(graph)
    assert cost.macs == plan.macs
    assert cost.params == (expand(spec).params if not fold else cost.params)


def test_grouped_conv_reads_its_own_group():
    """torchvision's width rule, and each group's 3x3 sees its own input channels only."""
    spec = VARIANTS["groups"]
    conv2 = next(op for op in expand(spec).ops if op.name == "layer1.0.conv2")
    assert isinstance(conv2, Conv) and (conv2.cin, conv2.cout, conv2.groups) == (8, 8, 4)
    assert conv2.params()["layer1.0.conv2.weight"] == (8, 2, 3, 3)
    assert conv2.macs == 8 * 10 * 10 * 2 * 9
    wide = next(op for op in expand(VARIANTS["width_per_group"]).ops if op.name == "layer4.0.conv2")
    assert isinstance(wide, Conv) and wide.cout == 2 * 64


def test_avg_pool_overhangs_odd_maps():
    """ResNet-D's pool on a 5x5 and a 3x3 map: ceil mode gives 3 and 2, the last window half
    outside, and the numpy pass averages what it covers."""
    pools = [op for op in expand(VARIANTS["avg-down-odd-maps"]).ops if isinstance(op, AvgPool)]
    assert [(p.in_hw, p.out_hw) for p in pools] == [
        ((10, 10), (5, 5)),
        ((5, 5), (3, 3)),
        ((3, 3), (2, 2)),
    ]
    plan = expand(VARIANTS["avg-down-odd-maps"])
    x = np.arange(2 * 3 * 3 * 1, dtype=np.float32).reshape(2, 3, 3, 1)
    from graphgen.numpy_forward import _avg_pool_nhwc

    out = _avg_pool_nhwc(x, 2, 2)
    assert out[0, :, :, 0].tolist() == [[2.0, 3.5], [6.5, 8.0]]
    assert plan.spec.downsample == "avg"


def test_eca_kernel_follows_the_channels():
    """timm's adaptive kernel (gamma 2, beta 1): 256 channels -> 5, 2048 -> 7."""
    spec = imagenet_spec(50, attention="eca", image_size=32)
    kernels = {op.channels: op.kernel for op in expand(spec).ops if isinstance(op, ChannelConv)}
    assert kernels == {256: 5, 512: 5, 1024: 5, 2048: 7}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"activation": "silu"}, "activation 'silu' is refused: graphgen builds ReLU"),
        ({"bn_eps": 1e-3}, "bn_eps 0.001 is refused: graphgen's BatchNorms use eps 1e-5"),
        ({"bn_eps": "1e-5"}, "bn_eps must be a number, got '1e-5' (YAML reads"),
        ({"dilation": 2}, "dilation 2 is refused: dilated stages"),
        ({"anti_alias": True}, "anti_alias True is refused: anti-aliased downsampling"),
        ({"global_pool": "max"}, "global_pool 'max' is refused"),
        ({"groups": 32, "block": "basic"}, "block 'basic' has none"),
        ({"groups": 0}, "groups must be a positive integer"),
        ({"width_per_group": 4, "widths": (8, 16, 32, 64)}, "no channel per group"),
        ({"stem_type": "deep", "stem": "cifar", "image_size": 32}, "the cifar stem is one"),
        ({"stem_type": "wide"}, "unknown stem_type 'wide'; choose one of single, deep"),
        ({"stem_pool": "conv", "block": "resnetv2_basic"}, "stem_pool 'conv' is timm's ResNet"),
        ({"downsample": "avg", "shortcut": "A"}, "shortcut 'A' has no projection"),
        ({"downsample": "blur"}, "unknown downsample 'blur'"),
        ({"attention": "cbam"}, "unknown attention 'cbam'; choose one of none, se, eca"),
        ({"attention": "se", "block": "preact_basic"}, "is pre-activation"),
        ({"se_ratio": 0.25}, "se_ratio sets attention 'se''s size; attention is 'none'"),
        ({"attention": "se", "se_ratio": 2}, "se_ratio must be a number in (0, 1]"),
        ({"attention": "se", "eca_gamma": 3}, "eca_gamma sets attention 'eca''s size"),
        ({"block": "resnetv2_basic", "data_bn": True}, "block 'resnetv2_basic' is timm's"),
    ],
)
def test_what_is_not_built_is_refused_by_name(fields, message):
    with pytest.raises(SpecError) as err:
        imagenet_spec(50, **fields)
    assert message in str(err.value)


def test_default_fields_stay_out_of_the_dict():
    """The paper's specs keep their exact bytes; a variant's dict says only what it changes."""
    plain = imagenet_spec(50)
    assert not set(plain.to_dict()) & {*VARIANT_FIELDS, *STATED_FIELDS}
    assert plain.to_json() == (
        '{"block":"bottleneck","classes":1000,"image_size":224,"layers":[3,4,6,3],'
        '"name":"resnet50","shortcut":"B","stem":"imagenet","stem_width":64,"stride_at":"1x1",'
        '"widths":[64,128,256,512]}'
    )
    se = VARIANTS["se"]
    extra = set(se.to_dict()) - set(plain.to_dict())
    assert extra == {"attention", "se_ratio", "se_divisor"}
    for spec in VARIANTS.values():
        assert spec_from_mapping(json.loads(spec.to_json())) == spec


def test_yaml_numbers_in_stated_fields_are_accepted():
    spec = spec_from_mapping(
        {"depth": 18, "bn_eps": 0.00001, "activation": "relu", "dilation": 1, "anti_alias": False}
    )
    assert spec == imagenet_spec(18) and "bn_eps" not in spec.to_dict()


CHANGED = {  # field -> (a net with it, the same net with the field at its default)
    "groups": ("groups", {"groups": 1}),
    "width_per_group": ("width_per_group", {"width_per_group": 64}),
    "stem_type": ("deep-stem", {"stem_type": "single"}),
    "stem_pool": ("tiered-stem-conv-pool", {"stem_pool": "max"}),
    "downsample": ("avg-down-odd-maps", {"downsample": "conv"}),
    "attention": ("se-basic-plain", {"attention": "none"}),
    "se_ratio": ("se", {"se_ratio": 0.0625}),
    "se_divisor": ("se", {"se_divisor": 8}),
    "eca_gamma": ("eca", {"eca_gamma": 2}),
    "eca_beta": ("eca", {"eca_beta": 1}),
}


def test_every_variant_field_is_compared():
    assert set(CHANGED) == set(VARIANT_FIELDS)


@pytest.mark.parametrize("key", list(CHANGED))
def test_recorded_variant_fields_are_compared(key):
    """Weights recorded as ResNeXt, ResNet-D or SE do not go into another network even where
    names and shapes would fit, and a record without the field (older files) means its default."""
    name, default = CHANGED[key]
    trained = VARIANTS[name]
    other = trained.replace(**default)
    check_recorded_spec(trained.to_dict(), trained, source="w", model_source="m")
    assert key in trained.to_dict() and key not in other.to_dict()
    with pytest.raises(GraphError, match=f"{key} "):
        check_recorded_spec(trained.to_dict(), other, source="w", model_source="m")
    with pytest.raises(GraphError, match=f"{key} "):
        check_recorded_spec(other.to_dict(), trained, source="w", model_source="m")
