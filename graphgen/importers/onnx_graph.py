"""ResNets from any ONNX exporter (MXNet, torch.onnx, graphgen): infer the spec, copy weights.

Three steps, each refusing with the first thing that does not fit:

1. *Canonicalise*: from the output back, every node on the way becomes one of graphgen's plan
   kinds (conv, bn, relu, add, maxpool, gap, fc, and option A's subsample and zero-pad);
   Identity, Dropout, Flatten, Reshape, Squeeze and float Casts are looked through, MatMul + Add
   is a fc. Weights may be initializers, Constant nodes, or initializers also listed as graph
   inputs (old exporters, MXNet).
2. *Infer* the spec by walking the canonical graph forward unit by unit: stem, each unit's
   branch and shortcut between the stream tensor and its addition, the head.
3. *Match* the inferred plan against the canonical graph from the output back, pairing every
   plan op with a node; a BN that an exporter folded into its conv (torchvision exports) is
   unfolded exactly (scale 1, shift = the conv's bias, mean 0, var 1 - eps).

The caller then verifies the new graph against the source on onnxruntime.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from graphgen.blocks import find_block
from graphgen.errors import GraphError
from graphgen.flavors import flavor_of
from graphgen.importers.common import run_onnx
from graphgen.onnx_io import load
from graphgen.plan import (
    BN_EPS,
    INPUT,
    OUTPUT,
    Add,
    BatchNorm,
    Conv,
    GlobalAvgPool,
    Linear,
    MaxPool,
    Op,
    Plan,
    Relu,
    ZeroPadShortcut,
    expand,
)
from graphgen.spec import Spec
from graphgen.weights import Weights

CARRIED_METADATA = ("graphgen.normalize_mean", "graphgen.normalize_std")
PASS_THROUGH = {"Identity", "Dropout", "Flatten", "Reshape", "Squeeze", "Cast"}
TO_THE_END = 2**31 - 1  # a Slice end at least this large runs to the end of its axis


@dataclass
class Node:
    kind: str  # input conv bn relu add maxpool gap fc subsample zeropad
    name: str
    inputs: list[str]
    order: int
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    attrs: dict[str, int] = field(default_factory=dict)
    eps: float = BN_EPS
    key: str = ""  # the canonical tensor this node produces


@dataclass(frozen=True)
class OnnxImport:
    spec: Spec
    weights: Weights
    summary: str
    reference: Callable[[np.ndarray], np.ndarray]
    metadata: dict[str, str] = field(default_factory=dict)  # the source's normalisation, if any
    batch: int | None = None  # the source's fixed batch, if it has one


def import_onnx(path: str | Path, *, image_size: int | None = None) -> OnnxImport:
    model = load(path)
    source = str(path)
    graph = _Canonical(model, source)
    size = graph.image_size or image_size or 224
    if graph.image_size and image_size and image_size != graph.image_size:
        raise GraphError(f"{source} takes {graph.image_size}px images, not {image_size}")
    spec = _infer(graph, size, source)
    plan = expand(spec)
    weights, folded = _Matcher(plan, graph, source).run()
    flavor = flavor_of(spec) or "custom flavour"
    stride = f", stride on {spec.stride_at}" if spec.block_kind.branch.stride_at_matters else ""
    if spec.shortcut == "A":  # where the zeros go is read from the graph's Pads
        where = "on both sides" if spec.zero_pad == "symmetric" else "at the end"
        stride += f", option A (zero channels {where})"
    summary = f"resnet{spec.depth}, {flavor}, {spec.classes} classes{stride}" + (
        ", BN folded into the convs (unfolded exactly)" if folded else ""
    )
    data = model.SerializeToString()
    carried = {p.key: p.value for p in model.metadata_props if p.key in CARRIED_METADATA}
    return OnnxImport(spec, weights, summary, lambda x: run_onnx(data, x), carried, graph.batch)


def _attr(node: onnx.NodeProto, name: str, default: Any = None) -> Any:
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _ints(node: onnx.NodeProto, name: str, default: list[int]) -> list[int]:
    return [int(v) for v in _attr(node, name, default)]


class _Canonical:
    """The graph as plan kinds, keyed by canonical tensor name."""

    def __init__(self, model: onnx.ModelProto, source: str) -> None:
        g = model.graph
        self.source = source
        self.consts = {t.name: numpy_helper.to_array(t) for t in g.initializer}
        self.opsets = list(model.opset_import)
        for node in g.node:
            if node.op_type == "Constant" and _attr(node, "value") is not None:
                value = _attr(node, "value")
                assert isinstance(value, onnx.TensorProto)
                self.consts[node.output[0]] = numpy_helper.to_array(value)
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

    def _const(self, name: str, what: str) -> np.ndarray:
        if name not in self.consts:
            raise GraphError(f"{self.source}: {what} {name!r} is computed, not a stored weight")
        return self.consts[name].astype(np.float32)

    def _canon(self, tensor: str) -> Node:
        if tensor not in self.producer:
            raise GraphError(f"{self.source}: tensor {tensor!r} has no producer")
        order, node = self.producer[tensor]
        op, name, src = node.op_type, node.name or tensor, self.source
        where = f"{src}: {op} node {name!r}"
        if op == "Conv":
            w = self._const(node.input[1], "conv weight")
            k = _ints(node, "kernel_shape", list(w.shape[2:]))
            pads = _ints(node, "pads", [0, 0, 0, 0])
            strides = _ints(node, "strides", [1, 1])
            group, dil = _attr(node, "group", 1), _ints(node, "dilations", [1, 1])
            auto = _attr(node, "auto_pad", b"NOTSET")
            if (
                w.ndim != 4
                or k[0] != k[1]
                or group != 1
                or dil != [1, 1]
                or auto not in (b"NOTSET", "NOTSET")
            ):
                raise GraphError(
                    f"{where}: a {k} conv, group {group}, dilations {dil} is not a ResNet conv"
                )
            if len(set(pads)) != 1 or pads[0] != k[0] // 2 or strides[0] != strides[1]:
                raise GraphError(
                    f"{where}: pads {pads} / strides {strides} are not a ResNet conv's"
                )
            arrays = {"weight": w}
            if len(node.input) > 2 and node.input[2]:
                arrays["bias"] = self._const(node.input[2], "conv bias")
            return Node(
                "conv",
                name,
                [node.input[0]],
                order,
                arrays,
                {"k": k[0], "s": strides[0], "p": pads[0]},
            )
        if op == "BatchNormalization":
            if _attr(node, "spatial", 1) != 1 or _attr(node, "training_mode", 0):
                raise GraphError(f"{where}: a non-spatial or training-mode BN")
            keys = ("weight", "bias", "running_mean", "running_var")
            arrays = {
                k: self._const(x, f"BN {k}") for k, x in zip(keys, node.input[1:5], strict=True)
            }
            eps = float(_attr(node, "epsilon", 1e-5))
            return Node("bn", name, [node.input[0]], order, arrays, eps=eps)
        if op == "Relu":
            return Node("relu", name, [node.input[0]], order)
        if op in ("Add", "Sum") and len(node.input) == 2:
            a, b = node.input
            if self._alias(a) in self.consts or self._alias(b) in self.consts:
                return self._bias_add(node, order, where)
            return Node("add", name, [a, b], order)
        if op == "MaxPool":
            k = _ints(node, "kernel_shape", [])
            pads, strides = _ints(node, "pads", [0] * 4), _ints(node, "strides", [1, 1])
            if k != [3, 3] or set(pads) != {1} or strides != [2, 2] or _attr(node, "ceil_mode", 0):
                raise GraphError(
                    f"{where}: kernel {k} pads {pads} strides {strides}; graphgen's is 3x3/2, pad 1"
                )
            return Node("maxpool", name, [node.input[0]], order)
        if op == "GlobalAveragePool":
            return Node("gap", name, [node.input[0]], order)
        if op == "AveragePool":  # F.avg_pool2d(x, 8) over the last 8x8 map (akamaster's CIFAR)
            k, pads = _ints(node, "kernel_shape", []), _ints(node, "pads", [0] * 4)
            if len(set(k)) != 1 or any(pads) or _attr(node, "ceil_mode", 0):
                raise GraphError(f"{where}: kernel {k} pads {pads}, not a global average")
            return Node("gap", name, [node.input[0]], order, attrs={"k": k[0]})
        if op == "ReduceMean":
            axes = _attr(node, "axes")
            if axes is None and len(node.input) > 1:
                axes = self.consts.get(node.input[1], np.array([])).tolist()
            if sorted(int(a) % 4 for a in axes or []) != [2, 3]:  # NCHW: -1, -2 are spatial
                raise GraphError(f"{where}: a mean over axes {axes}, not the spatial ones")
            return Node("gap", name, [node.input[0]], order)
        if op == "Gemm":
            w = self._const(node.input[1], "fc weight")
            if (
                _attr(node, "transA", 0)
                or _attr(node, "alpha", 1.0) != 1.0
                or _attr(node, "beta", 1.0) != 1.0
            ):
                raise GraphError(f"{where}: a Gemm with transA/alpha/beta is not a plain fc")
            w = w if _attr(node, "transB", 0) else w.T
            arrays = {"weight": w}
            if len(node.input) > 2 and node.input[2]:
                arrays["bias"] = self._const(node.input[2], "fc bias").reshape(-1)
            return Node("fc", name, [node.input[0]], order, arrays)
        if op == "MatMul":
            w = self._const(node.input[1], "fc weight")
            return Node("fc", name, [node.input[0]], order, {"weight": w.T})
        if op == "Slice":
            return self._subsample(node, order, where)
        if op == "Pad":
            return self._zero_pad(node, order, where)
        raise GraphError(f"{where} does not fit a ResNet graphgen expresses")

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
                raise GraphError(f"{self.source}: {what} {name!r} is computed from the image")
            order, node = self.producer[tensor]
            if order not in nodes:
                nodes[order] = node
                stack.extend(node.input)
        from onnx.reference import ReferenceEvaluator

        used = {i for n in nodes.values() for i in n.input if i in self.consts}
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
            raise GraphError(f"{self.source}: cannot evaluate {what} {name!r}: {err}") from None
        return np.asarray(value)

    def _subsample(self, node: onnx.NodeProto, order: int, where: str) -> Node:
        """Option A's `x[:, :, ::s, ::s]`: one Slice over both spatial axes, or one per axis."""
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

    def _zero_pad(self, node: onnx.NodeProto, order: int, where: str) -> Node:
        """Option A's zero channels: a constant Pad of channels alone."""
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

    def _bias_add(self, node: onnx.NodeProto, order: int, where: str) -> Node:
        """MatMul + Add(bias): one fc."""
        a, b = node.input
        const, x = (b, a) if self._alias(b) in self.consts else (a, b)
        fc = self._canon(self._alias(x))
        if fc.kind != "fc" or "bias" in fc.arrays:
            raise GraphError(f"{where}: adds a constant to a {fc.kind}, not to a MatMul")
        fc.arrays["bias"] = self._const(self._alias(const), "fc bias").reshape(-1)
        fc.order = order
        return fc

    def only_consumer(self, tensor: str) -> Node | None:
        users = self.consumers.get(tensor, [])
        return self.nodes[users[0]] if len(users) == 1 else None


