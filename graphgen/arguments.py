"""The command-line flags that describe a network, shared by every command that builds one
(`graphgen build`, `resnet-train`), and the spec they give; the flags that describe a graph file
(batch, opset, dtype, folding), shared by `graphgen build` and `graphgen import`. A library
module, not a CLI: the commands import it, and nothing here parses argv."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from graphgen.blocks import BLOCK_KINDS
from graphgen.errors import SpecError
from graphgen.flavors import FLAVORS, apply_flavor
from graphgen.onnx_emit import (
    BF16_MIN_OPSET,
    DEFAULT_OPSET,
    DTYPES,
    check_dtype,
    check_dtype_opset,
    check_opset,
    default_opset,
)
from graphgen.spec import (
    DATASETS,
    LIMIT_KEY,
    SHORTCUTS,
    STRIDE_PLACEMENTS,
    ZERO_PADS,
    Spec,
    load_spec_file,
    read_spec_data,
    spec_for_depth,
)
from resnet_common.cli import dtype_name, positive_int
from resnet_common.errors import UserError

OVERRIDES = ("shortcut", "block", "stride_at", "zero_pad", "classes", "image_size")


def add_architecture_arguments(
    group: argparse._ActionsContainer,
    *,
    classes_default: str = "1000 / 10",
    size_default: str = "224 / 32",
) -> None:
    """The spec overrides every command that builds a network takes (graphgen build,
    resnet-train): shortcut, block, stride placement, option A's padding, classes, image size."""
    group.add_argument(
        "--shortcut",
        choices=SHORTCUTS,
        help="A zero-pad identity, B project where shapes change, C project always, "
        "none = plain net (default: B for ImageNet, A for CIFAR, as in the paper)",
    )
    group.add_argument(
        "--block", choices=tuple(BLOCK_KINDS), help="override the depth table's block type"
    )
    group.add_argument(
        "--stride-at",
        dest="stride_at",
        choices=STRIDE_PLACEMENTS,
        help="where a bottleneck strides: 1x1 (the paper) or 3x3 (torchvision v1.5)",
    )
    group.add_argument(
        "--zero-pad",
        dest="zero_pad",
        choices=ZERO_PADS,
        help="where option A puts its zero channels: symmetric (default; akamaster's PyTorch "
        "CIFAR ResNets, tensorpack) or end (after the identity channels, fb.resnet.torch)",
    )
    group.add_argument(
        "--flavor",
        choices=FLAVORS,
        help="a model zoo's block details: paper (default), torchvision (stride on the 3x3), "
        "gluon-v1 (bottleneck 1x1 biases), gluon-v2 (MXNet Gluon's pre-activation ResNet)",
    )
    group.add_argument("--classes", type=int, help=f"output classes (default {classes_default})")
    group.add_argument(
        "--image-size",
        dest="image_size",
        type=int,
        help=f"input height and width (default {size_default})",
    )


def add_family_argument(group: argparse._ActionsContainer, *, default: str = "") -> argparse.Action:
    """`--family imagenet|cifar10`: which depth table a depth reads. graphgen build also
    accepts its older spelling `--dataset` (in resnet-train, --dataset is the training data)."""
    return group.add_argument(
        "--family",
        choices=DATASETS,
        help="depth table: imagenet (Table 1) or cifar10 (6n+2)"
        + (f" (default: {default})" if default else ""),
    )


def spec_from_args(args: argparse.Namespace) -> Spec:
    """The spec the network flags give: `--depth` (with `--family`) or `--spec`, then the
    overrides (`--shortcut`, `--block`, ...) and `--flavor`."""
    overrides = {k: getattr(args, k) for k in OVERRIDES}
    return spec_from_options(
        depth=args.depth,
        spec=args.spec,
        arch=getattr(args, "arch", None),
        family=args.family,
        flavor=getattr(args, "flavor", None),
        **overrides,
    )


