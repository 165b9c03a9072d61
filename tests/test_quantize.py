"""INT8 (`graphgen quantize`): QDQ graphs that pass onnx's full check, run on onnxruntime and
OpenVINO with integer convs, keep a trained net's accuracy, and are judged by int8 parity.

The trained net is a ResNet-8 fitted by `resnet-train` on the synthetic set at CIFAR size (32x32)
in about 30 s; its held-out set is 2000 images of the same generator."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from functools import cache
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from graphgen.cli import main as graphgen_main
from graphgen.cost import graph_cost
from graphgen.onnx_io import build, load, plan_of, save
from graphgen.plan import Conv
from graphgen.quantize import (
    QuantOptions,
    Ranges,
    quantize,
    seeded_calibration,
)
from graphgen.spec import STANDARD_VARIANTS, variant
from graphgen.structure import int8_structure_diff
from runtimes.base import RunnerError
from runtimes.engines.openvino_cpu import (
    INT8_KERNELS,
    OpenVinoRunner,
    runtime_conv_precisions,
    shared_core,
)
from runtimes.engines.ort_cpu import OrtCpuRunner
from runtimes.int8 import reduce_range_here
from runtimes.parity import DEFAULT_TOLERANCES, check_parity, compare

REDUCE = reduce_range_here()  # 7-bit weights where this CPU's int8 sums saturate (no VNNI)
VARIANTS = {
    "cifar-resnet20": STANDARD_VARIANTS["cifar-resnet20"],  # option A: Slice + Pad shortcuts
    "resnet18-64px": variant("resnet18").replace(image_size=64, name="resnet18"),  # option B
    "resnet50-64px": variant("resnet50").replace(image_size=64, name="resnet50"),  # bottleneck
    "preact-20": STANDARD_VARIANTS["cifar-resnet20"].replace(
        block="preact_basic", name="preact-20"
    ),  # unfolded BNs stay
}


@cache
def fp32(name: str) -> onnx.ModelProto:
    return build(VARIANTS[name], fold=name != "preact-20")


@cache
def int8(name: str, placement: str = "ort") -> onnx.ModelProto:
    model = fp32(name)
    calibration = seeded_calibration(model, plan_of(model), count=8)
    options = QuantOptions(placement=placement, reduce_range=REDUCE)
    return quantize(model, calibration, options=options, source=f"{name}.onnx")


def session(model: onnx.ModelProto | Path, optimized: Path | None = None) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = 2
    if optimized is not None:
        opts.optimized_model_filepath = str(optimized)
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])


def images(spec, batch: int = 4, seed: int = 3) -> np.ndarray:
    from runtimes.inputs import image_batch

    return image_batch(batch, spec.image_size, seed=seed)


def rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


# -- the graph --------------------------------------------------------------------------------


@pytest.mark.parametrize("placement", ["ort", "trt"])
@pytest.mark.parametrize("name", list(VARIANTS))
def test_qdq_graph_passes_the_full_check_and_keeps_fp32_io(name, placement, tmp_path):
    model = int8(name, placement)
    path = save(model, tmp_path / "q.onnx")  # save validates; check the file by path too
    onnx.checker.check_model(str(path), full_check=True)
    for value in (*model.graph.input, *model.graph.output):
        assert value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    plan = plan_of(model)
    convs = [op for op in plan.ops if isinstance(op, Conv)]
    weights = {t.name: t for t in model.graph.initializer}
    for conv in convs:  # int8 weights under the torchvision names, per-channel scales, zp 0
        w = weights[f"{conv.name}.weight"]
        assert w.data_type == onnx.TensorProto.INT8
        assert list(weights[f"{conv.name}.weight_scale"].dims) == [conv.cout]
        zero = onnx.numpy_helper.to_array(weights[f"{conv.name}.weight_zero_point"])
        assert not zero.any()
    ops = Counter(n.op_type for n in model.graph.node)
    assert ops["Conv"] == len(convs) and ops["DequantizeLinear"] >= 2 * len(convs)
    assert int8_structure_diff(model) is None
    cost = graph_cost(model)  # `graphgen info` counts the int8 weights, not the scales
    assert (cost.params, cost.macs) == (plan.params, plan.macs)


def test_placements_follow_their_rules():
    """trt: Q/DQ on conv and gemm inputs and on each Add's residual input, never on a conv's
    output (but a projection's, the residual input of its Add); ort: the same plus every conv
    output, so both of an Add's inputs are quantized."""
    for placement in ("trt", "ort"):
        model = int8("resnet18-64px", placement)
        producer = {o: n for n in model.graph.node for o in n.output}
        for node in model.graph.node:
            feeds = [producer.get(i) for i in node.input]
            kinds = [f.op_type if f is not None else "init" for f in feeds]
            if node.op_type in ("Conv", "Gemm"):
                assert kinds[:2] == ["DequantizeLinear", "DequantizeLinear"], node.name
            if node.op_type == "Add":
                # the residual (second) input is quantized in both placements
                assert kinds[1] == "DequantizeLinear", node.name
                # the branch (first) input: float in trt (fused into the conv), DQ in ort
                assert (kinds[0] == "DequantizeLinear") == (placement == "ort"), node.name
            if node.op_type == "Conv":
                readers = [n.op_type for n in model.graph.node if node.output[0] in n.input]
                # a projection is the residual input of its Add, which trt quantizes too
                quantized = placement == "ort" or "downsample" in node.name
                assert (readers == ["QuantizeLinear"]) == quantized, node.name


def test_same_inputs_same_bytes():
    model = fp32("cifar-resnet20")
    a = quantize(model, seeded_calibration(model, plan_of(model), count=4))
    b = quantize(model, seeded_calibration(model, plan_of(model), count=4))
    assert a.SerializeToString() == b.SerializeToString()


def test_percentile_is_exact_over_all_calibration_values():
    """The k-th largest |x| of everything seen, across batches (k = the tail's size)."""
    values = np.random.default_rng(0).permutation(np.arange(1, 10_001, dtype=np.float32))
    ranges = Ranges({"t"}, QuantOptions(method="percentile", percentile=99.9), images=10)
    for chunk in values.reshape(10, 1000):  # 10 "images" of 1000 values, one at a time
        ranges.add("t", chunk[None])
    assert ranges.amax("t") == 9991.0  # the top 0.1% is 10 values: 9991 .. 10000
    top = Ranges({"t"}, QuantOptions(method="max"), images=10)
    top.add("t", -values[None])
    assert top.amax("t") == 10000.0


def test_build_path_needs_neither_torch_nor_onnxruntime(tmp_path):
    source = save(fp32("cifar-resnet20"), tmp_path / "r20.onnx")
    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['onnxruntime'] = None\n"
        "from graphgen.cli import main\n"
        f"sys.exit(main(['quantize', {str(source)!r}, '--calibration-images', '4']))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "r20-int8.onnx").is_file()


def test_metadata_records_scheme_method_data_and_source(tmp_path):
    source = save(fp32("cifar-resnet20"), tmp_path / "r20.onnx")
    calib = tmp_path / "calib.npy"
    pixels = np.random.default_rng(0).integers(0, 256, (6, 3, 32, 32), dtype=np.uint8)
    np.save(calib, pixels)
    out = tmp_path / "q.onnx"
    code = graphgen_main(
        ["quantize", str(source), "-o", str(out), "--calibration-data", str(calib),
         "--method", "max", "--placement", "trt"]
    )  # fmt: skip
    assert code == 0
    meta = {p.key: p.value for p in load(out).metadata_props}
    assert meta["graphgen.dtype"] == "int8" and meta["graphgen.fold_bn"] == "true"
    assert "per output channel" in meta["graphgen.quant.scheme"]
    assert meta["graphgen.quant.method"] == "max"
    assert meta["graphgen.quant.placement"] == "trt"
    data = json.loads(meta["graphgen.quant.calibration"])
    assert data["source"] == str(calib) and data["images"] == 6
    assert json.loads(meta["graphgen.quant.source"])["file"] == "r20.onnx"
    assert json.loads(meta["graphgen.spec"]) == json.loads(
        {p.key: p.value for p in load(source).metadata_props}["graphgen.spec"]
    )


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    "case",
    ["not-graphgen", "fp16", "already-int8", "bad-npy-shape", "missing-data", "percentile",
     "no-folder", "same-file", "method"],
)  # fmt: skip
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, tmp_path, capsys, foreign_model):
    fp = save(fp32("cifar-resnet20"), tmp_path / "r20.onnx")
    half = save(build(STANDARD_VARIANTS["cifar-resnet20"], dtype="float16"), tmp_path / "h.onnx")
    q = save(int8("cifar-resnet20"), tmp_path / "q.onnx")
    np.save(tmp_path / "bad.npy", np.zeros((2, 3, 16, 16), np.float32))
    out = str(tmp_path / "out.onnx")
    argv = {
        "not-graphgen": [str(foreign_model), "-o", out],
        "fp16": [str(half), "-o", out],
        "already-int8": [str(q), "-o", out],
        "bad-npy-shape": [str(fp), "--calibration-data", str(tmp_path / "bad.npy"), "-o", out],
        "missing-data": [str(fp), "--calibration-data", str(tmp_path / "nope"), "-o", out],
        "percentile": [str(fp), "--percentile", "30", "-o", out],
        "no-folder": [str(fp), "-o", str(tmp_path / "no" / "such" / "q.onnx")],
        "same-file": [str(fp), "-o", str(fp)],
        "method": [str(fp), "--method", "entropy", "-o", out],
    }[case]
    before = _snapshot(tmp_path)
    capsys.readouterr()
    try:
        code = graphgen_main(["quantize", *argv])
    except SystemExit as exit_:  # argparse's own errors (an unknown --method)
        code = int(exit_.code or 0)
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert _snapshot(tmp_path) == before