@dataclass
class _Unit:
    convs: list[Node]
    bns_after: list[bool]
    projection: Node | None
    preact_bn: bool  # the branch starts with its own BN-ReLU
    out: str
    zero_pad: Node | None = None  # option A: the shortcut's channel padding


def _infer(g: _Canonical, image_size: int, source: str) -> Spec:
    """The spec, by walking the canonical graph forward from the input."""

    def refuse(what: str) -> GraphError:
        return GraphError(f"{source}: {what}; not a ResNet graphgen expresses")

    t, node = g.input, g.only_consumer(g.input)
    data_bn = node is not None and node.kind == "bn"
    if data_bn and node is not None:
        t = _out(g, node)
        node = g.only_consumer(t)
    if node is None or node.kind != "conv":
        raise refuse("the input does not go into one conv (the stem)")
    k, s = node.attrs["k"], node.attrs["s"]
    stem = {(7, 2): "imagenet", (3, 1): "cifar"}.get((k, s))
    if stem is None:
        raise refuse(f"the stem is a {k}x{k}/{s} conv (graphgen's are 7x7/2 and 3x3/1)")
    stem_width = int(node.arrays["weight"].shape[0])
    t = _out(g, node)
    for kind in (
        (["bn"] if _next_kind(g, t) == "bn" else [])
        + ["relu"]
        + (["maxpool"] if stem == "imagenet" else [])
    ):
        nxt = g.only_consumer(t)
        if nxt is None or nxt.kind != kind:
            raise refuse(f"the stem has no {kind} where graphgen's has one")
        t = _out(g, nxt)
    units: list[_Unit] = []
    preact: bool | None = None
    while True:
        add = _closing_add(g, t)
        if add is None:
            break
        unit = _unit(g, t, add, refuse)
        post = g.only_consumer(unit.out)
        is_post = post is not None and post.kind == "relu"
        if preact is None:
            preact = not is_post
        if preact == is_post:
            raise refuse(f"unit {len(units) + 1} mixes pre- and post-activation")
        if is_post and post is not None:
            unit.out = _out(g, post)
        units.append(unit)
        t = unit.out
    if not units:
        raise refuse("no residual additions (plain nets are not imported)")
    final_bn = _next_kind(g, t) == "bn"
    layers: list[int] = []
    widths: list[int] = []
    strides = []
    for i, u in enumerate(units):
        stride = max(c.attrs["s"] for c in u.convs)
        strides.append(stride)
        width = int(u.convs[0].arrays["weight"].shape[0])
        if i == 0 or stride != 1:
            layers.append(0)
            widths.append(width)
        if width != widths[-1]:
            raise refuse(f"unit {i + 1} changes width without a stride")
        layers[-1] += 1
    if strides[0] != 1:
        raise refuse("the first stage strides (graphgen's keeps the stem's resolution)")
    bottleneck = len(units[0].convs) == 3
    if any(len(u.convs) != len(units[0].convs) for u in units):
        raise refuse("units mix basic and bottleneck branches")
    stride_at = "1x1"
    for u in units:
        if bottleneck and u.convs[1].attrs["s"] != 1:
            stride_at = "3x3"
    folded = not any(any(u.bns_after) for u in units)
    changes = [
        s != 1 or u.convs[0].arrays["weight"].shape[1] != u.convs[-1].arrays["weight"].shape[0]
        for u, s in zip(units, strides, strict=True)
    ]
    projections = [u.projection is not None for u in units]
    if not any(projections) and any(changes):  # option A: subsample, pad zero channels
        shortcut, zero_pad = "A", _zero_pad_placement(units, refuse)
    elif any(c and not p for c, p in zip(changes, projections, strict=True)):
        raise refuse("a unit that changes shape has no projection shortcut")
    else:  # C projects where B would not; where every unit changes shape, B and C are one
        shortcut = (
            "C" if any(p and not c for c, p in zip(changes, projections, strict=True)) else "B"
        )
        zero_pad = "symmetric"
    has_bias = any("bias" in c.arrays for u in units for c in (u.convs[0], u.convs[-1]))
    block = find_block(layers=len(units[0].convs), preact=bool(preact))
    classes = g.nodes[g.output]
    if classes.kind != "fc":
        raise refuse(f"the output comes from a {classes.kind}, not a fc")
    spec = Spec(
        layers=tuple(layers),
        widths=tuple(widths),
        block=block.name,
        stem=stem,
        shortcut=shortcut,
        stride_at=stride_at,
        classes=int(classes.arrays["weight"].shape[0]),
        image_size=image_size,
        stem_width=stem_width,
        bottleneck_bias=block.takes_bottleneck_bias and not folded and has_bias,
        data_bn=data_bn,
        first_unit_bn=bool(preact) and units[0].preact_bn,
        zero_pad=zero_pad,
    )
    if preact and not final_bn:
        raise refuse("a pre-activation net without a final BN-ReLU before pooling")
    return spec


