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
    AvgPool,
    BatchNorm,
    ChannelConv,
    Conv,
    GlobalAvgPool,
    Linear,
    MaxPool,
    Op,
    Plan,
    Relu,
    Scale,
    Sigmoid,
    ZeroPadShortcut,
    last_use,
    pool_out,
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
    # The head: from the last global pool on (attention's squeezes pool inside the units).
    head_start = max(i for i, op in enumerate(plan.ops) if isinstance(op, GlobalAvgPool))
    for index, op in enumerate(plan.ops):
        if not head and index >= head_start:
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
        w = weights[f"{op.name}.weight"]
        out = _conv_nhwc(values[op.x], w, op.stride, op.pad, op.groups)
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
    elif isinstance(op, AvgPool):
        out = _avg_pool_nhwc(values[op.x], op.kernel, op.stride)
    elif isinstance(op, Sigmoid):
        out = 0.5 * (1 + np.tanh(0.5 * values[op.x]))  # the logistic, without exp's overflow
    elif isinstance(op, Scale):
        out = values[op.x] * values[op.gate]
    elif isinstance(op, ChannelConv):
        out = _channel_conv(values[op.x], weights[f"{op.name}.weight"])
    elif isinstance(op, GlobalAvgPool):
        out = values[op.x].mean(axis=(1, 2), dtype=np.float32, keepdims=not op.flatten)
    elif isinstance(op, Linear):
        x, w = values[op.x], weights[f"{op.name}.weight"]
        out = x.reshape(len(x), -1) @ w.reshape(len(w), -1).T + weights[f"{op.name}.bias"]
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


def _conv_nhwc(x: np.ndarray, w: np.ndarray, stride: int, pad: int, groups: int = 1) -> np.ndarray:
    n, h, wd, c = x.shape
    cout, _, k, _ = w.shape
    if k == 1:
        x = x[:, ::stride, ::stride, :] if stride > 1 else x
        cols = x.reshape(-1, c)
    else:
        xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
        oh, ow = (h + 2 * pad - k) // stride + 1, (wd + 2 * pad - k) // stride + 1
        windows = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(1, 2))
        x = windows[:, : oh * stride : stride, : ow * stride : stride]  # n, oh, ow, c, k, k
        cols = x.reshape(n * oh * ow, c * k * k)
    if groups == 1:
        out = cols @ w.reshape(cout, -1).T
    else:  # each group's output channels read its own slice of the input channels
        per_group = cols.reshape(len(cols), groups, -1).transpose(1, 0, 2)  # g, rows, cin/g*k*k
        kernels = w.reshape(groups, cout // groups, -1).transpose(0, 2, 1)  # g, cin/g*k*k, cout/g
        out = np.matmul(per_group, kernels).transpose(1, 0, 2).reshape(len(cols), cout)
    result: np.ndarray = out.reshape(*x.shape[:3], cout)
    return result


def _avg_pool_nhwc(x: np.ndarray, k: int, stride: int) -> np.ndarray:
    """A ceil-mode pool without padding: an overhanging window averages what it covers."""
    n, h, w, c = x.shape
    oh, ow = pool_out(h, k, stride), pool_out(w, k, stride)
    ph, pw = (oh - 1) * stride + k - h, (ow - 1) * stride + k - w
    xp = np.pad(x, ((0, 0), (0, max(ph, 0)), (0, max(pw, 0)), (0, 0)))
    ones = np.pad(
        np.ones((1, h, w, 1), x.dtype), ((0, 0), (0, max(ph, 0)), (0, max(pw, 0)), (0, 0))
    )
    sums, counts = (
        np.lib.stride_tricks.sliding_window_view(a, (k, k), axis=(1, 2))[
            :, : oh * stride : stride, : ow * stride : stride
        ].sum(axis=(-1, -2))
        for a in (xp, ones)
    )
    pooled: np.ndarray = sums / counts
    return pooled


def _channel_conv(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """ECA's 1-d conv across the channels of an (N, 1, 1, C) map, zero-padded at both ends."""
    k = w.shape[-1]
    row = np.pad(x.reshape(len(x), -1), ((0, 0), ((k - 1) // 2, (k - 1) // 2)))
    windows = np.lib.stride_tricks.sliding_window_view(row, k, axis=1)  # n, C, k
    out: np.ndarray = (windows @ w.reshape(k)).reshape(x.shape)
    return out


def _max_pool_nhwc(x: np.ndarray, k: int, stride: int, pad: int) -> np.ndarray:
    n, h, w, c = x.shape
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), constant_values=-np.inf)
    oh, ow = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    win = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(1, 2))
    pooled: np.ndarray = win[:, : oh * stride : stride, : ow * stride : stride].max(axis=(-1, -2))
    return pooled
