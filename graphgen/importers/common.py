"""What every import shares: verify the new graph on onnxruntime, then write it atomically.

Nothing is written unless the new graph agrees with the reference (rel. L2 < 1e-5 in float32)
on seeded inputs: a misread weight or an inexact flavour is a failed check, never a file.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from graphgen.onnx_emit import emit_model
from graphgen.onnx_io import save
from graphgen.plan import Plan, expand, fold_bn
from graphgen.spec import Spec
from graphgen.weights import Weights, fold_weights

REL_L2_LIMIT = {"float32": 1e-5, "float16": 1e-2}
# The input normalisation of MXNet's, torchvision's and the ONNX Model Zoo's ImageNet ResNets,
# on the 0..1 pixel scale, as graphgen.inject records it for trained weights.
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
VERIFY_BATCH, VERIFY_SEED = 2, 0


class VerifyError(Exception):
    """The imported graph disagrees with its source: a failed check (exit code 1)."""


@dataclass(frozen=True)
class Options:
    fold: bool = False
    dtype: str = "float32"
    io_dtype: str = "float32"
    opset: int = 17
    batch: int | None = None


def rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    """||a - b|| / ||b|| in float64."""
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a64 - b64)) / max(float(np.linalg.norm(b64)), 1e-30)


def seeded_input(spec: Spec, batch: int = VERIFY_BATCH, seed: int = VERIFY_SEED) -> np.ndarray:
    rng = np.random.default_rng(seed)
    s = spec.image_size
    return rng.standard_normal((batch, 3, s, s), dtype=np.float32)


def run_onnx(model: onnx.ModelProto | bytes | str, x: np.ndarray) -> np.ndarray:
    """The first output of `model` on `x` (cast to the input's dtype) on onnxruntime's CPU."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0]
    dtype = np.float16 if feed.type == "tensor(float16)" else np.float32
    out: np.ndarray = session.run(None, {feed.name: x.astype(dtype)})[0]
    return out.astype(np.float32)


def emit_imported(
    spec: Spec, weights: Weights, options: Options, metadata: dict[str, str]
) -> tuple[Plan, onnx.ModelProto]:
    """The graphgen graph for imported (unfolded) weights, folded and cast as asked.

    `weights` is consumed (emptied), so each array lives once while the graph is built."""
    plan = expand(spec)
    if options.fold:
        folded = fold_weights(plan, weights)
        weights.clear()
        weights = folded
        plan = fold_bn(plan)
    model = emit_model(
        plan,
        weights,
        batch=options.batch,
        dtype=options.dtype,
        io_dtype=options.io_dtype,
        opset=options.opset,
        metadata=metadata,
    )
    return plan, model


def import_metadata(spec: Spec, source: str, summary: str) -> dict[str, str]:
    meta = {
        "graphgen.imported_from": Path(source).name,
        "graphgen.import_summary": summary,
        "graphgen.classes": str(spec.classes),
    }
    if spec.stem == "imagenet":
        meta["graphgen.normalize_mean"] = json.dumps(IMAGENET_MEAN)
        meta["graphgen.normalize_std"] = json.dumps(IMAGENET_STD)
    return meta


def verify(
    model: onnx.ModelProto,
    reference: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    *,
    dtype: str,
    what: str,
) -> float:
    """rel. L2 of the new graph against `reference(x)`; a VerifyError past the limit."""
    expected = reference(x)
    got = run_onnx(model, x)
    if got.shape != expected.shape:
        raise VerifyError(f"{what}: output shapes differ, {got.shape} != {expected.shape}")
    error = rel_l2(got, expected)
    if not np.isfinite(error) or error >= REL_L2_LIMIT[dtype]:
        raise VerifyError(
            f"{what}: the imported graph disagrees, rel. L2 {error:.3g} >= {REL_L2_LIMIT[dtype]:g}; "
            "nothing written"
        )
    return error


def write(model: onnx.ModelProto, out: str | Path) -> Path:
    return save(model, out)
