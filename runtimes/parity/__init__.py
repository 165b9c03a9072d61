"""Parity: the same seeded inputs through every engine, each compared with one reference.

The reference is torch in float64 on the same file (`REFERENCE`): its own rounding (~1e-15) is
negligible, so each engine's numbers are that engine's error alone. The torch module is rebuilt
from the spec in the file's metadata, not from the graph, and a structure check re-emits the
graph from that spec, so a graph whose structure no longer matches its spec fails (Polygraphy's
comparator, with a structural check it lacks). Results are truthy on pass.

Judgement is on relative measures, since absolute differences scale with the logits. An engine
passes when its outputs are finite and, with `rtol` and `atol` for the precision:

- relative L2 error ||y - r|| / ||r|| <= rtol
- max |y - r| <= atol + rtol * max |r| (element-wise, against the logits' scale)

Cosine similarity, top-1/top-5 agreement and max relative difference are reported, not judged:
cosine >= 1 - rtol follows from relative L2 <= rtol (1 - cos <= rel_l2**2 / 2), so it could never
fail alone, and with random weights near-tied logits can swap places inside any sane tolerance.

One path: `bench-runtimes parity` (`check_parity`) and the sweep's per-record parity both build
a `Reference` (structure check plus the reference's outputs) and `judge` each engine against it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from graphgen.onnx_emit import DEFAULT_OPSET, emit_model
from graphgen.onnx_io import load, metadata, opset_of, plan_of, weights_of
from graphgen.spec import Spec
from resnet_common.errors import UserError
from runtimes import registry
from runtimes.base import Runner, RunnerError, UnsupportedError
from runtimes.inputs import DEFAULT_SEED, DISTRIBUTION, feeds
from runtimes.models import ResolvedModel, check_batch, resolve

REFERENCE = "torch"
REFERENCE_PRECISION = "fp64"


@dataclass(frozen=True)
class Tolerance:
    rtol: float
    atol: float
    # int8: the fraction of decisive samples (see `decisive`) whose top-1 must agree; None
    # judges no top-1, and the max-abs bound applies only where this is None (int8 error is
    # not element-wise small, its aggregate is).
    min_top1: float | None = None


# fp32: measured 2e-7 (CIFAR ResNet-20) to 4e-6 (ResNet-50 at 64x64) relative L2 for
# onnxruntime, OpenVINO, onnx-ref and torch fp32 against torch fp64 (the issue measured 4e-7 to
# 8e-7 on torchvision ResNet-18..152); 1e-4 leaves 25x headroom for other thread counts and
# kernels and still catches any real bug (a wrong op is >1e-2). Polygraphy's element-wise 1e-5
# is too tight for deep fp32 stacks (NVIDIA/TensorRT#1565, #2895).
# fp16: measured 5e-4 (ResNet-20) to 6e-3 (ResNet-50) relative L2: fp16's unit roundoff is 4.9e-4
# and error grows with depth; NVIDIA staff expect ~1e-3 element-wise (#2709: max diff 0.01 "looks
# good for FP16"); 2e-2 allows for ResNet-152 depth.
# int8, against the fp32 graph it was quantized from (torch fp64 on that graph): measured on a
# ResNet-8 trained with resnet-train (synthetic data, 32x32, 2000 held-out images) 0.011-0.017
# relative L2 and 99.2-99.4% top-1 agreement; on random He-initialised nets 0.024 (ResNet-20) to
# 0.12 (ResNet-50 at 64x64) relative L2, where top-1 agreement is 62-100% because random nets'
# top logits are near ties. 0.2 bounds both; top-1 is judged on decisive samples only, which
# random nets rarely have. docs/int8.md has the numbers and commands.
INT8_DECISIVE_GAP = 0.1  # a sample is decisive when its top-2 logit gap >= 10% of its range
DEFAULT_TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(rtol=1e-4, atol=1e-5),
    "fp16": Tolerance(rtol=2e-2, atol=1e-3),
    "int8": Tolerance(rtol=0.2, atol=0.0, min_top1=0.95),
}


def tolerance_for(
    precision: str, *, rtol: float | None = None, atol: float | None = None
) -> Tolerance:
    base = DEFAULT_TOLERANCES[precision]
    return Tolerance(
        rtol=base.rtol if rtol is None else rtol,
        atol=base.atol if atol is None else atol,
        min_top1=base.min_top1,
    )


@dataclass(frozen=True)
class Metrics:
    max_abs: float
    max_rel: float
    rel_l2: float
    cosine: float
    top1: float  # fraction of samples whose argmax agrees
    top5: float  # fraction of samples whose top-5 sets agree
    finite: bool
    decisive: int = 0  # samples whose reference top-1 is clear (`decisive`)
    decisive_top1: float | None = None  # top-1 agreement on those (None when there are none)


@dataclass(frozen=True)
class Comparison:
    """One output against the reference; truthy when it passes."""

    metrics: Metrics
    tolerance: Tolerance
    failures: tuple[str, ...]

    def __bool__(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self.metrics),
            "passed": bool(self),
            "rtol": self.tolerance.rtol,
            "atol": self.tolerance.atol,
            "min_top1": self.tolerance.min_top1,
            "failures": list(self.failures),
        }


def _topk(x: np.ndarray, k: int) -> np.ndarray:
    k = min(k, x.shape[-1])
    return np.sort(np.argsort(-x, axis=-1, kind="stable")[..., :k], axis=-1)


def decisive(reference: np.ndarray, gap: float = INT8_DECISIVE_GAP) -> np.ndarray:
    """Samples whose reference top-1 beats its top-2 by at least `gap` of the sample's logit
    range: where a change of class means an error, not a near tie swapping places."""
    top2 = np.sort(reference, axis=-1)[..., -2:]
    spread = reference.max(-1) - reference.min(-1)
    mask: np.ndarray = (top2[..., 1] - top2[..., 0]) >= gap * np.maximum(spread, 1e-30)
    return mask


def _single(outputs: np.ndarray | dict[str, np.ndarray]) -> np.ndarray:
    if isinstance(outputs, np.ndarray):
        return outputs
    if len(outputs) != 1:
        raise ValueError(f"parity compares one output (logits), got {sorted(outputs)}")
    return next(iter(outputs.values()))


def compare(
    output: np.ndarray | dict[str, np.ndarray],
    reference: np.ndarray | dict[str, np.ndarray],
    tolerance: Tolerance | None = None,
    *,
    precision: str = "fp32",
) -> Comparison:
    """Metrics of `output` against `reference` ([N, K] logits, or single-output dicts as
    `Runner.infer` returns them), judged by `tolerance` (default: the precision's)."""
    tolerance = tolerance or DEFAULT_TOLERANCES[precision]
    output, reference = _single(output), _single(reference)
    if output.shape != reference.shape:
        nan = float("nan")
        metrics = Metrics(nan, nan, nan, nan, 0.0, 0.0, bool(np.isfinite(output).all()))
        return Comparison(metrics, tolerance, (f"shape {output.shape} != {reference.shape}",))
    y = output.astype(np.float64)
    r = reference.astype(np.float64)
    finite = bool(np.isfinite(y).all() and np.isfinite(r).all())
    diff = np.abs(y - r)
    eps = np.finfo(np.float64).tiny
    norm_r = float(np.linalg.norm(r))
    clear = decisive(r)
    agree = y.argmax(-1) == r.argmax(-1)
    metrics = Metrics(
        max_abs=float(diff.max()),
        max_rel=float((diff / np.maximum(np.abs(r), eps)).max()),
        rel_l2=float(np.linalg.norm(y - r) / max(norm_r, eps)),
        cosine=float((y * r).sum() / max(float(np.linalg.norm(y)) * norm_r, eps)),
        top1=float((y.argmax(-1) == r.argmax(-1)).mean()),
        top5=float((_topk(y, 5) == _topk(r, 5)).all(-1).mean()),
        finite=finite,
        decisive=int(clear.sum()),
        decisive_top1=float(agree[clear].mean()) if clear.any() else None,
    )
    failures = []
    if not finite:
        failures.append("NaN or Inf in the output")
    else:
        bound = tolerance.atol + tolerance.rtol * float(np.abs(r).max())
        if not metrics.rel_l2 <= tolerance.rtol:
            failures.append(f"relative L2 {metrics.rel_l2:.2e} > {tolerance.rtol:.0e}")
        if tolerance.min_top1 is None and not metrics.max_abs <= bound:
            failures.append(f"max abs {metrics.max_abs:.2e} > {bound:.2e}")
        top1 = metrics.decisive_top1
        if tolerance.min_top1 is not None and top1 is not None and top1 < tolerance.min_top1:
            failures.append(
                f"top-1 agreement {top1:.1%} on {metrics.decisive} decisive samples "
                f"< {tolerance.min_top1:.0%}"
            )
    return Comparison(metrics, tolerance, tuple(failures))


@dataclass
class EngineResult:
    """One engine on one model: status pass, fail, error (it could not run) or skipped."""

    runtime: str
    status: str
    reason: str | None = None
    comparison: Comparison | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return self.status in ("pass", "skipped")

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"runtime": self.runtime, "status": self.status}
        data["reason"] = self.reason
        if self.comparison is not None:
            data["metrics"] = asdict(self.comparison.metrics)
            data["failures"] = list(self.comparison.failures)
        data["info"] = self.info
        return data


