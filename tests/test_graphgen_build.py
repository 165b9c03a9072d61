"""Every graph graphgen writes is valid, well scaled, deterministic and runs in onnxruntime."""

import re
import subprocess
import sys

import numpy as np
import onnx
import pytest

from graphgen.onnx_emit import max_opset
from graphgen.onnx_io import EXTERNAL_DATA_THRESHOLD, build, build_file, save, validate
from graphgen.plan import expand
from graphgen.spec import STANDARD_VARIANTS, cifar_spec, imagenet_spec
from tests._graphs import built, normal_input, run_ort


def _conv_strides(model: onnx.ModelProto) -> dict[str, int]:
    out = {}
    for node in model.graph.node:
        if node.op_type == "Conv":
            strides = next(a.ints for a in node.attribute if a.name == "strides")
            out[node.name] = strides[0]
    return out


@pytest.mark.parametrize("name", list(STANDARD_VARIANTS))
def test_standard_variant_is_valid_and_well_scaled(name):
    model = built(name)
    validate(model)
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    logits = inferred.graph.output[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in logits] == ["N", STANDARD_VARIANTS[name].classes]
    # Calibrated BN statistics keep random logits O(1), like a trained net's (torchvision's
    # random resnet152 gives 1e8 with identity statistics).
    y = run_ort(model, normal_input(STANDARD_VARIANTS[name]))
    assert 0.1 < float(y.std()) < 10


@pytest.mark.parametrize("name", ["resnet152", "cifar-resnet1202", "cifar-plain110", "plain34"])
def test_fp16_graph_outputs_are_finite(name):
    model = built(name, dtype="float16")
    validate(model)
    y = run_ort(model, normal_input(STANDARD_VARIANTS[name]))
    assert y.dtype == np.float32 and y.shape == (2, STANDARD_VARIANTS[name].classes)
    assert np.isfinite(y).all()


@pytest.mark.parametrize("name", ["resnet18", "cifar-resnet110"])
def test_fp16_graph_tracks_fp32(name):
    # Random BN nets amplify perturbations with depth (a 1e-3 input change moves resnet50's
    # logits by 3%), so fp16-vs-fp32 closeness is asserted on the shallower residual nets.
    x = normal_input(STANDARD_VARIANTS[name])
    y, ref = run_ort(built(name, dtype="float16"), x), run_ort(built(name), x)
    assert np.linalg.norm(y - ref) / np.linalg.norm(ref) < 1e-2


def test_initializer_names_are_torchvision_state_dict_keys():
    names = [t.name for t in built("resnet50").graph.initializer]
    for key in (
        "conv1.weight",
        "bn1.running_mean",
        "layer1.0.conv1.weight",
        "layer1.0.downsample.0.weight",
        "layer1.0.downsample.1.running_var",
        "layer4.2.bn3.bias",
        "fc.weight",
        "fc.bias",
    ):
        assert key in names
    assert names == list(expand(STANDARD_VARIANTS["resnet50"]).tensor_shapes())


@pytest.mark.parametrize(
    ("spec", "batch"),
    [(cifar_spec(20), 3), (imagenet_spec(18, image_size=64), 2)],
    ids=["cifar-resnet20", "resnet18@64"],
)
def test_small_variants_run_with_right_shape(spec, batch):
    y = run_ort(build(spec), normal_input(spec, batch))
    assert y.shape == (batch, spec.classes) and np.isfinite(y).all()


@pytest.mark.parametrize("shortcut", ["A", "B", "C", "none"])
def test_shortcut_options(shortcut):
    spec = cifar_spec(20, shortcut=shortcut)
    model = build(spec)
    ops = [n.op_type for n in model.graph.node]
    y = run_ort(model, normal_input(spec))
    assert y.shape == (2, 10)
    projections = [n for n in model.graph.node if ".downsample." in n.name and n.op_type == "Conv"]
    adds = ops.count("Add")
    expected_projections = {"A": 0, "B": 2, "C": 9, "none": 0}[shortcut]
    assert len(projections) == expected_projections
    assert adds == (0 if shortcut == "none" else 9)
    assert ("Pad" in ops) == (shortcut == "A")


def test_shortcut_parameter_differences():
    base = expand(cifar_spec(20)).params  # option A: parameter-free shortcuts
    assert expand(cifar_spec(20, shortcut="none")).params == base
    # B: two 1x1 projections (16->32, 32->64) with BN: 512 + 64 + 2048 + 128.
    assert expand(cifar_spec(20, shortcut="B")).params - base == 2_752
    assert expand(imagenet_spec(34, shortcut="C")).params == 22_716_840


