"""onnxruntime's CUDA and TensorRT providers on a real GPU: the provider that ran, parity,
IO-bound device timing, the TRT provider's engine cache and profile, and a CPU fallback reported
as a failure. Skipped, with the reason, where onnxruntime-gpu or a CUDA device is missing."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from runtimes.base import RunnerError
from runtimes.engines.ort_cuda import CUDA_EP, OrtCudaRunner
from runtimes.engines.ort_trt import TRT_EP, OrtTrtRunner
from runtimes.engines.trt_profiles import ProfileError
from tests._gpu import graph, inputs, reference, rel_l2

_CUDA = OrtCudaRunner.availability()
_TRT = OrtTrtRunner.availability()
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(_CUDA is not None, reason=f"ort-cuda unavailable: {_CUDA}"),
]
needs_trt_ep = pytest.mark.skipif(_TRT is not None, reason=f"ort-trt unavailable: {_TRT}")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return str(tmp_path_factory.mktemp("graphs"))


@pytest.mark.parametrize("timing", ["device", "end-to-end"])
def test_ort_cuda_runs_on_cuda_and_matches_cpu(models, timing):
    path, feeds = graph(models), inputs(2)
    with OrtCudaRunner(path, batch_sizes=(2,), timing=timing) as runner:
        assert runner.describe()["provider"] == CUDA_EP
        out = runner.infer(feeds)["logits"]
        runner.bind(feeds)
        assert all(0 < runner.timed_run() < 1 for _ in range(5))
    assert rel_l2(out, reference(path, feeds)) < 1e-4  # use_tf32=0


def test_ort_cuda_fp16_graph_parity(models):
    feeds = inputs(4)
    with OrtCudaRunner(graph(models, dtype="float16"), precision="fp16") as runner:
        out = runner.infer(feeds)["logits"]
    assert rel_l2(out, reference(graph(models), feeds)) < 1e-2


def test_a_node_the_gpu_cannot_run_is_a_failure_not_a_cpu_pass(tmp_path):
    """StringNormalizer has only a CPU kernel: with CPU fallback disabled, the session must
    fail, and the runner must say so."""
    node = helper.make_node("StringNormalizer", ["s"], ["t"], case_change_action="LOWER")
    g = helper.make_graph(
        [node],
        "strings",
        [helper.make_tensor_value_info("s", TensorProto.STRING, [2])],
        [helper.make_tensor_value_info("t", TensorProto.STRING, [2])],
    )
    path = tmp_path / "strings.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    # onnxruntime's own words when the session cannot be placed without the CPU provider:
    # "... fallback to CPU EP has been explicitly disabled by the user."
    with pytest.raises(RunnerError, match="fallback to CPU EP has been explicitly disabled"):
        OrtCudaRunner(path).activate()


@needs_trt_ep
def test_ort_trt_builds_an_engine_then_reuses_it(models, tmp_path):
    path, feeds = graph(models), inputs(2)
    with OrtTrtRunner(path, batch_sizes=(1, 2), cache_dir=tmp_path) as first:
        info = first.describe()
        assert info["provider"] == TRT_EP
        out = first.infer(feeds)["logits"]
        assert first.describe()["engine_cache"] == "built"
    # The TensorRT the provider loaded: its library, whatever Python wheel is installed.
    major = info["tensorrt"].split(".")[0]
    assert info["libnvinfer"].split("/")[-1].startswith(f"libnvinfer.so.{major}")
    assert "device-wide" in info["device_memory"]
    with OrtTrtRunner(path, batch_sizes=(1, 2), cache_dir=tmp_path) as second:
        np.testing.assert_allclose(second.infer(feeds)["logits"], out, rtol=1e-5, atol=1e-5)
        assert second.describe()["engine_cache"] == "hit"
    assert rel_l2(out, reference(path, feeds)) < 1e-3


@needs_trt_ep
def test_ort_trt_refuses_a_batch_outside_its_profile(models, tmp_path):
    with OrtTrtRunner(graph(models), batch_sizes=(1, 4), cache_dir=tmp_path) as runner:
        runner.infer(inputs(3))
        with pytest.raises(ProfileError, match="batch 5 is outside the TensorRT provider's"):
            runner.infer(inputs(5))


@needs_trt_ep
def test_ort_trt_fp16_graph_parity(models, tmp_path):
    """The provider is weakly typed: fp16 needs trt_fp16_enable, and the record says what the
    engines' layers run (or that the engines do not tell)."""
    feeds = inputs(4)
    with OrtTrtRunner(
        graph(models, dtype="float16"), precision="fp16", batch_sizes=(4,), cache_dir=tmp_path
    ) as runner:
        out = runner.infer(feeds)["logits"]
        info = runner.describe()
    assert "trt_fp16_enable" in info["precision_path"]
    layers = info["layer_precisions"]
    assert (isinstance(layers, dict) and layers.get("fp16", 0) > 0) or layers.startswith("unknown")
    assert rel_l2(out, reference(graph(models), feeds)) < 1e-2
