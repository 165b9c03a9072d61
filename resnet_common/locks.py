"""One writer per output: an exclusive `flock` on a lock file that names its holder.

The lock file (`.lock` in the output folder, or `<file>.lock` beside a file) holds the holder's
pid and host. The kernel releases a flock when its process dies, however it dies, so a SIGKILLed
writer never leaves a stale lock: the file may stay, its lock does not. A second writer is
refused in one line naming the holder, or (`wait=True`) waits for it, as two builds of one
cached model do. The holder removes the file on release; a waiter that locked a file already
unlinked from under it retries on the new one, so two holders can never coexist.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from resnet_common.errors import LockedError
from resnet_common.fileio import write_error

LOCK_NAME = ".lock"


def _holder(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        text = ""
    pid, _, host = text.partition(" ")
    if not pid.isdigit():
        return "another process"
    if host and host != socket.gethostname():
        return f"pid {pid} on {host}"
    return f"pid {pid}"


def _open_locked(path: Path, *, wait: bool, what: str, poll: float) -> int:
    while True:
        try:
            # O_NOFOLLOW: a lock file planted as a link must not make the holder truncate and
            # write the file it points at (outside the output)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666)
        except OSError as err:
            raise write_error(err, path) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            raise LockedError(
                f"{what} is in use by {_holder(path)} (lock {path}); wait for it to finish "
                "or use another output"
            ) from None
        except OSError as err:  # a file system without flock
            os.close(fd)
            raise write_error(err, path) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # the previous holder removed the file after we opened it: lock the new one
        time.sleep(poll)


@contextlib.contextmanager
def exclusive_lock(
    path: str | Path, *, what: str | None = None, wait: bool = False, poll: float = 0.05
) -> Iterator[Path]:
    """Hold an exclusive lock on the lock file `path` for the block.

    `what` names the output in the refusal ("run folder runs/r56"). With `wait=True` the call
    blocks until the holder is done instead of raising `LockedError`.
    """
    path = Path(path)
    fd = _open_locked(path, wait=wait, what=what or str(path.parent), poll=poll)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        yield path
    finally:
        with contextlib.suppress(OSError):
            path.unlink()  # while still locked: a waiter sees the inode change and retries
        os.close(fd)


def folder_lock(
    folder: str | Path, *, what: str | None = None, wait: bool = False
) -> contextlib.AbstractContextManager[Path]:
    """The exclusive lock on an output folder (its `.lock` file); the folder must exist."""
    folder = Path(folder)
    return exclusive_lock(folder / LOCK_NAME, what=what or str(folder), wait=wait)


def output_lock(
    path: str | Path, *, what: str | None = None, wait: bool = False
) -> contextlib.AbstractContextManager[Path]:
    """The exclusive lock on one output file: `.NAME.lock` beside it (the name the graph cache
    of runtimes.model_cache uses), so a second writer of the same file is refused in one line
    (or, with `wait`, waits) instead of both writing it."""
    path = Path(path)
    return exclusive_lock(
        path.parent / f".{path.name}.lock", what=what or f"output {path}", wait=wait
    )


def holder_of(path: str | Path) -> int | None:
    """The pid recorded in a lock file whose lock is held now, else None (free or absent)."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = path.read_text(encoding="utf-8", errors="replace").split()
            return int(text[0]) if text and text[0].isdigit() else -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
