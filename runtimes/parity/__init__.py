"""Parity: the same seeded inputs through every engine, each compared with one reference.

The reference is torch in float64 on the same file (`reference`); a structure check re-emits
the graph from the spec in its metadata (`structure`); each engine's outputs are judged on
relative measures with the precision's tolerance (`judge`); which engines run is settled before
any loads (`engines`); `check` runs it all. Results are truthy on pass (`results`).

One path: `bench-runtimes parity` (`check_parity`) and the sweep's per-record parity both build
a `Reference` and `judge` each engine against it.
"""

from runtimes.parity.check import (
    DEFAULT_BATCH,
    DEFAULT_RUNTIMES,
    ParityOptions,
    check_parity,
    parity_of,
)
from runtimes.parity.judge import (
    DEFAULT_TOLERANCES,
    Comparison,
    Metrics,
    Tolerance,
    compare,
    decisive,
    tolerance_for,
)
from runtimes.parity.reference import REFERENCE, REFERENCE_PRECISION, Reference, reference_for
from runtimes.parity.results import EngineResult, ModelResult, ParityReport
from runtimes.parity.structure import structure_check

__all__ = [
    "DEFAULT_BATCH",
    "DEFAULT_RUNTIMES",
    "DEFAULT_TOLERANCES",
    "REFERENCE",
    "REFERENCE_PRECISION",
    "Comparison",
    "EngineResult",
    "Metrics",
    "ModelResult",
    "ParityOptions",
    "ParityReport",
    "Reference",
    "Tolerance",
    "check_parity",
    "compare",
    "decisive",
    "parity_of",
    "reference_for",
    "structure_check",
    "tolerance_for",
]
