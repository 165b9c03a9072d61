"""How much memory a job needs, estimated from the plan before anything is built or loaded.

`bench-runtimes run --batch 100000000` would otherwise build the graph, draw a petabyte of
inputs and die of MemoryError (or swap for an hour). The estimate walks the plan (graphgen's
one IR; for a file graphgen did not make, its initializers and input): the weights once per
engine copy, and per image the float32 input plus two of the largest activation alive at once,
in the engine's precision and, with parity, again in the float64 reference's. It is a rough
lower bound, good to an order of magnitude, which is what catching a typo needs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from graphgen.plan import Plan, expand
from resnet_common.errors import UserError
from resnet_common.limits import SizeLimits, check_memory

ENGINE_BYTES = {"fp32": 4, "fp16": 2}  # bytes per value the engine computes in
INPUT_BYTES = 4  # inputs are float32 at every precision
REFERENCE_BYTES = 8  # parity's reference is torch in float64
LIVE_ACTIVATIONS = 2  # a layer's input and output are alive together


def limit_hint(key: str) -> str:
    return f"--size-limit {key}=N"


@dataclass(frozen=True)
class Footprint:
    """Values (not bytes) of one model: its weights, and per image its input and its largest
    activation."""

    weights: int
    input: int
    largest: int

    def bytes_needed(self, *, batch: int, precision: str, parity: bool) -> int:
        engine = ENGINE_BYTES.get(precision, 4)
        per_value = max(engine, REFERENCE_BYTES) if parity else engine
        weights = self.weights * (engine + (REFERENCE_BYTES if parity else 0))
        per_image = self.input * INPUT_BYTES + LIVE_ACTIVATIONS * self.largest * per_value
        return weights + batch * per_image


def footprint(name: str, *, image_size: int | None) -> Footprint | None:
    """The footprint of a model argument (a standard variant or an .onnx path), or None when
    it cannot be told cheaply (resolving the model then says what is wrong with it)."""
    from graphgen.spec import STANDARD_VARIANTS, variant

    try:
        if name in STANDARD_VARIANTS:
            spec = variant(name)
            if image_size is not None and image_size != spec.image_size:
                spec = spec.replace(image_size=image_size, name=spec.name)
            return _of_plan(expand(spec))
        return _of_file(Path(name), image_size)
    except (UserError, OSError, ValueError):
        return None


def _of_plan(plan: Plan) -> Footprint:
    largest = max(math.prod(op.shape) for op in plan.ops)
    weights = sum(math.prod(s) for s in plan.tensor_shapes().values())
    return Footprint(
        weights, math.prod(plan.input_shape), max(largest, math.prod(plan.input_shape))
    )


def _of_file(path: Path, image_size: int | None) -> Footprint | None:
    from graphgen.onnx_io import load, metadata, plan_of

    model = load(path, load_weights=False)
    if "graphgen.spec" in metadata(model):
        return _of_plan(plan_of(model, source=str(path)))
    weights = sum(math.prod(t.dims) for t in model.graph.initializer)
    names = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in names]
    if not inputs:
        return None
    dims = [
        d.dim_value if d.HasField("dim_value") else 0 for d in inputs[0].type.tensor_type.shape.dim
    ]
    if len(dims) != 4:
        return None
    size = image_size or dims[2] or dims[3]
    values = (dims[1] or 3) * size * size
    return Footprint(weights, values, values)  # the largest activation is at least the input


def check_jobs(
    models: Iterable[str],
    *,
    batches: Iterable[int],
    precisions: Iterable[str],
    image_size: int | None,
    parity: bool,
    limits: SizeLimits,
) -> None:
    """Refuse (TooLargeError, one line) a job whose estimated memory exceeds the machine's."""
    batch = max(batches)
    for name in models:
        fp = footprint(name, image_size=image_size)
        if fp is None:
            continue
        for precision in precisions:
            needed = fp.bytes_needed(batch=batch, precision=precision, parity=parity)
            reference = ", with the float64 parity reference" if parity else ""
            size = f" at {image_size}x{image_size} px" if image_size else ""
            check_memory(
                needed,
                what=f"{name}{size} at batch {batch:,} ({precision}{reference})",
                limits=limits,
                hint=limit_hint,
            )


def limits_from(changes: dict[str, int] | None) -> SizeLimits:
    """`--size-limit` for bench-runtimes: only `memory` means anything to a benchmark (the
    network's own limits are graphgen's and resnet-train's)."""
    changes = changes or {}
    other = sorted(set(changes) - {"memory"})
    if other:
        raise UserError(
            f"bench-runtimes checks only the memory limit, not {other[0]!r}: pass memory=BYTES"
        )
    return SizeLimits().raised(changes)
