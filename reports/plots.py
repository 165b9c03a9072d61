"""The report's plots, drawn with matplotlib's Agg backend into PNG bytes (no display needed).

Every plot is faceted by (precision, image size): a 32-pixel CIFAR net and a 224-pixel ImageNet
net never share an axis, nor do fp32 and fp16. Within a facet each series is one engine (with
its machine, in merged reports), drawn in a colour and marker of its own, with the legend
beside the axes, never over the data; an engine in throughput mode is a series of its own.
Latencies carry the median's 95% interval as error bars; latency-mode throughput is batch /
median latency, so its bars are the same interval; throughput mode's is the measured rate
(images completed over wall time), drawn without bars. The accuracy frontier puts every
configuration on time per image against its error from fp32 and draws the Pareto front. Log
axes print plain numbers (2, 5, 10, not 2x10^0). Model files are labelled by file name, never
by path. Plots without data are left out. The bar panels of one figure share one latency scale
(bars side by side on different scales compare falsely), and latency-vs-depth is on a log axis
(a linear one flattens every fast engine onto the floor).

Every text may come from data (a model file named `r$\\foo$.onnx`, a machine label): matplotlib
would read `$...$` as mathtext and fail on it, so each such text is escaped (`text`).
Without matplotlib (the `reports` extra) there are no plots; `missing()` says what to install.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from reports.tables import parity_value
from resnet_common.records import mode_of

Record = Mapping[str, Any]
MARKERS = "osD^v<>pPX*h"


EXTRA = "reports"  # the pyproject extra that brings matplotlib
# Data is text, never markup: no TeX (and `text` escapes mathtext's `$`). Math parsing itself
# stays on: matplotlib writes its own log-axis tick labels as mathtext.
_RC: dict[Any, Any] = {"text.usetex": False}


def missing() -> str | None:
    """Why no plot can be drawn here, or None when matplotlib imports."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return (
            "matplotlib is not installed, so the report has no plots; "
            f"pip install 'resnet-graphgen[{EXTRA}]' to draw them"
        )
    return None


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    _pyplot().close(fig)
    return buf.getvalue()


def _ok(report: Record) -> list[Record]:
    return [r for r in report["records"] if r["status"] == "ok"]


def text(value: object) -> str:
    """Data as matplotlib draws it literally: a `$` escaped, so `r$\\foo$.onnx` is not read as
    mathtext (which failed to parse it and took the report down). Every label, title and
    annotation that holds a value from a record goes through here."""
    return str(value).replace("$", "\\$")


def model_label(name: str) -> str:
    """A model as a plot shows it: variant names as they are, files by their file name."""
    return text(Path(name).name if name.endswith(".onnx") else name)


def _series(r: Record, multi_machine: bool) -> str:
    engine = text(r["runtime"]) + (" (throughput)" if mode_of(r) == "throughput" else "")
    return f"{engine} @ {text(r['machine'])}" if multi_machine else engine


def _facets(records: list[Record]) -> dict[tuple[str, Any], list[Record]]:
    out: dict[tuple[str, Any], list[Record]] = {}
    for r in records:
        out.setdefault((text(r["precision"]), r.get("image_size")), []).append(r)
    return dict(sorted(out.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0)))


LINESTYLES = ("-", "--", ":", "-.")
HATCHES = ("", "//", "..", "xx", "++")


def _style(report: Record, records: list[Record]) -> dict[str, dict[str, Any]]:
    """Per series: the colour is the engine's and the marker, line style and bar hatch are the
    machine's, so one engine on two machines reads as one colour, solid and dashed (hatched),
    and a colour never repeats for two engines. Stable across facets and plots."""
    import matplotlib

    multi = len(report["machines"]) > 1
    engines = sorted({_series(r, False) for r in records})
    machines = list(report["machines"])
    cmap = matplotlib.colormaps["tab10" if len(engines) <= 10 else "tab20"]
    out: dict[str, dict[str, Any]] = {}
    for r in records:
        e = engines.index(_series(r, False))
        m = machines.index(r["machine"]) if multi else 0
        out[_series(r, multi)] = {
            "color": cmap(e % cmap.N),
            "marker": MARKERS[(m if multi else e) % len(MARKERS)],
            "linestyle": LINESTYLES[m % len(LINESTYLES)],
            "hatch": HATCHES[m % len(HATCHES)],
        }
    return out


def _plain_log_ticks(axis: Any) -> None:
    from matplotlib.ticker import FuncFormatter, LogLocator

    fmt = FuncFormatter(lambda v, _: f"{v:g}")
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(fmt)
    axis.set_minor_formatter(FuncFormatter(lambda v, _: ""))


def _ci(r: Record) -> tuple[float, float] | None:
    ci = (r.get("stability") or {}).get("median_ci95_ms")
    if isinstance(ci, list) and len(ci) == 2 and None not in ci:
        return float(ci[0]), float(ci[1])
    return None


