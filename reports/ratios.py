"""Paired latency ratios between records timed together (an interleaved group of
`bench-runtimes run`), with a distribution-free 95% interval from the rounds.

Round i gives each job of a group the median of its iterations there (a throughput-mode job:
its burst's wall time per inference); two jobs' figures pair up round by round, and the
ratios' median and its order-statistics interval say how much slower A is than B, and whether
the difference is real: an interval that excludes 1. Pairs are made between engines (same
model, precision, batch, image size and mode), between models (same engine, precision, batch,
image size and mode), between precisions of one engine (int8 / fp32, bf16 / fp32: same model,
batch, image size and mode; the lower precision is A, fp32 is B) and between the modes of one
engine (throughput / latency). Records from different groups or machines are never paired:
their rounds are not the same moments.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from itertools import combinations
from typing import Any

from resnet_common.records import mode_of
from resnet_common.stats import paired_ratio

# The pairs the report makes: (kind, fields the pair shares, the field that differs).
PAIR_KINDS = (
    ("engines", ("model", "precision", "batch", "image_size", "mode"), "runtime"),
    ("models", ("runtime", "precision", "batch", "image_size", "mode"), "model"),
    ("precisions", ("model", "runtime", "batch", "image_size", "mode"), "precision"),
    ("modes", ("model", "runtime", "precision", "batch", "image_size"), "mode"),
)
# Precisions from the most to the least exact: in a precision pair the less exact one is A.
PRECISION_ORDER = ("fp32", "fp16", "bf16", "int8", "int8-bf16")


@dataclass(frozen=True)
class Ratio:
    machine: str
    kind: str  # "engines", "models", "precisions" or "modes"
    context: str  # what the pair shares, e.g. "resnet50 fp32 b1 224px"
    a: str
    b: str
    ratio: float  # latency of a over latency of b (median of the per-round ratios)
    lo: float
    hi: float
    rounds: int

    @property
    def verdict(self) -> str:
        if self.lo > 1:
            return f"{self.b} faster ({self.ratio:.2f}x)"
        if self.hi < 1:
            return f"{self.a} faster ({1 / self.ratio:.2f}x)"
        return "no real difference"

    def to_dict(self) -> dict[str, Any]:
        return {
            "machine": self.machine,
            "kind": self.kind,
            "context": self.context,
            "a": self.a,
            "b": self.b,
            "ratio": self.ratio,
            "ci95": [self.lo, self.hi],
            "rounds": self.rounds,
            "verdict": self.verdict,
        }


def _rounds(record: Mapping[str, Any]) -> list[float] | None:
    inter = (record.get("timing") or {}).get("interleaved")
    if record.get("status") != "ok" or not isinstance(inter, dict):
        return None
    values = inter.get("round_medians_ms")
    return [float(v) for v in values] if isinstance(values, list) and values else None


def _group(record: Mapping[str, Any]) -> tuple[str, Any]:
    inter = record["timing"]["interleaved"]
    return str(record.get("machine", "")), inter.get("group")


def _field(record: Mapping[str, Any], name: str) -> Any:
    return mode_of(record) if name == "mode" else record.get(name)


def _context(same: tuple[str, ...], values: tuple[Any, ...]) -> str:
    """What a pair shares, e.g. "resnet50 fp32 b1 224px" (", throughput" when it is)."""
    shared = dict(zip(same, values, strict=True))
    words = [str(shared[k]) for k in ("model", "runtime", "precision") if k in shared]
    words += [f"b{shared['batch']}", f"{shared['image_size']}px"]
    text = " ".join(words)
    return f"{text} {shared['mode']}" if shared.get("mode", "latency") != "latency" else text


def _ordered(kind: str, a: Mapping[str, Any], b: Mapping[str, Any]) -> tuple[Any, Any]:
    """A precision pair puts the less exact precision first (int8 / fp32), a mode pair
    throughput first; other pairs keep the records' order."""
    if kind == "precisions":
        rank = {p: i for i, p in enumerate(PRECISION_ORDER)}
        if rank.get(str(a["precision"]), 99) < rank.get(str(b["precision"]), 99):
            return b, a
    if kind == "modes" and mode_of(a) == "latency":
        return b, a
    return a, b


