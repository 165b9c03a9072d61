"""Building, validating, saving and reading graphgen ONNX files.

Files are written atomically (a temporary file in the target folder, validated, then renamed), so
no half-written model ever exists under its final name. Models over 2 GB go to external data.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from graphgen.errors import GraphError, SpecError, UserError
from graphgen.onnx_emit import DEFAULT_OPSET, emit_model
from graphgen.plan import Plan, expand, fold_bn
from graphgen.spec import Spec, spec_from_mapping
from graphgen.weights import Weights, fold_weights, init_weights

EXTERNAL_DATA_THRESHOLD = 2**31 - 2**26  # protobuf's 2 GiB ceiling, with room for the graph


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
    """Spec -> plan -> (seeded or given) weights -> ModelProto."""
    plan = expand(spec)
    weights = init_weights(plan, seed) if weights is None else dict(weights)
    if fold:
        weights = fold_weights(plan, weights)
        plan = fold_bn(plan)
    extra = {"graphgen.seed": str(seed)}
    return emit_model(
        plan, weights, batch=batch, dtype=dtype, io_dtype=io_dtype, opset=opset, metadata=extra
    )


def initializer_bytes(model: onnx.ModelProto) -> int:
    return sum(len(t.raw_data) for t in model.graph.initializer)


def save(model: onnx.ModelProto, path: str | Path, *, check: bool = True) -> Path:
    """Validate and write atomically; external data when the model would pass protobuf's 2 GB."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise UserError(f"cannot write {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise UserError(f"cannot write {path}: folder {folder} is not writable")
    external = initializer_bytes(model) > EXTERNAL_DATA_THRESHOLD
    tmpdir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=folder))
    try:
        tmp = tmpdir / path.name
        if external:
            data_name = f"{path.name}.data"
            onnx.save_model(
                model,
                tmp,
                save_as_external_data=True,
                all_tensors_to_one_file=True,
                location=data_name,
                size_threshold=1024,
            )
            if check:
                validate(tmp)
            os.replace(tmpdir / data_name, folder / data_name)
        else:
            if check:
                validate(model)
            data = model.SerializeToString()
            with open(tmp, "wb") as f:
                f.write(data)
            del data
        os.replace(tmp, path)
    except OSError as err:
        raise UserError(f"cannot write {path}: {err.strerror or err}") from None
    finally:
        for leftover in tmpdir.iterdir():
            leftover.unlink()
        tmpdir.rmdir()
    return path


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


def as_float32(weights: Weights) -> Weights:
    return {k: v.astype(np.float32) for k, v in weights.items()}
