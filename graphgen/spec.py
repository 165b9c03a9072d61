"""The declarative network description: one frozen dataclass and the paper's depth tables.

A `Spec` says *what* network to build; `graphgen.plan.expand` turns it into the ordered list of
named operations that every emitter (ONNX, torch, cost model) walks.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from graphgen.attention import ATTENTIONS
from graphgen.blocks import BLOCK_KINDS, BlockKind, block_kind
from graphgen.errors import SpecError
from graphgen.layouts import TORCHVISION
from graphgen.stems import STEM_POOLS, STEM_TYPES, stem_channels
from resnet_common.documents import DocumentError, check_bounded, read_document
from resnet_common.errors import shown

SHORTCUTS = ("A", "B", "C", "none")
STEMS = ("imagenet", "cifar")
STRIDE_PLACEMENTS = ("1x1", "3x3")
# Where option A's new channels go. The paper does not say. "symmetric" (half in front, half
# behind) is what the widely used PyTorch CIFAR reference (akamaster/pytorch_resnet_cifar10)
# and tensorpack do; "end" (zeros after the identity channels) is fb.resnet.torch's.
ZERO_PADS = ("symmetric", "end")
DOWNSAMPLES = ("conv", "avg")  # a projection's 1x1/s conv, or ResNet-D's avg-pool then 1x1/1
DATASETS = ("imagenet", "cifar10")
NAME_PATTERN = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")

# He et al. 2015, Table 1: depth -> (block, blocks per stage).
IMAGENET_DEPTHS: Mapping[int, tuple[str, tuple[int, ...]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
IMAGENET_WIDTHS = (64, 128, 256, 512)
CIFAR_WIDTHS = (16, 32, 64)  # He et al. 2015, section 4.2: depth 6n+2, three stages of n blocks.
CIFAR_BLOCK = "basic"  # the CIFAR tables are basic-block nets (He et al. 2015, 4.2)


@dataclass(frozen=True)
class Spec:
    """A residual (or plain) network, as the paper's tables describe it.

    `layers[i]` blocks of width `widths[i]` form stage i; stage 0 keeps the stem's resolution and
    every later stage halves it in its first block. `shortcut="none"` gives the plain baselines.
    """

    layers: tuple[int, ...]
    widths: tuple[int, ...]
    block: str = "basic"
    stem: str = "imagenet"
    shortcut: str = "B"
    stride_at: str = "1x1"
    classes: int = 1000
    image_size: int = 224
    stem_width: int = 64  # the stem conv's width; a deep stem's is its first convs' (timm's)
    # Flavour fields (graphgen.flavors names the zoo presets); the defaults are the paper's.
    bottleneck_bias: bool = False  # a bias on the bottleneck's two 1x1 convs (Gluon v1)
    data_bn: bool = False  # a BN without scale or shift on the input images (Gluon v2)
    first_unit_bn: bool = False  # the first pre-activation unit keeps its own BN-ReLU (Gluon v2)
    zero_pad: str = "symmetric"  # option A: where the zero channels go (ZERO_PADS)
    # The zoos' variants (graphgen.archs names them); each default is the paper's network.
    groups: int = 1  # ResNeXt's cardinality: the bottleneck's 3x3 in this many groups
    width_per_group: int = 64  # the 3x3's width is int(width * width_per_group / 64) * groups
    stem_type: str = "single"  # STEM_TYPES: one conv, or timm's deep 3x3 stems (graphgen.stems)
    stem_pool: str = "max"  # STEM_POOLS: an ImageNet stem's 3x3/2 max-pool, or a 3x3/2 conv
    downsample: str = "conv"  # DOWNSAMPLES: how a strided projection shortcut subsamples
    attention: str = "none"  # ATTENTIONS: SE or ECA after each unit's last BN
    se_ratio: float = 0.0625  # SE's squeeze: channels x ratio (timm's rd_ratio, 1/16) ...
    se_divisor: int = 8  # ... rounded to a multiple of this (timm's rd_divisor)
    eca_gamma: int = 2  # ECA's kernel from the channel count (Wang et al. 2020's gamma and b)
    eca_beta: int = 1
    # What no state_dict shows, stated rather than assumed: only these values are built, and a
    # spec asking for another is refused by name (STATED_FIELDS).
    activation: str = "relu"
    bn_eps: float = 1e-5
    dilation: int = 1
    anti_alias: bool = False
    global_pool: str = "avg"
    name: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        block_kind(self.block)  # a registered kind (graphgen.blocks), else a SpecError
        _require(self.stem in STEMS, "stem", self.stem, STEMS)
        _require(self.shortcut in SHORTCUTS, "shortcut", self.shortcut, SHORTCUTS)
        _require(
            self.stride_at in STRIDE_PLACEMENTS, "stride_at", self.stride_at, STRIDE_PLACEMENTS
        )
        _require(self.zero_pad in ZERO_PADS, "zero_pad", self.zero_pad, ZERO_PADS)
        if self.zero_pad != "symmetric" and self.shortcut != "A":
            raise SpecError(
                f"zero_pad {self.zero_pad!r} places option A's zero channels; it needs "
                f"shortcut 'A', not {self.shortcut!r}"
            )
        if not self.layers:
            raise SpecError("layers must list at least one stage, e.g. [2, 2, 2, 2]")
        if len(self.layers) != len(self.widths):
            raise SpecError(
                f"layers has {len(self.layers)} stages but widths has {len(self.widths)}: "
                "give one width per stage"
            )
        for key, values in (("layers", self.layers), ("widths", self.widths)):
            bad = [v for v in values if not isinstance(v, int) or isinstance(v, bool) or v < 1]
            if bad:
                raise SpecError(f"{key} must be positive integers, got {list(values)}")
        for key in ("classes", "image_size", "stem_width"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise SpecError(f"{key} must be a positive integer, got {value!r}")
        _check_flavour(self)
        _check_stated(self)
        _check_variant(self)
        if self.image_size < self.total_stride:
            raise SpecError(
                f"image size {self.image_size} is too small for this network's stride chain "
                f"(total stride {self.total_stride}); use at least {self.total_stride}"
            )
        if self.shortcut == "A":
            expansion = self.block_kind.expansion
            channels = [stem_channels(self)] + [w * expansion for w in self.widths]
            if any(b < a for a, b in zip(channels, channels[1:], strict=False)):
                raise SpecError(
                    "shortcut A zero-pads channels, so stage widths may not shrink; "
                    "use shortcut B or C for this stage table"
                )
        if not self.name:
            object.__setattr__(self, "name", default_name(self))
        elif not isinstance(self.name, str) or not NAME_PATTERN.fullmatch(self.name):
            # The name becomes the default file name: no paths, no surprises.
            raise SpecError(
                f"name must be letters, digits, '.', '_' or '-' (not starting with '.'), "
                f"got {self.name!r}"
            )

    @property
    def block_kind(self) -> BlockKind:
        """The row of graphgen.blocks that `block` names: everything that depends on it."""
        return block_kind(self.block)

    @property
    def total_stride(self) -> int:
        stem = 4 if self.stem == "imagenet" else 1
        return int(stem * 2 ** (len(self.layers) - 1))

    @property
    def depth(self) -> int:
        """Weighted layers, counted as the paper does (convs on the main path plus the fc)."""
        return 1 + self.block_kind.layers * sum(self.layers) + 1

    def to_dict(self) -> dict[str, Any]:
        # Fields added after the first release are left out at their defaults, so older specs
        # keep their exact bytes (and their files' hashes).
        return {
            f.name: (list(v) if isinstance(v, tuple) else v)
            for f in dataclasses.fields(self)
            for v in [getattr(self, f.name)]
            if not (f.name in OPTIONAL_FIELDS and v == f.default and type(v) is type(f.default))
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    def replace(self, **changes: Any) -> Spec:
        """A copy with fields changed; the name is re-derived unless given."""
        changes.setdefault("name", "")
        return dataclasses.replace(self, **changes)


FLAVOUR_FIELDS = ("bottleneck_bias", "data_bn", "first_unit_bn")
VARIANT_FIELDS = (
    "groups",
    "width_per_group",
    "stem_type",
    "stem_pool",
    "downsample",
    "attention",
    "se_ratio",
    "se_divisor",
    "eca_gamma",
    "eca_beta",
)
# field -> (the one value built, why no other is): what a state_dict cannot show.
STATED_FIELDS: Mapping[str, tuple[object, str]] = {
    "activation": ("relu", "graphgen builds ReLU networks only (timm's other act_layers)"),
    "bn_eps": (
        1e-5,
        "graphgen's BatchNorms use eps 1e-5, torch's default, as torchvision's, "
        "timm's and Gluon's ResNets do",
    ),
    "dilation": (1, "dilated stages (timm's output_stride 8 or 16) are not built"),
    "anti_alias": (
        False,
        "anti-aliased downsampling (timm's aa_layer: BlurPool, the 'aa' ResNets) is not built",
    ),
    "global_pool": (
        "avg",
        "graphgen's head averages; timm's max, avgmax and catavgmax pools are not built",
    ),
}
# Left out of a spec's dict at their defaults (absent means the default, for older files too).
OPTIONAL_FIELDS = (*FLAVOUR_FIELDS, "zero_pad", *VARIANT_FIELDS, *STATED_FIELDS)


def _check_stated(spec: Spec) -> None:
    for key, (value, why) in STATED_FIELDS.items():
        given = getattr(spec, key)
        number = isinstance(given, int | float) and not isinstance(given, bool)
        if isinstance(value, float) and number and given == value:
            object.__setattr__(spec, key, float(given))
            continue
        if isinstance(value, float) and isinstance(given, str):
            raise SpecError(
                f"{key} must be a number, got {given!r} (YAML reads 1e-5 as text: write 1.0e-5)"
            )
        if given != value or type(given) is not type(value):
            raise SpecError(f"{key} {given!r} is refused: {why}; {key} must be {value!r}")


def _positive(spec: Spec, *keys: str, least: int = 1) -> None:
    for key in keys:
        value = getattr(spec, key)
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            at_least = "a positive integer" if least == 1 else f"an integer >= {least}"
            raise SpecError(f"{key} must be {at_least}, got {value!r}")


def _check_variant(spec: Spec) -> None:
    """The zoo variant fields: each value known, and only where the network has the part."""
    kind, layout = spec.block_kind, spec.block_kind.layout
    _positive(spec, "groups", "width_per_group", "se_divisor", "eca_gamma")
    _positive(spec, "eca_beta", least=0)
    _require(spec.stem_type in STEM_TYPES, "stem_type", spec.stem_type, STEM_TYPES)
    _require(spec.stem_pool in STEM_POOLS, "stem_pool", spec.stem_pool, STEM_POOLS)
    _require(spec.downsample in DOWNSAMPLES, "downsample", spec.downsample, DOWNSAMPLES)
    _require(spec.attention in ATTENTIONS, "attention", spec.attention, ATTENTIONS)
    ratio = spec.se_ratio
    if not isinstance(ratio, int | float) or isinstance(ratio, bool) or not 0 < ratio <= 1:
        raise SpecError(f"se_ratio must be a number in (0, 1], got {ratio!r}")
    object.__setattr__(spec, "se_ratio", float(ratio))
    if (spec.groups, spec.width_per_group) != (1, 64) and not kind.branch.takes_groups:
        raise SpecError(
            f"groups and width_per_group shape a bottleneck's 3x3; block {spec.block!r} has "
            "none (torchvision's BasicBlock refuses them too)"
        )
    if kind.branch.takes_groups and any(
        int(w * (spec.width_per_group / 64.0)) < 1 for w in spec.widths
    ):
        raise SpecError(
            f"width_per_group {spec.width_per_group} leaves a stage of widths "
            f"{list(spec.widths)} with no channel per group; raise it"
        )
    if spec.stem != "imagenet" and (spec.stem_type, spec.stem_pool) != ("single", "max"):
        raise SpecError(
            f"stem_type and stem_pool shape an ImageNet stem; the {spec.stem} stem is one 3x3 "
            "conv without a pool"
        )
    if spec.stem_pool == "conv" and not all(layout.conv_pool):
        raise SpecError(f"stem_pool 'conv' is timm's ResNet's; block {spec.block!r} has none")
    if spec.downsample == "avg" and spec.shortcut not in ("B", "C"):
        raise SpecError(
            f"downsample 'avg' pools a projection shortcut; shortcut {spec.shortcut!r} has no "
            "projection (use B or C)"
        )
    if spec.attention != "none" and kind.preact:
        raise SpecError(
            f"attention goes after a post-activation unit's last BN (timm's ResNet); block "
            f"{spec.block!r} is pre-activation"
        )
    for key, needs in (
        ("se_ratio", "se"),
        ("se_divisor", "se"),
        ("eca_gamma", "eca"),
        ("eca_beta", "eca"),
    ):
        if getattr(spec, key) != _DEFAULTS[key] and spec.attention != needs:
            raise SpecError(
                f"{key} sets attention {needs!r}'s size; attention is {spec.attention!r}"
            )
    if layout is not TORCHVISION and (spec.data_bn or spec.first_unit_bn):
        raise SpecError(
            f"data_bn and first_unit_bn are Gluon v2's; block {spec.block!r} is timm's "
            "ResNetV2, whose units each have their own first norm"
        )


_DEFAULTS: dict[str, Any] = {}  # filled below, once Spec exists


def _check_flavour(spec: Spec) -> None:
    for key in FLAVOUR_FIELDS:
        if not isinstance(getattr(spec, key), bool):
            raise SpecError(f"{key} must be true or false, got {getattr(spec, key)!r}")
    kind = spec.block_kind
    if spec.bottleneck_bias and not kind.takes_bottleneck_bias:
        takers = " or ".join(repr(k) for k, v in BLOCK_KINDS.items() if v.takes_bottleneck_bias)
        raise SpecError(f"bottleneck_bias needs block {takers}, not {spec.block!r}")
    if spec.first_unit_bn and not kind.preact:
        preact = " or ".join(k for k, v in BLOCK_KINDS.items() if v.preact)
        raise SpecError(
            f"first_unit_bn needs a pre-activation block ({preact}), not {spec.block!r}"
        )


def _require(ok: bool, key: str, value: object, allowed: tuple[str, ...]) -> None:
    if not ok:
        raise SpecError(f"unknown {key} {value!r}; choose one of {', '.join(allowed)}")


def default_name(spec: Spec) -> str:
    """The standard variant name when the spec is one, else a descriptive one."""
    for name, std in STANDARD_VARIANTS.items():
        if _same_arch(spec, std):
            return name
    if is_variant(spec):  # a zoo's network (graphgen.archs) goes by the zoo's name
        from graphgen.archs import arch_named_as

        found = arch_named_as(spec)
        if found is not None:
            return found
    prefix = "cifar-" if spec.stem == "cifar" else ""
    net = "plain" if spec.shortcut == "none" else "resnet"
    name = f"{prefix}{net}{spec.depth}"
    default_shortcut = "A" if spec.stem == "cifar" else "B"
    if spec.shortcut not in ("none", default_shortcut):
        name += f"-{spec.shortcut}"
    flavour = _flavour_suffix(spec)
    kind = spec.block_kind
    v1_5 = kind.branch.stride_at_matters and spec.stride_at == "3x3"
    gluon_v2 = flavour == "-gluon-v2" and (v1_5 or not kind.branch.stride_at_matters)
    if kind.preact and not gluon_v2:
        name += "-preact"
    if v1_5 and not gluon_v2:
        name += "-v1.5"
    name += flavour
    if spec.zero_pad != "symmetric":
        name += f"-zeropad-{spec.zero_pad}"
    name += "".join(f"-{part}" for part in _variant_parts(spec))
    stem_width = spec.stem_width if spec.stem_type == "single" else 64  # deep: said above
    if spec.stem == "imagenet" and (spec.widths, stem_width) != (IMAGENET_WIDTHS, 64):
        name += "-custom"
    if spec.stem == "cifar" and (spec.widths, spec.stem_width) != (CIFAR_WIDTHS, 16):
        name += "-custom"
    if spec.stem == "cifar" and kind.branch != BLOCK_KINDS[CIFAR_BLOCK].branch:
        name += f"-{kind.branch.name}"  # never the file name of a net in the CIFAR table
    return name


def is_variant(spec: Spec) -> bool:
    """Whether the spec uses a zoo variant's fields (or layout), which the paper's names cannot
    say."""
    return spec.block_kind.layout is not TORCHVISION or any(
        getattr(spec, key) != _DEFAULTS[key] for key in VARIANT_FIELDS
    )


def _variant_parts(spec: Spec) -> list[str]:
    """What a descriptive name adds for the variant fields: `32x4d`, `deepstem32`, `avgdown`..."""
    parts = []
    layout = spec.block_kind.layout
    if layout is not TORCHVISION:
        parts.append(layout.name)
    if (spec.groups, spec.width_per_group) != (1, 64):
        parts.append(f"{spec.groups}x{spec.width_per_group}d")
    if spec.stem_type != "single":
        parts.append(f"{spec.stem_type.replace('_', '')}stem{spec.stem_width}")
    if spec.stem_pool != "max":
        parts.append(f"{spec.stem_pool}pool")
    if spec.downsample != "conv":
        parts.append(f"{spec.downsample}down")
    if spec.attention == "se":
        ratio = "" if spec.se_ratio == _DEFAULTS["se_ratio"] else f"{spec.se_ratio:g}"
        divisor = "" if spec.se_divisor == _DEFAULTS["se_divisor"] else f"d{spec.se_divisor}"
        parts.append(f"se{ratio}{divisor}")
    elif spec.attention == "eca":
        sizes = (spec.eca_gamma, spec.eca_beta)
        default = (_DEFAULTS["eca_gamma"], _DEFAULTS["eca_beta"])
        parts.append("eca" if sizes == default else f"eca{sizes[0]}-{sizes[1]}")
    return parts


def _flavour_suffix(spec: Spec) -> str:
    if spec.bottleneck_bias and not spec.data_bn:
        return "-gluon-v1"
    if spec.data_bn and spec.first_unit_bn:
        return "-gluon-v2"
    return "".join(
        f"-{key.replace('_', '')}" for key in FLAVOUR_FIELDS if getattr(spec, key) is True
    )


def _same_arch(a: Spec, b: Spec) -> bool:
    return dataclasses.replace(a, name="x") == dataclasses.replace(b, name="x")


def imagenet_spec(depth: int, **overrides: Any) -> Spec:
    if depth not in IMAGENET_DEPTHS:
        raise SpecError(unknown_depth_message(depth))
    block, layers = IMAGENET_DEPTHS[depth]
    fields = dict(
        layers=layers,
        widths=IMAGENET_WIDTHS,
        block=block,
        stem="imagenet",
        shortcut="B",
        classes=1000,
        image_size=224,
        stem_width=64,
    )
    fields.update(overrides)
    return Spec(**fields)  # type: ignore[arg-type]  # each field checked in __post_init__


def cifar_step(block: object = CIFAR_BLOCK) -> int:
    """Layers per n of the CIFAR family: 6n+2 with basic blocks (He et al. 2015, 4.2), 9n+2 with
    bottlenecks (He et al. 2016, 4: ResNet-164 and -1001). An unknown block counts as basic:
    the spec refuses it by name."""
    kind = BLOCK_KINDS.get(block if isinstance(block, str) else "", BLOCK_KINDS[CIFAR_BLOCK])
    return len(CIFAR_WIDTHS) * kind.layers


def is_cifar_depth(depth: int, block: object = CIFAR_BLOCK) -> bool:
    step = cifar_step(block)
    return depth >= step + 2 and (depth - 2) % step == 0


def cifar_spec(depth: int, **overrides: Any) -> Spec:
    """The CIFAR family at `depth`: three stages of n blocks, n from the block type's depth rule
    (so `--depth 56 --block bottleneck` is a 56-layer net, 6 bottlenecks a stage)."""
    block = overrides.get("block", CIFAR_BLOCK)
    if not is_cifar_depth(depth, block):
        raise SpecError(unknown_depth_message(depth, block))
    n = (depth - 2) // cifar_step(block)
    fields = dict(
        layers=(n, n, n),
        widths=CIFAR_WIDTHS,
        block=CIFAR_BLOCK,
        stem="cifar",
        shortcut="A",
        classes=10,
        image_size=32,
        stem_width=16,
    )
    fields.update(overrides)
    return Spec(**fields)  # type: ignore[arg-type]  # each field checked in __post_init__


def unknown_depth_message(depth: object, block: object = CIFAR_BLOCK) -> str:
    if cifar_step(block) == 9:
        return (
            f"unknown depth {depth} for {block} blocks: ImageNet depths are 50, 101, 152; "
            "CIFAR bottleneck depths are 9n+2 for n >= 1 (11, 20, 29, ..., 56, 164, 1001)"
        )
    return (
        f"unknown depth {depth}: ImageNet depths are 18, 34, 50, 101, 152; "
        "CIFAR depths are 6n+2 for n >= 1 (8, 14, 20, 32, 44, 56, 110, 1202, ...)"
    )


def _check_depth(spec: Spec, depth: int, dataset: str, overrides: Mapping[str, Any]) -> Spec:
    """A depth and the layers or block given with it must make a net of that depth."""
    if spec.depth == depth:
        return spec
    if "layers" in overrides or depth not in IMAGENET_DEPTHS:
        raise SpecError(
            f"depth {depth} and layers {list(spec.layers)} disagree: those {spec.block} stages "
            f"make a {spec.depth}-layer net; give one of them, or make them agree"
        )
    hint = (
        "; for a CIFAR net use --family cifar10"
        if dataset == "imagenet" and is_cifar_depth(depth, spec.block)
        else ""
    )
    raise SpecError(
        f"depth {depth} is a {IMAGENET_DEPTHS[depth][0]}-block net in Table 1: its stages "
        f"{list(spec.layers)} with {spec.block} blocks make {spec.depth} layers, not {depth}" + hint
    )


def spec_for_depth(depth: int, dataset: str | None = None, **overrides: Any) -> Spec:
    """`--depth` alone means ImageNet for the Table 1 depths and CIFAR for any other 6n+2."""
    if dataset is not None and dataset not in DATASETS:
        raise SpecError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    block = overrides.get("block", CIFAR_BLOCK)
    block_kind(block)  # an unknown block is refused by name, before its depth rule is guessed
    if dataset is None:
        if depth not in IMAGENET_DEPTHS and not is_cifar_depth(depth, block):
            raise SpecError(unknown_depth_message(depth, block))
        dataset = "imagenet" if depth in IMAGENET_DEPTHS else "cifar10"
    if dataset == "imagenet":
        if depth not in IMAGENET_DEPTHS:
            raise SpecError(
                f"depth {depth} is not an ImageNet depth (Table 1: 18, 34, 50, 101, 152); "
                "for a CIFAR net (6n+2) use --family cifar10"
            )
        return _check_depth(imagenet_spec(depth, **overrides), depth, dataset, overrides)
    if not is_cifar_depth(depth, block):
        rule = "9n+2: 11, 20, 29, ..., 164" if cifar_step(block) == 9 else "6n+2: 8, 14, 20, ..."
        raise SpecError(
            f"depth {depth} is not a CIFAR depth for {block} blocks ({rule})"
            + (
                "; it is an ImageNet depth: use --family imagenet"
                if depth in IMAGENET_DEPTHS
                else ""
            )
        )
    return _check_depth(cifar_spec(depth, **overrides), depth, dataset, overrides)


def _standard_variants() -> dict[str, Spec]:
    table: dict[str, Spec] = {}
    for depth in IMAGENET_DEPTHS:
        table[f"resnet{depth}"] = imagenet_spec(depth, name=f"resnet{depth}")
    for depth in (18, 34):
        table[f"plain{depth}"] = imagenet_spec(depth, shortcut="none", name=f"plain{depth}")
    for depth in (20, 32, 44, 56, 110, 1202):
        table[f"cifar-resnet{depth}"] = cifar_spec(depth, name=f"cifar-resnet{depth}")
    for depth in (20, 32, 44, 56, 110):
        table[f"cifar-plain{depth}"] = cifar_spec(
            depth, shortcut="none", name=f"cifar-plain{depth}"
        )
    return table


_DEFAULTS.update({f.name: f.default for f in dataclasses.fields(Spec)})
STANDARD_VARIANTS: Mapping[str, Spec] = {}
STANDARD_VARIANTS = _standard_variants()


def variant(name: str) -> Spec:
    try:
        return STANDARD_VARIANTS[name]
    except KeyError:
        raise SpecError(
            f"unknown model {name!r}; standard variants are {', '.join(STANDARD_VARIANTS)}"
        ) from None


LIMIT_KEY = "size_limit"  # raised size limits (graphgen.sizes): how to build, not what
SPEC_KEYS = {f.name for f in dataclasses.fields(Spec)} | {"depth", "dataset", LIMIT_KEY}


def spec_from_mapping(data: object, *, source: str = "spec") -> Spec:
    """A spec from parsed YAML/JSON: either full fields, or `depth` (+ `dataset`) plus overrides."""
    try:
        check_bounded(data, source=source)  # an alias bomb, deep nesting, 5000-digit integers
    except DocumentError as err:  # a spec's problem, as every other one is a SpecError
        raise SpecError(str(err)) from None
    if not isinstance(data, dict):
        raise SpecError(f"{source}: expected a mapping of spec keys, got {type(data).__name__}")
    unknown = sorted((k for k in data if k not in SPEC_KEYS), key=repr)
    if unknown:
        raise SpecError(
            f"{source}: unknown key {shown(unknown[0])}; allowed keys are "
            f"{', '.join(sorted(SPEC_KEYS))}"
        )
    _check_value_kinds(data, source)
    fields = dict(data)
    fields.pop(LIMIT_KEY, None)  # read by graphgen.sizes.limits_from_spec
    for key in ("layers", "widths"):
        if key in fields:
            value = fields[key]
            if not isinstance(value, list | tuple):
                raise SpecError(
                    f"{source}: key {key!r} must be a list of integers, got {shown(value)}"
                )
            fields[key] = tuple(value)
    depth = fields.pop("depth", None)
    dataset = fields.pop("dataset", None)
    if dataset is not None and dataset not in DATASETS:
        raise SpecError(
            f"{source}: unknown dataset {shown(dataset)}; choose one of {', '.join(DATASETS)}"
        )
    try:
        if depth is not None:
            if not isinstance(depth, int) or isinstance(depth, bool):
                raise SpecError(f"key 'depth' must be an integer, got {shown(depth)}")
            return spec_for_depth(depth, dataset, **fields)
        if "layers" not in fields or "widths" not in fields:
            raise SpecError("give either 'depth' or both 'layers' and 'widths'")
        if dataset == "cifar10" or (dataset is None and fields.get("stem") == "cifar"):
            # A CIFAR stem brings the CIFAR family's defaults, as `dataset: cifar10` does.
            fields = {
                "stem": "cifar",
                "shortcut": "A",
                "classes": 10,
                "image_size": 32,
                "stem_width": 16,
            } | fields
        return Spec(**fields)
    except SpecError as err:
        raise SpecError(f"{source}: {err}") from None
    except TypeError as err:
        raise SpecError(f"{source}: {err}") from None


# What a spec file's values may be before the Spec checks them, so that every message quoting
# one stays short: one scalar per key (no list or mapping: an alias bomb hides there), a name of
# at most MAX_TEXT characters, and at most MAX_STAGES stages (a stride chain of 2**63 already).
MAX_TEXT, MAX_STAGES = 100, 64
LIST_KEYS = ("layers", "widths")


def _check_value_kinds(data: Mapping[object, object], source: str) -> None:
    for key, value in data.items():
        if key == LIMIT_KEY:
            continue  # a mapping, read by graphgen.sizes.limits_from_spec
        if key in LIST_KEYS:
            if not isinstance(value, list | tuple):
                continue  # refused below with the expected form
            if len(value) > MAX_STAGES:
                raise SpecError(
                    f"{source}: key {key!r} lists {len(value):,} values; a network has at "
                    f"most {MAX_STAGES} stages"
                )
            items = value
        else:
            items = [value]
        for item in items:
            if isinstance(item, list | tuple | dict | set):
                raise SpecError(
                    f"{source}: key {key!r} must be a single value per entry, got {shown(item)}"
                )
            if isinstance(item, str) and len(item) > MAX_TEXT:
                raise SpecError(
                    f"{source}: key {key!r} is {len(item):,} characters long "
                    f"(at most {MAX_TEXT}): {shown(item)}"
                )


def load_spec_file(path: str | Path) -> Spec:
    """Read a YAML or JSON spec file; errors name the file and the key or line."""
    return spec_from_mapping(read_spec_data(path), source=str(path))


def read_spec_data(path: str | Path) -> object:
    """A spec file's parsed YAML or JSON, not yet checked against the spec's fields: a regular
    file of at most 1 MB, small and shallow, each key given once (resnet_common.documents)."""
    return read_document(path, what="spec file")
