"""Block kinds as data: one row per kind of residual unit, and the ops each unit appends.

A kind is a residual branch (its convs: two 3x3, or 1x1-3x3-1x1) wrapped in a unit: the original
post-activation unit (He et al. 2015) or the pre-activation one (He et al. 2016). Everything that
depends on the kind (depth counting, names, flavours, importers, the plan) reads these rows, not
the spelling of the spec's `block` string. A new kind is one `register_block` row, plus its unit
function where no existing one fits; tests/test_blocks.py checks every registered kind.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, NamedTuple, Protocol

from graphgen.attention import write_attention
from graphgen.errors import SpecError
from graphgen.layouts import RESNETV2, TORCHVISION, Layout
from graphgen.plan import Add, AvgPool, Builder, ZeroPadShortcut, pool_out

if TYPE_CHECKING:
    from graphgen.spec import Spec


class BranchConv(NamedTuple):
    kernel: int
    channels: int
    stride: int
    groups: int = 1


@dataclass(frozen=True)
class Branch:
    """The residual branch's convs, which a post- and a pre-activation unit share."""

    name: str  # "basic", "bottleneck": what a CIFAR net not of basic blocks adds to its name
    expansion: int  # output channels per unit of stage width (torchvision's `block.expansion`)
    layers: int  # weighted layers per block, as the paper counts depth
    stride_at_matters: bool  # the spec's `stride_at` picks which conv strides
    convs: Callable[[Spec, int, int], tuple[BranchConv, ...]]  # (spec, width, stride)
    takes_groups: bool = False  # the spec's groups and width_per_group shape it (ResNeXt, Wide)


class Unit(Protocol):
    """Appends one block's ops (named `prefix.*`) to the builder, reading `b.x` as its input."""

    def __call__(
        self, b: Builder, spec: Spec, prefix: str, width: int, stride: int, *, first: bool
    ) -> None: ...


@dataclass(frozen=True)
class BlockKind:
    name: str  # the spec's `block` value
    branch: Branch
    preact: bool  # pre-activation (BN-ReLU before each conv; a final BN-ReLU before pooling)
    unit: Unit
    takes_bottleneck_bias: bool = False  # the spec's bottleneck_bias applies (Gluon v1)
    layout: Layout = TORCHVISION  # whose names (graphgen.layouts), and the stem that goes with it

    @property
    def expansion(self) -> int:
        return self.branch.expansion

    @property
    def layers(self) -> int:
        return self.branch.layers


_KINDS: dict[str, BlockKind] = {}
BLOCK_KINDS: Mapping[str, BlockKind] = MappingProxyType(_KINDS)


def register_block(kind: BlockKind) -> BlockKind:
    if kind.name in _KINDS:
        raise ValueError(f"block kind {kind.name!r} is already registered: choose another name")
    _KINDS[kind.name] = kind
    return kind


def block_kind(name: object) -> BlockKind:
    if not isinstance(name, str) or name not in _KINDS:
        raise SpecError(f"unknown block {name!r}; choose one of {', '.join(_KINDS)}")
    return _KINDS[name]


def find_block(**features: object) -> BlockKind:
    """The one registered kind with these attribute values, e.g. `find_block(layers=3,
    preact=True)`: how importers and flavours name the kind they found or want."""
    found = [k for k in _KINDS.values() if all(getattr(k, f) == v for f, v in features.items())]
    if len(found) != 1:
        said = ", ".join(f"{f}={v!r}" for f, v in features.items())
        raise LookupError(f"{len(found)} block kinds have {said}, not one")
    return found[0]


def _basic_convs(spec: Spec, width: int, stride: int) -> tuple[BranchConv, ...]:
    return BranchConv(3, width, stride), BranchConv(3, width, 1)


def bottleneck_width(spec: Spec, width: int) -> int:
    """The 3x3's channels: torchvision's `int(planes * (width_per_group / 64.)) * groups`, which
    is the stage width for the paper's nets, `groups` x 4 per 64 for ResNeXt-50 32x4d and twice
    the stage width for Wide ResNet-50-2 (groups 1, 128 per group)."""
    return int(width * (spec.width_per_group / 64.0)) * spec.groups


def _bottleneck_convs(spec: Spec, width: int, stride: int) -> tuple[BranchConv, ...]:
    """1x1-3x3-1x1, the stride on the first 1x1 (the paper) or on the 3x3 (torchvision's v1.5);
    the 3x3 grouped for ResNeXt."""
    s1, s3 = (stride, 1) if spec.stride_at == "1x1" else (1, stride)
    mid = bottleneck_width(spec, width)
    cout = width * BOTTLENECK.expansion
    return (
        BranchConv(1, mid, s1),
        BranchConv(3, mid, s3, spec.groups),
        BranchConv(1, cout, 1),
    )


BASIC = Branch("basic", expansion=1, layers=2, stride_at_matters=False, convs=_basic_convs)
BOTTLENECK = Branch(
    "bottleneck",
    expansion=4,
    layers=3,
    stride_at_matters=True,
    convs=_bottleneck_convs,
    takes_groups=True,
)


