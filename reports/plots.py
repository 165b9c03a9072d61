"""The report's plots, drawn with matplotlib's Agg backend into PNG bytes (no display needed).

Each series is one (runtime, precision) on one machine, so merged reports compare hosts in
every plot. Plots without data (e.g. throughput vs batch with one batch size) are left out.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from typing import Any

from reports.tables import parity_value


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    _pyplot().close(fig)
    return buf.getvalue()


def _ok(report: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [r for r in report["records"] if r["status"] == "ok"]


def _series_label(r: Mapping[str, Any], multi_machine: bool, multi_size: bool = False) -> str:
    label = f"{r['runtime']} {r['precision']}"
    if multi_size:  # the image size is a dimension: 224 and 64 pixels are separate series
        label = f"{label} {r.get('image_size')}px"
    return f"{label} @ {r['machine']}" if multi_machine else label


def _multi_size(records: list[Mapping[str, Any]]) -> bool:
    return len({r.get("image_size") for r in records}) > 1


def _lines(
    records: list[Mapping[str, Any]], x: str, y: Any, multi: bool, title: str, xlabel: str, ylabel: str,
    *, group_extra: str | None = None, logx: bool = False,
) -> bytes | None:  # fmt: skip
    series: dict[str, list[tuple[float, float]]] = {}
    sizes = _multi_size(records)
    for r in records:
        if r.get(x) is None:
            continue
        label = _series_label(r, multi, sizes)
        if group_extra:
            label = f"{r[group_extra]} · {label}"
        series.setdefault(label, []).append((r[x], y(r)))
    if not series or all(len({p[0] for p in pts}) < 2 for pts in series.values()):
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, pts in sorted(series.items()):
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
    if logx:
        ax.set_xscale("log")
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _png(fig)


def latency_vs_depth(report: Mapping[str, Any]) -> bytes | None:
    multi = len(report["machines"]) > 1
    recs = [r for r in _ok(report) if r["batch"] == min(x["batch"] for x in _ok(report))]
    return _lines(
        recs, "depth", lambda r: r["latency_ms"]["median"], multi,
        "Median latency vs depth (smallest batch)", "depth (weighted layers)", "latency (ms)",
    )  # fmt: skip


def throughput_vs_batch(report: Mapping[str, Any]) -> bytes | None:
    multi = len(report["machines"]) > 1
    return _lines(
        _ok(report), "batch", lambda r: r["throughput_ips"], multi,
        "Throughput vs batch", "batch", "images / s", group_extra="model", logx=True,
    )  # fmt: skip


def latency_vs_macs(report: Mapping[str, Any]) -> bytes | None:
    multi = len(report["machines"]) > 1
    recs = [r for r in _ok(report) if r.get("macs")]
    if not recs:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    series: dict[str, list[Mapping[str, Any]]] = {}
    sizes = _multi_size(recs)
    for r in recs:
        series.setdefault(_series_label(r, multi, sizes), []).append(r)
    for label, rs in sorted(series.items()):
        xs = [r["macs"] * r["batch"] / 1e9 for r in rs]
        ax.scatter(xs, [r["latency_ms"]["median"] for r in rs], label=label)
    ax.set(title="Median latency vs work", xlabel="GMACs per call", ylabel="latency (ms)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _png(fig)


def parity_heatmap(report: Mapping[str, Any]) -> bytes | None:
    cells: dict[tuple[str, str], float] = {}
    multi = len(report["machines"]) > 1
    sizes = _multi_size(_ok(report))
    for r in _ok(report):
        value = parity_value(r.get("parity"))
        if value is not None:
            col = _series_label(r, multi, sizes)
            key = (r["model"], col)
            cells[key] = max(cells.get(key, 0.0), value)
    if not cells:
        return None
    rows = sorted({k[0] for k in cells})
    cols = sorted({k[1] for k in cells})
    grid = [
        [math.log10(max(cells[(m, c)], 1e-12)) if (m, c) in cells else math.nan for c in cols]
        for m in rows
    ]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1.6 + 1.1 * len(cols), 1.2 + 0.5 * len(rows)))
    image = ax.imshow(grid, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(cols)), cols, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    for i, row in enumerate(grid):
        for j, v in enumerate(row):
            if not math.isnan(v):
                ax.text(j, i, f"{10**v:.0e}", ha="center", va="center", color="w", fontsize=7)
    fig.colorbar(image, ax=ax, label="log10 relative L2 vs reference")
    ax.set_title("Parity: worst relative L2 error vs the reference engine")
    return _png(fig)


PLOTS = {
    "latency_vs_depth": latency_vs_depth,
    "throughput_vs_batch": throughput_vs_batch,
    "latency_vs_macs": latency_vs_macs,
    "parity_heatmap": parity_heatmap,
}


def all_plots(report: Mapping[str, Any]) -> dict[str, bytes]:
    """Every plot that has data, as PNG bytes by name."""
    out = {}
    for name, draw in PLOTS.items():
        png = draw(report) if _ok(report) else None
        if png is not None:
            out[name] = png
    return out
