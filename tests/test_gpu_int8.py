"""INT8 on the GPU engines: TensorRT (native and onnxruntime's provider) builds the QDQ graph by
explicit quantization and stays within int8 parity of the fp32 graph. Skipped, with the reason,
where TensorRT or a CUDA device is missing (this project's CI machine has none)."""

from __future__ import annotations

import numpy as np
import pytest

from graphgen.onnx_io import build, plan_of, save
from graphgen.quantize import QuantOptions, quantize, seeded_calibration
from graphgen.spec import variant
from runtimes.engines.ort_trt import OrtTrtRunner
from runtimes.engines.trt import TensorRTRunner
from runtimes.parity import DEFAULT_TOLERANCES
from tests._gpu import IMAGE_SIZE, inputs, reference, rel_l2

_TRT = TensorRTRunner.availability()
_ORT_TRT = OrtTrtRunner.availability()
pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def graphs(tmp_path_factory):
    """ResNet-18 at 64x64, folded fp32 and its int8 graph with TensorRT's placement."""
    folder = tmp_path_factory.mktemp("int8")
    spec = variant("resnet18").replace(image_size=IMAGE_SIZE, name="resnet18")
    model = build(spec, fold=True)
    q = quantize(model, seeded_calibration(model, plan_of(model), count=8),
                 options=QuantOptions(placement="trt"))  # fmt: skip
    return save(model, folder / "fp32.onnx"), save(q, folder / "int8.onnx")


@pytest.mark.skipif(_TRT is not None, reason=f"trt unavailable: {_TRT}")
def test_tensorrt_builds_the_qdq_graph_by_explicit_quantization(graphs, tmp_path):
    fp32, int8 = graphs
    feeds = inputs(4)
    with TensorRTRunner(int8, precision="int8", batch_sizes=(4,), cache_dir=tmp_path) as runner:
        out = runner.infer(feeds)["logits"]
        info = runner.describe()
    assert "explicit quantization" in info["precision_path"]
    assert np.isfinite(out).all()
    assert rel_l2(out, reference(fp32, feeds)) < DEFAULT_TOLERANCES["int8"].rtol


@pytest.mark.skipif(_ORT_TRT is not None, reason=f"ort-trt unavailable: {_ORT_TRT}")
def test_onnxruntime_tensorrt_provider_runs_the_qdq_graph(graphs, tmp_path):
    fp32, int8 = graphs
    feeds = inputs(4)
    with OrtTrtRunner(int8, precision="int8", batch_sizes=(4,), cache_dir=tmp_path) as runner:
        out = runner.infer(feeds)["logits"]
        info = runner.describe()
    assert "explicit quantization" in info["precision_path"]
    assert rel_l2(out, reference(fp32, feeds)) < DEFAULT_TOLERANCES["int8"].rtol
