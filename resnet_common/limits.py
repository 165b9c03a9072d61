"""Sane limits on network and data sizes, checked before anything is allocated.

A spec with `widths: [1000000000]` or `--image-size 1000000` is a typo far more often than an
intent, and left alone it hangs or dies of MemoryError. Every command checks the numbers it can
compute cheaply (blocks, parameters, MACs, the largest activation, memory) against these
limits and refuses in one line that names the number, the limit and how to raise it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from resnet_common.errors import TooLargeError, UserError


@dataclass(frozen=True)
class SizeLimits:
    """The defaults are far above every network of the paper (ResNet-1202: 600 blocks, 19.4M
    params; ResNet-152 at 224 px: 11.3 GMACs, largest activation 0.8M values per image)."""

    blocks: int = 10_000  # residual blocks in all stages, checked before the spec is expanded
    params: int = 1_000_000_000  # trainable parameters (4 GB in fp32)
    macs: int = 1_000_000_000_000  # multiply-accumulates per image
    activation: int = 2**30  # values in the largest tensor of one image (4 GB in fp32)
    memory: int | None = None  # bytes to assume free; default: what the machine says

    KEYS = ("blocks", "params", "macs", "activation", "memory")

    def raised(self, changes: Mapping[str, int]) -> SizeLimits:
        unknown = sorted(set(changes) - set(self.KEYS))
        if unknown:
            raise UserError(
                f"unknown size limit {unknown[0]!r}; choose from {', '.join(self.KEYS)}"
            )
        return dataclasses.replace(self, **dict(changes))


# Pixels of one image file, checked on its header before it is decoded: a 2 KB PNG may claim
# 50000 x 50000 (a decompression bomb). Below PIL's own warning limit (89 M pixels), far above
# any camera's frame. Calibration folders and ImageFolder trees both check it.
MAX_IMAGE_PIXELS = 2**26


def parse_limits(text: str) -> dict[str, int]:
    """`KEY=N[,KEY=N]` with N an integer or a number such as 5e9: what `--size-limit` takes."""
    out: dict[str, int] = {}
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in SizeLimits.KEYS:
            raise ValueError(
                f"expected KEY=N with KEY one of {', '.join(SizeLimits.KEYS)}, got {item!r}"
            )
        try:
            number = float(value) if any(c in value for c in ".eE") else int(value)
        except ValueError:
            raise ValueError(f"expected a number in {item!r}") from None
        if not 1 <= number < 2**63 or number != int(number):
            raise ValueError(f"expected a positive integer in {item!r}")
        out[key] = int(number)
    if not out:
        raise ValueError("empty size-limit list")
    return out


def check_size(
    value: int, limit: int, *, what: str, unit: str, key: str, hint: Callable[[str], str]
) -> None:
    """Refuse `value` past `limit`: the message has the number, the limit and how to raise it."""
    if value > limit:
        raise TooLargeError(
            f"{what} has {value:,} {unit}, past the limit of {limit:,}; if you mean it, "
            f"raise the limit with {hint(key)}"
        )


def available_memory() -> int | None:
    """Bytes of memory a new allocation can get now (MemAvailable), else the machine's total."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1024 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PB"  # pragma: no cover


def check_memory(
    needed: int,
    *,
    what: str,
    limits: SizeLimits,
    hint: Callable[[str], str],
    available: int | None = None,
) -> None:
    """Refuse work whose estimated memory exceeds what the machine (or `limits.memory`) has."""
    have = limits.memory if limits.memory is not None else available
    if have is None:
        have = available_memory()
    if have is not None and needed > have:
        raise TooLargeError(
            f"{what} needs about {format_bytes(needed)} of memory, more than the "
            f"{format_bytes(have)} available; make it smaller, or if you mean it, "
            f"raise the limit with {hint('memory')}"
        )
