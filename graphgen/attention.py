"""The attention slot: squeeze-and-excitation (SE) or efficient channel attention (ECA), after a
unit's last BN and before the addition, where timm's ResNet places its `attn_layer`.

Both squeeze the branch to per-channel means and gate the branch with a sigmoid of them:
- SE (Hu et al. 2018; timm's `SEModule`): 1x1 conv `se.fc1` to `make_divisible(C * ratio,
  divisor)` channels, ReLU, 1x1 conv `se.fc2` back to C, both with a bias;
- ECA (Wang et al. 2020; timm's `EcaModule`): one 1-d conv `se.conv` across the channels, no
  bias, its kernel from the channel count: t = int(|log2(C) + beta| / gamma), made odd, at least 3.
The names are timm's (its blocks keep the attention module as `se` whatever it is).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from graphgen.plan import Builder, ChannelConv, GlobalAvgPool, Scale, Sigmoid

if TYPE_CHECKING:
    from graphgen.spec import Spec

ATTENTIONS = ("none", "se", "eca")


def se_channels(channels: int, ratio: float, divisor: int) -> int:
    """timm's `make_divisible(channels * ratio, divisor, round_limit=0.)`: to the nearest multiple
    of `divisor` (halves up), at least `divisor`."""
    value = channels * ratio
    return max(divisor, int(value + divisor / 2) // divisor * divisor)


def eca_kernel(channels: int, gamma: int, beta: int) -> int:
    """ECA's adaptive kernel size, as timm computes it (`math.log(channels, 2)`)."""
    t = int(abs(math.log(channels, 2) + beta) / gamma)
    return max(t if t % 2 else t + 1, 3)


def write_attention(b: Builder, spec: Spec, prefix: str) -> None:
    """Append the spec's attention on the current tensor (nothing for "none")."""
    if spec.attention == "none":
        return
    x, c, hw = b.x, b.c, b.hw
    name = f"{prefix}.se"
    b.ops.append(GlobalAvgPool(f"{name}.pool", x, f"{name}.pool", c, hw, flatten=False))
    b.x, b.hw = f"{name}.pool", (1, 1)
    if spec.attention == "se":
        b.conv(f"{name}.fc1", se_channels(c, spec.se_ratio, spec.se_divisor), 1, 1, bias=True)
        b.relu(f"{name}.act")
        b.conv(f"{name}.fc2", c, 1, 1, bias=True)
    else:
        kernel = eca_kernel(c, spec.eca_gamma, spec.eca_beta)
        b.ops.append(ChannelConv(f"{name}.conv", b.x, f"{name}.conv", c, kernel))
        b.x = f"{name}.conv"
    b.ops.append(Sigmoid(f"{name}.gate", b.x, f"{name}.gate", (c, 1, 1)))
    b.ops.append(Scale(f"{name}.scale", x, f"{name}.gate", f"{name}.scale", (c, *hw)))
    b.x, b.c, b.hw = f"{name}.scale", c, hw
