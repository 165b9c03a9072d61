"""Each CPU runner's lifecycle on a real engine, what it records, and what it refuses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from graphgen.errors import GraphError
from runtimes import registry
from runtimes.base import UnsupportedError
from runtimes.engines.onnx_ref import OnnxRefRunner
from runtimes.inputs import IMAGENET_MEAN, IMAGENET_STD, feeds, image_batch
from runtimes.models import resolve

CPU_ENGINES = ("ort-cpu", "torch", "openvino", "onnx-ref")


@pytest.fixture(scope="module")
def resnet20(model_cache: Path) -> Path:
    return resolve("cifar-resnet20", cache_dir=model_cache).path


def test_inputs_are_seeded_and_imagenet_normalised() -> None:
    a, b = image_batch(2, 8, seed=3), image_batch(2, 8, seed=3)
    assert a.dtype == np.float32 and a.shape == (2, 3, 8, 8)
    assert np.array_equal(a, b) and not np.array_equal(a, image_batch(2, 8, seed=4))
    lo, hi = -IMAGENET_MEAN / IMAGENET_STD, (1 - IMAGENET_MEAN) / IMAGENET_STD
    assert (a >= lo[:, None, None] - 1e-6).all() and (a <= hi[:, None, None] + 1e-6).all()


@pytest.mark.parametrize("name", CPU_ENGINES)
def test_runner_lifecycle_and_description(name: str, resnet20: Path) -> None:
    runner = registry.create(name, resnet20, batch_sizes=(2,), threads=1)
    with runner:
        out = runner.infer(feeds("input", 2, 32))
        info = runner.describe()
        runner.bind(feeds("input", 2, 32))
        assert runner.timed_run() > 0
    assert not runner.is_active and runner.load_time_s is not None
    (logits,) = out.values()
    assert logits.shape == (2, 10) and logits.dtype == np.float32
    assert info["runtime"] == name and info["precision"] == "fp32" and info["version"]


def test_ort_records_provider_and_session_options(resnet20: Path) -> None:
    with registry.create("ort-cpu", resnet20, threads=1) as runner:
        info = runner.describe()
    assert info["provider"] == "CPUExecutionProvider"
    assert info["graph_optimization_level"] == "ORT_ENABLE_ALL"
    assert info["intra_op_threads"] == 1 and info["version"].startswith("onnxruntime ")


def test_openvino_pins_fp32_inference(resnet20: Path) -> None:
    with registry.create("openvino", resnet20) as runner:
        assert "32" in runner.describe()["inference_precision"]


def test_torch_runners_put_the_thread_count_back_in_any_release_order(resnet20: Path) -> None:
    """torch's thread count is process-wide: runners set theirs while active, and the last one
    released (here the last loaded is released last, as an interleaved sweep does) restores
    what was there, so a sweep leaves the process as it found it."""
    import torch

    before = torch.get_num_threads()
    asked = 1 if before != 1 else 2
    first = registry.create("torch", resnet20, threads=asked)
    second = registry.create("torch", resnet20, threads=asked)
    first.activate()
    second.activate()
    assert torch.get_num_threads() == asked
    assert second.describe()["threads"] == asked
    first.deactivate()
    assert torch.get_num_threads() == asked  # the second is still running
    second.deactivate()
    assert torch.get_num_threads() == before


def test_unsupported_precision_is_refused_with_the_supported_ones(resnet20: Path) -> None:
    with pytest.raises(UnsupportedError, match="onnx-ref does not support precision 'fp16'"):
        registry.create("onnx-ref", resnet20, precision="fp16")


def test_onnx_ref_refuses_big_models(model_cache: Path) -> None:
    big = resolve("cifar-resnet110", cache_dir=model_cache)  # 0.25 GMACs per image
    runner = OnnxRefRunner(big.path, macs=big.macs, batch_sizes=(8,))
    with pytest.raises(UnsupportedError, match="MMAC limit"):
        runner.activate()


def test_torch_cannot_rebuild_a_foreign_file(foreign_model: Path) -> None:
    with pytest.raises(GraphError, match="torch cannot rebuild .*not made by graphgen"):
        registry.create("torch", foreign_model).activate()
    for name in ("ort-cpu", "openvino"):
        with registry.create(name, foreign_model) as runner:
            assert runner.infer(feeds("input", 1, 32))["logits"].shape == (1, 10)


def test_torch_runs_fp16_and_fp64(resnet20: Path) -> None:
    x = feeds("input", 2, 32)
    with registry.create("torch", resnet20, precision="fp64") as runner:
        ref = runner.infer(x)["logits"]
    with registry.create("torch", resnet20, precision="fp16") as runner:
        half = runner.infer(x)["logits"]
    assert ref.dtype == np.float64 and half.dtype == np.float32
    assert np.linalg.norm(half - ref) / np.linalg.norm(ref) < 2e-2


def test_ort_sessions_never_fall_back_silently(resnet20: Path) -> None:
    """onnxruntime's run() retries a failing provider on the CPU and prints to stdout unless
    fallback is disabled; every OrtRunner session disables it."""
    with registry.create("ort-cpu", resnet20) as runner:
        assert runner.session._enable_fallback is False  # onnxruntime's own flag
        runner.verify()  # the CPU provider is what was asked for


@pytest.mark.parametrize(("name", "handle"), [("ort-cpu", "session"), ("torch", "model")])
def test_a_failed_activation_frees_what_it_made(
    name: str, handle: str, foreign_model: Path, tmp_path: Path
) -> None:
    """activate() that fails partway calls deactivate_impl (which tolerates partial state),
    then re-raises; the runner stays inactive and can be deactivated again."""
    from tests.test_bench_sweep import unloadable_model

    path = unloadable_model(tmp_path / "broken.onnx") if name == "ort-cpu" else foreign_model
    runner = registry.create(name, path)
    with pytest.raises(Exception, match="NoSuchOp|cannot rebuild"):
        runner.activate()
    assert not runner.is_active
    assert getattr(runner, handle) is None  # deactivate_impl ran on the partial state
    runner.deactivate()