@dataclass
class ModelResult:
    model: str
    path: str
    precision: str
    batch: int
    image_size: int
    seed: int
    reference: str
    tolerance: Tolerance
    structure: str | None  # None when the structure matches (or cannot be checked), else why
    results: list[EngineResult]
    reference_error: str | None = None  # the reference could not run: nothing was compared

    def __bool__(self) -> bool:
        return self.reference_error is None and self.structure is None and all(self.results)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "path": self.path,
            "precision": self.precision,
            "batch": self.batch,
            "image_size": self.image_size,
            "seed": self.seed,
            "inputs": DISTRIBUTION,
            "reference": self.reference,
            "tolerance": asdict(self.tolerance),
            "structure": self.structure or "ok",
            "reference_error": self.reference_error,
            "passed": bool(self),
            "results": [r.to_dict() for r in self.results],
        }


@dataclass
class ParityReport:
    models: list[ModelResult]

    def __bool__(self) -> bool:
        return all(self.models)

    def to_dict(self) -> dict[str, Any]:
        return {"passed": bool(self), "models": [m.to_dict() for m in self.models]}


def structure_check(path: str | Path) -> str | None:
    """None when the graph is exactly what graphgen emits for the spec in its metadata (same
    nodes, wiring and initializer names and shapes), else the first difference."""
    model = load(path)
    plan = plan_of(model, source=str(path))
    weights = weights_of(model)
    io_type = model.graph.input[0].type.tensor_type.elem_type
    try:
        expected = emit_model(
            plan,
            weights,
            dtype=metadata(model).get("graphgen.dtype", "float32"),
            io_dtype=onnx.helper.tensor_dtype_to_np_dtype(io_type).name,
            opset=opset_of(model) or DEFAULT_OPSET,
        )
    except KeyError as err:
        return f"initializer {err.args[0]} is missing from the graph"
    want = {t.name: list(t.dims) for t in expected.graph.initializer}
    have = {t.name: list(t.dims) for t in model.graph.initializer}
    if want != have:
        name = sorted(set(want) ^ set(have)) or [k for k in want if want[k] != have[k]]
        return f"initializers differ from the spec's at {name[0]}"
    for index, (a, b) in enumerate(zip(expected.graph.node, model.graph.node, strict=False)):
        if a != b:
            return (
                f"node {index} ({a.name}) differs from the spec's: expected {a.op_type}"
                f"({', '.join(a.input)}), found {b.op_type}({', '.join(b.input)}) named {b.name}"
            )
    if len(expected.graph.node) != len(model.graph.node):
        return f"{len(model.graph.node)} nodes where the spec gives {len(expected.graph.node)}"
    return None


