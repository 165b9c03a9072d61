"""Parity across the CPU engines (ort-cpu, torch, openvino, onnx-ref) against torch float64.

Small shapes keep the suite fast: CIFAR nets at 32x32, ImageNet nets at 64x64, batch 2.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from graphgen.spec import Spec, variant
from runtimes.parity import DEFAULT_TOLERANCES, Tolerance, compare, parity_of

CPU_ENGINES = ["ort-cpu", "torch", "openvino", "onnx-ref"]
FP16_ENGINES = ["ort-cpu", "torch", "openvino"]  # onnx-ref is fp32 only
CIFAR20 = variant("cifar-resnet20")
SPECS: dict[str, tuple[Spec, int]] = {
    "cifar20-A": (CIFAR20, 32),
    "cifar20-B": (CIFAR20.replace(shortcut="B"), 32),
    "cifar20-C": (CIFAR20.replace(shortcut="C"), 32),
    "cifar20-plain": (variant("cifar-plain20"), 32),
    "resnet18": (variant("resnet18"), 64),
    "resnet50-1x1": (variant("resnet50"), 64),
    "resnet50-3x3": (variant("resnet50").replace(stride_at="3x3"), 64),
}


def _assert_passed(result) -> None:
    assert result, "\n".join(f"{r.runtime}: {r.status} {r.reason}" for r in result.results)
    assert [r.runtime for r in result.results if r.status == "pass"] == [
        r.runtime for r in result.results
    ]


@pytest.mark.parametrize("key", SPECS)
def test_cpu_engines_agree_fp32(key: str, model_cache: Path) -> None:
    spec, size = SPECS[key]
    result = parity_of(spec, CPU_ENGINES, image_size=size, cache_dir=model_cache)
    _assert_passed(result)
    assert result.reference == "torch (fp64)" and result.structure is None
    for r in result.results:
        assert r.comparison.metrics.rel_l2 < 1e-4 and r.comparison.metrics.top1 == 1.0


@pytest.mark.parametrize("key", ["cifar20-A", "resnet18"])
def test_cpu_engines_agree_fp16(key: str, model_cache: Path) -> None:
    spec, size = SPECS[key]
    result = parity_of(spec, FP16_ENGINES, image_size=size, precision="fp16", cache_dir=model_cache)
    _assert_passed(result)


@pytest.mark.parametrize("key", ["cifar20-A", "cifar20-B"])
def test_folded_graph_agrees_with_engines_and_with_the_unfolded_one(
    key: str, model_cache: Path
) -> None:
    spec, size = SPECS[key]
    folded = parity_of(spec, CPU_ENGINES, image_size=size, fold=True, cache_dir=model_cache)
    _assert_passed(folded)
    assert "BatchNormalization" not in {n.op_type for n in onnx.load(folded.path).graph.node}
    from runtimes import registry
    from runtimes.inputs import feeds

    unfolded = parity_of(spec, ["ort-cpu"], image_size=size, cache_dir=model_cache)
    x = feeds("input", 2, size)
    outs = []
    for path in (folded.path, unfolded.path):
        with registry.create("ort-cpu", path) as runner:
            outs.append(runner.infer(x)["logits"])
    assert compare(outs[0], outs[1], DEFAULT_TOLERANCES["fp32"])


def test_compare_is_truthy_on_pass_and_fails_nan_and_big_errors() -> None:
    ref = np.random.default_rng(0).standard_normal((2, 10))
    tol = Tolerance(rtol=1e-4, atol=1e-5)
    assert compare(ref * (1 + 1e-7), ref, tol)
    bad = ref.copy()
    bad[0, 0] = np.nan
    result = compare(bad, ref, tol)
    assert not result and not result.metrics.finite and "NaN" in result.failures[0]
    assert not compare(ref + 1e-2, ref, tol)
    assert not compare(ref[:, :5], ref, tol)
    assert compare({"logits": ref}, {"out": ref}, precision="fp16").metrics.top5 == 1.0


def test_tolerances_override_per_precision() -> None:
    ref = np.random.default_rng(0).standard_normal((2, 10))
    noisy = ref * (1 + 3e-3)
    assert not compare(noisy, ref, precision="fp32")
    assert compare(noisy, ref, precision="fp16")
    assert compare(noisy, ref, Tolerance(rtol=1e-2, atol=0.0))
