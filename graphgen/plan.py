"""The one intermediate representation: a spec expanded into ordered, named, shaped operations.

Every emitter walks this list and nothing else describes the network's structure. Operation
names are the source library's module paths (torchvision's `conv1`, `layer2.0.downsample.0`,
`fc`; timm ResNetV2's `stem.conv`, `stages.1.blocks.0.norm1`: graphgen.layouts), so parameter
names (`<name>.weight`, `<name>.running_mean`, ...) are the same in the ONNX graph, the torch
module and the library's checkpoints.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from graphgen.spec import Spec

Shape = tuple[int, ...]  # per-sample shape: (C, H, W), or (features,) after pooling
BN_EPS = 1e-5  # every BatchNorm's epsilon: torch's and ONNX's default


@dataclass(frozen=True)
class Conv:
    name: str
    x: str
    out: str
    cin: int
    cout: int
    kernel: int
    stride: int
    pad: int
    in_hw: tuple[int, int]
    out_hw: tuple[int, int]
    bias: bool = False  # after BN folding, or Gluon v1's bottleneck 1x1s; the paper's have none
    groups: int = 1  # ResNeXt's cardinality: each output channel reads cin / groups inputs

    @property
    def shape(self) -> Shape:
        return (self.cout, *self.out_hw)

    def params(self) -> dict[str, Shape]:
        shapes: dict[str, Shape] = {
            f"{self.name}.weight": (self.cout, self.cin // self.groups, self.kernel, self.kernel)
        }
        if self.bias:
            shapes[f"{self.name}.bias"] = (self.cout,)
        return shapes

    def buffers(self) -> dict[str, Shape]:
        return {}

    @property
    def macs(self) -> int:
        fan_in = self.cin // self.groups * self.kernel**2
        return self.cout * self.out_hw[0] * self.out_hw[1] * fan_in


@dataclass(frozen=True)
class BatchNorm:
    name: str
    x: str
    out: str
    channels: int
    hw: tuple[int, int]
    affine: bool = True  # False: no learned scale or shift (Gluon v2's BN on the input data)

    @property
    def shape(self) -> Shape:
        return (self.channels, *self.hw)

    def params(self) -> dict[str, Shape]:
        if not self.affine:
            return {}
        return {f"{self.name}.weight": (self.channels,), f"{self.name}.bias": (self.channels,)}

    def buffers(self) -> dict[str, Shape]:
        return {
            f"{self.name}.running_mean": (self.channels,),
            f"{self.name}.running_var": (self.channels,),
        }

    macs = 0


@dataclass(frozen=True)
class _Parameterless:
    def params(self) -> dict[str, Shape]:
        return {}

    def buffers(self) -> dict[str, Shape]:
        return {}

    macs = 0


@dataclass(frozen=True)
class Relu(_Parameterless):
    name: str
    x: str
    out: str
    shape: Shape


@dataclass(frozen=True)
class Add(_Parameterless):
    """The shortcut's element-wise addition, F(x) + x (He et al. 2015, eq. 1)."""

    name: str
    a: str
    b: str
    out: str
    shape: Shape


@dataclass(frozen=True)
class MaxPool(_Parameterless):
    name: str
    x: str
    out: str
    channels: int
    kernel: int
    stride: int
    pad: int
    in_hw: tuple[int, int]
    out_hw: tuple[int, int]

    @property
    def shape(self) -> Shape:
        return (self.channels, *self.out_hw)


@dataclass(frozen=True)
class ZeroPadShortcut(_Parameterless):
    """Option A: identity subsampled by the stride, new channels zero-padded (He et al. 2015, 3.3).

    The paper does not say where the zeros go: `zero_pad` "symmetric" puts `pad_before`
    channels in front and `pad_after` behind (akamaster's PyTorch CIFAR ResNets, tensorpack),
    "end" puts them all behind the identity channels (fb.resnet.torch). Every emitter reads the
    placement from these two properties.
    """

    name: str
    x: str
    out: str
    cin: int
    cout: int
    stride: int
    in_hw: tuple[int, int]
    out_hw: tuple[int, int]
    zero_pad: str = "symmetric"

    @property
    def pad_before(self) -> int:
        return 0 if self.zero_pad == "end" else (self.cout - self.cin) // 2

    @property
    def pad_after(self) -> int:
        return self.cout - self.cin - self.pad_before

    @property
    def shape(self) -> Shape:
        return (self.cout, *self.out_hw)


@dataclass(frozen=True)
class AvgPool(_Parameterless):
    """ResNet-D's shortcut pooling (timm's `downsample_avg`, He et al. 2019 "Bag of Tricks"):
    `kernel`-square windows in ceil mode, no padding; a window that overhangs the map averages
    what it covers (torch's `ceil_mode=True, count_include_pad=False`)."""

    name: str
    x: str
    out: str
    channels: int
    kernel: int
    stride: int
    in_hw: tuple[int, int]
    out_hw: tuple[int, int]

    @property
    def shape(self) -> Shape:
        return (self.channels, *self.out_hw)


