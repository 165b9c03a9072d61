"""Building, validating, saving and reading graphgen ONNX files.

Files are written atomically (a temporary file in the target folder, validated, then renamed), so
no half-written model ever exists under its final name. Models over 2 GB go to external data.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import onnx
from onnx import numpy_helper

from graphgen.errors import GraphError, SpecError
from graphgen.onnx_emit import DEFAULT_OPSET, emit_model, emit_skeleton
from graphgen.plan import Plan, expand, fold_bn
from graphgen.sizes import checked_plan
from graphgen.spec import Spec, spec_from_mapping
from graphgen.weights import Weights, fold_weights, init_weights
from resnet_common.errors import UserError, first_line
from resnet_common.fileio import (
    check_replaceable,
    make_temp_dir,
    remove_debris,
    replace_into,
    write_error,
)
from resnet_common.limits import SizeLimits

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
    opset: int = DEFAULT_OPSET,
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
    existing folder, not a device or a folder), then the sizes, then the weights are made."""
    check_target(path)
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
    stale = set(replaced)
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
    try:
        onnx.checker.check_model(
            model if isinstance(model, onnx.ModelProto) else str(model), full_check=True
        )
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as err:
        raise GraphError(f"generated graph failed onnx's checker: {err}") from None


def load(path: str | Path, *, load_weights: bool = True) -> onnx.ModelProto:
    """Load any ONNX file, with a one-line error for a missing, empty or non-ONNX file, and one
    naming the external data file when that is what is missing."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no such file: {path}")
    if path.stat().st_size == 0:
        raise GraphError(f"{path} is an empty file, not an ONNX model")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # protobuf raises DecodeError and others for garbage
        raise GraphError(f"{path} is not an ONNX model ({type(err).__name__})") from None
    locations = _data_locations(model)
    if load_weights and locations:
        for location in sorted(locations):
            if not (path.parent / location).is_file():
                raise GraphError(
                    f"{path}: its external data file {location!r} is missing "
                    f"(looked in {path.parent}); keep the .onnx and its data file together"
                )
        try:
            onnx.external_data_helper.load_external_data_for_model(model, str(path.parent))
        except Exception as err:  # a short, moved or outside-the-folder data file
            raise GraphError(f"{path}: cannot read its external data: {first_line(err)}") from None
    return model


def _data_locations(model: onnx.ModelProto) -> set[str]:
    """The external data files the main graph's initializers point at."""
    return {
        onnx.external_data_helper.ExternalDataInfo(tensor).location
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
