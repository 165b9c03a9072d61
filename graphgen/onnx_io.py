"""Building, validating, saving and reading graphgen ONNX files.

Files are written atomically (a temporary file in the target folder, validated, then renamed), so
no half-written model ever exists under its final name. Models over 2 GB go to external data.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

import numpy as np
import onnx
from onnx import numpy_helper

from graphgen.errors import GraphError, SpecError
from graphgen.onnx_emit import emit_model, emit_skeleton
from graphgen.plan import Plan, expand, fold_bn
from graphgen.sizes import checked_plan
from graphgen.spec import Spec, spec_from_mapping
from graphgen.weights import Weights, fold_weights, init_weights
from resnet_common.errors import UserError, first_line, shown
from resnet_common.fileio import (
    as_text,
    check_replaceable,
    make_temp_dir,
    remove_debris,
    replace_into,
    write_error,
)
from resnet_common.limits import SizeLimits
from resnet_common.locks import output_lock

EXTERNAL_DATA_THRESHOLD = 2**31 - 2**26  # protobuf's 2 GiB ceiling, with room for the graph
# External data is named after its content, `<model>.<hash>.data`: a new build's data never
# replaces the data an older .onnx points at (a kill between the two renames leaves a consistent
# old pair), and the same build gives the same name (same inputs, same bytes).
DATA_HASH_CHARS = 16


def _plan_and_weights(
    spec: Spec, seed: int, fold: bool, weights: Weights | None, limits: SizeLimits | None
) -> tuple[Plan, Weights]:
    plan = checked_plan(spec, limits)
    weights = init_weights(plan, seed) if weights is None else dict(weights)
    if fold:
        weights = fold_weights(plan, weights)
        plan = fold_bn(plan)
    return plan, weights


def build(
    spec: Spec,
    *,
    seed: int = 0,
    batch: int | None = None,
    dtype: str = "float32",
    io_dtype: str = "float32",
    opset: int | None = None,
    fold: bool = False,
    weights: Weights | None = None,
    limits: SizeLimits | None = None,
) -> onnx.ModelProto:
    """Spec -> plan -> (seeded or given) weights -> ModelProto, all in memory. A spec past the
    size `limits` (default: resnet_common.limits.SizeLimits()) is refused before any weight."""
    plan, weights = _plan_and_weights(spec, seed, fold, weights, limits)
    extra = {"graphgen.seed": str(seed)}
    return emit_model(
        plan, weights, batch=batch, dtype=dtype, io_dtype=io_dtype, opset=opset, metadata=extra
    )


def build_file(
    spec: Spec,
    path: str | Path,
    *,
    seed: int = 0,
    fold: bool = False,
    weights: Weights | None = None,
    check: bool = True,
    limits: SizeLimits | None = None,
    **options: Any,
) -> Path:
    """Spec -> plan -> weights -> a validated file, streamed: the weights are written straight
    from their arrays, so the model's bytes are never held twice (peak memory near 1x the model).
    Options as for `build`: batch, dtype, io_dtype, opset. The target is checked first (an
    existing folder, not a device or a folder), then the sizes, then the weights are made. One
    builder per output at a time: a second is refused while the first holds `.NAME.lock`."""
    check_target(path)
    with output_lock(path):
        plan, weights = _plan_and_weights(spec, seed, fold, weights, limits)
        metadata = {"graphgen.seed": str(seed)}
        skeleton, arrays = emit_skeleton(plan, weights, metadata=metadata, **options)
        return write_streamed(skeleton, arrays, path, check=check)


def check_target(path: str | Path) -> tuple[Path, Path]:
    """The output path and its folder, refusing what cannot be written: a missing or read-only
    folder, or a target that exists and is not a regular file (`-o /dev/null`, a folder)."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise UserError(f"cannot write {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise UserError(f"cannot write {path}: folder {folder} is not writable")
    check_replaceable(path)
    return path, folder


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, length: int) -> bytes:
    """A length-delimited protobuf field's key and length."""
    return _varint(number << 3 | 2) + _varint(length)


GRAPH_FIELD, INITIALIZER_FIELD, RAW_DATA_FIELD = 7, 5, 9  # ModelProto, GraphProto, TensorProto


def _set_external(tensor: onnx.TensorProto, location: str, offset: int, length: int) -> None:
    tensor.data_location = onnx.TensorProto.EXTERNAL
    del tensor.external_data[:]
    for key, value in (("location", location), ("offset", offset), ("length", length)):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, str(value)


