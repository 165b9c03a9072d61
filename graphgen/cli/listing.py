"""`graphgen list`: every standard variant with its params and MACs, from the plan."""

from __future__ import annotations

import argparse
from typing import Any

from graphgen.cost import plan_cost, plan_memory
from graphgen.plan import expand
from graphgen.spec import STANDARD_VARIANTS
from resnet_common.cli import Subparsers, add_json_flag, print_json
from resnet_common.limits import format_bytes


def register(subparsers: Subparsers[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "list",
        help="every standard variant with params and MACs",
        description="List the standard variants (the paper's ImageNet and CIFAR nets and their "
        "plain baselines). MACs are conv+fc multiply-accumulates at batch 1; flops = 2 x MACs. "
        "file is the fp32 weights (the .onnx adds its graph, tens of KB); memory is the weights plus "
        "the peak of live activations at batch 1 in fp32, an engine's floor.",
        epilog="Examples:\n  graphgen list\n  graphgen list --json",
    )
    add_json_flag(p, "a JSON list of the variants")
    p.set_defaults(func=run)
    return p


def rows() -> list[dict[str, Any]]:
    out = []
    for name, spec in STANDARD_VARIANTS.items():
        plan = expand(spec)
        cost = plan_cost(plan).to_dict()
        cost.pop("op_counts")
        memory = plan_memory(plan)
        out.append(
            {
                "name": name,
                **{k: v for k, v in cost.items() if k != "name"},
                "block": spec.block,
                "shortcut": spec.shortcut,
                "depth": spec.depth,
                "file_bytes": memory.weight_bytes,
                "memory_bytes": memory.inference_bytes,
                "peak_activation_bytes": memory.inference_bytes - memory.weight_bytes,
            }
        )
    return out


def run(args: argparse.Namespace) -> int:
    data = rows()
    if args.json:
        print_json(data)
        return 0
    from rich import box
    from rich.console import Console
    from rich.table import Table

    # Light borders, rounded counts (exact ones in --json), the image size alone, and never
    # fewer than 90 columns: rich would cut numbers to "…" in a narrow terminal.
    table = Table(title="standard variants", box=box.SIMPLE_HEAD, show_edge=False)
    numbers = ("params", "MACs", "file", "memory", "px")
    for column in ("name", "block", "shortcut", *numbers):
        table.add_column(column, justify="right" if column in numbers else "left", no_wrap=True)
    for row in data:
        table.add_row(
            row["name"],
            row["block"],
            row["shortcut"],
            f"{row['params'] / 1e6:.2f} M",
            f"{row['macs'] / 1e9:.2f} G",
            format_bytes(row["file_bytes"]),
            format_bytes(row["memory_bytes"]),
            str(row["input_shape"][-1]),
        )
    console = Console()
    console.width = max(console.width, 90)
    console.print(table)
    return 0
