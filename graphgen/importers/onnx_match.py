"""Step 3 of the ONNX import: match the inferred plan against the canonical graph from the
output back, pairing every plan op with a node, and read the plan's weights off the pairs. A BN
that an exporter folded into its conv (torchvision exports) is unfolded exactly (scale 1,
shift = the conv's bias or 0 where it has none, mean 0, var 1 - eps).
"""

from __future__ import annotations

import sys

import numpy as np

from graphgen.errors import GraphError
from graphgen.importers.onnx_canonical import Canonical, Node
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


class Matcher:
    """Pairs every plan op with a canonical node, from the output back."""

    def __init__(self, plan: Plan, g: Canonical, source: str) -> None:
        self.plan, self.g, self.source = plan, g, source
        self.producer: dict[str, Op] = {op.out: op for op in plan.ops}
        self.memo: dict[str, str] = {}
        self.trail: list[str] = []
        self.failure = ""
        self.failure_index = -1
        self.deepest = 0  # the most ops paired at once: how near a failed match came

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
            self.deepest = max(self.deepest, len(self.memo))
        return ok

    def match_op(self, op: Op, ct: str) -> bool:
        node = self.g.nodes[ct]
        if isinstance(op, Add | Scale):
            joint = "add" if isinstance(op, Add) else "scale"
            if node.kind != joint:
                return self.fail(op, f"expected a {joint}, found a {node.kind} ({node.name})")
            a, b = node.inputs
            for first, second in ((a, b), (b, a)):
                mark = len(self.trail)
                left, right = (op.a, op.b) if isinstance(op, Add) else (op.x, op.gate)
                if self.match(left, first) and self.match(right, second):
                    return True
                for key in self.trail[mark:]:
                    del self.memo[key]
                del self.trail[mark:]
            return False
        if isinstance(op, ZeroPadShortcut):
            return self.match_zero_pad(op, ct)
        # A BN folded into its conv; an exporter may drop a shift of zeros (a BN whose scale
        # and shift are 0, as timm's zero_init_last leaves the last of each unit).
        if isinstance(op, BatchNorm) and node.kind == "conv":
            producer = self.producer.get(op.x)
            if isinstance(producer, Conv) and not producer.bias:
                return self.match(op.x, ct)  # folded into the conv: unfolded in _weights
        if isinstance(op, Linear) and op.conv:
            return self.match_conv_head(op, node)
        kind = {
            Conv: "conv",
            BatchNorm: "bn",
            Relu: "relu",
            MaxPool: "maxpool",
            GlobalAvgPool: "gap",
            Linear: "fc",
            AvgPool: "avgpool",
            Sigmoid: "sigmoid",
            ChannelConv: "chconv",
        }.get(type(op))
        if node.kind != kind:
            return self.fail(op, f"expected a {kind}, found a {node.kind} ({node.name})")
        if isinstance(op, Conv):
            w = node.arrays["weight"]
            want = (op.cout, op.cin // op.groups, op.kernel, op.kernel)
            if w.shape != want or node.attrs["s"] != op.stride:
                return self.fail(
                    op, f"{node.name} is {w.shape}/{node.attrs['s']}, expected {want}/{op.stride}"
                )
            if node.attrs.get("g", 1) != op.groups:
                return self.fail(
                    op, f"{node.name} has {node.attrs.get('g')} groups, not {op.groups}"
                )
            if op.bias and "bias" not in node.arrays:
                return self.fail(op, f"{node.name} has no bias")
        elif isinstance(op, BatchNorm) and node.arrays["weight"].shape != (op.channels,):
            return self.fail(op, f"{node.name} has {node.arrays['weight'].shape[0]} channels")
        elif isinstance(op, AvgPool) and (node.attrs["k"], node.attrs["s"]) != (
            op.kernel,
            op.stride,
        ):
            return self.fail(op, f"{node.name} pools {node.attrs}, not {op.kernel}/{op.stride}")
        elif isinstance(op, ChannelConv) and node.attrs["k"] != op.kernel:
            return self.fail(op, f"{node.name} has kernel {node.attrs['k']}, not {op.kernel}")
        elif isinstance(op, GlobalAvgPool) and node.attrs.get("k", op.in_hw[0]) != op.in_hw[0]:
            k = node.attrs["k"]
            return self.fail(op, f"{node.name} averages {k}x{k} windows of a {op.in_hw} map")
        elif isinstance(op, Linear) and node.arrays["weight"].shape != (
            op.out_features,
            op.in_features,
        ):
            return self.fail(op, f"{node.name} is {node.arrays['weight'].shape}")
        return self.match(op.x, node.inputs[0])

    def match_conv_head(self, op: Linear, node: Node) -> bool:
        """timm ResNetV2's classifier: a 1x1 conv on the pooled map (its bias may be dropped by
        an exporter where it is all zeros, as timm initialises it)."""
        want = (op.out_features, op.in_features, 1, 1)
        if node.kind != "conv" or node.arrays["weight"].shape != want:
            return self.fail(op, f"expected a 1x1 conv {want}, found {node.name}")
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
                weights[f"{op.name}.bias"] = node.arrays.get("bias", np.zeros(c, np.float32))
                weights[f"{op.name}.running_mean"] = np.zeros(c, np.float32)
                weights[f"{op.name}.running_var"] = np.full(c, 1 - BN_EPS, np.float32)
            elif isinstance(op, BatchNorm):
                weights.update(self._bn_weights(op, node))
            elif isinstance(op, ChannelConv):
                weights[f"{op.name}.weight"] = node.arrays["weight"]
            elif isinstance(op, Linear):
                weights[f"{op.name}.weight"] = node.arrays["weight"]
                bias = node.arrays.get("bias")
                weights[f"{op.name}.bias"] = (
                    bias if bias is not None else np.zeros(op.out_features, np.float32)
                )
        self._check_conv_biases_placed()
        return {k: np.ascontiguousarray(v, np.float32) for k, v in weights.items()}, folded

    def _bn_weights(self, op: BatchNorm, node: Node) -> Weights:
        """A BN's arrays under the plan's names, its variance moved to graphgen's eps; a data
        BN (no affine) must have neither scale nor shift."""
        weights: Weights = {}
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
        return weights

    def _check_conv_biases_placed(self) -> None:
        """Every conv bias of the source is a plan weight (a conv bias or a folded BN's shift):
        none is dropped silently."""
        for node in self.g.nodes.values():
            if node.kind == "conv" and "bias" in node.arrays:
                used = any(
                    self.g.nodes[self.memo[op.out]] is node
                    and (isinstance(op, BatchNorm | Linear) or (isinstance(op, Conv) and op.bias))
                    for op in self.plan.ops
                )
                if not used:
                    raise GraphError(
                        f"{self.source}: conv {node.name}'s bias has no place in the plan"
                    )
