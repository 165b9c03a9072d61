"""Every field a report reads, checked for its type before anything is rendered.

`resnet_common.records.check_record` checks what makes a line a record at all (its version, key
and status); a record that passes it may still be hand-edited: a median of "abc", a batch of
1e300, NaN where the writer puts null, a `stability` that is a list. Rendering met such a value
deep inside a table or a plot and died there, some of the report already written. Here each
record, environment and LoadGen row is checked field by field against the shape
docs/report-schema.md documents, and the first wrong field is named with its file and line
(`render` and `compare` refuse in one line, exit 2, before writing anything). Fields a report
never reads are not checked; unknown fields are allowed (a newer writer of the same version).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from resnet_common.errors import shown
from resnet_common.records import LATENCY_FIELDS, NUMBER_FIELDS, SchemaError

# Past this a number is a typo or an attack, not a measurement (1e15 ms is 30,000 years; the
# cost model refuses 1e12 MACs an image): matplotlib overflows on axes spanning 1e308.
MAX_MAGNITUDE = 1e15

Problem = tuple[str, str]  # (field path, what is wrong with it)
Check = Callable[[object, str], Problem | None]


class RecordError(SchemaError):
    """A record, environment or LoadGen row with a field of the wrong type: exit 2."""


def _what(value: object) -> str:
    if value is None:
        return "null"
    return f"{shown(value, 40)} (a {type(value).__name__})"


def number(minimum: float = -MAX_MAGNITUDE, maximum: float = MAX_MAGNITUDE) -> Check:
    """A finite number in [minimum, maximum] (an integer counts; a boolean does not)."""

    def check(value: object, path: str) -> Problem | None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return path, f"is {_what(value)}, expected a number"
        if isinstance(value, float) and not math.isfinite(value):
            return path, f"is {value}, expected a finite number (results write NaN as null)"
        if not minimum <= value <= maximum:
            return path, f"is {shown(value, 40)}, expected a number in [{minimum:g}, {maximum:g}]"
        return None

    return check


def positive() -> Check:
    """A finite number above 0: what a ratio or a per-image time divides by."""
    inner = number(0.0)

    def check(value: object, path: str) -> Problem | None:
        wrong = inner(value, path)
        if wrong is None and value == 0:
            return path, "is 0, expected a number above 0"
        return wrong

    return check


def integer(minimum: int = 0) -> Check:
    def check(value: object, path: str) -> Problem | None:
        if isinstance(value, bool) or not isinstance(value, int):
            return path, f"is {_what(value)}, expected an integer"
        if not minimum <= value <= MAX_MAGNITUDE:
            return path, f"is {shown(value, 40)}, expected an integer in [{minimum}, 1e15]"
        return None

    return check


def text(value: object, path: str) -> Problem | None:
    return None if isinstance(value, str) else (path, f"is {_what(value)}, expected a string")


def boolean(value: object, path: str) -> Problem | None:
    return None if isinstance(value, bool) else (path, f"is {_what(value)}, expected true/false")


def scalar(value: object, path: str) -> Problem | None:
    """A string or an integer: what an interleaved group's id is."""
    if isinstance(value, str):
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return integer(-(10**15))(value, path)
    return path, f"is {_what(value)}, expected a string or an integer"


def nullable(inner: Check) -> Check:
    def check(value: object, path: str) -> Problem | None:
        return None if value is None else inner(value, path)

    return check


def items(inner: Check, *, length: int | None = None) -> Check:
    """A list of values that each pass `inner` (of exactly `length` when given)."""

    def check(value: object, path: str) -> Problem | None:
        if not isinstance(value, list):
            return path, f"is {_what(value)}, expected a list"
        if length is not None and len(value) != length:
            return path, f"has {len(value)} values, expected {length}"
        for i, v in enumerate(value):
            wrong = inner(v, f"{path}[{i}]")
            if wrong:
                return wrong
        return None

    return check


def mapping(
    fields: Mapping[str, Check], *, required: tuple[str, ...] = (), values: Check | None = None
) -> Check:
    """An object whose listed fields pass their checks (absent is fine unless required);
    `values` checks every other value when given."""

    def check(value: object, path: str) -> Problem | None:
        if not isinstance(value, dict):
            return path, f"is {_what(value)}, expected an object"
        for name in required:
            if name not in value:
                return f"{path}.{name}" if path else name, "is missing"
        for name, v in value.items():
            inner = fields.get(name, values)
            if inner is not None:
                wrong = inner(v, f"{path}.{name}" if path else str(name))
                if wrong:
                    return wrong
        return None

    return check


_OPT_TEXT = nullable(text)
_OPT_NUMBER = nullable(number())
_OPT_AMOUNT = nullable(number(0.0))
_OPT_FRACTION = nullable(number(0.0, 1.0))
_OPT_BOOL = nullable(boolean)

