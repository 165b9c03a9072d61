"""A sweep: models x runtimes x precisions x batch sizes, one record streamed per combination.

Each record is appended to `results.jsonl` the moment it exists (flush + fsync), so a sweep
killed at any point loses at most the combination in flight, and `--resume` skips every key
already there. Before each job its key goes to `inflight.json` (removed once the record is
written): an engine that takes the whole process down (a segfault) leaves that file behind, and
`--resume` turns it into a failed record, "process died during this measurement", instead of
running the same crash again. One engine failing (load error, out of memory, its own crash) becomes a "failed"
record and the sweep goes on; engines that cannot run here become "skipped" with the reason.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reports.results import read_records
from reports.schema import (
    ENVIRONMENT_FILE,
    INFLIGHT_FILE,
    KEY_FIELDS,
    RESULTS_FILE,
    new_record,
    record_key,
)
from resnet_common.errors import UserError
from resnet_common.fileio import atomic_write_text
from runtimes import parity, registry
from runtimes.base import Runner, UnsupportedError
from runtimes.models import ResolvedModel, resolve
from runtimes.timing import LoopConfig, Measurement, achieved_gflops, measure, throughput_ips

DIED_REASON = "process died during this measurement (crash or kill); not re-run by --resume"


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


@dataclass(frozen=True)
class Job:
    model: str
    runtime: str
    precision: str
    batch: int

    @property
    def label(self) -> str:
        return f"{self.model} · {self.runtime} · {self.precision} · batch {self.batch}"


# -- results file -------------------------------------------------------------------------------
class ResultsWriter:
    """Appends one JSON line per record, flushed and fsync'd before the sweep moves on."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = open(path, "a+b")  # noqa: SIM115 - held open for the sweep's lifetime
        self._file.seek(0, os.SEEK_END)
        if self._file.tell() > 0:  # a killed writer may have left a line without its newline
            self._file.seek(-1, os.SEEK_END)
            if self._file.read(1) != b"\n":
                self._file.write(b"\n")

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps(_finite(record), allow_nan=False, default=_jsonable) + "\n"
        self._file.write(line.encode())
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()


def _finite(value: Any) -> Any:
    """NaN and Inf become null: JSON has no such numbers, and a record must always be written."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _jsonable(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)  # Path and anything else


def write_json_atomic(path: Path, data: object) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, default=_jsonable) + "\n")


def prepare_out(out: Path) -> None:
    """Create the output folder, or say in one line why it cannot be written."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-probe-"):
            pass
    except OSError as err:
        raise UserError(f"cannot write to --out {out}: {err.strerror or err}") from None


# -- the sweep ----------------------------------------------------------------------------------
def jobs(config: SweepConfig) -> Iterator[Job]:
    for model in config.models:
        for precision in config.precisions:
            for runtime in config.runtimes:
                for batch in config.batches:
                    yield Job(model, runtime, precision, batch)


def _reason(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(err).__name__}: {first}"[:500] if first else type(err).__name__


