"""`graphgen inject`: trained weights (safetensors, npz, torch state_dict) into a graphgen graph."""

from __future__ import annotations

import argparse
from pathlib import Path

from graphgen.inject import (
    IGNORED_SUFFIXES,
    WEIGHT_FORMATS,
    inject,
    read_normalisation,
    read_weight_spec,
    read_weights,
)
from graphgen.onnx_io import check_target, load, save
from graphgen.spec import STRIDE_PLACEMENTS
from resnet_common.cli import Subparsers, add_json_flag, print_json
from resnet_common.fileio import refuse_overwriting_inputs
from resnet_common.locks import output_lock


def register(subparsers: Subparsers[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "inject",
        help="write trained weights into a graph built from the same spec",
        description="Replace a graphgen graph's initializers with trained weights, by name "
        "(the names are torchvision's state_dict keys). A mismatch is refused with the missing, "
        "unexpected and wrongly-shaped names, and nothing is written.",
        epilog="Examples:\n"
        "  graphgen inject cifar-resnet56.onnx --weights runs/r56/best.safetensors -o trained.onnx\n"
        "  graphgen inject r50-v1.5.onnx --weights resnet50.pth --stride-at 3x3 -o r50-trained.onnx",
    )
    p.add_argument("model", type=Path, metavar="MODEL.onnx", help="a graph from `graphgen build`")
    p.add_argument(
        "--weights", type=Path, required=True, metavar="FILE", help=f"one of {WEIGHT_FORMATS}"
    )
    p.add_argument(
        "--stride-at",
        dest="stride_at",
        choices=STRIDE_PLACEMENTS,
        help="where the weights' bottlenecks stride, for bottleneck graphs when the weights "
        "record no spec (a torchvision or timm .pth: 3x3); must be the graph's",
    )
    p.add_argument(
        "--fold-bn", dest="fold_bn", action="store_true", help="fold BatchNorm into the convs"
    )
    p.add_argument("-o", "--output", type=Path, required=True, help="output ONNX file")
    add_json_flag(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    inputs = [(f"model {args.model}", args.model), (f"--weights {args.weights}", args.weights)]
    refuse_overwriting_inputs(args.output, inputs)
    check_target(args.output)
    with output_lock(args.output):
        return _inject(args)


def _inject(args: argparse.Namespace) -> int:
    model = load(args.model)
    weights = read_weights(args.weights)
    out = inject(
        model,
        weights,
        fold=args.fold_bn,
        source=str(args.weights),
        model_source=str(args.model),
        recorded_spec=read_weight_spec(args.weights),
        stride_at=args.stride_at,
        extra_props=read_normalisation(args.weights),
    )
    save(out, args.output)
    used = sum(not name.endswith(IGNORED_SUFFIXES) for name in weights)
    if args.json:
        print_json(
            {"path": str(args.output), "weights": str(args.weights), "tensors": used,
             "fold_bn": args.fold_bn}
        )  # fmt: skip
        return 0
    print(f"wrote {args.output}  ({used} tensors from {args.weights})")
    return 0
