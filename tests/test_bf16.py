"""bf16 and int8-bf16: graphgen's bfloat16 graph, what each CPU engine makes of it, and parity
against fp32 on random and trained nets (docs/fastest.md has the measurements).

Nothing here depends on the CPU having bf16 units: where it has none, OpenVINO runs f32 and says
so, torch emulates bf16 (the same numbers, slower), and every bound still holds."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from graphgen.cli import main as graphgen_main
from graphgen.errors import SpecError
from graphgen.onnx_emit import BF16_MIN_OPSET, bfloat16_bits
from graphgen.onnx_io import build, load, opset_of, weights_of
from graphgen.spec import variant
from graphgen.structure import structure_diff
from runtimes import registry
from runtimes.models import resolve
from runtimes.parity import check_parity, compare

SMALL = "cifar-resnet20"


def test_bf16_bits_round_to_nearest_even():
    one = 1.0
    ulp = 2.0**-7  # bfloat16 keeps 7 fraction bits
    values = np.array([one, one + ulp / 2, one + 3 * ulp / 2, one + ulp / 4, -2.5], np.float32)
    got = bfloat16_bits(values).astype(np.uint32) << 16
    back = got.view(np.float32)
    # a tie goes to the even neighbour (1.0 down, 1 + 2 ulp up); under half an ulp goes down
    assert back.tolist() == [one, one, one + 2 * ulp, one, -2.5]


def test_bfloat16_graph_holds_bf16_weights_of_the_fp32_ones_and_fp32_io():
    spec = variant(SMALL)
    fp32 = build(spec, seed=3)
    bf16 = build(spec, seed=3, dtype="bfloat16")
    onnx.checker.check_model(bf16, full_check=True)
    assert opset_of(bf16) == BF16_MIN_OPSET
    kinds = {t.data_type for t in bf16.graph.initializer}
    assert kinds == {onnx.TensorProto.BFLOAT16}
    assert bf16.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert bf16.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert [n.op_type for n in bf16.graph.node][:1] == ["Cast"]
    wide, narrow = weights_of(fp32), weights_of(bf16)
    for name, array in wide.items():
        expected = bfloat16_bits(array)
        got = np.asarray(narrow[name]).view(np.uint16)
        np.testing.assert_array_equal(got, expected, err_msg=name)
    assert structure_diff(bf16) is None


def test_bfloat16_needs_opset_22():
    with pytest.raises(SpecError, match="opset 22"):
        build(variant(SMALL), dtype="bfloat16", opset=17)


def test_cli_builds_bfloat16_with_its_own_default_opset_and_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert graphgen_main(["build", "--depth", "20", "--dtype", "bfloat16"]) == 0
    model = load(tmp_path / "cifar-resnet20-bf16.onnx")
    assert opset_of(model) == BF16_MIN_OPSET
    assert graphgen_main(["build", "--depth", "20", "--dtype", "bfloat16", "--opset", "17"]) == 2


def test_bf16_of_an_fp32_file_is_judged_against_that_file(tmp_path, model_cache):
    fp32 = resolve(SMALL, precision="fp32", cache_dir=model_cache)
    source = tmp_path / "mine.onnx"
    source.write_bytes(fp32.path.read_bytes())
    derived = resolve(source, precision="bf16", cache_dir=tmp_path / "cache")
    assert derived.precision == "bf16" and derived.reference_path == source
    meta = {p.key: p.value for p in load(derived.path).metadata_props}
    assert json.loads(meta["graphgen.bf16.source"])["file"] == "mine.onnx"
    beside = tmp_path / "mine-bf16.onnx"
    beside.write_bytes(derived.path.read_bytes())
    again = resolve(beside, precision="bf16")
    assert again.reference_path == source  # found beside it by name and digest
    with pytest.raises(Exception, match="bf16 graph"):
        resolve(beside, precision="fp32")


def test_ort_cpu_refuses_bf16_in_onnxruntimes_own_words():
    """onnxruntime's CPU provider is asked; 1.32 has no bfloat16 Conv (a later one may)."""
    reason = registry.refusal("ort-cpu", "bf16")
    if reason is not None:
        assert "onnxruntime" in reason and "bfloat16 Conv" in reason and "it said" in reason


@pytest.mark.slow
def test_bf16_parity_on_a_random_net(model_cache):
    report = check_parity(
        [SMALL], ["openvino", "torch", "ort-cpu"], precision="bf16", batch=4,
        cache_dir=model_cache,
    )  # fmt: skip
    (model,) = report.models
    assert model.reference.endswith("on the fp32 graph")
    by_engine = {r.runtime: r for r in model.results}
    for engine in ("openvino", "torch"):
        result = by_engine[engine]
        assert result.status == "pass", (engine, result.reason)
        m = result.comparison.metrics
        assert 1e-4 < m.rel_l2 < 0.05  # bf16 rounding shows, and stays far inside 0.1
    ort = by_engine["ort-cpu"]
    assert ort.status == "pass" or "bfloat16" in (ort.reason or "")