def _out(g: _Canonical, node: Node) -> str:
    return node.key


def _next_kind(g: _Canonical, tensor: str) -> str | None:
    node = g.only_consumer(tensor)
    return node.kind if node is not None else None


def _closing_add(g: _Canonical, t: str) -> str | None:
    """The first addition reachable from the stream tensor `t`: its unit's."""
    seen, frontier, adds = {t}, [t], []
    while frontier:
        for user in g.consumers.get(frontier.pop(), []):
            if user in seen:
                continue
            seen.add(user)
            if g.nodes[user].kind == "add":
                adds.append(user)
            elif g.nodes[user].kind in ("gap", "fc"):
                continue
            else:
                frontier.append(user)
    return min(adds, key=lambda a: g.nodes[a].order) if adds else None


def _unit(g: _Canonical, t: str, add: str, refuse: Callable[[str], GraphError]) -> _Unit:
    chains = []
    for start in g.nodes[add].inputs:
        chain, x = [], start
        while x != t:
            node = g.nodes[x]
            if node.kind not in ("conv", "bn", "relu", *OPTION_A) or len(node.inputs) != 1:
                raise refuse(f"a {node.kind} ({node.name}) inside a unit")
            chain.append(node)
            x = node.inputs[0]
        chains.append(chain[::-1])
    chains.sort(key=lambda c: sum(n.kind == "conv" for n in c))
    shortcut, branch = chains
    convs = [n for n in branch if n.kind == "conv"]
    if len(convs) not in (2, 3):
        raise refuse(f"a unit's branch has {len(convs)} convs (basic has 2, bottleneck 3)")
    bns_after = [
        i + 1 < len(branch) and branch[i + 1].kind == "bn"
        for i, n in enumerate(branch)
        if n.kind == "conv"
    ]
    if any(n.kind in OPTION_A for n in branch):
        raise refuse("a unit's branch subsamples or pads without a conv")
    projection = next((n for n in shortcut if n.kind == "conv"), None)
    zero_pad = next((n for n in shortcut if n.kind == "zeropad"), None)
    if projection is not None and any(n.kind in OPTION_A for n in shortcut):
        raise refuse("a shortcut both projects and zero-pads")
    preact_bn = bool(branch) and branch[0].kind == "bn"
    return _Unit(convs, bns_after, projection, preact_bn, add, zero_pad)


