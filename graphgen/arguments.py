"""The command-line flags that describe a network, shared by every command that builds one
(`graphgen build`, `resnet-train`), and the spec they give. A library module, not a CLI: the
commands import it, and nothing here parses argv."""

from __future__ import annotations

import argparse
from typing import Any

from graphgen.blocks import BLOCK_KINDS
from graphgen.errors import SpecError
from graphgen.flavors import FLAVORS, apply_flavor
from graphgen.spec import (
    LIMIT_KEY,
    SHORTCUTS,
    STRIDE_PLACEMENTS,
    ZERO_PADS,
    Spec,
    load_spec_file,
    read_spec_data,
    spec_for_depth,
)

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


def spec_from_args(args: argparse.Namespace) -> Spec:
    spec = _base_spec(args)
    flavor = getattr(args, "flavor", None)
    if flavor is None:
        return spec
    # The flavour sets block details; a flag given beside it (--stride-at, --block) still wins.
    overrides = {k: getattr(args, k) for k in OVERRIDES if getattr(args, k) is not None}
    return apply_flavor(spec, flavor).replace(**overrides)


def _base_spec(args: argparse.Namespace) -> Spec:
    overrides = {k: getattr(args, k) for k in OVERRIDES if getattr(args, k) is not None}
    if args.spec is not None:
        spec = load_spec_file(args.spec)
        if args.dataset is not None:
            raise SpecError("--family goes with --depth; put `dataset:` in the spec file")
        return spec.replace(**overrides) if overrides else spec
    if args.depth < 1:
        raise SpecError(f"unknown depth {args.depth}: depths are positive")
    return spec_for_depth(args.depth, args.dataset, **overrides)


def size_limits_from_args(args: argparse.Namespace) -> dict[str, int]:
    """The size limits raised by the spec file's `size_limit` key, then by `--size-limit`
    (where the command has that flag)."""
    from graphgen.sizes import limits_from_spec

    limits: dict[str, int] = {}
    if getattr(args, "spec", None) is not None:
        data = read_spec_data(args.spec)
        if isinstance(data, dict) and LIMIT_KEY in data:
            limits = limits_from_spec(data[LIMIT_KEY], source=str(args.spec))
    return limits | (getattr(args, "size_limits", None) or {})


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
