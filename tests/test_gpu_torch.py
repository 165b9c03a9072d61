"""torch-cuda on a real GPU: parity of fp32, fp16 and bf16 against the float64 CPU reference,
device-event timing on device-resident inputs, and the peak device memory. Skipped, with the
reason, where torch has no CUDA device."""

from __future__ import annotations

import numpy as np
import pytest

from runtimes import registry
from runtimes.parity import Tolerance, compare
from tests._gpu import graph, inputs

_REASON = registry.availability("torch-cuda")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(_REASON is not None, reason=f"torch-cuda unavailable: {_REASON}"),
]
# fp32 with TF32 off: as the CPU engines. fp16/bf16: unit roundoff 4.9e-4 / 3.9e-3, grown
# with depth (runtimes.parity explains the fp16 bound; bf16 has 8x fp16's roundoff).
BOUNDS = {
    "fp32": Tolerance(1e-4, 1e-5),
    "fp16": Tolerance(2e-2, 1e-3),
    "bf16": Tolerance(8e-2, 1e-2),
}


@pytest.fixture(scope="module")
def path(tmp_path_factory):
    return graph(str(tmp_path_factory.mktemp("graphs")))


@pytest.fixture(scope="module")
def expected(path):
    with registry.create("torch", path, precision="fp64") as ref:
        return ref.infer(inputs(4))["logits"]


@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
def test_torch_cuda_matches_the_fp64_reference(path, expected, precision):
    with registry.create("torch-cuda", path, precision=precision) as runner:
        out = runner.infer(inputs(4))["logits"]
        info = runner.describe()
    assert info["gpu"] and info["tf32"] is False
    assert out.dtype == np.float32 and np.isfinite(out).all()
    result = compare(out, expected, BOUNDS[precision])
    assert result, result.failures


@pytest.mark.parametrize("timing", ["device", "end-to-end"])
def test_torch_cuda_times_itself_with_cuda_events(path, timing):
    runner = registry.create("torch-cuda", path, batch_sizes=(8,), timing=timing)
    with runner:
        runner.bind(inputs(8))
        samples = [runner.timed_run() for _ in range(5)]
        peak = runner.peak_device_memory_bytes()
    assert runner.timing_mode == timing and runner.clock == "cuda events"
    assert all(0 < s < 10 for s in samples)
    assert peak is not None and peak > 0
