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

Placement (where the Q/DQ pairs go), decided per op of the plan:

- `trt`: TensorRT's rules for explicit quantization ("Working with Quantized Types", and the
  ModelOpt ONNX quantizer's residual-Add handling): quantize the inputs of every Conv and Gemm,
  and the residual (shortcut) input of each Add, never its conv-branch input, so that TensorRT
  fuses conv + bias + add + ReLU into one int8 kernel with the next Q in its epilogue.
- `ort` (the default): the same, plus a Q/DQ pair on every conv's output, which onnxruntime
  needs to fuse DQ -> Conv -> Q into a QLinearConv (with inputs only it runs fp32 convs on
  dequantized weights), and on the output of an Add no ReLU follows. Where a ReLU follows a
  conv, its output pair takes the ReLU output's scale in uint8 with zero point 0, so the Q
  itself clamps at 0: the pair adds no error and onnxruntime drops the ReLU. An Add followed by
  a ReLU is left to the ReLU's Q, which onnxruntime folds into a QLinearAdd.

Measured in `tests/test_quantize.py` and docs/int8.md.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from graphgen.errors import GraphError
from graphgen.numpy_forward import forward_nhwc
from graphgen.onnx_emit import emit_model
from graphgen.onnx_io import metadata, plan_of, weights_of
from graphgen.plan import INPUT, Add, Conv, Linear, MaxPool, Op, Plan, Relu, expand, fold_bn
from graphgen.weights import Weights, fold_weights
from resnet_common.errors import UserError

METHODS = ("percentile", "max")
DEFAULT_METHOD = "percentile"
DEFAULT_PERCENTILE = 99.99
PLACEMENTS = ("ort", "trt")
DEFAULT_PLACEMENT = "ort"
DEFAULT_CALIBRATION_IMAGES = 32
CALIBRATION_BATCH = 8
SCHEMES = {
    "trt": "QDQ int8: weights symmetric per output channel (axis 0); activations int8 per "
    "tensor; zero points 0; float32 biases and I/O",
    "ort": "QDQ int8: weights symmetric per output channel (axis 0); activations per tensor, "
    "uint8 after a ReLU and int8 elsewhere; zero points 0; float32 biases and I/O",
}
QMAX = 127
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PROP = "graphgen.quant"  # metadata_props key prefix


@dataclass(frozen=True)
class Calibration:
    """NHWC float32 images as the graph's input takes them (normalised), and where they came
    from, for the metadata."""

    images: np.ndarray
    source: dict[str, object]


@dataclass(frozen=True)
class QuantOptions:
    method: str = DEFAULT_METHOD
    percentile: float = DEFAULT_PERCENTILE
    placement: str = DEFAULT_PLACEMENT
    reduce_range: bool = False  # 7-bit weights in [-63, 63]: see `weight_qmax`

    @property
    def weight_qmax(self) -> int:
        """127, or 63 with `reduce_range`: x86 CPUs without VNNI multiply u8 x s8 pairs into
        saturating int16 sums (vpmaddubsw), which 8-bit weights overflow (255 * 127 * 2 >
        32767); onnxruntime's own quantizer offers the same 7-bit option for them."""
        return 63 if self.reduce_range else QMAX

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise UserError(f"unknown calibration method {self.method!r}; choose {METHODS}")
        if not 50.0 < self.percentile <= 100.0:
            raise UserError(f"--percentile must be in (50, 100], got {self.percentile:g}")
        if self.placement not in PLACEMENTS:
            raise UserError(f"unknown placement {self.placement!r}; choose {PLACEMENTS}")

    @property
    def method_label(self) -> str:
        return f"percentile {self.percentile:g}" if self.method == "percentile" else "max"


# -- calibration data -------------------------------------------------------------------------


def normalisation(model: onnx.ModelProto) -> tuple[np.ndarray, np.ndarray]:
    """The input normalisation the graph was trained with (its metadata), else ImageNet's."""
    meta = metadata(model)
    try:
        mean = json.loads(meta["graphgen.normalize_mean"])
        std = json.loads(meta["graphgen.normalize_std"])
    except (KeyError, json.JSONDecodeError):
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    return np.asarray(mean, np.float32), np.asarray(std, np.float32)


