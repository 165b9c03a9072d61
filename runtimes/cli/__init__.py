"""`bench-runtimes`: engines, parity and benchmarks. The top level only registers commands.

Each command lives in its own module with `register(subparsers)` and a `run(args)`; a command
module can be imported and tested alone.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

from resnet_common.cli import OneLineParser, run_main

COMMAND_MODULES = [
    "runtimes.cli.list_cmd",
    "runtimes.cli.parity_cmd",
    "runtimes.cli.run_cmd",
    "runtimes.cli.render_cmd",
    "runtimes.cli.compare_cmd",
    "runtimes.cli.loadgen_cmd",
]


def make_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="bench-runtimes",
        description="Run graphgen ResNets on every engine found here: parity and latency.",
        epilog="Examples:\n"
        "  bench-runtimes list\n"
        "  bench-runtimes parity --models resnet18 --runtimes ort-cpu,torch,openvino\n"
        "  bench-runtimes run                      # built-in default sweep\n"
        "  bench-runtimes run --models resnet50 --runtimes ort-cpu --batch 1,8\n"
        "  bench-runtimes compare old/report.json new/report.json\n"
        "  bench-runtimes loadgen --models resnet18 --runtimes ort-cpu --scenario Server",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name != name:  # a missing dependency inside the module is a real error
                raise
            continue  # a command module not written yet
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(make_parser, argv)
