"""Where a family's parameters live: the names its library's state_dict gives each part.

Names are the contract (initializer names = state_dict keys = torch module paths), and two
families name the same parts differently: torchvision's ResNet (which timm's `resnet.py` keeps
"for weight compatibility") says `conv1`, `layer1.0.bn1`, `fc`; timm's ResNet-V2 says
`stem.conv`, `stages.0.blocks.0.norm1`, `head.fc`. A block kind (graphgen.blocks) names its
layout; the plan asks the layout for every name, so weights from either library inject as they
are, with no mapping table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Layout:
    name: str
    block_format: str  # a unit's prefix from (stage, index); stage counted from `first_stage`
    first_stage: int
    block_regex: str  # matches a unit's op names: group 1 its stage's container, group 2 its index
    bn: str  # a unit's i-th norm, under the unit's prefix
    relu: str  # the activation after it
    # The projection shortcut: (pool, conv, norm) with a plain conv shortcut (no pool) and with
    # ResNet-D's average-pooled one.
    downsample_conv: tuple[str, str, str]
    downsample_avg: tuple[str, str, str]
    # The stem: single conv, deep stem's three convs, their two norms and activations; the norm
    # and activation after the stem's last conv (where it has one), the pool, the conv pool.
    stem_conv: str
    deep_convs: tuple[str, str, str]
    deep_norms: tuple[str, str]
    deep_relus: tuple[str, str]
    stem_bn: str
    stem_relu: str
    stem_pool: str
    conv_pool: tuple[str, str, str]  # timm's replace_stem_pool: conv, norm, activation
    final_bn: str  # a pre-activation net's last norm and activation, before pooling
    final_relu: str
    pool: str
    fc: str
    conv_head: bool  # the classifier's weight is a 1x1 conv's (graphgen.plan.Linear.conv)
    stem_norm: bool  # the stem's last conv is followed by BN-ReLU

    def block(self, stage: int, index: int) -> str:
        """The prefix of stage `stage`'s (from 0) unit `index`: `layer1.0`, `stages.0.blocks.0`."""
        return self.block_format.format(stage=stage + self.first_stage, index=index)

    @property
    def block_pattern(self) -> re.Pattern[str]:
        return re.compile(self.block_regex)

    def downsample(self, *, avg: bool) -> tuple[str, str, str]:
        return self.downsample_avg if avg else self.downsample_conv


# torchvision's names; timm's resnet.py keeps them, adding `conv1.0` ... for its deep stems
# (an nn.Sequential of conv, BN, ReLU, conv, BN, ReLU, conv) and `maxpool.0` ... for ResNet-RS's
# conv pool. ReLUs hold no weights: their names only need to be unique.
TORCHVISION = Layout(
    name="torchvision",
    block_format="layer{stage}.{index}",
    first_stage=1,
    block_regex=r"(layer\d+)\.(\d+)\.",
    bn="bn{}",
    relu="relu{}",
    downsample_conv=("", "downsample.0", "downsample.1"),
    downsample_avg=("downsample.0", "downsample.1", "downsample.2"),
    stem_conv="conv1",
    deep_convs=("conv1.0", "conv1.3", "conv1.6"),
    deep_norms=("conv1.1", "conv1.4"),
    deep_relus=("conv1.2", "conv1.5"),
    stem_bn="bn1",
    stem_relu="relu",
    stem_pool="maxpool",
    conv_pool=("maxpool.0", "maxpool.1", "maxpool.2"),
    final_bn="bn_final",
    final_relu="relu_final",
    pool="avgpool",
    fc="fc",
    conv_head=False,
    stem_norm=True,
)

# timm's ResNetV2 (resnetv2.py) with BatchNormAct2d: pre-activation, so the stem's last conv has
# no norm (each unit starts with its own), a projection has none either, and the net ends on
# `norm` (BN + ReLU) and a conv head. A norm's ReLU lives inside it in timm (`norm1.act`); here
# it is a sibling (`act1`), which holds no weights, so the state_dict is the same.
RESNETV2 = Layout(
    name="timm-resnetv2",
    block_format="stages.{stage}.blocks.{index}",
    first_stage=0,
    block_regex=r"(stages\.\d+\.blocks)\.(\d+)\.",
    bn="norm{}",
    relu="act{}",
    downsample_conv=("", "downsample.conv", "downsample.norm"),
    downsample_avg=("downsample.pool", "downsample.conv", "downsample.norm"),
    stem_conv="stem.conv",
    deep_convs=("stem.conv1", "stem.conv2", "stem.conv3"),
    deep_norms=("stem.norm1", "stem.norm2"),
    deep_relus=("stem.act1", "stem.act2"),
    stem_bn="stem.norm",
    stem_relu="stem.act",
    stem_pool="stem.pool",
    conv_pool=("", "", ""),  # timm's ResNetV2 has no conv pool: refused by the spec
    final_bn="norm",
    final_relu="final_act",
    pool="head.global_pool",
    fc="head.fc",
    conv_head=True,
    stem_norm=False,
)

LAYOUTS = {layout.name: layout for layout in (TORCHVISION, RESNETV2)}