def seeded_calibration(
    model: onnx.ModelProto, plan: Plan, *, count: int = DEFAULT_CALIBRATION_IMAGES, seed: int = 0
) -> Calibration:
    """Uniform pixels in [0, 1), normalised as the graph expects: the distribution
    `bench-runtimes` feeds, from another seed stream than its inputs."""
    mean, std = normalisation(model)
    s = plan.spec.image_size
    rng = np.random.default_rng([seed, 8])
    pixels = rng.random((count, s, s, 3), dtype=np.float32)
    images = ((pixels - mean) / std).astype(np.float32)
    return Calibration(images, {"source": "seeded uniform pixels", "seed": seed, "images": count})


def load_calibration(
    path: str | Path, model: onnx.ModelProto, plan: Plan, *, count: int | None = None
) -> Calibration:
    """Images from a .npy file or a folder of image files.

    A .npy holds N images, NCHW or NHWC at the graph's size: uint8 pixels (normalised with the
    graph's normalisation) or floats already normalised as the graph's input. A folder's images
    (any format Pillow reads) are resized (shorter side) and centre-cropped to the graph's size.
    `count` keeps the first N (all by default).
    """
    path = Path(path)
    s = plan.spec.image_size
    mean, std = normalisation(model)
    if path.is_dir():
        images = _read_folder(path, s, count)
        data = (images.astype(np.float32) / 255.0 - mean) / std
    elif path.is_file() and path.suffix.lower() == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as err:
            raise UserError(f"--calibration-data {path}: not a readable .npy ({err})") from None
        data = _from_array(array, path, s, mean, std)
    elif path.exists():
        raise UserError(f"--calibration-data {path}: give a folder of images or a .npy file")
    else:
        raise UserError(f"--calibration-data {path}: no such file or folder")
    if count is not None:
        data = data[:count]
    if not len(data):
        raise UserError(f"--calibration-data {path}: no images")
    digest = hashlib.sha256(np.ascontiguousarray(data).tobytes()).hexdigest()[:16]
    source = {"source": str(path), "images": int(len(data)), "sha256": digest}
    return Calibration(np.ascontiguousarray(data, np.float32), source)


def _from_array(
    array: np.ndarray, path: Path, s: int, mean: np.ndarray, std: np.ndarray
) -> np.ndarray:
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4 or not (array.shape[1:] == (3, s, s) or array.shape[1:] == (s, s, 3)):
        raise UserError(
            f"--calibration-data {path}: shape {array.shape}; expected N images of "
            f"3x{s}x{s} (NCHW) or {s}x{s}x3 (NHWC)"
        )
    if array.shape[1:] == (3, s, s) and array.shape[-1] != 3:
        array = array.transpose(0, 2, 3, 1)
    if array.dtype == np.uint8:
        pixels: np.ndarray = ((array.astype(np.float32) / 255.0 - mean) / std).astype(np.float32)
        return pixels
    if not np.issubdtype(array.dtype, np.floating):
        raise UserError(f"--calibration-data {path}: dtype {array.dtype}; use uint8 or float")
    if not np.isfinite(array).all():
        raise UserError(f"--calibration-data {path}: holds NaN or Inf")
    return array.astype(np.float32)


def _read_folder(folder: Path, s: int, count: int | None) -> np.ndarray:
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise UserError(
            "reading an image folder needs Pillow (pip install pillow), or pass a .npy"
        ) from None
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    out: list[np.ndarray] = []
    for file in files:
        if count is not None and len(out) >= count:
            break
        try:
            with Image.open(file) as image:
                rgb = image.convert("RGB")
        except (UnidentifiedImageError, OSError):
            continue  # not an image: folders hold labels and notes too
        w, h = rgb.size
        scale = s / min(w, h)
        rgb = rgb.resize((max(s, round(w * scale)), max(s, round(h * scale))))
        left, top = (rgb.size[0] - s) // 2, (rgb.size[1] - s) // 2
        out.append(np.asarray(rgb.crop((left, top, left + s, top + s)), np.uint8))
    if not out:
        raise UserError(f"--calibration-data {folder}: no readable images in the folder")
    return np.stack(out)


# -- the plan: what is quantized --------------------------------------------------------------


