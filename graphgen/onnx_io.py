"""Building, validating, saving and reading graphgen ONNX files.

Files are written atomically (a temporary file in the target folder, validated, then renamed), so
no half-written model ever exists under its final name. Models over 2 GB go to external data.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import onnx
from onnx import numpy_helper

from graphgen.errors import GraphError, SpecError
from graphgen.onnx_emit import DEFAULT_OPSET, emit_model, emit_skeleton
from graphgen.plan import Plan, expand, fold_bn
from graphgen.spec import Spec, spec_from_mapping
from graphgen.weights import Weights, fold_weights, init_weights
from resnet_common.errors import UserError
from resnet_common.fileio import atomic_write_bytes

EXTERNAL_DATA_THRESHOLD = 2**31 - 2**26  # protobuf's 2 GiB ceiling, with room for the graph


def _plan_and_weights(
    spec: Spec, seed: int, fold: bool, weights: Weights | None
) -> tuple[Plan, Weights]:
    plan = expand(spec)
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
) -> onnx.ModelProto:
    """Spec -> plan -> (seeded or given) weights -> ModelProto, all in memory."""
    plan, weights = _plan_and_weights(spec, seed, fold, weights)
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
    **options: Any,
) -> Path:
    """Spec -> plan -> weights -> a validated file, streamed: the weights are written straight
    from their arrays, so the model's bytes are never held twice (peak memory near 1x the model).
    Options as for `build`: batch, dtype, io_dtype, opset."""
    plan, weights = _plan_and_weights(spec, seed, fold, weights)
    metadata = {"graphgen.seed": str(seed)}
    skeleton, arrays = emit_skeleton(plan, weights, metadata=metadata, **options)
    return write_streamed(skeleton, arrays, path, check=check)


def _target(path: str | Path) -> tuple[Path, Path]:
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise UserError(f"cannot write {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise UserError(f"cannot write {path}: folder {folder} is not writable")
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
    plus `<name>.data` external data when it would pass protobuf's 2 GB."""
    if sys.byteorder != "little":  # pragma: no cover - ONNX raw data is little-endian
        arrays = [a.astype(a.dtype.newbyteorder("<")) for a in arrays]
    path, folder = _target(path)
    total = sum(a.nbytes for a in arrays)
    try:
        tmpdir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=folder))
    except OSError as err:  # e.g. a read-only or pseudo file system that passed os.access
        raise UserError(f"cannot write {path}: {err.strerror or err}") from None
    try:
        if check:
            _check_skeleton(skeleton, arrays, tmpdir)
        tmp = tmpdir / path.name
        if total > EXTERNAL_DATA_THRESHOLD:
            data_name = f"{path.name}.data"
            model = onnx.ModelProto()
            model.CopyFrom(skeleton)
            with open(tmpdir / data_name, "wb") as f:
                for tensor, array in zip(model.graph.initializer, arrays, strict=True):
                    _set_external(tensor, data_name, f.tell(), array.nbytes)
                    f.write(array.data.cast("B"))
                f.flush()
                os.fsync(f.fileno())
            atomic_write_bytes(tmp, model.SerializeToString())
            os.replace(tmpdir / data_name, folder / data_name)
        else:
            with open(tmp, "wb") as f:
                _stream_single_file(f, skeleton, arrays)
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
        stale = folder / f"{path.name}.data"
        if total <= EXTERNAL_DATA_THRESHOLD and stale.is_file():
            stale.unlink()  # an earlier, larger build's external data: no longer referenced
    except OSError as err:
        raise UserError(f"cannot write {path}: {err.strerror or err}") from None
    finally:
        for leftover in tmpdir.iterdir():
            leftover.unlink()
        tmpdir.rmdir()
    return path


def initializer_bytes(model: onnx.ModelProto) -> int:
    return sum(len(t.raw_data) for t in model.graph.initializer)


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
    """Load any ONNX file, with a one-line error for missing or non-ONNX files."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no such file: {path}")
    try:
        return onnx.load(str(path), load_external_data=load_weights)
    except Exception as err:  # protobuf raises DecodeError and others for garbage
        raise GraphError(f"{path} is not an ONNX model ({type(err).__name__})") from None


def metadata(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


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
    except (json.JSONDecodeError, SpecError) as err:
        raise GraphError(f"{source}: unreadable graphgen.spec metadata: {err}") from None
    plan = expand(spec)
    return fold_bn(plan) if json.loads(meta.get("graphgen.fold_bn", "false")) else plan


def weights_of(model: onnx.ModelProto) -> Weights:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def read_graphgen_model(path: str | Path) -> tuple[Plan, Weights]:
    model = load(path)
    return plan_of(model, source=str(path)), weights_of(model)
