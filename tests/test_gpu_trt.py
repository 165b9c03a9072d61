"""The native TensorRT runner on a real GPU: engine build, cache reuse and rebuild, the dynamic
batch profile, fp16 parity, device timing. Skipped, with the reason, where TensorRT, cuda-python
or a CUDA device is missing."""

from __future__ import annotations

import numpy as np
import pytest

from runtimes.engines.trt import TensorRTRunner
from runtimes.engines.trt_profiles import ProfileError
from tests._gpu import graph, inputs, reference, rel_l2

_REASON = TensorRTRunner.availability()
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(_REASON is not None, reason=f"trt unavailable: {_REASON}"),
]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return str(tmp_path_factory.mktemp("graphs"))


def test_engine_builds_runs_and_matches_onnxruntime_fp32(models, tmp_path):
    path = graph(models)
    feeds = inputs(2)
    with TensorRTRunner(path, batch_sizes=(2,), cache_dir=tmp_path) as runner:
        out = runner.infer(feeds)["logits"]
        info = runner.describe()
    assert info["engine_cache"] == "built" and info["build_time_s"] > 0
    assert info["tf32"] is False and "strongly typed" in info["precision_path"]
    assert out.shape == (2, 1000) and np.isfinite(out).all()
    assert rel_l2(out, reference(path, feeds)) < 1e-4  # TF32 off: fp32 kernels throughout


def test_second_load_reuses_the_cached_engine(models, tmp_path):
    path = graph(models)
    with TensorRTRunner(path, batch_sizes=(1,), cache_dir=tmp_path) as first:
        first_out = first.infer(inputs(1))["logits"]
    with TensorRTRunner(path, batch_sizes=(1,), cache_dir=tmp_path) as second:
        assert second.describe()["engine_cache"] == "hit"
        assert second.describe()["build_time_s"] is None  # nothing was built
        np.testing.assert_array_equal(second.infer(inputs(1))["logits"], first_out)


def test_a_corrupt_cached_engine_is_rebuilt(models, tmp_path):
    path = graph(models)
    with TensorRTRunner(path, batch_sizes=(1,), cache_dir=tmp_path) as runner:
        key = runner.describe()["cache_key"]
    plan = tmp_path / f"{key}.engine"
    plan.write_bytes(plan.read_bytes()[: plan.stat().st_size // 2])
    with TensorRTRunner(path, batch_sizes=(1,), cache_dir=tmp_path) as runner:
        assert runner.describe()["engine_cache"] == "rebuilt (corrupt: checksum mismatch)"
        assert np.isfinite(runner.infer(inputs(1))["logits"]).all()


def test_dynamic_batch_inside_and_outside_the_profile(models, tmp_path):
    path = graph(models)
    with TensorRTRunner(path, batch_sizes=(1, 8), cache_dir=tmp_path) as runner:
        assert runner.describe()["profile"] == {"min": 1, "opt": 8, "max": 8}
        for batch in (1, 5, 8):
            feeds = inputs(batch)
            out = runner.infer(feeds)["logits"]
            assert out.shape == (batch, 1000)
            assert rel_l2(out, reference(path, feeds)) < 1e-4
        with pytest.raises(ProfileError, match="batch 9 is outside"):
            runner.infer(inputs(9))


def test_fp16_graph_parity(models, tmp_path):
    feeds = inputs(4)
    ref = reference(graph(models), feeds)
    with TensorRTRunner(
        graph(models, dtype="float16"), precision="fp16", batch_sizes=(4,), cache_dir=tmp_path
    ) as runner:
        out = runner.infer(feeds)["logits"]
    assert out.dtype == np.float32  # float32 I/O around the float16 graph
    assert rel_l2(out, ref) < 1e-2
    assert (out.argmax(1) == ref.argmax(1)).mean() >= 0.75


@pytest.mark.parametrize("timing", ["device", "end-to-end"])
def test_timed_run_reports_device_time(models, tmp_path, timing):
    with TensorRTRunner(
        graph(models), batch_sizes=(4,), cache_dir=tmp_path, timing=timing
    ) as runner:
        runner.bind(inputs(4))
        samples = [runner.timed_run() for _ in range(10)]
        assert runner.peak_device_memory_bytes() > 0  # the engine's own buffers at least
        assert runner.describe()["timing"] == timing
    assert all(0 < s < 1 for s in samples)
