"""resnet_common's crash-safety pieces: pid-tagged temp names and debris, refusal to replace
non-regular files, one-line disk-full errors, the exclusive lock, size limits, the seed parser."""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from resnet_common import fileio, locks
from resnet_common.cli import seed_int
from resnet_common.errors import DiskFullError, LockedError, NotRegularFileError, TooLargeError
from resnet_common.limits import SizeLimits, check_memory, check_size, parse_limits


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@contextlib.contextmanager
def tiny_tmpfs(tmp_path: Path, size: str):
    """A real small file system, so ENOSPC is the kernel's; skipped where mounting is refused."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_temp_names_carry_the_pid_and_are_recognised():
    name = fileio.temp_name("last.pt")
    assert name.startswith(".last.pt.") and name.endswith(".tmp")
    assert f".{os.getpid()}-" in name
    assert fileio.is_temp_name(name) and not fileio.is_temp_name("last.pt")


def test_atomic_write_leaves_only_the_file(tmp_path):
    fileio.atomic_write_text(tmp_path / "a.json", "{}\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]
    assert (tmp_path / "a.json").read_text() == "{}\n"
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o666 & ~fileio._umask()


def test_a_failed_write_leaves_no_temp(tmp_path):
    with pytest.raises(RuntimeError), fileio.atomic_writer(tmp_path / "x.bin") as f:
        f.write(b"half")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_debris_of_dead_writers_goes_live_ones_stay(tmp_path):
    host = fileio._HOST
    dead = tmp_path / f".last.pt.{dead_pid()}-{host}-0123abcd.tmp"
    live = tmp_path / f".last.pt.{os.getppid()}-{host}-0123abcd.tmp"
    mine = tmp_path / fileio.temp_name("best.safetensors")
    dead_dir = tmp_path / f".m.onnx.{dead_pid()}-{host}-89abcdef.tmp"
    other_host = tmp_path / f".last.pt.{dead_pid()}-ffffff-0123abcd.tmp"
    legacy = tmp_path / ".last.pt.k3j_x9ab.tmp"
    user = tmp_path / ".notes.tmp"
    for p in (dead, live, mine, other_host, legacy, user):
        p.write_bytes(b"x")
    dead_dir.mkdir()
    (dead_dir / "m.onnx").write_bytes(b"x" * 100)
    removed = fileio.remove_debris(tmp_path)
    assert set(removed) == {dead, dead_dir}
    assert all(p.exists() for p in (live, mine, other_host, legacy, user))
    # the folder's lock holder owns everything in it: any other writer's temp is debris
    removed = fileio.remove_debris(tmp_path, owned=True, legacy_bases=["last.pt"])
    assert set(removed) == {live, other_host, legacy}
    assert mine.exists() and user.exists()


@pytest.mark.parametrize("kind", ["dir", "fifo", "socket", "symlink"])
def test_never_renames_over_what_is_not_a_regular_file(tmp_path, kind):
    target = tmp_path / "target"
    if kind == "dir":
        target.mkdir()
    elif kind == "fifo":
        os.mkfifo(target)
    elif kind == "socket":
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(target))
        sock.close()
    else:
        (tmp_path / "real").write_text("keep")
        target.symlink_to(tmp_path / "real")
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(NotRegularFileError, match="not a regular file: refusing"):
        fileio.atomic_write_bytes(target, b"new")
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert not target.is_file() or target.is_symlink()


def test_dev_null_stays_a_device():
    with pytest.raises(NotRegularFileError, match="character device"):
        fileio.atomic_write_bytes("/dev/null", b"x")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_disk_full_is_one_line_and_keeps_what_was_written(tmp_path):
    with tiny_tmpfs(tmp_path, "64k") as mount:
        fileio.atomic_write_text(mount / "kept.json", "{}\n")
        with pytest.raises(DiskFullError) as err:
            fileio.atomic_write_bytes(mount / "big.bin", b"\0" * 1_000_000)
        assert str(err.value) == f"no space left on device writing {mount / 'big.bin'}"
        with pytest.raises(DiskFullError):
            fileio.append_durable(mount / "log.jsonl", "x" * 1_000_000)
        assert (mount / "kept.json").read_text() == "{}\n"
        assert not any(fileio.is_temp_name(p.name) for p in mount.iterdir())


def test_lock_refuses_a_second_writer_naming_the_holder(tmp_path):
    with locks.folder_lock(tmp_path):
        in_use = rf"run folder r is in use by pid {os.getpid()}"
        with (
            pytest.raises(LockedError, match=in_use),
            locks.folder_lock(tmp_path, what="run folder r"),
        ):
            pass
        assert locks.holder_of(tmp_path / locks.LOCK_NAME) == os.getpid()
    assert not (tmp_path / locks.LOCK_NAME).exists()  # released and removed
    with locks.folder_lock(tmp_path):  # free again
        pass


def test_lock_of_a_killed_holder_is_free(tmp_path):
    code = (
        "import sys, time; from resnet_common.locks import folder_lock\n"
        f"with folder_lock({str(tmp_path)!r}):\n"
        "    print('held', flush=True); time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline().strip() == b"held"
        with pytest.raises(LockedError, match=f"pid {proc.pid}"), locks.folder_lock(tmp_path):
            pass
    finally:
        proc.kill()
        proc.wait()
    assert (tmp_path / locks.LOCK_NAME).exists()  # a SIGKILL leaves the file, not the lock
    with locks.folder_lock(tmp_path):
        pass


def test_waiting_lock_gets_it_after_the_holder(tmp_path):
    order: list[str] = []
    held = threading.Event()

    def first() -> None:
        with locks.exclusive_lock(tmp_path / "m.lock"):
            held.set()
            time.sleep(0.3)
            order.append("first done")

    thread = threading.Thread(target=first)
    thread.start()
    held.wait(5)
    with locks.exclusive_lock(tmp_path / "m.lock", wait=True):
        order.append("second in")
    thread.join()
    assert order == ["first done", "second in"]


@pytest.mark.parametrize("text", ["-1", str(2**63), str(10**40), "abc", "1.5"])
def test_seed_parser_refuses(text):
    with pytest.raises(argparse.ArgumentTypeError) as err:
        seed_int(text)
    assert len(str(err.value)) < 120


@pytest.mark.parametrize("text", ["0", "42", str(2**63 - 1)])
def test_seed_parser_accepts(text):
    assert seed_int(text) == int(text)


def test_size_limits_parse_and_raise():
    assert parse_limits("params=5e9,macs=2000") == {"params": 5_000_000_000, "macs": 2000}
    for bad in ("bogus=1", "params", "params=-1", "params=1.5", "params=x", ""):
        with pytest.raises(ValueError):
            parse_limits(bad)
    limits = SizeLimits().raised({"params": 10})
    with pytest.raises(TooLargeError, match=r"has 11 parameters, past the limit of 10; .* --x"):
        check_size(11, limits.params, what="n", unit="parameters", key="params",
                   hint=lambda k: "--x")  # fmt: skip
    with pytest.raises(TooLargeError, match="needs about 1.0 GB of memory, more than the 1.0 MB"):
        check_memory(2**30, what="it", limits=SizeLimits(), hint=str, available=2**20)
    check_memory(2**30, what="it", limits=SizeLimits(memory=2**31), hint=str, available=2**20)
