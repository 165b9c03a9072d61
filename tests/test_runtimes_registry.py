"""The engine registry: every name known, lazy imports, reasons for what cannot run here."""

from __future__ import annotations

import subprocess
import sys

import pytest

from runtimes import registry
from runtimes.base import Runner

NAMES = ("ort-cpu", "ort-cuda", "ort-trt", "trt", "torch", "torch-compile", "openvino", "onnx-ref")
CPU_ENGINES = ("ort-cpu", "torch", "openvino", "onnx-ref")


def test_every_engine_is_registered() -> None:
    assert set(NAMES) <= set(registry.names())


def test_importing_runtimes_imports_no_engine() -> None:
    code = (
        "import sys, runtimes, runtimes.registry, runtimes.parity, runtimes.models;"
        "print([m for m in ('onnxruntime', 'openvino', 'torch', 'tensorrt') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_unknown_runtime_lists_the_known_ones() -> None:
    with pytest.raises(registry.UnknownRuntimeError, match="known runtimes are ort-cpu"):
        registry.availability("tensorflow")


def test_duplicate_registration_is_an_error() -> None:
    with pytest.raises(ValueError, match="already registered"):
        registry.register("ort-cpu", "runtimes.engines.ort_cpu:OrtCpuRunner")


@pytest.mark.parametrize("name", CPU_ENGINES)
def test_cpu_engines_run_here(name: str) -> None:
    assert registry.availability(name) is None
    assert issubclass(registry.runner_class(name), Runner)


@pytest.mark.parametrize("name", NAMES)
def test_engines_listing_gives_a_reason_for_each_unusable_engine(name: str) -> None:
    (info,) = [i for i in registry.engines() if i.name == name]
    assert info.available == (info.reason is None)
    assert info.available or info.reason


@pytest.mark.parametrize("name", ("ort-cuda", "ort-trt", "trt"))
def test_unavailable_gpu_engine_refuses_with_its_reason(name: str) -> None:
    reason = registry.availability(name)
    if reason is None:
        pytest.skip(f"{name} is usable here")
    with pytest.raises(registry.UnavailableError, match="not available here"):
        registry.create(name, "model.onnx")


@pytest.mark.gpu
def test_ort_cuda_is_usable_on_a_gpu_machine() -> None:
    reason = registry.availability("ort-cuda")
    if reason is not None:
        pytest.skip(reason)
    assert registry.runner_class("ort-cuda").device == "cuda"