def _latency(r: Record) -> tuple[float, float, float]:
    """(median, minus, plus) in ms: the median and its 95% interval as error-bar lengths."""
    med = float(r["latency_ms"]["median"])
    ci = _ci(r) or (med, med)
    return med, max(med - ci[0], 0.0), max(ci[1] - med, 0.0)


def _throughput(r: Record) -> tuple[float, float, float]:
    if mode_of(r) == "throughput" and isinstance(r.get("throughput_ips"), (int, float)):
        return float(r["throughput_ips"]), 0.0, 0.0
    med, minus, plus = _latency(r)
    batch = float(r["batch"])
    value = batch / med * 1e3
    lo = batch / (med + plus) * 1e3
    hi = batch / max(med - minus, 1e-12) * 1e3
    return value, value - lo, hi - value


def _grid(
    n: int, width: float = 6.0, height: float = 4.0, *, sharey: bool = False
) -> tuple[Any, list[Any]]:
    plt = _pyplot()
    cols = min(n, 2)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(width * cols + 1.5, height * rows), squeeze=False,
        layout="constrained", sharey=sharey,
    )  # fmt: skip
    flat = [ax for row in axes for ax in row]
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _legend(fig: Any, axes: list[Any]) -> None:
    handles: dict[str, Any] = {}
    for ax in axes:
        for h, label in zip(*ax.get_legend_handles_labels(), strict=False):
            handles.setdefault(label, h)
    if handles:
        fig.legend(
            list(handles.values()), list(handles), loc="outside right center", fontsize=9,
            frameon=False,
        )  # fmt: skip


def _lines(
    report: Record,
    records: list[Record],
    x: Callable[[Record], float | None],
    y: Callable[[Record], tuple[float, float, float]],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    split: Callable[[Record], str] | None = None,
    logx: bool = False,
    logy: bool = False,
    ticks_at_data: bool = False,
) -> bytes | None:
    multi = len(report["machines"]) > 1
    facets = _facets([r for r in records if x(r) is not None])
    panels: list[tuple[str, dict[str, list[Record]]]] = []
    for (precision, size), recs in facets.items():
        groups: dict[str, list[Record]] = {}
        for r in recs:
            key = split(r) if split else ""
            groups.setdefault(key, []).append(r)
        for key, rs in sorted(groups.items()):
            series: dict[str, list[Record]] = {}
            for r in rs:
                series.setdefault(_series(r, multi), []).append(r)
            if any(len({x(r) for r in s}) >= 2 for s in series.values()):
                name = f"{precision}, {size}px" + (f", {key}" if key else "")
                panels.append((name, series))
    if not panels:
        return None
    style = _style(report, [r for _, s in panels for rs in s.values() for r in rs])
    fig, axes = _grid(len(panels))
    for ax, (name, series) in zip(axes, panels, strict=True):
        for label, rs in sorted(series.items()):
            pts = sorted((float(x(r) or 0), *y(r)) for r in rs)
            ax.errorbar(
                [p[0] for p in pts], [p[1] for p in pts], yerr=[[p[2] for p in pts], [p[3] for p in pts]],
                label=label, capsize=3, linewidth=1.4, markersize=5,
                **{k: v for k, v in style[label].items() if k != "hatch"},
            )  # fmt: skip
        if logx:
            ax.set_xscale("log")
            _plain_log_ticks(ax.xaxis)
        if ticks_at_data:  # e.g. the batch sizes run, each labelled
            from matplotlib.ticker import NullFormatter, NullLocator

            values = sorted({float(x(r) or 0) for rs in series.values() for r in rs})
            ax.xaxis.set_minor_locator(NullLocator())
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xticks(values, [f"{v:g}" for v in values])
        if logy:
            ax.set_yscale("log")
            _plain_log_ticks(ax.yaxis)
        ax.set(title=name, xlabel=xlabel, ylabel=ylabel)
        ax.grid(alpha=0.3, which="both")
    fig.suptitle(title)
    _legend(fig, axes)
    return _png(fig)


def latency_vs_depth(report: Record) -> bytes | None:
    ok = _ok(report)
    if not ok:
        return None
    smallest = min(r["batch"] for r in ok)
    return _lines(
        report, [r for r in ok if r["batch"] == smallest], lambda r: r.get("depth"), _latency,
        title=f"Median latency vs depth (batch {smallest}; bars: 95% CI of the median)",
        xlabel="depth (weighted layers)", ylabel="latency (ms, log scale)", logy=True,
    )  # fmt: skip


def throughput_vs_batch(report: Record) -> bytes | None:
    return _lines(
        report, _ok(report), lambda r: r["batch"], _throughput,
        title="Throughput vs batch (batch / median latency; bars: 95% CI)",
        xlabel="batch", ylabel="images / s", split=lambda r: model_label(str(r["model"])),
        logx=True, ticks_at_data=True,
    )  # fmt: skip


