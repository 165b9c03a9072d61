"""The result record: its versioned shape, its key, and the files of a result folder.

A record is one (model, runtime, precision, batch, image size, mode) on one machine. `runtimes`
makes records and reads its own results file back to resume; `reports` reads them: both import
the shape from here, so neither imports the other (docs/report-schema.md documents it). Bump
SCHEMA_VERSION on any change a reader would notice; readers refuse records of versions they do
not know. Version 2 added the mode to the key (a throughput-mode record is another result than
the latency-mode one of the same job), the load the machine was under, and the fraction of the
precision's own peak; version 1 records are still read, as latency mode with no load recorded.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from resnet_common.errors import UserError

SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)
STATUSES = ("ok", "failed", "skipped")
MODES = ("latency", "throughput")
KEY_FIELDS = ("model", "runtime", "precision", "batch", "image_size", "mode")
# What a key field means when a record lacks it: version 1 records were all latency mode.
KEY_DEFAULTS: dict[str, Any] = {"mode": "latency"}
LATENCY_FIELDS = ("mean", "median", "p90", "p95", "p99", "min", "max", "std")
REQUIRED = ("model", "runtime", "precision", "batch", "image_size", "schema_version", "status")

# trtexec: "coefficient of variance > 2.5%" -> unstable. Timing flags records with it and the
# report shows it; both import it from here.
UNSTABLE_COV = 0.025

RESULTS_FILE = "results.jsonl"
INFLIGHT_FILE = "inflight.json"  # the job being measured; left behind when the process dies
CRASH_FILE = "crash.log"  # faulthandler's stack when an engine crashes the process
ENVIRONMENT_FILE = "environment.json"
LOADGEN_FILE = "loadgen.jsonl"  # `bench-runtimes loadgen` results, one test a line
# The files of a result folder that commands append to, read back or rewrite in place.
FOLDER_FILES = (RESULTS_FILE, INFLIGHT_FILE, CRASH_FILE, ENVIRONMENT_FILE, LOADGEN_FILE)


class SchemaError(UserError):
    """A record or report that is not of this schema version: exit 2."""


def key_fields(record: Mapping[str, Any]) -> dict[str, Any]:
    """The key fields of a record, a version 1 record's missing mode as "latency"."""
    return {k: record[k] if k in record else KEY_DEFAULTS[k] for k in KEY_FIELDS}


def mode_of(record: Mapping[str, Any]) -> str:
    return str(record.get("mode") or KEY_DEFAULTS["mode"])


def record_key(record: Mapping[str, Any]) -> str:
    """The identity `--resume` skips on and `compare` matches on (machine apart)."""
    return "|".join(str(v) for v in key_fields(record).values())


def new_record(
    *,
    model: str,
    runtime: str,
    precision: str,
    batch: int,
    image_size: int,
    status: str,
    reason: str | None = None,
    mode: str = "latency",
    **fields: Any,
) -> dict[str, Any]:
    """A record with the key fields first; measurement fields follow for status "ok"."""
    if status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    record: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "model": model,
        "runtime": runtime,
        "precision": precision,
        "batch": batch,
        "image_size": image_size,
        "mode": mode,
        "status": status,
        "reason": reason,
    }
    record.update(fields)
    return record


def version_problem(version: object) -> str | None:
    """What is wrong with a `schema_version` value, or None when this tool reads it. A string
    "1" is not version 1: saying "schema version 1, this tool reads version 1" helps no one."""
    readable = " or ".join(str(v) for v in READABLE_VERSIONS)
    if isinstance(version, bool) or not isinstance(version, int):
        shown = "none" if version is None else f"{version!r} (a {type(version).__name__})"
        return f"schema_version {shown}, not the integer {readable} this tool reads"
    if version not in READABLE_VERSIONS:
        return f"schema version {version}, this tool reads version {readable}"
    return None


# The fields a reader computes with, and the numbers they must be where present (None allowed:
# a NaN is written as null). A hand-edited "batch": "8" or "throughput_ips": [1] is refused here,
# by name, instead of crashing a report half written.
NUMBER_FIELDS = (
    "throughput_ips",
    "gflops",
    "load_time_s",
    "first_inference_ms",
    "peak_host_rss_mb",
    "peak_device_mb",
    "host_rss_load_mb",
)
TEXT_KEY_FIELDS = ("model", "runtime", "precision")
COUNT_KEY_FIELDS = (("batch", 1), ("image_size", 0))  # 0: a model that did not resolve


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def key_problem(record: Mapping[str, Any]) -> str | None:
    """What is wrong with a record's key fields (text names, positive integer sizes, a known
    mode), or None."""
    from resnet_common.errors import shown

    for name in TEXT_KEY_FIELDS:
        if name in record and not isinstance(record[name], str):
            return f"{name} {shown(record[name], 30)} (a {type(record[name]).__name__}, not text)"
    for name, least in COUNT_KEY_FIELDS:
        value = record.get(name)
        if name in record and not (
            isinstance(value, int) and not isinstance(value, bool) and least <= value < 2**63
        ):
            return f"{name} {shown(value, 30)}, not an integer >= {least}"
    if mode_of(record) not in MODES:
        return f"unknown mode {shown(record.get('mode'), 30)}"
    return None


