"""Seeded He initialisation, BN statistics that keep activations well scaled, and BN folding.

He init with identity BN statistics (mean 0, var 1) lets activations grow with depth: torchvision's
random resnet152 in eval mode gives logits near 1e8, which overflow fp16 and make parity
meaningless. So every BN's running statistics are calibrated: a few seeded N(0, 1) images at the
graph's own size are run through the plan in numpy, and each BN takes the batch mean and variance
of its input, as BN does in training. Statistics must come from the graph's own size: zero padding
makes small feature maps behave differently, and stats calibrated at 64x64 blow up at 224x224.

An analytic moment propagation (per-channel mean and variance through conv, ReLU and add) was
tried first and rejected: it ignores the correlations between channels that random convs create,
and its per-channel errors compound with depth (cifar-plain110 reached logits of 1e6).
"""

from __future__ import annotations

import math

import numpy as np

from graphgen.numpy_forward import forward_nhwc
from graphgen.plan import BN_EPS, Add, BatchNorm, ChannelConv, Conv, Linear, Plan, bn_producers

# Scale of the last BN in each residual branch. Random BN nets amplify perturbations with depth
# (with scale 1, a 1e-3 input change moved resnet152's logits by 16% and fp32 rounding alone broke
# 1e-5 parity between folded and unfolded graphs). Trained ResNets keep these scales small, and
# torchvision's zero_init_residual (Goyal et al. 2017) sets them to 0; 0.25 keeps every branch
# contributing while bringing resnet152's sensitivity to ~2% and its logit std to O(1).
RESIDUAL_BN_SCALE = 0.25
# Shift of every BN in a plain net (shortcut "none"). Deep, narrow plain ReLU nets are chaotic at
# initialisation: which units pass depends on the input, so per-image output scales spread
# log-normally and calibrated statistics do not transfer to fresh inputs (cifar-plain110, per-image
# logit std from 0.06 to 155 across images; a 1e-3 input change moved logits by 16-58%). A shift
# of 1 lets ~84% of units pass, which makes the net nearly input-independent in gain: per-image
# std 0.3-0.8 over four seeds and 0.5-1% sensitivity. ResNets keep zero shifts.
PLAIN_BN_SHIFT = 1.0
Weights = dict[str, np.ndarray]


