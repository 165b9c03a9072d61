"""`resnet-train experiment degradation|shortcuts`: the paper's claims from our own runs (§4.2).

A command module of `resnet-train` (train.cli): `register(subparsers)` and `run(args)`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from resnet_common.cli import (
    Subparsers,
    add_alias,
    add_json_flag,
    csv_list,
    non_negative_int,
    positive_int,
    print_json,
    seed_int,
    size_limits,
)
from resnet_common.errors import UserError
from train.recipe import SYNTHETIC_DEFAULT_EPOCHS

REQUIRES = ("torch", "safetensors", "matplotlib")
EXTRA = "train"  # resnet_common.extras: brings torch, safetensors, matplotlib and pillow


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dataset", choices=("synthetic", "cifar10"), default="synthetic",
        help="built-in synthetic set (default) or CIFAR-10 python batches in --data",
    )  # fmt: skip
    p.add_argument("--data", metavar="DIR", help="CIFAR-10 folder (cifar-10-batches-py)")
    p.add_argument(
        "--epochs", type=positive_int,
        help=f"epochs per run (lr drops at 50%%/75%%); default: the paper's 64k iterations on "
        f"cifar10, {SYNTHETIC_DEFAULT_EPOCHS} on synthetic",
    )  # fmt: skip
    p.add_argument("--image-size", dest="image_size", type=positive_int, default=32)
    # As resnet-train fit spells them; --train-size and --val-size are the older spellings.
    train = p.add_argument(
        "--synthetic-train", dest="train_size", type=positive_int, default=2000,
        help="synthetic training images (2000)",
    )  # fmt: skip
    add_alias(p, "--train-size", train)
    val = p.add_argument(
        "--synthetic-val", dest="val_size", type=positive_int, default=500,
        help="synthetic validation images (500)",
    )  # fmt: skip
    add_alias(p, "--val-size", val)
    p.add_argument("--batch-size", dest="batch_size", type=positive_int, help="default 128")
    p.add_argument("--lr", type=float, help="default 0.1")
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--device", default="auto", help="auto (default), cpu or cuda")
    p.add_argument("--no-augment", dest="augment", action="store_false")
    p.add_argument("--workers", type=non_negative_int, default=2)
    p.add_argument("--quiet", dest="progress", action="store_false", help="one line per run only")
    p.add_argument("--out", type=Path, required=True, help="experiment folder")
    p.add_argument(
        "--size-limit", dest="size_limits", type=size_limits, metavar="KEY=N[,KEY=N]",
        help="raise a sanity limit (as resnet-train --size-limit)",
    )  # fmt: skip
    add_json_flag(p, "one JSON object (the findings and the files written)")


def register(subparsers: Subparsers[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "experiment",
        help="the paper's experiments from our own runs: degradation, shortcuts (§4.2)",
        description="Re-run the paper's central experiments: plain vs residual nets by depth "
        "(degradation, §4.2 Fig. 6 / Table 6) and shortcut options A/B/C (Table 3).",
        epilog="Examples:\n"
        "  resnet-train experiment degradation --depths 20,56 --out runs/degradation\n"
        "  resnet-train experiment shortcuts --depth 20 --out runs/shortcuts\n"
        "  resnet-train experiment shortcuts --dataset cifar10 --data DIR --out runs/sc",
    )
    sub = p.add_subparsers(dest="kind", metavar="{degradation,shortcuts}")
    sub.required = True
    deg = sub.add_parser(
        "degradation", help="plain and ResNet (option A) at each depth",
        description="Train a plain net and a ResNet at each depth with the same recipe and seed.",
    )  # fmt: skip
    deg.add_argument(
        "--depths", type=csv_list("depth", int), default=[20, 56],
        help="CIFAR depths 6n+2, comma-separated (default 20,56)",
    )  # fmt: skip
    _common(deg)
    sc = sub.add_parser(
        "shortcuts", help="plain and options A, B, C at one depth",
        description="Train plain and shortcut options A, B, C at one depth (Table 3 analogue).",
    )  # fmt: skip
    sc.add_argument("--depth", type=positive_int, default=20, help="CIFAR depth 6n+2 (20)")
    _common(sc)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from train.experiments import Settings, degradation_runs, run_experiment, shortcut_runs

    epochs = args.epochs
    if epochs is None and args.dataset == "synthetic":
        epochs = SYNTHETIC_DEFAULT_EPOCHS
    if args.dataset == "cifar10" and args.data is None:
        raise UserError("--dataset cifar10 needs --data DIR")
    settings = Settings(
        dataset=args.dataset,
        data=args.data,
        epochs=epochs,
        image_size=args.image_size,
        train_size=args.train_size,
        val_size=args.val_size,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        device=args.device,
        augment=args.augment,
        workers=args.workers,
        progress=args.progress,
        size_limits=tuple(sorted((args.size_limits or {}).items())),
    )
    if args.kind == "degradation":
        runs = degradation_runs(args.depths, image_size=args.image_size)
    else:
        runs = shortcut_runs(args.depth, image_size=args.image_size)
    document = run_experiment(args.kind, runs, settings, args.out)
    if args.json:
        files = {name: str(args.out / name) for name in ("report.md", "results.json", "curves.png")}
        print_json({"experiment": args.kind, "files": files, "findings": document["findings"]})
        return 0
    print(f"wrote {args.out}/report.md, results.json, curves.png")
    if args.progress:
        print(_headline(document))
    return 0


def _headline(document: dict) -> str:
    f = document["findings"]
    if document["experiment"] == "degradation":
        lo, hi = f["shallow"], f["deep"]
        return (
            f"degradation appears: {'yes' if f['degradation_appears'] else 'no'} "
            f"(plain-{hi} vs plain-{lo}: {100 * f['plain_gap']:+.1f} points of training error); "
            f"residual learning removes it: {'yes' if f['residual_removes_degradation'] else 'no'} "
            f"(ResNet-{hi} vs ResNet-{lo}: {100 * f['resnet_gap']:+.1f}, "
            f"vs plain-{hi}: {100 * f['deep_resnet_minus_plain']:+.1f})"
        )
    return (
        f"all shortcut options beat plain: {'yes' if f['all_options_beat_plain_train'] else 'no'}"
    )
