"""The ONNX emitter: walks the plan and writes nodes with onnx.helper (no torch anywhere).

Node names are the plan's op names and initializer names are its parameter names, so a graph's
initializers are exactly the torch module's `state_dict()` keys.

bfloat16 graphs (`--dtype bfloat16`) hold BFLOAT16 weights and compute in BFLOAT16 between two
Casts (float32 I/O), as float16 graphs do. numpy has no bfloat16, so weights are rounded to
nearest-even on their float32 bits here (`bfloat16_bits`), with no dependency. ONNX admits
bfloat16 in Conv, MaxPool and GlobalAveragePool only from opset 22 (their -22 versions), so such
a graph defaults to opset 22 and refuses an older one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from graphgen import __version__
from graphgen.errors import SpecError
from graphgen.plan import (
    BN_EPS,
    INPUT,
    OUTPUT,
    Add,
    AvgPool,
    BatchNorm,
    ChannelConv,
    Conv,
    GlobalAvgPool,
    Linear,
    MaxPool,
    Op,
    Plan,
    Relu,
    Scale,
    Sigmoid,
    ZeroPadShortcut,
)
from graphgen.weights import Weights

DEFAULT_OPSET = 17
MIN_OPSET = 13
BF16_MIN_OPSET = 22  # Conv-22, MaxPool-22, GlobalAveragePool-22: the first to take bfloat16
DTYPES = {
    "float32": TensorProto.FLOAT,
    "float16": TensorProto.FLOAT16,
    "bfloat16": TensorProto.BFLOAT16,
}
# numpy types of the dtypes numpy has; bfloat16 is stored as its uint16 bit patterns.
NP_DTYPES = {"float32": np.float32, "float16": np.float16}
INT64_MAX = np.iinfo(np.int64).max


def max_opset() -> int:
    return onnx.defs.onnx_opset_version()


def check_opset(opset: int) -> None:
    if not MIN_OPSET <= opset <= max_opset():
        raise SpecError(
            f"opset {opset} is out of range; graphgen emits opsets {MIN_OPSET} to {max_opset()} "
            f"(the newest this onnx {onnx.__version__} knows)"
        )


def check_dtype(dtype: str) -> None:
    if dtype not in DTYPES:
        raise SpecError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")


def default_opset(dtype: str) -> int:
    """The opset a graph of `dtype` gets when none is asked for."""
    return BF16_MIN_OPSET if dtype == "bfloat16" else DEFAULT_OPSET


def check_dtype_opset(dtype: str, opset: int) -> None:
    """bfloat16 compute needs opset 22 (ONNX's Conv takes bfloat16 from Conv-22 on)."""
    if dtype == "bfloat16" and opset < BF16_MIN_OPSET:
        raise SpecError(
            f"bfloat16 graphs need opset {BF16_MIN_OPSET} or newer (ONNX's Conv, MaxPool and "
            f"GlobalAveragePool take bfloat16 from their version 22), got opset {opset}"
        )


def bfloat16_bits(array: np.ndarray) -> np.ndarray:
    """The bfloat16 bit patterns (uint16) of `array`, rounded to nearest, ties to even (what
    torch's and OpenVINO's conversions do). Finite inputs only: graphgen weights are finite,
    and NaN would need its own case."""
    if array.dtype == np.uint16:
        return array  # already bit patterns
    bits = np.ascontiguousarray(array, dtype=np.float32).view(np.uint32)
    rounded = (bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)
    return rounded.astype(np.uint16)


def tensor_of(name: str, array: np.ndarray, dtype: str) -> TensorProto:
    """An initializer of `dtype` ("float32", "float16", "bfloat16") holding `array`."""
    if dtype == "bfloat16":
        return _initializer(name, bfloat16_bits(np.asarray(array, np.float32)), bf16=True)
    return numpy_helper.from_array(np.asarray(array).astype(NP_DTYPES[dtype]), name)


def _initializer(
    name: str, array: np.ndarray, *, embed: bool = True, bf16: bool = False
) -> TensorProto:
    """A raw-data TensorProto (one copy of the bytes), or without data when `embed` is False:
    the streaming writer then appends the array's bytes itself. `bf16`: `array` holds bfloat16
    bit patterns (uint16)."""
    tensor = TensorProto()
    tensor.name = name
    tensor.data_type = (
        TensorProto.BFLOAT16 if bf16 else helper.np_dtype_to_tensor_dtype(array.dtype)
    )
    tensor.dims.extend(array.shape)
    if embed:
        tensor.raw_data = array.tobytes()
    return tensor


class _Emitter:
    def __init__(self, plan: Plan, weights: Weights, dtype: str, opset: int, embed: bool) -> None:
        self.plan = plan
        self.weights = weights
        self.bf16 = dtype == "bfloat16"
        self.np_dtype = np.float32 if self.bf16 else NP_DTYPES[dtype]
        self.opset = opset
        self.embed = embed
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[TensorProto] = []
        self.arrays: list[np.ndarray] = []  # the data of data-less initializers, in order

    def param(self, name: str) -> str:
        # Popped, not read: the caller hands its arrays over, so each weight lives once at a time
        # (array, then the initializer's bytes), which keeps peak memory near the model's size.
        array = self.weights.pop(name)
        if self.bf16:
            array = bfloat16_bits(np.asarray(array, np.float32))
        elif array.dtype != self.np_dtype:
            array = array.astype(self.np_dtype)
        self.initializers.append(_initializer(name, array, embed=self.embed, bf16=self.bf16))
        if not self.embed:
            self.arrays.append(np.ascontiguousarray(array))
        return name

    def const(self, name: str, values: list[int]) -> str:
        value = helper.make_tensor(name, TensorProto.INT64, [len(values)], values)
        self.nodes.append(helper.make_node("Constant", [], [name], name=name, value=value))
        return name

    def fixed(self, op: BatchNorm, key: str) -> str:
        """A BN's fixed scale (ones) or shift (zeros) as a Constant: not a parameter."""
        name = f"{op.name}.{key}"
        fill = np.ones if key == "weight" else np.zeros
        array = fill(op.channels, self.np_dtype)
        value = (
            _initializer(name, bfloat16_bits(array), bf16=True)
            if self.bf16
            else numpy_helper.from_array(array, name)
        )
        self.nodes.append(helper.make_node("Constant", [], [name], name=name, value=value))
        return name

    def node(self, op_type: str, inputs: list[str], output: str, name: str, **attrs: Any) -> None:
        self.nodes.append(helper.make_node(op_type, inputs, [output], name=name, **attrs))

    def emit(self, op: Op, rename: Callable[[str], str]) -> None:
        x = rename(getattr(op, "x", ""))
        out = rename(op.out)
        if isinstance(op, Conv):
            inputs = [x, self.param(f"{op.name}.weight")]
            if op.bias:
                inputs.append(self.param(f"{op.name}.bias"))
            group = {"group": op.groups} if op.groups != 1 else {}  # the paper's graphs: as before
            self.node(
                "Conv",
                inputs,
                out,
                op.name,
                kernel_shape=[op.kernel] * 2,
                strides=[op.stride] * 2,
                pads=[op.pad] * 4,
                **group,
            )
        elif isinstance(op, BatchNorm):
            names = [
                self.param(f"{op.name}.{k}") if op.affine else self.fixed(op, k)
                for k in ("weight", "bias")
            ] + [self.param(f"{op.name}.{k}") for k in ("running_mean", "running_var")]
            self.node("BatchNormalization", [x, *names], out, op.name, epsilon=BN_EPS)
        elif isinstance(op, Relu):
            self.node("Relu", [x], out, op.name)
        elif isinstance(op, Add):
            self.node("Add", [rename(op.a), rename(op.b)], out, op.name)
        elif isinstance(op, MaxPool):
            self.node(
                "MaxPool",
                [x],
                out,
                op.name,
                kernel_shape=[op.kernel] * 2,
                strides=[op.stride] * 2,
                pads=[op.pad] * 4,
            )
        elif isinstance(op, ZeroPadShortcut):
            self.zero_pad_shortcut(op, x, out)
        elif isinstance(op, AvgPool):
            self.node(
                "AveragePool",
                [x],
                out,
                op.name,
                kernel_shape=[op.kernel] * 2,
                strides=[op.stride] * 2,
                ceil_mode=1,
                count_include_pad=0,
            )
        elif isinstance(op, Sigmoid):
            self.node("Sigmoid", [x], out, op.name)
        elif isinstance(op, Scale):
            self.node("Mul", [x, rename(op.gate)], out, op.name)
        elif isinstance(op, ChannelConv):
            self.channel_conv(op, x, out)
        elif isinstance(op, GlobalAvgPool):
            if not op.flatten:
                self.node("GlobalAveragePool", [x], out, op.name)
                return
            pooled = f"{op.name}.pooled"
            self.node("GlobalAveragePool", [x], pooled, op.name)
            self.node("Flatten", [pooled], out, f"{op.name}.flatten", axis=1)
        elif isinstance(op, Linear):
            inputs = [x, self.param(f"{op.name}.weight"), self.param(f"{op.name}.bias")]
            if op.conv:  # a 1x1 conv on the pooled map, then flattened (timm's ResNetV2 head)
                mapped = f"{op.name}.map"
                self.node("Conv", inputs, mapped, op.name, kernel_shape=[1, 1])
                self.node("Flatten", [mapped], out, f"{op.name}.flatten", axis=1)
                return
            self.node("Gemm", inputs, out, op.name, transB=1)
        else:  # pragma: no cover - the plan's op union is closed
            raise TypeError(f"no ONNX emitter for {type(op).__name__}")

    def channel_conv(self, op: ChannelConv, x: str, out: str) -> None:
        """ECA: the pooled (N, C, 1, 1) map as N sequences of C values, a 1-d Conv across them,
        and back."""
        row, conv = f"{op.name}.row", f"{op.name}.conv"
        self.node("Reshape", [x, self.const(f"{op.name}.row_shape", [0, 1, -1])], row, row)
        pad = (op.kernel - 1) // 2
        weight = self.param(f"{op.name}.weight")
        self.node("Conv", [row, weight], conv, op.name, kernel_shape=[op.kernel], pads=[pad] * 2)
        back = self.const(f"{op.name}.map_shape", [0, -1, 1, 1])
        self.node("Reshape", [conv, back], out, f"{op.name}.map")

    def zero_pad_shortcut(self, op: ZeroPadShortcut, x: str, out: str) -> None:
        """Option A: Slice with steps subsamples, Pad adds the zero channels where `op` says."""
        if op.stride != 1:
            sliced = f"{op.name}.subsample"
            self.node(
                "Slice",
                [
                    x,
                    self.const(f"{op.name}.starts", [0, 0]),
                    self.const(f"{op.name}.ends", [INT64_MAX, INT64_MAX]),
                    self.const(f"{op.name}.axes", [2, 3]),
                    self.const(f"{op.name}.steps", [op.stride, op.stride]),
                ],
                sliced,
                sliced,
            )
            x = sliced
        if op.cout != op.cin:
            pads = self.const(f"{op.name}.pads", [0, op.pad_before, 0, 0, 0, op.pad_after, 0, 0])
            self.node("Pad", [x, pads], out, op.name, mode="constant")
        else:
            self.node("Identity", [x], out, op.name)


def emit_model(plan: Plan, weights: Weights, **options: Any) -> onnx.ModelProto:
    """Build the ModelProto for a plan: input `input` [N,3,S,S], output `logits` [N,K].

    `weights` is consumed: each array is removed from the dict once its bytes are in the graph.
    Options: batch (None = symbolic N), dtype, io_dtype, opset (None: `default_opset(dtype)`),
    metadata.
    """
    return _emit(plan, weights, embed=True, **options)[0]


def emit_skeleton(
    plan: Plan, weights: Weights, **options: Any
) -> tuple[onnx.ModelProto, list[np.ndarray]]:
    """The same model with data-less initializers, plus their arrays in initializer order, for
    `graphgen.onnx_io.write_streamed` (which never holds the model's bytes twice)."""
    return _emit(plan, weights, embed=False, **options)


def _emit(
    plan: Plan,
    weights: Weights,
    *,
    embed: bool,
    batch: int | None = None,
    dtype: str = "float32",
    io_dtype: str = "float32",
    opset: int | None = None,
    metadata: dict[str, str] | None = None,
) -> tuple[onnx.ModelProto, list[np.ndarray]]:
    check_dtype(dtype)
    check_dtype(io_dtype)
    opset = default_opset(dtype) if opset is None else opset
    check_opset(opset)
    check_dtype_opset(dtype, opset)
    check_dtype_opset(io_dtype, opset)
    em = _Emitter(plan, weights, dtype, opset, embed)
    cast_in = dtype != io_dtype
    renames = {INPUT: f"{INPUT}.{dtype}", OUTPUT: f"{OUTPUT}.{dtype}"} if cast_in else {}

    if cast_in:
        em.node("Cast", [INPUT], renames[INPUT], "input.cast", to=DTYPES[dtype])
    for op in plan.ops:
        em.emit(op, lambda name: renames.get(name, name))
    if cast_in:
        em.node("Cast", [renames[OUTPUT]], OUTPUT, "logits.cast", to=DTYPES[io_dtype])

    n: int | str = batch if batch is not None else "N"
    s = plan.spec.image_size
    graph = helper.make_graph(
        em.nodes,
        plan.spec.name,
        [helper.make_tensor_value_info(INPUT, DTYPES[io_dtype], [n, 3, s, s])],
        [helper.make_tensor_value_info(OUTPUT, DTYPES[io_dtype], [n, plan.spec.classes])],
        initializer=em.initializers,
    )
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(
        graph,
        producer_name="graphgen",
        producer_version=__version__,
        opset_imports=opsets,
        ir_version=helper.find_min_ir_version_for(opsets),
    )
    props = {
        "graphgen.spec": plan.spec.to_json(),
        "graphgen.version": __version__,
        "graphgen.params": str(plan.params),
        "graphgen.macs": str(plan.macs),
        "graphgen.fold_bn": json.dumps(plan.folded),
        "graphgen.dtype": dtype,
        **(metadata or {}),
    }
    helper.set_model_props(model, props)
    model.graph.value_info.extend(_inferred_value_info(model))
    return model, em.arrays


def _inferred_value_info(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """Every intermediate tensor's type and shape, so that viewers (Netron) show shapes on the
    edges. Inferred on a stand-in whose initializers hold no data: no weight is copied."""
    graph = onnx.GraphProto(name=model.graph.name)
    graph.node.extend(model.graph.node)
    graph.input.extend(model.graph.input)
    graph.output.extend(model.graph.output)
    for tensor in model.graph.initializer:
        graph.initializer.add(name=tensor.name, data_type=tensor.data_type, dims=tensor.dims)
    stand_in = helper.make_model(graph, opset_imports=model.opset_import)
    stand_in.ir_version = model.ir_version
    return list(onnx.shape_inference.infer_shapes(stand_in).graph.value_info)
