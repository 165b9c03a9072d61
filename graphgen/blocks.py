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

from graphgen.errors import SpecError
from graphgen.plan import Add, Builder, ZeroPadShortcut

if TYPE_CHECKING:
    from graphgen.spec import Spec


class BranchConv(NamedTuple):
    kernel: int
    channels: int
    stride: int


@dataclass(frozen=True)
class Branch:
    """The residual branch's convs, which a post- and a pre-activation unit share."""

    name: str  # "basic", "bottleneck": what a CIFAR net not of basic blocks adds to its name
    expansion: int  # output channels per unit of stage width (torchvision's `block.expansion`)
    layers: int  # weighted layers per block, as the paper counts depth
    stride_at_matters: bool  # the spec's `stride_at` picks which conv strides
    convs: Callable[[Spec, int, int], tuple[BranchConv, ...]]  # (spec, width, stride)


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


def _bottleneck_convs(spec: Spec, width: int, stride: int) -> tuple[BranchConv, ...]:
    """1x1-3x3-1x1, the stride on the first 1x1 (the paper) or on the 3x3 (torchvision's v1.5)."""
    s1, s3 = (stride, 1) if spec.stride_at == "1x1" else (1, stride)
    cout = width * BOTTLENECK.expansion
    return BranchConv(1, width, s1), BranchConv(3, width, s3), BranchConv(1, cout, 1)


BASIC = Branch("basic", expansion=1, layers=2, stride_at_matters=False, convs=_basic_convs)
BOTTLENECK = Branch(
    "bottleneck", expansion=4, layers=3, stride_at_matters=True, convs=_bottleneck_convs
)


def post_activation_unit(
    b: Builder, spec: Spec, prefix: str, width: int, stride: int, *, first: bool
) -> None:
    """The original unit (He et al. 2015, Fig. 2 and 5): conv-BN-ReLU..., conv-BN, add, ReLU."""
    x, cin, hw = b.x, b.c, b.hw
    convs = spec.block_kind.branch.convs(spec, width, stride)
    for i, (kernel, channels, s) in enumerate(convs, 1):
        bias = spec.bottleneck_bias and kernel == 1  # Gluon v1: both 1x1s have a bias
        b.conv(f"{prefix}.conv{i}", channels, kernel, s, bias=bias)
        b.bn(f"{prefix}.bn{i}")
        if i < len(convs):
            b.relu(f"{prefix}.relu{i}")
    residual, out_hw, cout = b.x, b.hw, b.c
    shortcut = _shortcut(b, spec.shortcut, prefix, x, cin, cout, stride, hw, out_hw)
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
    first = first and not spec.first_unit_bn
    x, cin, hw = b.x, b.c, b.hw
    convs = spec.block_kind.branch.convs(spec, width, stride)
    pre = x
    for i, (kernel, channels, s) in enumerate(convs, 1):
        if i > 1 or not first:
            b.bn(f"{prefix}.bn{i}")
            b.relu(f"{prefix}.relu{i}")
        if i == 1:
            pre = b.x
        b.conv(f"{prefix}.conv{i}", channels, kernel, s)
    residual, out_hw, cout = b.x, b.hw, b.c
    shortcut = _shortcut(
        b, spec.shortcut, prefix, x, cin, cout, stride, hw, out_hw, projection_input=pre, bn=False
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
    option: str,
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
    in a pre-activation unit) and is followed by BN unless `bn` is False."""
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
    b.conv(f"{prefix}.downsample.0", cout, 1, stride, x=projection_input or x, cin=cin, hw=hw)
    if bn:
        b.bn(f"{prefix}.downsample.1")
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
