"""`bench-runtimes parity`: the same seeded inputs through each engine, compared with torch in
float64; exit 1 when any engine disagrees beyond its precision's tolerance (made for CI)."""

from __future__ import annotations

import argparse
import math

from resnet_common.cli import (
    EXIT_CHECK_FAILED,
    EXIT_OK,
    Subparsers,
    add_json_flag,
    csv_list,
    positive_int,
    precision_name,
    print_json,
    seed_int,
)
from runtimes.cli.run_cmd import add_size_limit
from runtimes.parity import DEFAULT_TOLERANCES, REFERENCE, REFERENCE_PRECISION, ParityReport


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 <= value < math.inf:  # an infinite tolerance would pass every engine
        raise argparse.ArgumentTypeError(f"expected a finite non-negative number, got {text!r}")
    return value


def register(subparsers: Subparsers[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    tol = ", ".join(f"{p} rtol {t.rtol:g} atol {t.atol:g}" for p, t in DEFAULT_TOLERANCES.items())
    p = subparsers.add_parser(
        "parity",
        help="check that engines agree on seeded inputs (exit 1 when they do not)",
        description=f"Run each model on each engine and compare with {REFERENCE} in "
        f"{REFERENCE_PRECISION} on the same file. Inputs: uniform pixels normalised with the "
        "ImageNet mean/std, seeded. An engine passes when its relative L2 error <= rtol and "
        "max |diff| <= atol + rtol * max |reference|, and the graph's structure matches the spec "
        "in its metadata (cosine and top-k agreement are reported, not judged).",
        epilog=f"Defaults: {tol}. Exit 0: all agree; 1: a disagreement or an engine failed; "
        "2: bad input, or no usable engine among those asked for.\n\n"
        "Examples:\n"
        "  bench-runtimes parity --models resnet18 --runtimes ort-cpu,torch,openvino\n"
        "  bench-runtimes parity --models resnet50 --precision fp16 --runtimes ort-cuda,trt\n"
        "  bench-runtimes parity --models my-model.onnx --runtimes ort-cpu,openvino --json",
    )
    p.add_argument(
        "--models", type=csv_list("model"), required=True, help="variant names or .onnx paths"
    )
    p.add_argument(
        "--runtimes",
        type=csv_list("runtime"),
        help="engines to check (default: every engine but torch-compile; see `list`)",
    )
    p.add_argument(
        "--batch",
        type=positive_int,
        help="batch size (default 2, or the batch a file fixes)",
    )
    p.add_argument("--image-size", dest="image_size", type=positive_int, help="(default: model's)")
    p.add_argument(
        "--precision", type=precision_name, choices=tuple(DEFAULT_TOLERANCES), default="fp32"
    )
    p.add_argument("--atol", type=_non_negative_float, help="absolute floor of the max-diff bound")
    p.add_argument(
        "--rtol",
        type=_non_negative_float,
        help="relative L2 bound (and the max-diff bound's relative part)",
    )
    p.add_argument("--seed", type=seed_int, default=1, help="input seed, 0 .. 2**63-1 (default 1)")
    add_json_flag(p)
    add_size_limit(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from runtimes.api import check_parity

    report = check_parity(
        args.models,
        args.runtimes,
        size_limits=args.size_limits,
        batch=args.batch,
        image_size=args.image_size,
        precision=args.precision,
        atol=args.atol,
        rtol=args.rtol,
        seed=args.seed,
    )
    if args.json:
        print_json(report.to_dict())
    else:
        print_report(report)
    return EXIT_OK if report else EXIT_CHECK_FAILED


STYLE = {"pass": "green", "fail": "bold red", "error": "bold red", "skipped": "yellow"}


def print_report(report: ParityReport) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console = Console(width=160)  # CI logs: keep each engine's row on one line
    for model in report.models:
        t = model.tolerance
        table = Table(
            title=f"{escape(model.model)}  {model.precision}  batch {model.batch}  "
            f"{model.image_size}x{model.image_size}  seed {model.seed}  vs {model.reference}  "
            f"(rtol {t.rtol:g}, atol {t.atol:g})",
            title_justify="left",
            caption=f"top-1, top-5: how often the engine's top class (top-5 set) agrees with the "
            f"reference's on these {model.batch} seeded random image(s): agreement, not accuracy; "
            "the tolerances above are what is judged",
            caption_justify="left",
        )
        for column in (
            "runtime",
            "status",
            "rel L2",
            "1 - cos",
            "max abs",
            "max rel",
            "top-1",
            "top-5",
        ):
            table.add_column(column, justify="left" if column in ("runtime", "status") else "right")
        table.add_column("note")
        for r in model.results:
            cells = ["", "", "", "", "", ""]
            if r.comparison is not None:
                m = r.comparison.metrics
                cells = [
                    f"{m.rel_l2:.2e}",
                    f"{1 - m.cosine:.1e}",
                    f"{m.max_abs:.2e}",
                    f"{m.max_rel:.2e}",
                    f"{m.top1:.0%}",
                    f"{m.top5:.0%}",
                ]
            status = f"[{STYLE[r.status]}]{r.status}[/]"
            table.add_row(escape(r.runtime), status, *cells, escape(r.reason or ""))
        console.print(table)
        if model.reference_error is not None:
            console.print(f"[bold red]no comparison:[/] {escape(model.reference_error)}")
        if model.structure is not None:
            console.print(f"[bold red]structure check failed:[/] {escape(model.structure)}")
    verdict = "[green]PASSED[/]" if report else "[bold red]FAILED[/]"
    console.print(f"parity {verdict}")
