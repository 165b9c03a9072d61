"""The structure check of a model in a sweep or parity run: graphgen's `structure` diff, read
from the file, with the int8 rule (Q/DQ bypassed, and the fp32 graph it came from checked too)."""

from __future__ import annotations

from pathlib import Path

from graphgen.onnx_io import load
from graphgen.structure import int8_structure_diff, structure_diff
from runtimes.models import INT8_PRECISIONS, ResolvedModel


def structure_check(path: str | Path) -> str | None:
    """None when the graph is exactly what graphgen emits for the spec in its metadata (same
    nodes, wiring and initializer names and shapes), else the first difference."""
    return structure_diff(load(path), source=str(path))


def check_structure(model: ResolvedModel, precision: str) -> str | None:
    """The structure check; an int8 graph must be, Q/DQ bypassed, the folded graph of its spec,
    and its fp32 reference (int8's, bf16's) must pass the fp32 check."""
    if precision in INT8_PRECISIONS:
        problem = int8_structure_diff(load(model.path), source=str(model.path))
    else:
        problem = structure_check(model.path)
    if problem is None and model.reference_path is not None:
        problem = structure_check(model.reference_path)
    return problem
