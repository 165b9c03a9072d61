"""`graphgen import`: a trained ResNet from MXNet Gluon, any ONNX exporter or a state_dict.

The work is graphgen.importing.import_model (also `graphgen.import_model`); this module is its
command line: what the new graph is checked against, and the exit code 1 when it disagrees.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from graphgen.arguments import add_graph_arguments, add_size_limit_argument, graph_options
from graphgen.importers.common import VerifyError
from graphgen.importing import STATE_DICT_SUFFIXES, import_model
from graphgen.inject import STRIDE_HINT
from graphgen.spec import STRIDE_PLACEMENTS
from resnet_common.cli import (
    EXIT_CHECK_FAILED,
    Subparsers,
    add_json_flag,
    fail,
    positive_int,
    print_json,
)
from resnet_common.errors import first_line


def register(subparsers: Subparsers[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "import",
        help="a trained ResNet (Gluon .params, any ONNX ResNet, a state_dict) as a graphgen graph",
        description="Infer the spec of a trained ResNet, build the graphgen graph, copy the "
        "weights, check the new graph against what the source computes, then write it. An .onnx "
        "source (MXNet, torch.onnx, graphgen) is run on onnxruntime on seeded inputs: rel. L2 < "
        "1e-5, decided in float64 where float32 rounding alone misses it. A state_dict "
        f"({', '.join(STATE_DICT_SUFFIXES)}, torchvision/timm names) or an MXNet Gluon .params "
        "(read without MXNet) holds no computation: --arch runs the source network itself, "
        "--expect compares with stored outputs; with neither, only names and shapes are checked "
        "and the output says so.",
        epilog="Examples:\n"
        "  graphgen import resnet50_v1.onnx --fold-bn -o resnet50.onnx   # checked against it\n"
        "  graphgen import resnet50.pth --arch torchvision:resnet50 -o r50.onnx\n"
        "  graphgen import resnet50_v1-0000.params --stride-at 1x1 -o r50-gluon.onnx",
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
        "--arch",
        metavar="LIBRARY:MODEL",
        help="weights files: the network they belong to, built by its own library and run on "
        "seeded inputs to check the import (torchvision:resnet50, timm:resnet50, "
        "gluon:resnet50_v2; the library must be installed); implies --stride-at",
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
        help="weights files of bottleneck nets (names and shapes do not show it): where a "
        f"bottleneck strides, required unless --arch implies it ({STRIDE_HINT})",
    )
    add_graph_arguments(p)
    add_size_limit_argument(p)
    add_json_flag(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    try:
        done = import_model(
            args.source,
            args.output,
            arch=args.arch,
            stride_at=args.stride_at,
            expect=args.expect,
            image_size=args.image_size,
            on_found=lambda summary: print(f"found {summary}"),
            size_limits=args.size_limits,
            **graph_options(args),
        )
    except VerifyError as err:
        return fail(first_line(err), EXIT_CHECK_FAILED)
    if args.json:
        print_json(done.to_dict())
        return 0
    print(done.line)
    print(f"wrote {done.path}  ({done.spec.name}: {done.params:,} params, {done.macs:,} MACs)")
    return 0