@dataclass(frozen=True)
class Sigmoid(_Parameterless):
    """The attention gate."""

    name: str
    x: str
    out: str
    shape: Shape


@dataclass(frozen=True)
class Scale(_Parameterless):
    """`x` times a per-channel `gate` of shape (C, 1, 1), broadcast over the map: how SE and ECA
    re-weight a branch's channels."""

    name: str
    x: str
    gate: str
    out: str
    shape: Shape


@dataclass(frozen=True)
class ChannelConv:
    """ECA's 1-d conv across the channels of a pooled (C, 1, 1) tensor: one weight of shape
    (1, 1, kernel), no bias, zero padding at both ends of the channel axis."""

    name: str
    x: str
    out: str
    channels: int
    kernel: int

    @property
    def shape(self) -> Shape:
        return (self.channels, 1, 1)

    def params(self) -> dict[str, Shape]:
        return {f"{self.name}.weight": (1, 1, self.kernel)}

    def buffers(self) -> dict[str, Shape]:
        return {}

    @property
    def macs(self) -> int:
        return self.channels * self.kernel


@dataclass(frozen=True)
class GlobalAvgPool(_Parameterless):
    """Global average pooling, flattened to a feature vector; with `flatten` False it keeps the
    (C, 1, 1) map (attention's squeeze, a conv head's input)."""

    name: str
    x: str
    out: str
    channels: int
    in_hw: tuple[int, int]
    flatten: bool = True

    @property
    def shape(self) -> Shape:
        return (self.channels,) if self.flatten else (self.channels, 1, 1)


@dataclass(frozen=True)
class Linear:
    """The classifier. With `conv`, its weight is a 1x1 conv's, (out, in, 1, 1), applied to the
    pooled (C, 1, 1) map and flattened after (timm ResNetV2's head, `use_conv=True`)."""

    name: str
    x: str
    out: str
    in_features: int
    out_features: int
    conv: bool = False

    @property
    def shape(self) -> Shape:
        return (self.out_features,)

    def params(self) -> dict[str, Shape]:
        kernel = (1, 1) if self.conv else ()
        return {
            f"{self.name}.weight": (self.out_features, self.in_features, *kernel),
            f"{self.name}.bias": (self.out_features,),
        }

    def buffers(self) -> dict[str, Shape]:
        return {}

    @property
    def macs(self) -> int:
        return self.in_features * self.out_features


Op = (
    Conv
    | BatchNorm
    | Relu
    | Add
    | MaxPool
    | ZeroPadShortcut
    | AvgPool
    | Sigmoid
    | Scale
    | ChannelConv
    | GlobalAvgPool
    | Linear
)


def inputs(op: Op) -> tuple[str, ...]:
    """The tensors an op reads: two for the addition and the gated scale, one otherwise."""
    if isinstance(op, Add):
        return op.a, op.b
    if isinstance(op, Scale):
        return op.x, op.gate
    return (op.x,)


INPUT = "input"
OUTPUT = "logits"


@dataclass(frozen=True)
class Plan:
    spec: Spec
    ops: tuple[Op, ...]
    folded: bool = False

    @property
    def input_shape(self) -> Shape:
        return (3, self.spec.image_size, self.spec.image_size)

    @property
    def output_shape(self) -> Shape:
        return (self.spec.classes,)

    def __iter__(self) -> Iterator[Op]:
        return iter(self.ops)

    def param_shapes(self) -> dict[str, Shape]:
        """Trainable parameters in plan order: the torch module's `parameters()`."""
        return {k: v for op in self.ops for k, v in op.params().items()}

    def buffer_shapes(self) -> dict[str, Shape]:
        """BN running statistics: state that is not a parameter."""
        return {k: v for op in self.ops for k, v in op.buffers().items()}

    def tensor_shapes(self) -> dict[str, Shape]:
        """Every state tensor in plan order: the graph's initializers, the state_dict's keys."""
        shapes: dict[str, Shape] = {}
        for op in self.ops:
            shapes.update(op.params())
            shapes.update(op.buffers())
        return shapes

    @property
    def params(self) -> int:
        return sum(_numel(s) for s in self.param_shapes().values())

    @property
    def macs(self) -> int:
        """Multiply-accumulates of the conv and fc layers at batch 1: the paper's "FLOPs"."""
        return sum(op.macs for op in self.ops)


def last_use(ops: Iterable[Op]) -> dict[int, list[str]]:
    """Op index -> tensors no later op reads (in a plan, or a block's ops), so the interpreters
    free them early and the cost model knows what is live."""
    last: dict[str, int] = {}
    for index, op in enumerate(ops):
        for name in inputs(op):
            last[name] = index
    by_index: dict[int, list[str]] = {}
    for name, index in last.items():
        by_index.setdefault(index, []).append(name)
    return by_index


