"""Shared by the GPU tests: graphs small enough to build engines in seconds, seeded inputs, and
the fp32 reference from onnxruntime's CPU provider."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np

from graphgen.onnx_io import build, save
from graphgen.spec import variant

IMAGE_SIZE = 64


@cache
def graph(folder: str, name: str = "resnet18", dtype: str = "float32") -> Path:
    spec = variant(name).replace(image_size=IMAGE_SIZE, name=name)
    path = Path(folder) / f"{name}-{IMAGE_SIZE}px-{dtype}.onnx"
    if not path.exists():
        save(build(spec, dtype=dtype), path)
    return path


def inputs(batch: int, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    return {"input": x}


def reference(path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


def rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    return float(np.linalg.norm(a64 - b64) / np.linalg.norm(b64))