def _check_skeleton(skeleton: onnx.ModelProto, arrays: list[np.ndarray], folder: Path) -> None:
    """onnx's full check on the skeleton, its data stood in for by a sparse file of the right
    size: the checker sees every initializer's dims and type without reading 200 MB."""
    model = onnx.ModelProto()
    model.CopyFrom(skeleton)
    offset = 0
    for tensor, array in zip(model.graph.initializer, arrays, strict=True):
        _set_external(tensor, "check.data", offset, array.nbytes)
        offset += array.nbytes
    (folder / "check.onnx").write_bytes(model.SerializeToString())
    with open(folder / "check.data", "wb") as f:
        f.truncate(offset)
    try:
        validate(folder / "check.onnx")
    finally:
        (folder / "check.onnx").unlink()
        (folder / "check.data").unlink()


def _stream_single_file(f: BinaryIO, skeleton: onnx.ModelProto, arrays: list[np.ndarray]) -> None:
    """Write skeleton + arrays as one ModelProto. The graph field goes last and its initializers
    after its other fields: protobuf readers accept fields in any order, and the parsed model is
    identical to the in-memory one (a test checks this)."""
    head = onnx.ModelProto()
    head.CopyFrom(skeleton)
    head.ClearField("graph")
    graph = onnx.GraphProto()
    graph.CopyFrom(skeleton.graph)
    graph.ClearField("initializer")
    graph_bytes = graph.SerializeToString()
    prefixes = []
    size = len(graph_bytes)
    for stub, array in zip(skeleton.graph.initializer, arrays, strict=True):
        stub_bytes = stub.SerializeToString()
        raw_header = _field(RAW_DATA_FIELD, array.nbytes)
        tensor_len = len(stub_bytes) + len(raw_header) + array.nbytes
        prefix = _field(INITIALIZER_FIELD, tensor_len) + stub_bytes + raw_header
        prefixes.append(prefix)
        size += len(prefix) + array.nbytes
    f.write(head.SerializeToString())
    f.write(_field(GRAPH_FIELD, size))
    f.write(graph_bytes)
    for prefix, array in zip(prefixes, arrays, strict=True):
        f.write(prefix)
        f.write(array.data.cast("B"))


def write_streamed(
    skeleton: onnx.ModelProto, arrays: list[np.ndarray], path: str | Path, *, check: bool = True
) -> Path:
    """Validate the skeleton, then write it with its arrays atomically: one file, or the model
    plus `<name>.<hash>.data` external data when it would pass protobuf's 2 GB.

    Everything is written in a pid-tagged temporary folder beside the target (debris a killed
    build left is removed by the next one); the data file is renamed into place before the
    model, and the data the replaced model pointed at is removed only after the new one is in
    place, so the .onnx under the final name always points at data that exists and is its own.
    """
    if sys.byteorder != "little":  # pragma: no cover - ONNX raw data is little-endian
        arrays = [a.astype(a.dtype.newbyteorder("<")) for a in arrays]
    path, folder = check_target(path)
    remove_debris(folder)
    total = sum(a.nbytes for a in arrays)
    tmpdir = make_temp_dir(folder, path.name)
    try:
        if check:
            _check_skeleton(skeleton, arrays, tmpdir)
        tmp = tmpdir / path.name
        replaced = _external_locations(path)
        data_name = None
        with open(tmp, "wb") as f:
            if total > EXTERNAL_DATA_THRESHOLD:
                model, data_name = _write_external_data(skeleton, arrays, tmpdir / "data", path)
                f.write(model.SerializeToString())
            else:
                _stream_single_file(f, skeleton, arrays)
            f.flush()
            os.fsync(f.fileno())
        if data_name is not None:
            replace_into(tmpdir / "data", folder / data_name)
        replace_into(tmp, path)
        _remove_old_data(folder, path.name, replaced, keep=data_name)
    except OSError as err:
        raise write_error(err, path) from None
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return path


def _write_external_data(
    skeleton: onnx.ModelProto, arrays: list[np.ndarray], part: Path, path: Path
) -> tuple[onnx.ModelProto, str]:
    """Write the arrays to `part`, hashing them as they go; the model pointing at them by the
    name the hash gives."""
    model = onnx.ModelProto()
    model.CopyFrom(skeleton)
    digest = hashlib.sha256()
    offsets = []
    with open(part, "wb") as f:
        for array in arrays:
            view = array.data.cast("B")
            offsets.append(f.tell())
            digest.update(view)
            f.write(view)
        f.flush()
        os.fsync(f.fileno())
    name = f"{path.name}.{digest.hexdigest()[:DATA_HASH_CHARS]}.data"
    for tensor, array, offset in zip(model.graph.initializer, arrays, offsets, strict=True):
        _set_external(tensor, name, offset, array.nbytes)
    return model, name


