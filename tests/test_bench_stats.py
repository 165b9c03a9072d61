"""Statistics of the timing loop: known samples and properties (hypothesis)."""

import math
import statistics
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resnet_common.stats import median, median_ci, median_ci_ranks, percentile
from runtimes.timing import achieved_gflops, summarize, throughput_ips

quick = settings(deadline=None, max_examples=50, suppress_health_check=[HealthCheck.too_slow])

samples = st.lists(
    st.floats(min_value=1e-3, max_value=1e3, allow_nan=False), min_size=1, max_size=300
)


def test_known_sample():
    s = summarize([float(x) for x in range(1, 101)])  # 1..100 ms
    assert (s.min, s.max, s.mean, s.median) == (1, 100, 50.5, 50.5)
    assert (s.p90, s.p95, s.p99) == (90, 95, 99)  # nearest rank, as trtexec
    assert s.std == pytest.approx(statistics.stdev(range(1, 101)))
    assert s.cov == pytest.approx(s.std / 50.5)
    assert s.median_ci95 == (40, 61)  # binomial ranks 40 and 61 for n = 100
    assert s.median_ci_exact


def test_constant_samples_are_stable():
    s = summarize([2.0] * 20)
    assert s.std == 0 and s.cov == 0 and not s.unstable
    assert s.median_ci95 == (2.0, 2.0)


def test_few_samples_fall_back_to_min_max():
    assert median_ci_ranks(5) is None  # [min, max] covers only 93.75%
    assert median_ci_ranks(6) == (1, 6)
    s = summarize([3.0, 1.0, 2.0])
    assert s.median == 2 and s.median_ci95 == (1, 3) and not s.median_ci_exact


def test_unstable_above_trtexec_threshold():
    assert summarize([1.0, 1.1] * 10).unstable
    assert not summarize([1.0, 1.001] * 10).unstable


def test_throughput_and_gflops():
    s = summarize([10.0, 10.0])
    assert throughput_ips(s, 8) == pytest.approx(800)
    assert achieved_gflops(1_000_000_000, 2, 10.0) == pytest.approx(400)
    assert achieved_gflops(None, 2, 10.0) is None


@quick
@given(samples, st.integers(min_value=1, max_value=100))
def test_percentile_is_nearest_rank(xs, p):
    xs = sorted(xs)
    value = percentile(xs, p)
    assert value in xs
    at_or_below = sum(x <= value for x in xs)
    below = sum(x < value for x in xs)
    assert at_or_below / len(xs) >= p / 100 - 1e-12
    assert below / len(xs) < p / 100 + 1e-12


@quick
@given(samples)
def test_summary_orders(xs):
    s = summarize(xs)
    assert s.min <= s.median <= s.max
    assert s.min <= s.p90 <= s.p95 <= s.p99 <= s.max
    assert s.median_ci95[0] <= s.median <= s.median_ci95[1]
    assert s.median == pytest.approx(statistics.median(xs))
    assert s.mean == pytest.approx(statistics.fmean(xs))
    assert s.min - 1e-9 <= s.mean <= s.max + 1e-9


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=6, max_value=1500))
def test_median_ci_coverage(n):
    """Coverage of [x_(j), x_(n+1-j)] is at least 95%, and one rank tighter falls short."""
    j, k = median_ci_ranks(n)
    assert k == n + 1 - j and 1 <= j <= k <= n

    def coverage(j: int) -> float:
        return 1 - 2 * float(Fraction(sum(math.comb(n, i) for i in range(j)), 2**n))

    assert coverage(j) >= 0.95
    if j + 1 <= (n + 1) // 2:
        assert coverage(j + 1) < 0.95


@quick
@given(samples)
def test_median_matches_statistics(xs):
    assert median(sorted(xs)) == pytest.approx(statistics.median(xs))
    lo, hi = median_ci(sorted(xs))
    assert lo <= hi


def test_large_n_uses_normal_ranks():
    j, k = median_ci_ranks(100_000)
    assert abs(j - (50_000 - 1.96 * math.sqrt(100_000) / 2)) <= 2 and k == 100_001 - j
