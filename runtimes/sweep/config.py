"""What a sweep runs: its configuration and the jobs (model x precision x runtime x batch x
mode)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtimes.timing import LoopConfig


@dataclass
class SweepConfig:
    models: list[str]
    runtimes: list[str]
    batches: list[int] = field(default_factory=lambda: [1])
    precisions: list[str] = field(default_factory=lambda: ["fp32"])
    image_size: int | None = None
    loop: LoopConfig = field(default_factory=LoopConfig)
    threads: int | None = None
    out: Path = Path("bench-results")
    resume: bool = False
    parity: bool = True
    seed: int = 1  # runtimes.inputs.DEFAULT_SEED
    model_cache: Path | None = None  # None: runtimes.models' shared cache
    # Time the jobs that fit in memory together in shuffled rounds (runtimes.interleave), so
    # the machine's slow phases fall on all of them alike; False times one job after another.
    interleave: bool = False
    retry_failed: bool = False  # with resume: measure failed jobs again
    # latency: one synchronous stream; throughput: the engine's own way at its best
    # (runtimes.base.MODES); both time every job in each mode asked for.
    modes: list[str] = field(default_factory=lambda: ["latency"])
    # The machine's measured matmul peaks per precision (environment.matmul_peaks), so each
    # record carries its fraction of its own precision's peak; None: not measured.
    peaks: dict[str, Any] | None = None

    def cpu_threads(self) -> int:
        """The intra-op threads every CPU engine gets: `threads`, else every usable core, the
        same for all of them (left to themselves, engines pick different counts)."""
        return self.threads or usable_cores()


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass(frozen=True)
class Job:
    model: str
    runtime: str
    precision: str
    batch: int
    mode: str = "latency"

    @property
    def label(self) -> str:
        label = f"{self.model} · {self.runtime} · {self.precision} · batch {self.batch}"
        return label if self.mode == "latency" else f"{label} · {self.mode}"


def jobs(config: SweepConfig) -> Iterator[Job]:
    for model in config.models:
        for precision in config.precisions:
            for runtime in config.runtimes:
                for batch in config.batches:
                    for mode in config.modes:
                        yield Job(model, runtime, precision, batch, mode)
