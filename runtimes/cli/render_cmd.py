"""`bench-runtimes render`: re-render reports from result folders; several folders merge."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from resnet_common.cli import Subparsers, add_json_flag, print_json


def register(subparsers: Subparsers[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "render",
        help="re-render report.{json,md,html} from result folders (several merge into one)",
        description="Render one report from one or more `bench-runtimes run` folders. Each "
        "folder's environment.json names its machine; the machine is a column of every table "
        "and a series of every plot.",
        epilog="Examples:\n  bench-runtimes render bench-results\n"
        "  bench-runtimes render hostA/ hostB/ --out merged/",
    )
    p.add_argument("dirs", nargs="+", type=Path, metavar="DIR", help="result folders")
    p.add_argument("--out", type=Path, help="report folder (default: the first DIR)")
    add_json_flag(p, "one JSON object (the paths written)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from reports.render import render, warnings_of
    from runtimes.sweep import output_lock, prepare_out, refuse_if_in_use

    out = args.out or args.dirs[0]
    refuse_if_in_use(out)
    warnings = warnings_of(args.dirs)  # every folder read (and refused) before anything is made
    prepare_out(out)
    with output_lock(out):  # not while a run writes there
        for warning in warnings:
            print(f"warning: {warning}", file=sys.stderr)
        paths = render(args.dirs, out=out)
    if args.json:
        print_json({kind: str(path) for kind, path in paths.items()})
        return 0
    print(f"wrote {paths['json']}, {paths['md']}, {paths['html']}")
    return 0
