"""`graphgen info`: params, MACs, op counts and I/O shapes of any ONNX classifier."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from graphgen.api import info as describe
from resnet_common.cli import Subparsers, add_json_flag, print_json


def register(subparsers: Subparsers[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "info",
        help="params, MACs, op counts and shapes of any ONNX classifier",
        description="Walk an ONNX graph (graphgen's or anyone's) and count params and MACs. "
        "For graphgen files the plan's own counts are shown beside the graph walk.",
        epilog="Examples:\n  graphgen info resnet50.onnx\n  graphgen info model.onnx --json",
    )
    p.add_argument("model", type=Path, help="an .onnx file")
    add_json_flag(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    info = describe(args.model)
    if args.json:
        print_json(info)
        return 0
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    # Every cell is escaped: file names, op types and metadata are the user's (or a foreign
    # file's) text, and `a[/]b.onnx` or `resnet[v2].onnx` is rich markup otherwise.
    table = Table(title=escape(str(args.model)), show_header=False)
    rows = [
        ("params", f"{info['params']:,}"),
        ("MACs (batch 1)", f"{info['macs']:,}"),
        ("FLOPs (2 x MACs)", f"{info['flops']:,}"),
        ("input", str(info["input_shape"])),
        ("output", str(info["output_shape"])),
        ("opset", str(info["opset"])),
        ("ops", ", ".join(f"{k} {v}" for k, v in info["op_counts"].items())),
    ]
    if "graphgen" in info:
        rows.append(("graphgen spec", json.dumps(info["graphgen"]["spec"])))
    for key, value in rows:
        table.add_row(key, escape(value))
    Console().print(table)
    return 0
