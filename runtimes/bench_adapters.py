"""The sweep's thin seam onto the runtimes package: registry, models, inputs, parity.

The sweep calls only these functions, so the benchmarking code does not depend on the exact
shapes of `runtimes.registry`, `runtimes.models`, `runtimes.inputs` and `runtimes.parity`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from resnet_common.errors import UserError
from runtimes.base import PRECISIONS, Runner, UnsupportedError

DEFAULT_MODELS = ("resnet18", "resnet50")
# Left out of the no-argument sweep (asked for by name they run): compiling takes minutes here.
NOT_BY_DEFAULT = {
    "torch-compile": "not in the default sweep (inductor compiles for minutes on CPU); "
    "ask for it with --runtimes torch-compile",
}


@dataclass(frozen=True)
class Model:
    """A built graph ready for the runners, with what the report needs about it."""

    name: str
    path: Path
    precision: str
    image_size: int
    depth: int | None
    macs: int | None  # per image, from graphgen's cost model
    params: int | None
    input_name: str = "input"
    graphgen: bool = True


# -- registry -----------------------------------------------------------------------------------
def known_runtimes() -> list[str]:
    from runtimes import registry

    return list(registry.names())


def runner_class(name: str) -> type[Runner]:
    from runtimes import registry

    return registry.runner_class(name)


def availability(name: str) -> str | None:
    from runtimes import registry

    return registry.availability(name)


def check_runtimes(names: list[str]) -> None:
    known = known_runtimes()
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UserError(f"unknown runtime {unknown[0]!r}; known runtimes: {', '.join(known)}")


def check_precisions(names: list[str]) -> None:
    bad = [p for p in names if p not in PRECISIONS]
    if bad:
        raise UserError(f"unknown precision {bad[0]!r}; choose from {', '.join(PRECISIONS)}")


def usable_runtimes(*, exclude: tuple[str, ...] = ()) -> tuple[list[str], dict[str, str]]:
    """(engines usable here, {engine: why not}) over every registered engine."""
    usable, skipped = [], {}
    for name in known_runtimes():
        if name in exclude:
            continue
        why = availability(name) or NOT_BY_DEFAULT.get(name)
        if why is None:
            usable.append(name)
        else:
            skipped[name] = why
    return usable, skipped


def skip_reason(runtime: str, precision: str, model: Model) -> str | None:
    """Why a job cannot run here (known before trying), or None."""
    why = availability(runtime)
    if why is not None:
        return why
    cls = runner_class(runtime)
    if precision not in cls.precisions:
        return f"{runtime} does not support {precision} (it runs {', '.join(cls.precisions)})"
    if getattr(cls, "needs_graphgen", False) and not model.graphgen:
        return f"{runtime} rebuilds networks from graphgen metadata; {model.path} has none"
    return None


def size_reason(runner: Runner) -> str | None:
    """Engines that refuse big models (onnx-ref) say so before loading: a skip, not a failure."""
    check = getattr(runner, "check_size", None)
    if check is None:
        return None
    try:
        check()
    except UnsupportedError as err:
        return str(err).splitlines()[0]
    return None


def make_runner(
    runtime: str,
    model: Model,
    *,
    precision: str,
    batch: int,
    threads: int | None,
    timing: str,
    batches: list[int] | tuple[int, ...] = (),
) -> Runner:
    """A runner for one job. GPU runners get every batch of the sweep (`batches`) as their
    optimization profile, so one cached TensorRT engine serves all of them instead of one build
    per batch; a graph with a fixed batch admits only its own."""
    cls = runner_class(runtime)
    options: dict[str, Any] = {}
    batch_sizes: tuple[int, ...] = (batch,)
    if cls.device != "cpu":
        options["timing"] = timing
        if model.fixed_batch is None:
            batch_sizes = tuple(sorted({batch, *batches}))
    if runtime == "onnx-ref":
        options["macs"] = model.macs
    return cls(model.path, precision=precision, batch_sizes=batch_sizes, threads=threads, **options)


# -- models -------------------------------------------------------------------------------------
def check_models(
    names: list[str],
    *,
    precisions: list[str] | None = None,
    batches: list[int] | None = None,
    image_size: int | None = None,
) -> None:
    """Bad model arguments are bad input (exit 2) before anything runs: unknown names, missing
    files, and files that cannot run as asked (another precision or size, a fixed batch)."""
    from graphgen.spec import STANDARD_VARIANTS
    from runtimes import models

    for name in names:
        if name.endswith(".onnx"):
            if not Path(name).is_file():
                raise UserError(f"no such model file: {name}")
            for precision in precisions or ["fp32"]:
                resolved = models.resolve(name, precision=precision, image_size=image_size)
                for batch in batches or []:
                    models.check_batch(resolved, batch)
        elif name not in STANDARD_VARIANTS:
            raise UserError(
                f"unknown model {name!r}; use a standard variant "
                f"({', '.join(STANDARD_VARIANTS)}) or a path to an .onnx file"
            )


def resolve_model(
    name: str, *, precision: str, image_size: int | None, cache: Path | None
) -> Model:
    """A standard variant (built once into the model cache) or an .onnx path, with its cost."""
    from runtimes import models

    resolved = models.resolve(name, precision=precision, image_size=image_size, cache_dir=cache)
    plan = resolved.plan
    return Model(
        name=name,
        path=resolved.path,
        precision=precision,
        image_size=resolved.image_size,
        depth=plan.spec.depth if plan is not None else None,
        macs=resolved.macs,
        params=plan.params if plan is not None else None,
        input_name=resolved.input_name,
        graphgen=resolved.is_graphgen,
    )


# -- inputs and parity --------------------------------------------------------------------------
def make_inputs(model: Model, batch: int, *, seed: int) -> dict[str, np.ndarray]:
    """Seeded inputs, the same for every engine (runtimes.inputs documents the distribution)."""
    from runtimes import inputs

    return inputs.feeds(model.input_name, batch, model.image_size, seed=seed)


def reference_outputs(model: Model, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray] | None:
    """The reference engine's outputs (torch float64 by default); None when it cannot run."""
    from runtimes import parity

    return parity.reference_outputs(model.path, feeds)


def parity_metrics(
    outputs: dict[str, np.ndarray], reference: dict[str, np.ndarray], precision: str
) -> dict[str, Any]:
    from runtimes import parity

    result = parity.compare(outputs, reference, precision=precision).to_dict()
    return {"reference": f"{parity.REFERENCE} ({parity.REFERENCE_PRECISION})", **result}
