"""Result folders -> report.json, report.md and a self-contained report.html.

Several folders (one per machine) merge into one report; each folder's environment names its
machine. The HTML embeds its plots as base64 PNGs and escapes every text it shows (model names
and error messages come from users and engines), so it opens offline and runs no script.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
import math
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from reports import tables
from reports.fastest import Budget, fastest_rows, load_caveat
from reports.plots import all_plots, missing
from reports.ratios import PRECISIONS_INTRO, precision_rows, ratio_rows
from reports.results import ResultFolder, read_folder
from reports.schema import make_report
from resnet_common.errors import UserError
from resnet_common.fileio import atomic_write_bytes
from resnet_common.records import SCHEMA_VERSION


def merge(folders: Sequence[ResultFolder]) -> dict[str, Any]:
    """One report over several folders; a machine name used twice gets its folder appended."""
    machines: dict[str, dict[str, Any]] = {}
    records = []
    loadgen = []
    for folder in folders:
        name = folder.machine
        if name in machines:
            name = f"{name} ({folder.path})"
        machines[name] = {**folder.environment, "machine": name}
        records += [{**r, "machine": name} for r in folder.records]
        loadgen += [{**r, "machine": name} for r in folder.loadgen]
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    return make_report(
        machines, records, generated_at=now, sources=[str(f.path) for f in folders], loadgen=loadgen
    )


def verdict_caveat(report: Mapping[str, Any]) -> str:
    """What the verdict rests on when the machine was noisy or busy: said beside it, not only
    in the Warnings at the bottom of the page."""
    ok = [r for r in report["records"] if r["status"] == "ok"]
    unstable = tables.unstable_records(report)
    parts = []
    if unstable:
        parts.append(
            f"{len(unstable)} of {len(ok)} results are unstable (CoV > 2.5%, see Warnings): "
            'their medians may move between runs. "real?" comes from the paired ratios of '
            "rounds timed together, which a drifting machine affects alike; without them it "
            "needs the medians' intervals to separate."
        )
    busy = load_caveat(report)
    if busy:
        parts.append(busy)
    return " ".join(parts)


FASTEST_INTRO = (
    "For each model: the configuration (engine, precision, batch, mode) with the lowest "
    "batch-1 latency and the one with the highest throughput whose accuracy is within the "
    "budget: {budget}. Speedups are over ort-cpu fp32 in latency mode at the same batch, "
    "paired round by round when both were timed together. The frontier plot shows every "
    "configuration's time per image against its error."
)


VERDICT_INTRO = (
    "The fastest engine per model, precision, batch, mode and image size, and its speedup over "
    "the next. Where the two were timed together (--interleave) the speedup is the median of "
    "the per-round ratios, next / fastest, with its 95% interval: real when the interval "
    "excludes 1 (see Paired ratios). Timed apart, it is the ratio of the two medians, real "
    "when their 95% intervals separate."
)


def _finite(value: Any) -> Any:
    """`value` with NaN and Inf as null, as the records are written: a hand-edited field no
    report reads may hold one, and report.json stays JSON that any parser reads (depth is
    bounded by the reader)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _write_atomic(path: Path, data: str | bytes) -> None:
    atomic_write_bytes(path, data.encode() if isinstance(data, str) else data)


# -- markdown -----------------------------------------------------------------------------------
FRONT_PLOTS = ("latency_per_engine", "accuracy_frontier")  # shown beside their verdicts


# What Markdown would read as HTML or a character reference: `<` opening a tag (`<script>`,
# `</b>`, `<!--`, an autolink) and `&` opening an entity (`&lt;`). Escaped with a backslash
# (CommonMark), as are `\`, `` ` ``, `*`, `$` (GitHub's math) and a `]` that would close a
# link's text (`](`): they render as typed; anything else (`p99 <= 5 ms`, `R&D`) stays as it is, so
# the raw file reads as the rendered one (html.escape showed `&lt;=` in report.md).
_MD_MARKUP = re.compile(r"<(?=[A-Za-z/!?])|&(?=#?\w+;)|\](?=[(\[:])|[\\`*$]")