@dataclass(frozen=True)
class Placement:
    """Which tensors carry a Q/DQ pair: `inputs` (tensor -> the ops whose input reads it through
    DQ), `outputs` (conv outputs quantized where they are made, ort only) and the scale each
    output pair borrows (the following ReLU's)."""

    inputs: dict[str, list[tuple[str, int]]]  # tensor -> [(op name, input index)]
    outputs: list[str]
    scale_of: dict[str, str]  # quantized tensor -> tensor whose range sets its scale
    unsigned: set[str] = dataclasses.field(default_factory=set)  # uint8, zero point 0 (ort)

    def observed(self) -> set[str]:
        return {*self.inputs, *self.outputs, *self.scale_of.values()}


def placement_for(plan: Plan, placement: str) -> Placement:
    inputs: dict[str, list[tuple[str, int]]] = {}
    outputs: list[str] = []
    scale_of: dict[str, str] = {}
    relu_of = {op.x: op.out for op in plan.ops if isinstance(op, Relu)}
    readers: dict[str, int] = {}
    for op in plan.ops:
        for attr in ("x", "a", "b"):
            name = getattr(op, attr, None)
            if name is not None:
                readers[name] = readers.get(name, 0) + 1
    # Non-negative tensors: ReLU outputs and max-pools of them. In the ort placement they are
    # uint8 with zero point 0 (scale amax / 255: one more bit than int8), and so is a conv
    # output whose one reader is a ReLU: its Q then clamps at 0, the ReLU after its DQ is a
    # no-op, and onnxruntime drops the ReLU and the DQ -> Q between two QLinearConvs.
    positive = {op.out for op in plan.ops if isinstance(op, Relu)}
    positive |= {op.out for op in plan.ops if isinstance(op, MaxPool) and op.x in positive}
    unsigned: set[str] = set()
    for op in plan.ops:
        if isinstance(op, Conv | Linear):
            inputs.setdefault(op.x, []).append((op.name, 0))
        elif isinstance(op, Add):
            inputs.setdefault(op.b, []).append((op.name, 1))
        # An Add followed by a ReLU is left to the ReLU's (uint8, zero point 0) Q: onnxruntime
        # folds ReLU -> Q into the Q and then fuses DQ, DQ -> Add -> Q into a QLinearAdd; a Q of
        # its own on the Add's output left a DQ -> Q pair behind every block.
        add_relu = isinstance(op, Add) and op.out in relu_of
        if isinstance(op, Conv | Add) and placement == "ort" and not add_relu:
            outputs.append(op.out)
            scale_of[op.out] = relu_of.get(op.out, op.out)
            if op.out in relu_of and readers.get(op.out) == 1:
                unsigned.add(op.out)
    for name in inputs:
        scale_of.setdefault(name, name)
        if placement == "ort" and name in positive:
            unsigned.add(name)
    return Placement(inputs, outputs, scale_of, unsigned)


# -- calibration ------------------------------------------------------------------------------


class _Ranges:
    """amax per tensor: the running max of |x|, or an exact percentile of |x| over every
    calibration value (the top-k largest are kept per tensor, k = the percentile's tail)."""

    def __init__(self, names: set[str], options: QuantOptions, images: int) -> None:
        self.names = names
        self.options = options
        self.images = images
        self.max: dict[str, float] = {}
        self.top: dict[str, np.ndarray] = {}
        self.tail: dict[str, int] = {}

    def add(self, name: str, x: np.ndarray) -> None:
        if name not in self.names:
            return
        a = np.abs(x).ravel()
        self.max[name] = max(self.max.get(name, 0.0), float(a.max(initial=0.0)))
        if self.options.method != "percentile":
            return
        if name not in self.tail:
            per_image = a.size // max(x.shape[0], 1)
            total = per_image * self.images
            self.tail[name] = max(1, math.ceil(total * (100.0 - self.options.percentile) / 100))
        k = self.tail[name]
        kept = a if a.size <= k else np.partition(a, a.size - k)[a.size - k :]
        held = np.concatenate([self.top.get(name, np.empty(0, np.float32)), kept])
        if held.size > k:
            held = np.partition(held, held.size - k)[held.size - k :]
        self.top[name] = held

    def amax(self, name: str) -> float:
        if self.options.method == "percentile" and name in self.top:
            value = float(self.top[name].min())  # the k-th largest |x|
        else:
            value = self.max.get(name, 0.0)
        return value if value > 0 else 1.0  # an all-zero tensor: any scale is exact


