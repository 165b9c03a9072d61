"""The zoo variants (graphgen.archs presets) over every route CI can run without torchvision or
timm: torch.onnx's exports (both exporters) imported, state_dicts imported by preset name,
`--fold-bn` and fp16 builds, and `graphgen quantize` with grouped convs and attention gates.

The exports are tests/fixtures/golden/onnx/ (scripts/golden_fixtures.py --onnx): the exporters'
graphs of freshly initialised presets with their large float tensors stripped; refilled here from
a seed by name, each must import and agree with itself on onnxruntime (import_model's check).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from graphgen.archs import ARCHS, arch_spec
from graphgen.errors import GraphError, StridePlacementError
from graphgen.importers.common import rel_l2, run_onnx, seeded_input
from graphgen.importing import import_model
from graphgen.onnx_io import build, plan_of, save, weights_of
from graphgen.plan import Conv
from graphgen.quantize import quantize
from tests.golden import unit_uniform

FIXTURES = Path(__file__).parent / "fixtures" / "golden" / "onnx"
EXPORTS = json.loads((FIXTURES / "onnx.json").read_text())["exports"]
SIZE = 32


def refill(name: str, tmp_path: Path) -> Path:
    """The export with its stripped tensors refilled: uniform with variance 1 / fan-in for
    weights, in [0.5, 1.5] for vectors (positive: some are BN variances)."""
    model = onnx.load(str(FIXTURES / name))
    props = {p.key: p.value for p in model.metadata_props}
    stripped = set(json.loads(props["golden.stripped"]))
    for t in model.graph.initializer:
        if t.name not in stripped:
            continue
        shape = tuple(t.dims)
        u = unit_uniform(0, t.name, int(np.prod(shape))).reshape(shape)
        if len(shape) >= 2:
            fan_in = int(np.prod(shape[1:]))
            value = (u - 0.5) * 2 * np.sqrt(3 / fan_in)
        else:
            value = 0.5 + u
        t.CopyFrom(numpy_helper.from_array(value.astype(np.float32), t.name))
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("name", sorted(EXPORTS))
def test_an_exported_preset_imports_and_agrees_with_its_source(name, tmp_path):
    source = refill(name, tmp_path)
    done = import_model(source, tmp_path / "out.onnx")
    assert done.checked == "onnx-source"
    assert done.found.startswith(EXPORTS[name]["preset"])
    assert done.spec.image_size == SIZE


def test_the_torchscript_exporter_aliases_equal_biases_and_they_import(tmp_path):
    """A freshly initialised net's folded biases are all zero: the TorchScript exporter stores
    one and reads the rest through Identity nodes (the refusal this fixture once met)."""
    model = onnx.load(str(FIXTURES / "resnet18.ts.onnx"))
    stored = {t.name for t in model.graph.initializer}
    aliases = [n for n in model.graph.node if n.op_type == "Identity" and n.input[0] in stored]
    assert aliases
    done = import_model(refill("resnet18.ts.onnx", tmp_path), tmp_path / "out.onnx")
    assert done.found.startswith("resnet18")


def _small(name: str) -> object:
    """The preset with one unit a stage at 32 px: every family feature, a few MB of weights."""
    return arch_spec(name, layers=(1, 1, 1, 1), image_size=SIZE, classes=10)


@pytest.mark.parametrize("name", list(ARCHS))
def test_fold_bn_and_fp16_builds_agree_with_the_fp32_graph(name):
    spec = _small(name)
    x = seeded_input(spec)
    fp32 = run_onnx(build(spec, seed=3), x)
    assert rel_l2(run_onnx(build(spec, seed=3, fold=True), x), fp32) < 1e-5
    assert rel_l2(run_onnx(build(spec, seed=3, dtype="float16"), x), fp32) < 1e-2


def test_a_state_dict_imports_by_preset_name(tmp_path):
    spec = arch_spec("resnet18d", image_size=SIZE)
    weights = tmp_path / "resnet18d.npz"
    np.savez(weights, **weights_of(build(spec, seed=1)))
    done = import_model(weights, tmp_path / "a.onnx", arch="resnet18d", image_size=SIZE)
    assert done.spec == spec
    if importlib.util.find_spec("timm") is None:
        assert done.line.startswith("NOT checked") and "timm is not installed" in done.line
    # without --arch: the names fit resnet18d alone (a basic net: where it strides is moot)
    assert import_model(weights, tmp_path / "b.onnx", image_size=SIZE).spec == spec


def test_a_bottleneck_preset_state_dict_without_arch_needs_the_stride(tmp_path):
    spec = arch_spec("resnet26t", image_size=SIZE)
    weights = tmp_path / "t.npz"
    np.savez(weights, **weights_of(build(spec, seed=1)))
    with pytest.raises(StridePlacementError):
        import_model(weights, tmp_path / "a.onnx", image_size=SIZE)
    done = import_model(weights, tmp_path / "b.onnx", image_size=SIZE, stride_at="3x3")
    assert done.spec == spec


def test_a_variant_state_dict_of_no_preset_is_refused_naming_the_closest(tmp_path):
    weights = tmp_path / "se.npz"
    small = arch_spec("seresnet50", layers=(1, 1, 1, 1), image_size=SIZE)
    np.savez(weights, **weights_of(build(small, seed=1)))
    with pytest.raises(GraphError, match="closest: seresnet50"):
        import_model(weights, tmp_path / "a.onnx", image_size=SIZE, stride_at="3x3")


@pytest.mark.parametrize("name", ["resnext50_32x4d", "seresnet50", "ecaresnet50d", "resnetv2_50"])
def test_quantize_grouped_convs_per_output_channel_and_keeps_gates_float(name, tmp_path):
    fp32 = build(_small(name), seed=2)
    int8 = quantize(fp32)  # checks the int8 outputs against fp32 itself (MAX_REL_L2)
    plan = plan_of(fp32)
    inits = {t.name: t for t in int8.graph.initializer}
    for op in plan.ops:
        if isinstance(op, Conv) and op.groups > 1:
            dq = next(n for n in int8.graph.node if n.input and n.input[0] == f"{op.name}.weight")
            assert onnx.helper.get_attribute_value(dq.attribute[0]) == 0  # axis: out channels
            assert tuple(inits[dq.input[1]].dims) == (op.cout,)
    props = {p.key: p.value for p in int8.metadata_props}
    kept = props.get("graphgen.quant.kept_float")
    if plan.spec.attention == "none":
        assert kept is None
    else:
        assert kept and plan.spec.attention in kept
        # the gate is float: nothing quantizes the sigmoid's output or the scaled branch
        gates = [n for n in int8.graph.node if n.op_type in ("Sigmoid", "Mul")]
        read = {i: n.op_type for n in int8.graph.node for i in n.input}
        assert gates
        assert all(read.get(g.output[0]) != "QuantizeLinear" for g in gates)
    save(int8, tmp_path / "q.onnx")
