"""graphgen import of ONNX ResNets from other exporters: MXNet (model-zoo style), torch.onnx
(BN folded into the convs), older opsets, and graphgen's own files. Every import is checked
against its source on onnxruntime before it is written (in float64 where float32 rounding alone
misses the limit); these tests check the written file again.
"""

from pathlib import Path

import numpy as np
import onnx
import pytest

# ruff: noqa: E402
# Everything below needs torch (directly or through train/): without it the module is
# skipped, so that `pytest -m gpu` still collects where torch is missing.
pytest.importorskip("torch")

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from graphgen.cli import main
from graphgen.errors import GraphError
from graphgen.flavors import apply_flavor
from graphgen.importers.common import (
    CHECK_KEY,
    CHECKED_KEY,
    VerifyError,
    check,
    rel_l2,
    run_float64,
    run_onnx,
    seeded_input,
)
from graphgen.importers.onnx_graph import import_onnx
from graphgen.onnx_io import build
from graphgen.plan import expand, fold_bn
from graphgen.spec import Spec, cifar_spec

FIXTURES = Path(__file__).parent / "fixtures" / "gluon"
MXNET = ["v1_basic", "v1_bottleneck", "v2_basic", "v2_bottleneck"]


def _import(src: Path, out: Path, *extra: str) -> tuple[int, str]:
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = main(["import", str(src), "-o", str(out), *extra])
    return code, buffer.getvalue()


def _x(size: int, batch: int = 2) -> np.ndarray:
    return np.random.default_rng(5).standard_normal((batch, 3, size, size), dtype=np.float32)


@pytest.mark.parametrize("net", MXNET)
def test_mxnet_onnx_export_imports_and_matches_mxnet(net, tmp_path):
    out = tmp_path / "r.onnx"
    code, printed = _import(FIXTURES / f"{net}.onnx", out, "--expect", str(FIXTURES / f"{net}.npz"))
    assert code == 0
    data = np.load(FIXTURES / f"{net}.npz")
    assert rel_l2(run_onnx(str(out), data["input"]), data["output"]) < 1e-5
    flavor = "gluon-v2" if net.startswith("v2") else "gluon-v1" if "bottleneck" in net else "paper"
    assert f"{flavor}, 5 classes" in printed
    source = onnx.load(FIXTURES / f"{net}.onnx")
    assert len(source.graph.input) > 1  # MXNet lists its initializers as inputs, too


def _model_zoo_style(model: onnx.ModelProto, opset: int) -> onnx.ModelProto:
    """MXNet's export as the ONNX Model Zoo's resnet*-v1-7 files are: opset 7 (BN with
    `spatial`, MaxPool without `ceil_mode`), IR 3, every initializer also a graph input.
    onnx's version converter cannot take BatchNormalization below opset 15, so by hand."""
    for node in model.graph.node:
        if node.op_type == "MaxPool":
            kept = [a for a in node.attribute if a.name != "ceil_mode"]
            del node.attribute[:]
            node.attribute.extend(kept)
        if node.op_type == "BatchNormalization" and opset < 9:
            node.attribute.append(onnx.helper.make_attribute("spatial", 1))
    del model.opset_import[:]
    model.opset_import.append(onnx.helper.make_opsetid("", opset))
    model.ir_version = 3
    return model


@pytest.mark.parametrize("opset", [7, 9])
def test_model_zoo_style_old_opsets(opset, tmp_path):
    old = _model_zoo_style(onnx.load(FIXTURES / "v1_bottleneck.onnx"), opset)
    assert {i.name for i in old.graph.input} >= {t.name for t in old.graph.initializer}
    src = tmp_path / f"old{opset}.onnx"
    onnx.save(old, src)
    out = tmp_path / "r.onnx"
    assert _import(src, out)[0] == 0
    assert rel_l2(run_onnx(str(out), _x(32)), run_onnx(str(src), _x(32))) < 1e-5