def latency_vs_macs(report: Record) -> bytes | None:
    return _lines(
        report, [r for r in _ok(report) if r.get("macs")],
        lambda r: r["macs"] * r["batch"] / 1e9 if r.get("macs") else None, _latency,
        title="Median latency vs work (bars: 95% CI)", xlabel="GMACs per call",
        ylabel="latency (ms)", logx=True, logy=True,
    )  # fmt: skip


def latency_bars(report: Record) -> bytes | None:
    """Median latency per engine, one panel per (precision, size) and one bar group per
    (model, batch), with the median's 95% interval."""
    ok = _ok(report)
    if not ok:
        return None
    multi = len(report["machines"]) > 1
    facets = _facets(ok)
    style = _style(report, ok)
    fig, axes = _grid(
        len(facets), width=max(6.0, 0.5 * len(ok) / len(facets) + 3), sharey=True
    )  # one latency scale for every panel: bars side by side compare by their height
    for ax, ((precision, size), recs) in zip(axes, facets.items(), strict=True):
        groups = sorted({(model_label(str(r["model"])), r["batch"]) for r in recs})
        here = sorted({_series(r, multi) for r in recs})
        width = 0.8 / max(len(here), 1)
        for j, label in enumerate(here):
            xs, ys, lo, hi = [], [], [], []
            for i, (model, batch) in enumerate(groups):
                match = [
                    r for r in recs
                    if _series(r, multi) == label and model_label(str(r["model"])) == model
                    and r["batch"] == batch
                ]  # fmt: skip
                if match:
                    med, minus, plus = _latency(match[0])
                    xs.append(i + (j - (len(here) - 1) / 2) * width)
                    ys.append(med)
                    lo.append(minus)
                    hi.append(plus)
            ax.bar(
                xs, ys, width * 0.95, yerr=[lo, hi], capsize=3, label=label,
                color=style[label]["color"], hatch=style[label]["hatch"], edgecolor="white",
            )  # fmt: skip
        ax.set_xticks(range(len(groups)), [f"{m}\nb{b}" for m, b in groups], fontsize=9)
        ax.set(title=f"{precision}, {size}px", ylabel="median latency (ms)")
        ax.yaxis.set_tick_params(labelleft=True)  # shared, but each panel keeps its numbers
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle("Median latency per engine (bars: 95% CI of the median)")
    _legend(fig, axes)
    return _png(fig)


def paired_ratio_plot(report: Record) -> bytes | None:
    """The interleaved runs' paired ratios with their 95% intervals, against 1."""
    from reports.ratios import paired_ratios

    ratios = paired_ratios(report)
    if not ratios:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 0.6 + 0.38 * len(ratios)))
    multi = len(report["machines"]) > 1
    labels = [
        text(f"{r.a} / {r.b} ({r.context}" + (f", {r.machine})" if multi else ")")) for r in ratios
    ]
    ys = list(range(len(ratios)))
    colours = ["#1f77b4" if r.lo <= 1 <= r.hi else "#d62728" for r in ratios]
    for y, r, c in zip(ys, ratios, colours, strict=True):
        ax.errorbar(
            r.ratio, y, xerr=[[r.ratio - r.lo], [r.hi - r.ratio]], fmt="o", color=c, capsize=3
        )
    ax.axvline(1.0, color="#444", linewidth=1, linestyle="--")
    ax.set_yticks(ys, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    _plain_log_ticks(ax.xaxis)
    ax.set(
        title="Paired latency ratios, interleaved rounds (95% CI; red: a real difference)",
        xlabel="latency ratio A / B",
    )
    ax.grid(alpha=0.3, axis="x", which="both")
    return _png(fig)


def _text_colour(rgba: tuple[float, ...]) -> str:
    """Black on light cells, white on dark ones (relative luminance, ITU-R BT.709)."""
    r, g, b = rgba[:3]
    return "black" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.5 else "white"


def parity_heatmap(report: Record) -> bytes | None:
    """Worst relative L2 per (model, engine), on a log colour scale that reaches the parity
    tolerance (marked on the colour bar), so errors 100x under it do not look alarming."""
    from matplotlib.colors import LogNorm

    cells: dict[tuple[str, str], float] = {}
    tolerances: set[float] = set()
    multi = len(report["machines"]) > 1
    for r in _ok(report):
        value = parity_value(r.get("parity"))
        if value is not None:
            col = f"{_series(r, multi)} {text(r['precision'])}"
            key = (f"{model_label(str(r['model']))} {r.get('image_size')}px", col)
            cells[key] = max(cells.get(key, 0.0), value)
            rtol = (r.get("parity") or {}).get("rtol")
            if isinstance(rtol, (int, float)) and rtol > 0:
                tolerances.add(float(rtol))
    if not cells:
        return None
    rows = sorted({k[0] for k in cells})
    cols = sorted({k[1] for k in cells})
    grid = [
        [max(cells[(m, c)], 1e-12) if (m, c) in cells else math.nan for c in cols] for m in rows
    ]
    top = max([*cells.values(), *tolerances]) * 10  # a decade of room: the line stays visible
    bottom = min(min(max(v, 1e-12) for v in cells.values()), top * 1e-4)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(2.4 + 1.1 * len(cols), 1.6 + 0.5 * len(rows)))
    image = ax.imshow(grid, cmap="viridis", aspect="auto", norm=LogNorm(bottom, top))
    ax.set_xticks(range(len(cols)), cols, rotation=30, ha="right", fontsize=9)
    ax.set_yticks(range(len(rows)), rows, fontsize=9)
    for i, row in enumerate(grid):
        for j, v in enumerate(row):
            if not math.isnan(v):
                colour = _text_colour(image.cmap(image.norm(v)))
                ax.text(j, i, f"{v:.0e}", ha="center", va="center", color=colour, fontsize=8)
    bar = fig.colorbar(image, ax=ax, label="relative L2 vs reference (line: tolerance)")
    for tol in sorted(tolerances):
        bar.ax.axhline(tol, color="#d62728", linewidth=2.5)
    ax.set_title("Parity: worst relative L2 error vs the reference engine")
    return _png(fig)