def _md_cell(text: str) -> str:
    escaped = _MD_MARKUP.sub(lambda m: "\\" + m.group(0), str(text))
    return escaped.replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _md_table(rows: list[dict[str, str]]) -> str:
    if not rows:
        return "_none_\n"
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_md_cell(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def to_markdown(
    report: Mapping[str, Any],
    plots: Mapping[str, bytes] | None = None,
    *,
    no_plots: str | None = None,
) -> str:
    """The Markdown report; `plots` are linked as the PNG files `render` writes beside it."""
    plots = plots or {}
    measured, not_measured = tables.split_result_rows(report)
    precisions = precision_rows(report)
    parts = [
        "# bench-runtimes report",
        f"Schema version {SCHEMA_VERSION}; generated {report['generated_at']}. Latencies in ms "
        "(median, nearest-rank percentiles); throughput = batch / median latency in latency "
        "mode, images completed / wall time in throughput mode; GFLOP/s = 2 x MACs x images/s; "
        "% peak is against the machine's measured matmul peak of the record's precision (fp32, "
        "bf16 or int8); unstable: the coefficient of variation (CoV) is above 2.5%.",
        "## Fastest within the accuracy budget",
        FASTEST_INTRO.format(budget=Budget().describe()),
        _md_table(fastest_rows(report)),
        *(["![Accuracy frontier](accuracy_frontier.png)"] if "accuracy_frontier" in plots else []),
        "## Verdict",
        VERDICT_INTRO,
        _md_table(tables.verdict_rows(report)),
        *([caveat] if (caveat := verdict_caveat(report)) else []),
        *(
            ["![Median latency per engine](latency_per_engine.png)"]
            if "latency_per_engine" in plots
            else []
        ),
        *(["## Precisions", PRECISIONS_INTRO, _md_table(precisions)] if precisions else []),
        "## Reproduce",
        _md_table(tables.reproduce_rows(report)),
        "## Machines",
        _md_table(tables.environment_rows(report)),
        "## Max-batch view",
        "Our sequential loop: p90 latency at batch 1, throughput at the largest batch run "
        "(MLPerf's scenarios are in the LoadGen section, when `bench-runtimes loadgen` ran).",
        _md_table(tables.max_batch_rows(report)),
        "## Results",
        _md_table(measured),
        *([note] if (note := tables.results_note(report)) else []),
    ]
    if any(row.get("% peak", "").endswith("*") for row in measured):
        parts.append(tables.ABOVE_PEAK_NOTE)
    if not_measured:
        parts += ["## Skipped or failed", _md_table(not_measured)]
    ratios = ratio_rows(report)
    if ratios:
        parts += [
            "## Paired ratios",
            "Jobs timed together in shuffled rounds (`--interleave`): A / B is the median of "
            "the per-round latency ratios, with its distribution-free 95% interval; the "
            "difference is real when the interval excludes 1.",
            _md_table(ratios),
        ]
    loadgen = tables.loadgen_rows(report)
    if loadgen:
        parts += ["## MLPerf LoadGen", _md_table(loadgen)]
    others = [name for name in plots if name not in FRONT_PLOTS]
    if others:
        parts += ["## Plots", *(f"![{n.replace('_', ' ')}]({n}.png)" for n in others)]
    elif no_plots:
        parts += ["## Plots", f"None: {no_plots}."]
    unstable = tables.unstable_records(report)
    if unstable:
        parts += [
            "## Warnings",
            "\n".join(
                f"- unstable: {_md_cell(r['model'])} on {_md_cell(r['runtime'])} "
                f"batch {r['batch']} @ {_md_cell(r['machine'])}: CoV "
                f"{r['stability']['cov']:.1%} > 2.5%"
                for r in unstable
            ),
        ]
    return "\n\n".join(parts) + "\n"


# -- html ---------------------------------------------------------------------------------------
_CSS = (
    "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}"
    "table{border-collapse:collapse;font-size:12px;margin:1em 0}"
    "td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}"
    "th{background:#f0f0f0}.failed{background:#fde2e2}.skipped{color:#888}"
    ".warn{color:#a40}img{max-width:100%;margin:1em 0}"
    # Numbers and intervals on one line; free text (notes, reasons with long file names, commands)
    # wraps within a bounded column, and a table wider than the page scrolls on its own.
    ".wide{overflow-x:auto}td{white-space:nowrap}"
    "td.text{white-space:normal;overflow-wrap:anywhere;min-width:8em;max-width:32em}"
)

# Columns that hold free text rather than numbers: they wrap, the others do not.
_TEXT_COLUMNS = frozenset({"note", "why", "parity", "command", "versions", "packages", "settings"})


def _html_table(rows: list[dict[str, str]]) -> str:
    if not rows:
        return "<p><em>none</em></p>"
    cols = list(rows[0])
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = []
    for r in rows:
        cls = html.escape(r.get("status", ""), quote=True)
        cells = "".join(
            ('<td class="text">' if c in _TEXT_COLUMNS else "<td>")
            + f"{html.escape(str(r[c]))}</td>"
            for c in cols
        )
        body.append(f'<tr class="{cls}">{cells}</tr>')
    return f'<div class="wide"><table><tr>{head}</tr>{"".join(body)}</table></div>'


def to_html(
    report: Mapping[str, Any], plots: Mapping[str, bytes], *, no_plots: str | None = None
) -> str:
    e = html.escape
    measured, not_measured = tables.split_result_rows(report)
    precisions = precision_rows(report)
    results_note = tables.results_note(report)
    unstable = tables.unstable_records(report)
    warnings = "".join(
        f'<li class="warn">unstable: {e(r["model"])} on {e(r["runtime"])} batch {r["batch"]} '
        f"@ {e(r['machine'])}: CoV {r['stability']['cov']:.1%} &gt; 2.5%</li>"
        for r in unstable
    )

    def img(name: str, png: bytes) -> str:
        return (
            f'<h3>{e(name.replace("_", " "))}</h3><img alt="{e(name)}" '
            f'src="data:image/png;base64,{base64.b64encode(png).decode()}">'
        )

    verdict_plot = (
        img("latency_per_engine", plots["latency_per_engine"])
        if "latency_per_engine" in plots
        else ""
    )
    frontier = (
        img("accuracy_frontier", plots["accuracy_frontier"]) if "accuracy_frontier" in plots else ""
    )
    images = "".join(img(n, png) for n, png in plots.items() if n not in FRONT_PLOTS)
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8">'
        "<title>bench-runtimes report</title>"
        f"<style>{_CSS}</style></head><body>"
        "<h1>bench-runtimes report</h1>"
        f"<p>Schema version {SCHEMA_VERSION}; generated {e(report['generated_at'])}. "
        "Latencies in ms; throughput = batch / median latency in latency mode, images "
        "completed / wall time in throughput mode; GFLOP/s = 2 × MACs × images/s; % peak is "
        "against the machine's measured matmul peak of the record's precision (fp32, bf16 or "
        "int8); unstable: the coefficient of variation (CoV) is above 2.5%.</p>"
        "<h2>Fastest within the accuracy budget</h2>"
        f"<p>{e(FASTEST_INTRO.format(budget=Budget().describe()))}</p>"
        f"{_html_table(fastest_rows(report))}" + frontier + "<h2>Verdict</h2>"
        f"<p>{e(VERDICT_INTRO)}</p>{_html_table(tables.verdict_rows(report))}"
        + (f'<p class="warn">{e(caveat)}</p>' if (caveat := verdict_caveat(report)) else "")
        + verdict_plot
        + (
            f"<h2>Precisions</h2><p>{e(PRECISIONS_INTRO)}</p>{_html_table(precisions)}"
            if precisions
            else ""
        )
        + f"<h2>Reproduce</h2>{_html_table(tables.reproduce_rows(report))}"
        f"<h2>Machines</h2>{_html_table(tables.environment_rows(report))}"
        "<h2>Max-batch view</h2><p>Our sequential loop: p90 latency at batch 1, "
        "throughput at the largest batch run (MLPerf's scenarios: the LoadGen section).</p>"
        f"{_html_table(tables.max_batch_rows(report))}"
        f"<h2>Results</h2>{_html_table(measured)}"
        + (f"<p>{e(results_note)}</p>" if results_note else "")
        + (
            f"<p>{e(tables.ABOVE_PEAK_NOTE)}</p>"
            if any(row.get("% peak", "").endswith("*") for row in measured)
            else ""
        )
        + (f"<h2>Skipped or failed</h2>{_html_table(not_measured)}" if not_measured else "")
        + (
            "<h2>Paired ratios</h2><p>Jobs timed together in shuffled rounds: A / B is the "
            "median of the per-round latency ratios, with its 95% interval; real when the "
            f"interval excludes 1.</p>{_html_table(ratio_rows(report))}"
            if ratio_rows(report)
            else ""
        )
        + (
            f"<h2>MLPerf LoadGen</h2>{_html_table(tables.loadgen_rows(report))}"
            if report.get("loadgen")
            else ""
        )
        + (f"<h2>Warnings</h2><ul>{warnings}</ul>" if warnings else "")
        + "<h2>Plots</h2>"
        + (
            images
            or f"<p><em>{e(f'None: {no_plots}.' if no_plots else 'no data to plot')}</em></p>"
        )
        + "</body></html>\n"
    )