class _TvBottleneck(nn.Module):
    """torchvision's Bottleneck, written out: stride on the 3x3 ("v1.5")."""

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, width * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != width * 4:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, width * 4, 1, stride, bias=False), nn.BatchNorm2d(width * 4)
            )

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class _TvResNet(nn.Module):
    def __init__(self, layers=(1, 2), widths=(8, 16), classes=6) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        blocks, cin = [], 8
        for stage, (n, w) in enumerate(zip(layers, widths, strict=True)):
            for i in range(n):
                blocks.append(_TvBottleneck(cin, w, 2 if stage and not i else 1))
                cin = w * 4
        self.layers = nn.Sequential(*blocks)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.avgpool(self.layers(x))
        return self.fc(torch.flatten(x, 1))


def _torchvision_like(seed=0) -> nn.Module:
    torch.manual_seed(seed)
    net = _TvResNet()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.3, 1.0)
                m.bias.uniform_(-0.2, 0.2)
    return net.eval()


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
def test_torch_onnx_export_imports(dynamo, tmp_path):
    net = _torchvision_like()
    src = tmp_path / "tv.onnx"
    x = torch.from_numpy(_x(32))
    if dynamo:
        pytest.importorskip("onnxscript", reason="torch.onnx's dynamo exporter needs onnxscript")
    torch.onnx.export(net, (x,), str(src), dynamo=dynamo, input_names=["x"])
    out = tmp_path / "r.onnx"
    code, printed = _import(src, out)
    assert code == 0
    assert "resnet11, torchvision, 6 classes, stride on 3x3" in printed
    assert "BN folded into the convs" in printed  # both exporters fold BN in eval mode
    with torch.no_grad():
        expected = net(x).numpy()
    assert rel_l2(run_onnx(str(out), x.numpy()), expected) < 1e-5


@pytest.mark.parametrize(
    "spec",
    [
        Spec(layers=(2, 1), widths=(8, 16), stem_width=8, classes=4, image_size=32),
        apply_flavor(
            Spec(layers=(1, 1), widths=(4, 8), block="bottleneck", stem_width=8, image_size=32),
            "gluon-v1",
        ),
        apply_flavor(
            Spec(layers=(1, 2), widths=(4, 8), block="bottleneck", stem_width=8, image_size=32),
            "gluon-v2",
        ),
        Spec(layers=(1, 1), widths=(8, 16), block="preact_basic", stem_width=8, image_size=32),
        cifar_spec(8, shortcut="B"),
        Spec(layers=(1, 1), widths=(8, 16), shortcut="C", stem_width=8, image_size=32),
    ],
    ids=["basic", "gluon-v1", "gluon-v2", "preact", "cifar-B", "shortcut-C"],
)
@pytest.mark.parametrize("fold", [False, True], ids=["bn", "folded"])
def test_graphgen_files_import_to_the_same_spec(spec, fold, tmp_path):
    src = tmp_path / "g.onnx"
    onnx.save(build(spec, seed=3, fold=fold), src)
    found = import_onnx(src)
    # Folded, Gluon v1's 1x1 biases are inside the folded biases: the same network as paper's.
    assert found.spec == (spec.replace(bottleneck_bias=False) if fold else spec), found.summary
    out = tmp_path / "r.onnx"
    assert _import(src, out)[0] == 0
    assert (
        rel_l2(run_onnx(str(out), _x(spec.image_size)), run_onnx(str(src), _x(spec.image_size)))
        < 1e-5
    )


def test_option_a_zeros_placed_neither_way_are_refused(tmp_path, capsys):
    """Option A imports with its zeros on both sides or at the end (tests/test_zero_pad.py);
    one zero channel in front and fifteen behind is neither, and is refused by name."""
    model = build(cifar_spec(8))
    pads = next(n for n in model.graph.node if n.name == "layer2.0.shortcut.pads")
    pads.attribute[0].t.CopyFrom(
        onnx.numpy_helper.from_array(np.array([0, 1, 0, 0, 0, 15, 0, 0]), pads.output[0])
    )
    src = tmp_path / "a.onnx"
    onnx.save(model, src)
    out = tmp_path / "r.onnx"
    assert main(["import", str(src), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "pads 1 zero channels in front and 15 behind" in err and not out.exists()


def test_not_a_resnet_is_refused(tmp_path):
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 8, 8])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 3, 8, 8])
    graph = onnx.helper.make_graph([onnx.helper.make_node("Tanh", ["x"], ["y"])], "g", [x], [y])
    src = tmp_path / "s.onnx"
    onnx.save(onnx.helper.make_model(graph), src)
    with pytest.raises(GraphError, match="Tanh node"):
        import_onnx(src)


