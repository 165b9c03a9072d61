"""Paired latency ratios between records timed together (an interleaved group of
`bench-runtimes run`), with a distribution-free 95% interval from the rounds.

Round i gives each job of a group the median of its iterations there; two jobs' medians pair up
round by round, and the ratios' median and its order-statistics interval say how much slower A
is than B, and whether the difference is real: an interval that excludes 1. Pairs are made
between engines (same model, precision, batch and image size) and between models (same engine,
precision, batch and image size). Records from different groups or machines are never paired:
their rounds are not the same moments.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from itertools import combinations
from typing import Any

from resnet_common.stats import paired_ratio


@dataclass(frozen=True)
class Ratio:
    machine: str
    kind: str  # "engines" or "models"
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


def paired_ratios(report: Mapping[str, Any]) -> list[Ratio]:
    """Every engine pair and model pair timed in the same interleaved group."""
    groups: dict[tuple[str, Any], list[Mapping[str, Any]]] = {}
    for record in report.get("records", []):
        if _rounds(record) is not None:
            groups.setdefault(_group(record), []).append(record)
    out: list[Ratio] = []
    for (machine, _), records in groups.items():
        for kind, same, differ in (
            ("engines", ("model", "precision", "batch", "image_size"), "runtime"),
            ("models", ("runtime", "precision", "batch", "image_size"), "model"),
        ):
            by_context: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
            for r in records:
                by_context.setdefault(tuple(r.get(k) for k in same), []).append(r)
            for context, members in by_context.items():
                for ra, rb in combinations(members, 2):
                    a, b = _rounds(ra), _rounds(rb)
                    if a is None or b is None:
                        continue
                    n = min(len(a), len(b))
                    found = paired_ratio(a[:n], b[:n])
                    if found is None:
                        continue
                    ratio, lo, hi = found
                    label = f"{context[0]} {context[1]} b{context[2]} {context[3]}px"
                    out.append(
                        Ratio(
                            machine, kind, label, str(ra[differ]), str(rb[differ]), ratio, lo, hi, n
                        )
                    )
    return out


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
