"""Import a trained ResNet file (MXNet Gluon `.params`, any ONNX ResNet, a torchvision/timm
state_dict) as a graphgen graph: infer the spec, copy the weights, check, write.

What the new graph is checked against depends on what the source holds. An ONNX file holds its
computation: the new graph must agree with it on seeded inputs. A state_dict or a `.params` holds
names and arrays only: it is checked against the network `arch` names (built by its own library)
or stored outputs (`expect`); without either the result says plainly that the computation was NOT
checked, and never "verified". The written file records what was checked
(`graphgen.import.checked`). `graphgen import` and `graphgen.import_model` both call
`import_model`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from graphgen.errors import GraphError, StridePlacementError
from graphgen.importers.common import (
    CHECK_KEY,
    CHECKED_KEY,
    NAMES_AND_SHAPES,
    Check,
    Options,
    check,
    emit_imported,
    import_metadata,
    run_float64,
    seeded_input,
    write,
)
from graphgen.importers.source_nets import (
    Arch,
    available,
    parse_arch,
    require_library,
    source_label,
    source_outputs,
)
from graphgen.inject import check_finite, check_weights, read_normalisation, stride_matters
from graphgen.onnx_emit import DEFAULT_OPSET, check_dtype, check_opset
from graphgen.onnx_io import check_target, load, metadata
from graphgen.sizes import check_memory_bytes, checked_plan
from graphgen.spec import Spec
from graphgen.weights import Weights
from resnet_common.arrays import load_npz
from resnet_common.cli import dtype_name
from resnet_common.errors import UserError, first_line, shown
from resnet_common.fileio import as_text, refuse_overwriting_inputs
from resnet_common.limits import SizeLimits, check_memory
from resnet_common.locks import output_lock

STATE_DICT_SUFFIXES = (".safetensors", ".pt", ".pth", ".npz")
# What a source check yields once the new graph exists: (metadata tag, the comparison).
Pending = Callable[[onnx.ModelProto], tuple[str, Check]]


@dataclass(frozen=True)
class Imported:
    """What `import_model` wrote: the file, its spec and counts, what the source was found to
    be, and what the new graph was checked against (`checked`: the tags, `line`: in words)."""

    path: Path
    spec: Spec
    params: int
    macs: int
    found: str
    checked: str
    line: str

    def to_dict(self) -> dict[str, object]:
        return {
            "path": str(self.path),
            "name": self.spec.name,
            "params": self.params,
            "macs": self.macs,
            "found": self.found,
            "checked": self.checked,
            "check": self.line,
            "spec": self.spec.to_dict(),
        }


def import_model(
    source: str | Path,
    output: str | Path,
    *,
    arch: str | None = None,
    stride_at: str | None = None,
    expect: str | Path | None = None,
    image_size: int | None = None,
    batch: int | None = None,
    dtype: str = "float32",
    io_dtype: str = "float32",
    opset: int = DEFAULT_OPSET,
    fold_bn: bool = False,
    on_found: Callable[[str], None] | None = None,
    size_limits: Mapping[str, int] | None = None,
) -> Imported:
    """A trained ResNet (Gluon `.params`, any ONNX ResNet, a torchvision/timm state_dict) as a
    graphgen graph at `output`, as `graphgen import` makes it: checked against the ONNX source,
    the `arch` network ("torchvision:resnet50") or `expect`'s stored outputs, and never called
    verified when only names and shapes could be checked (`Imported.checked`). Raises
    VerifyError, writing nothing, when the new graph disagrees with its source; UserError for a
    source it cannot read. `on_found` hears what the source was found to be before the checks
    run (the CLI prints it). The graph options are `graphgen build`'s; the network is checked
    against `graphgen build`'s size limits (`size_limits` raises them) before anything of its
    size is made. One importer per output at a time (its `.NAME.lock`)."""
    dtype, io_dtype = dtype_name(dtype), dtype_name(io_dtype)
    check_opset(opset)
    check_dtype(dtype)
    check_dtype(io_dtype)
    options = Options(fold=fold_bn, dtype=dtype, io_dtype=io_dtype, opset=opset, batch=batch)
    source, output = Path(source), Path(output)
    if not source.is_file():
        raise UserError(f"no such file: {source}")
    expect = Path(expect) if expect is not None else None
    refuse_overwriting_inputs(output, [(f"file {source}", source), (f"--expect {expect}", expect)])
    check_target(output)
    limits = SizeLimits().raised(size_limits or {})
    with output_lock(output):
        return _import(
            source, output, arch=arch, stride_at=stride_at, expect=expect, image_size=image_size,
            options=options, on_found=on_found, limits=limits,
        )  # fmt: skip


def _import(
    source: Path,
    output: Path,
    *,
    arch: str | None,
    stride_at: str | None,
    expect: Path | None,
    image_size: int | None,
    options: Options,
    on_found: Callable[[str], None] | None,
    limits: SizeLimits,
) -> Imported:
    suffix = source.suffix.lower()
    parsed = parse_arch(arch) if arch is not None else None
    _check_arch_fits(parsed, suffix)
    given_stride = stride_at
    stride_at, stride_from = _stride(stride_at, parsed)
    expected = _read_expect(expect) if expect is not None else None
    image_size = image_size or (expected[0].shape[-1] if expected is not None else None)
    read = _read_source(
        source,
        image_size=image_size,
        stride_at=stride_at,
        stride_from=stride_from,
        given_stride=given_stride,
        batch=options.batch,
        preset=parsed.preset if parsed is not None else None,
    )
    spec, summary = read.spec, read.summary
    plan = checked_plan(spec, limits, hint=_limit_hint)  # before inputs of its size exist
    refuse_overwriting_inputs(output, [(f"data file {f.name}", f) for f in read.data_files])
    read.weights = check_weights(plan, read.weights, source=str(source))  # shapes, NaN, Inf
    if on_found is not None:
        on_found(summary)
    # The source runs first and is dropped before the graph is emitted: the source's
    # weights, the new graph and onnxruntime's copy of it are never all held at once.
    batch = options.batch or read.batch or 2
    check_memory(
        check_memory_bytes(plan, batch),
        what=f"checking the import on a batch of {batch:,}",
        limits=limits,
        hint=_limit_hint,
    )  # a source whose fixed batch is 2**31 must not make us allocate for it
    x = seeded_input(spec, batch)
    pending = _source_check(read.found, parsed, source, spec, x, dtype=options.dtype)
    read.found = None
    meta = import_metadata(spec, str(source), summary)
    meta.update(read.carried)
    meta = {k: as_text(v) for k, v in meta.items()}  # file names that are not UTF-8
    plan, model = emit_imported(spec, read.weights, options, meta)  # takes the weights' arrays
    checks = [] if pending is None else [pending(model)]
    if expect is not None and expected is not None:
        x, y = expected
        if options.batch not in (None, x.shape[0]):
            raise UserError(f"--expect holds batch {x.shape[0]}, the graph's is fixed")
        name = expect.name
        against = f"{name} (stored outputs)"
        checks.append(
            (f"expect:{name}", check(model, x, expected=y, against=against, dtype=options.dtype))
        )
    line = _checked_line(checks, suffix, spec, parsed)
    tags = ",".join(tag for tag, _ in checks) or NAMES_AND_SHAPES
    props = {**metadata(model), CHECKED_KEY: tags, CHECK_KEY: line}
    onnx.helper.set_model_props(model, {k: as_text(v) for k, v in props.items()})
    write(model, output)
    return Imported(Path(output), spec, plan.params, plan.macs, summary, tags, line)


@dataclass
class _Source:
    """What a source file holds: the spec inferred, the weights, a summary; for an ONNX source
    also its import (run as the check), its fixed batch and the metadata the new file keeps."""

    spec: Spec
    weights: Weights
    summary: str
    found: object = None
    carried: dict[str, str] = field(default_factory=dict)
    batch: int | None = None
    data_files: list[Path] = field(default_factory=list)  # an ONNX source's external data


def _read_source(
    source: Path,
    *,
    image_size: int | None,
    stride_at: str | None,
    stride_from: str,
    given_stride: str | None,
    batch: int | None,
    preset: str | None = None,
) -> _Source:
    suffix = source.suffix.lower()
    if suffix == ".params":
        return _Source(*_from_params(source, image_size or 224, stride_at, stride_from))
    if suffix == ".onnx":
        from graphgen.importers.onnx_graph import import_onnx

        found = import_onnx(source, image_size=image_size)
        _check_onnx_stride(found.spec, given_stride, source)
        if found.batch is not None and batch not in (None, found.batch):
            raise UserError(
                f"{source} has a fixed batch of {found.batch}; import it with --batch "
                f"{found.batch} or 'dynamic'"
            )
        return _Source(
            found.spec, found.weights, found.summary, found, found.metadata, found.batch,
            [source.parent / name for name in found.data_files],
        )  # fmt: skip
    if suffix in STATE_DICT_SUFFIXES:
        from graphgen.importers.state_dict import import_state_dict

        spec, weights, summary = import_state_dict(
            source,
            image_size=image_size or 224,
            stride_at=stride_at,
            stride_from=stride_from,
            preset=preset,
        )
        return _Source(spec, weights, summary, carried=read_normalisation(source))
    raise UserError(
        f"unknown source {source.name!r}: import reads .params (MXNet Gluon), .onnx, "
        f"or a state_dict ({', '.join(STATE_DICT_SUFFIXES)})"
    )


def _source_check(
    found: object, arch: Arch | None, source: Path, spec: Spec, x: np.ndarray, *, dtype: str
) -> Pending | None:
    """The comparison with the source, whose outputs are computed now, before the new graph
    exists; None where the source holds no computation and no --arch names one."""
    from graphgen.importers.onnx_graph import OnnxImport

    if isinstance(found, OnnxImport):
        try:
            expected = found.reference(x)
        except Exception as err:  # onnxruntime's own types: Fail, InvalidGraph, ...
            raise GraphError(
                f"{source}: onnxruntime cannot run it ({shown(first_line(err), 200)}); the "
                "import is checked against what the source computes"
            ) from None

        def exact() -> np.ndarray:  # read the source again only if float32 cannot decide
            return run_float64(load(source), x)

        return lambda model: (
            "onnx-source",
            check(model, x, expected=expected, against=source.name, exact=exact, dtype=dtype),
        )
    if arch is None or not (arch.required or available(arch)):
        return None
    truth = source_outputs(arch, source, classes=spec.classes, x=x)  # float64
    label = source_label(arch)
    return lambda model: (
        str(arch),
        check(model, x, expected=truth, against=label, exact=lambda: truth, dtype=dtype),
    )


def _limit_hint(key: str) -> str:
    return f"graphgen import --size-limit {key}=N"


def _checked_line(
    checks: list[tuple[str, Check]], suffix: str, spec: Spec, arch: Arch | None = None
) -> str:
    """The one line that says what was checked: "verified" only after a comparison with a
    computation (the source graph, the --arch network, stored outputs)."""
    if checks:
        return "verified: rel. L2 " + ", ".join(str(c) for _, c in checks)
    why = (
        "no MXNet here: --arch gluon:MODEL where MXNet is installed, or --expect with MXNet's "
        "stored outputs, checks it"
        if suffix == ".params"
        else f"{arch.library} is not installed here: with it, --arch {arch.name} checks it "
        "against the source network"
        if arch is not None
        else "a state_dict holds no computation: --arch torchvision:MODEL or timm:MODEL checks "
        "it against the source network"
    )
    return f"NOT checked: names and shapes fit {spec.name}; the computation was not checked ({why})"


def _check_arch_fits(arch: Arch | None, suffix: str) -> None:
    if arch is None:
        return
    if suffix == ".onnx":
        raise UserError(
            "--arch is for weights files; an ONNX source holds its computation and is checked "
            "against itself"
        )
    if arch.reads_params != (suffix == ".params"):
        wanted = "Gluon .params files" if arch.reads_params else "torch state_dicts"
        raise UserError(f"--arch {arch} checks {wanted}, not a {suffix} file")
    if arch.required or available(arch):
        require_library(arch)  # before reading the weights


def _stride(given: str | None, arch: Arch | None) -> tuple[str | None, str]:
    """Where a bottleneck strides, and who said so: --stride-at, else what --arch implies (the
    check against the --arch network then tests it)."""
    if given is not None:
        return given, "--stride-at"
    if arch is not None:
        return arch.stride_at, f"implied by --arch {arch}"
    return None, ""


def _check_onnx_stride(spec: Spec, given: str | None, source: Path) -> None:
    if given is not None and stride_matters(spec) and given != spec.stride_at:
        raise StridePlacementError(
            f"{source} strides on the {spec.stride_at} (the graph shows it), not on the {given} "
            "that --stride-at says"
        )


def _from_params(
    source: Path, image_size: int, stride_at: str | None, stride_from: str
) -> tuple[Spec, Weights, str]:
    from graphgen.importers.gluon import import_gluon
    from graphgen.importers.mxnet_params import read_params

    params = read_params(source)
    check_finite({k: v for k, v in params.items() if v.dtype.kind == "f"}, source=str(source))
    found = import_gluon(
        params,
        image_size=image_size,
        source=str(source),
        stride_at=stride_at,
        stride_from=stride_from,
    )
    return found.spec, found.weights, found.summary


def _read_expect(path: Path) -> tuple[np.ndarray, np.ndarray]:
    data = load_npz(path, what="--expect")
    try:
        x, y = data["input"].astype(np.float32), data["output"].astype(np.float32)
    except (ValueError, TypeError, KeyError) as err:
        raise UserError(f"--expect {path}: not an .npz with `input` and `output` ({err})") from None
    if x.ndim != 4 or x.shape[1] != 3 or x.shape[2] != x.shape[3]:
        raise UserError(f"--expect {path}: input has shape {x.shape}, expected [N,3,S,S]")
    return x, y
