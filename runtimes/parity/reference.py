"""The reference every engine is judged against: torch in float64 on the same file.

Its own rounding (~1e-15) is negligible, so each engine's numbers are that engine's error alone.
The torch module is rebuilt from the spec in the file's metadata, not from the graph. An int8
graph approximates the fp32 graph it was quantized from, so that graph is its reference; a bf16
graph's reference is the fp32 graph of the same weights when it is known (the rounding of the
weights to bfloat16 is then part of the error judged, as a user who leaves fp32 pays it).
`bench-runtimes parity` and the sweep's per-record parity build the very same `Reference`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from runtimes import registry
from runtimes.base import Runner, error_line
from runtimes.inputs import DEFAULT_SEED, feeds
from runtimes.models import INT8_PRECISIONS, ResolvedModel
from runtimes.parity.judge import DEFAULT_TOLERANCES, Tolerance, compare
from runtimes.parity.results import EngineResult
from runtimes.parity.structure import check_structure

REFERENCE = "torch"
REFERENCE_PRECISION = "fp64"
NO_REFERENCE = "not run: no reference to compare with"


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
            return EngineResult(runtime, "skipped", NO_REFERENCE)
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
        check_structure(model, precision) if model.is_graphgen else None,
    )
    if not model.is_graphgen or registry.availability(REFERENCE) is not None:
        return ref
    path = model.path
    ref.name = f"{REFERENCE} ({REFERENCE_PRECISION})"
    if model.reference_path is not None:
        # int8 approximates the fp32 graph it was quantized from, bf16 the fp32 graph it was
        # rounded from: that graph is the reference.
        ref.name = f"{REFERENCE} ({REFERENCE_PRECISION}) on the fp32 graph"
        path = model.reference_path
    elif precision in INT8_PRECISIONS:
        ref.error = (
            f"no fp32 graph to compare {model.path.name} with: keep the file it was "
            "quantized from beside it (its name and digest are in graphgen.quant.source)"
        )
        return ref
    try:
        runner = registry.create(REFERENCE, path, precision=REFERENCE_PRECISION)
        ref.outputs, _ = run_once(runner, inputs)
    except Exception as err:  # no traceback: the comparison cannot be made, say why
        ref.error = f"the reference {ref.name} failed: {error_line(err)}"
    return ref


def run_once(runner: Runner, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, Any]]:
    """Load, infer once, describe, release: the output and what ran (with its load time)."""
    with runner:
        outputs = runner.infer(inputs)
        info = runner.describe()
    info["load_time_s"] = runner.load_time_s
    return next(iter(outputs.values())), info
