"""Named architectures: every ResNet torchvision ships and timm's common variants, as specs.

A preset is its library's network exactly: the plan's tensor names and shapes are that
library's state_dict keys (so its weights inject by name), its parameters are torch's count and
its MACs fvcore's conv + linear count, all tested against numbers measured with the libraries
(tests/test_archs.py, tests/fixtures/arch_counts.json, made by scripts/arch_counts.py).

Every torchvision ResNet name is also a timm name, and each pair is the same network (same
state_dict keys and shapes, same outputs from the same weights: checked by the same script), so
one preset serves both. The timm-only names are timm's. `LIB:NAME` (`timm:resnext50_32x4d`)
names a preset too, where LIB ships NAME.

The paper's depth table (graphgen.spec) strides a bottleneck on its first 1x1; torchvision and
timm stride on the 3x3 ("v1.5"), so `resnet50` here is the spec named `resnet50-v1.5`, and
`graphgen build --depth 50` (the paper's) keeps the name `resnet50`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from graphgen.errors import SpecError
from graphgen.spec import Spec, imagenet_spec, is_variant

LIBRARIES = ("torchvision", "timm")


@dataclass(frozen=True)
class Arch:
    name: str
    libraries: tuple[str, ...]  # the libraries that ship this network under this name
    spec: Spec

    def __str__(self) -> str:
        return self.name


BOTH = ("torchvision", "timm")
TIMM = ("timm",)
V1_5 = {"stride_at": "3x3"}  # torchvision's and timm's bottlenecks stride on the 3x3
DEEP = {"stem_type": "deep", "stem_width": 32}  # timm's 'deep' stem (32, 32, 64): C, D
D = {**DEEP, "downsample": "avg"}  # ResNet-D: and the average-pooled shortcut
BOTTLENECK_D = {**D, **V1_5}
# name: (who ships it, the depth table it starts from, what it changes)
TABLE: Mapping[str, tuple[tuple[str, ...], int, Mapping[str, Any]]] = {
    "resnet18": (BOTH, 18, {}),
    "resnet34": (BOTH, 34, {}),
    "resnet50": (BOTH, 50, V1_5),
    "resnet101": (BOTH, 101, V1_5),
    "resnet152": (BOTH, 152, V1_5),
    "resnext50_32x4d": (BOTH, 50, {**V1_5, "groups": 32, "width_per_group": 4}),
    "resnext101_32x8d": (BOTH, 101, {**V1_5, "groups": 32, "width_per_group": 8}),
    "resnext101_64x4d": (BOTH, 101, {**V1_5, "groups": 64, "width_per_group": 4}),
    "wide_resnet50_2": (BOTH, 50, {**V1_5, "width_per_group": 128}),
    "wide_resnet101_2": (BOTH, 101, {**V1_5, "width_per_group": 128}),
    "resnet26": (TIMM, 50, {**V1_5, "layers": (2, 2, 2, 2)}),
    "resnet18d": (TIMM, 18, D),
    "resnet26t": (TIMM, 50, {**BOTTLENECK_D, "layers": (2, 2, 2, 2), "stem_type": "deep_tiered"}),
    "resnet50c": (TIMM, 50, {**DEEP, **V1_5}),
    "resnet50d": (TIMM, 50, BOTTLENECK_D),
    "resnet50s": (TIMM, 50, {**DEEP, **V1_5, "stem_width": 64}),
    "seresnet50": (TIMM, 50, {**V1_5, "attention": "se"}),
    "ecaresnet50d": (TIMM, 50, {**BOTTLENECK_D, "attention": "eca"}),
    "resnetrs50": (
        TIMM,
        50,
        {**BOTTLENECK_D, "stem_pool": "conv", "attention": "se", "se_ratio": 0.25},
    ),
    "resnetv2_50": (TIMM, 50, {**V1_5, "block": "resnetv2_bottleneck"}),
    "resnetv2_50d": (TIMM, 50, {**BOTTLENECK_D, "block": "resnetv2_bottleneck"}),
}


def _preset(name: str, libraries: tuple[str, ...], depth: int, fields: Mapping[str, Any]) -> Arch:
    spec = imagenet_spec(depth, name=name, **fields)
    # A spec the paper's names can say keeps its descriptive name (resnet50-v1.5); a zoo
    # variant takes the zoo's name.
    return Arch(name, libraries, spec if is_variant(spec) else spec.replace())


ARCHS: Mapping[str, Arch] = MappingProxyType(
    {name: _preset(name, *row) for name, row in TABLE.items()}
)


def arch(text: str) -> Arch:
    """The preset `NAME` or `LIB:NAME` names; a SpecError listing the names otherwise."""
    library, sep, name = text.rpartition(":")
    found = ARCHS.get(name)
    if found is None:
        raise SpecError(f"unknown architecture {text!r}; choose one of {', '.join(ARCHS)}")
    if sep and library not in found.libraries:
        ships = " and ".join(found.libraries)
        raise SpecError(f"{library or '(empty)'} does not ship {name!r} here; {ships} does")
    return found


def arch_spec(text: str, **overrides: Any) -> Spec:
    """The preset's spec with `overrides` (classes, image size ...); a zoo variant keeps its
    name where only the classes or the image size changed."""
    preset = arch(text).spec
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if not overrides:
        return preset
    return preset.replace(**overrides)


_SIZE_FREE = ("classes", "image_size", "name")


def _network(spec: Spec) -> tuple[object, ...]:
    return tuple(
        getattr(spec, f.name) for f in dataclasses.fields(spec) if f.name not in _SIZE_FREE
    )


def arch_named_as(spec: Spec) -> str | None:
    """The preset whose network `spec` is, up to its classes and image size, if any."""
    mine = _network(spec)
    return next((name for name, a in ARCHS.items() if _network(a.spec) == mine), None)