def calibrate(
    plan: Plan,
    weights: Weights,
    images: np.ndarray,
    *,
    options: QuantOptions,
    batch: int = CALIBRATION_BATCH,
) -> dict[str, float]:
    """amax of every tensor the placement quantizes, from `forward_nhwc`'s observer."""
    place = placement_for(plan, options.placement)
    ranges = _Ranges(place.observed(), options, len(images))

    def observe(op: Op, out: np.ndarray) -> None:
        ranges.add(op.out, out)

    for start in range(0, len(images), batch):
        chunk = images[start : start + batch]
        ranges.add(INPUT, chunk)
        forward_nhwc(plan, weights, chunk, head=True, observe=observe)
    return {name: ranges.amax(source) for name, source in place.scale_of.items()}


# -- emission ---------------------------------------------------------------------------------


def quantize_weight(w: np.ndarray, qmax: int = QMAX) -> tuple[np.ndarray, np.ndarray]:
    """Per-output-channel symmetric int8: (q in [-qmax, qmax], scale per channel)."""
    flat = np.abs(w.reshape(w.shape[0], -1)).max(axis=1)
    scale = np.where(flat > 0, flat / qmax, 1.0).astype(np.float32)
    shape = (-1,) + (1,) * (w.ndim - 1)
    q = np.clip(np.rint(w / scale.reshape(shape)), -qmax, qmax).astype(np.int8)
    return q, scale


class _QdqWriter:
    def __init__(self, weight_qmax: int = QMAX, *, dedicated: bool = False) -> None:
        self.weight_qmax = weight_qmax
        self.dedicated = dedicated
        self.unsigned: set[str] = set()
        self.amax: dict[str, float] = {}
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[TensorProto] = []
        self.readers: dict[str, int] = {}

    def const(self, name: str, array: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def quantize(self, tensor: str, amax: float, *, suffix: str = "") -> None:
        """A QuantizeLinear of `tensor`: int8 (scale amax / 127) or, for `unsigned` tensors,
        uint8 (scale amax / 255); zero point 0 either way."""
        unsigned = tensor in self.unsigned
        step = amax / (255 if unsigned else QMAX)
        scale = self.const(f"{tensor}.scale{suffix}", np.array(step, np.float32))
        zero = self.const(
            f"{tensor}.zero_point{suffix}", np.array(0, np.uint8 if unsigned else np.int8)
        )
        self.nodes.append(
            helper.make_node(
                "QuantizeLinear",
                [tensor, scale, zero],
                [f"{tensor}.q{suffix}"],
                name=f"{tensor}.Q{suffix}",
            )
        )
        self.amax[tensor] = amax
        self.readers[tensor] = 0

    def dequantize(self, tensor: str) -> str:
        """A DequantizeLinear for one more reader of `tensor`; returns its output's name.

        Every reader gets a DQ of its own. With `dedicated`, every reader past the first also
        gets its own Q, with scale and zero point initializers of its own (the same values):
        onnxruntime's x86 int8 -> uint8 rewrite and its conv fusion skip a Q that feeds two DQs,
        which left ResNet-50's block-entry convs (conv1 and downsample.0 read one tensor) in
        fp32; OpenVINO runs the separate Qs as int8 as long as their parameters are equal."""
        count = self.readers[tensor]
        self.readers[tensor] = count + 1
        suffix = "" if count == 0 else str(count)
        q = f"{tensor}.q"
        dedicated = self.dedicated and tensor not in self.unsigned
        if count and dedicated:
            self.quantize(tensor, self.amax[tensor], suffix=suffix)
            self.readers[tensor] = count + 1
            q = f"{tensor}.q{suffix}"
        scale, zero = (
            (f"{tensor}.scale{suffix}", f"{tensor}.zero_point{suffix}")
            if count and dedicated
            else (f"{tensor}.scale", f"{tensor}.zero_point")
        )
        name = f"{tensor}.dq{suffix}"
        self.nodes.append(
            helper.make_node("DequantizeLinear", [q, scale, zero], [name], name=f"{name}.DQ")
        )
        return name

    def weight(self, initializer: TensorProto) -> str:
        w = numpy_helper.to_array(initializer)
        q, scale = quantize_weight(w, self.weight_qmax)
        name = initializer.name
        initializer.CopyFrom(numpy_helper.from_array(q, name))
        s = self.const(f"{name}_scale", scale)
        z = self.const(f"{name}_zero_point", np.zeros(len(scale), np.int8))
        self.nodes.append(
            helper.make_node(
                "DequantizeLinear", [name, s, z], [f"{name}.dq"], name=f"{name}.DQ", axis=0
            )
        )
        return f"{name}.dq"


def insert_qdq(
    model: onnx.ModelProto,
    plan: Plan,
    amax: dict[str, float],
    placement: str,
    *,
    weight_qmax: int = QMAX,
) -> onnx.ModelProto:
    """The fp32 graph emitted from `plan`, with Q/DQ pairs where `placement` puts them (in
    place; returns `model`). Node names are the plan's op names, so each op is found by name."""
    place = placement_for(plan, placement)
    ops = {op.name: op for op in plan.ops}
    reads = {(op_name, index): t for t, uses in place.inputs.items() for op_name, index in uses}
    inits = {t.name: t for t in model.graph.initializer}
    out = _QdqWriter(weight_qmax, dedicated=placement == "ort")
    out.unsigned = place.unsigned
    quantized: set[str] = set()
    if INPUT in place.inputs:
        out.quantize(INPUT, amax[INPUT])
        quantized.add(INPUT)
    for node in model.graph.node:
        op = ops.get(node.name)
        if node.op_type in ("Conv", "Gemm") and isinstance(op, Conv | Linear):
            node.input[1] = out.weight(inits[node.input[1]])
        for index, name in enumerate(node.input):
            if name in quantized and ((node.name, index) in reads or name in place.outputs):
                node.input[index] = out.dequantize(name)
        out.nodes.append(node)
        for name in node.output:
            if name in place.outputs or name in place.inputs:
                out.quantize(name, amax[name])
                quantized.add(name)
    del model.graph.node[:]
    model.graph.node.extend(out.nodes)
    model.graph.initializer.extend(out.initializers)
    return model


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
    dims = model.graph.input[0].type.tensor_type.shape.dim
    batch = dims[0].dim_value if dims and dims[0].HasField("dim_value") else None
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)
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
    return insert_qdq(fp32, plan, amax, options.placement, weight_qmax=options.weight_qmax)


