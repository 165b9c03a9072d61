"""`resnet-train fit`: train a graphgen network with the paper's recipe; `--export` writes the
graph. The default command: `resnet-train --depth 20 ...` is `resnet-train fit --depth 20 ...`.

Registered without torch (so `resnet-train --help` works anywhere); torch is imported when a run
starts.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from graphgen.arguments import (
    OVERRIDES,
    add_architecture_arguments,
    add_family_argument,
    add_size_limit_argument,
    size_limits_from_args,
    spec_from_options,
)
from graphgen.errors import SpecError
from graphgen.spec import IMAGENET_DEPTHS, Spec
from resnet_common.cli import (
    EXIT_CHECK_FAILED,
    HelpFormatter,
    OneLineParser,
    Subparsers,
    add_json_flag,
    csv_list,
    fail,
    non_negative_int,
    positive_int,
    print_json,
    seed_int,
)
from resnet_common.documents import read_document
from resnet_common.errors import UserError, first_line, shown
from resnet_common.fileio import refuse_overwriting_inputs
from train.config import DATASETS
from train.recipe import SYNTHETIC_DEFAULT_EPOCHS

REQUIRES = ("torch", "safetensors")
EXTRA = "train"  # resnet_common.extras: brings torch, safetensors, matplotlib and pillow
# resnet-train's --dataset -> graphgen's spec family (the CIFAR nets for small images).
SPEC_FAMILY = {"synthetic": "cifar10", "cifar10": "cifar10", "imagefolder": "imagenet"}
# What `--resume RUN` honours; every other flag is refused (the run's config.json decides).
RESUME_OVERRIDES = (
    "epochs", "max_iters", "export", "export_fold_bn", "workers", "device", "progress",
)  # fmt: skip


class _HelpFormatter(HelpFormatter):
    """Keeps the epilog's line breaks and appends each flag's default where it has one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            action.option_strings
            and "%(default)" not in text
            and default not in (None, False, argparse.SUPPRESS)
            and not isinstance(action, argparse._StoreFalseAction)
        ):
            text += " (default: %(default)s)"
        return text


