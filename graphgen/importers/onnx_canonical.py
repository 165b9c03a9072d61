"""Step 1 of the ONNX import: canonicalise a foreign ONNX graph into graphgen's plan kinds.

From the output back, every node on the way becomes one of the plan's kinds (conv, bn, relu,
add, maxpool, gap, fc, option A's subsample and zero-pad; the zoo variants' grouped convs,
ResNet-D's ceil-mode average pool `avgpool`, and attention's `chconv` (ECA's 1-d conv),
`sigmoid` and `scale` (a Mul of two computed tensors)); Identity, Dropout, Flatten, Reshape,
Squeeze, Expand and float Casts are looked through, MatMul + Add is a fc. Weights may be
initializers, Constant nodes, initializers also listed as graph inputs (old exporters, MXNet), or
Identity nodes over any of them (torch.onnx's TorchScript exporter stores equal BN-folded biases
once and aliases the rest).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from graphgen.errors import GraphError
from graphgen.plan import BN_EPS
from resnet_common.errors import first_line, shown

PASS_THROUGH = {"Identity", "Dropout", "Flatten", "Reshape", "Squeeze", "Cast", "Expand"}
# What computes a Pad's or Slice's operands from constants (torch.onnx's TorchScript export:
# ConstantOfShape, Concat, Reshape, Slice, Transpose, Cast), evaluated only on small constants:
# a Range, Tile or Expand, or a ConstantOfShape of [10**12], makes any size from a few bytes.
FOLDABLE = {
    "Cast", "Concat", "Constant", "ConstantOfShape", "Flatten", "Gather", "Identity", "Reshape",
    "Slice", "Squeeze", "Transpose", "Unsqueeze",
}  # fmt: skip
FOLDED_VALUES = 4096
TO_THE_END = 2**31 - 1  # a Slice end at least this large runs to the end of its axis


@dataclass
class Node:
    kind: (
        str  # input conv bn relu add maxpool gap fc subsample zeropad avgpool chconv sigmoid scale
    )
    name: str
    inputs: list[str]
    order: int
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    attrs: dict[str, int] = field(default_factory=dict)
    eps: float = BN_EPS
    key: str = ""  # the canonical tensor this node produces


@dataclass(frozen=True)
class _Site:
    """The ONNX node being read, where it stands, and how a refusal names it."""

    node: onnx.NodeProto
    order: int  # its index in the graph
    name: str  # its name, else the tensor it makes
    where: str  # "<source>: <op type> node '<name>'"


def _unfit(site: _Site) -> GraphError:
    return GraphError(f"{site.where} does not fit a ResNet graphgen expresses")


def _attr(node: onnx.NodeProto, name: str, default: Any = None) -> Any:
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _ints(
    node: onnx.NodeProto, name: str, default: list[int], count: int | None = None
) -> list[int]:
    """An ints attribute; with `count`, it must have that many values (a 2-D conv's
    kernel_shape has two)."""
    value = _attr(node, name, default)
    if not isinstance(value, list | tuple) or not all(isinstance(v, int) for v in value):
        raise GraphError(f"{node.op_type} node {shown(node.name)}: {name} is not a list of ints")
    if count is not None and len(value) != count:
        raise GraphError(
            f"{node.op_type} node {shown(node.name)}: {name} {shown(list(value))} has "
            f"{len(value)} values, a 2-D {node.op_type} has {count}"
        )
    return [int(v) for v in value]


# Data types a weight may have: any real number type (widened to float32 here).
NUMBER_TYPES = {
    onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16,
    onnx.TensorProto.DOUBLE, onnx.TensorProto.INT8, onnx.TensorProto.UINT8,
    onnx.TensorProto.INT16, onnx.TensorProto.UINT16, onnx.TensorProto.INT32,
    onnx.TensorProto.UINT32, onnx.TensorProto.INT64, onnx.TensorProto.UINT64,
}  # fmt: skip


def _array(t: onnx.TensorProto, source: str) -> np.ndarray:
    try:
        return numpy_helper.to_array(t)
    except Exception as err:  # data that does not fit its dims or type
        raise GraphError(
            f"{source}: tensor {shown(t.name)} cannot be read ({shown(first_line(err), 120)})"
        ) from None


class Canonical:
    """The graph as plan kinds, keyed by canonical tensor name."""

    def __init__(self, model: onnx.ModelProto, source: str) -> None:
        g = model.graph
        self.source = source
        self.types = {t.name: t.data_type for t in g.initializer}
        self.consts = {t.name: _array(t, source) for t in g.initializer}
        self.opsets = list(model.opset_import)
        for node in g.node:
            if node.op_type == "Constant" and _attr(node, "value") is not None:
                value = _attr(node, "value")
                if not isinstance(value, onnx.TensorProto) or len(node.output) != 1:
                    raise GraphError(f"{source}: Constant node {shown(node.name)} is malformed")
                self.types[node.output[0]] = value.data_type
                self.consts[node.output[0]] = _array(value, source)
        inputs = [i for i in g.input if i.name not in self.consts]
        if len(inputs) != 1 or len(g.output) < 1:
            raise GraphError(
                f"{source}: expected one image input and an output, found inputs "
                f"{[i.name for i in inputs]}"
            )
        dims = inputs[0].type.tensor_type.shape.dim
        shape = [d.dim_value if d.HasField("dim_value") else None for d in dims]
        if len(shape) != 4 or shape[1] != 3:
            raise GraphError(f"{source}: the input {inputs[0].name!r} is {shape}, not [N,3,H,W]")
        if shape[2] != shape[3]:
            raise GraphError(f"{source}: the input is {shape[2]}x{shape[3]}; graphgen is square")
        self.image_size = shape[2]
        self.batch = shape[0]
        self.input = inputs[0].name
        self.producer = {out: (i, n) for i, n in enumerate(g.node) for out in n.output}
        self.nodes: dict[str, Node] = {
            self.input: Node("input", self.input, [], -1, key=self.input)
        }
        self.output = self._resolve_all(g.output[0].name)
        self.consumers: dict[str, list[str]] = {}
        for key, node in sorted(self.nodes.items(), key=lambda kv: kv[1].order):
            for x in node.inputs:
                self.consumers.setdefault(x, []).append(key)

    def _resolve_all(self, output: str) -> str:
        """Canonicalise every node the output depends on (iteratively: ResNet-152 is deep)."""
        stack, out = [output], self._alias(output)
        while stack:
            tensor = self._alias(stack.pop())
            if tensor in self.nodes:
                continue
            node = self._canon(tensor)
            node.key = tensor
            self.nodes[tensor] = node
            stack.extend(x for x in node.inputs if self._alias(x) not in self.nodes)
            node.inputs = [self._alias(x) for x in node.inputs]
        return out

    def _alias(self, tensor: str) -> str:
        while tensor in self.producer:
            _, node = self.producer[tensor]
            if node.op_type not in PASS_THROUGH:
                break
            if node.op_type == "Cast" and _attr(node, "to") not in (1, 10, 11):
                break
            tensor = node.input[0]
        return tensor

    def _stored(self, name: str) -> str:
        """The initializer or Constant an Identity chain aliases, else `name`."""
        seen = 0
        while name not in self.consts and name in self.producer and seen < len(self.producer):
            node = self.producer[name][1]
            if node.op_type != "Identity" or len(node.input) != 1:
                break
            name, seen = node.input[0], seen + 1
        return name

    def _const(self, name: str, what: str) -> np.ndarray:
        name = self._stored(name)
        if name not in self.consts:
            raise GraphError(
                f"{self.source}: {what} {shown(name)} is computed, not a stored weight"
            )
        if self.types.get(name) not in NUMBER_TYPES:
            raise GraphError(f"{self.source}: {what} {shown(name)} is not an array of numbers")
        return self.consts[name].astype(np.float32)

    def _canon(self, tensor: str) -> Node:
        if tensor not in self.producer:
            raise GraphError(f"{self.source}: tensor {shown(tensor)} has no producer")
        order, node = self.producer[tensor]
        name = node.name or tensor
        site = _Site(node, order, name, f"{self.source}: {node.op_type} node {shown(name)}")
        read = {
            "Conv": self._conv,
            "BatchNormalization": self._bn,
            "Relu": self._relu,
            "Add": self._add,
            "Sum": self._add,
            "MaxPool": self._max_pool,
            "GlobalAveragePool": self._global_pool,
            "AveragePool": self._average_pool,
            "ReduceMean": self._mean,
            "Gemm": self._gemm,
            "MatMul": self._matmul,
            "Slice": self._subsample,
            "Pad": self._zero_pad,
            "Sigmoid": self._sigmoid,
            "Mul": self._mul,
        }.get(node.op_type)
        if read is None:
            raise _unfit(site)
        return read(site)

    def _conv(self, site: _Site) -> Node:
        node, where = site.node, site.where
        if len(node.input) < 2:
            raise _unfit(site)
        w = self._const(node.input[1], "conv weight")
        if w.ndim == 3:
            return self._channel_conv(site, w)
        if w.ndim != 4:
            raise GraphError(f"{where}: a {w.ndim}-D weight, not a 2-D conv's")
        try:
            k = _ints(node, "kernel_shape", list(w.shape[2:]), 2)
            pads = _ints(node, "pads", [0, 0, 0, 0], 4)
            strides = _ints(node, "strides", [1, 1], 2)
            dil = _ints(node, "dilations", [1, 1], 2)
        except GraphError as err:
            raise GraphError(f"{self.source}: {err}") from None
        group = _attr(node, "group", 1)
        auto = _attr(node, "auto_pad", b"NOTSET")
        if (
            w.ndim != 4
            or k[0] != k[1]
            or not isinstance(group, int)
            or group < 1
            or w.shape[0] % group
            or dil != [1, 1]
            or auto not in (b"NOTSET", "NOTSET")
        ):
            raise GraphError(
                f"{where}: a {k} conv, group {group}, dilations {dil} is not a ResNet conv"
            )
        if len(set(pads)) != 1 or pads[0] != k[0] // 2 or strides[0] != strides[1]:
            raise GraphError(f"{where}: pads {pads} / strides {strides} are not a ResNet conv's")
        arrays = {"weight": w}
        if len(node.input) > 2 and node.input[2]:
            arrays["bias"] = self._const(node.input[2], "conv bias")
        attrs = {"k": k[0], "s": strides[0], "p": pads[0], "g": group}
        return Node("conv", site.name, [node.input[0]], site.order, arrays, attrs)

    def _channel_conv(self, site: _Site, w: np.ndarray) -> Node:
        """ECA's 1-d conv across the channels: weight (1, 1, k), zero padding k // 2, no bias."""
        node = site.node
        k = int(w.shape[2])
        try:
            pads = _ints(node, "pads", [0, 0], 2)
            strides = _ints(node, "strides", [1], 1)
            dil = _ints(node, "dilations", [1], 1)
        except GraphError as err:
            raise GraphError(f"{self.source}: {err}") from None
        if (
            w.shape[:2] != (1, 1)
            or pads != [k // 2] * 2
            or strides != [1]
            or dil != [1]
            or _attr(node, "group", 1) != 1
            or (len(node.input) > 2 and node.input[2])
        ):
            raise GraphError(f"{site.where}: a 1-d conv other than ECA's (1, 1, k), pad k // 2")
        return Node("chconv", site.name, [node.input[0]], site.order, {"weight": w}, {"k": k})

    def _sigmoid(self, site: _Site) -> Node:
        return Node("sigmoid", site.name, [site.node.input[0]], site.order)

    def _mul(self, site: _Site) -> Node:
        """Attention's gate: the branch times the sigmoid of its squeeze (both computed)."""
        if len(site.node.input) != 2 or any(
            self._stored(self._alias(x)) in self.consts for x in site.node.input
        ):
            raise _unfit(site)
        return Node("scale", site.name, list(site.node.input), site.order)

    def _bn(self, site: _Site) -> Node:
        node = site.node
        if _attr(node, "spatial", 1) != 1 or _attr(node, "training_mode", 0):
            raise GraphError(f"{site.where}: a non-spatial or training-mode BN")
        if len(node.input) != 5:
            raise GraphError(
                f"{site.where}: {len(node.input)} inputs; a BatchNormalization has 5 (x, scale, "
                "shift, mean, variance)"
            )
        keys = ("weight", "bias", "running_mean", "running_var")
        arrays = {k: self._const(x, f"BN {k}") for k, x in zip(keys, node.input[1:5], strict=True)}
        eps = float(_attr(node, "epsilon", 1e-5))
        return Node("bn", site.name, [node.input[0]], site.order, arrays, eps=eps)

    def _relu(self, site: _Site) -> Node:
        return Node("relu", site.name, [site.node.input[0]], site.order)

    def _add(self, site: _Site) -> Node:
        if len(site.node.input) != 2:
            raise _unfit(site)
        a, b = site.node.input
        if self._alias(a) in self.consts or self._alias(b) in self.consts:
            return self._bias_add(site)
        return Node("add", site.name, [a, b], site.order)

    def _max_pool(self, site: _Site) -> Node:
        node = site.node
        try:
            k = _ints(node, "kernel_shape", [])
            pads, strides = _ints(node, "pads", [0] * 4), _ints(node, "strides", [1, 1])
        except GraphError as err:
            raise GraphError(f"{self.source}: {err}") from None
        if k != [3, 3] or set(pads) != {1} or strides != [2, 2] or _attr(node, "ceil_mode", 0):
            raise GraphError(
                f"{site.where}: kernel {k} pads {pads} strides {strides}; graphgen's is 3x3/2, "
                "pad 1"
            )
        return Node("maxpool", site.name, [node.input[0]], site.order)

    def _global_pool(self, site: _Site) -> Node:
        return Node("gap", site.name, [site.node.input[0]], site.order)

    def _average_pool(self, site: _Site) -> Node:
        """F.avg_pool2d(x, 8) over the last 8x8 map (akamaster's CIFAR ResNets), or ResNet-D's
        shortcut pool (ceil mode, padding not counted)."""
        node = site.node
        try:
            k, pads = _ints(node, "kernel_shape", []), _ints(node, "pads", [0] * 4)
            strides = _ints(node, "strides", [1, 1])
        except GraphError as err:
            raise GraphError(f"{self.source}: {err}") from None
        if _attr(node, "ceil_mode", 0):
            if len(set(k)) != 1 or len(set(strides)) != 1 or any(pads):
                raise GraphError(f"{site.where}: kernel {k} strides {strides} pads {pads}")
            if _attr(node, "count_include_pad", 0):
                raise GraphError(f"{site.where}: counts padding (ResNet-D's pool does not)")
            attrs = {"k": k[0], "s": strides[0]}
            return Node("avgpool", site.name, [node.input[0]], site.order, attrs=attrs)
        if len(set(k)) != 1 or any(pads) or _attr(node, "ceil_mode", 0):
            raise GraphError(f"{site.where}: kernel {k} pads {pads}, not a global average")
        return Node("gap", site.name, [node.input[0]], site.order, attrs={"k": k[0]})

    def _mean(self, site: _Site) -> Node:
        node = site.node
        axes = _attr(node, "axes")
        if axes is None and len(node.input) > 1:
            axes = self.consts.get(node.input[1], np.array([])).tolist()
        if sorted(int(a) % 4 for a in axes or []) != [2, 3]:  # NCHW: -1, -2 are spatial
            raise GraphError(f"{site.where}: a mean over axes {axes}, not the spatial ones")
        return Node("gap", site.name, [node.input[0]], site.order)

    def _gemm(self, site: _Site) -> Node:
        node = site.node
        if len(node.input) < 2:
            raise _unfit(site)
        w = self._const(node.input[1], "fc weight")
        if w.ndim != 2:
            raise GraphError(f"{site.where}: a {w.ndim}-D weight, not a fc's matrix")
        if (
            _attr(node, "transA", 0)
            or _attr(node, "alpha", 1.0) != 1.0
            or _attr(node, "beta", 1.0) != 1.0
        ):
            raise GraphError(f"{site.where}: a Gemm with transA/alpha/beta is not a plain fc")
        w = w if _attr(node, "transB", 0) else w.T
        arrays = {"weight": w}
        if len(node.input) > 2 and node.input[2]:
            arrays["bias"] = self._const(node.input[2], "fc bias").reshape(-1)
        return Node("fc", site.name, [node.input[0]], site.order, arrays)

    def _matmul(self, site: _Site) -> Node:
        if len(site.node.input) != 2:
            raise _unfit(site)
        w = self._const(site.node.input[1], "fc weight")
        if w.ndim != 2:
            raise GraphError(f"{site.where}: a {w.ndim}-D weight, not a fc's matrix")
        return Node("fc", site.name, [site.node.input[0]], site.order, {"weight": w.T})

    def _operand(self, node: onnx.NodeProto, index: int, attr: str) -> list[int] | None:
        """An int list given as input `index` (newer opsets) or attribute `attr` (older)."""
        if len(node.input) > index and node.input[index]:
            value = self._folded(node.input[index], attr)
            return [int(v) for v in value.reshape(-1)]  # int64 as stored: no float rounding
        value = _attr(node, attr)
        return None if value is None else [int(v) for v in value]

    def _folded(self, name: str, what: str) -> np.ndarray:
        """A stored constant, or one computed from stored constants alone (torch.onnx's
        TorchScript export computes a Pad's pads with Slice, Transpose, Reshape and Cast),
        evaluated by onnx's reference evaluator."""
        if name in self.consts:
            return self.consts[name]
        nodes: dict[int, onnx.NodeProto] = {}
        stack = [name]
        while stack:
            tensor = stack.pop()
            if not tensor or tensor in self.consts:
                continue
            if tensor not in self.producer or len(nodes) > 64:
                raise GraphError(f"{self.source}: {what} {shown(name)} is computed from the image")
            order, node = self.producer[tensor]
            if node.op_type not in FOLDABLE:  # Range, Tile, Expand: any size from a few bytes
                raise GraphError(
                    f"{self.source}: {what} {shown(name)} is computed by a {node.op_type} node; "
                    f"graphgen evaluates only {', '.join(sorted(FOLDABLE))} here"
                )
            if node.op_type == "ConstantOfShape" and not self._small(
                list(node.input[:1]), shape=True
            ):
                raise GraphError(
                    f"{self.source}: {what} {shown(name)} is computed by a ConstantOfShape "
                    f"whose shape is not stored or holds past {FOLDED_VALUES:,} values"
                )
            if order not in nodes:
                nodes[order] = node
                stack.extend(node.input)
        from onnx.reference import ReferenceEvaluator

        used = {i for n in nodes.values() for i in n.input if i in self.consts}
        if not self._small(sorted(used)):
            raise GraphError(f"{self.source}: {what} {shown(name)} is computed from large tensors")
        graph = onnx.helper.make_graph(
            [nodes[i] for i in sorted(nodes)],
            "folded",
            [],
            [onnx.helper.make_empty_tensor_value_info(name)],
            [numpy_helper.from_array(self.consts[i], i) for i in sorted(used)],
        )
        model = onnx.helper.make_model(graph, opset_imports=self.opsets)
        try:
            (value,) = ReferenceEvaluator(model).run(None, {})
        except Exception as err:  # any op the evaluator cannot run: not a ResNet we read
            raise GraphError(
                f"{self.source}: cannot evaluate {what} {shown(name)}: "
                f"{shown(first_line(err), 160)}"
            ) from None
        return np.asarray(value)

    def _small(self, names: list[str], *, shape: bool = False) -> bool:
        """Stored constants of at most FOLDED_VALUES values each; with `shape`, each a shape
        of at most that many values."""
        for n in names:
            array = self.consts.get(n)
            if array is None or array.size > FOLDED_VALUES:
                return False
            if shape and (
                array.dtype.kind not in "iu"
                or math.prod(abs(int(v)) for v in array.reshape(-1)) > FOLDED_VALUES
            ):
                return False
        return True

    def _subsample(self, site: _Site) -> Node:
        """Option A's `x[:, :, ::s, ::s]`: one Slice over both spatial axes, or one per axis."""
        node, order, where = site.node, site.order, site.where
        steps: dict[int, int] = {}
        while True:
            starts = self._operand(node, 1, "starts") or []
            ends = self._operand(node, 2, "ends") or []
            axes = self._operand(node, 3, "axes") or list(range(len(starts)))
            step = self._operand(node, 4, "steps") or [1] * len(starts)
            if not len(axes) == len(starts) == len(ends) == len(step):
                raise GraphError(f"{where}: starts, ends, axes and steps differ in length")
            for axis, start, end, s in zip(axes, starts, ends, step, strict=True):
                if axis % 4 not in (2, 3) or start != 0 or end < TO_THE_END or axis % 4 in steps:
                    raise GraphError(f"{where}: a slice other than option A's x[:, :, ::s, ::s]")
                steps[axis % 4] = s
            x = self._alias(node.input[0])
            inner = self.producer.get(x)
            if inner is None or inner[1].op_type != "Slice":
                break
            node = inner[1]
        if set(steps) != {2, 3} or steps[2] != steps[3] or steps[2] < 1:
            raise GraphError(f"{where}: subsamples with steps {steps}, not s along both H and W")
        return Node("subsample", node.name or x, [x], order, attrs={"s": steps[2]})

    def _zero_pad(self, site: _Site) -> Node:
        """Option A's zero channels: a constant Pad of channels alone."""
        node, order, where = site.node, site.order, site.where
        pads = self._operand(node, 1, "pads")
        axes = self._operand(node, 3, "axes") if len(node.input) > 3 else None
        value = (
            self._folded(node.input[2], "pad value") if len(node.input) > 2 and node.input[2] else 0
        )
        mode = _attr(node, "mode", b"constant")
        if pads is None or mode not in (b"constant", "constant") or np.any(value != 0):
            raise GraphError(f"{where}: pads with mode {mode!r}, not with zeros")
        axes = [a % 4 for a in axes] if axes is not None else list(range(len(pads) // 2))
        if len(pads) != 2 * len(axes):
            raise GraphError(f"{where}: {len(pads)} pads for {len(axes)} axes")
        before = dict(zip(axes, pads[: len(axes)], strict=True))
        after = dict(zip(axes, pads[len(axes) :], strict=True))
        if any(v for a, v in (before | after).items() if a != 1) or min(pads, default=0) < 0:
            raise GraphError(f"{where}: pads {pads} are not zero channels (axis 1 alone)")
        counts = {"before": before.get(1, 0), "after": after.get(1, 0)}
        return Node("zeropad", node.name or node.output[0], [node.input[0]], order, attrs=counts)

    def _bias_add(self, site: _Site) -> Node:
        """MatMul + Add(bias): one fc."""
        a, b = site.node.input
        const, x = (b, a) if self._alias(b) in self.consts else (a, b)
        fc = self._canon(self._alias(x))
        if fc.kind != "fc" or "bias" in fc.arrays:
            raise GraphError(f"{site.where}: adds a constant to a {fc.kind}, not to a MatMul")
        fc.arrays["bias"] = self._const(self._alias(const), "fc bias").reshape(-1)
        fc.order = site.order
        return fc

    def only_consumer(self, tensor: str) -> Node | None:
        users = self.consumers.get(tensor, [])
        return self.nodes[users[0]] if len(users) == 1 else None
