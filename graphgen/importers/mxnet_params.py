"""MXNet's NDArray list files (`.params`, `nd.save`), read with numpy alone.

The layout follows MXNet 1.x's src/ndarray/ndarray.cc (NDArray::Save/Load and the list save):

    u64 0x112, u64 reserved, u64 count, count arrays, u64 name count, names (u64 length + bytes)

and each array is a u32 magic, then

- V2 (0xF993FAC9) and V3 (0xF993FACA, numpy shape semantics): i32 storage type (0 dense), shape,
  context, i32 dtype flag, raw little-endian data;
- V1 (0xF993FAC8): shape, context, dtype flag, data (no storage type);
- legacy (any other value): that u32 is the number of dimensions, then u32 dims, context, ...

where a shape is i32 ndim + i64 dims and a context is i32 device type + i32 device id. A shape of
ndim 0 (V1, V2, legacy) or with an unknown dim (V3) is an empty array with nothing after it.
"""

from __future__ import annotations

import math
import os
import stat
import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np

from resnet_common.errors import UserError
from resnet_common.limits import SizeLimits

LIST_MAGIC = 0x112
V1_MAGIC, V2_MAGIC, V3_MAGIC = 0xF993FAC8, 0xF993FAC9, 0xF993FACA
STORAGE_TYPES = {0: "dense", 1: "row_sparse", 2: "csr"}
# mshadow's type flags (include/mshadow/base.h); 12 is bfloat16, widened to float32 here.
DTYPES: dict[int, np.dtype] = {
    0: np.dtype("<f4"),
    1: np.dtype("<f8"),
    2: np.dtype("<f2"),
    3: np.dtype("u1"),
    4: np.dtype("<i4"),
    5: np.dtype("i1"),
    6: np.dtype("<i8"),
    12: np.dtype("<u2"),
}
BFLOAT16 = 12
MAX_NDIM = 32  # MXNet's own limit is far lower; anything above is not a shape
# Values in all arrays of one file: the parameter limit (graphgen.sizes) plus room for BN
# statistics, which are not parameters. A header past it is refused before anything is read.
MAX_VALUES = 2 * SizeLimits().params


class ParamsError(UserError):
    """A file that is not an MXNet NDArray list graphgen can read."""


class _Reader:
    """Reads a file piece by piece, each piece checked against what the file holds: a header
    may claim any size, and a sparse 64 GiB file costs nothing to make."""

    def __init__(self, f: BinaryIO, size: int, path: Path) -> None:
        self.f, self.size, self.pos, self.path = f, size, 0, path
        self.values = 0  # read so far, against MAX_VALUES

    def take(self, size: int, what: str) -> bytes:
        if size < 0 or self.pos + size > self.size:
            raise ParamsError(
                f"{self.path} is truncated: {what} needs {size:,} bytes at offset {self.pos:,}, "
                f"the file has {self.size - self.pos:,} left"
            )
        chunk = self.f.read(size)
        if len(chunk) != size:
            raise ParamsError(f"{self.path} changed while it was read")
        self.pos += size
        return chunk

    def unpack(self, fmt: str, what: str) -> int:
        value: int = struct.unpack(fmt, self.take(struct.calcsize(fmt), what))[0]
        return value


