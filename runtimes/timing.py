"""Timing one runner: warm-up, a timed loop, and the statistics every record carries.

Percentiles use the nearest-rank rule (trtexec's: sort, drop the top (1-p)N, take the next), the
median averages the two middle samples, and the median's 95% confidence interval comes from order
statistics (binomial ranks), so it needs no distributional assumption. CPU runners are timed with
`perf_counter_ns` inside `Runner.timed_run`; GPU runners time themselves in `timed_run` too, with
device events ("device" mode) or with host arrays in and out ("end-to-end" mode).

Throughput mode (`Runner.burst`) runs the engine as its own benchmark tool does at its best:
several requests in flight for the whole timed duration, then a wait for all of them, as
OpenVINO's benchmark_app does; throughput is the images completed while every stream was busy
over the time that took (`Burst.rate`: the final drain, when streams fall idle one by one,
is left out, which a long run makes negligible and a short interleaved round would not), and
the latency statistics are the requests' own latencies under that load.
"""

from __future__ import annotations

import math
import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from resnet_common.records import UNSTABLE_COV
from resnet_common.stats import median, median_ci, median_ci_ranks, percentile
from runtimes.base import Burst, Runner

PERCENTILES = (90, 95, 99)
MIN_DURATION_ITERATIONS = 10  # trtexec's --iterations default: "at least" this many


# -- statistics ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class LatencyStats:
    """Latency statistics in milliseconds, plus stability measures."""

    n: int
    mean: float
    median: float
    p90: float
    p95: float
    p99: float
    min: float
    max: float
    std: float
    cov: float
    median_ci95: tuple[float, float]
    median_ci_exact: bool  # False: too few samples, the interval is [min, max] with < 95%

    @property
    def unstable(self) -> bool:
        return self.cov > UNSTABLE_COV

    def latency_dict(self) -> dict[str, float]:
        keys = ("mean", "median", "p90", "p95", "p99", "min", "max", "std")
        return {k: getattr(self, k) for k in keys}


def summarize(samples_ms: Sequence[float]) -> LatencyStats:
    """Statistics of latency samples (ms). std is the sample std (ddof=1); CoV = std / mean."""
    if len(samples_ms) == 0:
        raise ValueError("no latency samples")
    xs = sorted(float(x) for x in samples_ms)
    n = len(xs)
    mean = math.fsum(xs) / n
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1)) if n > 1 else 0.0
    p90, p95, p99 = (percentile(xs, p) for p in PERCENTILES)
    return LatencyStats(
        n=n,
        mean=mean,
        median=median(xs),
        p90=p90,
        p95=p95,
        p99=p99,
        min=xs[0],
        max=xs[-1],
        std=std,
        cov=std / mean if mean > 0 else 0.0,
        median_ci95=median_ci(xs),
        median_ci_exact=median_ci_ranks(n) is not None,
    )


# -- memory -------------------------------------------------------------------------------------
def reset_peak_rss() -> bool:
    """Reset the kernel's high-water mark (Linux: clear_refs 5) so the peak is per record."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """Process peak resident set since the last reset (VmHWM), else since start (ru_maxrss)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024


def current_rss_mb() -> float | None:
    """The process's resident set now (VmRSS), in MiB; None where the kernel does not say."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def rss_growth_mb(before: float | None) -> float | None:
    """How much the resident set grew since `before` (current_rss_mb), in MiB."""
    now = current_rss_mb()
    return None if before is None or now is None else now - before


def peak_device_mb(runner: Runner) -> float | None:
    """The runner's peak device memory in MiB; None for CPU engines."""
    value = runner.peak_device_memory_bytes()
    return None if value is None else value / 2**20


# -- the loop -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class LoopConfig:
    """How long to warm up and to time: by count or by duration (trtexec: 200 ms, then 3 s)."""

    warmup: int | None = None
    warmup_s: float | None = 0.5
    iterations: int | None = None
    duration_s: float | None = 3.0
    timing: str = "device"  # GPU runners only; CPU runners are always host-timed

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Measurement:
    """What one timed run produced, before it is turned into a record."""

    samples_ms: list[float]
    stats: LatencyStats
    first_inference_ms: float
    load_time_s: float
    warmup_iterations: int
    timed_s: float
    timing_mode: str
    clock: str
    peak_host_rss_mb: float
    peak_device_mb: float | None
    mode: str = "latency"
    completed: int | None = None  # throughput mode: inferences completed in timed_s
    streams: int = 1
    steady_completed: int = 0  # throughput mode: completed with every stream busy ...
    steady_s: float = 0.0  # ... in this time (runtimes.base.Burst)
    # The resident set's growth across this job's load, first inference and warm-up: its own
    # share of the host memory, even when other jobs are loaded beside it (interleaved).
    host_rss_load_mb: float | None = None

    def throughput_ips(self, batch: int) -> float:
        """Latency mode: batch / median latency; throughput mode: images completed with every
        stream busy over the time that took (all of them over the wall time when no burst had
        a steady part)."""
        if self.mode == "throughput":
            if self.steady_completed and self.steady_s > 0:
                return self.steady_completed * batch / self.steady_s
            if self.completed and self.timed_s > 0:
                return self.completed * batch / self.timed_s
        return throughput_ips(self.stats, batch)


