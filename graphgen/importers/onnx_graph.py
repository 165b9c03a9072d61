"""ResNets from any ONNX exporter (MXNet, torch.onnx, graphgen): infer the spec, copy weights.

Three steps, each refusing with the first thing that does not fit:

1. *Canonicalise* (`onnx_canonical`): from the output back, every node on the way becomes one
   of graphgen's plan kinds (conv, bn, relu, add, maxpool, gap, fc, and option A's subsample
   and zero-pad).
2. *Infer* the spec (here) by walking the canonical graph forward unit by unit: stem, each
   unit's branch and shortcut between the stream tensor and its addition, the head.
3. *Match* (`onnx_match`) the inferred plan against the canonical graph from the output back,
   pairing every plan op with a node, and read the weights off the pairs.

Step 2 reads the paper's families (and Gluon's, akamaster's, fb.resnet.torch's) from the graph.
The zoo variants (ResNeXt, Wide, deep stems, ResNet-D, SE/ECA, ResNet-V2) are recognised as the
`graphgen build --arch` presets instead: where step 2 or 3 fails, each preset's network (with
the graph's class count and image size) is matched; the first that pairs every op is the spec.
A variant of another depth or width than the presets' is refused, naming the closest preset
and where it differs.

The caller then verifies the new graph against the source on onnxruntime.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from graphgen.blocks import find_block
from graphgen.errors import GraphError, SpecError
from graphgen.flavors import flavor_of
from graphgen.importers.common import FLOAT_TYPES, run_onnx
from graphgen.importers.onnx_canonical import Canonical, Node
from graphgen.importers.onnx_match import Matcher
from graphgen.layouts import TORCHVISION
from graphgen.onnx_io import check_with_onnx, data_locations, load_data, load_skeleton, opset_of
from graphgen.plan import expand
from graphgen.spec import Spec
from graphgen.weights import Weights
from resnet_common.errors import shown, typed_line

CARRIED_METADATA = ("graphgen.normalize_mean", "graphgen.normalize_std")


@dataclass(frozen=True)
class OnnxImport:
    spec: Spec
    weights: Weights
    summary: str
    reference: Callable[[np.ndarray], np.ndarray]
    metadata: dict[str, str] = field(default_factory=dict)  # the source's normalisation, if any
    batch: int | None = None  # the source's fixed batch, if it has one
    data_files: list[str] = field(default_factory=list)  # its external data, beside it


# The opsets read: onnxruntime runs 7 and newer (the source is run as the check), and a newer
# opset than the installed onnx knows has operators nobody here can check.
MIN_OPSET = 7


def import_onnx(path: str | Path, *, image_size: int | None = None) -> OnnxImport:
    model = load_skeleton(path)  # refuses cycles, tensors made twice, initializers that lie
    source = str(path)
    files = sorted(data_locations(model, source=source))
    load_data(model, path)
    check_importable(model, path)
    try:
        graph = Canonical(model, source)
        size = graph.image_size or image_size or 224
        if graph.image_size and image_size and image_size != graph.image_size:
            raise GraphError(f"{source} takes {graph.image_size}px images, not {image_size}")
        try:
            spec = _infer(graph, size, source)
            plan = expand(spec)  # shapes only: the caller checks sizes (graphgen.sizes)
            weights, folded = Matcher(plan, graph, source).run()
            preset = None
        except (GraphError, ValueError, TypeError, IndexError, KeyError) as err:
            spec, weights, folded, preset = _preset(graph, size, source, err)
    except (ValueError, TypeError, IndexError, KeyError, ZeroDivisionError, OverflowError) as err:
        # A foreign graph shaped as no exporter makes one (a fuzzer's, a hand edit): refused in
        # one line, whatever corner of the walk it reached.
        raise GraphError(
            f"{source}: not a ResNet graph graphgen reads ({shown(typed_line(err), 160)})"
        ) from None
    if preset is not None:
        summary = f"{preset} (graphgen build --arch {preset}), {spec.classes} classes" + (
            ", BN folded into the convs (unfolded exactly)" if folded else ""
        )
        return _found(model, spec, weights, summary, graph, files)
    flavor = flavor_of(spec) or "custom flavour"
    stride = f", stride on {spec.stride_at}" if spec.block_kind.branch.stride_at_matters else ""
    if spec.shortcut == "A":  # where the zeros go is read from the graph's Pads
        where = "on both sides" if spec.zero_pad == "symmetric" else "at the end"
        stride += f", option A (zero channels {where})"
    summary = f"resnet{spec.depth}, {flavor}, {spec.classes} classes{stride}" + (
        ", BN folded into the convs (unfolded exactly)" if folded else ""
    )
    return _found(model, spec, weights, summary, graph, files)


def _found(
    model: onnx.ModelProto,
    spec: Spec,
    weights: Weights,
    summary: str,
    graph: Canonical,
    files: list[str],
) -> OnnxImport:
    data = model.SerializeToString()
    carried = {p.key: p.value for p in model.metadata_props if p.key in CARRIED_METADATA}
    return OnnxImport(
        spec, weights, summary, lambda x: run_onnx(data, x), carried, graph.batch, files
    )


def _classes(graph: Canonical) -> int | None:
    """The class count the output's fc (or conv head) makes, if the output comes from one."""
    node = graph.nodes[graph.output]
    if node.kind not in ("fc", "conv") or "weight" not in node.arrays:
        return None
    return int(node.arrays["weight"].shape[0])