def read_params(path: str | Path) -> dict[str, np.ndarray]:
    """Name -> array of an MXNet `.params` file (from `save_parameters`, `export` or `nd.save`).

    Float arrays come back as float32 (bfloat16 widened), others as stored. Unnamed lists get
    names "0", "1", ...; sparse arrays, unknown dtypes and damaged files are refused.
    """
    path = Path(path)
    try:
        info = os.stat(path)
    except OSError:
        raise ParamsError(f"no such .params file: {path}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ParamsError(f"{path} is not a regular file")
    with open(path, "rb") as f:
        return _read_list(_Reader(f, info.st_size, path))


def _read_list(r: _Reader) -> dict[str, np.ndarray]:
    path = r.path
    head = r.take(min(8, r.size), "the file header")
    magic = struct.unpack("<Q", head)[0] if len(head) == 8 else None
    if magic != LIST_MAGIC:
        raise ParamsError(
            f"{path} is not an MXNet NDArray file (header {_hex(head)}, expected 0x112)"
        )
    r.unpack("<Q", "the reserved field")
    count = r.unpack("<Q", "the array count")
    if count > r.size:
        raise ParamsError(f"{path} is damaged: it claims {count} arrays")
    arrays = [_read_array(r, i) for i in range(count)]
    name_count = r.unpack("<Q", "the name count")
    if name_count not in (0, count):
        raise ParamsError(f"{path} is damaged: {count} arrays but {name_count} names")
    names = []
    for i in range(name_count):
        length = r.unpack("<Q", f"name {i}'s length")
        try:
            names.append(r.take(length, f"name {i}").decode("utf-8"))
        except UnicodeDecodeError:
            raise ParamsError(f"{path} is damaged: name {i} is not text") from None
    if r.pos != r.size:
        raise ParamsError(f"{path} has {r.size - r.pos:,} stray bytes after the names")
    names = names or [str(i) for i in range(count)]
    if len(set(names)) != len(names):
        raise ParamsError(f"{path} names an array twice")
    return dict(zip(names, arrays, strict=True))


def _hex(data: bytes) -> str:
    return "0x" + data[::-1].hex() if data else "empty"


def _read_array(r: _Reader, index: int) -> np.ndarray:
    what = f"array {index}"
    magic = r.unpack("<I", f"{what}'s magic")
    if magic in (V2_MAGIC, V3_MAGIC):
        stype = r.unpack("<i", f"{what}'s storage type")
        if stype != 0:
            kind = STORAGE_TYPES.get(stype, f"unknown storage type {stype}")
            raise ParamsError(
                f"{r.path}: {what} is stored {kind}; only dense arrays are weights graphgen reads"
            )
        ndim = r.unpack("<i", f"{what}'s ndim")
        if magic == V3_MAGIC and ndim in (-1, 0):  # numpy semantics: unknown, or a scalar
            shape: tuple[int, ...] | None = None if ndim == -1 else ()
        else:
            shape = _shape(r, ndim, "<q", what)
        if shape is None or (magic == V3_MAGIC and any(d < 0 for d in shape)):
            return np.zeros((0,), np.float32)
    elif magic == V1_MAGIC:
        shape = _shape(r, r.unpack("<i", f"{what}'s ndim"), "<q", what)
        if shape is None:
            return np.zeros((0,), np.float32)
    elif magic <= MAX_NDIM:  # legacy: the magic is the number of u32 dimensions
        shape = _shape(r, magic, "<I", what)
        if shape is None:
            return np.zeros((0,), np.float32)
    else:
        raise ParamsError(
            f"{r.path}: {what} has an unknown array magic {magic:#x} (MXNet writes 0xf993fac9)"
        )
    if any(d < 0 for d in shape):
        raise ParamsError(f"{r.path} is damaged: {what} has shape {shape}")
    r.unpack("<i", f"{what}'s device type")
    r.unpack("<i", f"{what}'s device id")
    flag = r.unpack("<i", f"{what}'s dtype")
    if flag not in DTYPES:
        raise ParamsError(
            f"{r.path}: {what} has dtype flag {flag}, which graphgen does not read "
            "(float32/64/16, bfloat16, int8/32/64, uint8)"
        )
    dtype = DTYPES[flag]
    numel = math.prod(shape)  # Python's integers: numpy's int64 product wraps around
    r.values += numel
    # (0, 2**40, 2**40) has no values, and no numpy array has that shape either
    if r.values > MAX_VALUES or math.prod(d for d in shape if d) > MAX_VALUES:
        raise ParamsError(
            f"{r.path}: {what} has shape {shape}, {numel:,} values: past the {MAX_VALUES:,} "
            "values a weights file here may hold (a damaged or crafted header)"
        )
    raw = r.take(numel * dtype.itemsize, f"{what}'s data")
    array = np.frombuffer(raw, dtype).reshape(shape)
    if flag == BFLOAT16:
        return (array.astype(np.uint32) << 16).view(np.float32)
    if array.dtype.kind == "f":
        with np.errstate(over="ignore"):  # float64 past float32's range: Inf, refused later
            return array.astype(np.float32)
    return array.astype(array.dtype.newbyteorder("="))


def _shape(r: _Reader, ndim: int, fmt: str, what: str) -> tuple[int, ...] | None:
    if ndim < 0 or ndim > MAX_NDIM:
        raise ParamsError(f"{r.path} is damaged: {what} has {ndim} dimensions")
    if ndim == 0:
        return None
    return tuple(r.unpack(fmt, f"{what}'s shape") for _ in range(ndim))
