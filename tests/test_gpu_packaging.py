"""The GPU extras are coherent sets: read off the wheels (docs/gpu.md, "Packaging"),
onnxruntime-gpu 1.31 is built for CUDA 13.0 and its TensorRT provider links libnvinfer.so.10."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomllib

requirements = pytest.importorskip("packaging.requirements")

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
ORT_GPU_CUDA = {"1.31": 13}  # onnxruntime-gpu minor -> its CUDA major (build_and_package_info)
ORT_GPU_TENSORRT = {"1.31": 10}  # -> the TensorRT major its provider links (libnvinfer.so.N)


def extra(name: str) -> dict[str, requirements.Requirement]:
    doc = tomllib.loads(PYPROJECT.read_text())
    reqs = [requirements.Requirement(r) for r in doc["project"]["optional-dependencies"][name]]
    return {r.name: r for r in reqs}


def allowed(req: requirements.Requirement, versions: list[str]) -> list[str]:
    return [v for v in versions if req.specifier.contains(v, prereleases=False)]


def test_the_gpu_extra_pins_one_onnxruntime_gpu_and_its_tensorrt_major():
    gpu = extra("gpu")
    assert "tensorrt" not in gpu  # the metapackage picks its own major (11 today)
    ort = gpu["onnxruntime-gpu"]
    released = ["1.30.0", "1.31.0", "1.31.1", "1.32.0"]
    # Each onnxruntime-gpu minor the extra allows must be one whose majors are in the tables.
    assert allowed(ort, released) == ["1.31.0", "1.31.1"]
    cuda, trt = ORT_GPU_CUDA["1.31"], ORT_GPU_TENSORRT["1.31"]
    tensorrt = gpu[f"tensorrt-cu{cuda}"]
    same_major = [f"{trt}.13.2.6", f"{trt}.16.1.11"]
    assert allowed(tensorrt, same_major) == same_major
    assert allowed(tensorrt, [f"{trt + 1}.0.0.114", f"{trt - 1}.3.0"]) == []
    assert allowed(gpu["cuda-python"], [f"{cuda - 1}.9.0", f"{cuda}.4.4", f"{cuda + 1}.0.0"]) == [
        f"{cuda}.4.4"
    ]


def test_the_tensorrt_11_extra_has_no_onnxruntime_gpu():
    trt11 = extra("gpu-trt11")
    assert "onnxruntime-gpu" not in trt11 and "tensorrt" not in trt11
    assert allowed(trt11["tensorrt-cu13"], ["10.16.1.11", "11.4.0.106"]) == ["11.4.0.106"]
    assert allowed(trt11["cuda-python"], ["12.9.0", "13.4.4"]) == ["13.4.4"]
