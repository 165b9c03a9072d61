"""Interleaved timing: the jobs of a group are all loaded at once and timed in rounds, each round
running every job a few iterations in a freshly shuffled order.

A machine's slow phases (another tenant, a thermal or frequency change, a noisy neighbour on a
CI runner) then fall on every job of the group alike instead of on whichever engine happened to
be timed during them, as in a sequential sweep. Each job keeps its own samples (so its record
has the same statistics as a sequential one) and, per round, the median of its iterations there:
two jobs' per-round medians pair up round by round, and the distribution of their ratios gives a
paired ratio with a distribution-free 95% interval (`reports.ratios`).

Groups are formed greedily: jobs are loaded one after another while the machine keeps at least
`MIN_AVAILABLE_FRACTION` of its memory available; the job that crosses the line is timed in the
next group.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from resnet_common.stats import median
from runtimes.base import Feeds, Runner
from runtimes.timing import (
    MIN_DURATION_ITERATIONS,
    LoopConfig,
    Measurement,
    bound_step,
    burst_rate_ms,
    current_rss_mb,
    peak_device_mb,
    rss_growth_mb,
    summarize,
    timed_loop,
)

MIN_AVAILABLE_FRACTION = 0.25  # load no more jobs together once less memory than this is free
SLOT_S = 0.1  # about how long one job runs per round (a round of 5 jobs: half a second)
# A throughput-mode job's round is one burst of about THROUGHPUT_SLOT_S, and of at least
# BURST_REQUESTS requests per stream, so that it has a steady part (every stream busy) to
# measure its rate on (runtimes.base.Burst).
THROUGHPUT_SLOT_S = 0.3
BURST_REQUESTS = 3
MIN_ROUNDS = 20  # enough rounds for a 95% interval of a paired ratio from order statistics


@dataclass
class Slot:
    """One loaded job inside a group: its runner, bound inputs and what timing produced."""

    key: str
    runner: Runner
    feeds: Feeds
    step: Callable[[], float] = field(init=False)
    first_inference_ms: float = 0.0
    warmup_iterations: int = 0
    per_round: int = 1
    samples_ms: list[float] = field(default_factory=list)
    round_medians_ms: list[float] = field(default_factory=list)
    timed_s: float = 0.0
    completed: int = 0  # throughput mode: inferences completed over timed_s
    steady_completed: int = 0  # ... of which with every stream busy, over steady_s
    steady_s: float = 0.0
    streams: int = 1
    mode: str = "latency"  # the runner's: latency or throughput
    host_rss_load_mb: float | None = None  # the resident set's growth across start()

    @property
    def throughput(self) -> bool:
        return self.mode == "throughput"

    def start(self, config: LoopConfig) -> None:
        """Load, time the first inference, bind and warm up (the same steps as `measure`)."""
        rss_before = current_rss_mb()
        try:
            self._start(config)
        finally:
            self.host_rss_load_mb = rss_growth_mb(rss_before)

    def _start(self, config: LoopConfig) -> None:
        self.runner.activate()
        t0 = time.perf_counter_ns()
        self.runner.infer(self.feeds)
        self.first_inference_ms = (time.perf_counter_ns() - t0) * 1e-6
        self.runner.bind(self.feeds)
        self.step = bound_step(self.runner)
        if self.throughput:
            self.streams = self.runner.streams()
            warmed = self.runner.burst(seconds=config.warmup_s, count=config.warmup)
            self.warmup_iterations = warmed.completed
            typical_s = burst_rate_ms(warmed) * 1e-3
            wanted = round(THROUGHPUT_SLOT_S / typical_s) if typical_s > 0 else 1
            self.per_round = max(BURST_REQUESTS * self.streams, wanted)
            return
        warm = timed_loop(self.step, config.warmup, config.warmup_s, minimum=1)
        self.warmup_iterations = len(warm)
        typical_s = median(sorted(warm)) * 1e-3
        self.per_round = max(1, round(SLOT_S / typical_s)) if typical_s > 0 else 1

    def run_round(self) -> None:
        """This job's share of one round: `per_round` timed inferences (latency mode), or one
        burst of `per_round` inferences with every stream busy (throughput mode, whose round
        figure is the burst's wall time per inference)."""
        if self.throughput:
            t0 = time.perf_counter()
            burst = self.runner.burst(count=self.per_round)
            self.timed_s += time.perf_counter() - t0
            self.completed += burst.completed
            self.steady_completed += burst.steady_completed
            self.steady_s += burst.steady_s
            self.samples_ms.extend(burst.latencies_ms)
            self.round_medians_ms.append(burst_rate_ms(burst))
            return
        step, n = self.step, self.per_round
        t0 = time.perf_counter()
        here = [step() for _ in range(n)]
        self.timed_s += time.perf_counter() - t0
        self.samples_ms.extend(here)
        self.round_medians_ms.append(median(sorted(here)))

    def measurement(self, *, peak_host_rss_mb: float) -> Measurement:
        """What `measure` gives a job timed alone, from this slot's samples; the host peak is
        the caller's (the group's: every job of it was loaded at once)."""
        runner = self.runner
        return Measurement(
            samples_ms=self.samples_ms,
            stats=summarize(self.samples_ms),
            first_inference_ms=self.first_inference_ms,
            load_time_s=float(runner.load_time_s or 0.0),
            warmup_iterations=self.warmup_iterations,
            timed_s=self.timed_s,
            timing_mode=runner.timing_mode,
            clock=runner.clock,
            peak_host_rss_mb=peak_host_rss_mb,
            peak_device_mb=peak_device_mb(runner),
            mode=self.mode,
            completed=self.completed if self.throughput else None,
            streams=self.streams,
            steady_completed=self.steady_completed,
            steady_s=self.steady_s,
            host_rss_load_mb=self.host_rss_load_mb,
        )


def memory_available_fraction() -> float | None:
    """MemAvailable / MemTotal from /proc/meminfo; None where the kernel does not say."""
    try:
        with open("/proc/meminfo") as f:
            info = {line.split(":")[0]: int(line.split()[1]) for line in f if ":" in line}
        return info["MemAvailable"] / info["MemTotal"]
    except (OSError, KeyError, ValueError, IndexError, ZeroDivisionError):
        return None


def has_room() -> bool:
    """Whether one more job may be loaded into the current group."""
    fraction = memory_available_fraction()
    return fraction is None or fraction >= MIN_AVAILABLE_FRACTION


def plan_rounds(slots: Sequence[Slot], config: LoopConfig) -> int:
    """How many rounds to run (and, by count, how many iterations each job runs per round):
    by count, each job gets at least `iterations` samples in up to MIN_ROUNDS rounds; by
    duration, each job gets about `duration_s` of timed work, as in a sequential sweep (and at
    least MIN_ROUNDS rounds and trtexec's 10 samples either way)."""
    if config.iterations is not None:
        cap = max(1, config.iterations // MIN_ROUNDS)  # at least MIN_ROUNDS rounds when possible
        for slot in slots:
            if not slot.throughput:  # a burst keeps its floor: its drain must stay small
                slot.per_round = min(slot.per_round, cap)
        return max(1, -(-config.iterations // min(s.per_round for s in slots)))
    return max(MIN_ROUNDS, MIN_DURATION_ITERATIONS, round((config.duration_s or 0.0) / SLOT_S))


def run_rounds(slots: Sequence[Slot], rounds: int, *, seed: int) -> dict[str, Exception]:
    """Time `rounds` rounds over the slots, each round in a new order drawn from `seed`. A job
    whose engine fails leaves the rounds (the others go on); returns {key: error} for those."""
    rng = random.Random(seed)
    order = list(slots)
    errors: dict[str, Exception] = {}
    for _ in range(rounds):
        rng.shuffle(order)
        for slot in list(order):
            try:
                slot.run_round()
            except Exception as err:  # that engine's failure, recorded as its result
                errors[slot.key] = err
                order.remove(slot)
    return errors
