"""`quantize`: a graphgen float32 file into its QDQ int8 graph, with the file's provenance."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import onnx
from onnx import TensorProto

from graphgen.onnx_emit import DEFAULT_OPSET, emit_model
from graphgen.onnx_io import fixed_batch, metadata, opset_of, plan_of, weights_of
from graphgen.plan import Plan, expand, fold_bn
from graphgen.quantize.calibration_data import Calibration, seeded_calibration
from graphgen.quantize.options import QuantOptions
from graphgen.quantize.qdq import insert_qdq
from graphgen.quantize.ranges import calibrate
from graphgen.weights import Weights, fold_weights
from resnet_common.errors import UserError

SCHEMES = {
    "trt": "QDQ int8: weights symmetric per output channel (axis 0); activations int8 per "
    "tensor; zero points 0; float32 biases and I/O",
    "ort": "QDQ int8: weights symmetric per output channel (axis 0); activations per tensor, "
    "uint8 after a ReLU and int8 elsewhere; zero points 0; float32 biases and I/O",
}
PROP = "graphgen.quant"  # metadata_props key prefix


def folded(plan: Plan, weights: Weights) -> tuple[Plan, Weights]:
    """BN folded into the convs (a no-op on a folded file): int8 convs carry their BN."""
    if plan.folded:
        return plan, weights
    base = expand(plan.spec)
    return fold_bn(base), fold_weights(base, weights)


def check_source(model: onnx.ModelProto, source: str) -> None:
    meta = metadata(model)
    dtype = meta.get("graphgen.dtype", "float32")
    if dtype == "int8":
        raise UserError(f"{source} is already an int8 graph; quantize its float32 source")
    if dtype != "float32":
        raise UserError(
            f"{source} is a {dtype} graph; quantize the float32 graph (graphgen build without "
            "--dtype), whose weights int8 is calibrated from"
        )
    elem = model.graph.input[0].type.tensor_type.elem_type
    if elem != TensorProto.FLOAT:
        raise UserError(f"{source}: quantize takes float32 I/O graphs")


def digest(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def quantize(
    model: onnx.ModelProto,
    calibration: Calibration | None = None,
    *,
    options: QuantOptions | None = None,
    source: str = "model",
    source_digest: str | None = None,
    seed: int = 0,
) -> onnx.ModelProto:
    """The QDQ int8 graph of a graphgen float32 file (BN folded, its own weights), calibrated on
    `calibration` (default: seeded images). The file's batch, opset and provenance are kept."""
    options = options or QuantOptions()
    check_source(model, source)
    plan, weights = folded(plan_of(model, source=source), weights_of(model))
    calibration = calibration or seeded_calibration(model, plan, seed=seed)
    if calibration.images.shape[1:] != (plan.spec.image_size, plan.spec.image_size, 3):
        raise UserError(
            f"calibration images are {calibration.images.shape[1:3]}, the graph takes "
            f"{plan.spec.image_size}x{plan.spec.image_size}"
        )
    amax = calibrate(plan, weights, calibration.images, options=options)
    batch, opset = fixed_batch(model), opset_of(model) or DEFAULT_OPSET
    props = metadata(model)
    props.update(
        {
            "graphgen.fold_bn": "true",
            "graphgen.dtype": "int8",
            f"{PROP}.scheme": SCHEMES[options.placement],
            f"{PROP}.placement": options.placement,
            f"{PROP}.method": options.method_label,
            f"{PROP}.calibration": json.dumps(calibration.source, sort_keys=True),
            f"{PROP}.source": json.dumps(
                {"file": Path(source).name, "sha256": source_digest}, sort_keys=True
            ),
        }
    )
    fp32 = emit_model(plan, dict(weights), batch=batch, opset=opset, metadata=props)
    return insert_qdq(fp32, plan, amax, options=options)
