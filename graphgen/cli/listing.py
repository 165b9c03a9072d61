"""`graphgen list`: every standard variant with its params and MACs, from the plan."""

from __future__ import annotations

import argparse
import json
from typing import Any

from graphgen.cost import plan_cost
from graphgen.plan import expand
from graphgen.spec import STANDARD_VARIANTS


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "list",
        help="every standard variant with params and MACs",
        description="List the standard variants (the paper's ImageNet and CIFAR nets and their "
        "plain baselines). MACs are conv+fc multiply-accumulates at batch 1; flops = 2 x MACs.",
    )
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    p.set_defaults(func=run)


def rows() -> list[dict[str, Any]]:
    out = []
    for name, spec in STANDARD_VARIANTS.items():
        cost = plan_cost(expand(spec)).to_dict()
        cost.pop("op_counts")
        out.append(
            {
                "name": name,
                **{k: v for k, v in cost.items() if k != "name"},
                "block": spec.block,
                "shortcut": spec.shortcut,
                "depth": spec.depth,
            }
        )
    return out


def run(args: argparse.Namespace) -> int:
    data = rows()
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title="standard variants")
    for column in ("name", "block", "shortcut", "params", "MACs", "input"):
        table.add_column(column, justify="right" if column in ("params", "MACs") else "left")
    for row in data:
        table.add_row(
            row["name"],
            row["block"],
            row["shortcut"],
            f"{row['params']:,}",
            f"{row['macs'] / 1e9:.3f} G",
            "x".join(map(str, row["input_shape"][1:])),
        )
    Console().print(table)
    return 0
