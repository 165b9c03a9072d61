"""Zoo flavours as spec fields: counts equal MXNet Gluon's, every emitter agrees on them."""

import numpy as np
import pytest

# ruff: noqa: E402
# Everything below needs torch (directly or through train/): without it the module is
# skipped, so that `pytest -m gpu` still collects where torch is missing.
pytest.importorskip("torch")

import torch

from graphgen.cost import graph_cost
from graphgen.errors import SpecError
from graphgen.flavors import apply_flavor, flavor_of
from graphgen.numpy_forward import forward_nhwc
from graphgen.onnx_emit import emit_model
from graphgen.onnx_io import build
from graphgen.plan import BatchNorm, Conv, expand, fold_bn
from graphgen.spec import Spec, imagenet_spec, spec_from_mapping
from graphgen.torch_module import PlanNet
from graphgen.weights import fold_weights, init_weights
from tests._graphs import normal_input, run_ort

# Trainable parameters of MXNet 1.9.1's gluon.model_zoo.vision.get_resnet(version, depth),
# counted in the side venv (scripts/make-gluon-fixtures.sh) as the sum over collect_params()
# with grad_req != "null": the v2 data BN's fixed scale and shift are not trained.
GLUON_PARAMS = {
    ("gluon-v1", 18): 11_689_512,
    ("gluon-v1", 34): 21_797_672,
    ("gluon-v1", 50): 25_575_912,
    ("gluon-v1", 101): 44_589_800,
    ("gluon-v1", 152): 60_252_648,
    ("gluon-v2", 18): 11_687_848,
    ("gluon-v2", 34): 21_796_008,
    ("gluon-v2", 50): 25_549_480,
    ("gluon-v2", 101): 44_541_608,
    ("gluon-v2", 152): 60_185_256,
}


def _zeros(plan):
    return {k: np.zeros(s, np.float32) for k, s in plan.tensor_shapes().items()}


@pytest.mark.parametrize(("flavor", "depth"), sorted(GLUON_PARAMS))
def test_gluon_param_counts_from_plan_and_graph(flavor, depth):
    plan = expand(apply_flavor(imagenet_spec(depth), flavor))
    assert plan.params == GLUON_PARAMS[flavor, depth]
    assert graph_cost(emit_model(plan, _zeros(plan))).params == GLUON_PARAMS[flavor, depth]


@pytest.mark.parametrize("depth", [18, 50])
def test_paper_and_torchvision_flavours_are_todays_specs(depth):
    base = imagenet_spec(depth)
    assert apply_flavor(base, "paper") == base
    assert apply_flavor(base, "torchvision") == base.replace(stride_at="3x3")


def test_flavour_names_and_round_trip():
    v1 = apply_flavor(imagenet_spec(50), "gluon-v1")
    v2 = apply_flavor(imagenet_spec(50), "gluon-v2")
    assert (v1.name, v2.name) == ("resnet50-gluon-v1", "resnet50-gluon-v2")
    assert apply_flavor(imagenet_spec(18), "gluon-v2").name == "resnet18-gluon-v2"
    for spec in (v1, v2):
        assert flavor_of(spec) == spec.name.split("-", 1)[1]
        assert spec_from_mapping(spec.to_dict()) == spec


def test_default_specs_serialise_without_flavour_fields():
    """Older graphs keep their exact metadata bytes."""
    assert "data_bn" not in imagenet_spec(50).to_json()
    assert '"data_bn":true' in apply_flavor(imagenet_spec(50), "gluon-v2").to_json()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"block": "basic", "bottleneck_bias": True}, "bottleneck_bias needs block"),
        ({"block": "bottleneck", "first_unit_bn": True}, "first_unit_bn needs a pre-activation"),
        ({"data_bn": "yes"}, "data_bn must be true or false"),
    ],
)
def test_flavour_fields_that_do_not_fit_are_refused(fields, message):
    with pytest.raises(SpecError, match=message):
        Spec(layers=(1, 1), widths=(8, 16), **fields)


def test_unknown_flavour_is_refused():
    with pytest.raises(SpecError, match="choose one of paper"):
        apply_flavor(imagenet_spec(18), "gluon-v3")


def _small(flavor, block):
    spec = Spec(layers=(2, 1), widths=(8, 16), block=block, stem_width=8, classes=5, image_size=32)
    return apply_flavor(spec, flavor)