# -- engines ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cifar-resnet20", "resnet50-64px", "preact-20"])
def test_every_conv_is_an_integer_kernel_on_onnxruntime(name, tmp_path):
    model = int8(name)
    optimized = tmp_path / "optimized.onnx"
    out = session(model, optimized).run(None, {"input": images(VARIANTS[name])})[0]
    ops = Counter(n.op_type for n in onnx.load(str(optimized)).graph.node)
    convs = sum(isinstance(op, Conv) for op in plan_of(model).ops)
    assert ops["QLinearConv"] == convs, ops
    assert ops["Conv"] == ops["FusedConv"] == 0, ops
    ref = session(fp32(name)).run(None, {"input": images(VARIANTS[name])})[0]
    assert np.isfinite(out).all() and rel_l2(out, ref) < DEFAULT_TOLERANCES["int8"].rtol


def openvino_kernels(compiled, convs: list[str]) -> dict[str, str]:
    """The runtime precision of each of the plan's convs (by name) in a compiled model."""
    kernels: dict[str, str] = {}
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        if "layerType" in info and info["layerType"].astype(str) == "Convolution":
            names = set(info["originalLayersNames"].astype(str).split(",")) & set(convs)
            assert len(names) == 1, (op.get_friendly_name(), names)
            kernels[names.pop()] = info["runtimePrecision"].astype(str).lower()
    return kernels


