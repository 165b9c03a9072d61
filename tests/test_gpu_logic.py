"""The GPU path's pure logic, which needs no GPU: batch profiles, cache keys, the engine cache's
refusal of stale or corrupt entries, option formats, the TensorRT 10/11 precision routes, and
onnxruntime fallback detection with the real (CPU) onnxruntime. No engine is faked here; what
needs TensorRT or a CUDA device is in tests/test_gpu_trt.py and tests/test_gpu_ort.py."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from graphgen.onnx_io import build, save
from graphgen.spec import variant
from runtimes.base import RunnerError, UnsupportedError
from runtimes.engines.ort import OrtRunner
from runtimes.engines.ort_cuda import OrtCudaRunner
from runtimes.engines.ort_trt import profile_option
from runtimes.engines.trt import TensorRTRunner
from runtimes.engines.trt_profiles import (
    BatchProfile,
    EngineCache,
    ProfileError,
    batch_profile,
    cache_key,
)


@pytest.mark.parametrize(
    ("batches", "expected"),
    [((1,), (1, 1, 1)), ((1, 32), (1, 32, 32)), ((8, 1, 32, 8), (1, 32, 32)), ((4,), (4, 4, 4))],
)
def test_profile_spans_the_requested_batches(batches, expected):
    p = batch_profile(batches)
    assert (p.min, p.opt, p.max) == expected


def test_profile_opt_can_be_chosen_inside_the_range():
    assert batch_profile((1, 8, 32), opt=8) == BatchProfile(1, 8, 32)
    with pytest.raises(UnsupportedError, match="opt batch 64"):
        batch_profile((1, 32), opt=64)


@pytest.mark.parametrize("batches", [(), (0,), (-1, 4)])
def test_profile_rejects_non_positive_batches(batches):
    with pytest.raises(UnsupportedError, match="positive"):
        batch_profile(batches)


def test_fixed_batch_graph_admits_only_its_batch():
    assert batch_profile((8,), fixed_batch=8) == BatchProfile(8, 8, 8)
    with pytest.raises(ProfileError, match="fixed batch of 8"):
        batch_profile((1, 8), fixed_batch=8)


def test_batch_outside_profile_is_a_clear_error():
    p = BatchProfile(1, 8, 8)
    p.check(1)
    p.check(8)
    with pytest.raises(ProfileError) as err:
        p.check(32)
    assert "batch 32 is outside the engine's optimization profile [min 1, opt 8, max 8]" in str(
        err.value
    )


def test_profile_shapes_replace_only_the_batch():
    assert BatchProfile(1, 4, 8).shapes((-1, 3, 224, 224)) == (
        (1, 3, 224, 224),
        (4, 3, 224, 224),
        (8, 3, 224, 224),
    )
    with pytest.raises(UnsupportedError, match="dynamic dimension"):
        BatchProfile(1, 1, 1).shapes((-1, 3, -1, -1))


def _key(**change):
    parts = dict(
        model_digest="m" * 64,
        engine_version="10.9.0",
        gpu_name="NVIDIA H100",
        compute_capability="9.0",
        options={"precision": "fp32", "tf32": False, "profile": {"min": 1, "opt": 1, "max": 1}},
    )
    parts.update(change)
    return cache_key(**parts)


def test_cache_key_is_stable_and_ignores_option_order():
    assert _key() == _key()
    reordered = {"profile": {"max": 1, "opt": 1, "min": 1}, "tf32": False, "precision": "fp32"}
    assert _key(options=reordered) == _key()


@pytest.mark.parametrize(
    "change",
    [
        {"model_digest": "n" * 64},
        {"engine_version": "11.1.0"},
        {"gpu_name": "NVIDIA A100"},
        {"compute_capability": "8.0"},
        {
            "options": {
                "precision": "fp16",
                "tf32": False,
                "profile": {"min": 1, "opt": 1, "max": 1},
            }
        },
        {"options": {"precision": "fp32", "tf32": True, "profile": {"min": 1, "opt": 1, "max": 1}}},
    ],
)
def test_cache_key_changes_with_every_component(change):
    assert _key(**change) != _key()


def test_engine_cache_round_trip(tmp_path):
    cache = EngineCache(tmp_path)
    assert cache.load("k") == (None, "miss")
    cache.store("k", b"plan-bytes", {"tensorrt": "10.9"})
    assert cache.load("k") == (b"plan-bytes", "hit")


def test_engine_cache_rejects_a_truncated_plan(tmp_path):
    cache = EngineCache(tmp_path)
    cache.store("k", b"plan-bytes", {})
    plan_path, meta_path = cache.paths("k")
    plan_path.write_bytes(b"plan-by")
    plan, status = cache.load("k")
    assert plan is None and status == "corrupt: checksum mismatch"
    assert not plan_path.exists() and not meta_path.exists()  # removed: it will be rebuilt


def test_engine_cache_rejects_same_size_corruption(tmp_path):
    cache = EngineCache(tmp_path)
    cache.store("k", b"plan-bytes", {})
    cache.paths("k")[0].write_bytes(b"PLAN-bytes")
    assert cache.load("k") == (None, "corrupt: checksum mismatch")


def test_engine_cache_rejects_a_missing_or_foreign_sidecar(tmp_path):
    cache = EngineCache(tmp_path)
    cache.store("k", b"plan", {})
    cache.paths("k")[1].unlink()
    assert cache.load("k")[1].startswith("corrupt")
    cache.store("k", b"plan", {})
    cache.paths("k")[1].write_text('{"key": "other", "size": 4}')
    assert cache.load("k") == (None, "corrupt: sidecar key mismatch")
    cache.store("k", b"plan", {})
    cache.paths("k")[1].write_text("{not json")
    assert cache.load("k")[1].startswith("corrupt")


def test_trt_provider_shape_syntax():
    assert profile_option("input", (32, 3, 224, 224)) == "input:32x3x224x224"


def test_tensorrt_precision_routes(tmp_path):
    fp16 = TensorRTRunner(tmp_path / "m.onnx", precision="fp16").options
    assert fp16.precision_path(11) == (
        "strongly typed, precision from the graph (TensorRT 11)",
        True,
    )
    assert fp16.precision_path(10)[1] is True  # TRT 10 default: the same strongly typed route
    flag = TensorRTRunner(tmp_path / "m.onnx", precision="fp16", fp16_flag=True).options
    assert flag.precision_path(10) == ("weakly typed, BuilderFlag.FP16 (TensorRT 10)", False)
    with pytest.raises(UnsupportedError, match="TensorRT 11 removed BuilderFlag.FP16"):
        flag.precision_path(11)
    with pytest.raises(UnsupportedError, match="fp16_flag only applies to precision fp16"):
        TensorRTRunner(tmp_path / "m.onnx", precision="fp32", fp16_flag=True)


def test_timing_mode_is_checked(tmp_path):
    with pytest.raises(UnsupportedError, match="timing must be one of device, end-to-end"):
        TensorRTRunner(tmp_path / "m.onnx", timing="wall")


@pytest.mark.skipif(
    importlib.util.find_spec("tensorrt") is not None, reason="tensorrt is installed here"
)
def test_trt_says_why_it_is_unavailable():
    assert TensorRTRunner.availability() == "tensorrt not installed"


@pytest.fixture(scope="module")
def small_graph(tmp_path_factory):
    path = tmp_path_factory.mktemp("g") / "resnet20.onnx"
    save(build(variant("cifar-resnet20")), path)
    return path


@pytest.mark.skipif(
    importlib.util.find_spec("onnxruntime") is None, reason="onnxruntime not installed"
)
@pytest.mark.filterwarnings("ignore:Specified provider")
def test_cpu_fallback_is_detected_with_the_real_onnxruntime(small_graph):
    """On a CPU-only onnxruntime, asking for the CUDA provider must fail loudly, never run on
    the CPU and pass. This runs the real session creation path of ort-cuda's base class."""
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider; tests/test_gpu_ort.py covers it")
    runner = OrtCudaRunner(small_graph)
    assert OrtCudaRunner.availability() == "onnxruntime built without CUDAExecutionProvider"
    # OrtCudaRunner.activate_impl would stop earlier at availability(); call the session
    # creation and provider check it inherits, which is what a broken CUDA install reaches.
    with pytest.raises(RunnerError, match="fallback to CPU|fell back") as err:
        OrtRunner.activate_impl(runner)
    assert "ort-cuda" in str(err.value)


