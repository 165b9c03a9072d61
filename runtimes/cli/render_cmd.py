"""`bench-runtimes render`: re-render reports from result folders; several folders merge."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "render",
        help="re-render report.{json,md,html} from result folders (several merge into one)",
        description="Render one report from one or more `bench-runtimes run` folders. Each "
        "folder's environment.json names its machine; the machine is a column of every table "
        "and a series of every plot.",
    )
    p.add_argument("dirs", nargs="+", type=Path, metavar="DIR", help="result folders")
    p.add_argument("--out", type=Path, help="report folder (default: the first DIR)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from reports.render import render, warnings_of

    for warning in warnings_of(args.dirs):
        print(f"warning: {warning}", file=sys.stderr)
    paths = render(args.dirs, out=args.out or args.dirs[0])
    print(f"wrote {paths['json']}, {paths['md']}, {paths['html']}")
    return 0
