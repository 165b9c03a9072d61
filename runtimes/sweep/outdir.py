"""The output folder of a sweep: one writer (an exclusive lock), created writable, and the
results file, each record appended and fsync'd before the sweep moves on."""

from __future__ import annotations

import contextlib
import json
import math
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from resnet_common.errors import LockedError, UserError
from resnet_common.fileio import atomic_write_text, remove_debris, temp_name, write_error
from resnet_common.locks import LOCK_NAME, folder_lock, holder_of


class ResultsWriter:
    """Appends one JSON line per record, flushed and fsync'd before the sweep moves on."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            # O_NOFOLLOW: a results file planted as a link must not append to its target
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o666)
            self._file = os.fdopen(fd, "a+b")
            self._file.seek(0, os.SEEK_END)
            if self._file.tell() > 0:  # a killed writer may have left a line without its newline
                self._file.seek(-1, os.SEEK_END)
                if self._file.read(1) != b"\n":
                    self._file.write(b"\n")
        except OSError as err:
            raise write_error(err, path) from None

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps(_finite(record), allow_nan=False, default=_jsonable) + "\n"
        try:
            self._file.write(line.encode())
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as err:  # a full disk: one line, every record before this one kept
            raise write_error(err, self.path) from None

    def close(self) -> None:
        self._file.close()


def _finite(value: Any) -> Any:
    """NaN and Inf become null: JSON has no such numbers, and a record must always be written."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _jsonable(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)  # Path and anything else


def write_json_atomic(path: Path, data: object) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, default=_jsonable) + "\n")


def prepare_out(out: Path) -> None:
    """Create the output folder, or say in one line why it cannot be written."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / temp_name("write-probe")  # pid-tagged: a kill here leaves no mystery
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        probe.unlink()
    except OSError as err:
        raise UserError(f"cannot write to --out {out}: {err.strerror or err}") from None


def check_own_files(out: Path) -> None:
    """Refuse an output folder whose result files are links or not regular files: appending
    to `results.jsonl` (or truncating `crash.log`) through a link planted there would write a
    file outside the folder. Checked before anything is created."""
    from resnet_common.records import FOLDER_FILES

    for name in FOLDER_FILES:
        path = out / name
        try:
            info = path.lstat()
        except OSError:
            continue  # absent (or out itself absent): nothing to follow
        if stat.S_ISLNK(info.st_mode):
            raise UserError(
                f"{path} is a symbolic link: the files of a result folder must be its own, "
                "or writing them would write where the link points; remove the link or use "
                "another --out"
            )
        if not stat.S_ISREG(info.st_mode):
            raise UserError(f"{path} is not a regular file; remove it or use another --out")


_HELD: set[Path] = set()  # output folders this process holds the lock of


def refuse_if_in_use(out: Path) -> None:
    """Refuse an output folder another live process writes to, creating nothing: checked
    before anything else about the folder, so a second writer hears who holds it."""
    if out.resolve() in _HELD:
        return
    pid = holder_of(out / LOCK_NAME)
    if pid is not None:
        who = f"pid {pid}" if pid > 0 else "another process"
        raise LockedError(
            f"--out {out} is in use by {who} (lock {out / LOCK_NAME}); wait for it to finish "
            "or use another --out"
        )


@contextlib.contextmanager
def output_lock(out: Path) -> Iterator[None]:
    """One writer per output folder for the whole command: an exclusive lock on `out/.lock`,
    re-entrant within this process (the run command holds it around the sweep and the report).
    Holding it, the temporary files of killed writers are removed."""
    key = out.resolve()
    if key in _HELD:
        yield
        return
    with folder_lock(out, what=f"--out {out}"):
        _HELD.add(key)
        try:
            remove_debris(out, owned=True)
            yield
        finally:
            _HELD.discard(key)
