"""`bench-runtimes compare OLD NEW`: exit 1 when NEW is slower beyond the threshold (CI)."""

from __future__ import annotations

import argparse
from pathlib import Path

from graphgen.errors import UserError


def _threshold(text: str) -> float:
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a threshold like 5% or 0.05, got {text!r}"
        ) from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"threshold must not be negative, got {text!r}") from None
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "compare",
        help="compare two reports; exit 1 when NEW is slower than OLD beyond the threshold",
        description="Compare median latencies of two report.json files (or folders holding "
        "one). Exit 0: no regression; 1: a regression; 2: bad input or another schema version.",
    )
    p.add_argument("old", type=Path, metavar="OLD")
    p.add_argument("new", type=Path, metavar="NEW")
    p.add_argument(
        "--threshold", type=_threshold, default=0.05, help="allowed slowdown (default 5%%)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from reports.compare import compare, regressions
    from reports.schema import load_report

    old, new = load_report(args.old), load_report(args.new)
    changes = compare(old, new)
    if not changes:
        raise UserError(f"{args.old} and {args.new} share no successful result to compare")
    slow = regressions(changes, args.threshold)
    table = Table(title=f"median latency, NEW vs OLD (threshold {args.threshold:.1%})")
    for col in ("machine", "result", "old ms", "new ms", "change", ""):
        table.add_column(col)
    for c in changes:
        flag = "REGRESSION" if c in slow else ""
        style = "red" if flag else None
        table.add_row(
            c.machine, c.key, f"{c.old_ms:.3f}", f"{c.new_ms:.3f}", f"{c.ratio - 1:+.1%}", flag,
            style=style,
        )  # fmt: skip
    Console().print(table)
    print(f"{len(slow)} regression(s) beyond {args.threshold:.1%} in {len(changes)} result(s)")
    return 1 if slow else 0