def _numel(shape: Shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def conv_out(size: int, kernel: int, stride: int, pad: int) -> int:
    return (size + 2 * pad - kernel) // stride + 1


def pool_out(size: int, kernel: int, stride: int) -> int:
    """A ceil-mode pool's output size without padding: the last window may overhang the map but
    must start inside it (torch's rule, which ONNX's ceil_mode follows)."""
    out = -(-(size - kernel) // stride) + 1
    return out - 1 if (out - 1) * stride >= size else out


class Builder:
    """Appends ops and threads the current tensor (`x`, its channels `c`, its size `hw`)
    through them: `expand` writes the stem and head with it, each block kind's unit
    (graphgen.blocks) its block."""

    def __init__(self, spec: Spec) -> None:
        self.ops: list[Op] = []
        self.x = INPUT
        self.c = 3
        self.hw = (spec.image_size, spec.image_size)
        self.zero_pad = spec.zero_pad

    def conv(
        self,
        name: str,
        cout: int,
        kernel: int,
        stride: int,
        x: str | None = None,
        cin: int | None = None,
        hw: tuple[int, int] | None = None,
        bias: bool = False,
        groups: int = 1,
    ) -> str:
        x, cin, hw = x or self.x, cin or self.c, hw or self.hw
        pad = kernel // 2
        out_hw = (conv_out(hw[0], kernel, stride, pad), conv_out(hw[1], kernel, stride, pad))
        op = Conv(name, x, name, cin, cout, kernel, stride, pad, hw, out_hw, bias, groups)
        self.ops.append(op)
        self.x, self.c, self.hw = name, cout, out_hw
        return name

    def bn(self, name: str, *, affine: bool = True) -> str:
        self.ops.append(BatchNorm(name, self.x, name, self.c, self.hw, affine))
        self.x = name
        return name

    def relu(self, name: str) -> str:
        self.ops.append(Relu(name, self.x, name, (self.c, *self.hw)))
        self.x = name
        return name


def expand(spec: Spec) -> Plan:
    """Expand a spec into the ordered op list (He et al. 2015, Table 1 and section 4.2), named
    as the block kind's layout (graphgen.layouts) says."""
    from graphgen.stems import write_stem

    kind = spec.block_kind
    layout = kind.layout
    b = Builder(spec)
    if spec.data_bn:  # Gluon v2 normalises the images with running statistics alone
        b.bn("bn_data", affine=False)
    write_stem(b, spec)
    for stage, (blocks, width) in enumerate(zip(spec.layers, spec.widths, strict=True)):
        for index in range(blocks):
            stride = 2 if stage > 0 and index == 0 else 1
            # The first unit takes the stem's BN-ReLU as its own, where the stem has one.
            first = stage == index == 0 and layout.stem_norm
            kind.unit(b, spec, layout.block(stage, index), width, stride, first=first)
    if kind.preact:  # the units end on an addition: one last BN-ReLU before pooling
        b.bn(layout.final_bn)
        b.relu(layout.final_relu)

    flatten = not layout.conv_head
    b.ops.append(GlobalAvgPool(layout.pool, b.x, layout.pool, b.c, b.hw, flatten=flatten))
    b.ops.append(Linear(layout.fc, layout.pool, OUTPUT, b.c, spec.classes, conv=not flatten))
    return Plan(spec, tuple(b.ops))


def fold_bn(plan: Plan) -> Plan:
    """The same network with every BatchNorm merged into the conv before it (a conv bias)."""
    if plan.folded:
        return plan
    foldable = bn_producers(plan)
    folded_convs = set(foldable.values())
    rename: dict[str, str] = {}
    ops: list[Op] = []
    for op in plan.ops:
        if isinstance(op, BatchNorm) and op.name in foldable:
            rename[op.out] = rename.get(op.x, op.x)
            continue
        op = _rename_inputs(op, rename)
        if isinstance(op, Conv) and op.name in folded_convs:
            op = dataclasses.replace(op, bias=True)
        ops.append(op)
    return Plan(plan.spec, tuple(ops), folded=True)


def _rename_inputs(op: Op, rename: dict[str, str]) -> Op:
    changes = {
        k: rename[getattr(op, k)]
        for k in ("x", "a", "b", "gate")
        if hasattr(op, k) and getattr(op, k) in rename
    }
    return dataclasses.replace(op, **changes) if changes else op  # type: ignore[arg-type]


def bn_producers(plan: Plan) -> dict[str, str]:
    """BatchNorm name -> the conv it directly follows: what folding merges. A pre-activation
    unit's first BN reads the residual stream, not a conv, and stays a BatchNorm."""
    producers = {op.out: op.name for op in plan.ops if isinstance(op, Conv)}
    return {
        op.name: producers[op.x]
        for op in plan.ops
        if isinstance(op, BatchNorm) and op.x in producers
    }
