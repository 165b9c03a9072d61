"""One job into its record: the model it resolves to (once per model and precision), its runner
and parity reference, and the record for every outcome (skipped, failed, ok). One engine failing
(load error, out of memory, its own exception) is a "failed" record and the sweep goes on;
engines that cannot run here are "skipped" with the reason."""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from typing import Any

import numpy as np

from resnet_common.errors import first_line, typed_line
from resnet_common.records import new_record, record_key
from runtimes import parity, registry
from runtimes.base import Runner, UnsupportedError
from runtimes.environment import PEAK_OF
from runtimes.machine_load import monitored
from runtimes.models import ResolvedModel, resolve
from runtimes.sweep.config import Job, SweepConfig
from runtimes.timing import Measurement, achieved_gflops, measure


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
        mode=job.mode,
    )


def peak_fraction(
    peaks: dict[str, Any] | None, precision: str, gflops: float | None, *, device: str | None
) -> dict[str, Any] | None:
    """The record's `peak`: its precision's measured CPU matmul peak and the fraction of it
    reached (2 x MACs per image); None on a GPU, without a peak or without a rate."""
    if device != "cpu" or not peaks or not gflops:
        return None
    unit = PEAK_OF.get(precision, "fp32")
    entry = peaks.get(unit) or {}
    value = entry.get("gflops")
    if not value:
        return None
    return {"precision": unit, "gflops": value, "by": entry.get("by"), "fraction": gflops / value}


def _reason(err: BaseException) -> str:
    return typed_line(err)[:500]


