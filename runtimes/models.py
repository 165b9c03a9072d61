"""Turn a model argument (a standard variant name, a Spec, or an .onnx path) into a file to run.

Variants are built once per (spec, precision, fold, seed, opset, graphgen version) into a cache
folder and reused, so a sweep over engines and batch sizes builds each graph once. Graphs have a
dynamic batch dimension: one file serves every batch size. fp16 means graphgen's float16 graph
with float32 I/O (precision comes from the graph for TensorRT 11 and the onnxruntime CPU EP);
bf16 graphgen's bfloat16 graph (opset 22), whose reference is the fp32 graph of the same
weights, so its parity includes the weights' rounding. int8 means the QDQ graph `graphgen
quantize` makes from the BN-folded fp32 graph (both cached); the fp32 graph stays the int8
model's reference (`ResolvedModel.reference_path`). int8-bf16 is the same QDQ graph run with
its float parts (the ops between the integer ones) in bfloat16, where an engine offers that
(OpenVINO's default on CPUs with AMX or AVX-512 BF16).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from graphgen import __version__ as graphgen_version
from graphgen.cost import graph_cost
from graphgen.errors import GraphError
from graphgen.onnx_emit import default_opset
from graphgen.onnx_io import build_file, fixed_batch, load, metadata, plan_of
from graphgen.plan import Plan, expand, fold_bn
from graphgen.spec import STANDARD_VARIANTS, Spec, variant
from resnet_common.errors import UserError
from runtimes.model_cache import build_cached

DTYPE_OF = {
    "fp32": "float32",
    "fp16": "float16",
    "bf16": "bfloat16",
    "int8": "int8",
    "int8-bf16": "int8",
}
DEFAULT_MODELS = ("resnet18", "resnet50")
PRECISION_OF = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16", "int8": "int8"}
# The precisions that run an int8 QDQ graph: int8-bf16 is the same file, its float parts in bf16.
INT8_PRECISIONS = ("int8", "int8-bf16")


def file_precision_of(precision: str) -> str:
    """The precision of the file a precision runs ("int8" for int8-bf16)."""
    return PRECISION_OF[DTYPE_OF[precision]]


@dataclass(frozen=True)
class ResolvedModel:
    """A model file ready to hand to a runner, with what the harness needs to know about it."""

    path: Path
    name: str
    plan: Plan | None  # None for files graphgen did not make
    macs: int | None  # per sample (batch 1); None when the graph cannot be sized
    precision: str
    image_size: int
    input_name: str = "input"
    fixed_batch: int | None = None  # the batch a file fixes (graphgen --batch N, most exports)
    # int8: the fp32 graph it was quantized from, which parity compares against (None when the
    # file's source cannot be found: then there is nothing honest to compare with); bf16: the
    # fp32 graph of the same weights (None for a bf16 file given as it is: its own weights,
    # upcast, are the reference then)
    reference_path: Path | None = None

    @property
    def is_graphgen(self) -> bool:
        return self.plan is not None

    @property
    def depth(self) -> int | None:
        return None if self.plan is None else self.plan.spec.depth

    @property
    def params(self) -> int | None:
        return None if self.plan is None else self.plan.params


def default_cache_dir() -> Path:
    """$GRAPHGEN_CACHE, else $XDG_CACHE_HOME/graphgen, else ~/.cache/graphgen."""
    if os.environ.get("GRAPHGEN_CACHE"):
        return Path(os.environ["GRAPHGEN_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "graphgen"


def resolve(
    model: str | Path | Spec,
    *,
    precision: str = "fp32",
    image_size: int | None = None,
    fold: bool = False,
    seed: int = 0,
    cache_dir: str | Path | None = None,
) -> ResolvedModel:
    """The built file for `model` at this precision, image size and BN folding.

    A path to a graphgen file is rebuilt (same weights) into the cache only when the request
    differs from the file (precision, image size, or fold=True on an unfolded file); fold=False
    leaves a folded file as it is. A foreign file is used as it is and must already match.
    """
    if precision not in DTYPE_OF:
        raise UserError(f"unknown precision {precision!r}; choose one of {', '.join(DTYPE_OF)}")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if isinstance(model, Spec):
        return _from_spec(model, precision, image_size, fold, seed, cache)
    text = str(model)
    if isinstance(model, str) and text in STANDARD_VARIANTS:
        return _from_spec(variant(text), precision, image_size, fold, seed, cache)
    if isinstance(model, str) and not text.endswith(".onnx") and not Path(text).exists():
        raise UserError(
            f"unknown model {text!r}: give a path to an .onnx file or a standard variant "
            f"({', '.join(list(STANDARD_VARIANTS)[:6])}, ...; see `graphgen list`)"
        )
    return _from_path(Path(model), precision, image_size, fold, cache)


def _sized(spec: Spec, image_size: int | None) -> Spec:
    if image_size is None or image_size == spec.image_size:
        return spec
    try:
        return spec.replace(image_size=image_size, name=spec.name)
    except UserError as err:
        raise UserError(f"{spec.name} cannot take image size {image_size}: {err}") from None


def _cache_path(cache: Path, name: str, key: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return (
        cache
        / f"{name}-{key['image_size']}px-{key['precision']}{'-folded' if key['fold'] else ''}-{digest}.onnx"
    )


def _ensure_cache(cache: Path) -> None:
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create model cache {cache}: {err.strerror or err}") from None


def _from_spec(
    spec: Spec, precision: str, image_size: int | None, fold: bool, seed: int, cache: Path
) -> ResolvedModel:
    spec = _sized(spec, image_size)
    key = {
        "spec": spec.to_json(),
        "precision": precision,
        "image_size": spec.image_size,
        "fold": fold,
        "seed": seed,
        "opset": default_opset(DTYPE_OF[precision]),
        "graphgen": graphgen_version,
    }
    if precision in INT8_PRECISIONS:
        source = _from_spec(spec, "fp32", None, True, seed, cache)
        return _quantized(source, spec.name, cache, precision)
    path = _cache_path(cache, spec.name, key)
    if not path.is_file():
        _ensure_cache(cache)
        build_cached(  # one builder per model; no debris from killed builds
            path,
            lambda target: build_file(
                spec, target, seed=seed, dtype=DTYPE_OF[precision], fold=fold
            ),
        )
    plan = fold_bn(expand(spec)) if fold else expand(spec)
    reference = None
    if precision == "bf16":  # judged against the fp32 graph of the same seed: rounding included
        reference = _from_spec(spec, "fp32", None, fold, seed, cache).path
    return ResolvedModel(
        path, spec.name, plan, plan.macs, precision, spec.image_size, reference_path=reference
    )


def _bf16_of(source: ResolvedModel, name: str, cache: Path) -> ResolvedModel:
    """The bfloat16 graph of a graphgen fp32 file (its own weights, rounded to nearest even),
    made into the cache once per source file; the source stays its reference."""
    from graphgen.onnx_emit import emit_skeleton
    from graphgen.onnx_io import write_streamed
    from graphgen.quantize import digest

    key = {
        "source": digest(source.path),
        "precision": "bf16",
        "image_size": source.image_size,
        "fold": bool(source.plan and source.plan.folded),
        "graphgen": graphgen_version,
    }
    path = _cache_path(cache, Path(name).stem if name.endswith(".onnx") else name, key)
    if not path.is_file():
        _ensure_cache(cache)
        model = load(source.path)
        plan = plan_of(model, source=str(source.path))
        seed = metadata(model).get("graphgen.seed")
        extra = {
            "graphgen.bf16.source": json.dumps({"file": source.path.name, "sha256": key["source"]})
        }
        if seed is not None:
            extra["graphgen.seed"] = seed
        weights = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}

        def write(target: Path) -> Path:
            skeleton, arrays = emit_skeleton(
                plan, dict(weights), batch=source.fixed_batch, dtype="bfloat16", metadata=extra
            )
            return write_streamed(skeleton, arrays, target)

        build_cached(path, write)
    return ResolvedModel(
        path,
        name,
        source.plan,
        source.macs,
        "bf16",
        source.image_size,
        fixed_batch=source.fixed_batch,
        reference_path=source.path,
    )


def _quantized(
    source: ResolvedModel, name: str, cache: Path, precision: str = "int8"
) -> ResolvedModel:
    """The int8 graph of a graphgen fp32 file, quantized into the cache once per source file
    (by digest), quantizer version and weight range (7-bit where this CPU saturates 8-bit)."""
    from graphgen.quantize import digest
    from runtimes.int8 import quantize_file, reduce_range_here

    reduce = reduce_range_here()
    key = {
        "source": digest(source.path),
        "precision": "int8",
        "image_size": source.image_size,
        "fold": True,
        "reduce_range": reduce,
        "graphgen": graphgen_version,
    }
    path = _cache_path(cache, Path(name).stem if name.endswith(".onnx") else name, key)
    if not path.is_file():
        _ensure_cache(cache)
        quantize_file(source.path, path, reduce_range=reduce)
    plan = source.plan if source.plan is None or source.plan.folded else fold_bn(source.plan)
    return ResolvedModel(
        path,
        name,
        plan,
        source.macs,
        precision,
        source.image_size,
        fixed_batch=source.fixed_batch,
        reference_path=source.path,
    )


def _from_path(
    path: Path, precision: str, image_size: int | None, fold: bool, cache: Path
) -> ResolvedModel:
    """A file is run exactly as it is: never rebuilt, so what is checked and timed is the file
    the user named (a rebuilt copy would hide a tampered graph)."""
    model = load(path)
    meta = metadata(model)
    if "graphgen.spec" not in meta:
        return _foreign(model, path, precision, image_size)
    plan = plan_of(model, source=str(path))
    size = plan.spec.image_size
    file_precision = PRECISION_OF.get(meta.get("graphgen.dtype", "float32"), "fp32")
    rebuild = "build the variant you want with `graphgen build` (this file is run as it is)"
    derived = precision in (*INT8_PRECISIONS, "bf16") and file_precision == "fp32"
    if image_size is not None and image_size != size and derived:
        raise UserError(f"{path} takes {size}x{size} images, not {image_size}: {rebuild}")
    if derived:
        source = ResolvedModel(
            path, str(path), plan, plan.macs, "fp32", size, fixed_batch=fixed_batch(model)
        )
        if precision == "bf16":
            return _bf16_of(source, str(path), cache)
        return _quantized(source, str(path), cache, precision)
    if file_precision == "int8":
        if precision not in INT8_PRECISIONS:
            raise UserError(f"{path} is an int8 graph: pass --precision int8 (or int8-bf16)")
    elif precision != file_precision:
        raise UserError(
            f"{path} is an {file_precision} graph: pass --precision {file_precision}, or {rebuild}"
        )
    if file_precision in ("int8", "bf16"):  # judged against the fp32 graph they came from
        source_of = int8_source if file_precision == "int8" else bf16_source
        return ResolvedModel(
            path,
            str(path),
            plan,
            plan.macs,
            precision,
            size,
            fixed_batch=fixed_batch(model),
            reference_path=source_of(path, meta),
        )
    if image_size is not None and image_size != size:
        raise UserError(f"{path} takes {size}x{size} images, not {image_size}: {rebuild}")
    if fold and not plan.folded:
        raise UserError(f"{path} is not BN-folded: {rebuild} with --fold-bn")
    return ResolvedModel(
        path, str(path), plan, plan.macs, precision, size, fixed_batch=fixed_batch(model)
    )


def int8_source(path: Path, meta: dict[str, str]) -> Path | None:
    """The fp32 graph an int8 file was quantized from, when it lies beside it with the digest
    the int8 file records; else None."""
    from graphgen.quantize import PROP, digest

    try:
        source = json.loads(meta[f"{PROP}.source"])
        candidate = path.parent / str(source["file"])
    except (KeyError, TypeError, json.JSONDecodeError):
        return None
    if not candidate.is_file() or candidate.resolve() == path.resolve():
        return None
    if source.get("sha256") and digest(candidate) != source["sha256"]:
        return None
    return candidate


def bf16_source(path: Path, meta: dict[str, str]) -> Path | None:
    """The fp32 graph a bf16 file was made from, when it lies beside it with the digest the
    file records (`graphgen.bf16.source`); else None."""
    from graphgen.quantize import digest

    try:
        source = json.loads(meta["graphgen.bf16.source"])
        candidate = path.parent / str(source["file"])
    except (KeyError, TypeError, json.JSONDecodeError):
        return None
    if not candidate.is_file() or candidate.resolve() == path.resolve():
        return None
    return candidate if digest(candidate) == source.get("sha256") else None


def check_batch(model: ResolvedModel, batch: int) -> None:
    if model.fixed_batch is not None and batch != model.fixed_batch:
        raise UserError(
            f"{model.name} has a fixed batch of {model.fixed_batch}: pass --batch "
            f"{model.fixed_batch}, or build it with a dynamic batch (graphgen build --batch dynamic)"
        )


def _foreign(
    model: onnx.ModelProto, path: Path, precision: str, image_size: int | None
) -> ResolvedModel:
    """A file graphgen did not make: run it as it is, if it matches what was asked."""
    init = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in init]
    if len(inputs) != 1 or not model.graph.output:
        raise GraphError(f"{path}: expected one image input and an output, found {len(inputs)}")
    dims = inputs[0].type.tensor_type.shape.dim
    shape = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    if len(shape) != 4:
        raise GraphError(f"{path}: input {inputs[0].name!r} is not NCHW (rank {len(shape)})")
    size = shape[2] or shape[3]
    if image_size is not None and size is not None and image_size != size:
        raise UserError(f"{path} takes {size}x{size} images, not {image_size}")
    if size is None and image_size is None:
        raise UserError(f"{path} has a dynamic image size: pass --image-size")
    kinds = [t.data_type for t in model.graph.initializer]
    file_precision = "fp32"
    for kind, name in ((onnx.TensorProto.FLOAT16, "fp16"), (onnx.TensorProto.BFLOAT16, "bf16")):
        if kinds.count(kind) * 2 > len(kinds):
            file_precision = name
    if precision != file_precision:
        raise UserError(
            f"{path} is an {file_precision} graph not made by graphgen, which cannot convert it "
            f"to {precision}; pass an {precision} file"
        )
    try:
        macs: int | None = graph_cost(model).macs
    except GraphError:
        macs = None
    return ResolvedModel(
        path,
        path.stem,
        None,
        macs,
        precision,
        image_size or int(size or 0),
        inputs[0].name,
        fixed_batch(model),
    )


def check_models(
    names: list[str],
    *,
    precisions: list[str],
    batches: list[int],
    image_size: int | None,
) -> None:
    """Bad model arguments are bad input (exit 2) before anything runs: unknown names, missing
    files, and files that cannot run as asked (another precision or size, a fixed batch)."""
    for name in names:
        if name in STANDARD_VARIANTS:
            continue
        if not name.endswith(".onnx"):
            raise UserError(
                f"unknown model {name!r}; use a standard variant "
                f"({', '.join(STANDARD_VARIANTS)}) or a path to an .onnx file"
            )
        if not Path(name).is_file():
            raise UserError(f"no such model file: {name}")
        for precision in precisions:
            resolved = resolve(name, precision=precision, image_size=image_size)
            for batch in batches:
                check_batch(resolved, batch)


def check_precisions(names: list[str]) -> None:
    bad = [p for p in names if p not in DTYPE_OF]
    if bad:
        raise UserError(f"unknown precision {bad[0]!r}; choose from {', '.join(DTYPE_OF)}")
