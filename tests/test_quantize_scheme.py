"""`graphgen quantize` writes the scheme it documents: weights symmetric int8 with one scale per
output channel (max |w| of that channel / 127, so every channel spans [-127, 127]), and every
zero point, of weights and activations alike, 0. Checked on the written file against the BN
folded fp32 graph it quantizes; nothing here depends on the CPU (no engine runs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from graphgen.cli import main

QMAX = 127  # the documented int8 weight range, [-127, 127] (not read from the code under test)


@pytest.fixture(scope="module")
def folded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folded CIFAR ResNet-8 (option A): the weights quantize reads are exactly its own."""
    path = tmp_path_factory.mktemp("scheme") / "resnet8-folded.onnx"
    assert main(["build", "--depth", "8", "--family", "cifar10", "--fold-bn", "-o", str(path)]) == 0
    return path


def _quantized(folded: Path, placement: str) -> onnx.ModelProto:
    out = folded.with_name(f"int8-{placement}.onnx")
    argv = ["quantize", str(folded), "--placement", placement, "--calibration-images", "4"]
    assert main([*argv, "-o", str(out)]) == 0
    return onnx.load(out)


def _arrays(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


@pytest.mark.parametrize("placement", ["ort", "trt"])
def test_weight_scales_are_per_output_channel(folded: Path, placement: str) -> None:
    source = _arrays(onnx.load(folded))
    quantized = _arrays(_quantized(folded, placement))
    weights = [n for n, a in quantized.items() if a.dtype == np.int8 and f"{n}_scale" in quantized]
    assert len(weights) == sum(n.endswith(".weight") and a.ndim >= 2 for n, a in source.items())
    for name in weights:
        w, q, scale = source[name], quantized[name].astype(np.float64), quantized[f"{name}_scale"]
        channel_max = np.abs(w.reshape(len(w), -1)).max(axis=1)
        np.testing.assert_allclose(scale, channel_max / QMAX, rtol=1e-6, err_msg=name)
        assert len(np.unique(scale)) > 1, f"{name}: one scale for every channel"
        per_channel = scale.reshape((-1,) + (1,) * (w.ndim - 1)).astype(np.float64)
        assert np.abs(q.reshape(len(q), -1)).max(axis=1).tolist() == [QMAX] * len(q), name
        assert np.all(np.abs(q * per_channel - w) <= per_channel * (0.5 + 1e-6)), name


@pytest.mark.parametrize("placement", ["ort", "trt"])
def test_every_zero_point_is_zero(folded: Path, placement: str) -> None:
    model = _quantized(folded, placement)
    arrays = _arrays(model)
    qdq = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert qdq
    for node in qdq:
        assert len(node.input) == 3, f"{node.name} has no explicit zero point"
        zero = arrays[node.input[2]]
        assert zero.dtype in (np.int8, np.uint8) and not zero.any(), (node.name, zero)