def assert_int8_kernels(kernels: dict[str, int], convs: int) -> None:
    """Every one of `convs` convolutions in an integer kernel: u8 or i8 is the CPU's choice
    (the stem conv, whose input is signed, runs as i8 on an AMX Xeon)."""
    assert set(kernels) <= set(INT8_KERNELS) and sum(kernels.values()) == convs, kernels


@pytest.mark.parametrize("name", ["cifar-resnet20", "resnet18-64px", "resnet50-64px"])
def test_every_convolution_runs_int8_on_openvino(name, tmp_path):
    path = save(int8(name), tmp_path / "q.onnx")
    compiled = shared_core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    convs = [op for op in plan_of(int8(name)).ops if isinstance(op, Conv)]
    kernels = openvino_kernels(compiled, [c.name for c in convs])
    assert set(kernels) == {c.name for c in convs}
    # OpenVINO may keep the paper ResNet-50's stride-2 1x1 convs at stage entries (conv1 and
    # downsample.0 reading one tensor) in f32, in either placement (it did on every CPU we
    # ran); every other conv runs in an integer kernel, u8 or i8 as the CPU chooses
    kept = [c for c in convs if c.kernel == 1 and c.stride == 2 and c.name.startswith("layer")]
    may_be_f32 = {c.name for c in kept} if name == "resnet50-64px" else set()
    for conv, kernel in kernels.items():
        allowed = {*INT8_KERNELS, "f32"} if conv in may_be_f32 else set(INT8_KERNELS)
        assert kernel in allowed, (conv, kernel, kernels)
    assert runtime_conv_precisions(compiled) == dict(Counter(kernels.values()))
    x = images(VARIANTS[name])
    out = compiled.create_infer_request().infer({"input": x})[compiled.outputs[0]]
    ref = session(fp32(name)).run(None, {"input": x})[0]
    assert rel_l2(np.asarray(out), ref) < DEFAULT_TOLERANCES["int8"].rtol


