"""Hostile inputs for the second hardening battery (tests/test_hardening_second.py and the fuzz
tests): YAML alias bombs, sparse giants, crafted ONNX graphs, .params and .npy headers, images
whose headers lie. Each maker writes under the test's folder `d` only and is cheap: a "64 GiB"
file is sparse, a "2.5 G pixel" image is a few hundred bytes."""

from __future__ import annotations

import contextlib
import json
import os
import struct
import sys
import tempfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import onnx

from graphgen.spec import cifar_spec

TINY = cifar_spec(8, image_size=8)  # CIFAR ResNet-8 at 8x8: a 75k-parameter graph
Maker = Callable[[Path], None]
PARAMS_MAGIC, V2_MAGIC = 0x112, 0xF993FAC9


def alias_bomb(levels: int = 9) -> str:
    """A YAML flow sequence of `9**levels` leaves in about 60 bytes a level: each level is an
    anchor and eight aliases of the level below (the billion laughs, in YAML)."""
    text = "[x, x, x, x, x, x, x, x, x]"
    for i in range(levels - 1):
        text = f"[&a{i} {text}" + f", *a{i}" * 8 + "]"
    return text


def deep(levels: int, open_: str = "[", close: str = "]") -> str:
    return open_ * levels + close * levels


def text_file(name: str, text: str | bytes) -> Maker:
    def make(d: Path) -> None:
        path = d / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode() if isinstance(text, str) else text)

    make.__name__ = f"text_file({name})"
    return make


def sparse_file(name: str, size: int, head: bytes = b"") -> Maker:
    """A file of `size` bytes that takes no disk: `head`, then a hole."""

    def make(d: Path) -> None:
        with open(d / name, "wb") as f:
            f.write(head)
            f.truncate(size)

    return make


def big_text_file(name: str, head: str, filler: bytes, size: int) -> Maker:
    """`head` then `filler` repeated to `size` bytes: a real (not sparse) big text file."""

    def make(d: Path) -> None:
        block = filler * (1 << 20 // max(len(filler), 1))
        with open(d / name, "wb") as f:
            f.write(head.encode())
            written = len(head)
            while written < size:
                chunk = block[: size - written]
                f.write(chunk)
                written += len(chunk)

    return make


def a_fifo(name: str) -> Maker:
    def make(d: Path) -> None:
        path = d / name
        path.parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(path)

    return make


def a_symlink(name: str, target: str) -> Maker:
    """`name` -> `target` (relative to the test's folder, or absolute)."""

    def make(d: Path) -> None:
        path = d / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.symlink_to(target if target.startswith("/") else d / target)

    return make


@contextlib.contextmanager
def native_stderr() -> Iterator[Callable[[], str]]:
    """Capture what is written to file descriptor 2 itself (C++ libraries' logs, which bypass
    sys.stderr) while the block runs; the yielded function returns it afterwards."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as f:
        os.dup2(f.fileno(), 2)
        text: list[str] = []
        try:
            yield lambda: "".join(text)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            f.seek(0)
            text.append(f.read().decode(errors="replace"))


def chain(*makers: Maker) -> Maker:
    def make(d: Path) -> None:
        for m in makers:
            m(d)

    return make


# --- ONNX -------------------------------------------------------------------------------------


def tiny_onnx() -> onnx.ModelProto:
    """The tiny graph with graphgen's metadata stripped: a foreign file."""
    from graphgen.onnx_io import build

    model = build(TINY, seed=1)
    del model.metadata_props[:]
    return model


def node(model: onnx.ModelProto, name: str) -> onnx.NodeProto:
    return next(n for n in model.graph.node if n.name == name)


def initializer(model: onnx.ModelProto, name: str) -> onnx.TensorProto:
    return next(t for t in model.graph.initializer if t.name == name)


def attribute(n: onnx.NodeProto, name: str) -> onnx.AttributeProto:
    return next(a for a in n.attribute if a.name == name)


def edited_onnx(
    name: str, edit: Callable[[onnx.ModelProto], None], *, graphgen: bool = False
) -> Maker:
    """The tiny graph (foreign, or graphgen's own with `graphgen`), edited, saved as is."""

    def make(d: Path) -> None:
        from graphgen.onnx_io import build

        model = build(TINY, seed=1) if graphgen else tiny_onnx()
        edit(model)
        (d / name).write_bytes(model.SerializeToString())

    make.__name__ = f"edited_onnx({name})"
    return make


def external(tensor: onnx.TensorProto, location: str, offset: str, length: str) -> None:
    """Point `tensor` at external data (its raw data dropped)."""
    tensor.data_location = onnx.TensorProto.EXTERNAL
    tensor.ClearField("raw_data")
    del tensor.external_data[:]
    for key, value in (("location", location), ("offset", offset), ("length", length)):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value


def with_external(name: str, offset: str, length: str = "1728", *, graphgen: bool = False) -> Maker:
    """conv1.weight (1728 bytes) in `<name>.data`, at the given (hand-edited) offset."""

    def make(d: Path) -> None:
        from graphgen.onnx_io import build

        model = build(TINY, seed=1) if graphgen else tiny_onnx()
        weight = initializer(model, "conv1.weight")
        (d / f"{name}.data").write_bytes(weight.raw_data)
        external(weight, f"{name}.data", offset, length)
        (d / name).write_bytes(model.SerializeToString())

    return make


def cycle(model: onnx.ModelProto, reader: str, source: str) -> None:
    """Node `reader` reads its first input from tensor `source`, made later: a cycle."""
    node(model, reader).input[0] = source


# --- state_dicts, .params, .npy ---------------------------------------------------------------


def tiny_weights() -> dict[str, np.ndarray]:
    from graphgen.onnx_io import build, weights_of

    return weights_of(build(TINY, seed=3))


def state_dict(name: str, edit: Callable[[dict[str, np.ndarray]], None] | None = None) -> Maker:
    def make(d: Path) -> None:
        weights = tiny_weights()
        if edit is not None:
            edit(weights)
        np.savez(d / name, **weights)  # type: ignore[arg-type]

    return make


def params_array(
    values: np.ndarray, *, shape: tuple[int, ...] | None = None, flag: int = 0
) -> bytes:
    """One V2 NDArray record: magic, dense, the shape (given or the array's), cpu, dtype flag,
    the data."""
    dims = values.shape if shape is None else shape
    head = struct.pack("<Iii", V2_MAGIC, 0, len(dims)) + struct.pack(f"<{len(dims)}q", *dims)
    return head + struct.pack("<iii", 1, 0, flag) + values.tobytes()


def params_head(count: int) -> bytes:
    return struct.pack("<QQQ", PARAMS_MAGIC, 0, count)


def params_bytes(arrays: list[bytes], names: list[str]) -> bytes:
    body = params_head(len(arrays)) + b"".join(arrays)
    return (
        body
        + struct.pack("<Q", len(names))
        + b"".join(struct.pack("<Q", len(n)) + n.encode() for n in names)
    )


def params_file(name: str, arrays: list[bytes], names: list[str]) -> Maker:
    return text_file(name, params_bytes(arrays, names))


def gluon_params(name: str, poison: str | None = None, value: float = np.nan) -> Maker:
    """A Gluon ResNetV1 fixture (tests/fixtures/gluon) rewritten, one value of `poison` set to
    `value`."""

    def make(d: Path) -> None:
        from graphgen.importers.mxnet_params import read_params

        fixture = Path(__file__).parent / "fixtures" / "gluon" / "v1_basic.params"
        params = read_params(fixture)
        if poison is not None:
            params[poison] = params[poison].copy()
            params[poison].flat[0] = value
        names = list(params)
        arrays = [params_array(np.ascontiguousarray(params[k], np.float32)) for k in names]
        (d / name).write_bytes(params_bytes(arrays, names))

    return make


def npy_header(name: str, shape: tuple[int, ...], dtype: str = "<f4", data: bytes = b"") -> Maker:
    """A .npy whose header claims `shape` (and holds only `data` after it)."""

    def make(d: Path) -> None:
        header = {"descr": dtype, "fortran_order": False, "shape": shape}
        text = repr(header).encode()
        pad = 64 - (10 + len(text) + 1) % 64
        text += b" " * pad + b"\n"
        (d / name).write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + data)

    return make