def test_graphgen_normalisation_metadata_is_carried(tmp_path):
    model = build(Spec(layers=(1, 1), widths=(8, 16), stem_width=8, image_size=32))
    onnx.helper.set_model_props(
        model,
        {"graphgen.normalize_mean": "[0.5, 0.5, 0.5]", "graphgen.normalize_std": "[0.2, 0.2, 0.2]"},
    )
    src, out = tmp_path / "g.onnx", tmp_path / "r.onnx"
    onnx.save(model, src)
    assert _import(src, out)[0] == 0
    meta = {p.key: p.value for p in onnx.load(out).metadata_props}
    assert meta["graphgen.normalize_mean"] == "[0.5, 0.5, 0.5]"
    assert meta["graphgen.classes"] == "1000"


def test_fixed_batch_source(tmp_path):
    spec = Spec(layers=(1, 1), widths=(8, 16), stem_width=8, image_size=32)
    src, out = tmp_path / "g.onnx", tmp_path / "r.onnx"
    onnx.save(build(spec, batch=1), src)
    assert _import(src, out)[0] == 0  # verified at the source's batch; the new graph's is N
    assert (
        rel_l2(run_onnx(str(out), _x(32, batch=3))[:1], run_onnx(str(src), _x(32, batch=3)[:1]))
        < 1e-5
    )
    assert _import(src, out, "--batch", "4")[0] == 2


def _small_graph(tmp_path, edit) -> Path:
    model = build(
        Spec(layers=(1, 1), widths=(8, 16), stem_width=8, classes=3, image_size=32), seed=2
    )
    edit(model)
    src = tmp_path / "edited.onnx"
    onnx.save(model, src)
    return src


def _bn_eps(model: onnx.ModelProto) -> None:
    for node in model.graph.node:
        if node.op_type == "BatchNormalization":
            node.attribute[0].f = 1e-3


def _matmul_head(model: onnx.ModelProto) -> None:
    """A fc as MatMul + Add (as some exporters write it), the weight stored transposed."""
    g = model.graph
    gemm = next(n for n in g.node if n.op_type == "Gemm")
    inits = {t.name: t for t in g.initializer}
    w = onnx.numpy_helper.to_array(inits[gemm.input[1]])
    inits[gemm.input[1]].CopyFrom(
        onnx.numpy_helper.from_array(np.ascontiguousarray(w.T), gemm.input[1])
    )
    index = list(g.node).index(gemm)
    matmul = onnx.helper.make_node("MatMul", gemm.input[:2], ["fc.mm"], name="fc.mm")
    add = onnx.helper.make_node("Add", ["fc.mm", gemm.input[2]], list(gemm.output), name="fc.add")
    g.node.remove(gemm)
    g.node.insert(index, add)
    g.node.insert(index, matmul)


@pytest.mark.parametrize("edit", [_bn_eps, _matmul_head], ids=["bn-eps-1e-3", "matmul-add-fc"])
def test_other_exporters_spellings(edit, tmp_path):
    src = _small_graph(tmp_path, edit)
    out = tmp_path / "r.onnx"
    code, printed = _import(src, out)  # verified against the edited source on onnxruntime
    assert code == 0, printed
    assert rel_l2(run_onnx(str(out), _x(32)), run_onnx(str(src), _x(32))) < 1e-5