class Recorder:
    """Makes the records of one sweep's jobs, resolving each model and building each parity
    reference once."""

    def __init__(self, config: SweepConfig) -> None:
        self.config = config
        self.models: dict[tuple[str, str], ResolvedModel | Exception] = {}
        self.references: dict[tuple[str, str, int], parity.Reference] = {}

    # -- identity ---------------------------------------------------------------------------
    def base(self, job: Job) -> dict[str, Any]:
        """The record's key fields for a job (image size 0 when the model does not resolve)."""
        model = self.model(job.model, job.precision)
        size = model.image_size if isinstance(model, ResolvedModel) else self._unresolved_size
        return {**job.__dict__, "image_size": size}

    def key(self, job: Job) -> str:
        return record_key(self.base(job))

    @property
    def _unresolved_size(self) -> int:
        return self.config.image_size or 0

    def model(self, name: str, precision: str) -> ResolvedModel | Exception:
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

    # -- one job ----------------------------------------------------------------------------
    def measured(self, job: Job) -> dict[str, Any]:
        """One job timed alone: load, warm up, time, check parity, unload."""
        prepared = self.prepare(job)
        if isinstance(prepared, dict):
            return prepared
        box: dict[str, Any] = {}

        def check(runner: Runner) -> None:
            box.update(self.checked(prepared))

        try:
            with monitored(threads=self.busy_threads(prepared)) as load:
                m = measure(prepared.runner, prepared.feeds, self.config.loop, on_active=check)
        except Exception as err:
            return self.failed(prepared, err)
        record = self.ok(prepared, m, box)
        record["load"] = {**load.result(), "scope": "this job"}
        return record

    def busy_threads(self, prepared: Prepared) -> int | None:
        """The CPU threads a job keeps busy: its intra-op threads (throughput mode's streams
        split them, so the total is the same); None for GPU engines."""
        if prepared.base["device"] != "cpu":
            return None
        return int(prepared.info.get("threads") or self.config.cpu_threads())

    def prepare(self, job: Job) -> Prepared | dict[str, Any]:
        """The job ready to time, or its record when it cannot run (a failed model, an engine
        missing here, a model too big for the engine)."""
        model = self.model(job.model, job.precision)
        base: dict[str, Any] = {
            "model": job.model,
            "runtime": job.runtime,
            "precision": job.precision,
            "batch": job.batch,
            "mode": job.mode,
            "device": registry.device_of(job.runtime),  # reports need no registry to place it
        }
        if isinstance(model, Exception):
            size = self._unresolved_size  # the same key `key` gives, so --resume skips it
            return new_record(**base, image_size=size, status="failed", reason=_reason(model))
        base |= {"image_size": model.image_size}
        info: dict[str, Any] = {"depth": model.depth, "macs": model.macs, "params": model.params}
        skip = registry.refusal(job.runtime, job.precision, model, mode=job.mode)
        if skip is not None:
            return new_record(**base, status="skipped", reason=skip, **info)
        if base["device"] == "cpu":
            info["threads"] = self.config.cpu_threads()
        try:
            runner = make_runner(job, model, self.config)
            runner.check_size()
        except UnsupportedError as err:  # too big for this engine: a skip, not a failure
            return new_record(**base, status="skipped", reason=first_line(err), **info)
        except Exception as err:
            return new_record(**base, status="failed", reason=_reason(err), **info)
        reference = self._reference(model, job) if self.config.parity else None
        feeds = reference.inputs if reference is not None else self._feeds(model, job)
        return Prepared(job, model, base, info, runner, feeds, reference)

    def checked(self, prepared: Prepared) -> dict[str, Any]:
        """While the runner is active: what actually ran, and its parity."""
        out: dict[str, Any] = {"runner": prepared.runner.describe()}
        if prepared.reference is not None:
            out["parity"] = _parity(prepared.runner, prepared.reference)
        return out

    # -- records ----------------------------------------------------------------------------
    def failed(self, prepared: Prepared, err: BaseException) -> dict[str, Any]:
        return new_record(
            **prepared.base,
            status="failed",
            reason=_reason(err),
            traceback=traceback.format_exc(limit=-3),
            **prepared.info,
        )

    def ok(self, prepared: Prepared, m: Measurement, box: dict[str, Any]) -> dict[str, Any]:
        return new_record(
            **prepared.base,
            status="ok",
            **prepared.info,
            **self._measurement_fields(m, prepared.model, prepared.job),
            runner=box.get("runner"),
            parity=box.get("parity"),
        )

    def _measurement_fields(self, m: Measurement, model: ResolvedModel, job: Job) -> dict[str, Any]:
        s = m.stats
        ips = m.throughput_ips(job.batch)
        gflops = (
            2 * model.macs * ips / 1e9
            if m.mode == "throughput" and model.macs
            else achieved_gflops(model.macs, job.batch, s.median)
        )
        extra: dict[str, Any] = {}
        if m.mode == "throughput":
            extra["throughput"] = {
                "completed": m.completed,
                "images": (m.completed or 0) * job.batch,
                "wall_s": m.timed_s,
                "steady_completed": m.steady_completed,
                "steady_s": m.steady_s,
                "streams": m.streams,
                "definition": "images completed with every stream busy / the time that took",
            }
        peak = peak_fraction(self.config.peaks, job.precision, gflops, device=self._device(job))
        if peak is not None:
            extra["peak"] = peak
        return {
            "latency_ms": s.latency_dict(),
            "stability": {
                "cov": s.cov,
                "median_ci95_ms": list(s.median_ci95),
                "median_ci_exact": s.median_ci_exact,
                "unstable": s.unstable,
            },
            "throughput_ips": ips,
            "gflops": gflops,
            "load_time_s": m.load_time_s,
            "first_inference_ms": m.first_inference_ms,
            "peak_host_rss_mb": m.peak_host_rss_mb,
            # the peak is the process's: this job's alone when timed alone, the whole group's
            # when interleaved (the scheduler says so); the load growth is always this job's
            "peak_host_rss_mb_scope": "this job",
            "host_rss_load_mb": m.host_rss_load_mb,
            "peak_device_mb": m.peak_device_mb,
            "timing": {
                "mode": m.timing_mode,
                "clock": m.clock,
                "warmup_iterations": m.warmup_iterations,
                "iterations": s.n,
                "timed_s": m.timed_s,
                "config": self.config.loop.to_dict(),
            },
            **extra,
        }

    @staticmethod
    def _device(job: Job) -> str | None:
        return registry.device_of(job.runtime)

    # -- inputs and reference ---------------------------------------------------------------
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