def test_ort_cpu_runner_refuses_float_convs(tmp_path):
    """The trt placement leaves conv outputs unquantized, which onnxruntime runs as fp32 convs
    on dequantized weights: the runner says so instead of timing a float run as int8."""
    path = save(int8("cifar-resnet20", "trt"), tmp_path / "trt.onnx")
    with pytest.raises(RunnerError, match="in float, not int8"):
        OrtCpuRunner(path, precision="int8").activate()
    ok = save(int8("cifar-resnet20"), tmp_path / "ort.onnx")
    with OrtCpuRunner(ok, precision="int8") as runner:
        assert runner.describe()["conv_kernels"] == {"int8": 19, "float": 0}
    with OpenVinoRunner(ok, precision="int8") as runner:
        assert_int8_kernels(runner.describe()["conv_kernels"], 19)


def test_parity_int8_passes_and_catches_a_rewired_graph(model_cache, tmp_path):
    report = check_parity(
        ["cifar-resnet20"], ["ort-cpu", "openvino"], precision="int8", batch=8,
        cache_dir=model_cache,
    )  # fmt: skip
    model = report.models[0]
    assert report, model.to_dict()
    assert "fp32 graph" in model.reference
    assert [r.status for r in model.results] == ["pass", "pass"]
    # rewire one block's shortcut to skip its branch: the structure check must catch it
    resolved = Path(model.path)
    q = load(resolved)
    add = next(n for n in q.graph.node if n.name == "layer2.1.add")
    add.input[0] = add.input[1]
    (tmp_path / resolved.name).write_bytes(q.SerializeToString())
    assert "layer2.1.add" in (int8_structure_diff(q) or "")


# -- a trained net ----------------------------------------------------------------------------

TRAIN, VAL, SIZE = 512, 2000, 32


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """resnet-train's ResNet-8 (synthetic, 32x32, 4 epochs), exported unfolded, and its int8
    graph calibrated on 64 training images given as a uint8 .npy."""
    from train.cli import main as train_main
    from train.data import synthetic_data

    d = tmp_path_factory.mktemp("trained")
    argv = ["--depth", "8", "--image-size", str(SIZE), "--synthetic-train", str(TRAIN),
            "--synthetic-val", "128", "--batch-size", "64", "--epochs", "4", "--schedule",
            "constant", "--lr", "0.05", "--workers", "0", "--quiet", "--out", str(d / "run"),
            "--export", str(d / "r8.onnx")]  # fmt: skip
    assert train_main(argv) == 0
    data = synthetic_data(train=TRAIN, val=VAL, classes=10, image_size=SIZE, seed=0)
    np.save(d / "calib.npy", data.train.images[:64].numpy())
    extra = ["--reduce-range"] if REDUCE else []
    code = graphgen_main(
        ["quantize", str(d / "r8.onnx"), "--calibration-data", str(d / "calib.npy"),
         "-o", str(d / "r8-int8.onnx"), *extra]
    )  # fmt: skip
    assert code == 0
    meta = {p.key: p.value for p in load(d / "r8.onnx").metadata_props}
    mean = np.array(json.loads(meta["graphgen.normalize_mean"]), np.float32)[:, None, None]
    std = np.array(json.loads(meta["graphgen.normalize_std"]), np.float32)[:, None, None]
    x = ((data.val.images.numpy().astype(np.float32) / 255 - mean) / std).astype(np.float32)
    return d, x, data.val.labels.numpy()


