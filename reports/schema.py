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

from resnet_common.errors import UserError, shown
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
    """The report itself when it is of this schema and every record, machine and LoadGen row
    in it has fields a report can show; SchemaError (RecordError naming the field) else."""
    from reports.validate import ENVIRONMENT, LOADGEN_ROW, check_record_fields, problem

    if not isinstance(report, dict) or report.get("kind") != REPORT_KIND:
        raise SchemaError(f"{source} is not a bench-runtimes report")
    wrong = version_problem(report.get("schema_version"))
    if wrong:
        raise SchemaError(f"{source} has {wrong}")
    for key in ("machines", "records"):
        if key not in report:
            raise SchemaError(f"{source} lacks {key!r}")
    machines, records = report["machines"], report["records"]
    if not isinstance(machines, dict) or not isinstance(records, list):
        raise SchemaError(f"{source}: 'machines' must be an object and 'records' a list")
    if not isinstance(report.get("loadgen", []), list):
        raise SchemaError(f"{source}: 'loadgen' must be a list")
    if not isinstance(report.get("generated_at", ""), str):
        raise SchemaError(f"{source}: 'generated_at' must be a string")
    for name, env in machines.items():
        found = problem(ENVIRONMENT, env)
        if found:
            raise SchemaError(f"{source}: machine {shown(name, 40)}: {found}")
    for i, record in enumerate(records):
        where = f"{source}: records[{i}]"
        try:
            check_record(record)
        except SchemaError as err:
            raise SchemaError(f"{where}: {err}") from None
        check_record_fields(record, where=where)
        if record.get("machine") not in machines:
            raise SchemaError(f"{where}: machine {shown(record.get('machine'), 40)} is not one "
                              "of the report's machines")  # fmt: skip
    for i, row in enumerate(report.get("loadgen", [])):
        found = problem(LOADGEN_ROW, row)
        if found:
            raise SchemaError(f"{source}: loadgen[{i}]: {found}")
    return report


# A report holds every record of its folders: a few KB each.
MAX_REPORT_BYTES = 512 * 2**20


def load_report(path: str | Path) -> dict[str, Any]:
    """A report.json, or a folder holding one, checked against this schema version (a regular
    file of bounded size, bounded JSON, every field of the type a report reads)."""
    from reports.results import loads
    from resnet_common.documents import DocumentError, read_capped

    path = Path(path)
    if path.is_dir():
        path = path / "report.json"
    if not path.exists():
        raise UserError(f"no such report: {path}")
    try:
        text = read_capped(path, what="report", max_bytes=MAX_REPORT_BYTES).decode("utf-8")
        data = loads(text, where=str(path))
    except DocumentError as err:
        raise UserError(str(err)) from None
    except UnicodeDecodeError:
        raise SchemaError(f"{path} is not JSON (not UTF-8 text)") from None
    except json.JSONDecodeError as err:
        raise SchemaError(f"{path} is not JSON ({err.msg} at line {err.lineno})") from None
    return check_report(data, source=str(path))
