"""graphgen's torch module reads top-down (stem, layers of blocks, head) and computes what the
plan says: op by op the same numbers, the numpy pass's, and the graph's names as its state."""

# ruff: noqa: E402
import weakref

import numpy as np
import pytest

# Every test here runs the torch module: without torch the module is skipped, so that
# `pytest -m gpu` still collects where torch is missing.
torch = pytest.importorskip("torch")
from torch import nn

from graphgen.flavors import apply_flavor
from graphgen.numpy_forward import forward_nhwc
from graphgen.plan import INPUT, OUTPUT, Add, BatchNorm, Scale, expand, fold_bn
from graphgen.spec import cifar_spec, imagenet_spec, spec_for_depth
from graphgen.torch_module import Block, build_model
from graphgen.weights import fold_weights, init_weights
from tests._graphs import normal_input

# ImageNet-stem nets at a small width: same ops, little arithmetic.
SMALL = dict(layers=(1, 2, 1, 1), widths=(8, 16, 32, 64), stem_width=8, image_size=32, classes=10)
VARIANTS = {
    "basic-A": cifar_spec(14, image_size=16),
    "basic-A-zeropad-end": cifar_spec(14, image_size=16, zero_pad="end"),
    "plain": cifar_spec(14, shortcut="none", image_size=16),
    "bottleneck-B": imagenet_spec(50, **SMALL),
    "bottleneck-C-3x3": cifar_spec(11, block="bottleneck", shortcut="C", stride_at="3x3"),
    "preact-basic-A": cifar_spec(14, block="preact_basic", image_size=16),
    "preact-bottleneck-A-end": cifar_spec(11, block="preact_bottleneck", zero_pad="end"),
    "preact-bottleneck-B": cifar_spec(11, block="preact_bottleneck", shortcut="B"),
    "gluon-v1": apply_flavor(imagenet_spec(50, **SMALL), "gluon-v1"),
    "gluon-v2": apply_flavor(imagenet_spec(18, **SMALL), "gluon-v2"),
    # The zoos' variants (graphgen.archs): grouped and wide 3x3s, deep stems, the conv pool,
    # ResNet-D's pooled shortcut on odd maps (40 px: stage inputs 10, 5, 3), SE, ECA, ResNetV2.
    "resnext": imagenet_spec(50, **SMALL, groups=4, width_per_group=16, stride_at="3x3"),
    "wide": imagenet_spec(50, **SMALL, width_per_group=128),
    "deep-stem-avg-down": imagenet_spec(
        18, **SMALL | {"image_size": 40}, stem_type="deep", downsample="avg"
    ),
    "tiered-conv-pool-se": imagenet_spec(
        50, **SMALL, stem_type="deep_tiered", stem_pool="conv", attention="se", se_ratio=0.25
    ),
    "eca-C": imagenet_spec(50, **SMALL, attention="eca", shortcut="C", downsample="avg"),
    "resnetv2-deep": imagenet_spec(
        50, **SMALL, block="resnetv2_bottleneck", stem_type="deep", downsample="avg"
    ),
    "resnetv2-basic-A": cifar_spec(14, block="resnetv2_basic", image_size=16),
}


def _op_by_op(model, x):
    """The plan run op by op through the model's own submodules, as the module did before it
    had blocks: an oracle for how the blocks and layers wire the ops together."""
    values = {INPUT: x}
    for op in model.plan.ops:
        if isinstance(op, Add):
            values[op.out] = values[op.a] + values[op.b]
        elif isinstance(op, Scale):
            values[op.out] = values[op.x] * values[op.gate]
        else:
            values[op.out] = model.get_submodule(op.name)(values[op.x])
    return values[OUTPUT]


