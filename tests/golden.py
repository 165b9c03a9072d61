"""Seeded weights and images for the golden fixtures (tests/fixtures/golden/): the one generator
that scripts/golden_fixtures.py (which runs the source libraries) and tests/test_golden.py (which
runs graphgen's graphs) both import, so neither needs the other's weights on disk.

Numbers come from PCG64's raw 64-bit output with the state set directly from a SHA-256 of the
seed and the tensor's name: numpy keeps the PCG64 bit stream fixed across versions, while its
distribution methods (`normal`, `uniform`) and seeding paths are free to change. Every tensor
has a stream of its own, so the order in which a library lists its tensors does not matter.
A changed generator changes `weights_sha256`, which each fixture records.

Only numpy and the standard library here: the fixture script runs in a venv without graphgen.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping

import numpy as np

Shapes = Mapping[str, tuple[int, ...]]

# Ranges chosen so that BN is far from identity and activations stay O(1): a conv's weights
# have variance 2 / fan_in (He et al. 2015b) and BN's gain gamma / sqrt(var) averages about 1
# in square, so a residual branch keeps its input's scale; the last BN of each branch
# (`layerI.J.bnK` with the largest K in its unit) scales the branch down, as trained nets and
# torchvision's zero_init_residual do, or the stream's variance would double with every unit
# (ResNet-50's logits reached std 460 with this scale at 1).
BN_WEIGHT = (0.5, 1.5)
BN_LAST_WEIGHT = (0.1, 0.4)
BN_BIAS = (-0.25, 0.25)
BN_MEAN = (-0.25, 0.25)
BN_VAR = (0.5, 2.0)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def unit_uniform(seed: int, key: str, count: int) -> np.ndarray:
    """`count` float64 values in [0, 1) from the stream of (`seed`, `key`): the top 53 bits
    of each raw PCG64 output, scaled."""
    digest = hashlib.sha256(f"graphgen-golden/{seed}/{key}".encode()).digest()
    state = int.from_bytes(digest[:16], "little")
    inc = int.from_bytes(digest[16:], "little") | 1  # PCG's increment must be odd
    bits = np.random.PCG64()
    bits.state = {
        "bit_generator": "PCG64",
        "state": {"state": state, "inc": inc},
        "has_uint32": 0,
        "uinteger": 0,
    }
    raw = bits.random_raw(count).astype(np.uint64)
    values: np.ndarray = (raw >> np.uint64(11)).astype(np.float64) * 2.0**-53
    return values


def _uniform(seed: int, key: str, shape: tuple[int, ...], low: float, high: float) -> np.ndarray:
    values = unit_uniform(seed, key, math.prod(shape)).reshape(shape)
    return (low + (high - low) * values).astype(np.float32)


def tensor(
    seed: int, name: str, shape: tuple[int, ...], owner: tuple[int, ...], *, last_bn: bool = False
) -> np.ndarray:
    """One named tensor. `owner` is the shape of the weight of the layer that owns it (4-d a
    conv, 2-d a fc, 1-d a BN): it tells a BN's bias from a fc's, and gives the fc its fan-in."""
    kind = name.rsplit(".", 1)[-1]
    if len(owner) >= 3 and kind == "weight":  # a conv's: 2-d, or ECA's 1-d (1, 1, k)
        bound = math.sqrt(6.0 / math.prod(owner[1:]))  # uniform with variance 2 / fan_in
        return _uniform(seed, name, shape, -bound, bound)
    if len(owner) >= 3 and kind == "bias":  # SE's convs, ResNetV2's conv head
        return _uniform(seed, name, shape, -0.1, 0.1)
    if len(owner) == 2 and kind in ("weight", "bias"):
        bound = 1.0 / math.sqrt(owner[1])  # torch.nn.Linear's default range
        return _uniform(seed, name, shape, -bound, bound)
    ranges = {
        "weight": BN_LAST_WEIGHT if last_bn else BN_WEIGHT,
        "bias": BN_BIAS,
        "running_mean": BN_MEAN,
        "running_var": BN_VAR,
    }
    if len(owner) != 1 or kind not in ranges:
        raise ValueError(f"no rule for tensor {name!r} of shape {shape}")
    return _uniform(seed, name, shape, *ranges[kind])


def golden_weights(shapes: Shapes, seed: int) -> dict[str, np.ndarray]:
    """Float32 weights for every tensor in `shapes` (graphgen's names, which are torchvision's
    state_dict keys), in the order given. A layer without a weight (a BN with no scale) counts
    as a BN."""
    last = last_branch_bns(shapes)
    weights: dict[str, np.ndarray] = {}
    for name, shape in shapes.items():
        layer = name.rsplit(".", 1)[0]
        owner = tuple(shapes.get(f"{layer}.weight", (shape[0],)))
        weights[name] = tensor(seed, name, tuple(shape), owner, last_bn=layer in last)
    return weights


_UNIT_BN = re.compile(r"((?:layer\d+|stages\.\d+\.blocks)\.\d+)\.(bn|norm)(\d+)\.weight")


def last_branch_bns(shapes: Shapes) -> set[str]:
    """The last BN of each residual unit's branch, by torchvision's names (`layer2.0.bn2` in a
    basic unit, `layer2.0.bn3` in a bottleneck) or timm ResNetV2's (`stages.1.blocks.0.norm3`,
    before the last conv of a pre-activation unit)."""
    last: dict[str, tuple[int, str]] = {}
    for name in shapes:
        match = _UNIT_BN.fullmatch(name)
        if match:
            unit, norm, index = match.group(1), match.group(2), int(match.group(3))
            last[unit] = max((index, norm), last.get(unit, (0, norm)))
    return {f"{unit}.{norm}{index}" for unit, (index, norm) in last.items()}


def weights_sha256(weights: Mapping[str, np.ndarray]) -> str:
    """A digest of names, shapes and float32 bytes, in sorted name order."""
    digest = hashlib.sha256()
    for name in sorted(weights):
        value = np.ascontiguousarray(weights[name], dtype="<f4")
        digest.update(f"{name}:{list(value.shape)};".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def images(seed: int, batch: int, size: int) -> np.ndarray:
    """`batch` images as a network sees them: uniform pixels in [0, 1), normalised with the
    ImageNet mean and std, float32 NCHW."""
    pixels = unit_uniform(seed, f"images/{batch}x{size}", batch * 3 * size * size)
    x = pixels.reshape(batch, 3, size, size)
    mean = np.array(IMAGENET_MEAN).reshape(1, 3, 1, 1)
    std = np.array(IMAGENET_STD).reshape(1, 3, 1, 1)
    return ((x - mean) / std).astype(np.float32)
