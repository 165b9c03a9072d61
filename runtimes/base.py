"""The one interface every engine implements (Polygraphy's lifecycle: activate, infer, deactivate).

Subclasses override the `*_impl` methods and the class attributes; the harness (timing, parity,
sweeps) only ever talks to this interface, and every hook it may call is declared here with its
default, so no caller probes a runner with `getattr`. Heavy engine imports happen inside the
`*_impl` methods and `availability()`, so `import runtimes` works when an engine is missing.
"""

from __future__ import annotations

import contextlib
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, TypedDict

import numpy as np

from resnet_common.errors import UserError, first_line, typed_line

# int8-bf16: an int8 QDQ graph whose float parts (between the integer ops) run in bfloat16.
PRECISIONS = ("fp32", "fp16", "bf16", "int8", "int8-bf16")
Timing = Literal["device", "end-to-end"]
TIMING_MODES: tuple[Timing, ...] = ("device", "end-to-end")  # GPU: device events, or host I/O
# latency: one synchronous stream, one inference at a time (what a batch-1 user waits for);
# throughput: the engine run as its own tool runs it at its best, several requests in flight.
MODES = ("latency", "throughput")
Feeds = dict[str, np.ndarray]


class RunnerError(Exception):
    """An engine failed to load or run a model; the sweep records it and goes on."""


class UnsupportedError(UserError):
    """The engine cannot do what was asked (precision, model kind): a user error, exit 2."""


def error_line(err: BaseException) -> str:
    """One line for an engine's failure: its own message for a RunnerError or UserError (ours
    are already one line), with the exception's type for anything else (KeyError: 'x')."""
    return first_line(err) if isinstance(err, (RunnerError, UserError)) else typed_line(err)


@dataclass
class Burst:
    """What one throughput burst did: inferences (each of a whole batch) completed, the wall
    time from the first submission to the last completion, each request's own latency, and
    the steady part: the inferences completed before the last one was submitted, over the time
    from the first submission to that moment. Every stream was busy all that time (a request
    is submitted as soon as one completes), while the end of a burst waits for the last
    requests with streams falling idle one by one; a short burst's rate is the steady one."""

    completed: int
    wall_s: float
    latencies_ms: list[float] = field(default_factory=list)
    steady_completed: int = 0
    steady_s: float = 0.0

    @property
    def rate(self) -> float:
        """Inferences per second with every stream busy (all of the burst when it was too
        short to have a steady part)."""
        if self.steady_completed > 0 and self.steady_s > 0:
            return self.steady_completed / self.steady_s
        return self.completed / self.wall_s if self.wall_s > 0 else 0.0


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise UnsupportedError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    return mode


def check_timing(timing: str) -> Timing:
    """`timing` when it is one of TIMING_MODES, else UnsupportedError (exit 2)."""
    if timing == "device":
        return "device"
    if timing == "end-to-end":
        return "end-to-end"
    raise UnsupportedError(f"timing must be one of {', '.join(TIMING_MODES)}, got {timing!r}")


class RunnerArgs(TypedDict, total=False):
    """What every runner takes besides the model file; engines add typed options of their own."""

    precision: str
    batch_sizes: Sequence[int]
    threads: int | None
    timing: str
    macs: int | None
    mode: str


