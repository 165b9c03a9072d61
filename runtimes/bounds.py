"""Sane bounds on the numbers a benchmark command takes, checked before anything is created.

`--iterations 1000000000000` would time for years without a word (and keep every sample in a
list), `--threads 100000` makes engines create thread pools until they die, LoadGen sizes its
query schedule by `--target-qps` x `--min-duration-ms`. A number past these bounds is a typo far
more often than an intent: the command refuses it in one line that says what to use instead.
"""

from __future__ import annotations

import os

from resnet_common.errors import TooLargeError

MAX_ITERATIONS = 1_000_000  # timed or warm-up iterations of one job; each timed sample is kept
MAX_SECONDS = 86_400.0  # a day: --duration-s, --warmup-s, LoadGen's test durations
# The shortest an inference can take through the harness (a Python call, a few microseconds):
# what the estimate of a count's duration assumes, so it never overstates.
FASTEST_ITERATION_S = 5e-6
MAX_THREADS_PER_CORE = 4  # --threads: oversubscription is a fair experiment, 100000 is not
MAX_THREADS_FLOOR = 256  # ... and a small machine may still ask for this many
MAX_QUERIES = 10_000_000  # LoadGen queries one test may schedule (MLPerf's Server: 270,336)
MAX_QPS = 1_000_000.0  # --target-qps: far past any single host's engine


def _plural_time(seconds: float) -> str:
    for unit, size in (("years", 365 * 86_400), ("days", 86_400), ("hours", 3_600)):
        if seconds >= size:
            return f"{seconds / size:,.0f} {unit}"
    return f"{seconds:,.0f} s"


def check_loop(
    *,
    warmup: int | None,
    warmup_s: float | None,
    iterations: int | None,
    duration_s: float | None,
) -> None:
    """Refuse a warm-up or a timed loop past MAX_ITERATIONS or MAX_SECONDS, naming an
    alternative."""
    for flag, count, instead in (
        ("--iterations", iterations, "--duration-s SECONDS"),
        ("--warmup", warmup, "--warmup-s SECONDS"),
    ):
        if count is not None and count > MAX_ITERATIONS:
            at_least = count * FASTEST_ITERATION_S
            raise TooLargeError(
                f"{flag} {count:,} is past the limit of {MAX_ITERATIONS:,} iterations a job "
                f"(at least {_plural_time(at_least)} even at {FASTEST_ITERATION_S * 1e6:g} us "
                f"an inference); to time longer, use {instead}"
            )
    for flag, seconds in (("--duration-s", duration_s), ("--warmup-s", warmup_s)):
        if seconds is not None and seconds > MAX_SECONDS:
            raise TooLargeError(
                f"{flag} {seconds:g} is {_plural_time(seconds)} a job, past the limit of "
                f"{MAX_SECONDS:,.0f} s (a day); a few seconds give a stable median "
                "(the default is 3 s), and --iterations N times a fixed count"
            )


def max_threads() -> int:
    return max(MAX_THREADS_FLOOR, MAX_THREADS_PER_CORE * (os.cpu_count() or 1))


def check_threads(threads: int | None) -> None:
    """Refuse `--threads` past MAX_THREADS_PER_CORE threads a core (at least MAX_THREADS_FLOOR)."""
    limit = max_threads()
    if threads is not None and threads > limit:
        raise TooLargeError(
            f"--threads {threads:,} is past the limit of {limit:,} ({MAX_THREADS_PER_CORE} a "
            f"core of the {os.cpu_count() or 1} here, at least {MAX_THREADS_FLOOR}); leave it "
            "out to use every usable core"
        )


def check_loadgen(
    *,
    min_duration_ms: int,
    min_query_count: int,
    target_qps: float,
    target_latency_ms: float,
) -> None:
    """Refuse LoadGen settings whose schedule would not fit in memory or in a day (the Server
    scenario's figures too when another scenario runs: such a number is a typo either way)."""
    if min_duration_ms > MAX_SECONDS * 1e3:
        raise TooLargeError(
            f"--min-duration-ms {min_duration_ms:,} is past the limit of "
            f"{MAX_SECONDS * 1e3:,.0f} ms (a day); MLPerf's own runs take 600,000 (10 minutes)"
        )
    if min_query_count > MAX_QUERIES:
        raise TooLargeError(
            f"--min-query-count {min_query_count:,} is past the limit of {MAX_QUERIES:,} "
            "queries a test (LoadGen schedules them all up front); MLPerf's Server runs ask "
            "for 270,336"
        )
    if target_latency_ms > MAX_SECONDS * 1e3:
        raise TooLargeError(
            f"--target-latency-ms {target_latency_ms:g} is past the limit of "
            f"{MAX_SECONDS * 1e3:,.0f} ms (a day)"
        )
    if target_qps > MAX_QPS:
        raise TooLargeError(
            f"--target-qps {target_qps:g} is past the limit of {MAX_QPS:,.0f} queries a second "
            "(LoadGen schedules --target-qps x --min-duration-ms queries up front)"
        )
    scheduled = target_qps * min_duration_ms / 1e3
    if scheduled > MAX_QUERIES:
        raise TooLargeError(
            f"--target-qps {target_qps:g} for --min-duration-ms {min_duration_ms:,} schedules "
            f"{scheduled:,.0f} queries, past the limit of {MAX_QUERIES:,}; lower one of them"
        )
    lasts = min_query_count / target_qps
    if lasts > MAX_SECONDS:
        raise TooLargeError(
            f"--target-qps {target_qps:g} takes {_plural_time(lasts)} to issue "
            f"--min-query-count {min_query_count:,} queries, past the limit of a day; raise "
            "--target-qps or lower --min-query-count"
        )
