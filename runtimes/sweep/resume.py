"""What `--resume` needs to know about a run that did not finish.

Before each job its key and the sweep's pid go to `inflight.json` (removed once the record is
written), and `faulthandler` is pointed at `crash.log`. A process that dies mid-job leaves the
marker behind, and `--resume` records why: with a crash log, an engine crashed the process (a
segfault, an abort): a failed record, not re-run, since it would crash again; without one, the
process was killed from outside (SIGKILL, the OOM killer, SIGTERM): an interrupted record, and
the job is measured again, once; killed again, it stays failed. `--retry-failed` re-runs every
failed job.
"""

from __future__ import annotations

import contextlib
import faulthandler
import json
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from resnet_common.fileio import write_error
from resnet_common.records import key_fields, new_record, record_key
from runtimes.sweep.outdir import write_json_atomic

CRASHED_REASON = (
    "the process crashed during this measurement ({what}); not re-run by --resume, which "
    "would crash again (--retry-failed runs it)"
)
KILLED_REASON = (
    "interrupted: the process (pid {pid}) was killed from outside during this measurement, "
    "not by the engine; --resume measures it again once"
)
KILLED_AGAIN_REASON = (
    "interrupted {count} times: the process (pid {pid}) was killed from outside during this "
    "measurement each time (the OOM killer?); not re-run by --resume (--retry-failed runs it)"
)


def due_again(record: dict[str, Any], *, retry_failed: bool) -> bool:
    """Whether --resume measures a job again despite its record: a job killed from outside
    once, and with `retry_failed` every failed job."""
    if record["status"] != "failed":
        return False
    if retry_failed:
        return True
    interrupted = record.get("interrupted") or {}
    return interrupted.get("how") == "killed" and interrupted.get("count") == 1


def mark_inflight(path: Path, bases: list[dict[str, Any]]) -> None:
    """Name the jobs being measured (their key fields and key) and this process, so that a
    process that dies leaves them named."""
    owner = {"pid": os.getpid(), "host": socket.gethostname()}
    write_json_atomic(path, {**bases[-1], "jobs": bases, **owner})


@contextlib.contextmanager
def crash_log(path: Path) -> Iterator[None]:
    """Point faulthandler at `path` while jobs run: a segfault or abort in an engine leaves its
    stack there, which is how the next --resume tells an engine crash from a kill."""
    was_enabled = faulthandler.is_enabled()
    try:
        f = open(path, "w")  # noqa: SIM115 - faulthandler needs the file open throughout
    except OSError as err:
        raise write_error(err, path) from None
    faulthandler.enable(file=f, all_threads=True)
    try:
        yield
    finally:
        faulthandler.disable()
        if was_enabled and sys.__stderr__ is not None:
            faulthandler.enable(file=sys.__stderr__)
        f.close()
        path.unlink(missing_ok=True)


def died_records(
    inflight: Path,
    crashed: Path,
    latest: dict[str, dict[str, Any]],
    *,
    retry_failed: bool,
    warnings: list[str],
) -> list[dict[str, Any]]:
    """Records for the jobs a previous run started but never finished: failed when an
    engine crashed the process (its crash log holds the stack), interrupted when the
    process was killed from outside (no crash log). Each is also said in `warnings`."""
    try:
        started = json.loads(inflight.read_text())
        listed = started.get("jobs") or [started]
        bases = [key_fields(one) for one in listed]
        pid = int(started.get("pid") or 0)
    except FileNotFoundError:
        return []
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        warnings.append(f"{inflight}: unreadable, ignored ({type(err).__name__})")
        return []
    try:
        stack = crashed.read_text(errors="replace").strip()
    except OSError:
        stack = ""
    died = []
    for base in bases:
        before = latest.get(record_key(base))
        if before is not None and not due_again(before, retry_failed=retry_failed):
            continue  # the record was written; only the marker's removal was lost
        reason, extra = _crashed(stack, pid) if stack else _killed(before, pid)
        what = f"{base['model']} on {base['runtime']} {base['precision']} batch {base['batch']}"
        warnings.append(f"{what}: {reason}")
        died.append(new_record(**base, status="failed", reason=reason, **extra))
    return died


def _crashed(stack: str, pid: int) -> tuple[str, dict[str, Any]]:
    cause = stack.splitlines()[0].removeprefix("Fatal Python error: ")
    extra = {"interrupted": {"how": "crash", "pid": pid}, "traceback": stack[:4000]}
    return CRASHED_REASON.format(what=cause), extra


def _killed(before: dict[str, Any] | None, pid: int) -> tuple[str, dict[str, Any]]:
    previous = (before or {}).get("interrupted") or {}
    count = previous.get("count", 0) + 1 if previous.get("how") == "killed" else 1
    reason = (KILLED_REASON if count == 1 else KILLED_AGAIN_REASON).format(
        pid=pid or "unknown", count=count
    )
    return reason, {"interrupted": {"how": "killed", "pid": pid, "count": count}}