SKELETON_MAX_BYTES = 64 * 2**20  # a model file with external data is small: only its graph


def _external_locations(path: Path) -> set[str]:
    """The external data files (plain names beside it) an existing model file points at."""
    try:
        if not path.is_file() or path.stat().st_size > SKELETON_MAX_BYTES:
            return set()
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # not ONNX, unreadable: it points at nothing we should remove
        return set()
    locations = set()
    for tensor in model.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            entry = {e.key: e.value for e in tensor.external_data}.get("location", "")
            if entry and Path(entry).name == entry and not entry.startswith("."):
                locations.add(entry)
    return locations


def _remove_old_data(folder: Path, name: str, replaced: set[str], *, keep: str | None) -> None:
    """After the new model is in place: the data files the replaced model pointed at, and the
    hash-named data of this model that a build killed before its last rename left behind."""
    own = re.compile(rf"{re.escape(name)}(\.[0-9a-f]{{{DATA_HASH_CHARS}}})?\.data")
    # Only data named as graphgen names this model's: a foreign file replaced here may point at
    # any file of the folder (`victim.txt`), which is not ours to remove.
    stale = {old for old in replaced if own.fullmatch(old)}
    with contextlib.suppress(OSError):
        stale.update(p.name for p in folder.iterdir() if own.fullmatch(p.name))
    for old in stale - {keep}:
        target = folder / old
        with contextlib.suppress(OSError):
            if target.is_file() and not target.is_symlink():
                target.unlink()


def save(model: onnx.ModelProto, path: str | Path, *, check: bool = True) -> Path:
    """Validate and write an in-memory model atomically, through the same writer as
    `build_file` (external data past 2 GB); the caller's model is left untouched."""
    arrays = [numpy_helper.to_array(t) for t in model.graph.initializer]
    skeleton = onnx.ModelProto()
    skeleton.CopyFrom(model)
    stubs = []
    for tensor in skeleton.graph.initializer:
        stub = onnx.TensorProto(name=tensor.name, data_type=tensor.data_type)
        stub.dims.extend(tensor.dims)
        stubs.append(stub)
    del skeleton.graph.initializer[:]
    skeleton.graph.initializer.extend(stubs)
    return write_streamed(skeleton, arrays, path, check=check)


def validate(model: onnx.ModelProto | Path) -> None:
    """onnx's full check (including strict shape inference); shapes must reach `logits`."""
    with contextlib.ExitStack() as stack:
        target = model if isinstance(model, onnx.ModelProto) else stack.enter_context(
            _text_path(model)
        )  # fmt: skip
        try:
            onnx.checker.check_model(target, full_check=True)
        except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as err:
            raise GraphError(f"generated graph failed onnx's checker: {err}") from None


@contextlib.contextmanager
def _text_path(path: Path) -> Iterator[str]:
    """`path` as UTF-8 text for onnx, which takes no other: a folder whose name is not UTF-8
    (a legal Linux name) is reached through its descriptor, /proc/self/fd/N/NAME."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            yield f"/proc/self/fd/{fd}/{as_text(path.name)}"
        finally:
            os.close(fd)
        return
    yield str(path)


def load(path: str | Path, *, load_weights: bool = True) -> onnx.ModelProto:
    """Load any ONNX file, with a one-line error for a missing, empty or non-ONNX file, one
    naming the external data file when that is what is missing, and one for a graph no walker
    may follow (`check_structure`: a cycle, a tensor made twice, initializers whose data does
    not fit their dims, external data entries that are not byte counts)."""
    model = load_skeleton(path)
    if load_weights:
        load_data(model, path)
    return model


def load_skeleton(path: str | Path) -> onnx.ModelProto:
    """The model without its external data (`load(path, load_weights=False)`), checked."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no such file: {path}")
    if path.stat().st_size == 0:
        raise GraphError(f"{path} is an empty file, not an ONNX model")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # protobuf raises DecodeError and others for garbage
        raise GraphError(f"{path} is not an ONNX model ({type(err).__name__})") from None
    check_structure(model, source=str(path))
    return model