def _structure(model: ResolvedModel, precision: str) -> str | None:
    """The structure check; an int8 graph must be, Q/DQ bypassed, the folded graph of its spec,
    and its fp32 reference must pass the fp32 check."""
    if precision != "int8":
        return structure_check(model.path)
    from graphgen.quantize import check_int8_structure

    problem = check_int8_structure(load(model.path), source=str(model.path))
    if problem is None and model.reference_path is not None:
        problem = structure_check(model.reference_path)
    return problem


@dataclass
class Reference:
    """What every engine is judged against for one model at one precision, batch and seed:
    the seeded inputs, the structure check, and the reference's outputs (None with `error`
    when it could not run, or when there is none: foreign files pick an engine instead)."""

    model: ResolvedModel
    precision: str
    batch: int
    seed: int
    tolerance: Tolerance
    inputs: dict[str, np.ndarray]
    structure: str | None
    name: str = "none"
    outputs: np.ndarray | None = None
    error: str | None = None

    def judge(self, runtime: str, output: np.ndarray | dict[str, np.ndarray]) -> EngineResult:
        """One engine's outputs on `inputs`, against the reference (and the structure check)."""
        if self.outputs is None:
            return EngineResult(runtime, "skipped", "not run: no reference to compare with")
        comparison = compare(output, self.outputs, self.tolerance)
        failures = list(comparison.failures)
        if self.structure is not None:
            failures.append(f"structure: {self.structure}")
        status = "pass" if not failures else "fail"
        return EngineResult(runtime, status, "; ".join(failures) or None, comparison)

    def record(self, result: EngineResult) -> dict[str, Any]:
        """The `parity` object of a sweep record (docs/report-schema.md)."""
        if result.comparison is None:
            return {"reference": self.name, "error": result.reason}
        data = result.comparison.to_dict()
        data.update(
            reference=self.name,
            structure=self.structure or "ok",
            passed=result.status == "pass",
            failures=[] if result.reason is None else result.reason.split("; "),
        )
        return data


