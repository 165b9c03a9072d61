"""MLPerf LoadGen driving one runner as the system under test (SUT), in LoadGen's own scenarios.

LoadGen (`pip install mlcommons-loadgen`, module `mlperf_loadgen`) decides when queries arrive
and how many samples each carries, measures every latency itself and judges the run against its
own rules (min duration, min query count, the Server scenario's latency bound); we only answer
queries. So its numbers are comparable with MLPerf Inference's definitions, unlike the sweep's
sequential loop:

- SingleStream: one sample per query, the next issued when the last completes; p90 latency.
- MultiStream: `samples_per_query` samples per query (a batch), back to back; p99 latency.
- Offline: every sample in one query; we run them in batches of `batch`; samples per second.
- Server: single-sample queries at Poisson arrival times of `target_qps`; VALID only when the
  99th-percentile latency stays within `target_latency_ms`. A worker thread answers them in
  arrival order (batch 1), so issue_queries never blocks LoadGen's scheduler.

The sample library is `samples` seeded images made once, in memory (`runtimes.inputs`), so
loading and unloading samples costs nothing. LoadGen writes mlperf_log_summary.txt and
mlperf_log_detail.txt into the output folder; `parse_summary` reads the summary back.
"""

from __future__ import annotations

import importlib.util
import queue
import re
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from resnet_common.errors import UserError
from runtimes import bounds
from runtimes.base import Runner

SCENARIOS = ("SingleStream", "MultiStream", "Offline", "Server")
INSTALL_HINT = (
    "pip install mlcommons-loadgen (or the project's loadgen extra: pip install -e '.[loadgen]')"
)


def availability() -> str | None:
    if importlib.util.find_spec("mlperf_loadgen") is None:
        return f"MLPerf LoadGen is not installed: {INSTALL_HINT}"
    return None


