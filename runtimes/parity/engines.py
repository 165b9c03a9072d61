"""Which engines a parity run will use, decided before anything runs: unknown names, engines
that cannot run here or at this precision, and models too big for an engine are settled first,
so bad input fails before any engine loads."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from resnet_common.errors import UserError
from runtimes import registry
from runtimes.base import Runner, RunnerError, UnsupportedError
from runtimes.models import ResolvedModel
from runtimes.parity.reference import REFERENCE


@dataclass(frozen=True)
class EngineChoice:
    """What a parity run will do for one engine, decided before anything runs."""

    runtime: str
    cls: type[Runner] | None
    reason: str | None  # why it is skipped


def choose_engines(runtimes: Sequence[str], precision: str) -> list[EngineChoice]:
    """Every engine asked for, skipped with the reason where it cannot run at `precision`
    (as `run` skips it); only no usable engine at all is bad input."""
    choices = []
    for name in runtimes:
        reason = registry.refusal(name, precision)
        cls = None if reason is not None else registry.runner_class(name)
        choices.append(EngineChoice(name, cls, reason))
    if all(c.cls is None for c in choices):
        why = "; ".join(f"{c.runtime}: {c.reason}" for c in choices)
        raise registry.UnavailableError(f"no usable engine among those asked for ({why})")
    return choices


def make_runner(
    choice: EngineChoice, model: ResolvedModel, precision: str, batch: int, threads: int | None
) -> Runner:
    if choice.cls is None:
        raise RunnerError(f"{choice.runtime} cannot run here: {choice.reason}")
    return choice.cls(
        model.path, precision=precision, batch_sizes=(batch,), threads=threads, macs=model.macs
    )


def preflight(
    choices: list[EngineChoice],
    model: ResolvedModel,
    precision: str,
    batch: int,
    *,
    explicit: bool,
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
                make_runner(choice, model, precision, batch, None).check_size()
            except UnsupportedError as err:
                if explicit and len(choices) == 1:
                    raise
                reason = str(err)
        out.append(EngineChoice(choice.runtime, choice.cls if reason is None else None, reason))
    if all(c.cls is None for c in out):
        why = "; ".join(f"{c.runtime}: {c.reason}" for c in out)
        raise registry.UnavailableError(f"no engine can run {model.name} here ({why})")
    return out


def check_comparable(model: ResolvedModel, choices: list[EngineChoice]) -> None:
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