def _preset(
    graph: Canonical, size: int, source: str, first: Exception
) -> tuple[Spec, Weights, bool, str]:
    """The --arch preset whose network (with the graph's classes and image size) pairs with
    every node; else the first refusal, with the closest preset and where it differs."""
    from graphgen.archs import ARCHS

    classes = _classes(graph)
    reason = str(first) if isinstance(first, GraphError) else shown(typed_line(first), 160)
    if classes is None:
        raise GraphError(reason)
    closest: tuple[int, str, str] = (-1, "", "")
    for name, preset in ARCHS.items():
        try:
            spec = preset.spec.replace(classes=classes, image_size=size)
        except SpecError:
            continue
        matcher = Matcher(expand(spec), graph, source)
        try:
            weights, folded = matcher.run()
        except GraphError:
            if matcher.deepest > closest[0]:
                closest = (matcher.deepest, name, matcher.failure)
            continue
        return spec, weights, folded, name
    near = f"; nor is it an --arch preset's network (closest: {closest[1]}, {closest[2]})"
    raise GraphError(reason + (near if closest[1] else ""))


def check_importable(model: onnx.ModelProto, path: str | Path) -> None:
    """What a foreign graph must be before it is walked: at an opset onnxruntime runs and onnx
    knows, passing onnx's checker, its weights finite (NaN weights make every output NaN, and
    the check against the source would only say "disagrees")."""
    version = opset_of(model)
    newest = onnx.defs.onnx_opset_version()
    if version is None:
        raise GraphError(f"{path} imports no standard ONNX opset; not a graph graphgen reads")
    if not MIN_OPSET <= version <= newest:
        raise GraphError(
            f"{path} is at opset {version}; import reads opsets {MIN_OPSET} to {newest} "
            f"(onnx {onnx.__version__}); convert it with onnx.version_converter"
        )
    check_with_onnx(path)
    for t in model.graph.initializer:
        if t.data_type in FLOAT_TYPES:
            array = numpy_helper.to_array(t)
            if not np.isfinite(array).all():
                bad = int(array.size - np.count_nonzero(np.isfinite(array)))
                raise GraphError(
                    f"{path}: tensor {shown(t.name)} holds {bad:,} NaN or Inf values; refused"
                )


@dataclass
class _Unit:
    convs: list[Node]
    bns_after: list[bool]
    projection: Node | None
    preact_bn: bool  # the branch starts with its own BN-ReLU
    out: str
    zero_pad: Node | None = None  # option A: the shortcut's channel padding


