"""Activation ranges: amax of every tensor the placement quantizes, observed by the numpy forward
pass (`forward_nhwc`) on the calibration images."""

from __future__ import annotations

import math

import numpy as np

from graphgen.numpy_forward import forward_nhwc
from graphgen.plan import INPUT, Op, Plan
from graphgen.quantize.options import QuantOptions
from graphgen.quantize.placement import placement_for
from graphgen.weights import Weights

CALIBRATION_BATCH = 8


class Ranges:
    """amax per tensor: the running max of |x|, or an exact percentile of |x| over every
    calibration value (the top-k largest are kept per tensor, k = the percentile's tail)."""

    def __init__(self, names: set[str], options: QuantOptions, images: int) -> None:
        self.names = names
        self.options = options
        self.images = images
        self.max: dict[str, float] = {}
        self.top: dict[str, np.ndarray] = {}
        self.tail: dict[str, int] = {}

    def add(self, name: str, x: np.ndarray) -> None:
        if name not in self.names:
            return
        a = np.abs(x).ravel()
        self.max[name] = max(self.max.get(name, 0.0), float(a.max(initial=0.0)))
        if self.options.method != "percentile":
            return
        if name not in self.tail:
            per_image = a.size // max(x.shape[0], 1)
            total = per_image * self.images
            self.tail[name] = max(1, math.ceil(total * (100.0 - self.options.percentile) / 100))
        k = self.tail[name]
        kept = a if a.size <= k else np.partition(a, a.size - k)[a.size - k :]
        held = np.concatenate([self.top.get(name, np.empty(0, np.float32)), kept])
        if held.size > k:
            held = np.partition(held, held.size - k)[held.size - k :]
        self.top[name] = held

    def amax(self, name: str) -> float:
        if self.options.method == "percentile" and name in self.top:
            value = float(self.top[name].min())  # the k-th largest |x|
        else:
            value = self.max.get(name, 0.0)
        return value if value > 0 else 1.0  # an all-zero tensor: any scale is exact


def calibrate(
    plan: Plan,
    weights: Weights,
    images: np.ndarray,
    *,
    options: QuantOptions,
    batch: int = CALIBRATION_BATCH,
) -> dict[str, float]:
    """amax of every tensor the placement quantizes, from `forward_nhwc`'s observer."""
    place = placement_for(plan, options.placement)
    ranges = Ranges(place.observed(), options, len(images))

    def observe(op: Op, out: np.ndarray) -> None:
        ranges.add(op.out, out)

    for start in range(0, len(images), batch):
        chunk = images[start : start + batch]
        ranges.add(INPUT, chunk)
        forward_nhwc(plan, weights, chunk, head=True, observe=observe)
    return {name: ranges.amax(source) for name, source in place.scale_of.items()}
