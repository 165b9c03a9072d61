"""The report's tables as plain rows, shared by Markdown, HTML and the terminal summary.

Every table carries the machine as a column, so a merged report (one folder per host) reads
side by side. The max-batch view is our own sequential loop's p90 latency at batch 1 and
throughput at the largest batch run: not MLPerf's scenarios, which `bench-runtimes loadgen` runs
with LoadGen itself (`loadgen_rows`).
The image size is a dimension everywhere (a column, and part of every grouping key): the same
model at 224 and 64 pixels is two results, and so is a job in latency and in throughput mode.
"% peak" is shown for CPU records only, against the peak of the unit the record's precision runs
on (fp32, bf16 or int8 matmul, each measured on this machine: `record["peak"]`); a record of
before version 2 has only the fp32 peak, which is then used for fp32 and fp16 alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from resnet_common.records import UNSTABLE_COV, mode_of

RESULT_COLUMNS = (
    "machine",
    "model",
    "runtime",
    "precision",
    "batch",
    "mode",
    "image",
    "status",
    "median ms",
    "95% CI ms",
    "p90 ms",
    "p99 ms",
    "CoV",
    "img/s",
    "GFLOP/s",
    "% peak",
    "load s",
    "first ms",
    "RSS MB",
    "parity",
    "note",
)
MAX_BATCH_COLUMNS = (
    "machine",
    "model",
    "runtime",
    "precision",
    "mode",
    "image",
    "p90 ms at batch 1",
    "img/s at max batch",
    "max batch",
)
LOADGEN_COLUMNS = (
    "machine",
    "model",
    "runtime",
    "precision",
    "scenario",
    "metric",
    "value",
    "LoadGen result",
    "settings",
)


def _f(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def parity_samples(record: Mapping[str, Any]) -> int | None:
    """How many images parity compared: its own count where it records one, else the job's
    batch (the sweep checks parity on the batch it timed)."""
    parity = record.get("parity") or {}
    count = parity.get("samples")
    if isinstance(count, int) and not isinstance(count, bool) and count > 0:
        return count
    batch = record.get("batch")
    return batch if isinstance(batch, int) and not isinstance(batch, bool) else None


def parity_cell(parity: Mapping[str, Any] | None, samples: int | None = None) -> str:
    """A short parity summary: relative L2 and top-1 agreement where the metrics exist, the
    agreement with the number of images it counts ("top1 100% of 1")."""
    if not parity:
        return "-"
    if "error" in parity:
        return f"error: {parity['error']}"
    metrics = parity.get("metrics", parity)
    parts = []
    for key in ("rel_l2", "relative_l2"):
        if isinstance(metrics.get(key), (int, float)):
            parts.append(f"relL2 {metrics[key]:.1e}")
            break
    for key in ("top1", "top1_agreement"):
        if isinstance(metrics.get(key), (int, float)):
            parts.append(f"top1 {metrics[key]:.0%}" + (f" of {samples}" if samples else ""))
            break
    verdict = parity.get("passed", parity.get("ok"))
    if isinstance(verdict, bool):
        parts.append("pass" if verdict else "FAIL")
    return " ".join(parts) or "-"


def parity_value(parity: Mapping[str, Any] | None) -> float | None:
    """The relative L2 error, the number the heatmap colours by."""
    if not parity or "error" in parity:
        return None
    metrics = parity.get("metrics", parity)
    for key in ("rel_l2", "relative_l2"):
        if isinstance(metrics.get(key), (int, float)):
            return float(metrics[key])
    return None


ABOVE_PEAK_NOTE = (
    "* above the measured GEMM peak of the record's precision: the peak is the best matmul rate "
    "the engines' own kernels reached before the sweep, an estimate, and an engine's conv "
    "kernels can beat it"
)


def peak_cell(gflops: float | None, peak: float | None) -> str:
    """The fraction of the measured peak; above 1 it carries a mark that ABOVE_PEAK_NOTE
    explains, never a bare 142%."""
    if not gflops or not peak:
        return "-"
    fraction = gflops / peak
    return f"{fraction:.0%}*" if fraction > 1 else f"{fraction:.0%}"


def image_cell(record: Mapping[str, Any]) -> str:
    """The size as "224x224"; "-" when unknown (a model that failed to resolve records 0)."""
    size = record.get("image_size")
    return f"{size}x{size}" if size else "-"


def record_device(record: Mapping[str, Any]) -> str | None:
    """Where the record ran, as the record says (the runner's own `device` for records written
    before records carried one)."""
    device = record.get("device") or (record.get("runner") or {}).get("device")
    return None if device is None else str(device)


def record_peak(record: Mapping[str, Any], env: Mapping[str, Any]) -> float | None:
    """The CPU matmul peak the record's precision runs on: its own `peak` (version 2), else the
    machine's fp32 peak for an fp32 or fp16 record; None for GPU records (a GPU's GFLOP/s over
    the host CPU's peak means nothing) and for other precisions without a peak of their own
    (dividing int8 by the fp32 peak overstated it ten-fold on AMX)."""
    if record_device(record) != "cpu":
        return None
    own = (record.get("peak") or {}).get("gflops")
    if isinstance(own, (int, float)) and own > 0:
        return float(own)
    if record.get("precision") in ("fp32", "fp16"):
        value = env.get("matmul_peak_gflops")
        return float(value) if isinstance(value, (int, float)) else None
    return None


def rss_scope(record: Mapping[str, Any]) -> str | None:
    """Whose peak the record's `peak_host_rss_mb` is, as the record says
    (`peak_host_rss_mb_scope`); a record without the field that was timed in an interleaved
    group holds the group's (every job of it was loaded in one process); None: this job's."""
    scope = record.get("peak_host_rss_mb_scope")
    if isinstance(scope, str) and scope and scope != "this job":
        return scope
    if scope is None and ((record.get("timing") or {}).get("interleaved")):
        return "interleaved group"
    return None


RSS_NOTE = (
    "RSS MB: the peak resident memory of the measuring process while the job was timed. A "
    "value marked with its scope, such as (interleaved group), is the peak of a process that "
    "held more than this job: every job of its interleaved group was loaded at once, so they "
    "all show the same number, which is not the job's own footprint."
)


def rss_cell(record: Mapping[str, Any]) -> str:
    value = _f(record.get("peak_host_rss_mb"), 0)
    scope = rss_scope(record)
    return f"{value} ({scope})" if scope and value != "-" else value


PARITY_NOTE = (
    "parity: the engine's outputs against torch in float64 on {images} seeded random image(s) "
    "(the job's own batch). The relative L2 error (relL2) is what is judged; top-1 (and "
    "top-5) agreement on so few random images, through a net of random weights whose top "
    "logits are near ties, only says whether the engines put the same class first on those "
    "inputs: it is not accuracy, and 100% of 1 image proves little."
)


def results_note(report: Mapping[str, Any]) -> str:
    """What the Results table's parity and RSS columns mean, for the records it shows."""
    ok = [r for r in report["records"] if r["status"] == "ok"]
    parts = []
    counts = sorted({n for r in ok if r.get("parity") and (n := parity_samples(r))})
    if counts:
        images = " to ".join(str(n) for n in dict.fromkeys((counts[0], counts[-1])))
        parts.append(PARITY_NOTE.format(images=images))
    if any(rss_scope(r) for r in ok):
        parts.append(RSS_NOTE)
    return " ".join(parts)


