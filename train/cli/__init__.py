"""`resnet-train`: train graphgen networks with the paper's recipe. The top level only registers
commands: each module of `COMMANDS` has `register(subparsers)` and `run(args)` (see
resnet_common.cli). `fit` is the default command, so the flat form `resnet-train --depth 20 ...`
is `resnet-train fit --depth 20 ...`. Both commands need torch; without it they are listed in
--help all the same, saying what to install.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from graphgen import __version__
from resnet_common.cli import command_parser, run_main
from train.cli import experiment, fit

COMMANDS = [fit, experiment]


def make_parser() -> argparse.ArgumentParser:
    return command_parser(
        "resnet-train",
        description="Train a ResNet from graphgen's spec with the paper's recipe (He et al. "
        "2015) on CPU, GPU or torchrun; write safetensors and, with --export, a verified ONNX "
        "graph.",
        epilog="Examples:\n"
        "  resnet-train --depth 20 --dataset synthetic --epochs 3 --out runs/demo\n"
        "  resnet-train --depth 56 --dataset cifar10 --data DIR --out runs/r56\n"
        "  resnet-train --resume runs/r56 --epochs 30 --export r56.onnx\n"
        "  torchrun --nproc_per_node 2 -m train --depth 20 --dataset synthetic --out runs/ddp\n"
        "  resnet-train experiment shortcuts --depth 20 --out runs/shortcuts\n"
        "\n"
        "Every training flag, with the paper's defaults: resnet-train fit --help",
        commands=COMMANDS,
        version=__version__,
        default="fit",
    )


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(make_parser, argv)
