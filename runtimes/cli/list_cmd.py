"""`bench-runtimes list`: every engine the suite knows, whether it runs here, and if not, why."""

from __future__ import annotations

import argparse

from resnet_common.cli import Subparsers, add_json_flag, print_json


def register(subparsers: Subparsers[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "list",
        help="every engine, whether it can run here and why not",
        description="List the registered engines with their device and precisions; an engine "
        'that cannot run here says why ("tensorrt not installed", "no CUDA device").',
        epilog="Examples:\n  bench-runtimes list\n  bench-runtimes list --json",
    )
    add_json_flag(p, "a JSON list of the engines")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from runtimes.registry import engines

    infos = engines()
    if args.json:
        print_json([i.to_dict() for i in infos])
        return 0
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="engines")
    for column in ("runtime", "usable", "device", "precisions", "version", "why not"):
        table.add_column(column)
    for info in infos:
        table.add_row(
            info.name,
            "[green]yes[/]" if info.available else "[red]no[/]",
            info.device or "-",
            ", ".join(info.precisions) or "-",
            escape(info.version or "not installed"),
            escape(info.reason or ""),
        )
    import sys

    # piped, a table is not cut to rich's 80-column default: names and reasons stay whole
    Console(width=None if sys.stdout.isatty() else 400).print(table)
    return 0
