"""The facts every reader takes from an ONNX file (its opset, its fixed batch), read one way."""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import helper

from graphgen.onnx_emit import DEFAULT_OPSET
from graphgen.onnx_io import fixed_batch, opset_of
from runtimes.models import resolve
from runtimes.parity import structure_check
from tests._graphs import built


def test_the_opset_is_the_default_domains_when_a_custom_domain_comes_first(
    model_cache: Path, tmp_path: Path
) -> None:
    """A file whose first opset import is a custom domain: the structure check re-emits it at
    its ai.onnx opset (it read opset_import[0], version 1 here, and failed)."""
    model = onnx.load(resolve("cifar-resnet20", cache_dir=model_cache).path)
    imports = [helper.make_opsetid("com.example", 1), *model.opset_import]
    del model.opset_import[:]
    model.opset_import.extend(imports)
    path = tmp_path / "custom-domain-first.onnx"
    onnx.save(model, path)
    assert opset_of(model) == DEFAULT_OPSET
    assert structure_check(path) is None


def test_no_default_domain_has_no_opset() -> None:
    model = helper.make_model(
        helper.make_graph([], "empty", [], []), opset_imports=[helper.make_opsetid("x", 3)]
    )
    assert opset_of(model) is None


def test_fixed_batch_is_the_first_inputs_batch_or_none() -> None:
    assert fixed_batch(built("cifar-resnet20")) is None
    assert fixed_batch(built("cifar-resnet20", batch=4)) == 4
