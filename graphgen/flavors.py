"""Named flavours: how model zoos deviate from the paper's ResNet, as spec fields.

A flavour changes only the block details a zoo chose; the depth table, widths, shortcut,
classes and size stay as given. Every flavour is exact for its zoo (the counts are tested
against MXNet Gluon's and torchvision's own):

- `paper`: He et al. 2015, stride on the bottleneck's first 1x1, no conv biases.
- `torchvision`: torchvision's "v1.5", stride on the 3x3.
- `gluon-v1`: Gluon's `resnet*_v1`: the paper's unit, but both bottleneck 1x1 convs have a bias.
- `gluon-v2`: Gluon's `resnet*_v2`: pre-activation units (He et al. 2016) striding on the 3x3,
  a BN without scale or shift on the input images, the first unit with its own BN-ReLU after the
  stem's, and a final BN-ReLU before pooling.
"""

from __future__ import annotations

from graphgen.blocks import find_block
from graphgen.errors import SpecError
from graphgen.layouts import TORCHVISION
from graphgen.spec import Spec

FLAVORS = ("paper", "torchvision", "gluon-v1", "gluon-v2")


def apply_flavor(spec: Spec, flavor: str) -> Spec:
    """`spec` with its block details set as `flavor` sets them; the name is re-derived."""
    if flavor not in FLAVORS:
        raise SpecError(f"unknown flavor {flavor!r}; choose one of {', '.join(FLAVORS)}")
    plain = dict(bottleneck_bias=False, data_bn=False, first_unit_bn=False)
    branch = spec.block_kind.branch
    post = find_block(branch=branch, preact=False, layout=TORCHVISION)  # the zoos' own names
    if flavor == "paper":
        return spec.replace(block=post.name, stride_at="1x1", **plain)
    if flavor == "torchvision":
        return spec.replace(block=post.name, stride_at="3x3", **plain)
    if flavor == "gluon-v1":
        bias = {"bottleneck_bias": post.takes_bottleneck_bias}
        return spec.replace(block=post.name, stride_at="1x1", **plain | bias)
    return spec.replace(
        block=find_block(branch=branch, preact=True, layout=TORCHVISION).name,
        stride_at="3x3" if branch.stride_at_matters else "1x1",
        bottleneck_bias=False,
        data_bn=True,
        first_unit_bn=True,
    )


def flavor_of(spec: Spec) -> str | None:
    """The flavour a spec is exactly, or None when it mixes fields no zoo uses together."""
    for flavor in FLAVORS:
        if apply_flavor(spec, flavor) == spec:
            return flavor
    return None