@dataclass(frozen=True)
class LoadgenSettings:
    scenario: str
    min_duration_ms: int = 10_000
    min_query_count: int = 100
    samples: int = 64  # the sample library: seeded images held in memory
    batch: int = 8  # Offline: samples per inference; MultiStream: samples per query
    target_qps: float = 10.0  # Server
    target_latency_ms: float = 100.0  # Server: the 99th percentile's bound
    seed: int = 1

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            raise UserError(
                f"unknown scenario {self.scenario!r}; choose from {', '.join(SCENARIOS)}"
            )
        for name in ("min_duration_ms", "min_query_count", "samples", "batch"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if not self.target_qps > 0 or not self.target_latency_ms > 0:
            raise UserError("--target-qps and --target-latency-ms must be positive")
        bounds.check_loadgen(
            min_duration_ms=self.min_duration_ms,
            min_query_count=self.min_query_count,
            target_qps=self.target_qps,
            target_latency_ms=self.target_latency_ms,
        )

    def batches(self) -> tuple[int, ...]:
        """The batch sizes the runner will see (GPU engines build a profile over them)."""
        return (self.batch,) if self.scenario in ("Offline", "MultiStream") else (1,)


def _test_settings(lg: Any, s: LoadgenSettings, measured_s: float) -> Any:
    """LoadGen's settings; `measured_s` (one warm inference at the scenario's batch) sets the
    expectations LoadGen sizes its queries by, as a submitter's config would."""
    settings = lg.TestSettings()
    settings.scenario = getattr(lg.TestScenario, s.scenario)
    settings.mode = lg.TestMode.PerformanceOnly
    settings.min_duration_ms = s.min_duration_ms
    settings.min_query_count = s.min_query_count
    latency_ns = max(1, int(measured_s * 1e9))
    if s.scenario == "SingleStream":
        settings.single_stream_expected_latency_ns = latency_ns
    if s.scenario == "MultiStream":
        settings.multi_stream_samples_per_query = s.batch
        settings.multi_stream_expected_latency_ns = latency_ns
    if s.scenario == "Server":
        settings.server_target_qps = s.target_qps
        settings.server_target_latency_ns = int(s.target_latency_ms * 1e6)
    if s.scenario == "Offline":
        # LoadGen sizes the one Offline query as expected qps x min duration: keep it bounded
        most = bounds.MAX_QUERIES / max(s.min_duration_ms / 1e3, 1e-3)
        settings.offline_expected_qps = min(most, max(1.0, s.batch / max(measured_s, 1e-9)))
    return settings


class _SUT:
    """Answers LoadGen's queries with the runner; every response carries the sample's argmax."""

    def __init__(
        self, lg: Any, runner: Runner, images: np.ndarray, input_name: str, s: LoadgenSettings
    ):
        self.lg, self.runner, self.images, self.input_name, self.s = (
            lg,
            runner,
            images,
            input_name,
            s,
        )
        self.error: BaseException | None = None
        self._queue: queue.Queue[Any] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._keep: list[np.ndarray] = []  # response buffers must live until LoadGen copies them

    def _run(self, indices: list[int]) -> np.ndarray:
        x = self.images[indices]
        out = self.runner.infer({self.input_name: x})
        logits: np.ndarray = next(iter(out.values()))
        return np.asarray(logits.argmax(-1), dtype=np.int64)

    def _complete(self, ids: list[int], classes: np.ndarray) -> None:
        responses = []
        for qid, c in zip(ids, classes, strict=False):
            buf = np.array([c], dtype=np.int64)
            self._keep.append(buf)
            responses.append(self.lg.QuerySampleResponse(qid, buf.ctypes.data, buf.nbytes))
        self.lg.QuerySamplesComplete(responses)
        if len(self._keep) > 10_000:
            del self._keep[:5_000]

    def _answer(self, samples: list[Any]) -> None:
        try:
            step = self.s.batch if self.s.scenario == "Offline" else len(samples)
            for start in range(0, len(samples), step):
                chunk = samples[start : start + step]
                indices = [q.index for q in chunk]
                pad = step - len(indices)  # a short last batch runs at full size, padded
                classes = self._run(indices + indices[:1] * pad)[: len(indices)]
                self._complete([q.id for q in chunk], classes)
        except BaseException as err:  # LoadGen's thread must not die: answer, then report
            self.error = self.error or err
            self.lg.QuerySamplesComplete([self.lg.QuerySampleResponse(q.id, 0, 0) for q in samples])

    def issue(self, samples: list[Any]) -> None:
        if self.s.scenario == "Server":
            self._queue.put(list(samples))
        else:
            self._answer(list(samples))

    def _serve(self) -> None:
        while True:
            samples = self._queue.get()
            if samples is None:
                return
            self._answer(samples)

    def start(self) -> None:
        if self.s.scenario == "Server":
            self._worker = threading.Thread(target=self._serve, daemon=True)
            self._worker.start()

    def stop(self) -> None:
        if self._worker is not None:
            self._queue.put(None)
            self._worker.join()


def run_loadgen(
    runner: Runner,
    *,
    input_name: str,
    image_size: int,
    settings: LoadgenSettings,
    out: Path,
) -> dict[str, Any]:
    """Run one LoadGen test with `runner` (activated here) and return the parsed summary."""
    reason = availability()
    if reason is not None:
        raise UserError(reason)
    import mlperf_loadgen as lg

    from runtimes.inputs import image_batch

    out.mkdir(parents=True, exist_ok=True)
    images = image_batch(settings.samples, image_size, seed=settings.seed)
    with runner:
        sut_impl = _SUT(lg, runner, images, input_name, settings)
        batch = settings.batches()[0]
        warm = list(range(batch))
        sut_impl._run([i % settings.samples for i in warm])  # warm-up, untimed
        t0 = time.perf_counter()
        sut_impl._run([i % settings.samples for i in warm])
        measured_s = time.perf_counter() - t0
        sut_impl.start()
        sut = lg.ConstructSUT(sut_impl.issue, lambda: None)
        qsl = lg.ConstructQSL(settings.samples, settings.samples, lambda s: None, lambda s: None)
        log_output = lg.LogOutputSettings()
        log_output.outdir = str(out)
        log_output.copy_summary_to_stdout = False
        log_settings = lg.LogSettings()
        log_settings.log_output = log_output
        log_settings.enable_trace = False
        try:
            lg.StartTestWithLogSettings(
                sut, qsl, _test_settings(lg, settings, measured_s), log_settings
            )
        finally:
            sut_impl.stop()
            lg.DestroyQSL(qsl)
            lg.DestroySUT(sut)
        info = runner.describe()
    if sut_impl.error is not None:
        raise sut_impl.error
    summary = parse_summary(out / "mlperf_log_summary.txt")
    return {
        "scenario": settings.scenario,
        "settings": asdict(settings),
        "summary": summary,
        "result": summary.get("Result is"),
        "runner": info,
        "logs": {
            "summary": str(out / "mlperf_log_summary.txt"),
            "detail": str(out / "mlperf_log_detail.txt"),
        },
    }


_LINE = re.compile(r"^\s*([A-Za-z0-9_][^:]*?)\s*:\s*(\S.*)$")


def parse_summary(path: Path) -> dict[str, Any]:
    """`key : value` lines of mlperf_log_summary.txt, numbers as numbers."""
    data: dict[str, Any] = {}
    for line in path.read_text(errors="replace").splitlines():
        match = _LINE.match(line)
        if match is None:
            continue
        key, value = match.group(1).strip(), match.group(2).strip()
        try:
            data[key] = int(value)
        except ValueError:
            try:
                data[key] = float(value)
            except ValueError:
                data[key] = value
    return data


def headline(result: dict[str, Any]) -> dict[str, Any]:
    """The number each scenario is judged by, taken from LoadGen's summary."""
    s = result.get("summary", {})

    def ms(key: str) -> float | None:
        value = s.get(key)
        return None if not isinstance(value, (int, float)) else value / 1e6

    scenario = result.get("scenario")
    if scenario == "SingleStream":
        return {"metric": "p90 latency ms", "value": ms("90.0th percentile latency (ns)")}
    if scenario == "MultiStream":
        return {"metric": "p99 latency ms", "value": ms("99.0th percentile latency (ns)")}
    if scenario == "Offline":
        return {"metric": "samples/s", "value": s.get("Samples per second")}
    return {"metric": "completed samples/s", "value": s.get("Completed samples per second")}
