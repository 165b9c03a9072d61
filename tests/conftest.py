"""Shared fixtures. Keep it small: one model cache per session, so each graph is built once."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache folder for runtimes.models.resolve, shared by the whole session."""
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="session")
def foreign_model(model_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CIFAR ResNet-20 with graphgen's metadata stripped: an ONNX file graphgen did not make."""
    import onnx

    from runtimes.models import resolve

    model = onnx.load(resolve("cifar-resnet20", cache_dir=model_cache).path)
    del model.metadata_props[:]
    path = tmp_path_factory.mktemp("foreign") / "foreign.onnx"
    onnx.save(model, path)
    return path