def load_data(model: onnx.ModelProto, path: str | Path) -> None:
    """Read the external data of a model loaded from `path` by `load_skeleton` into it."""
    path = Path(path)
    locations = data_locations(model, source=str(path))
    if not locations:
        return
    for location in sorted(locations):
        if not (path.parent / location).is_file():
            raise GraphError(
                f"{path}: its external data file {location!r} is missing "
                f"(looked in {path.parent}); keep the .onnx and its data file together"
            )
    try:
        onnx.external_data_helper.load_external_data_for_model(model, str(path.parent))
    except Exception as err:  # a short, moved or outside-the-folder data file
        raise GraphError(
            f"{path}: cannot read its external data ({', '.join(sorted(locations))}): "
            f"{shown(first_line(err), 200)}"
        ) from None
    check_initializer_data(model, source=str(path))


# What an external data entry may say (onnx's own keys); offsets and lengths are byte counts.
EXTERNAL_KEYS = ("location", "offset", "length", "checksum", "basepath")
_BYTE_COUNT = re.compile(r"[0-9]{1,19}")
# Values in one initializer: past twice the parameter limit it is a crafted or damaged header.
MAX_TENSOR_VALUES = 2 * SizeLimits().params


def check_structure(model: onnx.ModelProto, *, source: str) -> None:
    """What every walk of a graph assumes, checked in one pass before any walk: each node
    reads only tensors made before it (graph inputs, initializers, earlier nodes' outputs), so
    the graph has no cycle and is in the topological order ONNX requires; each tensor is made
    once; each initializer's dims are sane and its data (where it is stored inline) fits them;
    each external data entry names a file beside the model with byte counts for offset and
    length."""
    g = model.graph
    made: dict[str, str] = {"": ""}
    for t in g.initializer:
        made.setdefault(t.name, "an initializer")
    for value in g.input:
        made.setdefault(value.name, "a graph input")
    later = {out: n for n in g.node for out in n.output}
    for index, node in enumerate(g.node):
        name = shown(node.name or (node.output[0] if node.output else f"#{index}"))
        for tensor in node.input:
            if tensor not in made:
                why = (
                    "before it is made: the graph has a cycle, or is not in the topological "
                    "order ONNX requires"
                    if tensor in later
                    else "which nothing makes"
                )
                raise GraphError(
                    f"{source}: {node.op_type} node {name} reads tensor {shown(tensor)} {why}"
                )
        for tensor in node.output:
            if tensor in made and tensor:
                raise GraphError(
                    f"{source}: tensor {shown(tensor)} is made twice ({made[tensor]} and "
                    f"{node.op_type} node {name}); ONNX makes each tensor once"
                )
            made[tensor] = f"{node.op_type} node {name}"
    for t in g.initializer:
        _check_dims(t, source)
        if t.data_location == onnx.TensorProto.EXTERNAL:
            _external_entries(t, source)
    check_initializer_data(model, source=source)


def _check_dims(t: onnx.TensorProto, source: str) -> int:
    dims = list(t.dims)
    if any(d < 0 for d in dims):
        raise GraphError(f"{source}: initializer {shown(t.name)} has dims {shown(dims)}")
    values = int(math.prod(dims))
    if max(values, math.prod(d for d in dims if d)) > MAX_TENSOR_VALUES:  # (0, 2**62) too
        raise GraphError(
            f"{source}: initializer {shown(t.name)} claims {values:,} values (dims "
            f"{shown(dims)}), past the {MAX_TENSOR_VALUES:,} a weight here may have"
        )
    return values


def _external_entries(t: onnx.TensorProto, source: str) -> dict[str, str]:
    where = f"{source}: initializer {shown(t.name)}"
    entries = {e.key: e.value for e in t.external_data}
    unknown = sorted(set(entries) - set(EXTERNAL_KEYS))
    if unknown:
        raise GraphError(f"{where}: unknown external data key {shown(unknown[0])}")
    for key in ("offset", "length"):
        if key in entries and not _BYTE_COUNT.fullmatch(entries[key]):
            raise GraphError(
                f"{where}: its external data {key} {shown(entries[key])} is not a byte count"
            )
    location = entries.get("location", "")
    parts = PurePosixPath(location.replace("\\", "/")).parts
    if not location or location.startswith(("/", "\\")) or ".." in parts:
        raise GraphError(
            f"{where}: its external data location {shown(location)} lies outside the "
            "model's folder (or is empty); data must sit beside the model"
        )
    return entries