def is_int8(model: onnx.ModelProto) -> bool:
    return metadata(model).get("graphgen.dtype") == "int8"


def dequantized_nodes(model: onnx.ModelProto) -> Iterator[onnx.NodeProto]:
    """The graph's nodes with every Q/DQ pair bypassed: the fp32 network it quantizes, for the
    structure check (rename each DQ output back to the tensor its Q read)."""
    q_input = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "QuantizeLinear"}
    weights = {t.name for t in model.graph.initializer}
    back: dict[str, str] = {}
    for n in model.graph.node:
        if n.op_type == "DequantizeLinear":
            src = n.input[0]
            back[n.output[0]] = q_input.get(src, src if src in weights else src)
    for n in model.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        copy = onnx.NodeProto()
        copy.CopyFrom(n)
        for i, name in enumerate(copy.input):
            copy.input[i] = back.get(name, name)
        yield copy


def check_int8_structure(model: onnx.ModelProto, *, source: str = "model") -> str | None:
    """None when the int8 graph, Q/DQ bypassed, is node for node the folded fp32 graph its spec
    gives (same ops, wiring, attributes), else the first difference."""
    try:
        plan = plan_of(model, source=source)
    except GraphError as err:
        return str(err)
    shapes = plan.tensor_shapes()
    stand_in = {k: np.zeros(v, np.float32) for k, v in shapes.items()}
    dims = model.graph.input[0].type.tensor_type.shape.dim
    batch = dims[0].dim_value if dims and dims[0].HasField("dim_value") else None
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)
    expected = list(emit_model(plan, stand_in, batch=batch, opset=opset).graph.node)
    found = list(dequantized_nodes(model))
    for index, (a, b) in enumerate(zip(expected, found, strict=False)):
        if a != b:
            return (
                f"node {index} ({a.name}) differs from the spec's: expected {a.op_type}"
                f"({', '.join(a.input)}), found {b.op_type}({', '.join(b.input)}) named {b.name}"
            )
    if len(expected) != len(found):
        return f"{len(found)} nodes (Q/DQ aside) where the spec gives {len(expected)}"
    have = {t.name: tuple(t.dims) for t in model.graph.initializer}
    for name, shape in shapes.items():
        if have.get(name) != tuple(shape):
            return f"initializer {name} is missing or misshapen ({have.get(name)} != {shape})"
    return None