def _cov(record: Mapping[str, Any]) -> float:
    cov = (record.get("stability") or {}).get("cov")
    return float(cov) if isinstance(cov, int | float) else 0.0


def note_cell(record: Mapping[str, Any]) -> str:
    """What a reader must know beside the numbers: unstable, another precision ran than the
    one asked, the machine oversubscribed."""
    notes = []
    if _cov(record) > UNSTABLE_COV:
        notes.append("unstable")
    ran = (record.get("runner") or {}).get("precision_note")
    if ran:
        notes.append(str(ran))
    if (record.get("load") or {}).get("oversubscribed"):
        notes.append("oversubscribed")
    return "; ".join(notes)


def result_rows(report: Mapping[str, Any]) -> list[dict[str, str]]:
    rows = []
    for r in report["records"]:
        env = report["machines"].get(r["machine"], {})
        peak = record_peak(r, env)
        row = {k: "-" for k in RESULT_COLUMNS}
        row.update(
            machine=r["machine"],
            model=r["model"],
            runtime=r["runtime"],
            precision=r["precision"],
            batch=str(r["batch"]),
            mode=mode_of(r),
            image=image_cell(r),
            status=r["status"],
        )
        if r["status"] == "ok":
            lat, stab = r["latency_ms"], r.get("stability") or {}
            ci = stab.get("median_ci95_ms")
            gflops = r.get("gflops")
            row.update(
                {
                    "median ms": _f(lat["median"], 3),
                    "95% CI ms": f"{ci[0]:.3f}–{ci[1]:.3f}" if ci else "-",
                    "p90 ms": _f(lat["p90"], 3),
                    "p99 ms": _f(lat["p99"], 3),
                    "CoV": f"{stab['cov']:.1%}" if stab.get("cov") is not None else "-",
                    "img/s": _f(r.get("throughput_ips"), 1),
                    "GFLOP/s": _f(gflops, 1),
                    "% peak": peak_cell(gflops, peak),
                    "load s": _f(r.get("load_time_s"), 2),
                    "first ms": _f(r.get("first_inference_ms"), 1),
                    "RSS MB": rss_cell(r),
                    "parity": parity_cell(r.get("parity"), parity_samples(r)),
                    "note": note_cell(r),
                }
            )
        else:
            row["note"] = r.get("reason") or ""
        rows.append(row)
    return rows