def reference_for(
    model: ResolvedModel,
    *,
    precision: str,
    batch: int,
    seed: int = DEFAULT_SEED,
    tolerance: Tolerance | None = None,
) -> Reference:
    """The inputs, structure check and torch float64 outputs for a graphgen file. Without torch,
    or for a file graphgen did not make, `outputs` stays None (name "none")."""
    inputs = feeds(model.input_name, batch, model.image_size, seed=seed)
    ref = Reference(
        model,
        precision,
        batch,
        seed,
        tolerance or DEFAULT_TOLERANCES[precision],
        inputs,
        _structure(model, precision) if model.is_graphgen else None,
    )
    if not model.is_graphgen or registry.availability(REFERENCE) is not None:
        return ref
    path = model.path
    ref.name = f"{REFERENCE} ({REFERENCE_PRECISION})"
    if precision == "int8":
        # int8 approximates the fp32 graph it was quantized from: that graph is the reference.
        ref.name = f"{REFERENCE} ({REFERENCE_PRECISION}) on the fp32 graph"
        if model.reference_path is None:
            ref.error = (
                f"no fp32 graph to compare {model.path.name} with: keep the file it was "
                "quantized from beside it (its name and digest are in graphgen.quant.source)"
            )
            return ref
        path = model.reference_path
    try:
        runner = registry.create(REFERENCE, path, precision=REFERENCE_PRECISION)
        ref.outputs, _ = _run(runner, inputs)
    except Exception as err:  # no traceback: the comparison cannot be made, say why
        ref.error = f"the reference {ref.name} failed: {_reason(err)}"
    return ref


