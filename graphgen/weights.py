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
from collections.abc import Callable

import numpy as np

from graphgen.plan import (
    INPUT,
    Add,
    BatchNorm,
    Conv,
    GlobalAvgPool,
    Linear,
    MaxPool,
    Op,
    Plan,
    Relu,
    ZeroPadShortcut,
    bn_producers,
)

BN_EPS = 1e-5
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
            w = rng.standard_normal((op.cout, op.cin, op.kernel, op.kernel), dtype=np.float32)
            w *= np.float32(math.sqrt(2.0 / fan_out))
            weights[f"{op.name}.weight"] = w
            if op.bias:  # Gluon v1's bottleneck 1x1 biases start at zero, as Gluon's do
                weights[f"{op.name}.bias"] = np.zeros(op.cout, np.float32)
        elif isinstance(op, BatchNorm):
            if op.affine:
                weights[f"{op.name}.weight"] = np.ones(op.channels, np.float32)
                weights[f"{op.name}.bias"] = np.zeros(op.channels, np.float32)
            weights[f"{op.name}.running_mean"] = np.zeros(op.channels, np.float32)
            weights[f"{op.name}.running_var"] = np.ones(op.channels, np.float32)
        elif isinstance(op, Linear):
            bound = np.float32(1.0 / math.sqrt(op.in_features))  # torch.nn.Linear's default
            weights[f"{op.name}.weight"] = rng.uniform(
                -bound, bound, (op.out_features, op.in_features)
            ).astype(np.float32)
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


Observer = Callable[[Op, np.ndarray], None]


def forward_nhwc(
    plan: Plan,
    weights: Weights,
    images: np.ndarray,
    *,
    set_bn_stats: bool = False,
    head: bool = True,
    observe: Observer | None = None,
) -> np.ndarray:
    """Run the plan in numpy on NHWC `images`; the one forward pass every calibration shares.

    Arrays are NHWC internally so that convs are plain matrix products. With `set_bn_stats`, each
    BN takes its input's batch mean and variance into `weights` (in place) before normalising, as
    BN does in training; otherwise it uses the running statistics. `observe(op, out)` sees every
    op's output as it is computed (activation calibration for int8 reads them there). With
    `head=False` the pass stops before global pooling and returns the last tensor computed.
    Folded plans (convs with a bias) run too.
    """
    values = {INPUT: images}
    frees = last_use(plan)
    out = images
    for index, op in enumerate(plan.ops):
        if not head and isinstance(op, GlobalAvgPool | Linear):
            break
        if isinstance(op, Conv):
            out = _conv_nhwc(values[op.x], weights[f"{op.name}.weight"], op.stride, op.pad)
            if op.bias:
                out = out + weights[f"{op.name}.bias"]
        elif isinstance(op, BatchNorm):
            x = values[op.x]
            if set_bn_stats:
                flat = x.reshape(-1, x.shape[-1])
                mean = flat.mean(axis=0, dtype=np.float64)
                var = flat.var(axis=0, dtype=np.float64)
                var = np.maximum(var, BN_EPS)
                weights[f"{op.name}.running_mean"] = mean.astype(np.float32)
                weights[f"{op.name}.running_var"] = var.astype(np.float32)
            else:
                mean = weights[f"{op.name}.running_mean"].astype(np.float64)
                var = weights[f"{op.name}.running_var"].astype(np.float64)
            gamma, beta = bn_affine(op, weights)
            scale = (gamma / np.sqrt(var + BN_EPS)).astype(np.float32)
            shift = (beta - mean * scale).astype(np.float32)
            out = x * scale + shift
        elif isinstance(op, Relu):
            out = np.maximum(values[op.x], 0)
        elif isinstance(op, Add):
            out = values[op.a] + values[op.b]
        elif isinstance(op, MaxPool):
            out = _max_pool_nhwc(values[op.x], op.kernel, op.stride, op.pad)
        elif isinstance(op, ZeroPadShortcut):
            x = values[op.x][:, :: op.stride, :: op.stride, :]
            out = np.pad(x, ((0, 0), (0, 0), (0, 0), (op.pad_before, op.pad_after)))
        elif isinstance(op, GlobalAvgPool):
            out = values[op.x].mean(axis=(1, 2), dtype=np.float32)
        elif isinstance(op, Linear):
            out = values[op.x] @ weights[f"{op.name}.weight"].T + weights[f"{op.name}.bias"]
        else:  # pragma: no cover - the plan's op union is closed
            raise TypeError(type(op).__name__)
        if observe is not None:
            observe(op, out)
        values[op.out] = out
        for name in frees.get(index, ()):
            if name != op.out:
                values.pop(name, None)
    return out


def bn_affine(op: BatchNorm, weights: Weights) -> tuple[np.ndarray, np.ndarray]:
    """A BN's scale and shift; ones and zeros for a BN without them (Gluon v2's data BN)."""
    if op.affine:
        return weights[f"{op.name}.weight"], weights[f"{op.name}.bias"]
    return np.ones(op.channels, np.float32), np.zeros(op.channels, np.float32)


def last_use(plan: Plan) -> dict[int, list[str]]:
    """Op index -> tensors no later op reads, so the forward pass frees them early."""
    last: dict[str, int] = {}
    for index, op in enumerate(plan.ops):
        for attr in ("x", "a", "b"):
            name = getattr(op, attr, None)
            if name is not None:
                last[name] = index
    by_index: dict[int, list[str]] = {}
    for name, index in last.items():
        by_index.setdefault(index, []).append(name)
    return by_index


def _conv_nhwc(x: np.ndarray, w: np.ndarray, stride: int, pad: int) -> np.ndarray:
    n, h, wd, c = x.shape
    cout, _, k, _ = w.shape
    if k == 1:
        x = x[:, ::stride, ::stride, :] if stride > 1 else x
        out = x.reshape(-1, c) @ w.reshape(cout, c).T
        result: np.ndarray = out.reshape(*x.shape[:3], cout)
        return result
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    oh, ow = (h + 2 * pad - k) // stride + 1, (wd + 2 * pad - k) // stride + 1
    cols = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(1, 2))
    cols = cols[:, : oh * stride : stride, : ow * stride : stride]  # n, oh, ow, c, k, k
    out = cols.reshape(n * oh * ow, c * k * k) @ w.reshape(cout, c * k * k).T
    full: np.ndarray = out.reshape(n, oh, ow, cout)
    return full


def _max_pool_nhwc(x: np.ndarray, k: int, stride: int, pad: int) -> np.ndarray:
    n, h, w, c = x.shape
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), constant_values=-np.inf)
    oh, ow = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    win = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(1, 2))
    pooled: np.ndarray = win[:, : oh * stride : stride, : ow * stride : stride].max(axis=(-1, -2))
    return pooled


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
