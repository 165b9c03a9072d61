"""The GPU routes of bf16 and of throughput mode: native TensorRT on graphgen's bfloat16 graph
(strongly typed), onnxruntime's TensorRT provider with trt_bf16_enable, torch-cuda in bf16
through bench-runtimes, and TensorRT's execution contexts on streams of their own. Each is
skipped, with the reason, where its engine or a CUDA device is missing."""

from __future__ import annotations

import json

import pytest

from runtimes import registry
from tests._gpu import graph, inputs, reference, rel_l2

pytestmark = pytest.mark.gpu
BF16_BOUND = 0.1  # bf16's parity tolerance (runtimes.parity.judge), against the fp32 graph


def _needs(engine: str) -> pytest.MarkDecorator:
    reason = registry.availability(engine)
    return pytest.mark.skipif(reason is not None, reason=f"{engine} unavailable: {reason}")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return str(tmp_path_factory.mktemp("graphs"))


@_needs("trt")
def test_trt_runs_the_bfloat16_graph_strongly_typed(models, tmp_path):
    from runtimes.engines.trt import TensorRTRunner

    feeds = inputs(4)
    path = graph(models, dtype="bfloat16")
    with TensorRTRunner(path, precision="bf16", batch_sizes=(4,), cache_dir=tmp_path) as runner:
        out = runner.infer(feeds)["logits"]
        info = runner.describe()
    assert "strongly typed" in info["precision_path"]
    assert rel_l2(out, reference(graph(models), feeds)) < BF16_BOUND


@_needs("trt")
def test_trt_throughput_keeps_every_execution_context_busy(models, tmp_path):
    from runtimes.engines.trt import TensorRTRunner

    runner = TensorRTRunner(
        graph(models), batch_sizes=(2,), cache_dir=tmp_path, mode="throughput", streams=2
    )
    with runner:
        runner.bind(inputs(2))
        burst = runner.burst(count=8)
        assert runner.describe()["streams"] == 2
    assert burst.completed >= 8 and len(burst.latencies_ms) == burst.completed
    assert 0 < burst.steady_completed <= burst.completed and burst.rate > 0


@_needs("ort-trt")
def test_ort_trt_bf16_sets_the_providers_bf16_switch(models, tmp_path):
    from runtimes.engines.ort_trt import OrtTrtRunner

    feeds = inputs(4)
    with OrtTrtRunner(
        graph(models, dtype="bfloat16"), precision="bf16", batch_sizes=(4,), cache_dir=tmp_path
    ) as runner:
        out = runner.infer(feeds)["logits"]
        info = runner.describe()
    path = info["precision_path"]
    assert "trt_bf16_enable" in path or "strongly typed" in path
    layers = info.get("layer_precisions")
    assert layers is None or isinstance(layers, str) or layers.get("bf16", 0) > 0
    assert rel_l2(out, reference(graph(models), feeds)) < BF16_BOUND


@_needs("torch-cuda")
def test_torch_cuda_bf16_through_bench_runtimes(tmp_path, monkeypatch):
    from runtimes.cli import main as bench_main

    monkeypatch.setenv("GRAPHGEN_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    argv = ["run", "--models", "cifar-resnet20", "--runtimes", "torch-cuda", "--precision",
            "bf16", "--iterations", "5", "--warmup", "2", "--out", str(out)]  # fmt: skip
    assert bench_main(argv) == 0
    (record,) = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert record["status"] == "ok" and record["parity"]["passed"], record
    assert record["parity"]["reference"].endswith("on the fp32 graph")
