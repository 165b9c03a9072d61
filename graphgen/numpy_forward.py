"""The plan run in numpy: the reference forward pass that calibrates BN statistics
(graphgen.weights), observes activation ranges for int8 (graphgen.quantize), and checks the other
interpreters of the plan (the ONNX graph, the torch module) in the tests. No torch, no onnxruntime.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from graphgen.plan import (
    BN_EPS,
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
    last_use,
)

if TYPE_CHECKING:
    from graphgen.weights import Weights

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
        out = _run_op(op, values, weights, set_bn_stats=set_bn_stats)
        if observe is not None:
            observe(op, out)
        values[op.out] = out
        for name in frees.get(index, ()):
            if name != op.out:
                values.pop(name, None)
    return out


def _run_op(
    op: Op, values: dict[str, np.ndarray], weights: Weights, *, set_bn_stats: bool
) -> np.ndarray:
    out: np.ndarray
    if isinstance(op, Add):
        out = values[op.a] + values[op.b]
    elif isinstance(op, Conv):
        out = _conv_nhwc(values[op.x], weights[f"{op.name}.weight"], op.stride, op.pad)
        if op.bias:
            out = out + weights[f"{op.name}.bias"]
    elif isinstance(op, BatchNorm):
        out = _batch_norm_nhwc(op, values[op.x], weights, set_stats=set_bn_stats)
    elif isinstance(op, Relu):
        out = np.maximum(values[op.x], 0)
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
    return out


def _batch_norm_nhwc(
    op: BatchNorm, x: np.ndarray, weights: Weights, *, set_stats: bool
) -> np.ndarray:
    """With `set_stats`, the batch's mean and variance become the running statistics first."""
    if set_stats:
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
    normalised: np.ndarray = x * scale + shift
    return normalised


def bn_affine(op: BatchNorm, weights: Weights) -> tuple[np.ndarray, np.ndarray]:
    """A BN's scale and shift; ones and zeros for a BN without them (Gluon v2's data BN)."""
    if op.affine:
        return weights[f"{op.name}.weight"], weights[f"{op.name}.bias"]
    return np.ones(op.channels, np.float32), np.zeros(op.channels, np.float32)


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