def paired_ratios(report: Mapping[str, Any]) -> list[Ratio]:
    """Every engine pair and model pair timed in the same interleaved group."""
    groups: dict[tuple[str, Any], list[Mapping[str, Any]]] = {}
    for record in report.get("records", []):
        if _rounds(record) is not None:
            groups.setdefault(_group(record), []).append(record)
    out: list[Ratio] = []
    for (machine, _), records in groups.items():
        for kind, same, differ in PAIR_KINDS:
            by_context: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
            for r in records:
                by_context.setdefault(tuple(_field(r, k) for k in same), []).append(r)
            for context, members in by_context.items():
                for first, second in combinations(members, 2):
                    ra, rb = _ordered(kind, first, second)
                    found = pair(ra, rb)
                    if found is None:
                        continue
                    ratio, lo, hi, n = found
                    a, b = str(_field(ra, differ)), str(_field(rb, differ))
                    label = _context(same, context)
                    out.append(Ratio(machine, kind, label, a, b, ratio, lo, hi, n))
    return out


def pair(a: Mapping[str, Any], b: Mapping[str, Any]) -> tuple[float, float, float, int] | None:
    """(ratio, lo, hi, rounds) of a over b from their round figures, or None when they were not
    timed in the same interleaved group (or too few rounds)."""
    ra, rb = _rounds(a), _rounds(b)
    if ra is None or rb is None or _group(a) != _group(b):
        return None
    n = min(len(ra), len(rb))
    found = paired_ratio(ra[:n], rb[:n])
    return None if found is None else (*found, n)


def ratio_rows(report: Mapping[str, Any]) -> list[dict[str, str]]:
    """The table the report shows: one row per pair, with the verdict."""
    return [
        {
            "machine": r.machine,
            "pair of": r.kind,
            "shared": r.context,
            "A": r.a,
            "B": r.b,
            "A / B latency": f"{r.ratio:.3f}",
            "95% CI": f"[{r.lo:.3f}, {r.hi:.3f}]",
            "rounds": str(r.rounds),
            "verdict": r.verdict,
        }
        for r in paired_ratios(report)
    ]


PRECISIONS_INTRO = (
    "Each lower precision against the most exact one run of the same model, engine, batch, "
    "mode and image size (fp32 where it ran): the latency ratio A / B (below 1: A is faster). "
    "Paired when both were timed together (--interleave): the median of the per-round "
    "ratios with its 95% interval, a real difference when the interval excludes 1. Timed "
    "apart, only the medians' ratio is known, with no interval. The accuracy is A's relative "
    "L2 error against torch fp64 on the fp32 graph (parity's)."
)
_PRECISION_SHARED = ("machine", "model", "runtime", "batch", "image_size", "mode")


def precision_rows(report: Mapping[str, Any]) -> list[dict[str, str]]:
    """Per model, engine, batch, mode and image size with two precisions or more: each less
    exact precision over the most exact one (int8 / fp32, bf16 / fp32), paired where they were
    timed together, else the two medians' ratio said as unpaired."""
    from reports.fastest import accuracy, per_image_ms

    groups: dict[tuple[Any, ...], dict[str, Mapping[str, Any]]] = {}
    for r in report.get("records", []):
        if r.get("status") == "ok":
            key = tuple(_field(r, k) for k in _PRECISION_SHARED)
            groups.setdefault(key, {})[str(r["precision"])] = r
    rank = {p: i for i, p in enumerate(PRECISION_ORDER)}
    rows = []
    for key, by_precision in groups.items():
        if len(by_precision) < 2:
            continue
        order = sorted(by_precision, key=lambda p: (rank.get(p, len(rank)), p))
        b = by_precision[order[0]]
        machine, model, runtime, batch, size, mode = key
        for precision in order[1:]:
            a = by_precision[precision]
            found = pair(a, b)
            if found is not None:
                ratio, lo, hi, rounds = found
                interval, how = f"[{lo:.3f}, {hi:.3f}]", f"paired, {rounds} rounds"
                real = lo > 1 or hi < 1
            else:
                ratio = per_image_ms(a) / per_image_ms(b)
                interval, how, real = "-", "medians, timed apart", None
            faster = f"{precision} {1 / ratio:.2f}x faster" if ratio < 1 else (
                f"{order[0]} {ratio:.2f}x faster"
            )  # fmt: skip
            verdict = (
                f"{faster} (not shown real: timed apart)"
                if real is None
                else (faster if real else f"no real difference ({faster} by the median)")
            )
            rel = accuracy(a)[0]
            rows.append(
                {
                    "machine": str(machine),
                    "model": str(model),
                    "runtime": str(runtime),
                    "batch": str(batch),
                    "mode": str(mode),
                    "image": f"{size}x{size}" if size else "-",
                    "A / B": f"{precision} / {order[0]}",
                    "latency ratio": f"{ratio:.3f}",
                    "95% CI": interval,
                    "how": how,
                    "verdict": verdict,
                    "accuracy of A": f"relL2 {rel:.1e}" if rel is not None else "-",
                }
            )
    return rows