@dataclass(frozen=True)
class EngineChoice:
    """What a parity run will do for one engine, decided before anything runs."""

    runtime: str
    cls: type[Runner] | None
    reason: str | None  # why it is skipped


def _choose_engines(runtimes: Sequence[str], precision: str) -> list[EngineChoice]:
    choices = []
    for name in runtimes:
        # Skipped with the reason, as `run` skips it; only no engine at all is bad input.
        reason = registry.refusal(name, precision)
        cls = None if reason is not None else registry.runner_class(name)
        choices.append(EngineChoice(name, cls, reason))
    if all(c.cls is None for c in choices):
        why = "; ".join(f"{c.runtime}: {c.reason}" for c in choices)
        raise registry.UnavailableError(f"no usable engine among those asked for ({why})")
    return choices


def _make(
    choice: EngineChoice, model: ResolvedModel, precision: str, batch: int, threads: int | None
) -> Runner:
    if choice.cls is None:
        raise RunnerError(f"{choice.runtime} cannot run here: {choice.reason}")
    return choice.cls(
        model.path, precision=precision, batch_sizes=(batch,), threads=threads, macs=model.macs
    )


def _preflight(
    choices: list[EngineChoice], model: ResolvedModel, precision: str, batch: int, explicit: bool
) -> list[EngineChoice]:
    """Skip what cannot run this model; an explicit request for it is bad input."""
    out = []
    for choice in choices:
        reason = choice.reason
        if choice.cls is not None:
            # A file the engine cannot rebuild is skipped even when asked for by name: the
            # other engines still run it; only when none is left is it bad input (exit 2).
            reason = registry.refusal(choice.runtime, precision, model)
        if choice.cls is not None and reason is None:
            try:
                _make(choice, model, precision, batch, None).check_size()
            except UnsupportedError as err:
                if explicit and len(choices) == 1:
                    raise
                reason = str(err)
        out.append(EngineChoice(choice.runtime, choice.cls if reason is None else None, reason))
    if all(c.cls is None for c in out):
        why = "; ".join(f"{c.runtime}: {c.reason}" for c in out)
        raise registry.UnavailableError(f"no engine can run {model.name} here ({why})")
    return out


def _reason(err: BaseException) -> str:
    """One line: the engine's own message (ours are already one line), with the exception's
    type for anything that is not a RunnerError or UserError."""
    lines = str(err).strip().splitlines()
    first = lines[0] if lines else ""
    if isinstance(err, (RunnerError, UserError)) and first:
        return first
    return f"{type(err).__name__}: {first}" if first else type(err).__name__


def _run(runner: Runner, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, Any]]:
    with runner:
        outputs = runner.infer(inputs)
        info = runner.describe()
    info["load_time_s"] = runner.load_time_s
    return next(iter(outputs.values())), info


def parity_of(
    model: str | Path | Spec | ResolvedModel,
    runtimes: Sequence[str] | None = None,
    **options: Any,
) -> ModelResult:
    """One model through `runtimes` (default: every registered engine but torch-compile),
    each compared with the reference; options as for `check_parity`."""
    return check_parity([model], runtimes, **options).models[0]


DEFAULT_BATCH = 2
DEFAULT_RUNTIMES = ("ort-cpu", "ort-cuda", "ort-trt", "trt", "torch", "openvino", "onnx-ref")


