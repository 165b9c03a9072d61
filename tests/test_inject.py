"""graphgen inject: trained weights into graphs by name, refusing every kind of mismatch."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest

# ruff: noqa: E402
# Everything below needs torch (directly or through train/): without it the module is
# skipped, so that `pytest -m gpu` still collects where torch is missing.
pytest.importorskip("torch")

import torch
from safetensors.torch import save_file

from graphgen.cli import main as graphgen
from graphgen.onnx_io import build, save
from graphgen.spec import Spec, spec_for_depth
from graphgen.torch_module import build_model

SPEC = spec_for_depth(8, "cifar10", image_size=16)


def _trained_state(spec, seed: int = 1) -> dict[str, torch.Tensor]:
    """A state_dict with non-trivial BN statistics, as training leaves it."""
    torch.manual_seed(seed)
    model = build_model(spec)
    state = model.state_dict()
    for name, value in state.items():
        if name.endswith("running_var"):
            value.uniform_(0.5, 2.0)
        elif name.endswith(("running_mean", "bias")):
            value.normal_(0, 0.1)
        elif name.endswith("bn1.weight") or ".bn" in name and name.endswith("weight"):
            value.uniform_(0.5, 1.5)
    return state


def _run(path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"input": x})[0]


def _torch_out(spec, state, x: np.ndarray) -> np.ndarray:
    model = build_model(spec)
    model.load_state_dict(state)
    with torch.no_grad():
        return model.eval()(torch.from_numpy(x)).numpy()


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.fixture
def graph(tmp_path):
    path = tmp_path / "net.onnx"
    save(build(SPEC), path)
    return path


@pytest.fixture
def x() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((4, 3, 16, 16), dtype=np.float32)


@pytest.mark.parametrize("fmt", ["safetensors", "npz", "pt"])
@pytest.mark.parametrize("fold", [False, True])
def test_injected_graph_matches_torch(tmp_path, graph, x, fmt, fold):
    state = _trained_state(SPEC)
    weights = tmp_path / f"w.{fmt}"
    if fmt == "safetensors":
        save_file({k: v for k, v in state.items() if "num_batches" not in k}, weights)
    elif fmt == "npz":
        np.savez(weights, **{k: v.numpy() for k, v in state.items()})
    else:
        torch.save(state, weights)
    out = tmp_path / "trained.onnx"
    argv = ["inject", str(graph), "--weights", str(weights), "-o", str(out)]
    assert graphgen(argv + (["--fold-bn"] if fold else [])) == 0
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert ("BatchNormalization" in ops) is not fold
    assert _rel(_run(out, x), _torch_out(SPEC, state, x)) < 1e-5


def _expect_refusal(tmp_path, graph, weights: dict[str, torch.Tensor], capsys, *needles: str):
    path = tmp_path / "bad.safetensors"
    save_file(weights, path)
    out = tmp_path / "out.onnx"
    code = graphgen(["inject", str(graph), "--weights", str(path), "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    for needle in needles:
        assert needle in err
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def _clean(state):
    return {k: v for k, v in state.items() if "num_batches" not in k}


def test_missing_names_are_listed(tmp_path, graph, capsys):
    state = _clean(_trained_state(SPEC))
    del state["layer2.0.conv1.weight"], state["fc.bias"]
    _expect_refusal(tmp_path, graph, state, capsys, "missing", "layer2.0.conv1.weight", "fc.bias")


def test_unexpected_names_are_listed(tmp_path, graph, capsys):
    state = _clean(_trained_state(SPEC))
    state["layer9.0.conv1.weight"] = torch.zeros(3)
    _expect_refusal(tmp_path, graph, state, capsys, "unexpected", "layer9.0.conv1.weight")


def test_wrong_shapes_are_listed(tmp_path, graph, capsys):
    state = _clean(_trained_state(SPEC))
    state["fc.weight"] = torch.zeros(100, 64)
    _expect_refusal(tmp_path, graph, state, capsys, "shape", "fc.weight (100, 64) != (10, 64)")


def test_all_mismatch_kinds_in_one_line(tmp_path, graph, capsys):
    state = _clean(_trained_state(SPEC))
    del state["conv1.weight"]
    state["extra"] = torch.zeros(1)
    state["fc.bias"] = torch.zeros(3)
    _expect_refusal(tmp_path, graph, state, capsys, "missing: conv1.weight", "unexpected: extra")


def test_failed_inject_leaves_existing_output_untouched(tmp_path, graph, capsys):
    out = tmp_path / "out.onnx"
    out.write_bytes(b"previous")
    bad = tmp_path / "bad.npz"
    np.savez(bad, nothing=np.zeros(1))
    assert graphgen(["inject", str(graph), "--weights", str(bad), "-o", str(out)]) == 2
    assert out.read_bytes() == b"previous"


@pytest.mark.parametrize(
    "name, content", [("w.safetensors", b"garbage"), ("w.npz", b"garbage"), ("w.bin", b"x")]
)
def test_unreadable_weights_file(tmp_path, graph, capsys, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    code = graphgen(["inject", str(graph), "--weights", str(path), "-o", str(tmp_path / "o.onnx")])
    assert code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_missing_weights_file(tmp_path, graph, capsys):
    code = graphgen(["inject", str(graph), "--weights", str(tmp_path / "nope.safetensors"), "-o",
                     str(tmp_path / "o.onnx")])  # fmt: skip
    assert code == 2
    assert "no such weights file" in capsys.readouterr().err


def test_inject_imports_no_torch():
    code = "import sys, graphgen.inject, graphgen.cli.inject; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_torchvision_layout_state_dict_injects_unchanged(tmp_path, capsys):
    """torchvision's resnet50 keys (v1.5, option B) are the plan's names: no mapping needed.

    torchvision cannot be installed here, so the state_dict is built under torchvision's names
    and checked against its documented layout (320 keys, 161 parameters, `num_batches_tracked`).
    """
    spec = spec_for_depth(50, None, stride_at="3x3", image_size=64)
    state = _trained_state(spec, seed=3)
    assert len(state) == 320
    assert (
        sum(1 for k in state if not k.endswith(("running_mean", "running_var", "tracked"))) == 161
    )
    assert state["layer1.0.downsample.1.num_batches_tracked"].dtype == torch.int64
    assert {"conv1.weight", "layer4.2.bn3.running_var", "layer2.0.downsample.0.weight"} <= set(
        state
    )
    weights = tmp_path / "resnet50.pth"
    torch.save(state, weights)
    graph, out = tmp_path / "resnet50.onnx", tmp_path / "trained.onnx"
    build = ["build", "--depth", "50", "--stride-at", "3x3", "--image-size", "64"]
    assert graphgen([*build, "-o", str(graph)]) == 0
    inject = ["inject", str(graph), "--weights", str(weights), "-o", str(out)]
    assert graphgen([*inject, "--stride-at", "3x3"]) == 0
    x = np.random.default_rng(1).standard_normal((2, 3, 64, 64), dtype=np.float32)
    assert _rel(_run(out, x), _torch_out(spec, state, x)) < 1e-5
    strides = {n.name: list(a.ints) for n in onnx.load(str(out)).graph.node for a in n.attribute
               if n.op_type == "Conv" and a.name == "strides"}  # fmt: skip
    assert [v for k, v in strides.items() if k.startswith("layer2.0.conv2")] == [[2, 2]]


def test_resnet_train_last_pt_injects(tmp_path, x, capsys):
    """The run folder's own checkpoint (state_dict under "model") injects like its weights."""
    from train.cli import main as resnet_train

    run = tmp_path / "run"
    argv = ["--depth", "8", "--image-size", "16", "--synthetic-train", "64", "--synthetic-val",
            "32", "--batch-size", "32", "--epochs", "1", "--workers", "0", "--quiet", "--out",
            str(run)]  # fmt: skip
    assert resnet_train(argv) == 0
    graph, out = tmp_path / "net.onnx", tmp_path / "trained.onnx"
    save(build(SPEC), graph)
    assert graphgen(["inject", str(graph), "--weights", str(run / "last.pt"), "-o", str(out)]) == 0
    state = torch.load(run / "last.pt", weights_only=True)["model"]
    assert _rel(_run(out, x), _torch_out(SPEC, state, x)) < 1e-5
    # the safetensors file carries the run's normalisation into the graph's metadata
    from_st = tmp_path / "from-st.onnx"
    argv = ["inject", str(graph), "--weights", str(run / "last.safetensors"), "-o", str(from_st)]
    assert graphgen([*argv, "--fold-bn"]) == 0
    props = {p.key: p.value for p in onnx.load(str(from_st)).metadata_props}
    data = json.loads((run / "data.json").read_text())
    assert json.loads(props["graphgen.normalize_mean"]) == data["mean"]
    assert json.loads(props["graphgen.normalize_std"]) == data["std"]


