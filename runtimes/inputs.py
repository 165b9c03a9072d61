"""Seeded inputs, the same bytes for every engine.

Distribution: pixels uniform in [0, 1), normalised with the ImageNet mean and std, as a
torchvision preprocessing pipeline would feed a real image; values lie in about [-2.1, 2.7].
Iteration i uses seed + i (Polygraphy's data loader does the same), so a report that records
the seed reproduces its inputs exactly.
"""

from __future__ import annotations

import numpy as np

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
DEFAULT_SEED = 1
DISTRIBUTION = "uniform pixels in [0,1) normalised with ImageNet mean/std"


def image_batch(
    batch: int, image_size: int, *, seed: int = DEFAULT_SEED, iteration: int = 0
) -> np.ndarray:
    """A float32 NCHW batch of normalised images."""
    rng = np.random.default_rng(seed + iteration)
    pixels = rng.random((batch, 3, image_size, image_size), dtype=np.float32)
    return (pixels - IMAGENET_MEAN[:, None, None]) / IMAGENET_STD[:, None, None]


def feeds(
    input_name: str, batch: int, image_size: int, *, seed: int = DEFAULT_SEED, iteration: int = 0
) -> dict[str, np.ndarray]:
    """Named inputs for `Runner.infer`."""
    return {input_name: image_batch(batch, image_size, seed=seed, iteration=iteration)}
