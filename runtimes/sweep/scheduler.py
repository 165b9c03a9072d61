"""The sweep's schedule: which jobs run (all, or what --resume has not done), in what order, one
after another or interleaved in groups, each record streamed to the results file as it exists."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from resnet_common.errors import FileWriteError
from resnet_common.records import (
    CRASH_FILE,
    ENVIRONMENT_FILE,
    INFLIGHT_FILE,
    RESULTS_FILE,
    read_records,
    record_key,
)
from runtimes import bounds
from runtimes.sweep import resume
from runtimes.sweep.config import Job, SweepConfig, jobs
from runtimes.sweep.outdir import (
    ResultsWriter,
    check_own_files,
    output_lock,
    prepare_out,
    refuse_if_in_use,
    write_json_atomic,
)
from runtimes.sweep.record import Prepared, Recorder

OnStart = Callable[[Job], None]
OnRecord = Callable[[Job, dict[str, Any]], None]
OnGroup = Callable[[int, list[Job], int], None]  # group number, its jobs, its rounds
Stream = Iterator[tuple[Job, dict[str, Any]]]


def check_config(config: SweepConfig) -> None:
    """Refuse a loop or thread count past runtimes.bounds, before anything is created."""
    loop = config.loop
    bounds.check_loop(
        warmup=loop.warmup,
        warmup_s=loop.warmup_s,
        iterations=loop.iterations,
        duration_s=loop.duration_s,
    )
    bounds.check_threads(config.threads)


class Sweep:
    """Runs the jobs of a config, streaming records; `on_start` and `on_record` hear about each
    job (`on_record` with an empty record for a job --resume skips)."""

    def __init__(self, config: SweepConfig) -> None:
        self.config = config
        self.recorder = Recorder(config)
        self.warnings: list[str] = []
        self._on_group: OnGroup = lambda number, jobs, rounds: None

    def latest_records(self) -> dict[str, dict[str, Any]]:
        """The last record of each key already in the results file."""
        records, self.warnings = read_records(self.config.out / RESULTS_FILE, strict=True)
        return {record_key(r): r for r in records}

    def run(
        self,
        *,
        on_start: OnStart = lambda job: None,
        on_record: OnRecord = lambda job, rec: None,
        environment: dict[str, Any] | None = None,
        on_group: OnGroup = lambda number, jobs, rounds: None,
    ) -> list[dict[str, Any]]:
        config = self.config
        refuse_if_in_use(config.out)
        check_own_files(config.out)
        check_config(config)
        if config.resume:
            resume.check_resumable(config.out)
        prepare_out(config.out)
        with output_lock(config.out):
            self._on_group = on_group
            return self._run_locked(on_start, on_record, environment)

    def unfinished(self) -> list[Job]:
        """The jobs of this sweep never measured because the process was killed during them
        (their latest record is an interruption that --resume does not run again)."""
        records, _ = read_records(self.config.out / RESULTS_FILE)
        latest = {record_key(r): r for r in records}
        left = []
        for job in jobs(self.config):
            record = latest.get(self.recorder.key(job))
            interrupted = (record or {}).get("interrupted") or {}
            if (
                record is not None
                and record["status"] == "failed"
                and (interrupted.get("how") == "killed")
            ):
                left.append(job)
        return left

    def run_job(self, job: Job) -> dict[str, Any]:
        """One job timed alone, into its record (the sequential schedule's step)."""
        return self.recorder.measured(job)

    def mark_inflight(
        self, path: Path, started: list[Job], *, running: list[Job] | None = None
    ) -> None:
        """Name `started` in the in-flight marker before they are measured, and which of them
        run (default: the last one, being loaded or timed alone)."""
        keyed = [{**self.recorder.base(job), "key": self.recorder.key(job)} for job in started]
        now = started[-1:] if running is None else running
        resume.mark_inflight(path, keyed, running=[self.recorder.key(job) for job in now])

    def _run_locked(
        self, on_start: OnStart, on_record: OnRecord, environment: dict[str, Any] | None
    ) -> list[dict[str, Any]]:
        config = self.config
        self._write_environment(environment)
        results = config.out / RESULTS_FILE
        if not config.resume and results.exists():
            results.unlink()  # a fresh sweep; --resume keeps what is there
        inflight, crashed = config.out / INFLIGHT_FILE, config.out / CRASH_FILE
        latest = self.latest_records() if config.resume else {}
        writer = ResultsWriter(results)
        records: list[dict[str, Any]] = []

        def keep(record: dict[str, Any]) -> None:
            writer.append(record)
            records.append(record)

        try:
            if config.resume:
                for died in resume.died_records(
                    inflight,
                    crashed,
                    latest,
                    retry_failed=config.retry_failed,
                    warnings=self.warnings,
                ):
                    keep(died)
                    latest[record_key(died)] = died
            inflight.unlink(missing_ok=True)
            todo = self._todo(latest, on_record)
            run = self._run_interleaved if config.interleave else self._run_sequential
            with resume.crash_log(crashed):
                for job, record in run(todo, inflight, on_start):
                    keep(record)
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

    def _write_environment(self, environment: dict[str, Any] | None) -> None:
        path = self.config.out / ENVIRONMENT_FILE
        if environment is not None and not (self.config.resume and path.exists()):
            # --resume keeps the first run's environment (its peak above all): the records
            # already there were measured against it.
            write_json_atomic(path, environment)

    def _todo(self, latest: dict[str, dict[str, Any]], on_record: OnRecord) -> list[Job]:
        """The jobs to measure: all but those whose record --resume keeps."""
        retry = self.config.retry_failed
        done = {key for key, r in latest.items() if not resume.due_again(r, retry_failed=retry)}
        todo = []
        for job in jobs(self.config):
            if self.recorder.key(job) in done:
                on_record(job, {})
            else:
                todo.append(job)
        return todo

    # -- running the jobs ---------------------------------------------------------------------
    def _run_sequential(self, todo: list[Job], inflight: Path, on_start: OnStart) -> Stream:
        for job in todo:
            on_start(job)
            self.mark_inflight(inflight, [job])
            record = self.run_job(job)
            yield job, record
            inflight.unlink(missing_ok=True)

    def _run_interleaved(self, todo: list[Job], inflight: Path, on_start: OnStart) -> Stream:
        """Jobs that can run are loaded together while memory allows, then timed in rounds;
        a job that is skipped or fails to load gets its record at once."""
        from runtimes.interleave import Slot, has_room

        group: list[tuple[Prepared, Slot]] = []
        number = 0
        for job in todo:
            on_start(job)
            prepared = self.recorder.prepare(job)
            if isinstance(prepared, dict):
                yield job, prepared
                continue
            self.mark_inflight(inflight, [p.job for p, _ in group] + [job])
            slot = Slot(
                self.recorder.key(job), prepared.runner, prepared.feeds, mode=prepared.runner.mode
            )
            try:
                slot.start(self.config.loop)
            except Exception as err:
                prepared.runner.deactivate()
                yield job, self.recorder.failed(prepared, err)
                continue
            group.append((prepared, slot))
            if not has_room():
                number += 1
                yield from self._time_group(group, number, inflight)
                group = []
                inflight.unlink(missing_ok=True)
        if group:
            number += 1
            yield from self._time_group(group, number, inflight)

    def _time_group(self, group: list[tuple[Prepared, Any]], number: int, inflight: Path) -> Stream:
        from runtimes.interleave import plan_rounds, run_rounds
        from runtimes.machine_load import monitored
        from runtimes.timing import peak_rss_mb

        # Timed in rounds, no one job runs: a kill from outside now is charged to none of them
        self.mark_inflight(inflight, [p.job for p, _ in group], running=[])
        slots = [slot for _, slot in group]
        rounds = plan_rounds(slots, self.config.loop)
        self._on_group(number, [p.job for p, _ in group], rounds)
        busy = [t for p, _ in group if (t := self.recorder.busy_threads(p)) is not None]
        with monitored(threads=max(busy) if busy else None) as monitor:
            errors = run_rounds(slots, rounds, seed=self.config.seed + number)
        load = {**monitor.result(), "scope": "interleaved group"}
        host_mb = peak_rss_mb()  # the group's: every job of it was loaded at once
        for prepared, slot in group:
            runner = prepared.runner
            try:
                if slot.key in errors:
                    raise errors[slot.key]
                runner.verify()
                box = self.recorder.checked(prepared)
                m = slot.measurement(peak_host_rss_mb=host_mb)
            except Exception as err:
                yield prepared.job, self.recorder.failed(prepared, err)
                continue
            finally:
                runner.deactivate()
            record = self.recorder.ok(prepared, m, box)
            record["timing"]["interleaved"] = {
                "group": number,
                "jobs": len(group),
                "rounds": rounds,
                "per_round": slot.per_round,
                "round_medians_ms": slot.round_medians_ms,
            }
            record["peak_host_rss_mb_scope"] = "interleaved group"
            record["load"] = load
            yield prepared.job, record
