"""The verdict a user wants: for each model, the fastest configuration (engine x precision x
batch x mode) whose accuracy is inside a budget, how much faster it is than onnxruntime fp32,
and how busy the machine was while it was measured.

Accuracy is what parity measured against torch in float64: on the fp32 graph for bf16, int8 and
int8-bf16 (so the loss of leaving fp32 is what is judged), on the file itself for fp32 and
fp16. The default budget is "parity passed" (each precision's own tolerance:
runtimes.parity.judge); a stricter one bounds the relative L2 error and the top-1 agreement
(on decisive samples where parity found any, else on all). Two questions get an answer each:
the lowest latency at batch 1 (latency mode: one request at a time) and the highest throughput
(any batch, either mode). The speedup is over `ort-cpu` fp32 in latency mode at the same batch,
paired round by round when both were timed in one interleaved group (the only comparison a
loaded machine does not skew), else the two medians' ratio, said as unpaired.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from resnet_common.records import mode_of

Record = Mapping[str, Any]
BASELINE = ("ort-cpu", "fp32")


@dataclass(frozen=True)
class Budget:
    """How far from fp32 a configuration may be: None for both bounds means "parity passed"."""

    max_rel_l2: float | None = None
    min_top1: float | None = None

    @property
    def by_parity(self) -> bool:
        return self.max_rel_l2 is None and self.min_top1 is None

    def describe(self) -> str:
        if self.by_parity:
            return "parity passed (each precision's own tolerance against torch fp64)"
        parts = []
        if self.max_rel_l2 is not None:
            parts.append(f"rel. L2 <= {self.max_rel_l2:g}")
        if self.min_top1 is not None:
            parts.append(f"top-1 agreement >= {self.min_top1:.1%}")
        return " and ".join(parts) + " against torch fp64 on the fp32 graph"

    def admits(self, record: Record) -> bool:
        rel, top1 = accuracy(record)
        parity = record.get("parity") or {}
        if rel is None:
            return False
        if self.by_parity:
            return parity.get("passed") is True
        if self.max_rel_l2 is not None and rel > self.max_rel_l2:
            return False
        return not (self.min_top1 is not None and (top1 is None or top1 < self.min_top1))


def accuracy(record: Record) -> tuple[float | None, float | None]:
    """(relative L2, top-1 agreement) from the record's parity: top-1 on decisive samples
    where there were any, else on all samples."""
    parity = record.get("parity") or {}
    if "error" in parity or not isinstance(parity.get("rel_l2"), (int, float)):
        return None, None
    top1 = parity.get("decisive_top1")
    if not isinstance(top1, (int, float)):
        top1 = parity.get("top1")
    return float(parity["rel_l2"]), float(top1) if isinstance(top1, (int, float)) else None


def configuration(record: Record) -> str:
    """engine · precision · batch · mode, and what ran when the engine said it was not that."""
    text = f"{record['runtime']} · {record['precision']} · b{record['batch']} · {mode_of(record)}"
    note = (record.get("runner") or {}).get("precision_note")
    return f"{text} (ran {(record.get('runner') or {}).get('precision_ran')})" if note else text


def per_image_ms(record: Record) -> float:
    """Wall time per image: the median latency over the batch in latency mode, the inverse
    of the measured throughput in throughput mode."""
    ips = record.get("throughput_ips")
    if mode_of(record) == "throughput" and isinstance(ips, (int, float)) and ips > 0:
        return 1e3 / float(ips)
    return float(record["latency_ms"]["median"]) / float(record["batch"])


def _baseline(records: list[Record], batch: int) -> Record | None:
    for r in records:
        same = (r["runtime"], r["precision"]) == BASELINE and r["batch"] == batch
        if same and mode_of(r) == "latency":
            return r
    return None


def speedup(best: Record, base: Record | None) -> str:
    """How much faster `best` is than `base` per image, paired when they were timed together."""
    from reports.ratios import pair

    if base is None:
        return "-"
    if base is best:
        return "1.00x (it is the baseline)"
    if base["batch"] == best["batch"]:
        found = pair(base, best)  # per-inference figures of one batch: base / best = speedup
        if found is not None:
            ratio, lo, hi, rounds = found
            return f"{ratio:.2f}x [{lo:.2f}, {hi:.2f}] paired, {rounds} rounds"
    return f"{per_image_ms(base) / per_image_ms(best):.2f}x (medians, unpaired)"


FASTEST_COLUMNS = (
    "machine",
    "model",
    "image",
    "goal",
    "fastest within budget",
    "value",
    "accuracy vs fp32",
    "vs ort-cpu fp32 (same batch)",
    "load",
)


def load_cell(record: Record) -> str:
    load = record.get("load") or {}
    during = load.get("during") or {}
    others = during.get("others_cores")
    if others is None:
        return "not recorded"
    text = f"others {others:.1f} of {load.get('usable_cores')} cores"
    return text + (", oversubscribed" if load.get("oversubscribed") else "")


def fastest_rows(report: Mapping[str, Any], budget: Budget | None = None) -> list[dict[str, str]]:
    """Per machine, model and image size: the lowest batch-1 latency and the highest
    throughput within `budget` (default: parity passed)."""
    budget = budget or Budget()
    groups: dict[tuple[Any, ...], list[Record]] = {}
    for r in report["records"]:
        if r["status"] == "ok":
            groups.setdefault((r["machine"], r["model"], r.get("image_size")), []).append(r)
    rows = []
    for (machine, model, size), records in groups.items():
        inside = [r for r in records if budget.admits(r)]
        latency = [r for r in inside if mode_of(r) == "latency" and r["batch"] == 1]
        picks: list[tuple[str, Record | None, str]] = []
        if latency:
            quick = min(latency, key=lambda r: r["latency_ms"]["median"])
            picks.append(
                ("lowest latency, batch 1", quick, f"{quick['latency_ms']['median']:.3f} ms")
            )
        if inside:
            most = max(inside, key=lambda r: float(r.get("throughput_ips") or 0.0))
            picks.append(("highest throughput", most, f"{most['throughput_ips']:,.1f} img/s"))
        if not picks:
            picks.append(("-", None, "nothing within the budget"))
        for goal, best, value in picks:
            row = dict.fromkeys(FASTEST_COLUMNS, "-")
            row.update(machine=str(machine), model=str(model), image=f"{size}x{size}", goal=goal)
            row["value"] = value
            if best is not None:
                rel, top1 = accuracy(best)
                row["fastest within budget"] = configuration(best)
                row["accuracy vs fp32"] = (
                    f"relL2 {rel:.1e}" + (f", top-1 {top1:.1%}" if top1 is not None else "")
                    if rel is not None
                    else "-"
                )
                row["vs ort-cpu fp32 (same batch)"] = speedup(
                    best, _baseline(records, best["batch"])
                )
                row["load"] = load_cell(best)
            rows.append(row)
    return rows


def load_caveat(report: Mapping[str, Any]) -> str:
    """A sentence for beside the verdict when the machine was busy while the results were
    timed (other processes kept half a core or more busy), or oversubscribed; "" when quiet
    or not recorded."""
    ok = [r for r in report["records"] if r["status"] == "ok" and r.get("load")]
    if not ok:
        return ""
    others = [
        float(x)
        for r in ok
        if (x := ((r["load"].get("during") or {}).get("others_cores"))) is not None
    ]
    loads = [
        float(x)
        for r in ok
        if (x := ((r["load"].get("during") or {}).get("loadavg_1m_mean"))) is not None
    ]
    busy = [r for r in ok if r["load"].get("busy")]
    over = [r for r in ok if r["load"].get("oversubscribed")]
    if not busy and not over:
        return ""
    cores = ok[0]["load"].get("usable_cores")
    parts = [
        f"The machine was busy while these results were timed: other processes kept "
        f"{min(others):.1f} to {max(others):.1f} of its {cores} cores busy"
        if others
        else "The machine was busy while these results were timed"
    ]
    if loads:
        parts[0] += f" (load average {min(loads):.1f} to {max(loads):.1f})"
    if over:
        parts.append(
            f"{len(over)} of {len(ok)} results ran more threads than there were free cores "
            "(oversubscribed)"
        )
    parts.append(
        'timings under such load move from run to run, and a "real" difference called here '
        "may not hold on a quiet machine; rerun there before relying on it"
    )
    return "; ".join(parts) + "."