@pytest.mark.parametrize(("stride_at", "strided"), [("1x1", "conv1"), ("3x3", "conv2")])
def test_bottleneck_stride_placement_in_graph(stride_at, strided):
    spec = imagenet_spec(50, stride_at=stride_at, image_size=64)
    strides = _conv_strides(build(spec))
    for stage in (2, 3, 4):
        assert strides[f"layer{stage}.0.{strided}"] == 2
        other = "conv2" if strided == "conv1" else "conv1"
        assert strides[f"layer{stage}.0.{other}"] == 1
        assert strides[f"layer{stage}.0.downsample.0"] == 2
    assert strides["layer1.0.conv1"] == strides["layer1.0.conv2"] == 1


def test_same_seed_same_bytes_other_seed_other_weights():
    spec = cifar_spec(20)
    a = build(spec, seed=3).SerializeToString()
    assert a == build(spec, seed=3).SerializeToString()
    assert a != build(spec, seed=4).SerializeToString()


def test_fixed_batch():
    model = build(cifar_spec(20), batch=8)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [8, 3, 32, 32]


@pytest.mark.parametrize(
    "spec",
    [cifar_spec(20), imagenet_spec(50, image_size=64)],
    ids=["cifar-resnet20", "resnet50@64"],
)
def test_folded_bn_matches_unfolded(spec):
    x = normal_input(spec)
    ref = run_ort(build(spec), x)
    folded = build(spec, fold=True)
    assert not any(n.op_type == "BatchNormalization" for n in folded.graph.node)
    y = run_ort(folded, x)
    assert np.linalg.norm(y - ref) / np.linalg.norm(ref) < 1e-5


@pytest.mark.parametrize("opset", sorted({13, 15, 17, 18, max_opset()}))
def test_opsets(opset):
    model = build(cifar_spec(20, shortcut="A"), opset=opset)
    validate(model)
    assert model.opset_import[0].version == opset
    assert run_ort(model, normal_input(cifar_spec(20))).shape == (2, 10)


def test_metadata_carries_spec_and_counts():
    props = {p.key: p.value for p in built("cifar-resnet56").metadata_props}
    assert props["graphgen.params"] == "853018"
    assert '"layers":[9,9,9]' in props["graphgen.spec"]
    assert {"graphgen.version", "graphgen.macs", "graphgen.dtype", "graphgen.seed"} <= set(props)


def test_large_model_goes_to_external_data(tmp_path, monkeypatch):
    monkeypatch.setattr("graphgen.onnx_io.EXTERNAL_DATA_THRESHOLD", 1000)
    assert EXTERNAL_DATA_THRESHOLD > 2**30
    out = save(build(cifar_spec(20)), tmp_path / "m.onnx")
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names[0] == "m.onnx" and re.fullmatch(r"m\.onnx\.[0-9a-f]{16}\.data", names[1])
    assert len(names) == 2
    assert out.stat().st_size < 100_000
    model = onnx.load(str(out))
    spec = cifar_spec(20)
    assert run_ort(model, normal_input(spec)).shape == (2, 10)


@pytest.mark.parametrize(
    ("spec", "options"),
    [
        (cifar_spec(20), {}),
        (cifar_spec(20, shortcut="C"), {"dtype": "float16", "fold": True, "batch": 2}),
        (imagenet_spec(50, image_size=64), {"opset": 13}),
    ],
    ids=["cifar-resnet20", "fp16-folded-C", "resnet50@64-opset13"],
)
def test_streamed_file_parses_to_the_in_memory_model(spec, options, tmp_path):
    # The streamed writer never holds the model's bytes; the file it writes must parse to exactly
    # the model `build` makes in memory, and pass the checker by path.
    path = build_file(spec, tmp_path / "m.onnx", seed=5, **options)
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]
    onnx.checker.check_model(str(path), full_check=True)
    streamed = onnx.load(str(path))
    assert streamed.SerializeToString() == build(spec, seed=5, **options).SerializeToString()
    assert (
        path.read_bytes()
        == build_file(spec, tmp_path / "again.onnx", seed=5, **options).read_bytes()
    )


def test_streamed_external_data(tmp_path, monkeypatch):
    monkeypatch.setattr("graphgen.onnx_io.EXTERNAL_DATA_THRESHOLD", 1000)
    path = build_file(cifar_spec(20), tmp_path / "m.onnx")
    (data,) = [p for p in tmp_path.iterdir() if p.name != "m.onnx"]
    assert re.fullmatch(r"m\.onnx\.[0-9a-f]{16}\.data", data.name)
    onnx.checker.check_model(str(path), full_check=True)
    model = onnx.load(str(path))
    assert run_ort(model, normal_input(cifar_spec(20))).shape == (2, 10)
    ref = run_ort(build(cifar_spec(20)), normal_input(cifar_spec(20)))
    np.testing.assert_array_equal(run_ort(model, normal_input(cifar_spec(20))), ref)


