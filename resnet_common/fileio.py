"""Atomic file writes, shared by every package: a temporary file in the target folder, fsync,
then rename, so no half-written model, checkpoint, engine or report exists under its final name.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def public_mode(fd: int) -> None:
    """mkstemp makes files 0600; give them the mode an ordinary open() would (0666 & ~umask),
    so result folders can be shared and merged."""
    os.fchmod(fd, 0o666 & ~_umask())


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        public_mode(fd)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())
