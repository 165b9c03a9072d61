"""How busy the machine was while a result was timed: load average and CPU time (ours, the
others', stolen) before, during and after, from /proc.

A timing on a shared machine holds only for the load it ran under: the same quickstart called
OpenVINO "1.34x faster, real" on a loaded 2-core VM and "no real difference" later. Each record
therefore says what else ran. `/proc/stat` gives the CPUs' busy, idle and steal ticks (steal:
time a hypervisor gave this VM's CPU to another guest); our own process's CPU time
(`time.process_time`) is taken out of the busy time, so "others" is what other processes used.
Free cores = usable cores - the cores the others kept busy; a run whose threads (x streams)
exceed them is oversubscribed: its threads queued for CPU behind other work, and its timings
say as much about that work as about the engine. Linux only; elsewhere every field is None.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

SAMPLE_S = 0.5  # how often the load average is read during a run
BUSY_OTHERS_CORES = 0.5  # others keeping half a core busy: the machine was not quiet


@dataclass(frozen=True)
class CpuTicks:
    """Cumulative ticks of the CPUs this process may run on (/proc/stat cpuN lines)."""

    total: int
    idle: int  # idle + iowait
    steal: int


def _cpus() -> set[int] | None:
    return set(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None


def cpu_ticks() -> CpuTicks | None:
    """The usable CPUs' ticks, or None where /proc/stat cannot be read."""
    usable = _cpus()
    total = idle = steal = 0
    found = False
    try:
        with open("/proc/stat") as f:
            for line in f:
                if not line.startswith("cpu") or line.startswith("cpu "):
                    continue
                name, *fields = line.split()
                if usable is not None and int(name[3:]) not in usable:
                    continue
                values = [int(v) for v in fields[:8]] + [0] * (8 - len(fields[:8]))
                # user nice system idle iowait irq softirq steal (guest is inside user)
                total += sum(values)
                idle += values[3] + values[4]
                steal += values[7]
                found = True
    except (OSError, ValueError):
        return None
    return CpuTicks(total, idle, steal) if found else None


def load_average() -> tuple[float, float, float] | None:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return None
    return round(one, 2), round(five, 2), round(fifteen, 2)


def usable_cores() -> int:
    cpus = _cpus()
    return len(cpus) if cpus else os.cpu_count() or 1


def _point() -> dict[str, Any]:
    avg = load_average()
    return {"loadavg_1m": avg[0] if avg else None, "loadavg_5m": avg[1] if avg else None}


class LoadMonitor:
    """Reads the load before a timed run, samples it during (a daemon thread, every SAMPLE_S),
    and reads it after; `result()` is the record's `load` object. `threads` is how many
    threads the run keeps busy (intra-op threads x streams)."""

    def __init__(self, *, threads: int | None) -> None:
        self.threads = threads
        self.cores = usable_cores()
        self._samples: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.before: dict[str, Any] = {}
        self.after: dict[str, Any] = {}
        self._ticks: tuple[CpuTicks | None, CpuTicks | None] = (None, None)
        self._own_s = 0.0
        self._wall_s = 0.0

    def start(self) -> None:
        self.before = _point()
        self._ticks = (cpu_ticks(), None)
        self._own0 = time.process_time()
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._sample, name="load-monitor", daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            avg = load_average()
            if avg is not None:
                self._samples.append(avg[0])

    def stop(self) -> None:
        self._wall_s = time.perf_counter() - self._t0
        self._own_s = time.process_time() - self._own0
        self._ticks = (self._ticks[0], cpu_ticks())
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.after = _point()

    def result(self) -> dict[str, Any]:
        during: dict[str, Any] = {
            "loadavg_1m_max": max(self._samples) if self._samples else None,
            "loadavg_1m_mean": (
                round(sum(self._samples) / len(self._samples), 2) if self._samples else None
            ),
            "seconds": round(self._wall_s, 3),
            "busy_cores": None,
            "own_cores": round(self._own_s / self._wall_s, 2) if self._wall_s > 0 else None,
            "others_cores": None,
            "steal_fraction": None,
        }
        first, last = self._ticks
        if first is not None and last is not None and last.total > first.total:
            ticks = last.total - first.total
            busy = 1 - (last.idle - first.idle) / ticks
            during["busy_cores"] = round(busy * self.cores, 2)
            during["steal_fraction"] = round((last.steal - first.steal) / ticks, 4)
            own = during["own_cores"] or 0.0
            during["others_cores"] = round(max(0.0, busy * self.cores - own), 2)
        others = during["others_cores"]
        free = None if others is None else round(max(0.0, self.cores - others), 2)
        return {
            "usable_cores": self.cores,
            "threads": self.threads,
            "before": self.before,
            "during": during,
            "after": self.after,
            "free_cores": free,
            "oversubscribed": (
                None if free is None or self.threads is None else self.threads > free + 0.25
            ),
            "busy": None if others is None else others >= BUSY_OTHERS_CORES,
        }


@contextlib.contextmanager
def monitored(*, threads: int | None) -> Iterator[LoadMonitor]:
    """`with monitored(threads=n) as load: ...` then `load.result()`."""
    monitor = LoadMonitor(threads=threads)
    monitor.start()
    try:
        yield monitor
    finally:
        monitor.stop()