def max_batch_rows(report: Mapping[str, Any]) -> list[dict[str, str]]:
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for r in report["records"]:
        if r["status"] == "ok":
            key = (r["machine"], r["model"], r["runtime"], r["precision"], mode_of(r))
            groups.setdefault((*key, image_cell(r)), []).append(r)
    rows = []
    for (machine, model, runtime, precision, mode, image), records in groups.items():
        single = [r for r in records if r["batch"] == 1]
        largest = max(records, key=lambda r: r["batch"])
        rows.append(
            dict(
                zip(
                    MAX_BATCH_COLUMNS,
                    (
                        machine,
                        model,
                        runtime,
                        precision,
                        mode,
                        image,
                        _f(single[0]["latency_ms"]["p90"], 3) if single else "-",
                        _f(largest.get("throughput_ips"), 1),
                        str(largest["batch"]),
                    ),
                    strict=True,
                )
            )
        )
    return rows


def loadgen_rows(report: Mapping[str, Any]) -> list[dict[str, str]]:
    """LoadGen's own numbers, one row per test: the scenario's metric (SingleStream p90 ms,
    MultiStream p99 ms, Offline samples/s, Server completed samples/s) and VALID or INVALID."""
    rows = []
    for r in report.get("loadgen", []):
        h = r.get("headline") or {}
        s = r.get("settings") or {}
        if r.get("scenario") == "Server":
            asked = f"{s.get('target_qps')} qps, p99 <= {s.get('target_latency_ms')} ms"
        elif r.get("scenario") in ("Offline", "MultiStream"):
            asked = f"batch {s.get('batch')}"
        else:
            asked = ""
        asked = ", ".join(x for x in (asked, f"min {s.get('min_duration_ms')} ms") if x)
        value = h.get("value")
        rows.append(
            dict(
                zip(
                    LOADGEN_COLUMNS,
                    (
                        str(r.get("machine", "")),
                        str(r.get("model", "")),
                        str(r.get("runtime", "")),
                        str(r.get("precision", "")),
                        str(r.get("scenario", "")),
                        str(h.get("metric", "")),
                        _f(value, 3) if isinstance(value, (int, float)) else "-",
                        str(r.get("result") or r.get("error") or "-"),
                        asked,
                    ),
                    strict=True,
                )
            )
        )
    return rows