@st.composite
def _importable_specs(draw) -> tuple[Spec, bool]:
    stem = draw(st.sampled_from(["imagenet", "cifar"]))
    stages = draw(st.integers(1, 3))
    block = draw(st.sampled_from(["basic", "bottleneck", "preact_basic", "preact_bottleneck"]))
    expansion = 4 if block.endswith("bottleneck") else 1
    widths = sorted(draw(st.lists(st.sampled_from([4, 8, 12]), min_size=stages, max_size=stages)))
    stride = (4 if stem == "imagenet" else 1) * 2 ** (stages - 1)
    spec = Spec(
        layers=tuple(draw(st.lists(st.integers(1, 2), min_size=stages, max_size=stages))),
        widths=tuple(widths),
        block=block,
        stem=stem,
        shortcut=draw(st.sampled_from(["B", "C"])),
        stride_at=draw(st.sampled_from(["1x1", "3x3"])),
        classes=draw(st.integers(1, 12)),
        image_size=draw(st.integers(stride, stride * 2 + 7)),
        stem_width=draw(st.sampled_from([w for w in (4, 8) if w <= widths[0] * expansion])),
        bottleneck_bias=block == "bottleneck" and draw(st.booleans()),
        data_bn=draw(st.booleans()),
        first_unit_bn=block.startswith("preact") and draw(st.booleans()),
    )
    return spec, draw(st.booleans())


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=_importable_specs())
def test_any_expressible_graph_imports_to_the_same_network(case, tmp_path_factory):
    """Round trip over random specs and flavour fields, folded or not: the same plan (a basic
    unit's stride placement, or B vs C where every unit projects, are one network) and the same
    outputs on onnxruntime."""
    spec, fold = case
    src = tmp_path_factory.mktemp("rt") / "g.onnx"
    onnx.save(build(spec, seed=1, fold=fold), src)
    found = import_onnx(src)
    same = (lambda s: fold_bn(expand(s)).ops) if fold else (lambda s: expand(s).ops)
    assert same(found.spec) == same(spec), found.summary
    x = _x(spec.image_size)
    ours = run_onnx(build(found.spec, weights=found.weights), x)
    assert rel_l2(ours, run_onnx(str(src), x)) < 1e-5


def _ill_conditioned(tmp_path) -> tuple[Path, Spec]:
    """A graph whose logits almost cancel on import's seeded inputs, as written by MXNet (every
    initializer also a graph input).

    The fc's rows are orthogonal to the difference of the two images' features and its bias is
    minus their product, so float32 rounding anywhere before the head is amplified ~1e7 times,
    while in float64 the computation is exact to ~1e-9. Listed as inputs, the initializers keep
    onnxruntime from folding the source's BNs into its convs; in the imported graph it folds them:
    the two float32 results differ by rounding alone, by far more than 1e-5."""
    spec = Spec(layers=(1, 1), widths=(8, 16), stem_width=8, classes=3, image_size=32)
    model = build(spec, seed=2)
    g = model.graph
    rng = np.random.default_rng(3)
    for t in g.initializer:  # BN statistics far from identity
        if t.name.endswith(("running_var", "running_mean")):
            shape = tuple(t.dims)
            value = (
                rng.uniform(0.5, 2.0, shape)
                if t.name.endswith("var")
                else rng.normal(0, 0.3, shape)
            )
            t.CopyFrom(onnx.numpy_helper.from_array(value.astype(np.float32), t.name))
    gemm = next(n for n in g.node if n.op_type == "Gemm")
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.output[:]
    probe.graph.output.append(onnx.helper.make_empty_tensor_value_info(gemm.input[0]))
    features = run_float64(probe, seeded_input(spec))  # the fc's input, float64
    d = features[0] - features[1]
    w = rng.standard_normal((spec.classes, d.size))
    w = (w - np.outer(w @ d, d) / (d @ d)).astype(np.float32)
    b = (-(w.astype(np.float64) @ features[0])).astype(np.float32)
    for t in g.initializer:
        if t.name in (gemm.input[1], gemm.input[2]):
            value = w if t.name == gemm.input[1] else b
            t.CopyFrom(onnx.numpy_helper.from_array(value, t.name))
    g.input.extend(
        onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in g.initializer
    )
    src = tmp_path / "ill.onnx"
    onnx.save(model, src)
    return src, spec