_PARITY_METRICS = {
    **dict.fromkeys(("rel_l2", "relative_l2", "max_abs", "max_rel", "rtol", "atol"), _OPT_AMOUNT),
    **dict.fromkeys(("top1", "top5", "decisive_top1", "top1_agreement"), _OPT_FRACTION),
    "cosine": _OPT_NUMBER,
    "passed": _OPT_BOOL,
    "ok": _OPT_BOOL,
    "error": _OPT_TEXT,
}

RECORD = mapping(
    {
        **dict.fromkeys(("model", "runtime", "precision", "machine"), text),
        "batch": integer(1),
        "image_size": integer(0),
        **dict.fromkeys(
            ("mode", "reason", "device", "traceback", "peak_host_rss_mb_scope"), _OPT_TEXT
        ),
        "depth": nullable(integer(0)),
        **dict.fromkeys(("macs", "params"), _OPT_AMOUNT),
        "latency_ms": nullable(
            mapping(dict.fromkeys(LATENCY_FIELDS, number(0.0)), required=LATENCY_FIELDS)
        ),
        "stability": nullable(
            mapping(
                {
                    "cov": _OPT_AMOUNT,
                    "median_ci95_ms": nullable(items(number(0.0), length=2)),
                    "median_ci_exact": _OPT_BOOL,
                    "unstable": _OPT_BOOL,
                }
            )
        ),
        **dict.fromkeys(NUMBER_FIELDS, _OPT_AMOUNT),
        "host_rss_load_mb": nullable(number()),  # a growth: the load may free more than it takes
        "peak": nullable(
            mapping({"gflops": _OPT_AMOUNT, "precision": _OPT_TEXT, "fraction": _OPT_AMOUNT})
        ),
        "load": nullable(
            mapping(
                {
                    "usable_cores": _OPT_AMOUNT,
                    "threads": _OPT_AMOUNT,
                    "during": nullable(mapping({}, values=nullable(number()))),
                    "busy": _OPT_BOOL,
                    "oversubscribed": _OPT_BOOL,
                    "scope": _OPT_TEXT,
                }
            )
        ),
        "timing": nullable(
            mapping(
                {
                    "interleaved": nullable(
                        mapping({"group": nullable(scalar), "round_medians_ms": items(positive())})
                    )
                }
            )
        ),
        "runner": nullable(
            mapping(dict.fromkeys(("device", "precision_note", "precision_ran"), _OPT_TEXT))
        ),
        "parity": nullable(
            mapping({**_PARITY_METRICS, "metrics": nullable(mapping(_PARITY_METRICS))})
        ),
        "throughput": nullable(mapping({})),
        "interrupted": nullable(mapping({})),
    }
)

ENVIRONMENT = mapping(
    {
        **dict.fromkeys(("machine", "os", "python", "command", "collected_at"), _OPT_TEXT),
        "cpu": nullable(
            mapping(
                {
                    "model": _OPT_TEXT,
                    "usable": nullable(integer(0)),
                    "logical": nullable(integer(0)),
                    "flags": nullable(items(text)),
                }
            )
        ),
        "gpus": nullable(items(mapping({"name": _OPT_TEXT, "driver": _OPT_TEXT}))),
        "packages": nullable(mapping({}, values=_OPT_TEXT)),
        "matmul_peaks": nullable(mapping({}, values=nullable(mapping({"gflops": _OPT_AMOUNT})))),
        "matmul_peak_gflops": _OPT_AMOUNT,
    }
)

LOADGEN_ROW = mapping(
    {
        **dict.fromkeys(("model", "runtime", "precision", "scenario", "machine"), text),
        **dict.fromkeys(("result", "error"), _OPT_TEXT),
        "headline": nullable(mapping({"metric": _OPT_TEXT, "value": _OPT_NUMBER})),
        "settings": nullable(mapping({})),
    },
    required=("model", "runtime", "precision", "scenario"),
)


def problem(check: Check, value: object) -> str | None:
    """The first wrong field of `value` as "field X is ..., expected ...", or None."""
    found = check(value, "")
    if found is None:
        return None
    path, why = found
    return f"field {path} {why}" if path else f"the value {why}"


def record_problem(record: Mapping[str, Any]) -> str | None:
    """What is wrong with a record (of a version this tool reads) for a report, or None. An ok
    record's median is a divisor (per-image time, speedups): above 0."""
    wrong = problem(RECORD, record)
    if wrong is None and record.get("status") == "ok":
        return problem(mapping({"latency_ms": mapping({"median": positive()})}), record)
    return wrong


def check_record_fields(record: Mapping[str, Any], *, where: str) -> None:
    wrong = record_problem(record)
    if wrong:
        raise RecordError(f"{where}: {wrong}; fix or remove that record")
