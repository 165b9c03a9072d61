"""Atomic file writes, shared by every package: a temporary file in the target folder, fsync,
then rename, so no half-written model, checkpoint, engine or report exists under its final name.

Temporary names carry the writer's pid and host (`.NAME.<pid>-<host>-<random>.tmp`), so the next
run can tell debris left by a killed process (`remove_debris`) from a live writer's file. A write
never renames over anything but a regular file (or nothing): `-o /dev/null` as root must not
replace the device. Write failures a user can act on (disk full, permissions, a read-only file
system) become one-line `FileWriteError`s that name the file; the temporary file is removed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import re
import secrets
import shutil
import socket
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from resnet_common.errors import DiskFullError, FileWriteError, NotRegularFileError

TEMP_SUFFIX = ".tmp"
_HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]
_TEMP = re.compile(
    r"^\.(?P<base>.+)\.(?P<pid>\d+)-(?P<host>[0-9a-f]{6})-(?P<rand>[0-9a-f]{8})\.tmp$"
)
# What tempfile.mkstemp(prefix=".NAME.", suffix=".tmp") made before names carried the pid.
_LEGACY_TEMP = re.compile(r"^\.(?P<base>.+)\.(?P<rand>[a-z0-9_]{8})\.tmp$")
# An output file's lock (resnet_common.locks.output_lock); a folder's own `.lock` is not one.
_LOCK = re.compile(r"^\.(?P<base>.+)\.lock$")
_FULL = {errno.ENOSPC, errno.EDQUOT}
_USER_FIXABLE = {
    errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT, errno.ENOTDIR, errno.EISDIR,
    errno.ENAMETOOLONG, errno.EFBIG, errno.ELOOP, errno.EXDEV,
}  # fmt: skip


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_error(err: OSError, path: str | Path) -> OSError | FileWriteError:
    """The one-line error for a failed write of `path`, or `err` itself when no user can act on
    it (an I/O error is a fault to see in full)."""
    if err.errno in _FULL:
        return DiskFullError(f"no space left on device writing {path}")
    if err.errno in _USER_FIXABLE:
        return FileWriteError(f"cannot write {path}: {err.strerror or err}")
    return err


_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISLNK, "a symbolic link"),
)


def check_replaceable(path: str | Path) -> None:
    """Refuse to write over anything that exists and is not a regular file."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as err:
        raise write_error(err, path) from None
    if stat.S_ISREG(mode):
        return
    kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
    raise NotRegularFileError(
        f"{path} is {kind}, not a regular file: refusing to replace it; give a file path"
    )


def as_text(name: str) -> str:
    """A file name as UTF-8 text: bytes that are not UTF-8 (a legal Linux name, Python's
    surrogate escapes) become U+FFFD, for what must be text (ONNX metadata, onnx's checker)."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def temp_name(name: str) -> str:
    """A hidden temporary name for `name` carrying this process's pid and host. A name that is
    not ASCII is stood in for by its hash: the temporary folder's path must open in tools that
    take paths as UTF-8 text (onnx's checker) and in any file system encoding (`$'\\xff.onnx'`
    is a legal Linux name, and LC_ALL=C makes Python's file names ASCII)."""
    if not (name.isascii() and name.isprintable()):
        name = "x" + hashlib.sha1(os.fsencode(name)).hexdigest()[:12]
    return f".{name}.{os.getpid()}-{_HOST}-{secrets.token_hex(4)}{TEMP_SUFFIX}"


def _create_temp(path: Path) -> tuple[int, Path]:
    for _ in range(100):
        tmp = path.parent / temp_name(path.name)
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(path))  # pragma: no cover