OPTION_A = ("subsample", "zeropad")


def _zero_pad_placement(units: list[_Unit], refuse: Callable[[str], GraphError]) -> str:
    """Where option A's zeros go, read from the Pads: "symmetric" (graphgen's default) when
    each pads (new channels) // 2 in front, "end" when all go behind the identity channels."""
    found = set()
    for i, u in enumerate(units):
        if u.zero_pad is None:
            continue
        before, after = u.zero_pad.attrs["before"], u.zero_pad.attrs["after"]
        if before == (before + after) // 2:
            found.add("symmetric")
        elif before == 0:
            found.add("end")
        else:
            raise refuse(
                f"unit {i + 1} pads {before} zero channels in front and {after} behind "
                "(graphgen places them symmetrically or all at the end)"
            )
    if len(found) > 1:
        raise refuse("units place option A's zero channels differently")
    return found.pop() if found else "symmetric"


class _Matcher:
    """Pairs every plan op with a canonical node, from the output back."""

    def __init__(self, plan: Plan, g: _Canonical, source: str) -> None:
        self.plan, self.g, self.source = plan, g, source
        self.producer: dict[str, Op] = {op.out: op for op in plan.ops}
        self.memo: dict[str, str] = {}
        self.trail: list[str] = []
        self.failure = ""
        self.failure_index = -1

    def run(self) -> tuple[Weights, bool]:
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(max(limit, 20 * len(self.plan.ops) + 1000))
        try:
            ok = self.match(OUTPUT, self.g.output)
        finally:
            sys.setrecursionlimit(limit)
        if not ok:
            raise GraphError(f"{self.source} does not match {self.plan.spec.name}: {self.failure}")
        return self._weights()

    def fail(self, op: Op, why: str) -> bool:
        index = self.plan.ops.index(op)
        if index >= self.failure_index:
            self.failure, self.failure_index = f"{op.name}: {why}", index
        return False

    def match(self, pt: str, ct: str) -> bool:
        if pt in self.memo:
            return bool(self.memo[pt] == ct)
        ok = ct == self.g.input if pt == INPUT else self.match_op(self.producer[pt], ct)
        if ok:
            self.memo[pt] = ct
            self.trail.append(pt)
        return ok

    def match_op(self, op: Op, ct: str) -> bool:
        node = self.g.nodes[ct]
        if isinstance(op, Add):
            if node.kind != "add":
                return self.fail(op, f"expected an addition, found a {node.kind} ({node.name})")
            a, b = node.inputs
            for first, second in ((a, b), (b, a)):
                mark = len(self.trail)
                if self.match(op.a, first) and self.match(op.b, second):
                    return True
                for key in self.trail[mark:]:
                    del self.memo[key]
                del self.trail[mark:]
            return False
        if isinstance(op, ZeroPadShortcut):
            return self.match_zero_pad(op, ct)
        if isinstance(op, BatchNorm) and node.kind == "conv" and "bias" in node.arrays:
            producer = self.producer.get(op.x)
            if isinstance(producer, Conv) and not producer.bias:
                return self.match(op.x, ct)  # folded into the conv: unfolded in _weights
        kind = {
            Conv: "conv",
            BatchNorm: "bn",
            Relu: "relu",
            MaxPool: "maxpool",
            GlobalAvgPool: "gap",
            Linear: "fc",
        }.get(type(op))
        if node.kind != kind:
            return self.fail(op, f"expected a {kind}, found a {node.kind} ({node.name})")
        if isinstance(op, Conv):
            w = node.arrays["weight"]
            want = (op.cout, op.cin, op.kernel, op.kernel)
            if w.shape != want or node.attrs["s"] != op.stride:
                return self.fail(
                    op, f"{node.name} is {w.shape}/{node.attrs['s']}, expected {want}/{op.stride}"
                )
            if op.bias and "bias" not in node.arrays:
                return self.fail(op, f"{node.name} has no bias")
        elif isinstance(op, BatchNorm) and node.arrays["weight"].shape != (op.channels,):
            return self.fail(op, f"{node.name} has {node.arrays['weight'].shape[0]} channels")
        elif isinstance(op, GlobalAvgPool) and node.attrs.get("k", op.in_hw[0]) != op.in_hw[0]:
            k = node.attrs["k"]
            return self.fail(op, f"{node.name} averages {k}x{k} windows of a {op.in_hw} map")
        elif isinstance(op, Linear) and node.arrays["weight"].shape != (
            op.out_features,
            op.in_features,
        ):
            return self.fail(op, f"{node.name} is {node.arrays['weight'].shape}")
        return self.match(op.x, node.inputs[0])

    def match_zero_pad(self, op: ZeroPadShortcut, ct: str) -> bool:
        """Option A: the Pad (where channels change), then the Slice (where it strides)."""
        node = self.g.nodes[ct]
        if op.cout != op.cin:
            pads = (op.pad_before, op.pad_after)
            if node.kind != "zeropad" or (node.attrs["before"], node.attrs["after"]) != pads:
                found = f"{node.kind} ({node.name}) {node.attrs}"
                return self.fail(op, f"expected zero channels {pads}, found a {found}")
            node = self.g.nodes[node.inputs[0]]
        if op.stride != 1:
            if node.kind != "subsample" or node.attrs["s"] != op.stride:
                return self.fail(op, f"expected a subsample by {op.stride}, found {node.name}")
            node = self.g.nodes[node.inputs[0]]
        return self.match(op.x, node.key)

    def _weights(self) -> tuple[Weights, bool]:
        weights: Weights = {}
        folded = False
        for op in self.plan.ops:
            node = self.g.nodes[self.memo[op.out]]
            if isinstance(op, Conv):
                weights[f"{op.name}.weight"] = node.arrays["weight"]
                if op.bias:
                    weights[f"{op.name}.bias"] = node.arrays["bias"]
            elif isinstance(op, BatchNorm) and node.kind == "conv":
                folded = True
                c = op.channels
                weights[f"{op.name}.weight"] = np.ones(c, np.float32)
                weights[f"{op.name}.bias"] = node.arrays["bias"]
                weights[f"{op.name}.running_mean"] = np.zeros(c, np.float32)
                weights[f"{op.name}.running_var"] = np.full(c, 1 - BN_EPS, np.float32)
            elif isinstance(op, BatchNorm):
                a = node.arrays
                if not op.affine:
                    if np.any(a["weight"] != 1) or np.any(a["bias"] != 0):
                        raise GraphError(
                            f"{self.source}: the input BN {node.name} has a scale or shift; "
                            "graphgen's data BN (Gluon v2's) has neither"
                        )
                else:
                    weights[f"{op.name}.weight"] = a["weight"]
                    weights[f"{op.name}.bias"] = a["bias"]
                var = a["running_var"].astype(np.float64) + node.eps - BN_EPS
                if np.any(var + BN_EPS <= 0):
                    raise GraphError(f"{self.source}: {node.name}'s variance + eps is not positive")
                weights[f"{op.name}.running_mean"] = a["running_mean"]
                weights[f"{op.name}.running_var"] = var.astype(np.float32)
            elif isinstance(op, Linear):
                weights[f"{op.name}.weight"] = node.arrays["weight"]
                bias = node.arrays.get("bias")
                weights[f"{op.name}.bias"] = (
                    bias if bias is not None else np.zeros(op.out_features, np.float32)
                )
        for node in self.g.nodes.values():
            if node.kind == "conv" and "bias" in node.arrays:
                used = any(
                    self.g.nodes[self.memo[op.out]] is node
                    and (isinstance(op, BatchNorm) or (isinstance(op, Conv) and op.bias))
                    for op in self.plan.ops
                )
                if not used:
                    raise GraphError(
                        f"{self.source}: conv {node.name}'s bias has no place in the plan"
                    )
        return {k: np.ascontiguousarray(v, np.float32) for k, v in weights.items()}, folded