def _randomise_bn(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            if m.affine:
                m.bias.data.copy_(torch.rand(m.bias.shape, generator=g) * 0.4 - 0.2)


def test_print_shows_the_network_top_down():
    model = build_model(imagenet_spec(18))
    names = [name for name, _ in model.named_children()]
    assert names == [
        "conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool", "fc",
    ]  # fmt: skip
    assert isinstance(model.layer1, nn.Sequential) and len(model.layer1) == 2
    assert all(isinstance(block, Block) for block in model.layer1)
    assert isinstance(model.layer2[0].downsample, nn.Sequential)
    text = str(model)
    assert "(layer1): Sequential(\n    (0): Block(\n      basic, bn2 + x\n" in text
    assert "(0): Block(\n      basic, bn2 + downsample.1\n" in text
    assert "(conv2): Conv2d(64, 64, kernel_size=(3, 3)" in text
    preact = build_model(apply_flavor(imagenet_spec(18), "gluon-v2"))
    names = [name for name, _ in preact.named_children()]
    assert names[0] == "bn_data" and names[-4:] == ["bn_final", "relu_final", "avgpool", "fc"]


def test_print_shows_the_zoos_layouts():
    """timm's deep stem is an nn.Sequential `conv1` (conv, BN, ReLU, conv, BN, ReLU, conv), as
    in timm; its ResNetV2 reads stem, stages of blocks, norm, head."""
    deep = build_model(VARIANTS["deep-stem-avg-down"])
    assert [n for n, _ in deep.named_children()][:4] == ["conv1", "bn1", "relu", "maxpool"]
    assert [type(m).__name__ for m in deep.conv1] == ["Conv2d", "BatchNorm2d", "ReLU"] * 2 + [
        "Conv2d"
    ]
    assert "basic, bn2 + downsample.2" in str(deep.layer2[0])
    v2 = build_model(VARIANTS["resnetv2-deep"])
    assert [n for n, _ in v2.named_children()] == ["stem", "stages", "norm", "final_act", "head"]
    assert isinstance(v2.stages[1].blocks[0], Block)
    assert "resnetv2_bottleneck, conv3 + downsample.conv" in str(v2.stages[1].blocks[0])
    assert v2.head.fc.weight.shape == (10, 256, 1, 1)


@pytest.mark.parametrize("fold", [False, True], ids=["unfolded", "folded"])
@pytest.mark.parametrize("name", list(VARIANTS))
def test_state_is_the_graphs_initializers_in_plan_order(name, fold):
    plan = fold_bn(expand(VARIANTS[name])) if fold else expand(VARIANTS[name])
    model = build_model(plan)
    keys = [k for k in model.state_dict() if not k.endswith("num_batches_tracked")]
    assert keys == list(plan.tensor_shapes())
    assert [k for k, _ in model.named_parameters()] == list(plan.param_shapes())


@pytest.mark.parametrize("fold", [False, True], ids=["unfolded", "folded"])
@pytest.mark.parametrize("name", list(VARIANTS))
def test_blocks_compute_what_the_ops_compute_one_by_one(name, fold):
    spec = VARIANTS[name]
    torch.manual_seed(0)
    model = build_model(spec, fold=fold)
    _randomise_bn(model)
    x = torch.from_numpy(normal_input(spec, batch=3))
    with torch.no_grad():
        assert torch.equal(model.eval()(x), _op_by_op(model, x))
    model.train()
    out = model(x)
    out.square().sum().backward()
    grads = {k: p.grad.clone() for k, p in model.named_parameters()}
    model.zero_grad()
    _randomise_bn(model)  # the first pass moved the running statistics: start both alike
    reference = model(x)
    _randomise_bn(model)
    assert torch.equal(model(x), reference)
    model.zero_grad()
    _op_by_op(model, x).square().sum().backward()
    for k, p in model.named_parameters():
        assert torch.equal(p.grad, grads[k]), k


@pytest.mark.parametrize("fold", [False, True], ids=["unfolded", "folded"])
@pytest.mark.parametrize("name", list(VARIANTS))
def test_module_agrees_with_the_numpy_pass(name, fold):
    spec = VARIANTS[name]
    plan = expand(spec)
    weights = init_weights(plan, seed=1)
    if fold:
        plan, weights = fold_bn(plan), fold_weights(plan, weights)
    x = normal_input(spec)
    reference = forward_nhwc(plan, dict(weights), x.transpose(0, 2, 3, 1))
    model = build_model(plan).eval()
    model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=False)
    with torch.no_grad():
        out = model(torch.from_numpy(x)).numpy()
    assert np.linalg.norm(out - reference) <= 1e-5 * np.linalg.norm(reference)


def test_only_live_activations_stay_in_memory():
    """Each block drops what no later op of it reads (inference holds no autograd references),
    so a forward pass holds a few tensors at a time, not one per op (~170 in a ResNet-50)."""
    model = build_model(spec_for_depth(50, None, image_size=64)).eval()
    for block in (m for m in model.modules() if isinstance(m, Block)):
        freed = {name for names in block.free_after.values() for name in names}
        assert ({block.input} | {op.out for op in block.ops}) - freed == {block.output}
    outputs: list[weakref.ref] = []
    live: list[int] = []
    for module in model.modules():
        if not list(module.children()):
            module.register_forward_pre_hook(
                lambda *_: live.append(sum(ref() is not None for ref in outputs))
            )
            module.register_forward_hook(lambda m, a, out: outputs.append(weakref.ref(out)))
    with torch.inference_mode():
        model(torch.randn(1, 3, 64, 64))
    assert len(live) > 150 and max(live) <= 3  # a block's input, its shortcut, the current one
    model.double()  # module conversions still work
    assert next(model.parameters()).dtype == torch.float64


def test_forward_runs_the_children_it_has_now():
    """Module swaps (SyncBatchNorm for DDP) take effect: forward looks children up, it keeps
    no references of its own."""
    model = build_model(cifar_spec(8, image_size=8))
    model = nn.SyncBatchNorm.convert_sync_batchnorm(model).eval()
    calls = []
    for module in model.modules():
        if isinstance(module, nn.SyncBatchNorm):
            module.register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        model(torch.zeros(1, 3, 8, 8))
    assert len(calls) == sum(isinstance(op, BatchNorm) for op in model.plan.ops) == 7
