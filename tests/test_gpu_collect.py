"""`pytest -m gpu` on a GPU machine without OpenVINO or torch (or TensorRT, onnxruntime-gpu):
every test module must import, so that collection does not stop and the GPU tests run. Checked
in a child pytest in which those packages look uninstalled (tests._gpu.hiding_env)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests._gpu import hiding_env

ROOT = Path(__file__).resolve().parents[1]
ENGINES = ("openvino", "torch", "tensorrt")


def collect_gpu_tests(env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "gpu"]
        + ["-p", "no:cacheprovider", "tests"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def node_ids(result: subprocess.CompletedProcess[str]) -> set[str]:
    return {line for line in result.stdout.splitlines() if line.startswith("tests/")}


def test_gpu_tests_are_collected_without_openvino_and_torch(tmp_path):
    everything = collect_gpu_tests()
    assert everything.returncode == 0, everything.stdout[-3000:]
    without = collect_gpu_tests(hiding_env(tmp_path, *ENGINES))
    assert without.returncode == 0, without.stdout[-3000:]
    assert "error" not in without.stdout.splitlines()[-1].lower()
    expected = node_ids(everything)
    assert len(expected) >= 20  # trt, ort-cuda, ort-trt, torch-cuda, int8
    assert node_ids(without) == expected


def test_openvino_runner_describes_itself_without_openvino(tmp_path):
    code = (
        "from runtimes.engines.openvino_cpu import OpenVinoRunner\n"
        "info = OpenVinoRunner('m.onnx').describe()\n"
        "print(info['runtime'], info['version'], info['unavailable'], sep='|')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=hiding_env(tmp_path, "openvino"),
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip().startswith("openvino|None|openvino not installed (pip install")


def test_openvino_runner_describes_its_version_where_installed():
    pytest.importorskip("openvino")
    from runtimes.engines.openvino_cpu import OpenVinoRunner

    info = OpenVinoRunner("m.onnx").describe()
    assert info["version"].startswith("openvino ") and "unavailable" not in info
