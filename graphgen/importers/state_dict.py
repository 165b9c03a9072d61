"""torchvision/timm-named state_dicts (safetensors, .pt, .npz): the spec from names and shapes.

The names are graphgen's own (they are torchvision's), so the weights go through
`graphgen.inject.check_weights` as they are; only the spec has to be inferred. Two things the
shapes cannot show are taken from flags and said in the summary: where a bottleneck strides
(`--stride-at`, or implied by `--arch`; never guessed) and, for a CIFAR stem without projections,
shortcut A (not a plain net).

The zoo variants (graphgen.archs) are read as presets: `--arch NAME` gives the spec outright, and
without it a state_dict whose names the paper's families cannot explain is matched against every
preset's names and shapes (a deep stem's `conv1.0`, SE's `se.fc1`, ResNetV2's `stem.conv` ...).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from graphgen.blocks import find_block
from graphgen.errors import GraphError, SpecError, StridePlacementError
from graphgen.importers.common import place_stride, stride_note
from graphgen.inject import IGNORED_SUFFIXES, check_weights, read_weights
from graphgen.layouts import TORCHVISION
from graphgen.plan import expand
from graphgen.spec import Spec
from graphgen.weights import Weights
from resnet_common.errors import shown


def _conv_weight(weights: Weights, name: str, source: str) -> np.ndarray:
    """A conv weight the spec is read from: it must be there and be [out, in, k, k]."""
    if name not in weights:
        raise GraphError(f"{source}: no {name}; import reads torchvision/timm ResNet names")
    w = weights[name]
    if w.ndim != 4 or w.shape[2] != w.shape[3]:
        raise GraphError(f"{source}: {name} has shape {shown(w.shape)}, not a square conv's")
    return w


def import_state_dict(
    path: str | Path,
    *,
    image_size: int = 224,
    stride_at: str | None = None,
    stride_from: str = "--stride-at",
    preset: str | None = None,
) -> tuple[Spec, Weights, str]:
    """(spec, weights in plan order, one-line summary) of a torchvision-layout state_dict.

    A bottleneck net needs `stride_at` (said by `stride_from`, for the summary): without it a
    StridePlacementError, since 1x1- and 3x3-striding nets have the same names and shapes."""
    source = str(path)
    weights = {k: v for k, v in read_weights(path).items() if not k.endswith(IGNORED_SUFFIXES)}
    if preset is not None:
        return _as_preset(preset, weights, image_size, source, stride_at, stride_from)
    try:
        return _infer(weights, image_size, source, stride_at, stride_from)
    except StridePlacementError:  # the paper's names and shapes fit: only the stride is unsaid
        raise
    except GraphError as err:
        name = _fitting_preset(weights, image_size, source, err)
        return _as_preset(name, weights, image_size, source, stride_at, stride_from)


def _classes(weights: Weights) -> int | None:
    fc = weights.get("fc.weight", weights.get("head.fc.weight"))
    return int(fc.shape[0]) if fc is not None and fc.ndim in (2, 4) else None


def _as_preset(
    name: str,
    weights: Weights,
    image_size: int,
    source: str,
    stride_at: str | None,
    stride_from: str,
) -> tuple[Spec, Weights, str]:
    """The preset's network with the file's class count, its names and shapes checked."""
    from graphgen.archs import arch_spec

    classes = _classes(weights)
    if classes is None:
        raise GraphError(f"{source}: no fc.weight or head.fc.weight; not a {name} state_dict")
    spec = arch_spec(name, classes=classes, image_size=image_size)
    checked = check_weights(expand(spec), weights, source=source)
    spec = place_stride(spec, stride_at, source=source)
    given = stride_note(spec, stride_from)
    named = name if spec.stride_at == arch_spec(name).stride_at else spec.name
    summary = f"{named} (graphgen build --arch {name}), {classes} classes{given}"
    return spec, checked, summary


def _fitting_preset(weights: Weights, image_size: int, source: str, first: GraphError) -> str:
    """The preset whose names and shapes the file's are exactly; else `first`, naming the
    preset whose names it shares most."""
    from graphgen.archs import ARCHS, arch_spec

    classes = _classes(weights)
    mine = {k: tuple(v.shape) for k, v in weights.items()}
    best: tuple[int, str] = (0, "")
    for name in ARCHS:
        if classes is None:
            break
        try:
            spec = arch_spec(name, classes=classes, image_size=image_size)
        except SpecError:
            continue
        theirs = expand(spec).tensor_shapes()
        if theirs == mine:
            return name
        best = max(best, (len(theirs.keys() & mine.keys()), name))
    near = f"; nor are they an --arch preset's (closest: {best[1]})" if best[1] else ""
    raise GraphError(f"{first}{near}")


def _infer(
    weights: Weights, image_size: int, source: str, stride_at: str | None, stride_from: str
) -> tuple[Spec, Weights, str]:
    if "conv1.weight" not in weights or "fc.weight" not in weights:
        raise GraphError(
            f"{source}: no conv1.weight or fc.weight; import reads torchvision/timm ResNet names"
        )
    blocks: dict[int, set[int]] = {}
    for name in weights:
        if m := re.match(r"layer(\d+)\.(\d+)\.", name):
            blocks.setdefault(int(m[1]), set()).add(int(m[2]))
    if not blocks or sorted(blocks) != list(range(1, len(blocks) + 1)):
        raise GraphError(f"{source}: stages layer1, layer2, ... not found in order")
    for stage, numbers in sorted(blocks.items()):
        if sorted(numbers) != list(range(len(numbers))):
            raise GraphError(
                f"{source}: stage layer{stage} numbers its units {shown(sorted(numbers))}, not "
                "0, 1, 2, ...; import reads torchvision/timm ResNet names"
            )
    layers = 3 if "layer1.0.conv3.weight" in weights else 2
    preact = "bn_final.running_mean" in weights
    kind = find_block(layers=layers, preact=preact, layout=TORCHVISION)
    stem = _conv_weight(weights, "conv1.weight", source)
    stem_kind = {7: "imagenet", 3: "cifar"}.get(int(stem.shape[2]))
    if stem_kind is None:
        raise GraphError(f"{source}: a {stem.shape[2]}x{stem.shape[2]} stem conv fits no stem")
    widths = tuple(
        int(_conv_weight(weights, f"layer{s}.0.conv1.weight", source).shape[0])
        for s in sorted(blocks)
    )
    fc = weights["fc.weight"]
    if fc.ndim != 2:
        raise GraphError(f"{source}: fc.weight has shape {shown(fc.shape)}, not a matrix")
    projections = [n for n in weights if n.endswith(".downsample.0.weight")]
    units = sum(len(b) for b in blocks.values())
    if len(projections) == units:
        shortcut = "C"
    elif projections:
        shortcut = "B"
    else:
        shortcut = "A" if stem_kind == "cifar" else "B"
    spec = Spec(
        layers=tuple(len(blocks[s]) for s in sorted(blocks)),
        widths=widths,
        block=kind.name,
        stem=stem_kind,
        shortcut=shortcut,
        classes=int(weights["fc.weight"].shape[0]),
        image_size=image_size,
        stem_width=int(stem.shape[0]),
        bottleneck_bias=kind.takes_bottleneck_bias and "layer1.0.conv1.bias" in weights,
        data_bn="bn_data.running_mean" in weights,
        first_unit_bn=preact and "layer1.0.bn1.running_mean" in weights,
    )
    checked = check_weights(expand(spec), weights, source=source)  # names fit either stride
    spec = place_stride(spec, stride_at, source=source)
    given = stride_note(spec, stride_from)
    summary = (
        f"{spec.name} (resnet{spec.depth}), {spec.classes} classes, shortcut {shortcut}{given}"
    )
    return spec, checked, summary