def spec_from_options(
    *,
    depth: int | None = None,
    spec: str | Path | Spec | None = None,
    arch: str | None = None,
    family: str | None = None,
    flavor: str | None = None,
    **overrides: Any,
) -> Spec:
    """A depth (of `family`), a spec (a file or a Spec) or an architecture's name
    (graphgen.archs: `resnext50_32x4d`, `timm:resnet50d`), with overrides and a flavour: what
    `graphgen build` and `graphgen.build` both read. Overrides that are None are not given."""
    overrides = {k: v for k, v in overrides.items() if v is not None}
    unknown = set(overrides) - set(OVERRIDES)
    if unknown:
        raise TypeError(
            f"unknown spec override {sorted(unknown)[0]!r}; the overrides are {OVERRIDES}"
        )
    if sum(x is not None for x in (depth, spec, arch)) != 1:
        raise UserError("give a depth, a spec or an arch, one of them")
    if arch is not None:
        from graphgen.archs import arch_spec

        if family is not None or flavor is not None:
            given = "--family" if family is not None else "--flavor"
            raise SpecError(f"{given} does not go with --arch, which names a whole network")
        return arch_spec(arch, **overrides)
    if spec is not None:
        base = spec if isinstance(spec, Spec) else load_spec_file(Path(spec))
        if family is not None:
            raise SpecError("--family goes with --depth; put `dataset:` in the spec file")
        base = base.replace(**overrides) if overrides else base
    else:
        assert depth is not None
        if depth < 1:
            raise SpecError(f"unknown depth {depth}: depths are positive")
        base = spec_for_depth(depth, family, **overrides)
    if flavor is None:
        return base
    # The flavour sets block details; a flag given beside it (--stride-at, --block) still wins.
    return apply_flavor(base, flavor).replace(**overrides)


def add_graph_arguments(p: argparse._ActionsContainer) -> None:
    """The flags that say how a graph file is written (`graphgen build`, `graphgen import`)."""
    p.add_argument(
        "--batch",
        default="dynamic",
        help="fixed batch size, or 'dynamic' (default) for a symbolic N",
    )
    p.add_argument(
        "--opset",
        type=int,
        default=None,
        help=f"ONNX opset, 13 up to onnx's newest (default {DEFAULT_OPSET}; "
        f"{BF16_MIN_OPSET} for --dtype bfloat16, the first whose Conv takes bfloat16)",
    )
    p.add_argument(
        "--dtype",
        type=dtype_name,
        default="float32",
        help=f"weights and compute: {', '.join(DTYPES)} (default float32)",
    )
    p.add_argument(
        "--io-dtype",
        dest="io_dtype",
        type=dtype_name,
        default="float32",
        help="dtype of `input` and `logits` (default float32; with --dtype float16 "
        "the graph casts at both ends)",
    )
    p.add_argument(
        "--fold-bn",
        dest="fold_bn",
        action="store_true",
        help="fold BatchNorm into conv weights and biases (inference graph)",
    )


def graph_options(args: argparse.Namespace) -> dict[str, Any]:
    """The checked graph flags by their Python names: batch, dtype, io_dtype, opset, fold_bn."""
    batch = fixed_batch(args.batch)
    check_dtype(args.dtype)
    check_dtype(args.io_dtype)
    opset = default_opset(args.dtype) if args.opset is None else args.opset
    check_opset(opset)
    check_dtype_opset(args.dtype, opset)
    return dict(
        batch=batch,
        dtype=args.dtype,
        io_dtype=args.io_dtype,
        opset=opset,
        fold_bn=args.fold_bn,
    )


def fixed_batch(text: str) -> int | None:
    """`--batch`: a positive integer, or 'dynamic' (None: a symbolic N)."""
    if text == "dynamic":
        return None
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise UserError(f"--batch must be a positive integer or 'dynamic', got {text!r}") from None


def size_limits_from_args(args: argparse.Namespace) -> dict[str, int]:
    """The size limits raised by the spec file's `size_limit` key, then by `--size-limit`
    (where the command has that flag)."""
    return size_limits_for(getattr(args, "spec", None), getattr(args, "size_limits", None))


def size_limits_for(spec: object, given: dict[str, int] | None) -> dict[str, int]:
    """The limits a spec file raises (when `spec` is a path), then those `given`."""
    from graphgen.sizes import limits_from_spec

    limits: dict[str, int] = {}
    if isinstance(spec, (str, Path)):
        data = read_spec_data(Path(spec))
        if isinstance(data, dict) and LIMIT_KEY in data:
            limits = limits_from_spec(data[LIMIT_KEY], source=str(spec))
    return limits | (given or {})


def add_size_limit_argument(p: Any) -> None:
    """`--size-limit KEY=N[,KEY=N]`, shared by `graphgen build` and `resnet-train`."""
    from resnet_common.cli import size_limits

    p.add_argument(
        "--size-limit",
        dest="size_limits",
        type=size_limits,
        metavar="KEY=N[,KEY=N]",
        help="raise a sanity limit checked before anything is allocated: blocks (10000), "
        "params (1e9), macs per image (1e12), activation (2**30 values per image), memory "
        "(bytes to assume free; default: what the machine has); a spec file's "
        "'size_limit: {params: 5e9}' does the same",
    )
