"""Resolving model arguments into built files: cache, precision, image size, foreign files."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from graphgen.spec import variant
from resnet_common.errors import UserError
from runtimes.models import resolve


def test_variant_is_built_once_into_the_cache(model_cache: Path) -> None:
    first = resolve("cifar-resnet20", cache_dir=model_cache)
    stamp = first.path.stat().st_mtime_ns
    again = resolve("cifar-resnet20", cache_dir=model_cache)
    assert again.path == first.path and again.path.stat().st_mtime_ns == stamp
    assert first.path.parent == model_cache
    assert first.name == "cifar-resnet20" and first.plan is not None
    assert first.macs == first.plan.macs


def test_fp16_is_a_float16_graph_with_float32_io(model_cache: Path) -> None:
    model = onnx.load(resolve("cifar-resnet20", precision="fp16", cache_dir=model_cache).path)
    assert {t.data_type for t in model.graph.initializer} == {onnx.TensorProto.FLOAT16}
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def test_image_size_changes_the_spec_not_the_name(model_cache: Path) -> None:
    resolved = resolve("resnet18", image_size=64, cache_dir=model_cache)
    assert resolved.name == "resnet18" and resolved.image_size == 64
    assert resolved.plan.spec.image_size == 64


def test_an_image_size_the_model_cannot_take_is_a_user_error(model_cache: Path) -> None:
    with pytest.raises(UserError, match="resnet18 cannot take image size 16"):
        resolve("resnet18", image_size=16, cache_dir=model_cache)


def test_a_spec_and_a_graphgen_path_resolve(model_cache: Path) -> None:
    spec = variant("cifar-resnet20").replace(shortcut="B")
    built = resolve(spec, cache_dir=model_cache)
    assert built.plan.spec.shortcut == "B"
    again = resolve(built.path, cache_dir=model_cache)
    assert again.path == built.path and again.plan == built.plan and again.name == str(built.path)


def test_a_graphgen_path_is_run_as_it_is_never_rebuilt(model_cache: Path) -> None:
    # A rebuilt copy would hide a tampered file: another precision, size or folding is refused.
    fp32 = resolve("cifar-resnet20", cache_dir=model_cache)
    assert resolve(fp32.path, cache_dir=model_cache).path == fp32.path
    with pytest.raises(UserError, match="pass --precision fp32"):
        resolve(fp32.path, precision="fp16", cache_dir=model_cache)
    with pytest.raises(UserError, match="takes 32x32 images, not 64"):
        resolve(fp32.path, image_size=64, cache_dir=model_cache)
    with pytest.raises(UserError, match="not BN-folded"):
        resolve(fp32.path, fold=True, cache_dir=model_cache)


def test_missing_file_and_unknown_name_are_user_errors(model_cache: Path) -> None:
    with pytest.raises(UserError, match="no such file"):
        resolve("nowhere/model.onnx", cache_dir=model_cache)
    with pytest.raises(UserError, match="unknown model 'resnet19'"):
        resolve("resnet19", cache_dir=model_cache)


def test_a_foreign_file_runs_as_it_is(foreign_model: Path, model_cache: Path) -> None:
    resolved = resolve(foreign_model, cache_dir=model_cache)
    assert resolved.plan is None and resolved.path == foreign_model
    assert resolved.image_size == 32 and resolved.macs and resolved.macs > 0
    with pytest.raises(UserError, match="takes 32x32 images"):
        resolve(foreign_model, image_size=64, cache_dir=model_cache)
    with pytest.raises(UserError, match="cannot convert"):
        resolve(foreign_model, precision="fp16", cache_dir=model_cache)


def test_a_cached_model_with_external_data_keeps_its_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """graphgen names external data by content hash; the cache moves it in before the model."""
    model_cache = tmp_path / "cache"  # its own: the shared one may hold the model already
    monkeypatch.setattr("graphgen.onnx_io.EXTERNAL_DATA_THRESHOLD", 1000)
    path = resolve("cifar-resnet20", cache_dir=model_cache).path
    data = [p.name for p in model_cache.iterdir() if p.name.endswith(".data")]
    assert len(data) == 1 and data[0].startswith(path.name), data
    onnx.checker.check_model(str(path), full_check=True)
    model = onnx.load(str(path), load_external_data=False)
    assert model.graph.initializer[0].data_location == onnx.TensorProto.EXTERNAL