def register(subparsers: Subparsers[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "fit",
        help="train one network with the paper's recipe",
        description="Train a ResNet from graphgen's spec with the paper's recipe (He et al. 2015, "
        "sections 3.4 and 4.2) on CPU, GPU or torchrun; write safetensors and, with --export, a "
        "verified ONNX graph. Recipe flags left out take the paper's values for the family.",
        epilog="Examples:\n"
        "  resnet-train --depth 20 --dataset synthetic --epochs 3 --out runs/demo\n"
        "  resnet-train --depth 18 --family imagenet --image-size 64 --dataset synthetic "
        "--epochs 2 --out runs/r18\n"
        "  resnet-train --depth 56 --dataset cifar10 --data DIR --out runs/r56\n"
        "  resnet-train --depth 56 --dataset cifar10 --data DIR --epochs 20 --milestones 3000,4500 "
        "--out runs/short\n"
        "  resnet-train --depth 50 --dataset imagefolder --data DIR --out runs/r50\n"
        "  resnet-train --resume runs/r56 --epochs 30 --export r56.onnx\n"
        "  torchrun --nproc_per_node 2 -m train --depth 20 --dataset synthetic --out runs/ddp\n"
        "\n--resume RUN takes everything from RUN/config.json and honours only --epochs, "
        "--max-iters, --export, --export-fold-bn, --workers, --device and --quiet.\n"
        "`fit` is resnet-train's default command: `resnet-train --depth 20 ...` is "
        "`resnet-train fit --depth 20 ...`.\n",
        formatter_class=_HelpFormatter,
    )
    net = p.add_argument_group("network (the options of `graphgen build`)")
    net.add_argument("--depth", type=int, help="network depth (Table 1, or 6n+2 for CIFAR)")
    net.add_argument("--spec", type=Path, metavar="FILE", help="YAML or JSON spec file")
    add_family_argument(
        net, default="cifar10 for synthetic and cifar10 data, imagenet for imagefolder"
    )
    add_architecture_arguments(net, classes_default="from the data", size_default="32 / 224")

    data = p.add_argument_group("data")
    data.add_argument("--dataset", choices=DATASETS, default="synthetic", help="training data")
    data.add_argument("--data", metavar="DIR", help="CIFAR-10 python batches or ImageFolder root")
    data.add_argument(
        "--val-split", dest="val_split", type=int, help="CIFAR val images taken from train (5000)"
    )
    data.add_argument(
        "--synthetic-train",
        dest="synthetic_train",
        type=positive_int,
        default=2000,
        help="synthetic training images",
    )
    data.add_argument(
        "--synthetic-val",
        dest="synthetic_val",
        type=positive_int,
        default=500,
        help="synthetic validation images",
    )
    data.add_argument(
        "--no-augment", dest="augment", action="store_false", help="no crop/flip/colour"
    )
    data.add_argument(
        "--workers", type=non_negative_int, default=2, help="ImageFolder decoding processes"
    )

    rec = p.add_argument_group("recipe (paper defaults; every value can be overridden)")
    rec.add_argument(
        "--epochs",
        type=positive_int,
        help="train this many epochs (default: the recipe's iterations; 10 on synthetic data); "
        "the paper's milestones move to 50%%/75%% of the run",
    )
    rec.add_argument(
        "--max-iters",
        dest="max_iters",
        type=positive_int,
        help="stop after this many iterations (64000 CIFAR, 600000 ImageNet); not with --epochs",
    )
    rec.add_argument(
        "--batch-size", dest="batch_size", type=positive_int, help="global batch (128 / 256)"
    )
    rec.add_argument("--lr", type=float, help="initial learning rate (0.1)")
    rec.add_argument("--momentum", type=float, help="SGD momentum in [0, 1) (0.9)")
    rec.add_argument(
        "--weight-decay", dest="weight_decay", type=float, help="L2 weight decay (1e-4)"
    )
    rec.add_argument(
        "--schedule",
        choices=("step", "plateau", "constant"),
        help="lr schedule (step for CIFAR, plateau for ImageNet)",
    )
    rec.add_argument(
        "--milestones",
        type=csv_list("milestone", int),
        help="step schedule: iterations of this run where lr is multiplied by --gamma "
        "(kept as given, also with --epochs); default 32000,48000",
    )
    rec.add_argument("--gamma", type=float, help="lr factor at each drop, in (0, 1] (0.1)")
    rec.add_argument(
        "--warmup-lr",
        dest="warmup_lr",
        type=float,
        help="lr until the training error is below 80%% (ResNet-110 and deeper: 0.01)",
    )
    rec.add_argument(
        "--plateau-patience",
        dest="plateau_patience",
        type=positive_int,
        help="plateau schedule: epochs without improvement before a drop (5)",
    )
    rec.add_argument(
        "--seed", type=seed_int, default=0, help="initialisation, data order, augmentation"
    )

    runs = p.add_argument_group("run")
    runs.add_argument("--out", type=Path, help="run folder (checkpoints, metrics, weights)")
    runs.add_argument(
        "--resume",
        type=Path,
        metavar="RUN",
        help="continue the run in this folder (see the note below for the flags it honours)",
    )
    runs.add_argument("--device", default="auto", help="auto, cpu or cuda")
    runs.add_argument(
        "--sync-bn", dest="sync_bn", action="store_true", help="SyncBatchNorm (GPU DDP)"
    )
    runs.add_argument(
        "--bn-replicas",
        dest="bn_replicas",
        type=positive_int,
        default=1,
        help="one process computing BN per sub-batch, as K DDP processes do",
    )
    runs.add_argument(
        "--export",
        type=Path,
        metavar="MODEL.onnx",
        help="after training: build, inject, verify against torch, write",
    )
    runs.add_argument(
        "--export-fold-bn",
        dest="export_fold_bn",
        action="store_true",
        help="fold BatchNorm into the convs of the exported graph",
    )
    runs.add_argument("--quiet", dest="progress", action="store_false", help="no per-epoch lines")
    add_size_limit_argument(runs)
    add_json_flag(runs, "one JSON object (the run's result)")
    p.set_defaults(func=run)
    return p


def make_parser() -> argparse.ArgumentParser:
    """fit's parser alone (prog `resnet-train`): what tests and --resume's flag check walk."""
    parser: argparse.ArgumentParser = OneLineParser(prog="resnet-train")
    return register(parser.add_subparsers())


def spec_for(args: argparse.Namespace, *, classes: int | None = None) -> Spec:
    """graphgen's spec from the network flags; `--dataset` picks the family, the data the classes."""
    if args.spec is None and args.depth is None:
        raise UserError("give --depth N or --spec FILE (or --resume RUN)")
    if args.spec is not None and args.depth is not None:
        raise UserError("give --depth or --spec, not both")
    family = None if args.spec is not None else (args.family or SPEC_FAMILY[args.dataset])
    overrides = {k: getattr(args, k) for k in OVERRIDES}
    if overrides["classes"] is None:
        overrides["classes"] = classes
    try:
        return spec_from_options(
            depth=args.depth, spec=args.spec, family=family, flavor=args.flavor, **overrides
        )
    except SpecError as err:
        if (
            "not a CIFAR depth" in str(err)
            and family == "cifar10"
            and args.family is None
            and args.depth in IMAGENET_DEPTHS
        ):
            raise SpecError(
                f"depth {args.depth} is an ImageNet depth (Table 1), but --dataset {args.dataset} "
                f"uses the CIFAR family (6n+2: 8, 14, 20, ...): add --family imagenet"
            ) from None
        raise


def _classes_of(args: argparse.Namespace) -> int | None:
    if args.classes is not None or args.dataset != "imagefolder" or args.data is None:
        return args.classes
    from train.data import load_data

    return load_data("imagefolder", args.data, image_size=args.image_size or 224).classes


def config_from_args(args: argparse.Namespace):
    import dataclasses

    from train.loop import TrainConfig
    from train.recipe import cifar_recipe, imagenet_recipe

    if args.out is None:
        raise UserError("give --out RUN_FOLDER (or --resume RUN_FOLDER)")
    if args.epochs is not None and args.max_iters is not None:
        raise UserError("give --epochs or --max-iters, not both")
    if args.dataset == "synthetic":
        if args.data is not None:
            raise UserError(
                "--data goes with --dataset cifar10 or imagefolder; the synthetic set is built in"
            )
        if args.epochs is None and args.max_iters is None:
            # The paper's 64k iterations are for CIFAR-10; a demo on built-in data stays short.
            args.epochs = SYNTHETIC_DEFAULT_EPOCHS
    spec = spec_for(args, classes=_classes_of(args))
    recipe = imagenet_recipe() if spec.stem == "imagenet" else cifar_recipe(spec.depth)
    if args.dataset == "synthetic":
        recipe = recipe.replace(val_split=0)
    if args.max_iters is not None:
        recipe = dataclasses.replace(recipe, epochs=None)
    if args.milestones is not None:
        recipe = recipe.replace(scale_milestones=False)
    recipe = recipe.replace(
        **{
            k: getattr(args, k)
            for k in (
                "batch_size",
                "lr",
                "momentum",
                "weight_decay",
                "schedule",
                "milestones",
                "gamma",
                "warmup_lr",
                "plateau_patience",
                "val_split",
                "epochs",
                "max_iters",
            )
        }  # fmt: skip
    )
    if args.export is not None:  # the file it writes must not be one it reads
        inputs = [(f"--spec {args.spec}", args.spec), (f"--data {args.data}", args.data)]
        refuse_overwriting_inputs(args.export, inputs, flag="--export")
    return TrainConfig(
        spec=spec,
        dataset=args.dataset,
        out=args.out,
        recipe=recipe,
        data=args.data,
        seed=args.seed,
        workers=args.workers,
        device=args.device,
        augment=args.augment,
        sync_bn=args.sync_bn,
        bn_replicas=args.bn_replicas,
        synthetic_train=args.synthetic_train,
        synthetic_val=args.synthetic_val,
        export=args.export,
        export_fold_bn=args.export_fold_bn,
        progress=args.progress,
        size_limits=size_limits_from_args(args),  # the spec file's size_limit, then the flag
    )


def _flag_names(dests: Sequence[str]) -> list[str]:
    by_dest = {a.dest: max(a.option_strings, key=len) for a in make_parser()._actions}
    return [by_dest[d] for d in dests]


def refused_on_resume(args: argparse.Namespace) -> list[str]:
    """The flags given with --resume that it does not honour (config.json decides them)."""
    parser = make_parser()
    refused = []
    for action in parser._actions:
        dest = action.dest
        if not action.option_strings or dest in ("help", "resume", *RESUME_OVERRIDES):
            continue
        if getattr(args, dest, None) != action.default:
            refused.append(max(action.option_strings, key=len))
    return refused


def resume_config(args: argparse.Namespace):
    import dataclasses

    from train.loop import CONFIG, TrainConfig

    refused = refused_on_resume(args)
    if refused:
        raise UserError(
            f"{', '.join(refused)} not allowed with --resume (the run's {CONFIG} decides; "
            f"--resume honours {', '.join(_flag_names(RESUME_OVERRIDES))})"
        )
    if args.epochs is not None and args.max_iters is not None:
        raise UserError("give --epochs or --max-iters, not both")
    path = args.resume / CONFIG
    if not path.is_file():
        raise UserError(f"--resume {args.resume}: no {CONFIG} there, so it is not a run folder")
    data = read_document(path, what="run config")  # a regular file, small, shallow, no twins
    try:
        config = TrainConfig.from_dict(data)  # type: ignore[arg-type]
    except (ValueError, TypeError, KeyError, AttributeError) as err:
        raise UserError(f"{path} is not a readable run config ({shown(str(err), 200)})") from None
    changes = {"out": args.resume}
    counts_epochs = config.recipe.epochs is not None
    if args.epochs is not None and not counts_epochs:
        raise UserError(
            f"{args.resume} counts iterations: extend it with --max-iters, not --epochs"
        )
    if args.max_iters is not None and counts_epochs:
        raise UserError(f"{args.resume} counts epochs: extend it with --epochs, not --max-iters")
    if args.epochs is not None:
        changes["recipe"] = config.recipe.replace(epochs=args.epochs)
    elif args.max_iters is not None:
        changes["recipe"] = dataclasses.replace(
            config.recipe, epochs=None, max_iters=args.max_iters
        )
    for key in ("export", "export_fold_bn", "workers", "device", "progress"):
        value = getattr(args, key)
        if value is not None and value != make_parser().get_default(key):
            changes[key] = value
    if args.export is None and config.export is not None:
        changes["export"] = _export_inside(args.resume, config.export, path)
    return dataclasses.replace(config, **changes)


def _export_inside(run_dir: Path, export: Path, config_path: Path) -> Path:
    """config.json's export, resolved in the run folder; a path outside it is not followed."""
    target = export if export.is_absolute() else run_dir / export
    if not target.resolve().is_relative_to(run_dir.resolve()):
        raise UserError(
            f"{config_path} names the export {export}, outside the run folder: --resume writes "
            f"only inside {run_dir}; give --export FILE to export there again"
        )
    return target


def run(args: argparse.Namespace) -> int:
    from train.export import ExportCheckFailed
    from train.loop import fit

    config = resume_config(args) if args.resume else config_from_args(args)
    try:
        result = fit(config, resume=args.resume is not None)
    except ExportCheckFailed as err:
        return fail(first_line(err), EXIT_CHECK_FAILED)
    if result.records and args.json:  # rank 0 only, as the text line
        print_json(
            {
                "run_dir": str(result.run_dir),
                "epochs": len(result.records),
                "trained_epochs": result.trained_epochs,
                "best_val_error": result.best_val_error,
                "test_error": result.test_error,
                "export": None if config.export is None else str(config.export),
                "export_rel_l2": (result.verification or {}).get("rel_l2"),
            }
        )
    elif result.records and args.resume and result.trained_epochs == 0:
        done = len(result.records)
        print(
            f"run folder {result.run_dir} had already finished ({done} epoch{'s' * (done != 1)}, "
            f"best val error {100 * result.best_val_error:.2f}%): nothing trained; to train on, "  # type: ignore[operator]
            f"--resume {result.run_dir} --epochs {done + 10}"
        )
    elif result.records and config.progress:
        line = f"run folder {result.run_dir}: best val error {100 * result.best_val_error:.2f}%"  # type: ignore[operator]
        if result.test_error is not None:
            line += f", test error {100 * result.test_error:.2f}%"
        if result.verification:
            line += f"; exported {config.export} (rel L2 {result.verification['rel_l2']:.1e})"
        print(line)
    return 0
