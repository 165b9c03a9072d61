"""SE's squeeze width against timm's own rounding (`timm.layers.make_divisible(channels * ratio,
divisor, round_limit=0.)`, the call timm's SEModule makes). The expected values were computed with
timm 1.0.31:

    python -c "from timm.layers import make_divisible as m; print(m(200 / 16, 8, round_limit=0.))"

They cover rounding up at a half, rounding down, and the floor at one divisor; the presets'
channel counts (multiples of 256 / 16) never exercise the rounding."""

from __future__ import annotations

import pytest

from graphgen.attention import se_channels

# (channels, ratio, divisor) -> timm's make_divisible
TIMM_1_0_31 = {
    (48, 1 / 16, 8): 8,
    (64, 1 / 16, 8): 8,
    (96, 1 / 16, 8): 8,
    (200, 1 / 16, 8): 16,
    (24, 0.25, 8): 8,
    (72, 0.25, 8): 16,
    (100, 1 / 16, 4): 8,
    (256, 1 / 16, 8): 16,
    (40, 0.25, 8): 8,
}


@pytest.mark.parametrize(("key", "expected"), TIMM_1_0_31.items(), ids=str)
def test_se_width_rounds_as_timm_does(key: tuple[int, float, int], expected: int) -> None:
    channels, ratio, divisor = key
    assert se_channels(channels, ratio, divisor) == expected
