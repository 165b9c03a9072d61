"""Trained weights into graphgen graphs, by name: no torch, no mapping tables.

Weight names are the plan's tensor names, which equal torchvision's state_dict keys, so a
safetensors file from `resnet-train`, a torchvision-layout `.pt` state_dict or an `.npz` injects
as is. Torch's `num_batches_tracked` counters are not weights and are ignored. A mismatch is
refused with the missing, unexpected and wrongly-shaped names; nothing is written.
"""

from __future__ import annotations

import dataclasses
import json
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from graphgen.errors import GraphError, StridePlacementError
from graphgen.onnx_emit import DEFAULT_OPSET, DTYPES, emit_model, tensor_of
from graphgen.onnx_io import fixed_batch, metadata, opset_of, plan_of
from graphgen.plan import Plan, expand, fold_bn
from graphgen.spec import OPTIONAL_FIELDS, Spec
from graphgen.weights import Weights, fold_weights
from resnet_common.arrays import load_npz
from resnet_common.errors import UserError
from resnet_common.fileio import as_text

IGNORED_SUFFIXES = (".num_batches_tracked",)
# Keys under which checkpoints nest their state_dict (resnet-train's last.pt uses "model").
STATE_DICT_KEYS = ("state_dict", "model", "model_state_dict")
# Input normalisation (JSON lists on the 0..1 pixel scale) in the graph's metadata_props.
NORMALIZE_MEAN, NORMALIZE_STD = "graphgen.normalize_mean", "graphgen.normalize_std"
WEIGHT_FORMATS = ".safetensors, .npz, .pt/.pth (torch, loaded with weights_only=True)"


def read_weights(path: str | Path) -> Weights:
    """Name -> array from safetensors, npz, or (when torch is installed) a torch state_dict."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no such weights file: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".safetensors":
            from safetensors.numpy import load_file

            return dict(load_file(str(path)))
        if suffix == ".npz":  # headers checked against the data before anything is read
            return load_npz(path, what="weights file")
        if suffix in (".pt", ".pth"):
            return _read_torch(path)
    except UserError:
        raise
    except ImportError as err:
        raise UserError(f"cannot read {path}: {err.name} is not installed") from None
    except Exception as err:  # each format raises its own errors for garbage
        raise GraphError(f"{path} is not a readable {suffix} weights file ({err})") from None
    raise UserError(f"unknown weights format {path.name!r}; use {WEIGHT_FORMATS}")


def _read_torch(path: Path) -> Weights:
    try:
        import torch
    except ImportError:
        raise UserError(
            f"{path}: reading torch files needs torch; use .safetensors or .npz"
        ) from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise GraphError(
            f"{path} holds non-tensor objects; refused (torch.load weights_only=True)"
        ) from None
    if isinstance(state, dict):
        key = next((k for k in STATE_DICT_KEYS if isinstance(state.get(k), dict)), None)
        state = state[key] if key is not None else state
    if not isinstance(state, dict):
        raise GraphError(f"{path} holds a {type(state).__name__}, not a state_dict")
    out: Weights = {}
    for name, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise GraphError(f"{path}: {name!r} is a {type(value).__name__}, not a tensor")
        out[str(name).removeprefix("module.")] = value.detach().cpu().float().numpy()
    return out


def read_normalisation(path: str | Path) -> dict[str, str]:
    """Metadata props for the input normalisation a resnet-train safetensors file records.

    Empty when the file is not safetensors or carries none; never an error (it is optional).
    """
    if Path(path).suffix.lower() != ".safetensors":
        return {}
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
        norm = json.loads(meta.get("normalisation", "null"))
        mean, std = [float(v) for v in norm["mean"]], [float(v) for v in norm["std"]]
    except Exception:  # no metadata, not JSON, or another shape: nothing to carry
        return {}
    return {NORMALIZE_MEAN: json.dumps(mean), NORMALIZE_STD: json.dumps(std)}


def read_weight_spec(path: str | Path) -> dict[str, Any] | None:
    """The spec a resnet-train safetensors file records it was trained as (`graphgen.spec`), or
    None when the file records none (npz, torch files, other tools' safetensors)."""
    if Path(path).suffix.lower() != ".safetensors":
        return None
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
        spec = json.loads(meta["graphgen.spec"])
    except Exception:  # no metadata, not JSON: nothing recorded to check against
        return None
    return spec if isinstance(spec, dict) else None


STRIDE_HINT = "torchvision and timm: 3x3; Gluon's model zoo: 1x1 for resnet*_v1, 3x3 for resnet*_v2"


def stride_matters(spec: Spec) -> bool:
    """Whether where a unit strides changes the network: a bottleneck (its first 1x1 or its 3x3)
    in a net with a strided stage. Weights never show it: both have the same names and shapes."""
    return spec.block_kind.branch.stride_at_matters and len(spec.layers) > 1


def check_stride(
    spec: Spec,
    *,
    recorded: Mapping[str, Any] | None,
    given: str | None,
    source: str,
    model_source: str,
) -> None:
    """Refuse weights whose stride placement is unknown or not the graph's (a bottleneck graph).

    What the weights record (resnet-train's `graphgen.spec`) or `given` (--stride-at) says where
    they stride; a torchvision .pth records nothing, and guessing would be silently off (rel. L2
    0.08-0.20 for torchvision's ResNet-50 in a 1x1-striding graph)."""
    if not stride_matters(spec):
        return
    known = recorded.get("stride_at") if recorded is not None else None
    if known is not None and given is not None and given != known:
        raise StridePlacementError(
            f"--stride-at {given} contradicts {source}, which records it strides on the {known}"
        )
    weights = known or given
    if weights is None:
        raise StridePlacementError(
            f"{source} records no spec and its names and shapes do not show where a bottleneck "
            f"strides; {model_source} strides on the {spec.stride_at}: say where the weights "
            f"do with --stride-at 1x1 or 3x3 ({STRIDE_HINT})"
        )
    if weights != spec.stride_at:
        raise StridePlacementError(
            f"these weights stride on the {weights}, the graph ({model_source}) on the "
            f"{spec.stride_at}; "
            f"build the graph with --stride-at {weights}"
        )


# What makes weights mean something in a graph; the image size does not (convs are size-free).
ARCHITECTURE_KEYS = ("layers", "widths", "block", "stem", "shortcut", "stride_at", "stem_width")
# Architecture fields a spec's dict leaves out at their default (older weights never record them):
# the flavours, option A's padding, the zoo variants' fields and the stated ones (graphgen.spec).
OPTIONAL_KEYS = OPTIONAL_FIELDS
_DEFAULTS: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(Spec)}


