"""The GPU path's pure logic, which needs no GPU: batch profiles, cache keys, the engine cache's
refusal of stale or corrupt entries, option formats, the TensorRT 10/11 precision routes, and
onnxruntime fallback detection with the real (CPU) onnxruntime. No engine is faked here; what
needs TensorRT or a CUDA device is in tests/test_gpu_trt.py and tests/test_gpu_ort.py."""

from __future__ import annotations

import importlib.util

import pytest

from graphgen.onnx_io import build, save
from graphgen.spec import variant
from runtimes.base import RunnerError, UnsupportedError
from runtimes.engines import cuda_util
from runtimes.engines.ort import OrtRunner
from runtimes.engines.ort_cuda import OrtCudaRunner
from runtimes.engines.ort_trt import OrtTrtRunner, profile_option
from runtimes.engines.trt import TensorRTRunner
from runtimes.engines.trt_profiles import (
    BatchProfile,
    EngineCache,
    ProfileError,
    batch_profile,
    cache_key,
    layer_precisions,
    library_version,
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


needs_ort = pytest.mark.skipif(
    importlib.util.find_spec("onnxruntime") is None, reason="onnxruntime not installed"
)


@needs_ort
@pytest.mark.filterwarnings("ignore:Specified provider")
def test_a_missing_provider_fails_with_its_real_reason_and_a_clean_stdout(small_graph, capfd):
    """On a CPU-only onnxruntime, asking for the CUDA provider must fail loudly, never run on
    the CPU and pass, and say why: this onnxruntime has no CUDA provider (onnxruntime's own
    error is about the CPU fallback it was told not to use). This runs the real session
    creation path of ort-cuda's base class."""
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider; tests/test_gpu_ort.py covers it")
    runner = OrtCudaRunner(small_graph)
    assert OrtCudaRunner.availability() == "onnxruntime built without CUDAExecutionProvider"
    # OrtCudaRunner.activate_impl would stop earlier at availability(); call the session
    # creation and provider check it inherits, which is what a broken CUDA install reaches.
    with pytest.raises(RunnerError) as err:
        OrtRunner.activate_impl(runner)
    message = str(err.value)
    assert message.startswith(f"ort-cuda: cannot load {small_graph}: onnxruntime built without ")
    assert "fallback to CPU EP has been explicitly disabled" in message  # onnxruntime's words
    assert capfd.readouterr().out == ""


class _UnknownProviderRunner(OrtRunner):
    """The real onnxruntime asked for a provider no build of it has."""

    name = "ort-unknown"
    provider = "NoSuchExecutionProvider"


@needs_ort
@pytest.mark.filterwarnings("ignore:Specified provider")
def test_onnxruntime_does_not_fall_back_on_its_own(small_graph, capfd):
    """onnxruntime's constructor fallback (enable_fallback, on by default) prints an "EP Error"
    block to stdout, retries on the CPU and reports the retry's "Conflicting session
    configuration" instead of the cause. With it off: nothing on stdout, the real error."""
    runner = _UnknownProviderRunner(small_graph)
    with pytest.raises(RunnerError) as err:
        runner.activate()
    message = str(err.value)
    assert "Unknown Provider Type: NoSuchExecutionProvider" in message
    assert "Conflicting session configuration" not in message
    captured = capfd.readouterr()
    assert captured.out == "" and "EP Error" not in captured.err
    assert not runner.is_active


@needs_ort
def test_provider_library_problems_are_named():
    import onnxruntime as ort

    from runtimes.engines.ort import provider_library_problem

    assert provider_library_problem("CPUExecutionProvider") is None
    problem = provider_library_problem("CUDAExecutionProvider")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        assert problem == (
            f"onnxruntime {ort.__version__} has no libonnxruntime_providers_cuda.so "
            "(not a GPU build)"
        )


@needs_ort
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


# -- cuda-python's "insufficient driver" --------------------------------------------------------
@pytest.mark.parametrize(
    ("driver", "expected"),
    [
        (0, "no NVIDIA driver found: cuda-python 13.4.4 (a CUDA 13.4 runtime) needs one "
            "(cudaErrorInsufficientDriver)"),
        (12080, "the NVIDIA driver supports CUDA 12.8, older than cuda-python 13.4.4 (a CUDA "
                "13.4 runtime) needs: install cuda-python for CUDA 12 (pip install "
                "'cuda-python>=12,<13') or update the driver (cudaErrorInsufficientDriver)"),
    ],
)  # fmt: skip
def test_insufficient_driver_is_not_called_no_device(driver, expected):
    """cuda-python 13 answers cudaGetDeviceCount with cudaErrorInsufficientDriver (35) both with
    no driver and with a CUDA 12 driver; neither is "no CUDA device"."""
    message = cuda_util.device_count_problem(
        "cudaErrorInsufficientDriver",
        text="CUDA driver version is insufficient for CUDA runtime version",
        driver_version=driver,
        runtime_version=13040,
        bindings="13.4.4",
    )
    assert message == expected


def test_no_device_and_other_cuda_errors_keep_their_words():
    assert cuda_util.device_count_problem(
        "cudaErrorNoDevice", text="no CUDA-capable device", driver_version=13000,
        runtime_version=13000, bindings="13.0.0",
    ) == "no CUDA device: the driver found none (cudaErrorNoDevice)"  # fmt: skip
    assert cuda_util.device_count_problem(
        "cudaErrorDevicesUnavailable", text="all CUDA-capable devices are busy",
        driver_version=13000, runtime_version=13000, bindings="13.0.0",
    ) == "CUDA cannot be used: all CUDA-capable devices are busy (cudaErrorDevicesUnavailable)"  # fmt: skip


def test_availability_with_the_real_cuda_python():
    """The real bindings on this machine: without a driver, the reason says so."""
    pytest.importorskip("cuda.bindings.runtime")
    rt = cuda_util.cudart()
    err, driver = rt.cudaDriverGetVersion()
    reason = cuda_util.availability()
    if err == rt.cudaError_t.cudaSuccess and driver == 0:
        assert reason is not None and reason.startswith("no NVIDIA driver found: cuda-python ")
        assert "(cudaErrorInsufficientDriver)" in reason
    elif reason is None:
        assert cuda_util.device_info(0)["name"]
    else:
        assert "no CUDA device" not in reason or "cudaErrorNoDevice" in reason


# -- ort-trt: the TensorRT the provider loads, and what precision ran --------------------------
@pytest.mark.parametrize(
    ("value", "major", "expected"),
    [(101601, 10, "10.16.1"), (110400, 11, "11.4.0"), (8601, 8, "8.6.1"), (123, 10, None)],
)
def test_tensorrt_library_versions_are_decoded_by_their_soname_major(value, major, expected):
    version = library_version(value, major)
    if expected is None:
        assert version == "10.? (getInferLibVersion 123)"
    else:
        assert version == expected


def test_layer_precisions_from_the_engine_inspector():
    names_only = {"Layers": ["conv1 + relu", "fc"], "Bindings": ["input", "logits"]}
    assert layer_precisions(names_only) is None  # LAYER_NAMES_ONLY: nothing to tell
    detailed = {
        "Layers": [
            {"Name": "in", "Outputs": [{"Format/Datatype": "Row major linear FP16 format"}]},
            {"Name": "conv", "Outputs": [{"Format/Datatype": "Half"}]},
            {"Name": "fc", "Outputs": [{"Format/Datatype": "Float"}]},
            {
                "Name": "q",
                "Outputs": [
                    {"Format/Datatype": "Thirty-two wide channel vectorized row major Int8 format."}
                ],
            },  # fmt: skip
            {"Name": "b", "Outputs": [{"Format/Datatype": "BFloat16"}]},
            {"Name": "shape", "LayerType": "Shape"},
        ]
    }
    assert layer_precisions(detailed) == {"fp16": 2, "fp32": 1, "int8": 1, "bf16": 1, "other": 1}


@needs_ort
def test_the_tensorrt_provider_libraries_come_from_the_provider():
    import onnxruntime as ort

    from runtimes.engines.ort_trt import load_provider_tensorrt, provider_tensorrt_libraries

    libraries = provider_tensorrt_libraries()
    if "TensorrtExecutionProvider" in ort.get_available_providers():
        assert any(lib.startswith("libnvinfer.so.") for lib in libraries)
        return
    assert libraries == ()
    with pytest.raises(RunnerError, match="this onnxruntime has no TensorRT provider library"):
        load_provider_tensorrt()


@pytest.mark.parametrize(
    ("precision", "library", "route"),
    [
        ("fp16", "10.16.1", "weakly typed, trt_fp16_enable: fp16 or fp32 per layer (TensorRT 10)"),
        ("fp32", "10.16.1", "weakly typed, fp32 (TensorRT 10; trt_fp16_enable off)"),
        ("int8", "10.16.1", "explicit quantization from the graph's Q/DQ, trt_int8_enable "
                            "(TensorRT 10)"),
        ("fp16", "11.4.0", "strongly typed, precision from the graph (TensorRT 11)"),
    ],
)  # fmt: skip
def test_ort_trt_precision_routes_follow_the_loaded_tensorrt(tmp_path, precision, library, route):
    """The provider has no strongly typed switch: on TensorRT 10 fp16 needs trt_fp16_enable
    (without it a float16 graph runs fp32 kernels); the route is chosen by the TensorRT the
    provider loads, not by an installed wheel."""
    runner = OrtTrtRunner(tmp_path / "m.onnx", precision=precision)
    runner._facts["tensorrt"] = library
    assert runner._precision_path() == route


def test_ort_trt_refuses_fp16_flag_on_tensorrt_11(tmp_path):
    runner = OrtTrtRunner(tmp_path / "m.onnx", precision="fp16", fp16_flag=True)
    runner._facts["tensorrt"] = "11.4.0"
    with pytest.raises(UnsupportedError, match="needs TensorRT 10"):
        runner._precision_path()


# -- device memory of interleaved GPU runners ---------------------------------------------------
def test_memory_meter_stops_when_another_engine_loads():
    """Device-wide readings: a runner's peak must not grow by what an engine loaded after it
    holds (an interleaved group loads all its engines, then times them together)."""
    used = [1000]
    first = cuda_util.MemoryMeter(lambda: used[0], what="device-wide")
    used[0] = 1600
    first.sample()
    assert first.peak == 600 and first.alone
    second = cuda_util.MemoryMeter(lambda: used[0], what="device-wide")
    used[0] = 5000  # the second engine's weights and buffers
    first.sample()
    second.sample()
    assert first.peak == 600 and not first.alone
    assert second.peak == 3400 and second.alone
    assert "sampling stopped when another engine of this process loaded" in first.scope
    assert second.scope == "device-wide, above what was in use when this runner started loading"


def test_torch_memory_meters_stop_only_for_another_torch_runner():
    """torch's allocator counters see torch tensors only: a TensorRT or onnxruntime engine
    loading after a torch-cuda runner does not move them, another torch-cuda runner does; a
    device-wide meter stops for either."""
    allocated, used = [0], [1000]
    torch_runner = cuda_util.MemoryMeter(lambda: allocated[0], what="torch", domain="torch")
    allocated[0], used[0] = 700, 1800
    device_runner = cuda_util.MemoryMeter(lambda: used[0], what="device-wide")
    used[0] = 2500
    torch_runner.sample()
    device_runner.sample()
    assert torch_runner.alone and torch_runner.peak == 700
    assert device_runner.peak == 700
    cuda_util.MemoryMeter(lambda: allocated[0], what="torch", domain="torch")  # torch-cuda 2
    allocated[0], used[0] = 1500, 4000
    torch_runner.sample()
    device_runner.sample()
    assert not torch_runner.alone and torch_runner.peak == 700
    assert not device_runner.alone and device_runner.peak == 700
