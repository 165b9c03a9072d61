"""Whether an engine can run a model at a precision is one answer (`registry.refusal`), which
the sweep records as a skip and parity reports as a skipped engine, in the same words."""

from __future__ import annotations

from pathlib import Path

from runtimes import registry
from runtimes.models import resolve
from runtimes.parity import parity_of
from runtimes.sweep import Sweep, SweepConfig


def _sweep_reason(model: str, runtime: str, precision: str, tmp_path: Path, cache: Path) -> str:
    config = SweepConfig(
        models=[model],
        runtimes=[runtime],
        precisions=[precision],
        out=tmp_path / "out",
        parity=False,
        model_cache=cache,
    )
    (record,) = Sweep(config).run()
    assert record["status"] == "skipped"
    return str(record["reason"])


def test_a_file_torch_cannot_rebuild_is_refused_in_the_same_words(
    foreign_model: Path, model_cache: Path, tmp_path: Path
) -> None:
    why = registry.refusal("torch", "fp32", resolve(str(foreign_model), cache_dir=model_cache))
    assert why is not None and "foreign.onnx has no graphgen.spec metadata" in why
    assert _sweep_reason(str(foreign_model), "torch", "fp32", tmp_path, model_cache) == why
    result = parity_of(foreign_model, ["torch", "ort-cpu", "openvino"], cache_dir=model_cache)
    (torch,) = [r for r in result.results if r.runtime == "torch"]
    assert (torch.status, torch.reason) == ("skipped", why)


def test_a_precision_the_engine_lacks_is_refused_in_the_same_words(
    model_cache: Path, tmp_path: Path
) -> None:
    why = registry.refusal("onnx-ref", "fp16")
    assert why == "onnx-ref does not support fp16 (it runs fp32)"
    assert _sweep_reason("cifar-resnet20", "onnx-ref", "fp16", tmp_path, model_cache) == why
    result = parity_of("cifar-resnet20", ["onnx-ref", "ort-cpu"], precision="fp16",
                       cache_dir=model_cache)  # fmt: skip
    (ref,) = [r for r in result.results if r.runtime == "onnx-ref"]
    assert (ref.status, ref.reason) == ("skipped", why)


def test_the_precision_list_leaves_out_the_reference_precision() -> None:
    """torch runs fp64 only as the parity reference: no user precision names it."""
    why = registry.refusal("torch", "int8")
    assert why is not None and "fp64" not in why