def check_recorded_spec(
    recorded: Mapping[str, Any], spec: Spec, *, source: str, model_source: str
) -> None:
    """Refuse weights trained as another network than the graph's, even when their names and
    shapes fit (a CIFAR ResNet's option-A weights have exactly a plain net's names)."""
    graph = spec.to_dict()
    differ = [k for k in ARCHITECTURE_KEYS if k in recorded and recorded[k] != graph[k]]
    # Fields left out of a spec's dict at their default: absent means that default.
    differ += [
        k for k in OPTIONAL_KEYS if recorded.get(k, _DEFAULTS[k]) != graph.get(k, _DEFAULTS[k])
    ]
    if differ:
        shown = ", ".join(
            f"{k} {recorded.get(k, _DEFAULTS.get(k))!r} "
            f"(the graph: {graph.get(k, _DEFAULTS.get(k))!r})"
            for k in differ
        )
        raise GraphError(
            f"{source} records it was trained as another network than {model_source}: {shown}; "
            "build the graph from the weights' own spec"
        )


def check_finite(weights: Weights, *, source: str) -> None:
    """NaN or Inf weights (a diverged run) would make every output NaN: refuse, naming the
    first such tensor in plan order."""
    for name, value in weights.items():
        if not np.isfinite(value).all():
            bad = int(np.size(value) - np.count_nonzero(np.isfinite(value)))
            raise GraphError(
                f"{source}: tensor {name!r} holds {bad:,} NaN or Inf values (a diverged "
                "training run?); refused"
            )


