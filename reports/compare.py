"""Two reports -> per-result latency ratios, and whether NEW regressed beyond a threshold.

Results match on (model, runtime, precision, batch, image size) and, when both reports name the
same machines, on the machine too; with one machine on each side, the machine is ignored (the
usual "same sweep, before and after" case on a CI runner whose hostname changes). A result ok in
OLD that NEW has as failed or skipped, or lacks, is listed too and fails the comparison.

A slowdown is a regression when NEW's median is slower than OLD's by more than the threshold
*and* the two medians' 95% intervals separate (NEW's lower bound above OLD's upper bound): on a
noisy machine two runs of the same code differ by more than any useful threshold, and gating on
medians alone fails CI on noise. Records without intervals fall back to the medians.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from resnet_common.records import record_key


@dataclass(frozen=True)
class Change:
    key: str
    machine: str
    old_ms: float
    new_ms: float
    old_ci: tuple[float, float] | None = None  # 95% interval of the median, ms
    new_ci: tuple[float, float] | None = None

    @property
    def ratio(self) -> float:
        return self.new_ms / self.old_ms if self.old_ms > 0 else float("inf")

    @property
    def separated(self) -> bool | None:
        """Whether NEW's interval lies wholly above OLD's; None without both intervals."""
        if self.old_ci is None or self.new_ci is None:
            return None
        return self.new_ci[0] > self.old_ci[1]


def _ci(record: Mapping[str, Any]) -> tuple[float, float] | None:
    ci = (record.get("stability") or {}).get("median_ci95_ms")
    if isinstance(ci, list) and len(ci) == 2 and all(isinstance(v, (int, float)) for v in ci):
        return float(ci[0]), float(ci[1])
    return None


@dataclass(frozen=True)
class Lost:
    """A result that was ok in OLD and is not ok in NEW: failed, skipped, or missing."""

    key: str
    machine: str
    new_status: str  # "failed", "skipped" or "missing"
    reason: str | None

    @property
    def describe(self) -> str:
        why = f": {self.reason}" if self.reason else ""
        return f"ok -> {self.new_status}{why}"


def _index(
    report: Mapping[str, Any], with_machine: bool, *, ok_only: bool = True
) -> dict[tuple[str, str], Any]:
    return {
        (r["machine"] if with_machine else "", record_key(r)): r
        for r in report["records"]
        if r["status"] == "ok" or not ok_only
    }


def _with_machine(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    return not (len(old["machines"]) == 1 and len(new["machines"]) == 1)


def lost(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Lost]:
    """Results ok in OLD that NEW has as failed or skipped, or does not have at all: a CI gate
    must not pass because the slow engine stopped running."""
    with_machine = _with_machine(old, new)
    before, after = _index(old, with_machine), _index(new, with_machine, ok_only=False)
    out = []
    for key in sorted(before):
        n = after.get(key)
        if n is None:
            out.append(Lost(key[1], before[key]["machine"], "missing", None))
        elif n["status"] != "ok":
            out.append(Lost(key[1], n["machine"], n["status"], n.get("reason")))
    return out


def compare(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Change]:
    """Median-latency changes for every result present and ok in both reports."""
    with_machine = _with_machine(old, new)
    before, after = _index(old, with_machine), _index(new, with_machine)
    changes = []
    for key in sorted(before.keys() & after.keys()):
        o, n = before[key], after[key]
        changes.append(
            Change(
                key[1],
                n["machine"],
                o["latency_ms"]["median"],
                n["latency_ms"]["median"],
                _ci(o),
                _ci(n),
            )
        )
    return changes


def regressions(changes: list[Change], threshold: float) -> list[Change]:
    """Changes where NEW is slower than OLD by more than `threshold` (0.05 = 5%) and the
    intervals separate (the medians alone where a record has no interval)."""
    return [c for c in changes if c.ratio > 1 + threshold and c.separated is not False]


def within_noise(changes: list[Change], threshold: float) -> list[Change]:
    """Slower past the threshold by the medians, but with overlapping intervals: not gated."""
    return [c for c in changes if c.ratio > 1 + threshold and c.separated is False]
