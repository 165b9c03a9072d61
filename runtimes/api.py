"""The functions a notebook calls, exported from `runtimes`: check that engines agree, and time
them. They run what `bench-runtimes parity` and `bench-runtimes run` run, with the same defaults
and the same checks before anything is built (unknown names, memory, engines missing here).

    import runtimes
    report = runtimes.check_parity("resnet18", runtimes=["ort-cpu", "openvino"])
    bool(report)                    # True when every engine agrees with torch in float64
    done = runtimes.run("resnet18", runtimes=["ort-cpu"], batch=[1, 8], out="bench-results")
    done["report"]["html"]          # the report; done["records"] holds this run's results
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from resnet_common.cli import OneLineParser, precision_name

if TYPE_CHECKING:
    from runtimes.parity import ParityReport


def check_parity(
    models: str | Sequence[str],
    runtimes: str | Sequence[str] | None = None,
    *,
    size_limits: dict[str, int] | None = None,
    **options: Any,
) -> ParityReport:
    """Every model (variant names or .onnx paths) through every engine (default: all but
    torch-compile), compared with torch in float64 on the same file: what `bench-runtimes
    parity` prints. `options` are ParityOptions' fields (precision, batch, image_size, seed,
    atol, rtol). The report is truthy when every engine agrees; `.to_dict()` is `--json`'s."""
    from runtimes import footprint
    from runtimes.parity import DEFAULT_BATCH, ParityOptions
    from runtimes.parity import check_parity as check

    settings = dataclasses.replace(ParityOptions(), **options)
    settings = dataclasses.replace(settings, precision=precision_name(settings.precision))
    names = _names(models)
    footprint.check_jobs(
        names,
        batches=[settings.batch or DEFAULT_BATCH],
        precisions=[settings.precision],
        image_size=settings.image_size,
        parity=True,
        limits=footprint.limits_from(size_limits),
    )
    engines = None if runtimes is None else _names(runtimes)
    return check(names, engines, settings)


def run(
    models: str | Sequence[str] | None = None,
    runtimes: str | Sequence[str] | None = None,
    *,
    batch: int | Sequence[int] = 1,
    precision: str | Sequence[str] = "fp32",
    out: str | Path = "bench-results",
    **options: Any,
) -> dict[str, Any]:
    """A benchmark sweep, models x runtimes x batches x precisions (defaults as `bench-runtimes
    run`: resnet18 and resnet50 on every engine usable here), written to `out` with its report.
    `options` are the other flags of `bench-runtimes run` by their Python names (iterations,
    duration_s, warmup, warmup_s, threads, interleave, timing, parity, seed, resume, overwrite,
    retry_failed, machine, image_size, size_limits). Returns what `run --json` prints."""
    from rich.console import Console

    from runtimes.cli import run_cmd

    parser: argparse.ArgumentParser = OneLineParser(prog="bench-runtimes")
    args = run_cmd.register(parser.add_subparsers()).parse_args([])  # the command's defaults
    unknown = sorted(set(options) - set(vars(args)) - {"func"})
    if unknown:
        raise TypeError(f"run() got an unexpected keyword argument {unknown[0]!r}")
    given = {
        "models": None if models is None else _names(models),
        "runtimes": None if runtimes is None else _names(runtimes),
        "batch": [batch] if isinstance(batch, int) else list(batch),
        "precision": [precision_name(p) for p in _names(precision)],
        "out": Path(out),
        **options,
    }
    vars(args).update(given)
    words = ", ".join(f"{k}={v!r}" for k, v in given.items() if v is not None)
    args.command_line = [f"runtimes.run({words})"]  # the report's "how this was made"
    config, skipped = run_cmd.config_from_args(args)
    return run_cmd.sweep_and_render(args, config, skipped, Console(stderr=True))


def _names(value: str | Sequence[str]) -> list[str]:
    """One name or several, each once, in order."""
    return list(dict.fromkeys([value] if isinstance(value, str) else value))