def test_streamed_writer_validates_before_writing(tmp_path):
    spec = cifar_spec(20)
    from graphgen.errors import GraphError
    from graphgen.onnx_emit import emit_skeleton
    from graphgen.onnx_io import write_streamed
    from graphgen.weights import init_weights

    plan = expand(spec)
    skeleton, arrays = emit_skeleton(plan, init_weights(plan))
    skeleton.graph.node[3].input[0] = "no-such-tensor"
    with pytest.raises(GraphError):
        write_streamed(skeleton, arrays, tmp_path / "bad.onnx")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["cifar-plain110", "cifar-resnet110", "plain34"])
@pytest.mark.parametrize("seed", [1, 2])
def test_scaling_holds_across_seeds(name, seed):
    # Deep plain nets are chaotic at init; the BN shift keeps their logits O(1) for any seed
    # (without it cifar-plain110's batch std ranged from 0.08 to 400 over four seeds).
    spec = STANDARD_VARIANTS[name]
    x = normal_input(spec, batch=4, seed=seed + 10)
    assert 0.1 < float(run_ort(build(spec, seed=seed), x).std()) < 10


@pytest.mark.parametrize("block", ["preact_basic", "preact_bottleneck"])
@pytest.mark.parametrize("shortcut", ["A", "B", "C"])
def test_preactivation_units(block, shortcut):
    """He et al. 2016's full pre-activation: BN-ReLU before each conv, no ReLU after the add,
    projections without BN on the pre-activated input, one BN-ReLU before pooling; the torch
    module from the same plan agrees with onnxruntime."""
    import torch

    from graphgen.onnx_io import weights_of
    from graphgen.torch_module import build_model

    spec = cifar_spec(20, block=block, shortcut=shortcut, image_size=16)
    model = build(spec)
    ops = {n.name: n for n in model.graph.node}
    consumers = {i: n.op_type for n in model.graph.node for i in n.input}
    adds = [n for n in model.graph.node if n.op_type == "Add"]
    assert adds and all(consumers.get(a.output[0]) != "Relu" for a in adds[:-1])
    assert "layer1.0.bn1" not in ops  # the first unit uses the stem's activation
    assert ops["layer2.0.bn1"].op_type == "BatchNormalization"
    assert "bn_final" in ops and not any(".downsample.1" in n for n in ops)
    if shortcut != "A":
        assert ops["layer2.0.downsample.0"].input[0] == "layer2.0.relu1"
    net = build_model(spec).eval()
    state = {k: torch.from_numpy(v.copy()) for k, v in weights_of(model).items()}
    net.load_state_dict(state, strict=False)
    x = normal_input(spec)
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    y = run_ort(model, x)
    assert np.linalg.norm(y - ref) / np.linalg.norm(ref) < 1e-5
    folded = run_ort(build(spec, fold=True), x)
    assert np.linalg.norm(folded - y) / np.linalg.norm(y) < 1e-5


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("cifar-resnet20", {}),
        ("resnet50", {"dtype": "float16", "batch": 2}),
        ("resnet18", {"fold": True}),
    ],
)
def test_graphs_carry_every_tensor_shape(name, options, tmp_path):
    """value_info holds every intermediate tensor's inferred type and shape (Netron draws them
    on the edges), in the file as written; each op's output has the plan's shape."""
    spec = STANDARD_VARIANTS[name]
    model = onnx.load(str(build_file(spec, tmp_path / "m.onnx", **options)))
    shapes = {
        v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in model.graph.value_info
    }
    produced = {o for node in model.graph.node for o in node.output} - {"logits"}
    assert set(shapes) == produced
    batch = options.get("batch", "N")
    from graphgen.plan import fold_bn

    plan = fold_bn(expand(spec)) if options.get("fold") else expand(spec)
    for op in plan.ops[:-1]:  # the last op writes `logits`, a graph output
        assert shapes[op.out] == [batch, *op.shape], op.name


def test_building_needs_no_torch(tmp_path):
    """graphgen's torch module is imported only by who asks for it: building, listing and
    reading graphs work where torch cannot be imported."""
    out = tmp_path / "r20.onnx"
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from graphgen.cli import main\n"
        f"assert main(['build', '--depth', '20', '--block', 'preact_basic', '-o', {str(out)!r}]) == 0\n"
        f"assert main(['info', {str(out)!r}]) == 0\n"
        "assert main(['list']) == 0\n"
        "assert 'torch' not in [m.split('.')[0] for m in sys.modules if sys.modules[m]]\n"
        "try:\n"
        "    import graphgen.torch_module\n"
        "except ImportError:\n"
        "    pass\n"
        "else:\n"
        "    raise AssertionError('graphgen.torch_module imported without torch')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    validate(onnx.load(out))