def accuracy_frontier(report: Record) -> bytes | None:
    """Per (machine, model, image size): every configuration (engine, precision, batch, mode)
    as a point of time per image against relative L2 error from fp32 (parity's), the Pareto
    front (no point both faster and more exact) drawn through the points on it; points that
    failed parity are hollow."""
    from reports.fastest import accuracy, per_image_ms

    panels: dict[tuple[str, str, Any], list[Record]] = {}
    for r in _ok(report):
        if accuracy(r)[0] is not None:
            key = (text(r["machine"]), model_label(str(r["model"])), r.get("image_size"))
            panels.setdefault(key, []).append(r)
    if not panels:
        return None
    fig, axes = _grid(len(panels), width=7.0, height=4.5)
    multi = len(report["machines"]) > 1
    for ax, ((machine, model, size), recs) in zip(axes, sorted(panels.items()), strict=True):
        points = sorted(
            ((max(accuracy(r)[0] or 0.0, 1e-12), per_image_ms(r), r) for r in recs),
            key=lambda p: p[:2],  # two configurations may tie: never compare the records
        )
        front, best = [], math.inf
        for x, y, _ in points:
            if y < best:
                front.append((x, y))
                best = y
        for x, y, r in points:
            passed = (r.get("parity") or {}).get("passed") is True
            ax.plot(
                x, y, "o", markersize=6, color="#1f77b4",
                markerfacecolor="#1f77b4" if passed else "none",
            )  # fmt: skip
            label = text(f"{r['runtime']} {r['precision']} b{r['batch']}")
            label += " thr" if mode_of(r) == "throughput" else ""
            ax.annotate(label, (x, y), fontsize=7, xytext=(4, 3), textcoords="offset points")
        ax.step(
            [p[0] for p in front], [p[1] for p in front], where="post", color="#d62728",
            linewidth=1.5, label="Pareto front",
        )  # fmt: skip
        ax.set_xscale("log")
        ax.set_yscale("log")
        _plain_log_ticks(ax.yaxis)
        title = f"{model}, {size}px" + (f" @ {machine}" if multi else "")
        ax.set(
            title=title,
            xlabel="relative L2 error vs torch fp64 on the fp32 graph",
            ylabel="ms per image (latency / batch; 1 / throughput)",
        )
        ax.grid(alpha=0.3, which="both")
    fig.suptitle("Time per image against accuracy (hollow: parity failed; line: Pareto front)")
    return _png(fig)


PLOTS: dict[str, Callable[[Record], bytes | None]] = {
    "latency_per_engine": latency_bars,
    "paired_ratios": paired_ratio_plot,
    "latency_vs_depth": latency_vs_depth,
    "throughput_vs_batch": throughput_vs_batch,
    "latency_vs_macs": latency_vs_macs,
    "parity_heatmap": parity_heatmap,
    "accuracy_frontier": accuracy_frontier,
}


def all_plots(report: Record) -> dict[str, bytes]:
    """Every plot that has data, as PNG bytes by name; none without matplotlib (`missing`)."""
    if missing() is not None or not _ok(report):
        return {}
    import matplotlib

    out = {}
    with matplotlib.rc_context(_RC):
        for name, draw in PLOTS.items():
            png = draw(report)
            if png is not None:
                out[name] = png
    return out