def _logits(run, x: np.ndarray) -> np.ndarray:
    return np.concatenate([run(x[i : i + 250]) for i in range(0, len(x), 250)])


def _engines(path: Path):
    s = session(path)
    compiled = shared_core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    return {
        "ort-cpu": lambda x: s.run(None, {"input": x})[0],
        "openvino": lambda x: np.asarray(request.infer({"input": x})[compiled.outputs[0]]),
    }


def test_trained_net_keeps_its_accuracy_after_int8(trained):
    """Validation error within 1 point of fp32 on 2000 held-out images, on both engines; int8
    parity (against the fp32 graph, same inputs) passes with a clear margin."""
    d, x, labels = trained
    ref = _logits(_engines(d / "r8.onnx")["ort-cpu"], x)
    err_fp32 = float((ref.argmax(1) != labels).mean())
    assert err_fp32 < 0.5  # it learned (chance is 0.9)
    for name, run in _engines(d / "r8-int8.onnx").items():
        out = _logits(run, x)
        err = float((out.argmax(1) != labels).mean())
        assert abs(err - err_fp32) <= 0.01, (name, err, err_fp32)
        comparison = compare(out, ref, precision="int8")
        m = comparison.metrics
        assert comparison, (name, comparison.failures)
        assert m.rel_l2 < 0.05 and m.top1 >= 0.98, (name, m)  # measured 0.011-0.017, 99.2-99.4%
        assert m.decisive > len(x) // 2 and (m.decisive_top1 or 0) >= 0.99, (name, m)


# -- the harness ------------------------------------------------------------------------------


def test_bench_run_int8_times_the_quantized_graph_and_judges_it_against_fp32(
    tmp_path, model_cache, monkeypatch
):
    from runtimes.cli import main as bench_main

    monkeypatch.setenv("GRAPHGEN_CACHE", str(model_cache))
    out = tmp_path / "bench"
    argv = ["run", "--models", "cifar-resnet20", "--runtimes", "ort-cpu,openvino", "--precision",
            "int8", "--iterations", "3", "--warmup", "1", "--no-interleave", "--out", str(out)]  # fmt: skip
    assert bench_main(argv) == 0
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert {r["runtime"] for r in records} == {"ort-cpu", "openvino"}
    for record in records:
        assert record["status"] == "ok" and record["precision"] == "int8", record
        assert record["parity"]["passed"] and "fp32 graph" in record["parity"]["reference"]
        assert record["parity"]["min_top1"] == DEFAULT_TOLERANCES["int8"].min_top1
        kernels = record["runner"]["conv_kernels"]
        if record["runtime"] == "ort-cpu":
            assert kernels == {"int8": 19, "float": 0}, kernels
        else:
            assert_int8_kernels(kernels, 19)


def test_an_int8_file_without_its_fp32_source_has_no_reference(tmp_path, capsys):
    """Given as a file, an int8 graph is judged against the fp32 graph it records (name and
    digest, beside it); without it there is nothing honest to compare with: exit 1, said so."""
    from runtimes.cli import main as bench_main

    source = save(fp32("cifar-resnet20"), tmp_path / "r20.onnx")
    assert graphgen_main(["quantize", str(source), "--calibration-images", "4"]) == 0
    q = str(tmp_path / "r20-int8.onnx")
    argv = ["parity", "--models", q, "--runtimes", "ort-cpu", "--precision", "int8"]
    assert bench_main(argv) == 0
    source.write_bytes(source.read_bytes() + b"\0")  # another file under the recorded name
    capsys.readouterr()
    assert bench_main(argv) == 1
    assert "no fp32 graph to compare" in capsys.readouterr().out
