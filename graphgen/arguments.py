"""The command-line flags that describe a network, shared by every command that builds one
(`graphgen build`, `resnet-train`), and the spec they give. A library module, not a CLI: the
commands import it, and nothing here parses argv."""

from __future__ import annotations

import argparse

from graphgen.errors import SpecError
from graphgen.sizes import limits_from_spec
from graphgen.spec import (
    BLOCKS,
    LIMIT_KEY,
    SHORTCUTS,
    STRIDE_PLACEMENTS,
    Spec,
    read_spec_data,
    spec_for_depth,
    spec_from_mapping,
)

OVERRIDES = ("shortcut", "block", "stride_at", "classes", "image_size")


def add_architecture_arguments(
    group: argparse._ActionsContainer,
    *,
    classes_default: str = "1000 / 10",
    size_default: str = "224 / 32",
) -> None:
    """The spec overrides every command that builds a network takes (graphgen build,
    resnet-train): shortcut, block, stride placement, classes, image size."""
    group.add_argument(
        "--shortcut",
        choices=SHORTCUTS,
        help="A zero-pad identity, B project where shapes change, C project always, "
        "none = plain net (default: B for ImageNet, A for CIFAR, as in the paper)",
    )
    group.add_argument("--block", choices=BLOCKS, help="override the depth table's block type")
    group.add_argument(
        "--stride-at",
        dest="stride_at",
        choices=STRIDE_PLACEMENTS,
        help="where a bottleneck strides: 1x1 (the paper) or 3x3 (torchvision v1.5)",
    )
    group.add_argument("--classes", type=int, help=f"output classes (default {classes_default})")
    group.add_argument(
        "--image-size",
        dest="image_size",
        type=int,
        help=f"input height and width (default {size_default})",
    )


def spec_from_args(args: argparse.Namespace) -> Spec:
    return spec_and_limits(args)[0]


def spec_and_limits(args: argparse.Namespace) -> tuple[Spec, dict[str, int]]:
    """The spec, and the size limits raised by the spec file's `size_limit` key and then by
    `--size-limit` (where the command has that flag)."""
    overrides = {k: getattr(args, k) for k in OVERRIDES if getattr(args, k) is not None}
    limits: dict[str, int] = {}
    if args.spec is not None:
        data = read_spec_data(args.spec)
        if isinstance(data, dict) and LIMIT_KEY in data:
            limits = limits_from_spec(data[LIMIT_KEY], source=str(args.spec))
        spec = spec_from_mapping(data, source=str(args.spec))
        if args.dataset is not None:
            raise SpecError("--dataset goes with --depth; put the dataset in the spec file")
        spec = spec.replace(**overrides) if overrides else spec
    else:
        if args.depth < 1:
            raise SpecError(f"unknown depth {args.depth}: depths are positive")
        spec = spec_for_depth(args.depth, args.dataset, **overrides)
    return spec, limits | (getattr(args, "size_limits", None) or {})
