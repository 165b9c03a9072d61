"""What every import shares: check the new graph against its source, then write it atomically.

A source that carries a computation (an ONNX file, or the network a `--arch` names) is run on
seeded inputs and the new graph must agree with it: rel. L2 < 1e-5 (fp32 graphs; 1e-2 fp16). The
first comparison is on onnxruntime; where that misses the limit, the decision is made in float64
(both computations evaluated in double precision), so a correct file is never refused because a
badly conditioned net amplifies float32 rounding. A misread weight or an inexact flavour fails
both: a failed check, never a file. A weights file alone carries no computation: what was checked
is recorded in the written file's metadata (`graphgen.import.checked`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from graphgen.errors import StridePlacementError
from graphgen.inject import STRIDE_HINT, stride_matters
from graphgen.onnx_emit import emit_model
from graphgen.onnx_io import save
from graphgen.plan import Plan, expand, fold_bn
from graphgen.spec import Spec
from graphgen.weights import Weights, fold_weights
from resnet_common.fileio import as_text

REL_L2_LIMIT = {"float32": 1e-5, "float16": 1e-2}
# The input normalisation of MXNet's, torchvision's and the ONNX Model Zoo's ImageNet ResNets,
# on the 0..1 pixel scale, as graphgen.inject records it for trained weights.
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
VERIFY_BATCH, VERIFY_SEED = 2, 0
# What an import checked, in the written file's metadata: `onnx-source`, the `--arch` it was run
# against (`torchvision:resnet50`), `expect:FILE` (stored outputs), or `names-and-shapes` alone.
CHECKED_KEY, CHECK_KEY = "graphgen.import.checked", "graphgen.import.check"
NAMES_AND_SHAPES = "names-and-shapes"
FLOAT_TYPES = (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16, TensorProto.DOUBLE)


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
    options.log_severity_level = 4  # fatal only: a failure is our one line, not its log too
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0]
    dtype = np.float16 if feed.type == "tensor(float16)" else np.float32
    out: np.ndarray = session.run(None, {feed.name: x.astype(dtype)})[0]
    return out.astype(np.float32)


def as_float64(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` that computes in float64: float initializers, Constant nodes, Casts to a
    float type, and every float input, output and value_info become double."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph

    def widen(tensor: onnx.TensorProto) -> None:
        if tensor.data_type in FLOAT_TYPES and tensor.data_type != TensorProto.DOUBLE:
            array = numpy_helper.to_array(tensor).astype(np.float64)
            tensor.CopyFrom(numpy_helper.from_array(array, tensor.name))

    for tensor in g.initializer:
        widen(tensor)
    for node in g.node:
        for attr in node.attribute:
            if node.op_type == "Constant" and attr.type == onnx.AttributeProto.TENSOR:
                widen(attr.t)
            elif node.op_type == "Cast" and attr.name == "to" and attr.i in FLOAT_TYPES:
                attr.i = TensorProto.DOUBLE
    for info in (*g.input, *g.output, *g.value_info):
        if info.type.tensor_type.elem_type in FLOAT_TYPES:
            info.type.tensor_type.elem_type = TensorProto.DOUBLE
    return out


def run_float64(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    """The first output of `model` on `x`, every operation in float64 (onnx.reference: onnx's own
    numpy implementation of the operators; onnxruntime has no float64 Conv on CPU)."""
    from onnx.reference import ReferenceEvaluator

    wide = as_float64(model)
    fed = {t.name for t in wide.graph.initializer}
    name = next(i.name for i in wide.graph.input if i.name not in fed)
    output = wide.graph.output[0].name
    outs = ReferenceEvaluator(wide).run([output], {name: np.asarray(x, np.float64)})
    return np.asarray(outs[0] if isinstance(outs, list) else outs[output], np.float64)


@dataclass(frozen=True)
class Check:
    """One comparison of the new graph with what it came from."""

    against: str  # "resnet50.onnx", "torchvision:resnet50 (torchvision 0.29.1, run in float64)"
    error: float  # the deciding rel. L2
    float32_error: float  # rel. L2 with the new graph on onnxruntime
    float64: bool  # decided in float64 (onnxruntime's float32 missed the limit)

    def __str__(self) -> str:
        if not self.float64:
            return f"{self.error:.2g} against {self.against}"
        return (
            f"{self.error:.2g} against {self.against}, both in float64 (on onnxruntime "
            f"{self.float32_error:.2g}: float32 rounding, which this net amplifies)"
        )


def check(
    model: onnx.ModelProto,
    x: np.ndarray,
    *,
    expected: np.ndarray,
    against: str,
    exact: Callable[[], np.ndarray] | None = None,
    dtype: str = "float32",
) -> Check:
    """Compare the new graph on onnxruntime with `expected` (the source's outputs on `x`); past the
    limit, and where the source can be evaluated in float64 (`exact()`), decide in float64: the new
    graph run by onnx.reference in double precision against `exact()`. A VerifyError when the
    deciding comparison misses REL_L2_LIMIT[dtype]."""
    limit = REL_L2_LIMIT[dtype]
    got = run_onnx(model, x)
    if got.shape != expected.shape:
        raise VerifyError(f"{against}: output shapes differ, {got.shape} != {expected.shape}")
    error = rel_l2(got, expected)
    if np.isfinite(error) and error < limit:
        return Check(against, error, error, float64=False)
    if exact is None:
        raise VerifyError(
            f"{against}: the imported graph disagrees, rel. L2 {error:.3g} >= {limit:g}; "
            "nothing written"
        )
    wide = rel_l2(run_float64(model, x), exact())
    if not (np.isfinite(wide) and wide < limit):
        raise VerifyError(
            f"{against}: the imported graph disagrees, rel. L2 {error:.3g} on onnxruntime and "
            f"{wide:.3g} in float64 (limit {limit:g}); nothing written"
        )
    return Check(against, wide, error, float64=True)


def place_stride(spec: Spec, stride_at: str | None, *, source: str) -> Spec:
    """`spec` striding where `stride_at` says; a StridePlacementError where it matters (a
    bottleneck net with a strided unit) and nobody said, since weights cannot show it."""
    if not stride_matters(spec):
        return spec
    if stride_at is None:
        raise StridePlacementError(
            f"{source}: weights do not show where a bottleneck strides (on its first 1x1 or its "
            f"3x3: the same names and shapes); give --stride-at 1x1 or 3x3 ({STRIDE_HINT}), or "
            "--arch LIBRARY:MODEL to check against the source network"
        )
    return spec.replace(stride_at=stride_at)


def stride_note(spec: Spec, stride_from: str) -> str:
    """ ", stride on 3x3 (--stride-at; the weights do not show it)" for the found line."""
    if not stride_matters(spec):
        return ""
    return f", stride on {spec.stride_at} ({stride_from}; the weights do not show it)"


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
    """The found line, class count and the ImageNet normalisation as the written file's props."""
    meta = {
        "graphgen.imported_from": as_text(Path(source).name),
        "graphgen.import_summary": summary,
        "graphgen.classes": str(spec.classes),
    }
    if spec.stem == "imagenet":
        meta["graphgen.normalize_mean"] = json.dumps(IMAGENET_MEAN)
        meta["graphgen.normalize_std"] = json.dumps(IMAGENET_STD)
    return meta


def write(model: onnx.ModelProto, out: str | Path) -> Path:
    return save(model, out)
