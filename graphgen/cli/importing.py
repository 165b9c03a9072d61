"""`graphgen import`: a trained ResNet from MXNet Gluon, any ONNX exporter or a state_dict."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np

from graphgen.cli.build import _batch
from graphgen.importers.common import (
    Options,
    VerifyError,
    emit_imported,
    import_metadata,
    seeded_input,
    verify,
    write,
)
from graphgen.inject import read_normalisation
from graphgen.onnx_emit import DEFAULT_OPSET, DTYPES, check_dtype, check_opset
from graphgen.plan import expand
from graphgen.spec import STRIDE_PLACEMENTS, Spec
from graphgen.weights import Weights, forward_nhwc
from resnet_common.cli import EXIT_CHECK_FAILED, fail, positive_int
from resnet_common.errors import UserError

STATE_DICT_SUFFIXES = (".safetensors", ".pt", ".pth", ".npz")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "import",
        help="a trained ResNet (Gluon .params, any ONNX ResNet, a state_dict) as a graphgen graph",
        description="Infer the spec of a trained ResNet, build the graphgen graph, copy the "
        "weights, check that the new graph computes what the source does (rel. L2 < 1e-5 on "
        "seeded inputs, onnxruntime), then write it. Sources: an MXNet Gluon .params file "
        "(save_parameters or export; read without MXNet), an .onnx file from any exporter "
        "(MXNet, torch.onnx, graphgen), or a torchvision-named state_dict "
        f"({', '.join(STATE_DICT_SUFFIXES)}).",
        epilog="Example: graphgen import resnet50_v1-0000.params -o resnet50-gluon-v1.onnx",
    )
    p.add_argument("source", type=Path, metavar="SOURCE")
    p.add_argument("-o", "--output", type=Path, required=True, help="output ONNX file")
    p.add_argument(
        "--image-size",
        dest="image_size",
        type=positive_int,
        help="input height and width (default: the ONNX source's, else 224)",
    )
    p.add_argument(
        "--expect",
        type=Path,
        metavar="NPZ",
        help="also check against stored outputs: an .npz with `input` and `output` "
        "(for example MXNet's, made beside the .params)",
    )
    p.add_argument(
        "--stride-at",
        dest="stride_at",
        choices=STRIDE_PLACEMENTS,
        default="3x3",
        help="state_dicts only (their shapes do not show it): where a bottleneck strides "
        "(default 3x3, torchvision's)",
    )
    p.add_argument("--batch", default="dynamic", help="fixed batch size, or 'dynamic' (default)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset")
    p.add_argument("--dtype", default="float32", help=f"weights and compute: {', '.join(DTYPES)}")
    p.add_argument("--io-dtype", dest="io_dtype", default="float32", help="dtype of input/logits")
    p.add_argument("--fold-bn", dest="fold_bn", action="store_true", help="fold BN into convs")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_opset(args.opset)
    check_dtype(args.dtype)
    check_dtype(args.io_dtype)
    options = Options(
        fold=args.fold_bn,
        dtype=args.dtype,
        io_dtype=args.io_dtype,
        opset=args.opset,
        batch=_batch(args.batch),
    )
    source: Path = args.source
    if not source.is_file():
        raise UserError(f"no such file: {source}")
    expect = _read_expect(args.expect) if args.expect is not None else None
    image_size = args.image_size or (expect[0].shape[-1] if expect is not None else None)
    suffix = source.suffix.lower()
    carried: dict[str, str] = {}
    found: object = None
    verify_batch: int | None = None
    try:
        if suffix == ".params":
            spec, weights, summary = _from_params(source, image_size or 224)
            reference = _numpy_reference(spec, weights)
            what = "numpy forward pass of the imported weights"
        elif suffix == ".onnx":
            from graphgen.importers.onnx_graph import import_onnx

            found = import_onnx(source, image_size=image_size)
            spec, weights, summary = found.spec, found.weights, found.summary
            reference = found.reference
            carried = found.metadata
            if found.batch is not None and options.batch not in (None, found.batch):
                raise UserError(
                    f"{source} has a fixed batch of {found.batch}; import it with --batch "
                    f"{found.batch} or 'dynamic'"
                )
            verify_batch = found.batch
            what = f"{source.name} on onnxruntime"
        elif suffix in STATE_DICT_SUFFIXES:
            from graphgen.importers.state_dict import import_state_dict

            spec, weights, summary = import_state_dict(
                source, image_size=image_size or 224, stride_at=args.stride_at
            )
            reference = _numpy_reference(spec, weights)
            what = "numpy forward pass of the state_dict"
        else:
            raise UserError(
                f"unknown source {source.name!r}: import reads .params (MXNet Gluon), .onnx, "
                f"or a state_dict ({', '.join(STATE_DICT_SUFFIXES)})"
            )
        print(f"found {summary}")
        # The reference runs first and is dropped before the graph is emitted: the source's
        # weights, the new graph and onnxruntime's copy of it are never all held at once.
        x = seeded_input(spec, options.batch or verify_batch or 2)
        expected = reference(x)
        del reference
        found = None
        meta = import_metadata(spec, str(source), summary)
        meta.update(read_normalisation(source) if suffix in STATE_DICT_SUFFIXES else carried)
        plan, model = emit_imported(spec, weights, options, meta)  # takes the weights' arrays
        errors = [
            f"{verify(model, lambda _: expected, x, dtype=args.dtype, what=what):.2g}"
            f" against the {what}"
        ]
        if expect is not None:
            x, y = expect
            if options.batch not in (None, x.shape[0]):
                raise UserError(f"--expect holds batch {x.shape[0]}, the graph's is fixed")
            err = verify(model, lambda _: y, x, dtype=args.dtype, what=str(args.expect))
            errors.append(f"{err:.2g} against {args.expect.name}")
    except VerifyError as err:
        return fail(str(err), EXIT_CHECK_FAILED)
    write(model, args.output)
    print(f"verified: rel. L2 {', '.join(errors)}")
    print(f"wrote {args.output}  ({spec.name}: {plan.params:,} params, {plan.macs:,} MACs)")
    return 0


def _from_params(source: Path, image_size: int) -> tuple[Spec, Weights, str]:
    from graphgen.importers.gluon import import_gluon
    from graphgen.importers.mxnet_params import read_params

    found = import_gluon(read_params(source), image_size=image_size, source=str(source))
    return found.spec, found.weights, found.summary


def _numpy_reference(spec: Spec, weights: Weights) -> Callable[[np.ndarray], np.ndarray]:
    """graphgen's own numpy forward pass: an implementation that shares no code with ONNX."""
    plan = expand(spec)
    return lambda x: forward_nhwc(plan, dict(weights), x.transpose(0, 2, 3, 1))


def _read_expect(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            x, y = data["input"].astype(np.float32), data["output"].astype(np.float32)
    except (OSError, ValueError, KeyError) as err:
        raise UserError(f"--expect {path}: not an .npz with `input` and `output` ({err})") from None
    if x.ndim != 4 or x.shape[1] != 3 or x.shape[2] != x.shape[3]:
        raise UserError(f"--expect {path}: input has shape {x.shape}, expected [N,3,S,S]")
    return x, y