def unstable_records(report: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [r for r in report["records"] if r["status"] == "ok" and _cov(r) > UNSTABLE_COV]


def environment_rows(report: Mapping[str, Any]) -> list[dict[str, str]]:
    rows = []
    for machine, env in report["machines"].items():
        cpu = env.get("cpu", {})
        gpus = ", ".join(f"{g.get('name')} (driver {g.get('driver')})" for g in env.get("gpus", []))
        pkgs = ", ".join(f"{k} {v}" for k, v in env.get("packages", {}).items())
        peaks = env.get("matmul_peaks") or {}
        shown = (
            ", ".join(f"{unit} {_f((peaks[unit] or {}).get('gflops'), 0)}" for unit in peaks)
            if peaks
            else f"fp32 {_f(env.get('matmul_peak_gflops'), 1)}"
        )
        flags = cpu.get("flags")
        rows.append(
            {
                "machine": machine,
                "CPU": f"{cpu.get('model', '?')} ({cpu.get('usable', '?')} cores)",
                "CPU flags": " ".join(flags) if flags else "not recorded",
                "GPU": gpus or "none",
                "OS / Python": f"{env.get('os', '?')} / {env.get('python', '?')}",
                "matmul peaks G(FL)OP/s": shown,
                "packages": pkgs,
            }
        )
    return rows


VERDICT_COLUMNS = (
    "machine",
    "model",
    "precision",
    "batch",
    "mode",
    "image",
    "fastest",
    "median ms",
    "next",
    "speedup",
    "real?",
)


def verdict_rows(report: Mapping[str, Any]) -> list[dict[str, str]]:
    """The answer first: per (machine, model, precision, batch, image), the fastest engine,
    how much faster than the next one, and whether that difference is real. Where the two were
    timed together the speedup is the paired one (the median of the per-round ratios, next /
    fastest, with its 95% interval, real when the interval excludes 1), and the pair is
    ordered by it: a ratio of the two medians can fall outside its own paired interval. Timed
    apart, it is the medians' ratio, real when their 95% intervals separate."""
    from reports.fastest import per_image_ms
    from reports.ratios import pair

    groups: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
    for r in report["records"]:
        if r["status"] == "ok":
            key = (r["machine"], r["model"], r["precision"], r["batch"], r.get("image_size"))
            groups.setdefault((*key, mode_of(r)), []).append(r)
    rows = []
    for (machine, model, precision, batch, _, mode), records in groups.items():
        ranked = sorted(records, key=per_image_ms)
        best = ranked[0]
        paired = pair(ranked[1], best) if len(ranked) > 1 else None
        if paired is not None and paired[0] < 1:  # paired, the runner-up is the faster one
            ranked[0], ranked[1] = ranked[1], ranked[0]
            best = ranked[0]
            paired = pair(ranked[1], best)
        row = dict.fromkeys(VERDICT_COLUMNS, "-")
        row.update(
            machine=str(machine), model=str(model), precision=str(precision), batch=str(batch),
            mode=mode, image=image_cell(best), fastest=str(best["runtime"]),
            **{"median ms": _f(best["latency_ms"]["median"], 3)},
        )  # fmt: skip
        if len(ranked) == 1:
            row["real?"] = "only one engine ran"
            rows.append(row)
            continue
        nxt = ranked[1]
        row["next"] = str(nxt["runtime"])
        if paired is not None:
            ratio, lo, hi, rounds = paired
            row["speedup"] = f"{ratio:.2f}x [{lo:.2f}, {hi:.2f}]"
            real = lo > 1 or hi < 1
            row["real?"] = (
                f"{'yes' if real else 'no'} (paired, {rounds} rounds: 95% CI of the speedup)"
            )
            rows.append(row)
            continue
        row["speedup"] = f"{per_image_ms(nxt) / per_image_ms(best):.2f}x (medians)"
        if mode == "throughput":  # request latencies' intervals say nothing of the rate
            row["real?"] = "not shown (throughput timed apart: no paired rounds)"
        else:
            a = (best.get("stability") or {}).get("median_ci95_ms")
            b = (nxt.get("stability") or {}).get("median_ci95_ms")
            if a and b:
                row["real?"] = (
                    "yes (intervals separate)" if a[1] < b[0] else "not shown (intervals overlap)"
                )
        rows.append(row)
    return rows


def reproduce_rows(report: Mapping[str, Any]) -> list[dict[str, str]]:
    """Per machine: the command that made its results and the versions that ran them."""
    rows = []
    for name, env in report["machines"].items():
        packages = env.get("packages") or {}
        versions = ", ".join(f"{k} {v}" for k, v in sorted(packages.items()))
        rows.append(
            {
                "machine": str(name),
                "command": str(env.get("command") or "(not recorded)"),
                "versions": f"python {env.get('python', '?')}, {versions}" if versions else "-",
            }
        )
    return rows


NOT_MEASURED_COLUMNS = (
    "machine",
    "model",
    "runtime",
    "precision",
    "batch",
    "image",
    "status",
    "why",
)


def split_result_rows(
    report: Mapping[str, Any],
) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """The measured rows, and the skipped or failed ones as (who, why): a reason is a sentence
    with a file name in it, and beside twenty numeric columns it made every row tall and the
    table wider than the page."""
    rows = result_rows(report)
    ok = [r for r in rows if r["status"] == "ok"]
    rest = [
        {**{k: r[k] for k in NOT_MEASURED_COLUMNS if k != "why"}, "why": r["note"]}
        for r in rows
        if r["status"] != "ok"
    ]
    return ok, rest
