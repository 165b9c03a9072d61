"""Running parity: every model through every chosen engine, each judged against the reference.

`check_parity` settles everything that is bad input (precision, engines, models, batches)
before any engine loads, then checks one model at a time. An engine that fails to run is that
engine's result ("error"), never a crash.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from graphgen.spec import Spec
from resnet_common.errors import UserError
from runtimes.base import error_line
from runtimes.inputs import DEFAULT_SEED
from runtimes.models import ResolvedModel, check_batch, resolve
from runtimes.parity.engines import (
    EngineChoice,
    check_comparable,
    choose_engines,
    make_runner,
    preflight,
)
from runtimes.parity.judge import DEFAULT_TOLERANCES, Tolerance, tolerance_for
from runtimes.parity.reference import NO_REFERENCE, Reference, reference_for, run_once
from runtimes.parity.results import EngineResult, ModelResult, ParityReport

DEFAULT_BATCH = 2
DEFAULT_RUNTIMES = ("ort-cpu", "ort-cuda", "ort-trt", "trt", "torch", "openvino", "onnx-ref")

ModelArg = str | Path | Spec | ResolvedModel
# One engine run on the reference's inputs: its output and what ran.
RunEngine = Callable[[EngineChoice], tuple[np.ndarray, dict[str, Any]]]


@dataclass(frozen=True)
class ParityOptions:
    """How models are checked: `bench-runtimes parity`'s options (None: the model's own image
    size, the file's fixed batch or DEFAULT_BATCH, the precision's tolerances)."""

    batch: int | None = None
    image_size: int | None = None
    precision: str = "fp32"
    fold: bool = False
    seed: int = DEFAULT_SEED
    atol: float | None = None
    rtol: float | None = None
    threads: int | None = None
    cache_dir: str | Path | None = None

    @property
    def tolerance(self) -> Tolerance:
        return tolerance_for(self.precision, rtol=self.rtol, atol=self.atol)


def check_parity(
    models: Sequence[ModelArg],
    runtimes: Sequence[str] | None = None,
    options: ParityOptions | None = None,
    **fields: Any,
) -> ParityReport:
    """Every model through every engine (default: every registered engine but torch-compile).
    `options`, or its fields as keywords (`precision="fp16", batch=8`). Bad input (unknown
    runtime or model, unsupported precision, no usable engine) raises a UserError before
    anything runs."""
    options = dataclasses.replace(options or ParityOptions(), **fields)
    precision = options.precision
    if precision not in DEFAULT_TOLERANCES:
        raise UserError(f"unknown precision {precision!r}; choose {', '.join(DEFAULT_TOLERANCES)}")
    explicit = runtimes is not None
    choices = choose_engines(
        list(runtimes) if runtimes is not None else DEFAULT_RUNTIMES, precision
    )
    resolved = [_resolved(m, options) for m in models]
    batches = [_batch_for(m, options.batch) for m in resolved]
    checked = [
        (m, b, preflight(choices, m, precision, b, explicit=explicit))
        for m, b in zip(resolved, batches, strict=True)
    ]
    for m, _, c in checked:
        check_comparable(m, c)
    return ParityReport([_check_one(m, c, b, options) for m, b, c in checked])


def parity_of(model: ModelArg, runtimes: Sequence[str] | None = None, **fields: Any) -> ModelResult:
    """One model through `runtimes`, each compared with the reference; options as for
    `check_parity`."""
    return check_parity([model], runtimes, **fields).models[0]


def _resolved(model: ModelArg, options: ParityOptions) -> ResolvedModel:
    if isinstance(model, ResolvedModel):
        return model
    return resolve(
        model,
        precision=options.precision,
        image_size=options.image_size,
        fold=options.fold,
        cache_dir=options.cache_dir,
    )


def _batch_for(model: ResolvedModel, batch: int | None) -> int:
    """A file that fixes its batch runs at that batch unless --batch says otherwise (then:
    exit 2)."""
    if batch is not None:
        check_batch(model, batch)
    return batch or model.fixed_batch or DEFAULT_BATCH


def _check_one(
    model: ResolvedModel, choices: list[EngineChoice], batch: int, options: ParityOptions
) -> ModelResult:
    precision, tol = options.precision, options.tolerance
    ref = reference_for(model, precision=precision, batch=batch, seed=options.seed, tolerance=tol)

    def run(choice: EngineChoice) -> tuple[np.ndarray, dict[str, Any]]:
        runner = make_runner(choice, model, precision, batch, options.threads)
        return run_once(runner, ref.inputs)

    results: list[EngineResult] = []
    engines = list(choices)
    if ref.outputs is None and ref.error is None:
        results, engines = _engine_as_reference(ref, choices, run)
    results += [_judged(choice, ref, run) for choice in engines]
    return ModelResult(
        model.name,
        str(model.path),
        precision,
        batch,
        model.image_size,
        options.seed,
        ref.name,
        tol,
        ref.structure,
        results,
        ref.error,
    )


def _engine_as_reference(
    ref: Reference, choices: list[EngineChoice], run: RunEngine
) -> tuple[list[EngineResult], list[EngineChoice]]:
    """Foreign files (or no torch): the first engine that runs is the reference; one that fails
    to run is recorded as that engine's error and the next one is tried. Returns those results
    and the engines still to judge."""
    results: list[EngineResult] = []
    remaining = list(choices)
    for choice in choices:
        if choice.cls is None:
            continue
        remaining.remove(choice)
        try:
            output, info = run(choice)
        except Exception as err:
            results.append(EngineResult(choice.runtime, "error", error_line(err)))
            continue
        ref.name, ref.outputs = choice.runtime, output
        results.append(EngineResult(choice.runtime, "pass", "reference", None, info))
        break
    if ref.outputs is None:
        ref.error = "no engine could run the model, so there is no reference"
    return results, remaining


def _judged(choice: EngineChoice, ref: Reference, run: RunEngine) -> EngineResult:
    if choice.cls is None:
        return EngineResult(choice.runtime, "skipped", choice.reason)
    if ref.outputs is None:
        return EngineResult(choice.runtime, "skipped", NO_REFERENCE)
    try:
        output, info = run(choice)
    except Exception as err:  # any engine failure is that engine's result, never a crash
        return EngineResult(choice.runtime, "error", error_line(err))
    result = ref.judge(choice.runtime, output)
    result.info = info
    return result
