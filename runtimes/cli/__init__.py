"""`bench-runtimes`: engines, parity and benchmarks. The top level only registers commands:
each module of `COMMANDS` has `register(subparsers)` and `run(args)` (see resnet_common.cli),
and can be imported and tested alone."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from graphgen import __version__
from resnet_common.cli import command_parser, run_main
from runtimes.cli import compare_cmd, list_cmd, loadgen_cmd, parity_cmd, render_cmd, run_cmd

COMMANDS = [list_cmd, parity_cmd, run_cmd, render_cmd, compare_cmd, loadgen_cmd]


def make_parser() -> argparse.ArgumentParser:
    return command_parser(
        "bench-runtimes",
        description="Run graphgen ResNets on every engine found here: parity and latency.",
        epilog="Examples:\n"
        "  bench-runtimes list\n"
        "  bench-runtimes parity --models resnet18 --runtimes ort-cpu,torch,openvino\n"
        "  bench-runtimes run                      # built-in default sweep\n"
        "  bench-runtimes run --models resnet50 --runtimes ort-cpu --batch 1,8\n"
        "  bench-runtimes compare old/report.json new/report.json\n"
        "  bench-runtimes loadgen --models resnet18 --runtimes ort-cpu --scenario Server",
        commands=COMMANDS,
        version=__version__,
    )


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(make_parser, argv)
