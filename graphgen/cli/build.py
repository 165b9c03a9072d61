"""`graphgen build`: one spec (a depth, a spec file, a torchvision or timm architecture, or every
standard variant) into ONNX files."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from graphgen.arguments import (
    OVERRIDES,
    add_architecture_arguments,
    add_family_argument,
    add_graph_arguments,
    add_size_limit_argument,
    graph_options,
    size_limits_from_args,
    spec_from_args,
)
from graphgen.onnx_io import build_file, check_target
from graphgen.plan import expand, fold_bn
from graphgen.spec import STANDARD_VARIANTS, Spec, spec_for_depth
from resnet_common.cli import (
    OneLineParser,
    Subparsers,
    add_alias,
    add_json_flag,
    print_json,
    seed_int,
)
from resnet_common.errors import UserError
from resnet_common.fileio import refuse_overwriting_inputs, write_error
from resnet_common.limits import SizeLimits


def register(subparsers: Subparsers[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "build",
        help="write an ONNX graph for a ResNet depth, a spec file, or every standard variant",
        description="Build a valid, He-initialised ONNX classifier (input `input` [N,3,S,S], "
        "output `logits` [N,K]) from the paper's depth tables or your own spec.",
        epilog="--depth alone means ImageNet for 18/34/50/101/152 and CIFAR-10 for any other "
        "6n+2 depth (20, 32, 44, 56, 110, 1202, ...). Shortcut defaults follow the paper: B for "
        "ImageNet, A for CIFAR; 'none' gives the plain baselines.\n\n"
        "Examples:\n"
        "  graphgen build --depth 152                          # resnet152.onnx\n"
        "  graphgen build --depth 56 --family cifar10 --shortcut A\n"
        "  graphgen build --depth 50 --stride-at 3x3 --fold-bn # torchvision's v1.5, BN folded\n"
        "  graphgen build --depth 18 --dtype float16 -o r18-fp16.onnx\n"
        "  graphgen build --arch resnext50_32x4d               # torchvision's (and timm's)\n"
        "  graphgen build --arch timm:resnet50d --image-size 160 --classes 10\n"
        "  graphgen build --spec my-net.yaml --json            # what was built, as JSON\n"
        "  graphgen build --all --out-dir models/",
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--depth", type=int, help="network depth (Table 1, or 6n+2 for CIFAR)")
    what.add_argument("--spec", type=Path, metavar="FILE", help="YAML or JSON spec file")
    what.add_argument(
        "--arch",
        metavar="NAME",
        help="a torchvision or timm ResNet by its name, its weights' names and shapes exactly "
        "(see `list`): resnet50, resnext50_32x4d, wide_resnet50_2, resnet50d, seresnet50, "
        "resnetv2_50, ...; LIB:NAME (timm:resnext50_32x4d) says whose",
    )
    what.add_argument("--all", action="store_true", help="every standard variant (see `list`)")
    add_alias(p, "--dataset", add_family_argument(p))  # --dataset: the older spelling
    add_architecture_arguments(p)
    add_graph_arguments(p)
    p.add_argument(
        "--seed",
        type=seed_int,
        default=0,
        help="weight seed, 0 .. 2**63-1 (default 0); same seed, same bytes",
    )
    p.add_argument("-o", "--output", type=Path, help="output file (default NAME.onnx here)")
    p.add_argument(
        "--out-dir",
        dest="out_dir",
        type=Path,
        default=None,
        help="folder for --all (default .; made if missing)",
    )
    add_size_limit_argument(p)
    add_json_flag(p)
    p.set_defaults(func=run)
    if isinstance(p, OneLineParser):
        p.suggest_word = meant_flags
    return p


def meant_flags(word: str) -> str | None:
    """The flags a stray word probably meant: `graphgen build resnet50` names a network, which
    `build` takes as --depth, --arch or --spec."""
    from graphgen.archs import ARCHS

    name = word.rpartition(":")[2]
    variant = STANDARD_VARIANTS.get(word)
    shortcut = " --shortcut none" if variant is not None and variant.shortcut == "none" else ""
    paper = f"--depth {word.rsplit('resnet', 1)[-1].rsplit('plain', 1)[-1]}{shortcut}"
    if name in ARCHS and variant is not None:
        return f"{paper} for the paper's {word} or --arch {word} for torchvision's and timm's"
    if name in ARCHS:
        return f"--arch {word}"
    if variant is not None:
        return paper
    if word.isdigit():
        return f"--depth {word}"
    if word.lower().endswith((".yaml", ".yml", ".json")):
        return f"--spec {word}"
    return None


def _suffix(args: argparse.Namespace, spec: Spec | None = None) -> str:
    """What the default file name adds to the variant's name, so that a 64x64 or a 10-class
    build never overwrites the standard file."""
    suffix = ""
    if spec is not None:
        family = spec_for_depth(18) if spec.stem == "imagenet" else spec_for_depth(20)
        if spec.image_size != family.image_size:
            suffix += f"-{spec.image_size}px"
        if spec.classes != family.classes:
            suffix += f"-{spec.classes}cls"
    if args.batch != "dynamic":
        suffix += f"-b{args.batch}"
    suffix += {"float16": "-fp16", "bfloat16": "-bf16"}.get(args.dtype, "")
    return suffix + ("-folded" if args.fold_bn else "")


def run(args: argparse.Namespace) -> int:
    options = graph_options(args)
    options.update(seed=args.seed, fold=options.pop("fold_bn"))  # the emitters' names
    if args.all:
        given = [
            f"--{k.replace('_', '-')}" for k in (*OVERRIDES, "family", "flavor") if getattr(args, k)
        ]
        if args.output is not None:
            given.append("-o")
        if given:
            raise UserError(
                f"--all builds the standard variants as published; {', '.join(given)} "
                "cannot apply (use --depth or --spec for a variant of your own)"
            )
        return _build_all(args, options)
    if args.out_dir is not None:
        raise UserError("--out-dir goes with --all; use -o PATH for a single model")
    spec, limits = spec_from_args(args), size_limits_from_args(args)
    out = args.output or Path(f"{spec.name}{_suffix(args, spec)}.onnx")
    refuse_overwriting_inputs(out, [(f"--spec {args.spec}", args.spec)])
    check_target(out)
    build_file(spec, out, limits=SizeLimits().raised(limits), **options)
    plan = fold_bn(expand(spec)) if args.fold_bn else expand(spec)
    arch = _arch_note(args.arch, spec)
    if args.json:
        print_json(
            {
                "path": str(out),
                "name": spec.name,
                **({"arch": args.arch} if args.arch else {}),
                "depth": spec.depth,
                "params": plan.params,
                "macs": plan.macs,
                "dtype": args.dtype,
                "fold_bn": args.fold_bn,
                "spec": spec.to_dict(),
            }
        )
        return 0
    # Say what was built: a depth with --block or layers is a different stage table.
    stages = "x".join(map(str, spec.layers))
    print(
        f"wrote {out}  ({spec.name}{arch}: {spec.depth} layers, {stages} {spec.block} blocks, "
        f"{plan.params:,} params, {plan.macs:,} MACs)"
    )
    return 0


def _arch_note(name: str | None, spec: Spec) -> str:
    """ ", timm's" or ", torchvision's and timm's resnet50" for the line that says what was built."""
    if name is None:
        return ""
    from graphgen.archs import arch

    preset = arch(name)
    whose = " and ".join(f"{lib}'s" for lib in preset.libraries)
    return f", {whose}" + ("" if preset.name == spec.name else f" {preset.name}")


def _build_all(args: argparse.Namespace, options: dict[str, Any]) -> int:
    from rich.console import Console
    from rich.progress import Progress

    if args.size_limits:
        raise UserError("--size-limit goes with --depth or --spec; the standard variants fit")
    args.out_dir = args.out_dir or Path(".")
    if args.out_dir.exists() and not args.out_dir.is_dir():
        raise UserError(f"--out-dir {args.out_dir} is not a folder")
    if args.out_dir.is_dir():  # refuse a device or a folder in the way before building any
        for name in STANDARD_VARIANTS:
            check_target(args.out_dir / f"{name}{_suffix(args)}.onnx")
    try:
        args.out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise write_error(err, args.out_dir) from None
    written = {}
    with Progress(transient=True, console=Console(stderr=True)) as progress:
        task = progress.add_task("building", total=len(STANDARD_VARIANTS))
        for name, spec in STANDARD_VARIANTS.items():
            progress.update(task, description=f"building {name}")
            out = args.out_dir / f"{name}{_suffix(args)}.onnx"
            build_file(spec, out, **options)
            written[name] = str(out)
            progress.advance(task)
    if args.json:
        print_json({"out_dir": str(args.out_dir), "models": written})
        return 0
    print(f"wrote {len(STANDARD_VARIANTS)} models to {args.out_dir}")
    return 0
