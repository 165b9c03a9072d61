"""The few functions a notebook calls, exported from `graphgen`: build a graph, load one, import a
trained one, describe one. The command lines run the same code (`graphgen build` builds its spec
with `spec_from_options`, `graphgen import` is `import_model`, `graphgen info` is `info`).

    import graphgen
    model = graphgen.build(20)                                # CIFAR ResNet-20, in memory
    path = graphgen.build(50, stride_at="3x3", output="r50.onnx")   # written, validated
    graphgen.info(path)["macs"]                                # 4,089,184,256

Nothing here imports torch or onnxruntime; importing a state_dict (torch) or checking against an
ONNX source (onnxruntime) imports them when asked.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, overload

import onnx

from graphgen.arguments import size_limits_for, spec_from_options
from graphgen.cost import graph_cost
from graphgen.errors import GraphError
from graphgen.importing import import_model
from graphgen.onnx_emit import DEFAULT_OPSET, check_dtype, check_opset
from graphgen.onnx_io import build as build_model
from graphgen.onnx_io import build_file, check_target, metadata, opset_of

__all__ = ["build", "import_model", "info", "load"]
from graphgen.onnx_io import load as load_file
from graphgen.spec import Spec
from resnet_common.cli import dtype_name
from resnet_common.fileio import refuse_overwriting_inputs
from resnet_common.limits import SizeLimits


@overload
def build(depth: int | None = None, *, output: None = None, **options: Any) -> onnx.ModelProto: ...


@overload
def build(depth: int | None = None, *, output: str | Path, **options: Any) -> Path: ...


def build(
    depth: int | None = None,
    *,
    output: str | Path | None = None,
    spec: str | Path | Spec | None = None,
    arch: str | None = None,
    family: str | None = None,
    batch: int | None = None,
    dtype: str = "float32",
    io_dtype: str = "float32",
    opset: int = DEFAULT_OPSET,
    fold_bn: bool = False,
    seed: int = 0,
    size_limits: dict[str, int] | None = None,
    **overrides: Any,
) -> onnx.ModelProto | Path:
    """A He-initialised ResNet graph, as `graphgen build` makes it: from a `depth` (of `family`,
    imagenet or cifar10; alone, 18/34/50/101/152 are ImageNet and 6n+2 CIFAR), a `spec` (a
    YAML/JSON file or a Spec) or an `arch` (`resnext50_32x4d`, `timm:resnet50d`), with `graphgen build`'s overrides as keywords (shortcut, block,
    stride_at, zero_pad, flavor, classes, image_size). Returns the ModelProto, or with `output`
    writes the validated file (streamed, atomically) and returns its path. `batch` None is a
    symbolic N; dtype float16 (or fp16) casts at the graph's ends unless `io_dtype` says so."""
    flavor = overrides.pop("flavor", None)
    net = spec_from_options(
        depth=depth, spec=spec, arch=arch, family=family, flavor=flavor, **overrides
    )
    dtype, io_dtype = dtype_name(dtype), dtype_name(io_dtype)
    check_opset(opset)
    check_dtype(dtype)
    check_dtype(io_dtype)
    limits = SizeLimits().raised(size_limits_for(spec, size_limits))
    options: dict[str, Any] = {"batch": batch, "dtype": dtype, "io_dtype": io_dtype, "opset": opset}
    if output is None:
        return build_model(net, seed=seed, fold=fold_bn, limits=limits, **options)
    if isinstance(spec, str | Path):
        refuse_overwriting_inputs(output, [(f"spec {spec}", spec)], flag="output")
    check_target(output)
    return build_file(net, output, seed=seed, fold=fold_bn, limits=limits, **options)


def load(path: str | Path, *, weights: bool = True) -> onnx.ModelProto:
    """Any ONNX file (with its external data unless `weights` is False), or one line saying why
    not: a missing, empty or non-ONNX file, or its data file missing."""
    return load_file(path, load_weights=weights)


def info(model: str | Path) -> dict[str, Any]:
    """Params, MACs (batch 1), FLOPs, op counts, I/O shapes and opset of any ONNX classifier, by
    walking its graph; for graphgen's files also the spec and the plan's own counts."""
    path = Path(model)
    proto = load_file(path, load_weights=False)
    described: dict[str, Any] = {**graph_cost(proto, name=path.stem).to_dict()}
    described["opset"] = opset_of(proto)
    meta = metadata(proto)
    if "graphgen.spec" in meta:
        try:
            described["graphgen"] = {
                "spec": json.loads(meta["graphgen.spec"]),
                "version": meta.get("graphgen.version"),
                "plan_params": int(meta["graphgen.params"]),
                "plan_macs": int(meta["graphgen.macs"]),
                "dtype": meta.get("graphgen.dtype"),
                "fold_bn": json.loads(meta.get("graphgen.fold_bn", "false")),
            }
        except (KeyError, ValueError) as err:  # JSONDecodeError is a ValueError
            raise GraphError(f"{path}: corrupt graphgen metadata ({err})") from None
    return described