def init_weights(plan: Plan, seed: int = 0) -> Weights:
    """He-initialised weights for an unfolded plan, with calibrated BN statistics, in plan order."""
    rng = np.random.default_rng(seed)
    weights: Weights = {}
    for op in plan.ops:
        if isinstance(op, Conv):
            fan_out = (
                op.cout * op.kernel * op.kernel
            )  # He et al. 2015b, torchvision's mode="fan_out"
            shape = (op.cout, op.cin // op.groups, op.kernel, op.kernel)
            w = rng.standard_normal(shape, dtype=np.float32)
            w *= np.float32(math.sqrt(2.0 / fan_out))
            weights[f"{op.name}.weight"] = w
            if op.bias:  # Gluon v1's bottleneck 1x1 and SE's biases start at zero
                weights[f"{op.name}.bias"] = np.zeros(op.cout, np.float32)
        elif isinstance(op, ChannelConv):  # torch's Conv1d default, which timm keeps for ECA
            bound = np.float32(1.0 / math.sqrt(op.kernel))
            weights[f"{op.name}.weight"] = rng.uniform(-bound, bound, (1, 1, op.kernel)).astype(
                np.float32
            )
        elif isinstance(op, BatchNorm):
            if op.affine:
                weights[f"{op.name}.weight"] = np.ones(op.channels, np.float32)
                weights[f"{op.name}.bias"] = np.zeros(op.channels, np.float32)
            weights[f"{op.name}.running_mean"] = np.zeros(op.channels, np.float32)
            weights[f"{op.name}.running_var"] = np.ones(op.channels, np.float32)
        elif isinstance(op, Linear):
            bound = np.float32(1.0 / math.sqrt(op.in_features))  # torch.nn.Linear's default
            weights[f"{op.name}.weight"] = (
                rng.uniform(-bound, bound, (op.out_features, op.in_features))
                .astype(np.float32)
                .reshape(op.params()[f"{op.name}.weight"])  # (K, C, 1, 1) for a conv head
            )
            weights[f"{op.name}.bias"] = rng.uniform(-bound, bound, op.out_features).astype(
                np.float32
            )
    for op in plan.ops:
        if isinstance(op, Add):
            weights[f"{_last_branch_bn(plan, op.a)}.weight"][:] = RESIDUAL_BN_SCALE
        elif isinstance(op, BatchNorm) and op.affine and plan.spec.shortcut == "none":
            weights[f"{op.name}.bias"][:] = PLAIN_BN_SHIFT
    calibrate_bn(plan, weights, seed=seed)
    return weights


CALIBRATION_MACS = 4_000_000_000  # budget for the calibration pass, in multiply-accumulates


def calibration_images(plan: Plan) -> int:
    """How many images calibrate BN: up to the MAC budget, between 1 and 8. Big ImageNet nets
    get one image (49+ positions per channel even at 7x7); small maps need more samples, and
    deep plain nets amplify noisy statistics (cifar-plain110 with one image: logit std 278)."""
    return int(min(8, max(1, CALIBRATION_MACS // max(plan.macs, 1))))


def _last_branch_bn(plan: Plan, tensor: str) -> str:
    """The last BN of the residual branch ending in `tensor`: the branch's final op itself, or
    in a pre-activation unit (conv <- ReLU <- BN) the BN before its last conv. ReLU is
    positively homogeneous, so scaling that BN scales the branch either way."""
    producer = {op.out: op for op in plan.ops}
    op = producer[tensor]
    while not isinstance(op, BatchNorm):
        op = producer[op.a if isinstance(op, Add) else op.x]
    return op.name


def calibrate_bn(plan: Plan, weights: Weights, *, seed: int = 0, images: int | None = None) -> None:
    """Set every BN's running statistics from a numpy forward pass at the graph's size (in place)."""
    images = calibration_images(plan) if images is None else images
    rng = np.random.default_rng([seed, 1])
    s = plan.spec.image_size
    x = rng.standard_normal((images, s, s, 3), dtype=np.float32)
    forward_nhwc(plan, weights, x, set_bn_stats=True, head=False)


def fold_weights(plan: Plan, weights: Weights) -> Weights:
    """Merge each BN into its conv: w' = w * g / sqrt(v + eps), b' = beta - mean * g / sqrt(v + eps).

    A bias the conv already has (Gluon v1's bottleneck 1x1s) moves into the BN's mean first,
    exactly: BN(x + b) normalises with mean' = mean - b."""
    folded: Weights = {}
    bn_of = {conv: bn for bn, conv in bn_producers(plan).items()}
    bns = set(bn_of.values())
    for name, value in weights.items():
        if name.rsplit(".", 1)[0] in bns:
            continue
        folded[name] = value
    for conv, bn in bn_of.items():
        gamma = weights[f"{bn}.weight"].astype(np.float64)
        beta = weights[f"{bn}.bias"].astype(np.float64)
        mean = weights[f"{bn}.running_mean"].astype(np.float64)
        if f"{conv}.bias" in weights:
            mean = mean - weights[f"{conv}.bias"].astype(np.float64)
        var = weights[f"{bn}.running_var"].astype(np.float64)
        scale = gamma / np.sqrt(var + BN_EPS)
        w = weights[f"{conv}.weight"].astype(np.float64)
        folded[f"{conv}.weight"] = (w * scale[:, None, None, None]).astype(np.float32)
        folded[f"{conv}.bias"] = (beta - mean * scale).astype(np.float32)
    return folded
