"""How `bench-runtimes parity` judges: an engine that cannot run fails the run, a graph whose
structure is not its spec's fails even where every number agrees, and one wild logit fails the
element-wise bound that relative L2 alone would let through."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from runtimes.cli import main
from runtimes.models import resolve
from runtimes.parity import Tolerance, compare


@pytest.fixture(autouse=True)
def _cache(model_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAPHGEN_CACHE", str(model_cache))


def _edited(model_cache: Path, path: Path, edit: Callable[[onnx.ModelProto], None]) -> Path:
    """CIFAR ResNet-20 as graphgen builds it, edited, saved at `path`."""
    model = onnx.load(resolve("cifar-resnet20", cache_dir=model_cache).path)
    edit(model)
    onnx.save(model, path)
    return path


def _parity(
    path: Path, runtimes: str, capsys: pytest.CaptureFixture[str]
) -> tuple[int, dict[str, Any]]:
    rc = main(["parity", "--models", str(path), "--runtimes", runtimes, "--json"])
    (model,) = json.loads(capsys.readouterr().out)["models"]
    return rc, model


def test_an_engine_that_cannot_run_the_model_fails_the_run(
    model_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """onnxruntime refuses a file whose IR version it does not know; the torch reference and
    onnx.reference run it. The refusal is that engine's error, and an error is never a pass."""

    def future_ir(model: onnx.ModelProto) -> None:
        model.ir_version = 99

    path = _edited(model_cache, tmp_path / "ir99.onnx", future_ir)
    rc, model = _parity(path, "ort-cpu,onnx-ref", capsys)
    status = {r["runtime"]: r["status"] for r in model["results"]}
    assert status == {"ort-cpu": "error", "onnx-ref": "pass"}, model["results"]
    assert "IR version" in model["results"][0]["reason"]
    assert model["structure"] == "ok" and model["reference_error"] is None
    assert rc == 1 and not model["passed"]


def test_a_structure_only_mismatch_fails_every_engine(
    model_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A graph whose Add reads its inputs the other way round computes the same numbers but is
    not what its spec emits: each engine fails on the structure alone."""

    def swap_add_inputs(model: onnx.ModelProto) -> None:
        (add,) = [n for n in model.graph.node if n.name == "layer2.0.add"]
        add.input[0], add.input[1] = add.input[1], add.input[0]

    path = _edited(model_cache, tmp_path / "swapped.onnx", swap_add_inputs)
    rc, model = _parity(path, "ort-cpu,openvino", capsys)
    assert rc == 1 and not model["passed"]
    assert "layer2.0.add" in model["structure"]
    for result in model["results"]:
        assert result["status"] == "fail", result
        assert result["reason"].startswith("structure: "), result
        assert result["metrics"]["rel_l2"] < 1e-4  # the numbers agree: the structure decides


def test_one_wild_logit_fails_the_element_wise_bound() -> None:
    """Relative L2 averages an error away over many logits; max |y - r| <= atol + rtol * max |r|
    does not (runtimes.parity's documented fp32 rule)."""
    reference = np.random.default_rng(0).standard_normal((100, 100))
    output = reference.copy()
    output[7, 3] += 5e-3
    tol = Tolerance(rtol=1e-4, atol=1e-5)
    result = compare(output, reference, tol)
    assert result.metrics.rel_l2 <= tol.rtol  # relative L2 alone would pass it
    assert not result and result.failures[0].startswith("max abs"), result.failures
