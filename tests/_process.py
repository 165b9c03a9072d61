"""Process-wide state a test can break for every test after it: the calling thread's alternate
signal stack (read with libc's `sigaltstack`, Linux only), and whether it lies on mapped memory.

A signal whose handler runs on an alternate stack that was freed kills the process (SIGSEGV
from the kernel, no traceback): OpenVINO's Cores did that (runtimes.engines.openvino_cpu)."""

from __future__ import annotations

import ctypes
import sys
from typing import NamedTuple

SS_DISABLE = 2  # <signal.h>: no alternate stack


class _StackT(ctypes.Structure):
    _fields_ = [
        ("ss_sp", ctypes.c_void_p),
        ("ss_flags", ctypes.c_int),
        ("ss_size", ctypes.c_size_t),
    ]


class AltStack(NamedTuple):
    sp: int
    flags: int
    size: int

    @property
    def enabled(self) -> bool:
        return not self.flags & SS_DISABLE


_libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def sigaltstack() -> AltStack | None:
    """The calling thread's alternate signal stack; None where it cannot be read."""
    if _libc is None:
        return None
    old = _StackT()
    if _libc.sigaltstack(None, ctypes.byref(old)) != 0:
        return None
    return AltStack(int(old.ss_sp or 0), int(old.ss_flags), int(old.ss_size))


def is_mapped(start: int, size: int) -> bool:
    """Whether [start, start + size) lies in mappings of this process (/proc/self/maps)."""
    end = start + size
    with open("/proc/self/maps") as f:
        spans = sorted(
            (int(lo, 16), int(hi, 16))
            for lo, hi in (line.split(None, 1)[0].split("-") for line in f)
        )
    covered = start
    for lo, hi in spans:
        if lo <= covered < hi:
            covered = hi
            if covered >= end:
                return True
    return False


def stack_problem(stack: AltStack | None) -> str | None:
    """Why a signal delivered now would crash the process, or None when it would not."""
    if stack is None or not stack.enabled:
        return None
    if not is_mapped(stack.sp, stack.size):
        return f"the alternate signal stack {stack} is not mapped memory"
    return None
