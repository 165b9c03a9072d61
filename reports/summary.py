"""The terminal summary printed at the end of `bench-runtimes run` (rich tables)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reports import tables

SUMMARY_COLUMNS = (
    "model",
    "runtime",
    "precision",
    "batch",
    "image",
    "status",
    "median ms",
    "95% CI ms",
    "p90 ms",
    "CoV",
    "img/s",
    "GFLOP/s",
    "% peak",
    "parity",
    "note",
)


def _table(title: str, rows: list[dict[str, str]], columns: tuple[str, ...]) -> Any:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for col in columns:
        if col == "note":
            table.add_column(col, overflow="ellipsis", no_wrap=True, max_width=48)
        else:
            table.add_column(col, overflow="fold")
    for row in rows:
        style = {"failed": "red", "skipped": "dim"}.get(row.get("status", ""))
        table.add_row(*(escape(row[c]) for c in columns), style=style)  # data, never markup
    return table


def print_summary(report: Mapping[str, Any], *, console: Any) -> None:
    """Results, the MLPerf-style view, and a warning line per unstable result."""
    multi = len(report["machines"]) > 1
    columns = (("machine",) if multi else ()) + SUMMARY_COLUMNS
    console.print(_table("Results (latency in ms)", tables.result_rows(report), columns))
    mlperf = tables.mlperf_rows(report)
    if mlperf:
        cols = tables.MLPERF_COLUMNS if multi else tables.MLPERF_COLUMNS[1:]
        console.print(
            _table("MLPerf-style view: SingleStream (p90 @ batch 1), Offline", mlperf, cols)
        )
    from rich.markup import escape

    for r in tables.unstable_records(report):
        what = escape(f"{r['model']} on {r['runtime']} batch {r['batch']}")
        console.print(
            f"[yellow]warning:[/] {what} is unstable "
            f"(CoV {r['stability']['cov']:.1%} > 2.5%); quiet the machine or time longer",
            markup=True,
            highlight=False,
        )