@pytest.mark.slow
def test_openvino_says_what_it_ran_for_bf16_and_int8_bf16(model_cache):
    feeds = {"input": np.random.default_rng(0).standard_normal((2, 3, 32, 32), np.float32)}
    for precision in ("bf16", "int8-bf16"):
        model = resolve(SMALL, precision=precision, cache_dir=model_cache)
        with registry.create("openvino", model.path, precision=precision, threads=2) as runner:
            out = runner.infer(feeds)["logits"]
            info = runner.describe()
        assert np.isfinite(out).all()
        ops = info["op_precisions"]
        assert sum(ops["Convolution"].values()) == 19
        ran = info["precision_ran"]
        if info["inference_precision"] == "bf16":  # a CPU with bf16 units: no change
            assert ran in ("bf16", "int8 + bf16") and "precision_note" not in info
        else:  # OpenVINO took the hint as f32: the record says so
            assert "f32" in info["precision_note"] and precision in info["precision_note"]
        if precision == "int8-bf16":
            assert ran.startswith("int8") and info["conv_kernels"]


@pytest.mark.slow
def test_int8_bf16_parity_is_judged_against_the_fp32_graph(model_cache):
    report = check_parity(
        [SMALL], ["openvino", "torch"], precision="int8-bf16", batch=4, cache_dir=model_cache
    )
    (model,) = report.models
    results = {r.runtime: r for r in model.results}
    assert results["openvino"].status == "pass", results["openvino"].reason
    assert results["torch"].status == "skipped"  # torch has no int8 path
    assert results["openvino"].comparison.metrics.rel_l2 < 0.1


# -- a trained net ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """resnet-train's ResNet-8 on the synthetic set (32x32), its bf16 graph, and 1000
    held-out images normalised as the graph expects."""
    from train.cli import main as train_main
    from train.data import synthetic_data

    d = tmp_path_factory.mktemp("trained-bf16")
    argv = ["--depth", "8", "--image-size", "32", "--synthetic-train", "512",
            "--synthetic-val", "128", "--batch-size", "64", "--epochs", "4", "--schedule",
            "constant", "--lr", "0.05", "--workers", "0", "--quiet", "--out", str(d / "run"),
            "--export", str(d / "r8.onnx")]  # fmt: skip
    assert train_main(argv) == 0
    data = synthetic_data(train=512, val=1000, classes=10, image_size=32, seed=0)
    meta = {p.key: p.value for p in load(d / "r8.onnx").metadata_props}
    mean = np.array(json.loads(meta["graphgen.normalize_mean"]), np.float32)[:, None, None]
    std = np.array(json.loads(meta["graphgen.normalize_std"]), np.float32)[:, None, None]
    x = ((data.val.images.numpy().astype(np.float32) / 255 - mean) / std).astype(np.float32)
    bf16 = resolve(d / "r8.onnx", precision="bf16", cache_dir=d / "cache")
    return d / "r8.onnx", bf16.path, x, data.val.labels.numpy()


def _logits(engine: str, path, precision: str, x: np.ndarray) -> np.ndarray:
    with registry.create(engine, path, precision=precision, threads=2) as runner:
        return np.concatenate(
            [runner.infer({"input": x[i : i + 250]})["logits"] for i in range(0, len(x), 250)]
        )


@pytest.mark.slow
def test_a_trained_net_keeps_its_accuracy_in_bf16(trained):
    """Measured: rel. L2 0.009 (OpenVINO) and 0.004 (torch), top-1 agreement 99.5-99.7%,
    validation error within 0.05 points (benchmarks/bf16_accuracy.py, 2000 images)."""
    fp32, bf16, x, labels = trained
    ref = _logits("ort-cpu", fp32, "fp32", x)
    err_ref = float((ref.argmax(1) != labels).mean())
    assert err_ref < 0.5  # it learned (chance is 0.9)
    for engine in ("openvino", "torch"):
        out = _logits(engine, bf16, "bf16", x)
        err = float((out.argmax(1) != labels).mean())
        comparison = compare(out, ref, precision="bf16")
        m = comparison.metrics
        assert comparison, (engine, comparison.failures)
        assert abs(err - err_ref) <= 0.005, (engine, err, err_ref)
        assert m.rel_l2 < 0.03 and m.top1 >= 0.98, (engine, m)
        assert m.decisive > len(x) // 2 and (m.decisive_top1 or 0) >= 0.99, (engine, m)