def _random_stats(plan, weights, seed=3):
    """Non-zero conv biases and BN shifts, so each flavour field shows in the outputs."""
    rng = np.random.default_rng(seed)
    for op in plan.ops:
        if isinstance(op, Conv) and op.bias:
            weights[f"{op.name}.bias"] = rng.normal(0, 0.5, op.cout).astype(np.float32)
        if isinstance(op, BatchNorm) and op.affine:
            weights[f"{op.name}.bias"] = rng.normal(0, 0.2, op.channels).astype(np.float32)
    return weights


@pytest.mark.parametrize("flavor", ["gluon-v1", "gluon-v2"])
@pytest.mark.parametrize("block", ["basic", "bottleneck"])
def test_onnx_numpy_and_torch_agree_on_flavours(flavor, block):
    spec = _small(flavor, block)
    plan = expand(spec)
    weights = _random_stats(plan, init_weights(plan, seed=1))
    x = normal_input(spec)
    reference = forward_nhwc(plan, dict(weights), x.transpose(0, 2, 3, 1))
    onnx_out = run_ort(build(spec, weights=dict(weights)), x)
    net = PlanNet(plan).eval()
    net.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=False)
    with torch.no_grad():
        torch_out = net(torch.from_numpy(x)).numpy()
    for out in (onnx_out, torch_out):
        np.testing.assert_allclose(out, reference, rtol=1e-4, atol=1e-4)


def test_conv_bias_folds_into_bn_mean_exactly():
    """mean' = mean - b: the biased graph equals the bias-free one with shifted means."""
    spec = _small("gluon-v1", "bottleneck")
    plan = expand(spec)
    weights = _random_stats(plan, init_weights(plan, seed=2))
    shifted = dict(weights)
    for op in plan.ops:
        if isinstance(op, Conv) and op.bias:
            bn = op.name.replace(".conv", ".bn")
            shifted[f"{bn}.running_mean"] = (
                weights[f"{bn}.running_mean"] - weights[f"{op.name}.bias"]
            )
            del shifted[f"{op.name}.bias"]
    x = normal_input(spec)
    biased = run_ort(build(spec, weights=dict(weights)), x)
    plain = run_ort(build(spec.replace(bottleneck_bias=False), weights=shifted), x)
    folded = run_ort(build(spec, weights=dict(weights), fold=True), x)
    assert np.abs(biased).max() > 0.1
    np.testing.assert_allclose(plain, biased, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(folded, biased, rtol=1e-5, atol=1e-5)
    assert (
        fold_bn(plan).params
        == graph_cost(emit_model(fold_bn(plan), fold_weights(plan, weights))).params
    )


def test_data_bn_normalises_with_running_statistics_only():
    spec = _small("gluon-v2", "basic")
    plan = expand(spec)
    weights = init_weights(plan, seed=4)
    weights["bn_data.running_mean"] = np.array([0.5, -0.2, 0.1], np.float32)
    weights["bn_data.running_var"] = np.array([4.0, 0.25, 1.0], np.float32)
    x = normal_input(spec)
    mean = weights["bn_data.running_mean"][None, :, None, None]
    std = np.sqrt(weights["bn_data.running_var"] + 1e-5)[None, :, None, None]
    without = expand(spec.replace(data_bn=False))
    rest = {k: v for k, v in weights.items() if not k.startswith("bn_data.")}
    expected = run_ort(build(without.spec, weights=rest), ((x - mean) / std).astype(np.float32))
    np.testing.assert_allclose(run_ort(build(spec, weights=weights), x), expected, atol=1e-5)


def test_flavor_flag_builds_the_flavour(tmp_path, capsys):
    from graphgen.cli import main

    out = tmp_path / "g.onnx"
    args = ["build", "--depth", "50", "--flavor", "gluon-v1", "--image-size", "64", "-o", str(out)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "resnet50-gluon-v1: 50 layers" in out and "25,575,912 params" in out, out
    assert main(["build", "--all", "--flavor", "gluon-v2", "--out-dir", str(tmp_path)]) == 2


@pytest.mark.parametrize("flavor", ["gluon-v1", "gluon-v2"])
def test_torch_module_rebuilds_from_a_flavoured_file(flavor, tmp_path):
    """bench-runtimes' torch engines rebuild the net from the file's metadata alone."""
    from graphgen.torch_module import model_from_onnx

    spec = _small(flavor, "bottleneck")
    path = tmp_path / "f.onnx"
    model = build(spec, seed=5)
    import onnx

    onnx.save(model, path)
    x = normal_input(spec)
    with torch.no_grad():
        out = model_from_onnx(path).eval()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(out, run_ort(model, x), rtol=1e-4, atol=1e-5)