@contextlib.contextmanager
def atomic_writer(path: str | Path) -> Iterator[BinaryIO]:
    """Write a file in pieces: the caller writes to the yielded file, which becomes `path` (after
    fsync) only when the block ends without an exception; otherwise nothing is left behind."""
    path = Path(path)
    check_replaceable(path)
    try:
        fd, tmp = _create_temp(path)
    except OSError as err:
        raise write_error(err, path) from None
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        replace_into(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise write_error(err, path) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_writer(path) as f:
        f.write(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def replace_into(tmp: str | Path, path: str | Path) -> None:
    """Rename a finished temporary file (or folder) onto `path`, never over a non-regular file."""
    check_replaceable(path)
    os.replace(tmp, path)


def append_durable(path: str | Path, text: str) -> None:
    """Append `text` to `path` and fsync it (a JSON-lines record); a full disk is one line."""
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    except OSError as err:
        raise write_error(err, path) from None


def make_temp_dir(parent: str | Path, name: str) -> Path:
    """A hidden, pid-tagged temporary folder in `parent` (same file system as the target)."""
    parent = Path(parent)
    for _ in range(100):
        tmp = parent / temp_name(name)
        try:
            tmp.mkdir()
            return tmp
        except FileExistsError:
            continue
        except OSError as err:
            raise write_error(err, parent / name) from None
    raise FileWriteError(f"cannot make a temporary folder in {parent}")  # pragma: no cover


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this machine (it may belong to another user)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_debris(
    folder: str | Path, *, owned: bool = False, legacy_bases: Iterable[str] = ()
) -> list[Path]:
    """Remove the temporary files and folders that dead writers left in `folder`.

    A temporary name carries its writer's pid and host: it is removed when that process no longer
    exists on this host. With `owned=True` (the caller holds the folder's exclusive lock, so no
    one else writes there) every temporary name but this process's own goes, whatever its host,
    and so do the older pid-less names of `legacy_bases` (e.g. `last.pt`). An output's lock
    file (`.NAME.lock`) that no process holds goes too: a killed writer's. Returns what went.
    """
    folder = Path(folder)
    legacy = set(legacy_bases)
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for entry in entries:
        m = _TEMP.match(entry.name)
        if m:
            pid, host = int(m["pid"]), m["host"]
            if pid == os.getpid() and host == _HOST:
                continue
            dead = host == _HOST and not pid_alive(pid)
            if not (dead or owned):
                continue
        elif _LOCK.match(entry.name):
            if _remove_free_lock(Path(entry.path)):
                removed.append(Path(entry.path))
            continue
        else:
            m = _LEGACY_TEMP.match(entry.name)
            if not (owned and m and m["base"] in legacy):
                continue
        path = Path(entry.path)
        with contextlib.suppress(OSError):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
    return removed


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name one file: the same inode (a hard link too), or the same path once
    links and `..` are resolved (for a file not made yet)."""
    try:
        if os.path.samefile(a, b):
            return True
    except OSError:
        pass
    try:
        return Path(a).resolve() == Path(b).resolve()
    except (OSError, RuntimeError):  # a link loop
        return False


def refuse_overwriting_inputs(
    output: str | Path, inputs: Iterable[tuple[str, str | Path | None]], *, flag: str = "-o"
) -> None:
    """Refuse an output that is one of the command's inputs (`graphgen build --spec s.yaml -o
    s.yaml`), however it is spelled (`sub/../s.yaml`, a linked folder, a hard link), or that
    lies inside an input folder. Each input is (how the command line names it, its path)."""
    out = Path(output)
    for label, given in inputs:
        if given is None:
            continue
        if same_file(out, given):
            raise FileWriteError(
                f"{flag} {out} is the input {label}: writing it would replace what the command "
                "reads; write the output elsewhere"
            )
        try:
            inside = Path(given).is_dir() and out.resolve().is_relative_to(Path(given).resolve())
        except (OSError, RuntimeError):
            inside = False
        if inside:
            raise FileWriteError(
                f"{flag} {out} is inside the input folder {label}; write the output elsewhere"
            )


def _remove_free_lock(path: Path) -> bool:
    """Remove an output's lock file (`.NAME.lock`, resnet_common.locks) that no live process
    holds: what a SIGKILLed writer leaves. It is locked while it is removed, as its holder
    removes it, so a writer that opened it meanwhile sees the inode change and retries."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        path.unlink()
        return True
    except OSError:  # held by a live writer (BlockingIOError), or gone already
        return False
    finally:
        os.close(fd)


def is_temp_name(name: str) -> bool:
    """Whether `name` is one of the temporary names this module makes."""
    return bool(_TEMP.match(name))