def render(dirs: Sequence[str | Path], *, out: str | Path) -> dict[str, Path]:
    """Read, merge and write the three report files into `out`; returns their paths.

    Every folder is read and every record checked first, and every file is made in memory
    before the first is written: a bad record or a drawing error leaves `out` as it was. Without
    matplotlib the report is written without plots, and one line on stderr says what to
    install."""
    unique = list(dict.fromkeys(Path(d).resolve() for d in dirs))  # a folder named twice is one
    folders = [read_folder(d) for d in unique]
    report = merge(folders)
    plots = all_plots(report)
    no_plots = missing() if report["records"] else None
    files = {
        "json": json.dumps(_finite(report), indent=2, allow_nan=False) + "\n",
        "md": to_markdown(report, plots, no_plots=no_plots),
        "html": to_html(report, plots, no_plots=no_plots),
    }
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot write to --out {out}: {err.strerror or err}") from None
    paths = {kind: out / f"report.{kind}" for kind in files}
    _write_atomic(paths["json"], files["json"])
    for name, png in plots.items():  # the Markdown report links them; the HTML embeds them
        _write_atomic(out / f"{name}.png", png)
    _write_atomic(paths["md"], files["md"])
    _write_atomic(paths["html"], files["html"])
    if no_plots:
        print(f"warning: {no_plots}", file=sys.stderr)
    return paths


def warnings_of(dirs: Sequence[str | Path]) -> list[str]:
    return [w for d in dirs for w in read_folder(d).warnings]
