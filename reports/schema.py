"""The versioned shapes of a result record and of a report (documented in docs/report-schema.md).

A record is one (model, runtime, precision, batch, image size) on one machine; a report is the
records of one or more result folders plus each folder's environment, keyed by machine. Bump
SCHEMA_VERSION on any change a reader would notice; `compare` refuses reports of another version.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from resnet_common.errors import UserError

SCHEMA_VERSION = 1
REPORT_KIND = "bench-runtimes-report"
STATUSES = ("ok", "failed", "skipped")
KEY_FIELDS = ("model", "runtime", "precision", "batch", "image_size")
LATENCY_FIELDS = ("mean", "median", "p90", "p95", "p99", "min", "max", "std")
REQUIRED = (*KEY_FIELDS, "schema_version", "status")

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


def record_key(record: Mapping[str, Any]) -> str:
    """The identity `--resume` skips on and `compare` matches on (machine apart)."""
    return "|".join(str(record[k]) for k in KEY_FIELDS)


def new_record(
    *,
    model: str,
    runtime: str,
    precision: str,
    batch: int,
    image_size: int,
    status: str,
    reason: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """A record with the key fields first; measurement fields follow for status "ok"."""
    if status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
    record: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "model": model,
        "runtime": runtime,
        "precision": precision,
        "batch": batch,
        "image_size": image_size,
        "status": status,
        "reason": reason,
    }
    record.update(fields)
    return record


def version_problem(version: object) -> str | None:
    """What is wrong with a `schema_version` value, or None when this tool reads it. A string
    "1" is not version 1: saying "schema version 1, this tool reads version 1" helps no one."""
    if isinstance(version, bool) or not isinstance(version, int):
        shown = "none" if version is None else f"{version!r} (a {type(version).__name__})"
        return f"schema_version {shown}, not the integer {SCHEMA_VERSION} this tool reads"
    if version != SCHEMA_VERSION:
        return f"schema version {version}, this tool reads version {SCHEMA_VERSION}"
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
    if record["status"] == "ok":
        lat = record.get("latency_ms")
        if not isinstance(lat, dict) or any(k not in lat for k in LATENCY_FIELDS):
            raise SchemaError(f"ok record {record_key(record)} lacks latency_ms statistics")
    return record


def make_report(
    machines: Mapping[str, Mapping[str, Any]],
    records: Iterable[Mapping[str, Any]],
    *,
    generated_at: str,
    sources: Iterable[str] = (),
    loadgen: Iterable[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """A report: every record tagged with its `machine`, which must be one of `machines`."""
    rows = [dict(r) for r in records]
    unknown = {r.get("machine") for r in rows} - set(machines)
    if unknown:
        raise SchemaError(
            f"records name machines without an environment: {sorted(map(str, unknown))}"
        )
    return {
        "kind": REPORT_KIND,
        "schema_version": SCHEMA_VERSION,
        "generated_at": generated_at,
        "sources": list(sources),
        "machines": {k: dict(v) for k, v in machines.items()},
        "records": rows,
        "loadgen": [dict(r) for r in loadgen],
    }


def check_report(report: object, *, source: str = "report") -> dict[str, Any]:
    if not isinstance(report, dict) or report.get("kind") != REPORT_KIND:
        raise SchemaError(f"{source} is not a bench-runtimes report")
    wrong = version_problem(report.get("schema_version"))
    if wrong:
        raise SchemaError(f"{source} has {wrong}")
    for key in ("machines", "records"):
        if key not in report:
            raise SchemaError(f"{source} lacks {key!r}")
    for record in report["records"]:
        check_record(record)
    return report


def load_report(path: str | Path) -> dict[str, Any]:
    """A report.json, or a folder holding one, checked against this schema version."""
    path = Path(path)
    if path.is_dir():
        path = path / "report.json"
    if not path.is_file():
        raise UserError(f"no such report: {path}")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SchemaError(
            f"{path} is not JSON ({err.msg if hasattr(err, 'msg') else err})"
        ) from None
    return check_report(data, source=str(path))
