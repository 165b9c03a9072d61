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


def check_record(record: object) -> dict[str, Any]:
    """The record itself when it has this version's required fields, else SchemaError."""
    if not isinstance(record, dict):
        raise SchemaError("a result record must be a JSON object")
    missing = [k for k in REQUIRED if k not in record]
    if missing:
        raise SchemaError(f"result record lacks {', '.join(missing)}")
    wrong = version_problem(record["schema_version"])
    if wrong:
        raise SchemaError(f"result record has {wrong}")
    if record["status"] not in STATUSES:
        raise SchemaError(f"result record has unknown status {record['status']!r}")
    if mode_of(record) not in MODES:
        raise SchemaError(f"result record has unknown mode {record.get('mode')!r}")
    if record["status"] == "ok":
        lat = record.get("latency_ms")
        if not isinstance(lat, dict) or any(k not in lat for k in LATENCY_FIELDS):
            raise SchemaError(f"ok record {record_key(record)} lacks latency_ms statistics")
    return record


# -- reading results.jsonl ----------------------------------------------------------------------
# A sweep killed mid-write leaves at most one broken line. Readers skip such a line with a
# warning and keep every good one; nothing here ever rewrites the file, so a bad line is never
# lost either. When a key appears twice (a re-run without --resume), the later record wins.


def read_records(path: str | Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Good records in file order (last one per key wins), and a warning per skipped line."""
    path = Path(path)
    records, skipped = scan_records(path)
    return records, [f"{path}:{n}: skipped a corrupt result line ({why})" for n, why in skipped]


def scan_records(path: Path) -> tuple[list[dict[str, Any]], list[tuple[int, str]]]:
    """Good records (last one per key wins) and (line number, why) for each skipped line."""
    by_key: dict[str, dict[str, Any]] = {}
    skipped: list[tuple[int, str]] = []
    if not path.exists():
        return [], skipped
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = check_record(json.loads(line))
            except (json.JSONDecodeError, SchemaError) as err:
                skipped.append(
                    (number, err.msg if isinstance(err, json.JSONDecodeError) else str(err))
                )
                continue
            by_key.pop(record_key(record), None)
            by_key[record_key(record)] = record
    return list(by_key.values()), skipped