def check_parity(
    models: Sequence[str | Path | Spec | ResolvedModel],
    runtimes: Sequence[str] | None = None,
    *,
    batch: int | None = None,
    image_size: int | None = None,
    precision: str = "fp32",
    fold: bool = False,
    seed: int = DEFAULT_SEED,
    atol: float | None = None,
    rtol: float | None = None,
    threads: int | None = None,
    cache_dir: str | Path | None = None,
) -> ParityReport:
    """Every model through every engine. Bad input (unknown runtime or model, unsupported
    precision, no usable engine) raises a UserError before anything runs."""
    if precision not in DEFAULT_TOLERANCES:
        raise UserError(f"unknown precision {precision!r}; choose {', '.join(DEFAULT_TOLERANCES)}")
    explicit = runtimes is not None
    choices = _choose_engines(
        list(runtimes) if runtimes is not None else DEFAULT_RUNTIMES, precision
    )
    tol = tolerance_for(precision, rtol=rtol, atol=atol)
    resolved = [
        m
        if isinstance(m, ResolvedModel)
        else resolve(m, precision=precision, image_size=image_size, fold=fold, cache_dir=cache_dir)
        for m in models
    ]
    # A file that fixes its batch runs at that batch unless --batch says otherwise (then: exit 2).
    batches = []
    for m in resolved:
        if batch is not None:
            check_batch(m, batch)
        batches.append(batch or m.fixed_batch or DEFAULT_BATCH)
    checked = [
        (m, b, _preflight(choices, m, precision, b, explicit))
        for m, b in zip(resolved, batches, strict=True)
    ]
    for m, _, c in checked:
        _check_comparable(m, c)
    return ParityReport([_check_one(m, c, precision, b, seed, tol, threads) for m, b, c in checked])


def _check_comparable(model: ResolvedModel, choices: list[EngineChoice]) -> None:
    """Without the torch reference (a file graphgen did not make, or no torch here) the first
    engine that runs becomes the reference, so one engine alone would compare nothing and pass."""
    if model.is_graphgen and registry.availability(REFERENCE) is None:
        return
    usable = [c.runtime for c in choices if c.cls is not None]
    if len(usable) >= 2:
        return
    why = "it was not made by graphgen" if not model.is_graphgen else f"{REFERENCE} is not usable"
    raise UserError(
        f"parity of {model.name} needs two engines to compare: there is no {REFERENCE} "
        f"reference ({why}) and only {usable[0]} can run it here; pass --runtimes with at least "
        "two engines, e.g. ort-cpu,openvino"
    )


def _check_one(
    model: ResolvedModel,
    choices: list[EngineChoice],
    precision: str,
    batch: int,
    seed: int,
    tol: Tolerance,
    threads: int | None,
) -> ModelResult:
    ref = reference_for(model, precision=precision, batch=batch, seed=seed, tolerance=tol)
    results: list[EngineResult] = []
    engines = list(choices)
    if ref.outputs is None and ref.error is None:
        # Foreign files (or no torch): the first engine that runs is the reference; one that
        # fails to run is recorded as that engine's error and the next one is tried.
        for choice in choices:
            if choice.cls is None:
                continue
            engines.remove(choice)
            try:
                output, info = _run(_make(choice, model, precision, batch, threads), ref.inputs)
            except Exception as err:
                results.append(EngineResult(choice.runtime, "error", _reason(err)))
                continue
            ref.name, ref.outputs = choice.runtime, output
            results.append(EngineResult(choice.runtime, "pass", "reference", None, info))
            break
        if ref.outputs is None:
            ref.error = "no engine could run the model, so there is no reference"
    for choice in engines:
        if choice.cls is None:
            results.append(EngineResult(choice.runtime, "skipped", choice.reason))
            continue
        if ref.outputs is None:
            results.append(
                EngineResult(choice.runtime, "skipped", "not run: no reference to compare with")
            )
            continue
        try:
            output, info = _run(_make(choice, model, precision, batch, threads), ref.inputs)
        except Exception as err:  # any engine failure is that engine's result, never a crash
            results.append(EngineResult(choice.runtime, "error", _reason(err)))
            continue
        result = ref.judge(choice.runtime, output)
        result.info = info
        results.append(result)
    return ModelResult(
        model.name,
        str(model.path),
        precision,
        batch,
        model.image_size,
        seed,
        ref.name,
        tol,
        ref.structure,
        results,
        ref.error,
    )
