"""Order statistics shared by the timing records (runtimes.timing) and the report's paired
ratios (reports.ratios): nearest-rank percentiles (trtexec's rule: sort, drop the top (1-p)N,
take the next), the median, and the median's distribution-free confidence interval from
binomial order statistics, so no distributional assumption is needed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction


def percentile(sorted_samples: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of already-sorted samples: the smallest x with >= p% at or below."""
    n = len(sorted_samples)
    if n == 0:
        raise ValueError("percentile of no samples")
    rank = math.ceil(round(p * n / 100, 9))  # round: 90 * 10 / 100 must be exactly 9
    return sorted_samples[min(max(rank, 1), n) - 1]


def median(sorted_samples: Sequence[float]) -> float:
    n = len(sorted_samples)
    if n == 0:
        raise ValueError("median of no samples")
    mid = n // 2
    if n % 2:
        return sorted_samples[mid]
    return (sorted_samples[mid - 1] + sorted_samples[mid]) / 2


EXACT_CI_MAX_N = 5000  # exact binomial ranks up to here; the normal approximation beyond


def median_ci_ranks(n: int, confidence: float = 0.95) -> tuple[int, int] | None:
    """1-based ranks (j, n+1-j) with P(x_(j) <= true median <= x_(n+1-j)) >= confidence.

    Coverage of [x_(j), x_(n+1-j)] is 1 - 2 P(B <= j-1) for B ~ Binomial(n, 1/2); take the
    largest such j. None when even [min, max] falls short (n < 6 at 95%)."""
    if n < 1:
        return None
    alpha = (1 - confidence) / 2
    if n > EXACT_CI_MAX_N:
        z = math.sqrt(2) * _erfinv(1 - 2 * alpha)
        j = math.floor(n / 2 - z * math.sqrt(n) / 2)
        return max(j, 1), n + 1 - max(j, 1)
    a = Fraction(alpha).limit_denominator(10**6)
    budget = a.numerator * 2**n  # compare tail / 2^n <= alpha in exact integers
    term, tail, j = 1, 0, 0  # tail = sum_{i < j} C(n, i); term = C(n, j)
    while j < (n + 1) // 2:
        if (
            tail + term
        ) * a.denominator > budget:  # taking rank j+1 would leave too little coverage
            break
        tail += term
        term = term * (n - j) // (j + 1)
        j += 1
    return None if j == 0 else (j, n + 1 - j)


def _erfinv(y: float) -> float:
    """Inverse error function by Newton steps (only for the large-n normal approximation)."""
    x = 0.0
    for _ in range(60):
        x -= (math.erf(x) - y) / (2 / math.sqrt(math.pi) * math.exp(-x * x))
    return x


def median_ci(sorted_samples: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Distribution-free CI of the median; [min, max] when there are too few samples for it."""
    ranks = median_ci_ranks(len(sorted_samples), confidence)
    if ranks is None:
        return sorted_samples[0], sorted_samples[-1]
    return sorted_samples[ranks[0] - 1], sorted_samples[ranks[1] - 1]


def paired_ratio(
    a: Sequence[float], b: Sequence[float], confidence: float = 0.95
) -> tuple[float, float, float] | None:
    """(median, lo, hi) of the pairwise ratios a_i / b_i (round i of an interleaved run): the
    interval is the distribution-free interval of that median. None with too few pairs."""
    ratios = sorted(x / y for x, y in zip(a, b, strict=False) if y > 0)
    ranks = median_ci_ranks(len(ratios), confidence)
    if ranks is None:
        return None
    return median(ratios), ratios[ranks[0] - 1], ratios[ranks[1] - 1]
