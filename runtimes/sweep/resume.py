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
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from resnet_common.errors import UserError
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


def mark_inflight(path: Path, bases: list[dict[str, Any]], *, running: list[str]) -> None:
    """Name the jobs loaded now (their key fields and key), the keys of those running (being
    loaded, or timed alone; none while an interleaved group is timed in rounds) and this
    process, so that a process that dies leaves them named."""
    owner = {"pid": os.getpid(), "host": socket.gethostname()}
    write_json_atomic(path, {**bases[-1], "jobs": bases, "running": running, **owner})


MAX_MARKER_BYTES = 2**20


def read_marker(path: Path) -> tuple[list[dict[str, Any]], set[str] | None, int] | None:
    """The in-flight marker a dead run left: (the key fields of each job it names, the keys of
    those that were running, None for a marker that does not say: all of them; its pid), or
    None when there is none. Read bounded (resnet_common.documents); a marker that is not one
    is a UserError naming it: --resume would charge an interruption to jobs it cannot name."""
    from resnet_common.documents import read_document
    from resnet_common.records import key_problem

    if not os.path.lexists(path):
        return None
    data = read_document(path, what="in-flight marker", max_bytes=MAX_MARKER_BYTES)

    def bad(why: str) -> UserError:
        return UserError(
            f"{path}: {why}; it names the jobs a killed run left unfinished: remove it to "
            "resume without it"
        )

    if not isinstance(data, dict):
        raise bad("not a JSON object")
    listed = data.get("jobs", [data])
    if not isinstance(listed, list) or not listed or not all(isinstance(j, dict) for j in listed):
        raise bad('"jobs" is not a list of jobs')
    bases = []
    for one in listed:
        missing = [k for k in ("model", "runtime", "precision", "batch") if k not in one]
        wrong = key_problem(one)
        if missing or wrong:
            raise bad(f"a job lacks {', '.join(missing)}" if missing else f"a job has {wrong}")
        bases.append(key_fields({"image_size": one.get("image_size"), **one}))
    running = data.get("running")
    if running is not None and not (
        isinstance(running, list) and all(isinstance(k, str) for k in running)
    ):
        raise bad('"running" is not a list of job keys')
    pid = data.get("pid", 0)
    if isinstance(pid, bool) or not isinstance(pid, int) or not 0 <= pid < 2**31:
        raise bad("its pid is not a process id")
    return bases, None if running is None else set(running), pid


def check_resumable(out: Path) -> None:
    """Refuse, before anything is created, a folder --resume cannot append to: a results line
    that is not one a kill leaves, an in-flight marker that is not one."""
    from resnet_common.records import INFLIGHT_FILE, RESULTS_FILE, read_records

    read_records(out / RESULTS_FILE, strict=True)
    read_marker(out / INFLIGHT_FILE)


@contextlib.contextmanager
def crash_log(path: Path) -> Iterator[None]:
    """Point faulthandler at `path` while jobs run: a segfault or abort in an engine leaves its
    stack there, which is how the next --resume tells an engine crash from a kill."""
    was_enabled = faulthandler.is_enabled()
    try:  # O_NOFOLLOW: a crash.log planted as a link must not truncate its target
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o666)
        f = os.fdopen(fd, "w")
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
    process was killed from outside (no crash log). A kill is charged only to the job that
    was running (being loaded, or timed alone): the jobs loaded beside it, or a whole
    interleaved group timed in rounds, are measured again with no record. A crash in rounds
    cannot be pinned on one engine, so each job of the group is charged. Each is also said
    in `warnings`."""
    marker = read_marker(inflight)
    if marker is None:
        return []
    bases, running, pid = marker
    try:
        stack = crashed.read_text(errors="replace").strip() if crashed.is_file() else ""
    except OSError:
        stack = ""
    died = []
    spared = 0
    for base in bases:
        before = latest.get(record_key(base))
        if before is not None and not due_again(before, retry_failed=retry_failed):
            continue  # the record was written; only the marker's removal was lost
        charged = running is None or record_key(base) in running or (stack and not running)
        if not charged:
            spared += 1
            continue
        reason, extra = _crashed(stack, pid) if stack else _killed(before, pid)
        what = f"{base['model']} on {base['runtime']} {base['precision']} batch {base['batch']}"
        warnings.append(f"{what}: {reason}")
        died.append(new_record(**base, status="failed", reason=reason, **extra))
    if spared:
        warnings.append(
            f"{spared} job(s) loaded when the process (pid {pid or 'unknown'}) was killed, "
            "but not the one running, are measured again with no interruption charged"
        )
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
