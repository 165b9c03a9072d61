"""`bench-runtimes compare OLD NEW`: exit 1 when NEW is slower beyond the threshold (CI)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from resnet_common.cli import EXIT_CHECK_FAILED, EXIT_OK, Subparsers, add_json_flag, print_json
from resnet_common.errors import UserError

if TYPE_CHECKING:
    from reports.compare import Change, Lost


def _threshold(text: str) -> float:
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a threshold like 5% or 0.05, got {text!r}"
        ) from None
    if not math.isfinite(value):  # nan compares false with everything: no slowdown would fail
        raise argparse.ArgumentTypeError(
            f"expected a threshold like 5% or 0.05, got {text!r}"
        ) from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"threshold must not be negative, got {text!r}") from None
    if not raw.endswith("%") and value > 1:
        raise argparse.ArgumentTypeError(
            f"a bare threshold is a fraction (0.05 = 5%); did you mean {raw}%? got {text!r}"
        )
    return value


def register(subparsers: Subparsers[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "compare",
        help="compare two reports; exit 1 when NEW is slower than OLD beyond the threshold",
        description="Compare median latencies of two report.json files (or folders holding "
        "one). A slowdown past the threshold is a regression only when the two medians' 95% "
        "intervals separate, so noise alone does not fail (it is listed as 'within noise'). "
        "A result that was ok in OLD and is failed, skipped or missing in NEW also fails "
        "the comparison. Exit 0: no regression; 1: a regression or a lost result; 2: bad input "
        "or another schema version.",
        epilog="Examples:\n  bench-runtimes compare old/report.json new/report.json\n"
        "  bench-runtimes compare baseline/ bench-results/ --threshold 10% --json",
    )
    p.add_argument(
        "old", type=Path, metavar="OLD", help="the baseline: report.json or its result folder"
    )
    p.add_argument(
        "new", type=Path, metavar="NEW", help="the candidate: report.json or its result folder"
    )
    p.add_argument(
        "--threshold",
        type=_threshold,
        default=0.05,
        help="allowed slowdown of the median: a fraction (0.05), or a percentage with its sign; "
        "default 0.05",
    )
    add_json_flag(p, "one JSON object (every change, its verdict, and the lost results)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from reports.compare import compare, lost, regressions, within_noise
    from reports.schema import load_report

    old, new = load_report(args.old), load_report(args.new)
    changes = compare(old, new)
    gone = lost(old, new)
    if not changes:  # nothing in common: a comparison of unrelated sweeps, not a regression
        raise UserError(f"{args.old} and {args.new} share no successful result to compare")
    slow = regressions(changes, args.threshold)
    noisy = within_noise(changes, args.threshold)
    failed = bool(slow or gone)

    def verdict(c: Change) -> str:
        return "regression" if c in slow else ("within noise" if c in noisy else "ok")

    if args.json:
        print_json(
            {
                "threshold": args.threshold,
                "passed": not failed,
                "changes": [{**_change_dict(c), "verdict": verdict(c)} for c in changes],
                "lost": [_lost_dict(g) for g in gone],
            }
        )
        return EXIT_CHECK_FAILED if failed else EXIT_OK
    table = Table(title=f"median latency, NEW vs OLD (threshold {args.threshold:.1%})")
    for col in ("machine", "result", "old ms [95% CI]", "new ms [95% CI]", "change", ""):
        table.add_column(col)

    def cell(ms: float, ci: tuple[float, float] | None) -> str:
        return f"{ms:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")

    for c in changes:
        flag = {"regression": "REGRESSION", "ok": ""}.get(verdict(c), verdict(c))
        style = "red" if c in slow else ("yellow" if flag else None)
        table.add_row(
            escape(c.machine), escape(c.key), cell(c.old_ms, c.old_ci), cell(c.new_ms, c.new_ci),
            f"{c.ratio - 1:+.1%}", flag, style=style,
        )  # fmt: skip
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)  # CI logs: one row per line
    if changes:
        console.print(table)
    if gone:
        lost_table = Table(title="ok in OLD, not ok in NEW")
        for col in ("machine", "result", "now"):
            lost_table.add_column(col)
        for g in gone:
            lost_table.add_row(escape(g.machine), escape(g.key), escape(g.describe), style="red")
        console.print(lost_table)
    print(
        f"{len(slow)} regression(s) beyond {args.threshold:.1%} in {len(changes)} result(s) "
        f"({len(noisy)} slower within noise); "
        f"{len(gone)} result(s) ok in OLD but failed, skipped or missing in NEW"
    )
    return EXIT_CHECK_FAILED if failed else EXIT_OK


def _change_dict(c: Change) -> dict[str, Any]:
    return {
        "machine": c.machine,
        "result": c.key,
        "old_ms": c.old_ms,
        "new_ms": c.new_ms,
        "old_ci95_ms": c.old_ci,
        "new_ci95_ms": c.new_ci,
        "change": c.ratio - 1,
    }


def _lost_dict(g: Lost) -> dict[str, Any]:
    return {"machine": g.machine, "result": g.key, "now": g.new_status, "reason": g.reason}