class Runner(ABC):
    """One engine running one ONNX model at one precision.

    `model_path` is an ONNX file; for fp16 it is graphgen's half-precision graph (float32 I/O),
    because TensorRT 11 and the onnxruntime CPU provider take precision from the graph itself;
    for int8 it is a QDQ graph (`graphgen quantize`), float32 I/O.
    `batch_sizes` are the batches the runner must serve (GPU engines build one optimization
    profile over them); `timing` is how GPU runners time ("device" or "end-to-end"; CPU runners
    are always host-timed); `macs` is the model's cost per sample when the caller knows it.
    """

    name: ClassVar[str]
    device: ClassVar[str] = "cpu"  # "cpu" or "cuda": decides how the harness times it
    precisions: ClassVar[tuple[str, ...]] = ("fp32",)
    needs_graphgen: ClassVar[bool] = False  # True when the engine rebuilds from graphgen metadata
    # True for engines that build for a batch range (TensorRT): the sweep then hands them every
    # batch it will time, so one engine serves them all instead of one build per batch.
    builds_for_batches: ClassVar[bool] = False
    # The distributions whose version names the engine (the first one installed), read from
    # package metadata without importing the engine: `bench-runtimes list` shows it.
    packages: ClassVar[tuple[str, ...]] = ()
    # "throughput" where the runner implements `burst` (requests in flight, as the engine's own
    # benchmark tool runs it); the others run one synchronous stream only.
    modes: ClassVar[tuple[str, ...]] = ("latency",)

    def __init__(
        self,
        model_path: str | Path,
        *,
        precision: str = "fp32",
        batch_sizes: Sequence[int] = (1,),
        threads: int | None = None,
        timing: str = "device",
        macs: int | None = None,
        mode: str = "latency",
    ) -> None:
        if precision not in self.precisions:
            raise UnsupportedError(
                f"{self.name} does not support precision {precision!r}; "
                f"it supports {', '.join(self.precisions)}"
            )
        self.model_path = Path(model_path)
        self.precision = precision
        self.batch_sizes = tuple(int(b) for b in batch_sizes)
        self.threads = threads
        self.timing: Timing = check_timing(timing)
        self.mode = check_mode(mode)
        if self.mode not in self.modes:
            raise UnsupportedError(self.mode_refusal())
        self.macs = macs
        self.is_active = False
        self.load_time_s: float | None = None
        self._bound: Feeds | None = None

    # -- availability -------------------------------------------------------------------------
    @classmethod
    def availability(cls) -> str | None:
        """None when the engine can run here, else the reason ("tensorrt not installed")."""
        return None

    @classmethod
    def version(cls) -> str | None:
        """ "<distribution> <version>" of the first of `packages` installed here, else None."""
        from importlib import metadata

        for dist in cls.packages:
            try:
                return f"{dist} {metadata.version(dist)}"
            except metadata.PackageNotFoundError:
                continue
        return None

    @classmethod
    def refusal_for(cls, precision: str) -> str | None:
        """Why this engine cannot run `precision` here though it lists it, in the engine's own
        words where it has them (onnxruntime's CPU provider has no bfloat16 Conv); None when
        nothing stands in the way. Asked before anything is loaded."""
        return None

    @classmethod
    def mode_refusal(cls) -> str:
        return (
            f"{cls.name} has no throughput mode (it runs one synchronous stream: its throughput "
            "is latency mode's at a larger batch)"
        )

    @classmethod
    def profile_batches(
        cls, batch: int, sweep_batches: Sequence[int], fixed_batch: int | None
    ) -> tuple[int, ...]:
        """The batches a runner for `batch` should be built for in a sweep over
        `sweep_batches`: all of them for engines that build for a range (unless the graph fixes
        its batch), else just `batch`."""
        if cls.builds_for_batches and fixed_batch is None:
            return tuple(sorted({batch, *sweep_batches}))
        return (batch,)

    def check_size(self) -> None:
        """Raise UnsupportedError, before loading, when the model is too big for this engine
        (onnx-ref refuses what numpy would take minutes over); the default accepts all."""

    # -- lifecycle ----------------------------------------------------------------------------
    def activate(self) -> None:
        """Load the engine. A failure partway through frees whatever was already allocated
        (`deactivate_impl` must tolerate partial state) and re-raises."""
        start = time.perf_counter()
        try:
            self.activate_impl()
        except BaseException:
            with contextlib.suppress(Exception):  # the activation error is the one to report
                self.deactivate_impl()
            raise
        self.load_time_s = time.perf_counter() - start
        self.is_active = True

    def infer(self, feeds: Feeds) -> Feeds:
        """Run on named host arrays and return named host arrays."""
        if not self.is_active:
            raise RuntimeError(f"{self.name}: infer() called before activate()")
        return self.infer_impl(feeds)

    def deactivate(self) -> None:
        if self.is_active:
            self.deactivate_impl()
        self.is_active = False

    def __enter__(self) -> Runner:
        self.activate()
        return self

    def __exit__(self, *exc: object) -> None:
        self.deactivate()

    # -- timing (the harness's hot loop) ------------------------------------------------------
    @property
    def timing_mode(self) -> str:
        """How this runner's samples are taken: "host" for CPU engines, else `timing`."""
        return "host" if self.device == "cpu" else self.timing

    @property
    def clock(self) -> str:
        """The clock behind the samples."""
        return "perf_counter_ns"

    def bind(self, feeds: Feeds) -> None:
        """Stage inputs where the engine wants them (device memory on GPU) before timing."""
        self._bound = feeds

    def timed_run(self) -> float:
        """Run once on the bound inputs; return the latency in seconds, measured the engine's
        way: perf_counter_ns here, CUDA events in GPU runners."""
        if self._bound is None:
            raise RuntimeError(f"{self.name}: timed_run() called before bind()")
        start = time.perf_counter_ns()
        self.infer_impl(self._bound)
        return (time.perf_counter_ns() - start) * 1e-9

    def streams(self) -> int:
        """How many inferences this runner keeps in flight in throughput mode."""
        return 1

    def burst(self, *, seconds: float | None = None, count: int | None = None) -> Burst:
        """Throughput mode: keep `streams()` requests in flight on the bound inputs for
        `seconds`, or until `count` inferences were submitted (at least one round of every
        stream), then wait for all of them. Runners that list "throughput" in `modes`
        implement it."""
        raise UnsupportedError(self.mode_refusal())

    def verify(self) -> None:
        """Raise RunnerError when the engine is no longer running what was asked for (an
        onnxruntime provider that fell back to the CPU mid-run). The harness calls it after
        the timed loop; the default has nothing to check."""

    def peak_device_memory_bytes(self) -> int | None:
        """Peak device memory of this runner; None for CPU engines."""
        return None

    # -- what ran -----------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """What actually ran: provider, precision, threads, versions, options."""
        return {
            "runtime": self.name,
            "precision": self.precision,
            "device": self.device,
            "threads": self.threads,
            "timing": self.timing_mode,
            "clock": self.clock,
            "mode": self.mode,
            # a throughput runner's streams are the engine's choice, known once it is loaded
            "streams": self.streams() if self.is_active else 1 if self.mode == "latency" else None,
        }

    # -- subclass hooks -----------------------------------------------------------------------
    @abstractmethod
    def activate_impl(self) -> None: ...

    @abstractmethod
    def infer_impl(self, feeds: Feeds) -> Feeds: ...

    def deactivate_impl(self) -> None:
        pass