def _stem(g: Canonical, refuse: Callable[[str], GraphError]) -> tuple[str, str, int, bool]:
    """The stream tensor after the stem, the stem's kind and width, and whether a data BN
    (Gluon v2's) comes first."""
    t, node = g.input, g.only_consumer(g.input)
    data_bn = node is not None and node.kind == "bn"
    if data_bn and node is not None:
        t = _out(g, node)
        node = g.only_consumer(t)
    if node is None or node.kind != "conv":
        raise refuse("the input does not go into one conv (the stem)")
    k, s = node.attrs["k"], node.attrs["s"]
    stem = {(7, 2): "imagenet", (3, 1): "cifar"}.get((k, s))
    if stem is None:
        raise refuse(f"the stem is a {k}x{k}/{s} conv (graphgen's are 7x7/2 and 3x3/1)")
    stem_width = int(node.arrays["weight"].shape[0])
    t = _out(g, node)
    for kind in (
        (["bn"] if _next_kind(g, t) == "bn" else [])
        + ["relu"]
        + (["maxpool"] if stem == "imagenet" else [])
    ):
        nxt = g.only_consumer(t)
        if nxt is None or nxt.kind != kind:
            raise refuse(f"the stem has no {kind} where graphgen's has one")
        t = _out(g, nxt)
    return t, stem, stem_width, data_bn


def _units(
    g: Canonical, t: str, refuse: Callable[[str], GraphError]
) -> tuple[list[_Unit], bool, str]:
    """The residual units from the stream tensor `t` on, whether they are pre-activation, and
    the stream tensor after the last."""
    units: list[_Unit] = []
    preact: bool | None = None
    while True:
        add = _closing_add(g, t)
        if add is None:
            break
        unit = _unit(g, t, add, refuse)
        post = g.only_consumer(unit.out)
        is_post = post is not None and post.kind == "relu"
        if preact is None:
            preact = not is_post
        if preact == is_post:
            raise refuse(f"unit {len(units) + 1} mixes pre- and post-activation")
        if is_post and post is not None:
            unit.out = _out(g, post)
        units.append(unit)
        t = unit.out
    if not units:
        raise refuse("no residual additions (plain nets are not imported)")
    return units, bool(preact), t


def _stages(
    units: list[_Unit], refuse: Callable[[str], GraphError]
) -> tuple[list[int], list[int], list[int]]:
    """Units per stage and stage widths (a stage starts where a unit strides), and each unit's
    stride."""
    layers: list[int] = []
    widths: list[int] = []
    strides = []
    for i, u in enumerate(units):
        stride = max(c.attrs["s"] for c in u.convs)
        strides.append(stride)
        width = int(u.convs[0].arrays["weight"].shape[0])
        if i == 0 or stride != 1:
            layers.append(0)
            widths.append(width)
        if width != widths[-1]:
            raise refuse(f"unit {i + 1} changes width without a stride")
        layers[-1] += 1
    if strides[0] != 1:
        raise refuse("the first stage strides (graphgen's keeps the stem's resolution)")
    return layers, widths, strides


def _infer(g: Canonical, image_size: int, source: str) -> Spec:
    """The spec, by walking the canonical graph forward from the input."""

    def refuse(what: str) -> GraphError:
        return GraphError(f"{source}: {what}; not a ResNet graphgen expresses")

    t, stem, stem_width, data_bn = _stem(g, refuse)
    units, preact, t = _units(g, t, refuse)
    final_bn = _next_kind(g, t) == "bn"
    layers, widths, strides = _stages(units, refuse)
    bottleneck = len(units[0].convs) == 3
    if any(len(u.convs) != len(units[0].convs) for u in units):
        raise refuse("units mix basic and bottleneck branches")
    stride_at = "1x1"
    for u in units:
        if bottleneck and u.convs[1].attrs["s"] != 1:
            stride_at = "3x3"
    folded = not any(any(u.bns_after) for u in units)
    changes = [
        s != 1 or u.convs[0].arrays["weight"].shape[1] != u.convs[-1].arrays["weight"].shape[0]
        for u, s in zip(units, strides, strict=True)
    ]
    projections = [u.projection is not None for u in units]
    if not any(projections) and any(changes):  # option A: subsample, pad zero channels
        shortcut, zero_pad = "A", _zero_pad_placement(units, refuse)
    elif any(c and not p for c, p in zip(changes, projections, strict=True)):
        raise refuse("a unit that changes shape has no projection shortcut")
    else:  # C projects where B would not; where every unit changes shape, B and C are one
        shortcut = (
            "C" if any(p and not c for c, p in zip(changes, projections, strict=True)) else "B"
        )
        zero_pad = "symmetric"
    has_bias = any("bias" in c.arrays for u in units for c in (u.convs[0], u.convs[-1]))
    block = find_block(layers=len(units[0].convs), preact=bool(preact), layout=TORCHVISION)
    classes = g.nodes[g.output]
    if classes.kind != "fc":
        raise refuse(f"the output comes from a {classes.kind}, not a fc")
    spec = Spec(
        layers=tuple(layers),
        widths=tuple(widths),
        block=block.name,
        stem=stem,
        shortcut=shortcut,
        stride_at=stride_at,
        classes=int(classes.arrays["weight"].shape[0]),
        image_size=image_size,
        stem_width=stem_width,
        bottleneck_bias=block.takes_bottleneck_bias and not folded and has_bias,
        data_bn=data_bn,
        first_unit_bn=bool(preact) and units[0].preact_bn,
        zero_pad=zero_pad,
    )
    if preact and not final_bn:
        raise refuse("a pre-activation net without a final BN-ReLU before pooling")
    return spec