# Bytes per value of the types stored in raw_data; the typed fields hold one value per entry
# (two for complex numbers).
def check_initializer_data(model: onnx.ModelProto, *, source: str) -> None:
    """Each initializer stored inline holds exactly the data its dims and type call for (a
    hand-edited or truncated file otherwise fails deep inside numpy)."""
    for t in model.graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            continue
        values = _check_dims(t, source)
        try:
            np_type = onnx.helper.tensor_dtype_to_np_dtype(t.data_type)
            field = onnx.helper.tensor_dtype_to_field(t.data_type)
        except (KeyError, ValueError, TypeError):
            raise GraphError(
                f"{source}: initializer {shown(t.name)} has an unknown data type {t.data_type}"
            ) from None
        if t.HasField("raw_data"):
            if t.data_type == onnx.TensorProto.STRING:
                raise GraphError(f"{source}: initializer {shown(t.name)} is text in raw data")
            expected = values * np.dtype(np_type).itemsize
            if t.data_type in _PACKED_4BIT:
                expected = (values + 1) // 2
            got, unit = len(t.raw_data), "bytes"
        else:
            per = 2 if t.data_type in _COMPLEX else 1
            expected, got, unit = values * per, len(getattr(t, field)), "values"
            if t.data_type in _PACKED_4BIT:
                expected = (values + 1) // 2
        if got != expected:
            raise GraphError(
                f"{source}: initializer {shown(t.name)} holds {got:,} {unit} of data, its dims "
                f"{shown(list(t.dims))} call for {expected:,}"
            )


_COMPLEX = (onnx.TensorProto.COMPLEX64, onnx.TensorProto.COMPLEX128)
_PACKED_4BIT = tuple(
    getattr(onnx.TensorProto, name) for name in ("INT4", "UINT4", "FLOAT4E2M1")
    if hasattr(onnx.TensorProto, name)
)  # fmt: skip


def check_with_onnx(path: str | Path) -> None:
    """onnx's own checker on a file (by path, so external data and files past 2 GB work), its
    first complaint as one line: what a foreign graph must pass before graphgen walks it."""
    try:
        try:
            str(path).encode("utf-8")
        except UnicodeEncodeError:  # a name that is not UTF-8: onnx takes paths as text
            onnx.checker.check_model(onnx.load(str(path), load_external_data=False))
        else:
            onnx.checker.check_model(str(path))
    except Exception as err:  # ValidationError, and a few others for odd files
        raise GraphError(f"{path} fails onnx's checker: {shown(first_line(err), 240)}") from None


def data_locations(model: onnx.ModelProto, *, source: str = "model") -> set[str]:
    """The external data files the main graph's initializers point at."""
    return {
        _external_entries(tensor, source)["location"]
        for tensor in model.graph.initializer
        if tensor.data_location == onnx.TensorProto.EXTERNAL
    }


def metadata(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def opset_of(model: onnx.ModelProto) -> int | None:
    """The default (ai.onnx) domain's opset: not `opset_import[0]`, which may be a custom
    domain. None when the model imports none."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def fixed_batch(model: onnx.ModelProto) -> int | None:
    """The first input's batch dimension when the file fixes it, else None (symbolic)."""
    initializers = {t.name for t in model.graph.initializer}
    for value in model.graph.input:
        if value.name not in initializers:
            dims = value.type.tensor_type.shape.dim
            if dims and dims[0].HasField("dim_value") and dims[0].dim_value > 0:
                return int(dims[0].dim_value)
            return None
    return None


def plan_of(model: onnx.ModelProto, *, source: str = "model") -> Plan:
    """The plan a graphgen file was built from, from its metadata alone."""
    meta = metadata(model)
    if "graphgen.spec" not in meta:
        raise GraphError(
            f"{source} was not made by graphgen (no graphgen.spec metadata), so its network "
            "cannot be rebuilt from a spec"
        )
    try:
        spec = spec_from_mapping(json.loads(meta["graphgen.spec"]), source=source)
        folded = json.loads(meta.get("graphgen.fold_bn", "false"))
    except (ValueError, RecursionError, SpecError) as err:  # JSONDecodeError is a ValueError
        raise GraphError(f"{source}: unreadable graphgen metadata: {err}") from None
    blocks, limit = sum(spec.layers), SizeLimits().blocks
    if blocks > limit:  # expanding it would take hours: a crafted or corrupt file
        raise GraphError(
            f"{source}: its graphgen.spec metadata has {blocks:,} blocks, past the limit of "
            f"{limit:,}; graphgen did not make this file as it stands"
        )
    plan = expand(spec)
    return fold_bn(plan) if folded is True else plan


def weights_of(model: onnx.ModelProto) -> Weights:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def read_graphgen_model(path: str | Path) -> tuple[Plan, Weights]:
    model = load(path)
    return plan_of(model, source=str(path)), weights_of(model)