def post_activation_unit(
    b: Builder, spec: Spec, prefix: str, width: int, stride: int, *, first: bool
) -> None:
    """The original unit (He et al. 2015, Fig. 2 and 5): conv-BN-ReLU..., conv-BN, add, ReLU.
    Attention (SE, ECA) re-weights the branch's channels after its last BN, where timm puts it."""
    layout = spec.block_kind.layout
    x, cin, hw = b.x, b.c, b.hw
    convs = spec.block_kind.branch.convs(spec, width, stride)
    for i, (kernel, channels, s, groups) in enumerate(convs, 1):
        bias = spec.bottleneck_bias and kernel == 1  # Gluon v1: both 1x1s have a bias
        b.conv(f"{prefix}.conv{i}", channels, kernel, s, bias=bias, groups=groups)
        b.bn(f"{prefix}.{layout.bn.format(i)}")
        if i < len(convs):
            b.relu(f"{prefix}.{layout.relu.format(i)}")
    write_attention(b, spec, prefix)
    residual, out_hw, cout = b.x, b.hw, b.c
    shortcut = _shortcut(b, spec, prefix, x, cin, cout, stride, hw, out_hw)
    _join(b, prefix, residual, shortcut, cout, out_hw)
    b.relu(f"{prefix}.relu")


def pre_activation_unit(
    b: Builder, spec: Spec, prefix: str, width: int, stride: int, *, first: bool
) -> None:
    """A full pre-activation unit (He et al. 2016, "Identity Mappings in Deep Residual
    Networks"): BN-ReLU-conv twice (three times for a bottleneck), no ReLU after the addition.

    A projection shortcut reads the pre-activated input and has no BN. The network's first unit
    takes the stem's own BN-ReLU as its activation ("right after conv1, before splitting"),
    unless the spec's `first_unit_bn` gives it its own (Gluon v2).
    """
    layout = spec.block_kind.layout
    first = first and not spec.first_unit_bn
    x, cin, hw = b.x, b.c, b.hw
    convs = spec.block_kind.branch.convs(spec, width, stride)
    pre = x
    for i, (kernel, channels, s, groups) in enumerate(convs, 1):
        if i > 1 or not first:
            b.bn(f"{prefix}.{layout.bn.format(i)}")
            b.relu(f"{prefix}.{layout.relu.format(i)}")
        if i == 1:
            pre = b.x
        b.conv(f"{prefix}.conv{i}", channels, kernel, s, groups=groups)
    residual, out_hw, cout = b.x, b.hw, b.c
    shortcut = _shortcut(
        b, spec, prefix, x, cin, cout, stride, hw, out_hw, projection_input=pre, bn=False
    )
    _join(b, prefix, residual, shortcut, cout, out_hw)


def _join(
    b: Builder,
    prefix: str,
    residual: str,
    shortcut: str | None,
    cout: int,
    out_hw: tuple[int, int],
) -> None:
    """F(x) + x (He et al. 2015, eq. 1); a plain net (no shortcut) just continues."""
    b.x = residual
    if shortcut is not None:
        b.ops.append(Add(f"{prefix}.add", residual, shortcut, f"{prefix}.add", (cout, *out_hw)))
        b.x = f"{prefix}.add"
    b.c, b.hw = cout, out_hw


def _shortcut(
    b: Builder,
    spec: Spec,
    prefix: str,
    x: str,
    cin: int,
    cout: int,
    stride: int,
    hw: tuple[int, int],
    out_hw: tuple[int, int],
    *,
    projection_input: str | None = None,
    bn: bool = True,
) -> str | None:
    """The shortcut tensor for options A/B/C (He et al. 2015, 3.3), or None for a plain net.

    Identity shortcuts read `x`; a projection reads `projection_input` (the pre-activated input
    in a pre-activation unit) and is followed by BN unless `bn` is False. With the spec's
    `downsample` "avg" (ResNet-D), a strided projection first average-pools with the stride and
    then convolves 1x1 with stride 1 (timm's `downsample_avg`); unstrided, it has no pool."""
    option = spec.shortcut
    changes = stride != 1 or cin != cout
    if option == "none":
        return None
    if option == "A" or (option == "B" and not changes):
        if not changes:
            return x
        name = f"{prefix}.shortcut"
        b.ops.append(ZeroPadShortcut(name, x, name, cin, cout, stride, hw, out_hw, b.zero_pad))
        return name
    residual = (b.x, b.c, b.hw)
    avg = spec.downsample == "avg"
    pool, conv, norm = spec.block_kind.layout.downsample(avg=avg)
    b.x, b.c, b.hw = projection_input or x, cin, hw
    if avg and stride != 1:
        out_hw = (pool_out(hw[0], 2, stride), pool_out(hw[1], 2, stride))
        b.ops.append(
            AvgPool(f"{prefix}.{pool}", b.x, f"{prefix}.{pool}", cin, 2, stride, hw, out_hw)
        )
        b.x, b.hw, stride = f"{prefix}.{pool}", out_hw, 1
    b.conv(f"{prefix}.{conv}", cout, 1, stride)
    if bn:
        b.bn(f"{prefix}.{norm}")
    out = b.x
    b.x, b.c, b.hw = residual
    return out


register_block(BlockKind("basic", BASIC, preact=False, unit=post_activation_unit))
register_block(
    BlockKind(
        "bottleneck",
        BOTTLENECK,
        preact=False,
        unit=post_activation_unit,
        takes_bottleneck_bias=True,
    )
)
register_block(BlockKind("preact_basic", BASIC, preact=True, unit=pre_activation_unit))
register_block(BlockKind("preact_bottleneck", BOTTLENECK, preact=True, unit=pre_activation_unit))
# timm's ResNetV2 (PreActBasic, PreActBottleneck with BatchNormAct2d): the same unit, named as
# timm names it, after a stem with no norm of its own, so every unit has its own first BN-ReLU.
# A stage's first unit projects (timm projects there always; for the depth tables' widths that is
# where shapes change, as shortcut B does).
register_block(
    BlockKind("resnetv2_basic", BASIC, preact=True, unit=pre_activation_unit, layout=RESNETV2)
)
register_block(
    BlockKind(
        "resnetv2_bottleneck", BOTTLENECK, preact=True, unit=pre_activation_unit, layout=RESNETV2
    )
)
