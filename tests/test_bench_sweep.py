"""Sweeps on real engines with a tiny model: streaming, resume, failures, skips."""

import json
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from reports.results import read_records
from runtimes.bench import LoopConfig
from runtimes.sweep import Sweep, SweepConfig

TINY = "cifar-resnet20"
FAST = LoopConfig(warmup=1, warmup_s=None, iterations=5, duration_s=None)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models")


def config(out: Path, cache: Path, **kw) -> SweepConfig:
    base = dict(models=[TINY], runtimes=["ort-cpu"], batches=[1, 2], loop=FAST, out=out)
    return SweepConfig(**{**base, "model_cache": cache, **kw})


def lines(out: Path) -> list[str]:
    return (out / "results.jsonl").read_text().splitlines()


def unloadable_model(path: Path) -> Path:
    """A valid ONNX file whose only op no engine implements: a real load failure."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 32, 32])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])
    node = helper.make_node("NoSuchOp", ["input"], ["logits"], domain="com.example")
    graph = helper.make_graph([node], "broken", [x], [y])
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)]
    onnx.save(helper.make_model(graph, opset_imports=opsets), path)
    return path


def test_records_stream_with_statistics_and_parity(tmp_path, cache):
    records = Sweep(config(tmp_path, cache)).run()
    assert [r["batch"] for r in records] == [1, 2]
    assert len(lines(tmp_path)) == 2  # one line per record, written as it finished
    r = records[1]
    assert r["status"] == "ok" and r["timing"]["iterations"] == 5
    assert r["timing"]["mode"] == "host" and r["timing"]["clock"] == "perf_counter_ns"
    lat = r["latency_ms"]
    assert lat["min"] <= lat["median"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert r["throughput_ips"] > 0 and r["gflops"] > 0 and r["load_time_s"] > 0
    assert r["runner"]["provider"] == "CPUExecutionProvider"
    assert r["parity"]["passed"] and r["parity"]["rel_l2"] < 1e-4
    assert r["parity"]["reference"] == "torch (fp64)"


def test_resume_skips_done_keys_and_survives_a_torn_line(tmp_path, cache):
    Sweep(config(tmp_path, cache, batches=[1], parity=False)).run()
    good = lines(tmp_path)[0]
    # A kill mid-write: a garbage line and a torn record without its newline.
    with open(tmp_path / "results.jsonl", "a") as f:
        f.write("{not json\n" + good[: len(good) // 2])
    sweep = Sweep(config(tmp_path, cache, batches=[1, 2], resume=True, parity=False))
    new = sweep.run()
    assert [r["batch"] for r in new] == [2]  # batch 1 was done: skipped
    assert len(sweep.warnings) == 2 and "corrupt" in sweep.warnings[0]
    text = lines(tmp_path)
    assert text[0] == good and text[1] == "{not json"  # nothing is ever rewritten
    records, warnings = read_records(tmp_path / "results.jsonl")
    assert sorted(r["batch"] for r in records) == [1, 2] and len(warnings) == 2


def test_fresh_run_without_resume_starts_over(tmp_path, cache):
    Sweep(config(tmp_path, cache, batches=[1], parity=False)).run()
    Sweep(config(tmp_path, cache, batches=[2], parity=False)).run()
    assert [json.loads(x)["batch"] for x in lines(tmp_path)] == [2]


def test_failing_engine_is_recorded_and_the_sweep_goes_on(tmp_path, cache):
    broken = unloadable_model(tmp_path / "broken.onnx")
    cfg = config(
        tmp_path / "out", cache, models=[str(broken), TINY], runtimes=["ort-cpu", "openvino"],
        batches=[1], parity=False,
    )  # fmt: skip
    records = Sweep(cfg).run()
    status = {(Path(r["model"]).name, r["runtime"]): r["status"] for r in records}
    assert status == {
        ("broken.onnx", "ort-cpu"): "failed",
        ("broken.onnx", "openvino"): "failed",
        (TINY, "ort-cpu"): "ok",
        (TINY, "openvino"): "ok",
    }
    failed = records[0]
    assert "NoSuchOp" in failed["reason"] and "\n" not in failed["reason"]
    assert len(lines(tmp_path / "out")) == 4


def test_unsupported_precision_and_big_models_are_skipped_with_reason(tmp_path, cache):
    cfg = config(
        tmp_path, cache, runtimes=["onnx-ref"], precisions=["fp16"], batches=[1], parity=False
    )
    (record,) = Sweep(cfg).run()
    assert record["status"] == "skipped" and "does not support fp16" in record["reason"]
    cfg = config(tmp_path, cache, runtimes=["onnx-ref"], batches=[64], parity=False)
    (record,) = Sweep(cfg).run()
    assert record["status"] == "skipped" and "MMAC limit" in record["reason"]
