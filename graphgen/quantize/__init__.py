"""INT8: QDQ graphs from the plan, calibrated with the numpy forward pass (no torch, no onnxruntime).

A graphgen file is read back into its plan and weights (BN folded first: a quantized conv must
carry its BN), activation ranges are observed by `forward_nhwc` on calibration images, and the
fp32 graph is emitted again from the plan with QuantizeLinear/DequantizeLinear pairs inserted at
the tensors the plan names. The scheme is what TensorRT's explicit quantization accepts and what
onnxruntime and OpenVINO run with integer kernels:

- weights: int8, symmetric, one scale per output channel (axis 0), zero point 0, in [-127, 127];
  stored as int8 initializers under their torchvision names, each read through a DequantizeLinear;
- activations: one scale per tensor, zero point 0 (TensorRT requires zero points of 0): int8,
  amax / 127; in the ort placement, tensors that are non-negative by construction (ReLU outputs,
  and a conv output whose one reader is a ReLU) are uint8, amax / 255. amax is the maximum or a
  percentile of |x| over the calibration images;
- biases stay float32 (TensorRT's DequantizeLinear takes no int32; onnxruntime quantizes a
  float bias itself when it fuses a QLinearConv); input and output stay float32.

One job a module: `options` (what a user chooses), `calibration_data` (images from seeds, a
.npy or a folder), `placement` (where the Q/DQ pairs go: `trt` or `ort`), `ranges` (amax per
tensor), `qdq` (the writer), `api` (`quantize`, the file's provenance). The structure check of
a QDQ graph is graphgen's one structure diff (`graphgen.structure`).

Measured in `tests/test_quantize.py` and docs/int8.md.
"""

from graphgen.quantize.api import PROP, SCHEMES, check_source, digest, folded, quantize
from graphgen.quantize.calibration_data import (
    DEFAULT_CALIBRATION_IMAGES,
    Calibration,
    load_calibration,
    normalisation,
    seeded_calibration,
)
from graphgen.quantize.options import (
    DEFAULT_METHOD,
    DEFAULT_PERCENTILE,
    DEFAULT_PLACEMENT,
    METHODS,
    PLACEMENTS,
    QMAX,
    QuantOptions,
)
from graphgen.quantize.placement import Placement, placement_for
from graphgen.quantize.qdq import insert_qdq, quantize_weight
from graphgen.quantize.ranges import CALIBRATION_BATCH, Ranges, calibrate

__all__ = [
    "CALIBRATION_BATCH",
    "DEFAULT_CALIBRATION_IMAGES",
    "DEFAULT_METHOD",
    "DEFAULT_PERCENTILE",
    "DEFAULT_PLACEMENT",
    "METHODS",
    "PLACEMENTS",
    "PROP",
    "QMAX",
    "SCHEMES",
    "Calibration",
    "Placement",
    "QuantOptions",
    "Ranges",
    "calibrate",
    "check_source",
    "digest",
    "folded",
    "insert_qdq",
    "load_calibration",
    "normalisation",
    "placement_for",
    "quantize",
    "quantize_weight",
    "seeded_calibration",
]
