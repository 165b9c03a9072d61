"""`graphgen list`: every standard variant and every `--arch` preset (torchvision's and timm's
ResNets) with its params and MACs, from the plan."""

from __future__ import annotations

import argparse
from typing import Any

from graphgen.archs import ARCHS
from graphgen.cost import plan_cost, plan_memory
from graphgen.plan import expand
from graphgen.spec import STANDARD_VARIANTS, Spec
from resnet_common.cli import Subparsers, add_json_flag, print_json
from resnet_common.limits import format_bytes


def register(subparsers: Subparsers[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "list",
        help="every standard variant and --arch preset with params and MACs",
        description="List the standard variants (the paper's ImageNet and CIFAR nets and their "
        "plain baselines) and the --arch presets (every torchvision ResNet and timm's variants; "
        "name is the file name `graphgen build --arch` writes). MACs are conv+fc "
        "multiply-accumulates at batch 1; flops = 2 x MACs. "
        "file is the fp32 weights (the .onnx adds its graph, tens of KB); memory is the weights plus "
        "the peak of live activations at batch 1 in fp32, an engine's floor. In --json, a row "
        "--arch builds has `arch` (its --arch name) and `libraries`; each network is one row.",
        epilog="Examples:\n  graphgen list\n  graphgen list --json",
    )
    add_json_flag(p, "a JSON list of the variants")
    p.set_defaults(func=run)
    return p


def rows() -> list[dict[str, Any]]:
    """The standard variants, then the presets that are not one of them (resnet18 and resnet34
    are both: their rows say so)."""
    archs = {a.spec: a for a in ARCHS.values()}
    out = [_row(name, spec) for name, spec in STANDARD_VARIANTS.items()]
    for row, spec in zip(out, STANDARD_VARIANTS.values(), strict=True):
        if spec in archs:
            row.update(arch=archs[spec].name, libraries=list(archs[spec].libraries))
    standard = set(STANDARD_VARIANTS.values())
    for preset in ARCHS.values():
        if preset.spec not in standard:
            row = _row(preset.spec.name, preset.spec)
            out.append(row | {"arch": preset.name, "libraries": list(preset.libraries)})
    return out


def _row(name: str, spec: Spec) -> dict[str, Any]:
    plan = expand(spec)
    cost = plan_cost(plan).to_dict()
    cost.pop("op_counts")
    memory = plan_memory(plan)
    return {
        "name": name,
        **{k: v for k, v in cost.items() if k != "name"},
        "block": spec.block,
        "shortcut": spec.shortcut,
        "depth": spec.depth,
        "file_bytes": memory.weight_bytes,
        "memory_bytes": memory.inference_bytes,
        "peak_activation_bytes": memory.inference_bytes - memory.weight_bytes,
    }


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
    numbers = ("params", "MACs", "file", "memory", "px")
    standard = Table(title="standard variants", box=box.SIMPLE_HEAD, show_edge=False)
    for column in ("name", "block", "shortcut", *numbers):
        standard.add_column(column, justify="right" if column in numbers else "left", no_wrap=True)
    archs = Table(
        title="torchvision and timm ResNets (graphgen build --arch ARCH)",
        box=box.SIMPLE_HEAD,
        show_edge=False,
    )
    for column in ("arch", "from", *numbers):
        archs.add_column(column, justify="right" if column in numbers else "left", no_wrap=True)
    by_arch = {row["arch"]: row for row in data if "arch" in row}
    for row in data[: len(STANDARD_VARIANTS)]:
        standard.add_row(row["name"], row["block"], row["shortcut"], *_numbers(row))
    for name in ARCHS:
        row = by_arch[name]
        libraries = "tv+timm" if len(row["libraries"]) == 2 else row["libraries"][0]
        archs.add_row(name, libraries, *_numbers(row))
    renamed = [f"{n} as {r['name']}" for n, r in by_arch.items() if r["name"] != n]
    console = Console()
    console.width = max(console.width, 90)
    console.print(standard)
    console.print(archs)
    console.print(
        "tv+timm: torchvision's and timm's network of that name, which are the same. "
        f"Written as the paper's names say (stride on the 3x3: v1.5): {', '.join(renamed)}.",
        highlight=False,
    )
    return 0


def _numbers(row: dict[str, Any]) -> list[str]:
    return [
        f"{row['params'] / 1e6:.2f} M",
        f"{row['macs'] / 1e9:.2f} G",
        format_bytes(row["file_bytes"]),
        format_bytes(row["memory_bytes"]),
        str(row["input_shape"][-1]),
    ]
