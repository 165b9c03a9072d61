"""The onnxruntime session every onnxruntime runner shares (`ort-cpu`, `ort-cuda`, `ort-trt`).

onnxruntime falls back to the CPU provider silently when a provider fails to load, so a non-CPU
session sets `session.disable_cpu_ep_fallback` and `activate` checks that the first provider the
session reports is the one asked for; a fallback is a RunnerError, never a pass. onnxruntime's
Python layer has a fallback of its own, on by default: when creating the session fails, the
constructor prints an "EP Error" block to stdout (breaking `--json` output) and retries on other
providers, then reports the retry's error ("Conflicting session configuration" once CPU fallback is
disabled) instead of the first one; `InferenceSession.run` does the same when a provider fails
mid-run. Every session is therefore created with `enable_fallback=0` (the constructor's keyword; it
also disables the fallback in `run`), the error says the real cause (a provider this onnxruntime
lacks, a provider library that does not load and the library it misses), and non-CPU runners
re-check the session's provider after each `infer` and in `verify()`, which the harness calls after
its timed loop.
"""

from __future__ import annotations

import ctypes
import sys
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from resnet_common.extras import install_command
from runtimes.base import Burst, Runner, RunnerError

CPU = "CPUExecutionProvider"


# The providers onnxruntime builds as shared libraries it loads on demand (capi/lib<name>.so).
PROVIDER_LIBRARIES = {
    "CUDAExecutionProvider": "onnxruntime_providers_cuda",
    "TensorrtExecutionProvider": "onnxruntime_providers_tensorrt",
}


def provider_reason(provider: str) -> str | None:
    """Why `provider` cannot be used here, or None."""
    try:
        import onnxruntime as ort
    except ImportError:
        extra = "ort" if provider == CPU else "gpu"
        return f"onnxruntime not installed ({install_command(extra)})"
    if provider not in ort.get_available_providers():
        return f"onnxruntime built without {provider}"
    return None


def provider_library_problem(provider: str) -> str | None:
    """Why onnxruntime cannot load `provider`'s shared library, in the dynamic loader's words
    (the library it misses, e.g. "libcudnn.so.9: cannot open shared object file"), or None.

    onnxruntime logs that reason and carries on without the provider, so the session then
    fails for a reason that hides it; loading the library the way onnxruntime does (its
    `providers_shared` library first, with global symbols) recovers it. Linux only."""
    library = PROVIDER_LIBRARIES.get(provider)
    if library is None or not sys.platform.startswith("linux"):
        return None
    try:
        import onnxruntime as ort
    except ImportError:
        return "onnxruntime not installed"
    capi = Path(ort.__file__).parent / "capi"
    path = capi / f"lib{library}.so"
    if not path.exists():
        return f"onnxruntime {ort.__version__} has no {path.name} (not a GPU build)"
    try:
        ctypes.CDLL(str(capi / "libonnxruntime_providers_shared.so"), mode=ctypes.RTLD_GLOBAL)
        ctypes.CDLL(str(path))
    except OSError as exc:
        return f"{path.name} does not load: {exc}"
    return None


def load_failure(provider: str, err: BaseException) -> str:
    """onnxruntime's error, led by its cause when onnxruntime did not name it: a provider this
    build lacks, or a provider library that does not load."""
    message = str(err).strip()
    if provider == CPU:
        return message
    cause = provider_reason(provider) or provider_library_problem(provider)
    if cause is None or cause in message:
        return message
    return f"{cause}; onnxruntime said: {message}"


