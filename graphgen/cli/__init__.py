"""`graphgen`: build, list and inspect ResNet ONNX graphs. The top level only registers commands:
each module of `COMMANDS` has `register(subparsers)` and `run(args)` (see resnet_common.cli)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from graphgen import __version__
from graphgen.cli import build, importing, info, inject, listing, quantize
from resnet_common.cli import command_parser, run_main

COMMANDS = [build, listing, info, inject, importing, quantize]


def make_parser() -> argparse.ArgumentParser:
    return command_parser(
        "graphgen",
        description="Compile ResNet specs (He et al. 2015) into ONNX graphs; no torch needed.",
        epilog="Examples:\n"
        "  graphgen build --depth 152                 # resnet152.onnx, He-initialised\n"
        "  graphgen build --depth 56 --shortcut C     # CIFAR ResNet-56, projections everywhere\n"
        "  graphgen build --spec my-net.yaml          # any stage table, block and shortcut\n"
        "  graphgen list                              # every standard variant: params, MACs\n"
        "  graphgen info resnet152.onnx               # params, MACs, ops of any ONNX classifier\n"
        "  graphgen import r50.pth --arch torchvision:resnet50 -o r50.onnx  # a trained ResNet\n"
        "  graphgen quantize resnet50.onnx -o q.onnx  # int8 QDQ graph, calibrated in numpy\n"
        "\n"
        "Every command takes --json (one JSON object on stdout) and says more in "
        "`graphgen COMMAND --help`.",
        commands=COMMANDS,
        version=__version__,
    )


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(make_parser, argv)
