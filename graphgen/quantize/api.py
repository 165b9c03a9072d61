"""`quantize`: a graphgen float32 file into its QDQ int8 graph, with the file's provenance."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto

from graphgen.inject import check_finite, check_weights
from graphgen.onnx_emit import DEFAULT_OPSET, emit_model
from graphgen.onnx_io import fixed_batch, metadata, opset_of, plan_of, weights_of
from graphgen.plan import Plan, expand, fold_bn
from graphgen.quantize.calibration_data import Calibration, seeded_calibration
from graphgen.quantize.options import QuantOptions
from graphgen.quantize.placement import kept_float
from graphgen.quantize.qdq import insert_qdq
from graphgen.quantize.ranges import calibrate
from graphgen.quantize.verify import check_outputs, check_ranges, check_scales
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


# Ops that only a quantized graph has: what makes a graph int8, whatever its metadata says.
QUANTIZED_OPS = {
    "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearConv",
    "QLinearMatMul", "ConvInteger", "MatMulInteger", "QLinearAdd",
}  # fmt: skip


def check_source(model: onnx.ModelProto, source: str) -> None:
    meta = metadata(model)
    dtype = meta.get("graphgen.dtype", "float32")
    if dtype == "int8":
        raise UserError(f"{source} is already an int8 graph; quantize its float32 source")
    # The nodes and weights decide, not the tag: an int8 file whose tag was edited to float32
    # would be quantized again, its int8 weights read as floats (outputs off by 1e20).
    found = sorted({n.op_type for n in model.graph.node if n.op_type in QUANTIZED_OPS})
    if found:
        raise UserError(
            f"{source} is already quantized (it has {', '.join(found)} nodes, whatever its "
            "graphgen.dtype says); quantize its float32 source"
        )
    for t in model.graph.initializer:
        if t.data_type != TensorProto.FLOAT:
            kind = TensorProto.DataType.Name(t.data_type).lower()
            raise UserError(
                f"{source}: weight {t.name!r} is {kind}, not float32: quantize takes a float32 "
                "graph (an int8 file whose dtype tag was edited?)"
            )
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
    plan = plan_of(model, source=source)
    # the weights must be the plan's (names, shapes) and finite: NaN weights calibrate to NaN
    with np.errstate(over="ignore", invalid="ignore"):  # folding may overflow: refused next
        plan, weights = folded(plan, check_weights(plan, weights_of(model), source=source))
    check_finite(weights, source=f"{source} (BN folded into the convs)")
    calibration = calibration or seeded_calibration(model, plan, seed=seed)
    if calibration.images.shape[1:] != (plan.spec.image_size, plan.spec.image_size, 3):
        raise UserError(
            f"calibration images are {calibration.images.shape[1:3]}, the graph takes "
            f"{plan.spec.image_size}x{plan.spec.image_size}"
        )
    with np.errstate(over="ignore", invalid="ignore"):  # overflow shows as Inf amax, refused
        amax = calibrate(plan, weights, calibration.images, options=options)
    check_ranges(amax, source=source)
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
    float_ops = kept_float(plan)
    if float_ops is not None:
        props[f"{PROP}.kept_float"] = float_ops
    fp32 = emit_model(plan, dict(weights), batch=batch, opset=opset, metadata=props)
    reference = fp32.SerializeToString()  # insert_qdq rewrites the graph in place
    int8 = insert_qdq(fp32, plan, amax, options=options)
    check_scales(int8, source=source)
    check_outputs(reference, int8, calibration.images, source=source)
    return int8
