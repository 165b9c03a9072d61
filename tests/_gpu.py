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


# A sitecustomize that makes packages look uninstalled in a child Python: site-packages is
# replaced on sys.path by a folder of links to everything in it but the hidden packages, so
# `import` fails and `importlib.util.find_spec` returns None, as for a real absence.
_HIDING_SITE = """
import os, re, site, sys

hidden = "|".join(re.escape(n) for n in os.environ["HIDE_PACKAGES"].split(","))
pattern = re.compile(rf"^({hidden})([-_.].*)?$", re.I)
farm = os.environ["HIDE_FARM"]
os.makedirs(farm, exist_ok=True)
for folder in site.getsitepackages():
    if folder in sys.path and os.path.isdir(folder):
        for name in os.listdir(folder):
            link = os.path.join(farm, name)
            if not pattern.match(name) and not os.path.lexists(link):
                os.symlink(os.path.join(folder, name), link)
        sys.path[sys.path.index(folder)] = farm
"""


def hiding_env(tmp_path: Path, *packages: str) -> dict[str, str]:
    """The environment of a child Python in which `packages` are not installed."""
    import os

    (tmp_path / "hide").mkdir(exist_ok=True)
    (tmp_path / "hide" / "sitecustomize.py").write_text(_HIDING_SITE)
    path = os.environ.get("PYTHONPATH")
    return {
        **os.environ,
        "HIDE_PACKAGES": ",".join(packages),
        "HIDE_FARM": str(tmp_path / f"site-without-{'-'.join(packages)}"),
        "PYTHONPATH": str(tmp_path / "hide") + (os.pathsep + path if path else ""),
    }