class OrtRunner(Runner):
    """One InferenceSession on one execution provider.

    Throughput mode (CPU provider) runs `streams()` concurrent `run` calls on the one session
    from as many Python threads (onnxruntime releases the GIL inside `run` and its sessions
    are thread-safe), the intra-op threads split between them: with 2 threads, 2 streams of
    1 thread each, as OpenVINO's THROUGHPUT hint splits a 2-core machine.
    """

    provider: ClassVar[str] = CPU
    packages: ClassVar[tuple[str, ...]] = ("onnxruntime", "onnxruntime-gpu")
    graph_optimization_level: ClassVar[str] = "ORT_ENABLE_ALL"  # onnxruntime's default

    @classmethod
    def availability(cls) -> str | None:
        return provider_reason(cls.provider)

    def providers(self) -> list[str | tuple[str, dict[str, Any]]]:
        """The provider list for the session, in priority order (override to add options)."""
        return [self.provider]

    def session_options(self) -> Any:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = getattr(
            ort.GraphOptimizationLevel, self.graph_optimization_level
        )
        if self.threads is not None or self.mode == "throughput":
            opts.intra_op_num_threads = self.intra_op_threads()
        opts.log_severity_level = 3
        if self.provider != CPU:
            opts.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
        return opts

    def activate_impl(self) -> None:
        import onnxruntime as ort

        self._opts = self.session_options()
        try:
            # enable_fallback=0: no "EP Error" block on stdout, no retry on other providers
            # (whose error would replace the real one), and no CPU retry inside run() later.
            self.session = ort.InferenceSession(
                str(self.model_path),
                sess_options=self._opts,
                providers=self.providers(),
                enable_fallback=0,
            )
        except Exception as err:  # onnxruntime raises its own Fail/InvalidGraph/... types
            raise RunnerError(
                f"{self.name}: cannot load {self.model_path}: {load_failure(self.provider, err)}"
            ) from err
        self.session.disable_fallback()  # the same for run(), on versions without the keyword
        self._check_provider()
        self.output_names = [o.name for o in self.session.get_outputs()]

    def intra_op_threads(self) -> int:
        """Each stream's intra-op threads: all of them in latency mode, split in throughput."""
        from runtimes.machine_load import usable_cores

        total = self.threads or usable_cores()
        return max(1, total // self.streams()) if self.mode == "throughput" else total

    def streams(self) -> int:
        if self.mode != "throughput":
            return 1
        from runtimes.machine_load import usable_cores

        return max(1, self.threads or usable_cores())

    def burst(self, *, seconds: float | None = None, count: int | None = None) -> Burst:
        """`streams()` threads calling `run` on the bound inputs, each starting its next run
        as soon as its last returns, until `seconds` passed or `count` runs were started."""
        feeds, names = self._bound, self.output_names
        if feeds is None:
            raise RuntimeError(f"{self.name}: burst() called before bind()")
        streams = self.streams()
        lock = threading.Lock()
        started = [0]
        latencies: list[list[float]] = [[] for _ in range(streams)]
        ends: list[list[float]] = [[] for _ in range(streams)]
        last = [0.0]  # when the last run was started
        errors: list[BaseException] = []
        t0 = time.perf_counter()
        deadline = t0 + (seconds or 0.0)

        def work(index: int) -> None:
            mine = latencies[index]
            try:
                while True:
                    with lock:
                        done = started[0] >= count if count is not None else False
                        if count is None and started[0] >= streams:
                            done = time.perf_counter() >= deadline
                        if done or errors:
                            return
                        started[0] += 1
                        last[0] = time.perf_counter()
                    begin = time.perf_counter_ns()
                    self.session.run(names, feeds)
                    mine.append((time.perf_counter_ns() - begin) * 1e-6)
                    ends[index].append(time.perf_counter())
            except BaseException as err:  # re-raised in the caller's thread
                errors.append(err)

        workers = [
            threading.Thread(target=work, args=(i,), name=f"{self.name}-stream-{i}")
            for i in range(streams)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        wall = time.perf_counter() - t0
        if errors:
            raise errors[0]
        steady = sum(1 for stream in ends for end in stream if end <= last[0])
        flat = [x for stream in latencies for x in stream]
        return Burst(started[0], wall, flat, steady, last[0] - t0)

    def _check_provider(self) -> None:
        used = self.session.get_providers()
        if not used or used[0] != self.provider:
            cause = provider_library_problem(self.provider)
            raise RunnerError(
                f"{self.name}: onnxruntime fell back to {used[0] if used else 'nothing'} "
                f"instead of {self.provider}" + (f": {cause}" if cause else "")
            )

    def verify(self) -> None:
        if self.provider != CPU and getattr(self, "session", None) is not None:
            self._check_provider()

    def infer_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = self.session.run(self.output_names, feeds)
        if self.provider != CPU:
            self._check_provider()
        return dict(zip(self.output_names, outputs, strict=True))

    def deactivate_impl(self) -> None:
        self.session = None  # tolerates a session that was never created

    def describe(self) -> dict[str, Any]:
        import onnxruntime as ort

        if self.is_active:
            self.verify()
        info = super().describe()
        opts = getattr(self, "_opts", None)
        info.update(
            provider=self.session.get_providers()[0] if self.is_active else self.provider,
            providers=self.session.get_providers() if self.is_active else None,
            graph_optimization_level=self.graph_optimization_level,
            intra_op_threads=opts.intra_op_num_threads if opts is not None else self.threads,
            concurrent_runs=self.streams(),
            version=f"onnxruntime {ort.__version__}",
        )
        return info