def npy_array(name: str, array: np.ndarray) -> Maker:
    def make(d: Path) -> None:
        np.save(d / name, array)

    return make


# --- images -----------------------------------------------------------------------------------


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height RGB pixels, with a few bytes of image data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )


def small_png(size: int = 8, seed: int = 0) -> bytes:
    import io

    from PIL import Image

    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def bmp_bytes(width: int, height: int, *, pixels: bytes | None = None, bpp: int = 24) -> bytes:
    """A BITMAPINFOHEADER BMP; `pixels` short of what the header claims makes it corrupt."""
    row = (width * bpp // 8 + 3) & ~3
    data = b"\x7f" * (row * abs(height)) if pixels is None else pixels
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, bpp, 0, len(data), 2835, 2835, 0, 0)
    head = struct.pack("<2sIHHI", b"BM", 14 + len(info) + len(data), 0, 0, 14 + len(info))
    return head + info + data


def image_folder(name: str, files: dict[str, bytes]) -> Maker:
    """A folder of image files (relative names, sub-folders made as needed)."""

    def make(d: Path) -> None:
        for rel, data in files.items():
            path = d / name / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)

    return make


def imagefolder_tree(name: str, extra: dict[str, bytes]) -> Maker:
    """An ImageFolder tree (train/ and val/, two classes, two 8x8 PNGs each) plus `extra`."""
    files = {
        f"{split}/{cls}/{i}.png": small_png(8, seed=i + 10 * j)
        for split in ("train", "val")
        for j, cls in enumerate(("a", "b"))
        for i in range(2)
    }
    return image_folder(name, files | extra)


# --- run folders (resnet-train --resume) ------------------------------------------------------


def run_config(name: str, edit: Callable[[str], str]) -> Maker:
    """A run folder with a config.json, its text edited (not its data: JSON's corner cases)."""

    def make(d: Path) -> None:
        from tests.test_bad_inputs import _tiny_config

        run = d / name
        run.mkdir()
        text = json.dumps(_tiny_config(run))
        (run / "config.json").write_text(edit(text))

    return make