def test_float32_rounding_alone_is_decided_in_float64(tmp_path):
    """A correct file is not refused because fp32 is noisy on a badly conditioned net."""
    src, spec = _ill_conditioned(tmp_path)
    x = seeded_input(spec)
    source32 = run_onnx(str(src), x)
    source64 = run_float64(onnx.load(src), x)
    assert rel_l2(source32, source64) > 1e-3  # the premise: float32 cannot decide here
    out = tmp_path / "r.onnx"
    code, printed = _import(src, out)
    assert code == 0, printed
    line = next(line for line in printed.splitlines() if line.startswith("verified"))
    assert "against ill.onnx, both in float64 (on onnxruntime" in line
    float32_error = float(line.split("on onnxruntime ")[1].split(":")[0])
    assert float32_error > 1e-5
    assert rel_l2(run_float64(onnx.load(out), x), source64) < 1e-9
    meta = {p.key: p.value for p in onnx.load(out).metadata_props}
    assert meta[CHECKED_KEY] == "onnx-source" and meta[CHECK_KEY] == line


def test_a_wrong_graph_fails_in_float64_too(tmp_path):
    """The float64 decision is a check, not a pass: one weight off by 1e-3 fails both ways."""
    src, spec = _ill_conditioned(tmp_path)
    wrong = onnx.load(src)
    conv = next(t for t in wrong.graph.initializer if t.name == "layer1.0.conv1.weight")
    value = onnx.numpy_helper.to_array(conv).copy()
    value.flat[0] += 1e-3
    conv.CopyFrom(onnx.numpy_helper.from_array(value, conv.name))
    x = seeded_input(spec)
    source = onnx.load(src)
    with pytest.raises(VerifyError, match=r"on onnxruntime and .* in float64 \(limit 1e-05\)"):
        check(
            wrong,
            x,
            expected=run_onnx(source, x),
            against="ill.onnx",
            exact=lambda: run_float64(source, x),
        )


def test_float64_evaluation_matches_onnxruntime_on_a_plain_graph(tmp_path):
    """run_float64 computes the graph (not a neighbour): on a well-conditioned net it agrees with
    onnxruntime to float32 rounding, fp16 graphs included."""
    spec = Spec(layers=(1, 1), widths=(8, 16), stem_width=8, classes=5, image_size=32)
    x = seeded_input(spec)
    for dtype, limit in (("float32", 1e-6), ("float16", 1e-2)):
        model = build(spec, seed=4, dtype=dtype)
        assert rel_l2(run_float64(model, x), run_onnx(model, x)) < limit


def test_onnx_import_records_its_check(tmp_path):
    spec = Spec(layers=(1, 1), widths=(8, 16), stem_width=8, classes=3, image_size=32)
    src, out = tmp_path / "g.onnx", tmp_path / "r.onnx"
    onnx.save(build(spec, seed=1), src)
    code, printed = _import(src, out)
    assert code == 0
    assert "verified: rel. L2 " in printed and "against g.onnx" in printed
    assert "float64" not in printed  # float32 decided it: no second evaluation
    meta = {p.key: p.value for p in onnx.load(out).metadata_props}
    assert meta[CHECKED_KEY] == "onnx-source"


def test_onnx_source_refuses_arch_and_a_contradicting_stride(tmp_path, capsys):
    spec = Spec(layers=(1, 2), widths=(4, 8), block="bottleneck", stem_width=8, image_size=32)
    src, out = tmp_path / "g.onnx", tmp_path / "r.onnx"
    onnx.save(build(spec, seed=1), src)  # strides on the 1x1
    assert main(["import", str(src), "--arch", "torchvision:resnet50", "-o", str(out)]) == 2
    assert "an ONNX source holds its computation" in capsys.readouterr().err
    assert main(["import", str(src), "--stride-at", "3x3", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "strides on the 1x1 (the graph shows it), not on the 3x3" in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()
    assert main(["import", str(src), "--stride-at", "1x1", "-o", str(out)]) == 0
