"""The versioned shape of a report (documented in docs/report-schema.md).

A report is the records of one or more result folders plus each folder's environment, keyed by
machine. The record itself, and the schema version both share, are `resnet_common.records`'
(records are made in `runtimes`, read here); `compare` refuses reports of another version.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from resnet_common.errors import UserError
from resnet_common.records import SCHEMA_VERSION, SchemaError, check_record, version_problem

REPORT_KIND = "bench-runtimes-report"


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
