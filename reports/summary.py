"""The terminal summary printed at the end of `bench-runtimes run` (rich tables)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reports import tables

# The terminal gets the columns a reader scans; report.md/html carry every field.
SUMMARY_COLUMNS = (
    "model",
    "runtime",
    "precision",
    "batch",
    "mode",
    "image",
    "median ms",
    "p90 ms",
    "CoV",
    "img/s",
    "GFLOP/s",
    "parity",
    "note",
)
# Dropped from the terminal table when every row has the same value (said once in the title).
CONSTANT_COLUMNS = ("precision", "batch", "mode", "image")


def _compact(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """Short cells for a terminal: parity as verdict + rel L2, status folded into the note."""
    out = []
    for row in rows:
        row = dict(row)
        parity = row.get("parity", "-")
        words = parity.split()
        if "relL2" in words:
            rel = words[words.index("relL2") + 1]
            verdict = "FAIL" if "FAIL" in words else "ok"
            row["parity"] = f"{verdict} {rel}"
        if row.get("status") not in (None, "ok"):
            row["note"] = f"{row['status']}: {row.get('note', '')}".rstrip(": ")
        elif row.get("note", "").startswith("unstable"):
            row["note"] = "unstable"
        out.append(row)
    return out


def _table(title: str, rows: list[dict[str, str]], columns: tuple[str, ...]) -> Any:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(title), title_justify="left")  # its values are data too
    for col in columns:
        if col == "note":  # the one column that gives way on a narrow terminal
            table.add_column(col, overflow="ellipsis", no_wrap=True, max_width=24)
        else:
            width = max([len(col), *(len(row[col]) for row in rows)])
            table.add_column(col, no_wrap=True, min_width=width)
    for row in rows:
        style = {"failed": "red", "skipped": "dim"}.get(row.get("status", ""))
        table.add_row(*(escape(row[c]) for c in columns), style=style)  # data, never markup
    return table


def _drop_constant(rows: list[dict[str, str]], columns: tuple[str, ...]) -> tuple[tuple, str]:
    """Columns minus those that hold one value in every row; that value goes in the title."""
    same = {
        c: rows[0][c] for c in CONSTANT_COLUMNS if c in columns and len({r[c] for r in rows}) == 1
    }
    kept = tuple(c for c in columns if c not in same)
    return kept, "".join(f", {k} {v}" for k, v in same.items())


def print_summary(report: Mapping[str, Any], *, console: Any) -> None:
    """Results, the max-batch view, LoadGen's results, precision and paired ratios, and one
    line per unstable result."""
    multi = len(report["machines"]) > 1
    rows = _compact(tables.result_rows(report))
    if rows:
        columns, said = _drop_constant(rows, (("machine",) if multi else ()) + SUMMARY_COLUMNS)
        title = f"Results (latency in ms{said}; parity: rel. L2 vs the reference)"
        console.print(_table(title, rows, columns))
    for r in report["records"]:  # the table cuts notes short; a failure's reason is printed whole
        if r["status"] == "failed":
            console.print(
                f"failed: {r['model']} {r['runtime']} {r['precision']} b{r['batch']}: "
                f"{r.get('reason') or 'no reason recorded'}",
                markup=False,
                highlight=False,
            )
    mlperf = tables.max_batch_rows(report)
    if mlperf:
        columns, said = _drop_constant(
            mlperf, tables.MAX_BATCH_COLUMNS if multi else tables.MAX_BATCH_COLUMNS[1:]
        )
        title = f"max-batch view (our loop: p90 at batch 1, throughput at the largest batch{said})"
        console.print(_table(title, mlperf, columns))
    loadgen = tables.loadgen_rows(report)
    if loadgen:
        columns, said = _drop_constant(
            loadgen, tables.LOADGEN_COLUMNS if multi else tables.LOADGEN_COLUMNS[1:]
        )
        console.print(_table(f"MLPerf LoadGen{said}", loadgen, columns))
    from reports.ratios import precision_rows, ratio_rows

    precisions = precision_rows(report)
    if precisions:
        cols = tuple(c for c in precisions[0] if (multi or c != "machine") and c != "how")
        console.print(_table("precisions (A / B latency; paired 95% CI where timed together)",
                             precisions, cols))  # fmt: skip
    ratios = ratio_rows(report)
    if ratios:
        cols = tuple(c for c in ratios[0] if multi or c != "machine")
        console.print(_table("paired ratios (interleaved rounds, 95% CI)", ratios, cols))
    from reports.fastest import fastest_rows, load_caveat

    fastest = fastest_rows(report)
    if fastest:
        cols = tuple(c for c in fastest[0] if (multi or c != "machine") and c != "load")
        console.print(_table("fastest within the accuracy budget (parity passed)", fastest, cols))
    busy = load_caveat(report)
    if busy:
        console.print(f"warning: {busy}", markup=False, highlight=False)
    unstable = [
        f"{r['model']} {r['runtime']} b{r['batch']} ({r['stability']['cov']:.0%})"
        for r in tables.unstable_records(report)
    ]
    if unstable:
        console.print(
            f"warning: {len(unstable)} result(s) unstable, CoV > 2.5% (trtexec's threshold): "
            + ", ".join(unstable)
            + "; quiet the machine or time longer (--duration-s)",
            markup=False,
            highlight=False,
        )