class Sweep:
    """Runs the jobs of a config, streaming records; `progress` is told about each job."""

    def __init__(self, config: SweepConfig) -> None:
        self.config = config
        self.models: dict[tuple[str, str], ResolvedModel | Exception] = {}
        self.references: dict[tuple[str, str, int], parity.Reference] = {}
        self.warnings: list[str] = []

    def done_keys(self) -> set[str]:
        records, self.warnings = read_records(self.config.out / RESULTS_FILE)
        return {record_key(r) for r in records}

    def run(
        self,
        *,
        on_start: Callable[[Job], None] = lambda job: None,
        on_record: Callable[[Job, dict[str, Any]], None] = lambda job, rec: None,
        environment: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        config = self.config
        prepare_out(config.out)
        if environment is not None:
            write_json_atomic(config.out / ENVIRONMENT_FILE, environment)
        results = config.out / RESULTS_FILE
        if not config.resume and results.exists():
            results.unlink()  # a fresh sweep; --resume keeps what is there
        inflight = config.out / INFLIGHT_FILE
        done = self.done_keys() if config.resume else set()
        writer = ResultsWriter(results)
        records = []
        try:
            if config.resume:
                died = self._died_record(inflight, done)
                if died is not None:
                    writer.append(died)
                    records.append(died)
                    done.add(record_key(died))
            inflight.unlink(missing_ok=True)
            for job in jobs(config):
                key = self._key(job)
                if key in done:
                    on_record(job, {})
                    continue
                on_start(job)
                write_json_atomic(inflight, {**self._base(job), "key": key})
                record = self.run_job(job)
                writer.append(record)
                inflight.unlink(missing_ok=True)
                records.append(record)
                on_record(job, record)
        except KeyboardInterrupt:
            # A clean interrupt is not a crash: --resume should measure that job again.
            inflight.unlink(missing_ok=True)
            raise
        finally:
            writer.close()
        return records

    def _died_record(self, inflight: Path, done: set[str]) -> dict[str, Any] | None:
        """The failed record for a job a previous run started but never finished, if any."""
        try:
            started = json.loads(inflight.read_text())
            base = {k: started[k] for k in KEY_FIELDS}
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as err:
            self.warnings.append(f"{inflight}: unreadable, ignored ({type(err).__name__})")
            return None
        if record_key(base) in done:
            return None  # the record was written; only the marker's removal was lost
        self.warnings.append(
            f"{base['model']} on {base['runtime']} {base['precision']} batch {base['batch']}: "
            "the process died during this measurement; recorded as failed, not re-run"
        )
        return new_record(**base, status="failed", reason=DIED_REASON)

    def _base(self, job: Job) -> dict[str, Any]:
        """The record's key fields for a job (image size 0 when the model does not resolve)."""
        model = self._model(job.model, job.precision)
        size = model.image_size if isinstance(model, ResolvedModel) else self._unresolved_size
        return {**job.__dict__, "image_size": size}

    @property
    def _unresolved_size(self) -> int:
        return self.config.image_size or 0

    def _key(self, job: Job) -> str:
        return record_key(self._base(job))

    def _model(self, name: str, precision: str) -> ResolvedModel | Exception:
        key = (name, precision)
        if key not in self.models:
            try:
                self.models[key] = resolve(
                    name,
                    precision=precision,
                    image_size=self.config.image_size,
                    cache_dir=self.config.model_cache,
                )
            except Exception as err:  # recorded as a failed result for every job of the model
                self.models[key] = err
        return self.models[key]

    def run_job(self, job: Job) -> dict[str, Any]:
        model = self._model(job.model, job.precision)
        base: dict[str, Any] = {
            "model": job.model,
            "runtime": job.runtime,
            "precision": job.precision,
            "batch": job.batch,
            "device": registry.device_of(job.runtime),  # reports need no registry to place it
        }
        if isinstance(model, Exception):
            size = self._unresolved_size  # the same key `_key` gives, so --resume skips it
            return new_record(**base, image_size=size, status="failed", reason=_reason(model))
        base |= {"image_size": model.image_size}
        info: dict[str, Any] = {"depth": model.depth, "macs": model.macs, "params": model.params}
        skip = skip_reason(job.runtime, job.precision, model)
        if skip is not None:
            return new_record(**base, status="skipped", reason=skip, **info)
        reference = self._reference(model, job) if self.config.parity else None
        feeds = reference.inputs if reference is not None else self._feeds(model, job)
        box: dict[str, Any] = {}

        def check(runner: Runner) -> None:
            box["runner"] = runner.describe()  # while active: what actually ran
            if reference is not None:
                box["parity"] = _parity(runner, reference)

        try:
            runner = make_runner(job, model, self.config)
            try:
                runner.check_size()
            except UnsupportedError as err:  # too big for this engine: a skip, not a failure
                return new_record(**base, status="skipped", reason=_first_line(err), **info)
            m = measure(runner, feeds, self.config.loop, on_active=check)
        except Exception as err:
            return new_record(
                **base,
                status="failed",
                reason=_reason(err),
                traceback=traceback.format_exc(limit=-3),
                **info,
            )
        return new_record(
            **base, status="ok", **info, **self._measured(m, model, job), runner=box.get("runner"),
            parity=box.get("parity"),
        )  # fmt: skip

    def _measured(self, m: Measurement, model: ResolvedModel, job: Job) -> dict[str, Any]:
        s = m.stats
        return {
            "latency_ms": s.latency_dict(),
            "stability": {
                "cov": s.cov,
                "median_ci95_ms": list(s.median_ci95),
                "median_ci_exact": s.median_ci_exact,
                "unstable": s.unstable,
            },
            "throughput_ips": throughput_ips(s, job.batch),
            "gflops": achieved_gflops(model.macs, job.batch, s.median),
            "load_time_s": m.load_time_s,
            "first_inference_ms": m.first_inference_ms,
            "peak_host_rss_mb": m.peak_host_rss_mb,
            "peak_device_mb": m.peak_device_mb,
            "timing": {
                "mode": m.timing_mode,
                "clock": m.clock,
                "warmup_iterations": m.warmup_iterations,
                "iterations": s.n,
                "timed_s": m.timed_s,
                "config": self.config.loop.to_dict(),
            },
        }

    def _feeds(self, model: ResolvedModel, job: Job) -> dict[str, np.ndarray]:
        from runtimes.inputs import feeds

        return feeds(model.input_name, job.batch, model.image_size, seed=self.config.seed)

    def _reference(self, model: ResolvedModel, job: Job) -> parity.Reference:
        """The parity reference (inputs, structure check, torch fp64 outputs), once per model,
        precision and batch: `bench-runtimes parity` builds the very same object."""
        key = (job.model, job.precision, job.batch)
        if key not in self.references:
            self.references[key] = parity.reference_for(
                model, precision=job.precision, batch=job.batch, seed=self.config.seed
            )
        return self.references[key]


def _parity(runner: Runner, reference: parity.Reference) -> dict[str, Any] | None:
    """The record's parity: the active runner's outputs judged against the reference."""
    if reference.error is not None:
        return {"reference": reference.name, "error": reference.error}
    if reference.outputs is None:
        return None  # a file graphgen did not make: no reference here
    try:
        result = reference.judge(runner.name, runner.infer(reference.inputs))
    except Exception as err:
        return {"reference": reference.name, "error": _reason(err)}
    return reference.record(result)


def _first_line(err: BaseException) -> str:
    lines = str(err).splitlines()
    return lines[0] if lines else type(err).__name__


def skip_reason(runtime: str, precision: str, model: ResolvedModel) -> str | None:
    """Why a job cannot run here (known before trying), or None."""
    why = registry.availability(runtime)
    if why is not None:
        return why
    cls = registry.runner_class(runtime)
    if precision not in cls.precisions:
        return f"{runtime} does not support {precision} (it runs {', '.join(cls.precisions)})"
    if cls.needs_graphgen and not model.is_graphgen:
        return f"{runtime} rebuilds networks from graphgen metadata; {model.path} has none"
    return None


def make_runner(job: Job, model: ResolvedModel, config: SweepConfig) -> Runner:
    """The runner for one job. Engines that build for a batch range (TensorRT) get every batch
    of the sweep, so one cached engine serves all of them; a graph with a fixed batch admits
    only its own."""
    cls = registry.runner_class(job.runtime)
    return cls(
        model.path,
        precision=job.precision,
        batch_sizes=cls.profile_batches(job.batch, config.batches, model.fixed_batch),
        threads=config.threads,
        timing=config.loop.timing,
        macs=model.macs,
    )
