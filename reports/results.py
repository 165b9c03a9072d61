"""Reading result folders: `results.jsonl` (one record a line, read by
`resnet_common.records.read_records`), `environment.json` and `loadgen.jsonl`.

Nothing here ever rewrites a file, so a bad line is never lost: it is skipped with a warning.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resnet_common.errors import UserError
from resnet_common.records import (
    ENVIRONMENT_FILE,
    LOADGEN_FILE,
    RESULTS_FILE,
    read_records,
    scan_records,
)


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


def read_folder(path: str | Path) -> ResultFolder:
    """A result folder written by `bench-runtimes run`."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"no such result folder: {path}")
    results = path / RESULTS_FILE
    if not results.is_file() and not (path / LOADGEN_FILE).is_file():
        raise UserError(f"{path} holds no {RESULTS_FILE}: not a bench-runtimes result folder")
    env_path = path / ENVIRONMENT_FILE
    environment: dict[str, Any] = {}
    if env_path.is_file():
        try:
            environment = json.loads(env_path.read_text())
        except json.JSONDecodeError:
            environment = {}
    records, warnings = read_records(results)
    loadgen = read_loadgen(path / LOADGEN_FILE, warnings)
    if not records and not loadgen:  # all garbage, or empty: an empty report would hide it
        if not results.is_file():
            raise UserError(f"{path / LOADGEN_FILE} holds no readable LoadGen result")
        _, skipped = scan_records(results)
        detail = (
            f"{len(skipped)} corrupt line(s), the first (line {skipped[0][0]}): {skipped[0][1]}"
            if skipped
            else "the file is empty"
        )
        raise UserError(f"{results} holds no readable result record ({detail})")
    if not environment:
        warnings.append(f"{env_path} missing or unreadable; machine named after the folder")
        environment = {"machine": path.resolve().name}
    return ResultFolder(path, environment, records, warnings, loadgen)


def read_loadgen(path: Path, warnings: list[str]) -> list[dict[str, Any]]:
    """LoadGen results, one JSON object a line; later runs of the same test win."""
    by_key: dict[tuple[Any, ...], dict[str, Any]] = {}
    if not path.is_file():
        return []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            key = tuple(row[k] for k in ("model", "runtime", "precision", "scenario"))
        except (json.JSONDecodeError, KeyError, TypeError):
            warnings.append(f"{path}:{number}: skipped a corrupt LoadGen line")
            continue
        by_key.pop(key, None)
        by_key[key] = row
    return list(by_key.values())