@pytest.mark.skipif(
    importlib.util.find_spec("onnxruntime") is None, reason="onnxruntime not installed"
)
def test_preload_dlls_messages_stay_off_stdout(small_graph, monkeypatch, capsys):
    """onnxruntime.preload_dlls reports missing libraries with print(); stdout must stay clean
    for `parity --json`, so the runner sends those lines to stderr."""
    import onnxruntime as ort

    monkeypatch.setattr(
        ort, "preload_dlls", lambda: print("Failed to load libcudnn.so.9"), raising=False
    )
    runner = OrtCudaRunner(small_graph)
    runner._preload_libraries()
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "libcudnn" in captured.err
    assert runner._facts["preload_dlls"] == "ok"


SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu-check.sh"


def test_gpu_check_script_parses():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


def _script_function(name: str) -> str:
    text = SCRIPT.read_text()
    start = text.index(f"{name}() {{")
    return text[start : text.index("\n}\n", start) + 3]


@pytest.mark.skipif(
    importlib.util.find_spec("onnxruntime") is None, reason="onnxruntime not installed"
)
def test_gpu_check_reads_the_onnxruntime_build():
    """The script's probe of onnxruntime's CUDA and TensorRT majors, on the installed
    onnxruntime: two integers (0 0 for the CPU build, which links neither)."""
    probe = _script_function("ort_build") + "ort_build\n"
    out = subprocess.run(
        ["bash", "-c", probe],
        env={**os.environ, "PY": sys.executable},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert len(out) == 2 and all(x.isdigit() for x in out)
