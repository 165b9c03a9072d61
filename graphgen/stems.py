"""The stems: what turns the image into the first stage's input, as the spec's stem fields say.

- `stem` "imagenet" with `stem_type` "single": He et al. 2015's 7x7/2 conv, BN, ReLU, 3x3/2 max-pool;
  "deep" or "deep_tiered": timm's three 3x3 convs in its place (He et al. 2019, "Bag of Tricks",
  ResNet-C): widths (w, w, 2w) or tiered (3 * (w // 4), w, 2w) for `stem_width` w, the first
  striding 2, each but the last followed by BN-ReLU. `stem_pool` "conv" replaces the max-pool
  with a 3x3/2 conv, BN, ReLU (timm's `replace_stem_pool`, ResNet-RS).
- `stem` "cifar": a 3x3/1 conv, BN, ReLU (He et al. 2015, 4.2).
A pre-activation layout without a stem norm (timm's ResNetV2) leaves out the BN-ReLU after the
stem's last conv: each unit begins with its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from graphgen.layouts import RESNETV2
from graphgen.plan import Builder, MaxPool, conv_out

if TYPE_CHECKING:
    from graphgen.spec import Spec

STEM_TYPES = ("single", "deep", "deep_tiered")
STEM_POOLS = ("max", "conv")


def deep_widths(spec: Spec) -> tuple[int, int, int]:
    """A deep stem's three conv widths for the spec's `stem_width` (timm's `stem_width`)."""
    w = spec.stem_width
    if spec.stem_type == "deep":
        return w, w, 2 * w
    if spec.block_kind.layout is RESNETV2:
        return 3 * (2 * w) // 8, w, 2 * w  # resnetv2.py: (3 * out_chs // 8, out_chs // 2)
    return 3 * (w // 4), w, 2 * w  # resnet.py: (3 * (stem_width // 4), stem_width)


def stem_channels(spec: Spec) -> int:
    """The stem's output channels: the first stage's input."""
    return spec.stem_width if spec.stem_type == "single" else 2 * spec.stem_width


def write_stem(b: Builder, spec: Spec) -> None:
    layout = spec.block_kind.layout
    if spec.stem == "cifar":
        b.conv(layout.stem_conv, spec.stem_width, 3, 1)
    elif spec.stem_type == "single":
        b.conv(layout.stem_conv, spec.stem_width, 7, 2)
    else:
        widths = deep_widths(spec)
        for i, (name, width) in enumerate(zip(layout.deep_convs, widths, strict=True)):
            b.conv(name, width, 3, 2 if i == 0 else 1)
            if i < 2:
                b.bn(layout.deep_norms[i])
                b.relu(layout.deep_relus[i])
    if layout.stem_norm:
        b.bn(layout.stem_bn)
        b.relu(layout.stem_relu)
    if spec.stem == "cifar":
        return
    if spec.stem_pool == "conv":
        conv, norm, relu = layout.conv_pool
        b.conv(conv, b.c, 3, 2)
        b.bn(norm)
        b.relu(relu)
        return
    hw = b.hw
    out_hw = (conv_out(hw[0], 3, 2, 1), conv_out(hw[1], 3, 2, 1))
    name = layout.stem_pool
    b.ops.append(MaxPool(name, b.x, name, b.c, 3, 2, 1, hw, out_hw))
    b.x, b.hw = name, out_hw
