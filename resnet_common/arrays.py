""".npy and .npz files read without trusting their headers.

A .npy header is a line of text that may claim any shape: `(10**12, 3, 224, 224)` in a file of
128 bytes makes numpy allocate (or try to) before it finds the data missing, and an .npz member
may claim more than the zip holds. Here the header is read first and the array refused, in one
line naming the file, when its values exceed `max_values`, when the file holds fewer bytes than
the header claims, or when its dtype holds Python objects. A named pipe or a device is refused
before it is opened (reading one never ends, or blocks forever).
"""

from __future__ import annotations

import io
import math
import os
import stat
import zipfile
from pathlib import Path
from typing import IO, cast

import numpy as np

from resnet_common.errors import UserError, shown

MAX_VALUES = 2**31  # values in one file's arrays: 8 GB of float32, far past any ResNet's weights


class ArrayFileError(UserError):
    """An .npy or .npz file whose header does not describe the data it holds."""


def regular_file(path: str | Path, *, what: str) -> Path:
    """`path`, when it is a regular file (following links); a one-line error otherwise."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except OSError as err:
        raise ArrayFileError(f"{what} {path}: {err.strerror or err}") from None
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file"
        raise ArrayFileError(f"{what} {path} is {kind}; give a file")
    return path


def _header(f: IO[bytes], where: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    fmt = np.lib.format
    try:
        version = fmt.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(f)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = fmt.read_array_header_2_0(f)
        else:
            raise ValueError(f"unknown .npy version {version}")
    except (ValueError, SyntaxError, TypeError, OverflowError, EOFError) as err:
        raise ArrayFileError(f"{where} is not a readable .npy ({shown(str(err), 80)})") from None
    if dtype.hasobject:
        raise ArrayFileError(f"{where} holds Python objects; refused (arrays of numbers only)")
    if any(not isinstance(d, int) or d < 0 for d in shape):
        raise ArrayFileError(f"{where}: its header claims shape {shown(shape)}")
    return tuple(shape), bool(fortran), dtype


def _checked_size(shape: tuple[int, ...], dtype: np.dtype, available: int, where: str, *,
                  max_values: int) -> int:  # fmt: skip
    values = math.prod(shape)
    if max(values, math.prod(d for d in shape if d)) > max_values:  # (0, 2**62): no array
        raise ArrayFileError(
            f"{where}: its header claims {values:,} values (shape {shown(shape)}), past the "
            f"{max_values:,} a file here may hold"
        )
    nbytes = values * dtype.itemsize
    if nbytes > available:
        raise ArrayFileError(
            f"{where}: its header claims {nbytes:,} bytes of data (shape {shown(shape)}), the "
            f"file holds {max(available, 0):,}; a truncated or edited file"
        )
    return nbytes


def npy_header(path: str | Path, *, what: str, max_values: int = MAX_VALUES) -> tuple[
    tuple[int, ...], np.dtype, int
]:  # fmt: skip
    """(shape, dtype, offset of the data) of an .npy file, its claims checked against the file."""
    path = regular_file(path, what=what)
    where = f"{what} {path}"
    with open(path, "rb") as f:
        shape, _, dtype = _header(f, where)
        offset = f.tell()
        size = os.fstat(f.fileno()).st_size
    _checked_size(shape, dtype, size - offset, where, max_values=max_values)
    return shape, dtype, offset


def load_npy(path: str | Path, *, what: str, max_values: int = MAX_VALUES) -> np.ndarray:
    """An .npy file's array, memory-mapped (read-only) once its header checks out: slicing it
    reads only the slice."""
    npy_header(path, what=what, max_values=max_values)
    try:
        array: np.ndarray = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as err:
        raise ArrayFileError(
            f"{what} {path} is not a readable .npy ({shown(str(err), 80)})"
        ) from None
    return array


def load_npz(path: str | Path, *, what: str, max_values: int = MAX_VALUES) -> dict[str, np.ndarray]:
    """Name -> array of an .npz file (every member an .npy), each header checked against what
    the zip says the member holds, and all of them together against `max_values`."""
    path = regular_file(path, what=what)
    out: dict[str, np.ndarray] = {}
    left = max_values
    try:
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                name = info.filename.removesuffix(".npy")
                where = f"{what} {path}: array {shown(name)}"
                with z.open(info) as f:
                    shape, fortran, dtype = _header(f, where)
                    header = f.tell()
                    nbytes = _checked_size(
                        shape, dtype, info.file_size - header, where, max_values=left
                    )
                    data = bytearray(nbytes)  # writable, unlike bytes
                    got = cast(io.BufferedIOBase, f).readinto(data)
                if got != nbytes:
                    raise ArrayFileError(f"{where} is truncated")
                left -= math.prod(shape)
                array = np.frombuffer(data, dtype).reshape(shape, order="F" if fortran else "C")
                out[name] = array
    except zipfile.BadZipFile as err:
        raise ArrayFileError(f"{what} {path} is not a readable .npz ({err})") from None
    except (OSError, EOFError, ValueError, NotImplementedError) as err:  # a damaged member
        raise ArrayFileError(
            f"{what} {path} is not a readable .npz ({shown(str(err), 80)})"
        ) from None
    return out