def _out(g: Canonical, node: Node) -> str:
    return node.key


def _next_kind(g: Canonical, tensor: str) -> str | None:
    node = g.only_consumer(tensor)
    return node.kind if node is not None else None


def _closing_add(g: Canonical, t: str) -> str | None:
    """The first addition reachable from the stream tensor `t`: its unit's."""
    seen, frontier, adds = {t}, [t], []
    while frontier:
        for user in g.consumers.get(frontier.pop(), []):
            if user in seen:
                continue
            seen.add(user)
            if g.nodes[user].kind == "add":
                adds.append(user)
            elif g.nodes[user].kind in ("gap", "fc"):
                continue
            else:
                frontier.append(user)
    return min(adds, key=lambda a: g.nodes[a].order) if adds else None


def _unit(g: Canonical, t: str, add: str, refuse: Callable[[str], GraphError]) -> _Unit:
    chains = []
    for start in g.nodes[add].inputs:
        chain, x = [], start
        while x != t:
            node = g.nodes[x]
            if node.kind not in ("conv", "bn", "relu", *OPTION_A) or len(node.inputs) != 1:
                raise refuse(f"a {node.kind} ({node.name}) inside a unit")
            chain.append(node)
            x = node.inputs[0]
        chains.append(chain[::-1])
    chains.sort(key=lambda c: sum(n.kind == "conv" for n in c))
    shortcut, branch = chains
    convs = [n for n in branch if n.kind == "conv"]
    if len(convs) not in (2, 3):
        raise refuse(f"a unit's branch has {len(convs)} convs (basic has 2, bottleneck 3)")
    bns_after = [
        i + 1 < len(branch) and branch[i + 1].kind == "bn"
        for i, n in enumerate(branch)
        if n.kind == "conv"
    ]
    if any(n.kind in OPTION_A for n in branch):
        raise refuse("a unit's branch subsamples or pads without a conv")
    projection = next((n for n in shortcut if n.kind == "conv"), None)
    zero_pad = next((n for n in shortcut if n.kind == "zeropad"), None)
    if projection is not None and any(n.kind in OPTION_A for n in shortcut):
        raise refuse("a shortcut both projects and zero-pads")
    preact_bn = bool(branch) and branch[0].kind == "bn"
    return _Unit(convs, bns_after, projection, preact_bn, add, zero_pad)


OPTION_A = ("subsample", "zeropad")


def _zero_pad_placement(units: list[_Unit], refuse: Callable[[str], GraphError]) -> str:
    """Where option A's zeros go, read from the Pads: "symmetric" (graphgen's default) when
    each pads (new channels) // 2 in front, "end" when all go behind the identity channels."""
    found = set()
    for i, u in enumerate(units):
        if u.zero_pad is None:
            continue
        before, after = u.zero_pad.attrs["before"], u.zero_pad.attrs["after"]
        if before == (before + after) // 2:
            found.add("symmetric")
        elif before == 0:
            found.add("end")
        else:
            raise refuse(
                f"unit {i + 1} pads {before} zero channels in front and {after} behind "
                "(graphgen places them symmetrically or all at the end)"
            )
    if len(found) > 1:
        raise refuse("units place option A's zero channels differently")
    return found.pop() if found else "symmetric"
