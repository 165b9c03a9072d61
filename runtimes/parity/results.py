"""What a parity run returns: per engine, per model, and the whole report (truthy on pass)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from runtimes.inputs import DISTRIBUTION
from runtimes.parity.judge import Comparison, Tolerance


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