@pytest.mark.parametrize("key", ["state_dict", "model_state_dict"])
def test_nested_state_dict_keys_are_unwrapped(tmp_path, graph, x, key):
    state = _trained_state(SPEC)
    weights = tmp_path / "w.pt"
    torch.save({key: state, "epoch": 3}, weights)
    out = tmp_path / "o.onnx"
    assert graphgen(["inject", str(graph), "--weights", str(weights), "-o", str(out)]) == 0
    assert _rel(_run(out, x), _torch_out(SPEC, state, x)) < 1e-5


def test_pickled_objects_are_refused_in_one_line(tmp_path, graph, capsys):
    weights = tmp_path / "evil.pt"
    torch.save({"conv1.weight": argparse.Namespace(a=1)}, weights)
    out = tmp_path / "o.onnx"
    assert graphgen(["inject", str(graph), "--weights", str(weights), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (
        f"error: {weights} holds non-tensor objects; refused (torch.load weights_only=True)"
    )
    assert not out.exists()


def test_inject_into_fp16_graph(tmp_path, x):
    state = _trained_state(SPEC)
    weights, graph16, out = tmp_path / "w.pt", tmp_path / "net16.onnx", tmp_path / "o.onnx"
    torch.save(state, weights)
    build16 = ["build", "--depth", "8", "--dataset", "cifar10", "--image-size", "16"]
    assert graphgen([*build16, "--dtype", "float16", "-o", str(graph16)]) == 0
    assert graphgen(["inject", str(graph16), "--weights", str(weights), "-o", str(out)]) == 0
    model = onnx.load(str(out))
    assert {t.data_type for t in model.graph.initializer} == {onnx.TensorProto.FLOAT16}
    dtype = np.float16 if model.graph.input[0].type.tensor_type.elem_type == 10 else np.float32
    got = _run(out, x.astype(dtype)).astype(np.float32)
    assert _rel(got, _torch_out(SPEC, state, x)) < 1e-2


def test_folded_weights_into_folded_graph(tmp_path, x):
    from graphgen.plan import expand
    from graphgen.weights import fold_weights

    state = _trained_state(SPEC)
    plain = {k: v.numpy() for k, v in _clean(state).items()}
    folded = fold_weights(expand(SPEC), plain)
    weights, graph, out = tmp_path / "folded.npz", tmp_path / "f.onnx", tmp_path / "o.onnx"
    np.savez(weights, **folded)
    save(build(SPEC, fold=True), graph)
    assert graphgen(["inject", str(graph), "--weights", str(weights), "-o", str(out)]) == 0
    assert "BatchNormalization" not in {n.op_type for n in onnx.load(str(out)).graph.node}
    assert _rel(_run(out, x), _torch_out(SPEC, state, x)) < 1e-5


def test_recorded_flavour_must_match_the_graph():
    """Flavour fields are absent from a spec's dict at their default, so absent means false."""
    from graphgen.errors import GraphError
    from graphgen.inject import check_recorded_spec
    from graphgen.spec import spec_for_depth

    plain = spec_for_depth(50)
    gluon = dict(plain.to_dict(), bottleneck_bias=True)
    check_recorded_spec(plain.to_dict(), plain, source="w", model_source="m")
    with pytest.raises(GraphError, match="bottleneck_bias True \\(the graph: False\\)"):
        check_recorded_spec(gluon, plain, source="w", model_source="m")


def test_recorded_zero_pad_must_match_the_graph():
    """Option A's zero channels in front and behind (symmetric) or behind only (end) are
    different networks with the same names; absent means symmetric, the default."""
    from graphgen.errors import GraphError
    from graphgen.inject import check_recorded_spec
    from graphgen.spec import spec_for_depth

    symmetric = spec_for_depth(20)
    end = symmetric.replace(zero_pad="end")
    check_recorded_spec(symmetric.to_dict(), symmetric, source="w", model_source="m")
    check_recorded_spec(end.to_dict(), end, source="w", model_source="m")
    with pytest.raises(GraphError, match="zero_pad 'end' \\(the graph: 'symmetric'\\)"):
        check_recorded_spec(end.to_dict(), symmetric, source="w", model_source="m")
    with pytest.raises(GraphError, match="zero_pad 'symmetric' \\(the graph: 'end'\\)"):
        check_recorded_spec(symmetric.to_dict(), end, source="w", model_source="m")


BOTTLENECK = Spec(
    layers=(1, 2), widths=(4, 8), block="bottleneck", classes=5, image_size=32, stem_width=8
)


@pytest.fixture
def bottleneck_graphs(tmp_path):
    """The same bottleneck net striding on the 1x1 (graphgen's default) and on the 3x3."""
    paths = {}
    for stride in ("1x1", "3x3"):
        paths[stride] = tmp_path / f"net-{stride}.onnx"
        save(build(BOTTLENECK.replace(stride_at=stride)), paths[stride])
    return paths


def test_bottleneck_weights_without_a_recorded_spec_need_stride_at(
    tmp_path, bottleneck_graphs, capsys
):
    """A torchvision .pth records nothing, and its names fit a 1x1-striding graph exactly."""
    weights, out = tmp_path / "tv.pth", tmp_path / "o.onnx"
    torch.save(_trained_state(BOTTLENECK.replace(stride_at="3x3")), weights)
    argv = ["inject", str(bottleneck_graphs["1x1"]), "--weights", str(weights), "-o", str(out)]
    assert graphgen(argv) == 2
    err = capsys.readouterr().err
    assert "records no spec" in err and "--stride-at 1x1 or 3x3" in err
    assert "strides on the 1x1" in err and len(err.strip().splitlines()) == 1
    assert graphgen([*argv, "--stride-at", "3x3"]) == 2
    err = capsys.readouterr().err
    assert (
        f"these weights stride on the 3x3, the graph ({bottleneck_graphs['1x1']}) on the 1x1" in err
    )
    assert "build the graph with --stride-at 3x3" in err and not out.exists()


def test_stride_at_matching_the_graph_injects(tmp_path, bottleneck_graphs):
    spec = BOTTLENECK.replace(stride_at="3x3")
    state = _trained_state(spec)
    weights, out = tmp_path / "tv.pth", tmp_path / "o.onnx"
    torch.save(state, weights)
    argv = ["inject", str(bottleneck_graphs["3x3"]), "--weights", str(weights), "-o", str(out)]
    assert graphgen([*argv, "--stride-at", "3x3"]) == 0
    images = np.random.default_rng(0).standard_normal((2, 3, 32, 32), dtype=np.float32)
    assert _rel(_run(out, images), _torch_out(spec, state, images)) < 1e-5


def test_a_recorded_spec_says_where_weights_stride(tmp_path, bottleneck_graphs, capsys):
    """resnet-train's safetensors record their spec: no flag needed, a contradicting one refused,
    and weights recorded as striding elsewhere than the graph refused."""
    spec = BOTTLENECK.replace(stride_at="3x3")
    state = {k: v for k, v in _trained_state(spec).items() if "num_batches" not in k}
    weights, out = tmp_path / "w.safetensors", tmp_path / "o.onnx"
    save_file(state, weights, metadata={"graphgen.spec": spec.to_json()})
    argv = ["inject", str(bottleneck_graphs["3x3"]), "--weights", str(weights), "-o", str(out)]
    assert graphgen(argv) == 0
    assert graphgen([*argv, "--stride-at", "1x1"]) == 2
    assert "--stride-at 1x1 contradicts" in capsys.readouterr().err
    argv[1] = str(bottleneck_graphs["1x1"])
    assert graphgen(argv) == 2
    assert "stride_at '3x3' (the graph: '1x1')" in capsys.readouterr().err


def test_inject_api_refuses_an_unknown_stride_placement(bottleneck_graphs):
    from graphgen.errors import StridePlacementError
    from graphgen.inject import inject
    from graphgen.onnx_io import load

    model = load(bottleneck_graphs["1x1"])
    state = {k: v.numpy() for k, v in _trained_state(BOTTLENECK).items()}
    with pytest.raises(StridePlacementError, match="records no spec"):
        inject(model, state)
    inject(model, state, stride_at="1x1")  # the graph's: fine