def bound_step(runner: Runner) -> Callable[[], float]:
    """One timed inference on bound inputs, in ms: the harness's whole per-iteration cost."""
    timed_run = runner.timed_run

    def run_once() -> float:
        return timed_run() * 1e3

    return run_once


def timed_loop(
    run_once: Callable[[], float], count: int | None, seconds: float | None, minimum: int = 1
) -> list[float]:
    """The loop `measure` times with (public for benchmarks/harness_overhead.py)."""
    return _loop(run_once, count, seconds, minimum)


def _loop(
    run_once: Callable[[], float], count: int | None, seconds: float | None, minimum: int
) -> list[float]:
    """Call `run_once` `count` times, or for `seconds` (and at least `minimum` times)."""
    samples: list[float] = []
    append = samples.append
    if count is not None:
        for _ in range(count):
            append(run_once())
        return samples
    deadline = time.perf_counter() + (seconds or 0.0)
    while len(samples) < minimum or time.perf_counter() < deadline:
        append(run_once())
    return samples


def measure(
    runner: Runner,
    feeds: dict[str, np.ndarray],
    config: LoopConfig,
    *,
    on_active: Callable[[Runner], None] | None = None,
) -> Measurement:
    """Activate, time the first inference, warm up, time the loop, deactivate.

    The loop always runs `bind()` once and then `timed_run()`: a GPU runner times itself in its
    own mode ("device": engine only; "end-to-end": host arrays in and out), so no harness
    bookkeeping lands inside a sample. Peak host RSS and device memory are read right after the
    loop, before `on_active` (parity: the torch float64 reference) runs, so what the reference
    allocates is never attributed to the engine. The runner is deactivated even when it fails,
    so a crash of one engine frees its memory before the sweep moves on."""
    reset_peak_rss()
    rss_before = current_rss_mb()
    try:
        runner.activate()
        start = time.perf_counter_ns()
        runner.infer(feeds)
        first_ms = (time.perf_counter_ns() - start) * 1e-6
        runner.bind(feeds)
        completed: int | None = None
        steady = (0, 0.0)
        streams = runner.streams() if runner.mode == "throughput" else 1
        if runner.mode == "throughput":
            warmed = runner.burst(seconds=config.warmup_s, count=config.warmup)
            warm: list[float] = warmed.latencies_ms
            load_mb = rss_growth_mb(rss_before)
            timed = runner.burst(seconds=config.duration_s, count=config.iterations)
            samples, timed_s, completed = timed.latencies_ms, timed.wall_s, timed.completed
            steady = (timed.steady_completed, timed.steady_s)
        else:
            run_once = bound_step(runner)
            warm = _loop(run_once, config.warmup, config.warmup_s, minimum=1)
            load_mb = rss_growth_mb(rss_before)
            t0 = time.perf_counter()
            samples = _loop(run_once, config.iterations, config.duration_s, MIN_DURATION_ITERATIONS)
            timed_s = time.perf_counter() - t0
        runner.verify()  # e.g. onnxruntime did not switch providers while timing
        host_mb = peak_rss_mb()
        device_mb = peak_device_mb(runner)
        if on_active is not None:
            on_active(runner)
    finally:
        runner.deactivate()
    return Measurement(
        samples_ms=samples,
        stats=summarize(samples),
        first_inference_ms=first_ms,
        load_time_s=float(runner.load_time_s or 0.0),
        warmup_iterations=len(warm),
        timed_s=timed_s,
        timing_mode=runner.timing_mode,
        clock=runner.clock,
        peak_host_rss_mb=host_mb,
        peak_device_mb=device_mb,
        mode=runner.mode,
        completed=completed,
        streams=streams,
        steady_completed=steady[0],
        steady_s=steady[1],
        host_rss_load_mb=load_mb,
    )


def burst_rate_ms(burst: Burst) -> float:
    """A burst's time per inference with every stream busy, in ms (1 / `Burst.rate`): the
    throughput-mode figure that pairs round by round like a latency."""
    rate = burst.rate
    return 1e3 / rate if rate > 0 else float("inf")


def throughput_ips(stats: LatencyStats, batch: int) -> float:
    """Images per second at the median latency: batch / median. The median, as for GFLOP/s
    and the report's latencies, so every figure of a record describes the same typical run
    (a mean would let a few stalls of a noisy machine move throughput alone)."""
    return batch / (stats.median * 1e-3) if stats.median > 0 else 0.0


def achieved_gflops(macs_per_image: int | None, batch: int, median_ms: float) -> float | None:
    """The cost model's 2 x MACs x batch over the median latency, in GFLOP/s."""
    if not macs_per_image or median_ms <= 0:
        return None
    return 2 * macs_per_image * batch / (median_ms * 1e-3) / 1e9
