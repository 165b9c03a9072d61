"""How big a run is, from the plan and the data settings, before anything is allocated.

`resnet-train --classes 1000000000` or `--image-size 1000000` would otherwise die of
MemoryError (or swap for an hour) after creating the run folder. The counts come from the plan
(walked, never re-described); the block count is checked first, because expanding a spec of a
million blocks is itself slow. Memory estimates are rough upper bounds, good to an order of
magnitude, which is what catching a typo needs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from graphgen.sizes import checked_network
from graphgen.spec import Spec
from resnet_common.limits import SizeLimits, check_memory

FLOAT = 4  # bytes per fp32 value
# _synthetic_images holds about four float64 arrays of the whole set at its peak, plus uint8.
SYNTHETIC_BYTES_PER_VALUE = 4 * 8 + 1


@dataclass(frozen=True)
class NetworkSize:
    params: int
    macs: int
    largest_activation: int  # values of the largest tensor, one image
    activations: int  # values of every op's output, one image (what backward keeps)


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def network_size(
    spec: Spec,
    limits: SizeLimits = SizeLimits(),  # noqa: B008 (frozen)
    *,
    hint: Callable[[str], str],
) -> NetworkSize:
    """The network's counts, refusing (TooLargeError) anything past `limits` (graphgen's checks)."""
    plan = checked_network(spec, limits, hint=hint)
    shapes = [_numel(op.shape) for op in plan.ops]
    return NetworkSize(plan.params, plan.macs, max(shapes), sum(shapes))


def check_synthetic_memory(
    images: int, image_size: int, limits: SizeLimits, *, hint: Callable[[str], str]
) -> None:
    """The built-in synthetic set is made in memory at once: refuse one that cannot fit."""
    needed = images * 3 * image_size * image_size * SYNTHETIC_BYTES_PER_VALUE
    check_memory(
        needed,
        what=f"the synthetic set ({images:,} images of {image_size}x{image_size})",
        limits=limits,
        hint=hint,
    )


def check_training_memory(
    size: NetworkSize,
    batch: int,
    limits: SizeLimits,
    *,
    hint: Callable[[str], str],
    available: int | None = None,
) -> None:
    """Weights, gradients and momentum, plus the activations backward keeps for one batch."""
    needed = FLOAT * (3 * size.params + 2 * batch * size.activations)
    check_memory(
        needed,
        what=f"training with batch {batch:,}",
        limits=limits,
        hint=hint,
        available=available,
    )
