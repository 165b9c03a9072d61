"""Reading result folders: `results.jsonl` (one record a line), `environment.json` and
`loadgen.jsonl`, without trusting them.

Nothing here ever rewrites a file. A line that is not a JSON object (what a killed writer
leaves) is skipped with a warning and left in place, as `resnet_common.records.read_records`
does for `--resume`. A JSON object that is not a record this tool can show (another schema
version, a missing field, a field of the wrong type, NaN, a 5000-digit integer, nesting 1000
levels deep, a key given twice) is a hand edit or another tool's file: refused in one line
naming the file, the line and the field (reports.validate), before anything is written. Files are read through
`resnet_common.documents.read_capped`: a regular file of bounded size, never a device or a pipe.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reports.validate import ENVIRONMENT, LOADGEN_ROW, RecordError, check_record_fields, problem
from resnet_common.documents import MAX_DEPTH, DocumentError, read_capped, strict_json_loads
from resnet_common.errors import UserError
from resnet_common.records import (  # noqa: F401 (read_records: re-exported for callers)
    ENVIRONMENT_FILE,
    LOADGEN_FILE,
    RESULTS_FILE,
    SchemaError,
    check_record,
    read_records,
    record_key,
)

# A record is a few KB: 256 MB holds tens of thousands of them, and is read into memory once.
MAX_RESULTS_BYTES = 256 * 2**20
MAX_ENVIRONMENT_BYTES = 2**20


@dataclass
class ResultFolder:
    path: Path
    environment: dict[str, Any]
    records: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list)
    loadgen: list[dict[str, Any]] = field(default_factory=list)  # `bench-runtimes loadgen` runs

    @property
    def machine(self) -> str:
        return str(self.environment.get("machine") or self.path.name)


def _depth(value: object) -> int:
    """Levels of nesting, walked without recursion."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if level > MAX_DEPTH:
            break
        if isinstance(item, dict):
            stack.extend((v, level + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, level + 1) for v in item)
    return deepest


def loads(text: str, *, where: str) -> object:
    """JSON text of a result file. json.JSONDecodeError when it is not JSON (a torn line: the
    caller decides); RecordError when it is JSON that no report can hold: an integer past
    MAX_INT_DIGITS digits, a key given twice, nesting past MAX_DEPTH levels."""
    try:
        value = strict_json_loads(text)
    except json.JSONDecodeError:
        raise
    except RecursionError:
        raise RecordError(f"{where}: nested too deeply (at most {MAX_DEPTH} levels)") from None
    except ValueError as err:  # the hooks', or Python's own digit limit
        raise RecordError(f"{where}: {err}") from None
    if _depth(value) > MAX_DEPTH:
        raise RecordError(f"{where}: nested too deeply (at most {MAX_DEPTH} levels)")
    return value


def _text(path: Path, *, what: str, max_bytes: int) -> str:
    try:
        data = read_capped(path, what=what, max_bytes=max_bytes)
    except DocumentError as err:
        raise UserError(str(err)) from None
    return data.decode("utf-8", errors="replace")


def scan_results(path: Path) -> tuple[list[dict[str, Any]], list[tuple[int, str]]]:
    """Good records in file order (the last one per key wins) and (line, why) for each line
    skipped; RecordError for a record with a field no report can show."""
    by_key: dict[str, dict[str, Any]] = {}
    skipped: list[tuple[int, str]] = []
    if not path.exists():
        return [], skipped
    text = _text(path, what="results file", max_bytes=MAX_RESULTS_BYTES)
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            value = loads(line, where=where)
        except json.JSONDecodeError as err:
            skipped.append((number, err.msg))
            continue
        if not isinstance(value, dict):  # not a record at all: what a torn write can leave
            skipped.append((number, "not a JSON object"))
            continue
        try:
            record = check_record(value)
        except SchemaError as err:  # an object, but not a record this tool reads: refused
            raise RecordError(f"{where}: {err}; fix or remove that line") from None
        check_record_fields(record, where=where)
        by_key.pop(record_key(record), None)
        by_key[record_key(record)] = record
    return list(by_key.values()), skipped


def read_folder(path: str | Path) -> ResultFolder:
    """A result folder written by `bench-runtimes run`, every record checked (RecordError)."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"no such result folder: {path}")
    results = path / RESULTS_FILE
    if not results.is_file() and not (path / LOADGEN_FILE).is_file():
        raise UserError(f"{path} holds no {RESULTS_FILE}: not a bench-runtimes result folder")
    warnings: list[str] = []
    environment = read_environment(path / ENVIRONMENT_FILE, warnings)
    records, skipped = scan_results(results)
    warnings += [f"{results}:{n}: skipped a corrupt result line ({why})" for n, why in skipped]
    loadgen = read_loadgen(path / LOADGEN_FILE, warnings)
    if not records and not loadgen:  # all garbage, or empty: an empty report would hide it
        if not results.is_file():
            raise UserError(f"{path / LOADGEN_FILE} holds no readable LoadGen result")
        detail = (
            f"{len(skipped)} corrupt line(s), the first (line {skipped[0][0]}): {skipped[0][1]}"
            if skipped
            else "the file is empty"
        )
        raise UserError(f"{results} holds no readable result record ({detail})")
    if not environment:
        warnings.append(
            f"{path / ENVIRONMENT_FILE} missing or unreadable; machine named after the folder"
        )
        environment = {"machine": path.resolve().name}
    return ResultFolder(path, environment, records, warnings, loadgen)


def read_environment(path: Path, warnings: list[str]) -> dict[str, Any]:
    """The folder's environment; {} when missing or not JSON (the caller names the machine
    after the folder); RecordError when it is JSON with a field of the wrong type."""
    if not path.exists():
        return {}
    try:
        data = loads(_text(path, what="environment file", max_bytes=MAX_ENVIRONMENT_BYTES),
                     where=str(path))  # fmt: skip
    except json.JSONDecodeError:
        return {}
    if not isinstance(data, dict):
        return {}
    wrong = problem(ENVIRONMENT, data)
    if wrong:
        raise RecordError(f"{path}: {wrong}; fix it or remove the file")
    return data


def read_loadgen(path: Path, warnings: list[str]) -> list[dict[str, Any]]:
    """LoadGen results, one JSON object a line; later runs of the same test win."""
    by_key: dict[tuple[Any, ...], dict[str, Any]] = {}
    if not path.is_file():
        return []
    text = _text(path, what="LoadGen results file", max_bytes=MAX_RESULTS_BYTES)
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = loads(line, where=where)
        except json.JSONDecodeError:
            row = None
        if not isinstance(row, dict) or any(
            k not in row for k in ("model", "runtime", "precision", "scenario")
        ):
            warnings.append(f"{where}: skipped a corrupt LoadGen line")
            continue
        wrong = problem(LOADGEN_ROW, row)
        if wrong:
            raise RecordError(f"{where}: {wrong}; fix or remove that line")
        key = tuple(row[k] for k in ("model", "runtime", "precision", "scenario"))
        by_key.pop(key, None)
        by_key[key] = row
    return list(by_key.values())
