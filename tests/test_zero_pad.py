"""Option A's zero channels, placed by name: `zero_pad: symmetric` (the default, akamaster's
and tensorpack's) or `end` (fb.resnet.torch's), from the spec to every back end and back from
an ONNX file. The placements against their sources' own outputs: tests/test_golden.py."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from graphgen.cli import main
from graphgen.errors import GraphError, SpecError
from graphgen.importers.common import rel_l2, run_onnx
from graphgen.importers.onnx_graph import import_onnx
from graphgen.numpy_forward import forward_nhwc
from graphgen.onnx_io import build, metadata
from graphgen.plan import ZeroPadShortcut, expand
from graphgen.spec import STANDARD_VARIANTS, cifar_spec, spec_from_mapping
from graphgen.weights import init_weights

PLACEMENTS = {"symmetric": [(8, 8), (16, 16)], "end": [(0, 16), (0, 32)]}


@pytest.mark.parametrize("zero_pad", PLACEMENTS)
def test_the_plan_places_the_zeros(zero_pad: str) -> None:
    plan = expand(cifar_spec(20, zero_pad=zero_pad))
    pads = [(op.pad_before, op.pad_after) for op in plan.ops if isinstance(op, ZeroPadShortcut)]
    assert pads == PLACEMENTS[zero_pad]


def test_the_default_leaves_every_spec_as_it_was() -> None:
    """Left out of the spec's dict at its default, so every existing file keeps its bytes."""
    assert all('"zero_pad"' not in s.to_json() for s in STANDARD_VARIANTS.values())
    end = cifar_spec(20, zero_pad="end")
    assert end.name == "cifar-resnet20-zeropad-end" and end.to_dict()["zero_pad"] == "end"
    assert spec_from_mapping(json.loads(end.to_json())) == end


def test_a_placement_needs_option_a_and_a_known_name() -> None:
    with pytest.raises(SpecError, match="needs shortcut 'A', not 'B'"):
        cifar_spec(20, shortcut="B", zero_pad="end")
    with pytest.raises(SpecError, match="choose one of symmetric, end"):
        cifar_spec(20, zero_pad="front")


def test_build_flag_and_spec_key(tmp_path, capsys) -> None:
    out = tmp_path / "r.onnx"
    assert main(["build", "--depth", "8", "--zero-pad", "end", "-o", str(out)]) == 0
    spec = json.loads(metadata(onnx.load(out))["graphgen.spec"])
    assert spec["zero_pad"] == "end" and spec["name"] == "cifar-resnet8-zeropad-end"
    assert main(["build", "--depth", "18", "--zero-pad", "end", "-o", str(out)]) == 2
    assert "needs shortcut 'A'" in capsys.readouterr().err


@pytest.mark.parametrize("zero_pad", PLACEMENTS)
def test_onnx_torch_and_numpy_agree(zero_pad: str) -> None:
    torch = pytest.importorskip("torch")
    from graphgen.torch_module import build_model

    spec = cifar_spec(8, zero_pad=zero_pad)
    weights = init_weights(expand(spec), seed=1)
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32), dtype=np.float32)
    net = build_model(spec).eval()
    net.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=False)
    with torch.no_grad():
        y = net(torch.from_numpy(x)).numpy()
    assert rel_l2(run_onnx(build(spec, weights=weights).SerializeToString(), x), y) < 1e-5
    assert rel_l2(forward_nhwc(expand(spec), dict(weights), x.transpose(0, 2, 3, 1)), y) < 1e-5


def _other(zero_pad: str) -> str:
    return "end" if zero_pad == "symmetric" else "symmetric"


@pytest.mark.parametrize("zero_pad", PLACEMENTS)
def test_import_reads_the_placement_from_graphgen_graphs(zero_pad: str, tmp_path) -> None:
    spec = cifar_spec(8, zero_pad=zero_pad, classes=5)
    src = tmp_path / "a.onnx"
    onnx.save(build(spec, seed=2), src)
    found = import_onnx(src)
    where = "at the end" if zero_pad == "end" else "on both sides"
    assert found.spec == spec and f"option A (zero channels {where})" in found.summary
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32), dtype=np.float32)
    same = build(found.spec, weights=found.weights).SerializeToString()
    assert rel_l2(run_onnx(same, x), run_onnx(str(src), x)) < 1e-6
    other = build(found.spec.replace(zero_pad=_other(zero_pad)), weights=found.weights)
    assert rel_l2(run_onnx(other.SerializeToString(), x), run_onnx(str(src), x)) > 0.01


@pytest.mark.parametrize("zero_pad", PLACEMENTS)
def test_import_reads_the_placement_from_torch_onnx_export(zero_pad: str, tmp_path) -> None:
    """torch.onnx's TorchScript exporter slices per axis and computes the Pad's pads from
    constants (Slice, Transpose, Reshape, Cast): the importer evaluates them."""
    torch = pytest.importorskip("torch")
    from graphgen.torch_module import build_model

    spec = cifar_spec(8, zero_pad=zero_pad, classes=5)
    weights = init_weights(expand(spec), seed=4)
    net = build_model(spec).eval()
    net.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=False)
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 3, 32, 32), np.float32))
    src = tmp_path / "t.onnx"
    torch.onnx.export(net, (x,), str(src), dynamo=False, input_names=["x"])
    found = import_onnx(src)
    assert found.spec.zero_pad == zero_pad and found.spec.shortcut == "A"
    with torch.no_grad():
        y = net(x).numpy()
    out = run_onnx(build(found.spec, weights=found.weights).SerializeToString(), x.numpy())
    assert rel_l2(out, y) < 1e-5


def test_a_spec_file_names_the_placement(tmp_path) -> None:
    path = tmp_path / "net.yaml"
    path.write_text("depth: 20\ndataset: cifar10\nzero_pad: end\n")
    out = tmp_path / "r.onnx"
    assert main(["build", "--spec", str(path), "-o", str(out)]) == 0
    assert json.loads(metadata(onnx.load(out))["graphgen.spec"])["zero_pad"] == "end"


@pytest.mark.parametrize("kernel", [8, 4])
def test_an_average_pool_over_the_whole_map_is_global_pooling(kernel: int, tmp_path) -> None:
    """akamaster's CIFAR ResNets pool with F.avg_pool2d(x, 8), which torch.onnx exports as an
    AveragePool: global pooling where its window is the whole last map, refused elsewhere."""
    model = build(cifar_spec(8, classes=5), seed=5)
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32), dtype=np.float32)
    expected = run_onnx(model.SerializeToString(), x)
    gap = next(n for n in model.graph.node if n.op_type == "GlobalAveragePool")
    gap.op_type = "AveragePool"
    gap.attribute.append(onnx.helper.make_attribute("kernel_shape", [kernel, kernel]))
    src = tmp_path / "pooled.onnx"
    onnx.save(model, src)
    if kernel != 8:
        with pytest.raises(GraphError, match="averages 4x4 windows of a \\(8, 8\\) map"):
            import_onnx(src)
        return
    found = import_onnx(src)
    out = run_onnx(build(found.spec, weights=found.weights).SerializeToString(), x)
    assert rel_l2(out, expected) < 1e-6
