"""A sweep: models x runtimes x precisions x batch sizes, one record streamed per combination.

Each record is appended to `results.jsonl` the moment it exists (flush + fsync), so a sweep
killed at any point loses at most the combination in flight, and `--resume` skips every key
already there. One writer per output folder: the sweep holds an exclusive lock on it
(`resnet_common.locks`), so a second run or a `--resume` beside a live one is refused.

Before each job its key and the sweep's pid go to `inflight.json` (removed once the record is
written), and `faulthandler` is pointed at `crash.log`. A process that dies mid-job leaves the
marker behind, and `--resume` records why: with a crash log, an engine crashed the process (a
segfault, an abort): a failed record, not re-run, since it would crash again; without one, the
process was killed from outside (SIGKILL, the OOM killer, SIGTERM): an interrupted record, and
the job is measured again, once; killed again, it stays failed. `--retry-failed` re-runs every
failed job. One engine failing (load error, out of memory, its own exception) becomes a "failed"
record and the sweep goes on; engines that cannot run here become "skipped" with the reason.
"""

from __future__ import annotations

import contextlib
import faulthandler
import json
import math
import os
import socket
import sys
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from resnet_common.errors import FileWriteError, LockedError, UserError
from resnet_common.fileio import atomic_write_text, remove_debris, temp_name, write_error
from resnet_common.locks import LOCK_NAME, folder_lock, holder_of
from resnet_common.records import (
    CRASH_FILE,
    ENVIRONMENT_FILE,
    INFLIGHT_FILE,
    KEY_FIELDS,
    RESULTS_FILE,
    new_record,
    read_records,
    record_key,
)
from runtimes import parity, registry
from runtimes.base import Runner, UnsupportedError
from runtimes.models import ResolvedModel, resolve
from runtimes.timing import LoopConfig, Measurement, achieved_gflops, measure, throughput_ips

CRASHED_REASON = (
    "the process crashed during this measurement ({what}); not re-run by --resume, which "
    "would crash again (--retry-failed runs it)"
)
KILLED_REASON = (
    "interrupted: the process (pid {pid}) was killed from outside during this measurement, "
    "not by the engine; --resume measures it again once"
)
KILLED_AGAIN_REASON = (
    "interrupted {count} times: the process (pid {pid}) was killed from outside during this "
    "measurement each time (the OOM killer?); not re-run by --resume (--retry-failed runs it)"
)


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

    @property
    def label(self) -> str:
        return f"{self.model} · {self.runtime} · {self.precision} · batch {self.batch}"


@dataclass
class Prepared:
    """A job ready to time: its model, runner (not yet loaded), inputs and parity reference."""

    job: Job
    model: ResolvedModel
    base: dict[str, Any]
    info: dict[str, Any]
    runner: Runner
    feeds: dict[str, np.ndarray]
    reference: parity.Reference | None