def check_record(record: object) -> dict[str, Any]:
    """The record itself when it has this version's required fields, of the types readers
    compute with, else SchemaError."""
    from resnet_common.errors import shown

    if not isinstance(record, dict):
        raise SchemaError("a result record must be a JSON object")
    missing = [k for k in REQUIRED if k not in record]
    if missing:
        raise SchemaError(f"result record lacks {', '.join(missing)}")
    wrong = version_problem(record["schema_version"])
    if wrong:
        raise SchemaError(f"result record has {wrong}")
    if not isinstance(record["status"], str) or record["status"] not in STATUSES:
        raise SchemaError(f"result record has unknown status {shown(record['status'], 30)}")
    wrong = key_problem(record)
    if wrong:
        raise SchemaError(f"result record has {wrong}")
    if record.get("reason") is not None and not isinstance(record["reason"], str):
        raise SchemaError(f"result record {record_key(record)} has a reason that is not text")
    for name in NUMBER_FIELDS:
        if record.get(name) is not None and not _is_number(record[name]):
            raise SchemaError(
                f"result record {record_key(record)} has {name} {shown(record[name], 30)}, "
                "not a number"
            )
    if record["status"] == "ok":
        lat = record.get("latency_ms")
        if not isinstance(lat, dict) or any(k not in lat for k in LATENCY_FIELDS):
            raise SchemaError(f"ok record {record_key(record)} lacks latency_ms statistics")
        bad = [k for k in LATENCY_FIELDS if lat[k] is not None and not _is_number(lat[k])]
        if bad:
            raise SchemaError(
                f"ok record {record_key(record)} has latency_ms.{bad[0]} "
                f"{shown(lat[bad[0]], 30)}, not a number"
            )
    return record


# -- reading results.jsonl ----------------------------------------------------------------------
# A sweep killed mid-write leaves at most one broken line. Readers skip such a line with a
# warning and keep every good one; nothing here ever rewrites the file, so a bad line is never
# lost either. When a key appears twice (a re-run without --resume), the later record wins.


def read_records(
    path: str | Path, *, strict: bool = False
) -> tuple[list[dict[str, Any]], list[str]]:
    """Good records in file order (last one per key wins), and a warning per skipped line.
    `strict` (what `run --resume` reads before appending): only a line a kill cut short is
    skipped; any other bad line is a SchemaError naming it."""
    path = Path(path)
    records, skipped = scan_records(path, strict=strict)
    return records, [f"{path}:{n}: skipped a corrupt result line ({why})" for n, why in skipped]


# A record is a few KB; an interleaved one timed for a day (runtimes.bounds.MAX_SECONDS) holds
# its 864,000 round medians, about 20 MB.
MAX_LINE_BYTES = 32 * 2**20
MAX_RECORD_DEPTH = 8
_STRICT = (
    "not what a killed run leaves, so --resume will not append after it: mend or remove "
    "that line, or start again with --overwrite"
)  # a record nests dicts three levels deep


def _too_deep(value: object, limit: int) -> bool:
    """Whether `value` nests past `limit` levels (walked without recursion)."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item if isinstance(v, dict | list))
    return False


def scan_records(
    path: Path, *, strict: bool = False
) -> tuple[list[dict[str, Any]], list[tuple[int, str]]]:
    """Good records (last one per key wins) and (line number, why) for each skipped line.

    Each line is read bounded: a line past MAX_LINE_BYTES, nested past MAX_RECORD_DEPTH levels
    or holding an integer of thousands of digits (resnet_common.documents' JSON parser) is
    skipped like a line a kill cut short, never parsed whole; with `strict`, refused (a
    SchemaError naming the file and line): only a line that is not JSON at all is what a kill
    leaves."""
    from resnet_common.documents import DocumentError, parse_json

    by_key: dict[str, dict[str, Any]] = {}
    skipped: list[tuple[int, str]] = []
    if not path.exists():
        return [], skipped
    with open(path, "rb") as f:
        for number, raw in enumerate(iter(lambda: f.readline(MAX_LINE_BYTES + 1), b""), 1):
            if len(raw) > MAX_LINE_BYTES:
                why = f"a line longer than {MAX_LINE_BYTES:,} bytes"
                if strict:
                    raise SchemaError(f"{path}:{number}: {why}; {_STRICT}")
                skipped.append((number, why))
                while raw and not raw.endswith(b"\n"):  # the rest of that line
                    raw = f.readline(MAX_LINE_BYTES + 1)
                continue
            line = raw.decode("utf-8", errors="replace")
            if not line.strip():
                continue
            try:
                parsed = parse_json(line, f"line {number}")
                if _too_deep(parsed, MAX_RECORD_DEPTH):
                    raise SchemaError(f"nested past {MAX_RECORD_DEPTH} levels")
                record = check_record(parsed)
            except (DocumentError, SchemaError) as err:
                why = str(err).removeprefix(f"line {number}: ")
                if strict and not isinstance(err.__context__, json.JSONDecodeError):
                    raise SchemaError(f"{path}:{number}: {why}; {_STRICT}") from None
                skipped.append((number, why))
                continue
            by_key.pop(record_key(record), None)
            by_key[record_key(record)] = record
    return list(by_key.values()), skipped