def check_weights(plan: Plan, weights: Weights, *, source: str = "weights") -> Weights:
    """The weights the plan needs, in plan order as float32; refuse any mismatch, listing it all,
    and any NaN or Inf."""
    expected = plan.tensor_shapes()
    given = {k: v for k, v in weights.items() if not k.endswith(IGNORED_SUFFIXES)}
    missing = [k for k in expected if k not in given]
    unexpected = sorted(k for k in given if k not in expected)
    wrong = [
        f"{k} {tuple(np.shape(given[k]))} != {tuple(s)}"
        for k, s in expected.items()
        if k in given and tuple(np.shape(given[k])) != tuple(s)
    ]
    if missing or unexpected or wrong:
        parts = []
        for label, names in (("missing", missing), ("unexpected", unexpected), ("shape", wrong)):
            if names:
                shown = ", ".join(names[:8]) + (
                    f", ... ({len(names)} in all)" if len(names) > 8 else ""
                )
                parts.append(f"{label}: {shown}")
        raise GraphError(
            f"{source} does not fit {plan.spec.name or 'the graph'}: " + "; ".join(parts)
        )
    for k in expected:
        kind = np.asarray(given[k]).dtype.kind
        if kind not in "fiub":  # text, complex, dates: no float32 weight
            raise GraphError(
                f"{source}: tensor {k!r} holds {np.asarray(given[k]).dtype} values, not numbers"
            )
    with np.errstate(over="ignore"):  # float64 past float32's range: Inf, refused next
        checked = {k: np.ascontiguousarray(given[k], dtype=np.float32) for k in expected}
    check_finite(checked, source=source)
    return checked


def inject(
    model: onnx.ModelProto,
    weights: Weights,
    *,
    fold: bool = False,
    source: str = "weights",
    model_source: str = "the model",
    recorded_spec: Mapping[str, Any] | None = None,
    stride_at: str | None = None,
    extra_props: dict[str, str] | None = None,
) -> onnx.ModelProto:
    """A copy of `model` carrying `weights`; with `fold`, BN is folded into the convs.

    Unfolded weights (a state_dict) fit any graph built from the same spec, folded or not; folded
    weights fit a folded graph. The input graph's batch, dtypes and opset are kept. `extra_props`
    (for example `read_normalisation(path)`) go into the graph's metadata_props.
    `recorded_spec` (`read_weight_spec(path)`) is what the weights say they were trained as;
    weights whose architecture differs from the graph's are refused. Into a bottleneck graph,
    weights that record no spec need `stride_at` (where they stride: their names and shapes do not
    show it), and it must be the graph's.
    """
    plan = plan_of(model, source=model_source)
    if recorded_spec is not None:
        check_recorded_spec(recorded_spec, plan.spec, source=source, model_source=model_source)
    check_stride(
        plan.spec, recorded=recorded_spec, given=stride_at, source=source, model_source=model_source
    )
    base = expand(plan.spec)
    if plan.folded and not _fits(base, weights) and _fits(plan, weights):
        new = check_weights(plan, weights, source=source)
    else:
        new = check_weights(base, weights, source=source)
        if plan.folded or fold:
            new = fold_weights(base, new)
    props = metadata(model)
    props.pop("graphgen.seed", None)
    props["graphgen.weights"] = as_text(Path(source).name)
    props.update(extra_props or {})
    if fold and not plan.folded:
        return _rebuild(model, fold_bn(base), new, props)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    dtype = props.get("graphgen.dtype", "float32")
    by_name = {t.name: i for i, t in enumerate(out.graph.initializer)}
    for name, value in new.items():
        if name not in by_name:
            raise GraphError(f"{source}: the graph has no initializer {name!r}")
        out.graph.initializer[by_name[name]].CopyFrom(tensor_of(name, value, dtype))
    onnx.helper.set_model_props(out, props)
    return out


def _fits(plan: Plan, weights: Weights) -> bool:
    names = {k for k in weights if not k.endswith(IGNORED_SUFFIXES)}
    return names == set(plan.tensor_shapes())


def _rebuild(
    model: onnx.ModelProto, plan: Plan, weights: Weights, props: dict[str, str]
) -> onnx.ModelProto:
    """Emit the folded graph with the original's batch, dtypes and opset."""
    elem = model.graph.input[0].type.tensor_type.elem_type
    io_dtype = {v: k for k, v in DTYPES.items()}.get(elem, "float32")
    keep = {k: v for k, v in props.items() if not k.startswith("graphgen.") or k in _CARRIED}
    return emit_model(
        plan,
        weights,
        batch=fixed_batch(model),
        dtype=props.get("graphgen.dtype", "float32"),
        io_dtype=io_dtype,
        opset=opset_of(model) or DEFAULT_OPSET,
        metadata=keep,
    )


_CARRIED = ("graphgen.weights", NORMALIZE_MEAN, NORMALIZE_STD)