# -- results file -------------------------------------------------------------------------------
class ResultsWriter:
    """Appends one JSON line per record, flushed and fsync'd before the sweep moves on."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._file = open(path, "a+b")  # noqa: SIM115 - held open for the sweep's lifetime
            self._file.seek(0, os.SEEK_END)
            if self._file.tell() > 0:  # a killed writer may have left a line without its newline
                self._file.seek(-1, os.SEEK_END)
                if self._file.read(1) != b"\n":
                    self._file.write(b"\n")
        except OSError as err:
            raise write_error(err, path) from None

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps(_finite(record), allow_nan=False, default=_jsonable) + "\n"
        try:
            self._file.write(line.encode())
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as err:  # a full disk: one line, every record before this one kept
            raise write_error(err, self.path) from None

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
        probe = out / temp_name("write-probe")  # pid-tagged: a kill here leaves no mystery
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        probe.unlink()
    except OSError as err:
        raise UserError(f"cannot write to --out {out}: {err.strerror or err}") from None


_HELD: set[Path] = set()  # output folders this process holds the lock of


def refuse_if_in_use(out: Path) -> None:
    """Refuse an output folder another live process writes to, creating nothing: checked
    before anything else about the folder, so a second writer hears who holds it."""
    if out.resolve() in _HELD:
        return
    pid = holder_of(out / LOCK_NAME)
    if pid is not None:
        who = f"pid {pid}" if pid > 0 else "another process"
        raise LockedError(
            f"--out {out} is in use by {who} (lock {out / LOCK_NAME}); wait for it to finish "
            "or use another --out"
        )


@contextlib.contextmanager
def output_lock(out: Path) -> Iterator[None]:
    """One writer per output folder for the whole command: an exclusive lock on `out/.lock`,
    re-entrant within this process (the run command holds it around the sweep and the report).
    Holding it, the temporary files of killed writers are removed."""
    key = out.resolve()
    if key in _HELD:
        yield
        return
    with folder_lock(out, what=f"--out {out}"):
        _HELD.add(key)
        try:
            remove_debris(out, owned=True)
            yield
        finally:
            _HELD.discard(key)


@contextlib.contextmanager
def crash_log(path: Path) -> Iterator[None]:
    """Point faulthandler at `path` while jobs run: a segfault or abort in an engine leaves its
    stack there, which is how the next --resume tells an engine crash from a kill."""
    was_enabled = faulthandler.is_enabled()
    try:
        f = open(path, "w")  # noqa: SIM115 - faulthandler needs the file open throughout
    except OSError as err:
        raise write_error(err, path) from None
    faulthandler.enable(file=f, all_threads=True)
    try:
        yield
    finally:
        faulthandler.disable()
        if was_enabled and sys.__stderr__ is not None:
            faulthandler.enable(file=sys.__stderr__)
        f.close()
        path.unlink(missing_ok=True)


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

    def latest_records(self) -> dict[str, dict[str, Any]]:
        """The last record of each key already in the results file."""
        records, self.warnings = read_records(self.config.out / RESULTS_FILE)
        return {record_key(r): r for r in records}

    def _rerun(self, record: dict[str, Any]) -> bool:
        if record["status"] != "failed":
            return False
        if self.config.retry_failed:
            return True
        interrupted = record.get("interrupted") or {}
        return interrupted.get("how") == "killed" and interrupted.get("count") == 1

    def run(
        self,
        *,
        on_start: Callable[[Job], None] = lambda job: None,
        on_record: Callable[[Job, dict[str, Any]], None] = lambda job, rec: None,
        environment: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        config = self.config
        refuse_if_in_use(config.out)
        prepare_out(config.out)
        with output_lock(config.out):
            return self._run_locked(on_start, on_record, environment)

    def _run_locked(
        self,
        on_start: Callable[[Job], None],
        on_record: Callable[[Job, dict[str, Any]], None],
        environment: dict[str, Any] | None,
    ) -> list[dict[str, Any]]:
        config = self.config
        env_path = config.out / ENVIRONMENT_FILE
        if environment is not None and not (config.resume and env_path.exists()):
            # --resume keeps the first run's environment (its peak above all): the records
            # already there were measured against it.
            write_json_atomic(env_path, environment)
        results = config.out / RESULTS_FILE
        if not config.resume and results.exists():
            results.unlink()  # a fresh sweep; --resume keeps what is there
        inflight, crashed = config.out / INFLIGHT_FILE, config.out / CRASH_FILE
        latest = self.latest_records() if config.resume else {}
        writer = ResultsWriter(results)
        records = []
        try:
            if config.resume:
                for died in self._died_records(inflight, crashed, latest):
                    writer.append(died)
                    records.append(died)
                    latest[record_key(died)] = died
            inflight.unlink(missing_ok=True)
            done = {key for key, r in latest.items() if not self._rerun(r)}
            todo = []
            for job in jobs(config):
                if self._key(job) in done:
                    on_record(job, {})
                else:
                    todo.append(job)
            run = self._run_interleaved if config.interleave else self._run_sequential
            with crash_log(crashed):
                for job, record in run(todo, inflight, on_start):
                    writer.append(record)
                    records.append(record)
                    on_record(job, record)
            inflight.unlink(missing_ok=True)
        except (KeyboardInterrupt, FileWriteError):
            # A clean interrupt (or a full disk) is not a crash: --resume measures that job
            # again.
            inflight.unlink(missing_ok=True)
            raise
        finally:
            writer.close()
        return records

    # -- running the jobs ---------------------------------------------------------------------
    def _run_sequential(
        self, todo: list[Job], inflight: Path, on_start: Callable[[Job], None]
    ) -> Iterator[tuple[Job, dict[str, Any]]]:
        for job in todo:
            on_start(job)
            self._mark_inflight(inflight, [job])
            record = self.run_job(job)
            yield job, record
            inflight.unlink(missing_ok=True)

    def _run_interleaved(
        self, todo: list[Job], inflight: Path, on_start: Callable[[Job], None]
    ) -> Iterator[tuple[Job, dict[str, Any]]]:
        """Jobs that can run are loaded together while memory allows, then timed in rounds;
        a job that is skipped or fails to load gets its record at once."""
        from runtimes.interleave import Slot, has_room

        group: list[tuple[Prepared, Slot]] = []
        number = 0
        for job in todo:
            on_start(job)
            prepared = self._prepare(job)
            if isinstance(prepared, dict):
                yield job, prepared
                continue
            self._mark_inflight(inflight, [p.job for p, _ in group] + [job])
            slot = Slot(self._key(job), prepared.runner, prepared.feeds)
            try:
                slot.start(self.config.loop)
            except Exception as err:
                prepared.runner.deactivate()
                yield job, self._failed(prepared, err)
                continue
            group.append((prepared, slot))
            if not has_room():
                number += 1
                yield from self._time_group(group, number)
                group = []
                inflight.unlink(missing_ok=True)
        if group:
            number += 1
            yield from self._time_group(group, number)

    def _time_group(
        self, group: list[tuple[Prepared, Any]], number: int
    ) -> Iterator[tuple[Job, dict[str, Any]]]:
        from runtimes.interleave import plan_rounds, run_rounds
        from runtimes.timing import peak_device_mb, peak_rss_mb, summarize

        slots = [slot for _, slot in group]
        rounds = plan_rounds(slots, self.config.loop)
        errors = run_rounds(slots, rounds, seed=self.config.seed + number)
        host_mb = peak_rss_mb()  # the group's: every job of it was loaded at once
        for prepared, slot in group:
            runner = prepared.runner
            try:
                if slot.key in errors:
                    raise errors[slot.key]
                runner.verify()
                box = self._check(prepared)
                m = Measurement(
                    samples_ms=slot.samples_ms,
                    stats=summarize(slot.samples_ms),
                    first_inference_ms=slot.first_inference_ms,
                    load_time_s=float(runner.load_time_s or 0.0),
                    warmup_iterations=slot.warmup_iterations,
                    timed_s=slot.timed_s,
                    timing_mode=runner.timing_mode,
                    clock=runner.clock,
                    peak_host_rss_mb=host_mb,
                    peak_device_mb=peak_device_mb(runner),
                )
            except Exception as err:
                yield prepared.job, self._failed(prepared, err)
                continue
            finally:
                runner.deactivate()
            record = self._ok(prepared, m, box)
            record["timing"]["interleaved"] = {
                "group": number,
                "jobs": len(group),
                "rounds": rounds,
                "per_round": slot.per_round,
                "round_medians_ms": slot.round_medians_ms,
            }
            record["peak_host_rss_mb_scope"] = "interleaved group"
            yield prepared.job, record

    def _mark_inflight(self, inflight: Path, started: list[Job]) -> None:
        """Name the jobs being measured and their process, so that a process that dies leaves
        them named."""
        bases = [{**self._base(job), "key": self._key(job)} for job in started]
        owner = {"pid": os.getpid(), "host": socket.gethostname()}
        write_json_atomic(inflight, {**bases[-1], "jobs": bases, **owner})

    def _died_records(
        self, inflight: Path, crashed: Path, latest: dict[str, dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Records for the jobs a previous run started but never finished: failed when an
        engine crashed the process (its crash log holds the stack), interrupted when the
        process was killed from outside (no crash log)."""
        try:
            started = json.loads(inflight.read_text())
            listed = started.get("jobs") or [started]
            bases = [{k: one[k] for k in KEY_FIELDS} for one in listed]
            pid = int(started.get("pid") or 0)
        except FileNotFoundError:
            return []
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            self.warnings.append(f"{inflight}: unreadable, ignored ({type(err).__name__})")
            return []
        try:
            stack = crashed.read_text(errors="replace").strip()
        except OSError:
            stack = ""
        died = []
        for base in bases:
            extra: dict[str, Any]
            key = record_key(base)
            before = latest.get(key)
            if before is not None and not self._rerun(before):
                continue  # the record was written; only the marker's removal was lost
            what = f"{base['model']} on {base['runtime']} {base['precision']} batch {base['batch']}"
            if stack:
                cause = stack.splitlines()[0].removeprefix("Fatal Python error: ")
                reason = CRASHED_REASON.format(what=cause)
                extra = {"interrupted": {"how": "crash", "pid": pid}, "traceback": stack[:4000]}
                self.warnings.append(f"{what}: {reason}")
            else:
                previous = (before or {}).get("interrupted") or {}
                count = previous.get("count", 0) + 1 if previous.get("how") == "killed" else 1
                reason = (KILLED_REASON if count == 1 else KILLED_AGAIN_REASON).format(
                    pid=pid or "unknown", count=count
                )
                extra = {"interrupted": {"how": "killed", "pid": pid, "count": count}}
                self.warnings.append(f"{what}: {reason}")
            died.append(new_record(**base, status="failed", reason=reason, **extra))
        return died

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
        """One job timed alone: load, warm up, time, check parity, unload."""
        prepared = self._prepare(job)
        if isinstance(prepared, dict):
            return prepared
        box: dict[str, Any] = {}

        def check(runner: Runner) -> None:
            box.update(self._check(prepared))

        try:
            m = measure(prepared.runner, prepared.feeds, self.config.loop, on_active=check)
        except Exception as err:
            return self._failed(prepared, err)
        return self._ok(prepared, m, box)

    def _prepare(self, job: Job) -> Prepared | dict[str, Any]:
        """The job ready to time, or its record when it cannot run (a failed model, an engine
        missing here, a model too big for the engine)."""
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
        skip = registry.refusal(job.runtime, job.precision, model)
        if skip is not None:
            return new_record(**base, status="skipped", reason=skip, **info)
        if base["device"] == "cpu":
            info["threads"] = self.config.cpu_threads()
        try:
            runner = make_runner(job, model, self.config)
            runner.check_size()
        except UnsupportedError as err:  # too big for this engine: a skip, not a failure
            return new_record(**base, status="skipped", reason=_first_line(err), **info)
        except Exception as err:
            return new_record(**base, status="failed", reason=_reason(err), **info)
        reference = self._reference(model, job) if self.config.parity else None
        feeds = reference.inputs if reference is not None else self._feeds(model, job)
        return Prepared(job, model, base, info, runner, feeds, reference)

    def _check(self, prepared: Prepared) -> dict[str, Any]:
        """While the runner is active: what actually ran, and its parity."""
        out: dict[str, Any] = {"runner": prepared.runner.describe()}
        if prepared.reference is not None:
            out["parity"] = _parity(prepared.runner, prepared.reference)
        return out

    def _failed(self, prepared: Prepared, err: BaseException) -> dict[str, Any]:
        return new_record(
            **prepared.base,
            status="failed",
            reason=_reason(err),
            traceback=traceback.format_exc(limit=-3),
            **prepared.info,
        )

    def _ok(self, prepared: Prepared, m: Measurement, box: dict[str, Any]) -> dict[str, Any]:
        return new_record(
            **prepared.base,
            status="ok",
            **prepared.info,
            **self._measured(m, prepared.model, prepared.job),
            runner=box.get("runner"),
            parity=box.get("parity"),
        )

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


def make_runner(job: Job, model: ResolvedModel, config: SweepConfig) -> Runner:
    """The runner for one job. Engines that build for a batch range (TensorRT) get every batch
    of the sweep, so one cached engine serves all of them; a graph with a fixed batch admits
    only its own."""
    cls = registry.runner_class(job.runtime)
    return cls(
        model.path,
        precision=job.precision,
        batch_sizes=cls.profile_batches(job.batch, config.batches, model.fixed_batch),
        threads=config.cpu_threads() if cls.device == "cpu" else config.threads,
        timing=config.loop.timing,
        macs=model.macs,
    )
