"""The one interface every engine implements (Polygraphy's lifecycle: activate, infer, deactivate).

Subclasses override the `*_impl` methods and the class attributes; the harness (timing, parity,
sweeps) only ever talks to this interface. Heavy engine imports happen inside the `*_impl`
methods and `availability()`, so `import runtimes` works when an engine is missing.
"""

from __future__ import annotations

import contextlib
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from resnet_common.errors import UserError

PRECISIONS = ("fp32", "fp16")
TIMING_MODES = ("device", "end-to-end")  # GPU runners: device events, or host arrays in and out


class RunnerError(Exception):
    """An engine failed to load or run a model; the sweep records it and goes on."""


class UnsupportedError(UserError):
    """The engine cannot do what was asked (precision, model kind): a user error, exit 2."""


def check_timing(timing: str) -> str:
    """`timing` when it is one of TIMING_MODES, else UnsupportedError (exit 2)."""
    if timing not in TIMING_MODES:
        raise UnsupportedError(f"timing must be one of {', '.join(TIMING_MODES)}, got {timing!r}")
    return timing


class Runner(ABC):
    """One engine running one ONNX model at one precision.

    `model_path` is an ONNX file; for fp16 it is graphgen's half-precision graph (float32 I/O),
    because TensorRT 11 and the onnxruntime CPU provider take precision from the graph itself.
    """

    name: ClassVar[str]
    device: ClassVar[str] = "cpu"  # "cpu" or "cuda": decides how the harness times it
    precisions: ClassVar[tuple[str, ...]] = ("fp32",)
    needs_graphgen: ClassVar[bool] = False  # True when the engine rebuilds from graphgen metadata

    def __init__(
        self,
        model_path: str | Path,
        *,
        precision: str = "fp32",
        batch_sizes: tuple[int, ...] = (1,),
        threads: int | None = None,
        **options: Any,
    ) -> None:
        if precision not in self.precisions:
            raise UnsupportedError(
                f"{self.name} does not support precision {precision!r}; "
                f"it supports {', '.join(self.precisions)}"
            )
        self.model_path = Path(model_path)
        self.precision = precision
        self.batch_sizes = tuple(batch_sizes)
        self.threads = threads
        self.options = options
        self.is_active = False
        self.load_time_s: float | None = None
        self._bound: dict[str, np.ndarray] | None = None

    # -- availability -------------------------------------------------------------------------
    @classmethod
    def availability(cls) -> str | None:
        """None when the engine can run here, else the reason ("tensorrt not installed")."""
        return None

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

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
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
    def bind(self, feeds: dict[str, np.ndarray]) -> None:
        """Stage inputs where the engine wants them (device memory on GPU) before timing."""
        self._bound = feeds

    def timed_run(self) -> float:
        """Run once on the bound inputs; return the latency in seconds, measured the engine's
        way: perf_counter_ns here, CUDA events in GPU runners."""
        assert self._bound is not None, "bind() first"
        start = time.perf_counter_ns()
        self.infer_impl(self._bound)
        return (time.perf_counter_ns() - start) * 1e-9

    def verify(self) -> None:
        """Raise RunnerError when the engine is no longer running what was asked for (an
        onnxruntime provider that fell back to the CPU mid-run). The harness calls it after
        the timed loop; the default has nothing to check."""

    # -- what ran -----------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """What actually ran: provider, precision, threads, versions, options."""
        return {
            "runtime": self.name,
            "precision": self.precision,
            "device": self.device,
            "threads": self.threads,
        }

    # -- subclass hooks -----------------------------------------------------------------------
    @abstractmethod
    def activate_impl(self) -> None: ...

    @abstractmethod
    def infer_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def deactivate_impl(self) -> None:
        pass
