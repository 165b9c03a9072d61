"""The torch module, built from the plan and laid out top-down as torchvision's ResNet is.

`PlanNet`'s children are the plan's top-level steps in order: the stem's ops, `layer1` ...
(each an `nn.Sequential` of `Block`s, as torchvision's `_make_layer` builds them), the head's
ops; so `print(model)` shows the network. A `Block` is built from its block's ops in the plan
and its forward runs those ops (the shortcut and the addition are two of them): the plan stays
the one description of the structure. Module paths are the plan's op names, so `state_dict()`
keys equal the ONNX graph's initializer names and torchvision's (plus torch's
`num_batches_tracked`).

Importing this module imports torch; nothing else in graphgen imports it, so building graphs
never needs torch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from graphgen.plan import (
    INPUT,
    OUTPUT,
    Add,
    AvgPool,
    BatchNorm,
    ChannelConv,
    Conv,
    GlobalAvgPool,
    Linear,
    MaxPool,
    Op,
    Plan,
    Relu,
    Scale,
    Sigmoid,
    ZeroPadShortcut,
    expand,
    fold_bn,
    inputs,
    last_use,
)
from graphgen.spec import Spec


class ZeroPad(nn.Module):
    """Option A's shortcut (He et al. 2015, 3.3): the identity subsampled by the stride, with
    zero channels in front and behind as the plan's op places them."""

    def __init__(self, op: ZeroPadShortcut) -> None:
        super().__init__()
        self.stride, self.before, self.after = op.stride, op.pad_before, op.pad_after

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.before, self.after))

    def extra_repr(self) -> str:
        return f"stride={self.stride}, zero_channels=({self.before}, {self.after})"


class FlatAvgPool(nn.AdaptiveAvgPool2d):
    """Global average pooling, flattened to a feature vector (torchvision's avgpool + flatten)."""

    def __init__(self) -> None:
        super().__init__(1)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return torch.flatten(super().forward(input), 1)


class ChannelConv1d(nn.Conv1d):
    """ECA's 1-d conv across the channels of the pooled (N, C, 1, 1) map (timm's EcaModule)."""

    def __init__(self, op: ChannelConv) -> None:
        super().__init__(1, 1, op.kernel, padding=(op.kernel - 1) // 2, bias=False)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        n = input.shape[0]
        return super().forward(input.view(n, 1, -1)).view(n, -1, 1, 1)


class ConvClassifier(nn.Conv2d):
    """A classifier whose weight is a 1x1 conv's, on the pooled map, flattened after (timm's
    ResNetV2 head, `use_conv=True`)."""

    def __init__(self, op: Linear) -> None:
        super().__init__(op.in_features, op.out_features, 1)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return torch.flatten(super().forward(input), 1)


def _module_for(op: Op) -> nn.Module | None:
    """The module that runs `op`; None for the addition and the gated scale, which a Block's
    forward does itself."""
    if isinstance(op, Conv):
        return nn.Conv2d(
            op.cin, op.cout, op.kernel, op.stride, op.pad, bias=op.bias, groups=op.groups
        )
    if isinstance(op, BatchNorm):
        return nn.BatchNorm2d(op.channels, affine=op.affine)
    if isinstance(op, Linear):
        return ConvClassifier(op) if op.conv else nn.Linear(op.in_features, op.out_features)
    if isinstance(op, Relu):
        return nn.ReLU()
    if isinstance(op, MaxPool):
        return nn.MaxPool2d(op.kernel, op.stride, op.pad)
    if isinstance(op, ZeroPadShortcut):
        return ZeroPad(op)
    if isinstance(op, AvgPool):
        return nn.AvgPool2d(op.kernel, op.stride, ceil_mode=True, count_include_pad=False)
    if isinstance(op, Sigmoid):
        return nn.Sigmoid()
    if isinstance(op, ChannelConv):
        return ChannelConv1d(op)
    if isinstance(op, GlobalAvgPool):
        return FlatAvgPool() if op.flatten else nn.AdaptiveAvgPool2d(1)
    return None


class Block(nn.Module):
    """One residual unit: the plan's ops for `layerS.I` (or its layout's prefix), run in plan
    order. Tensors no later op
    reads are dropped as soon as they are dead (autograd keeps what it saved for backward), so a
    bottleneck holds only its live activations."""

    def __init__(self, prefix: str, ops: Sequence[Op], kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.ops = tuple(ops)
        self.paths = tuple(op.name.removeprefix(f"{prefix}.") for op in self.ops)
        for op, path in zip(self.ops, self.paths, strict=True):
            module = _module_for(op)
            if module is not None:
                _add_nested(self, path, module)
        produced = {op.out for op in self.ops}
        reads = {name for op in self.ops for name in inputs(op) if name not in produced}
        if len(reads) != 1:
            raise ValueError(f"block {prefix} reads {sorted(reads)}: a block reads one tensor")
        (self.input,) = reads
        self.output = self.ops[-1].out
        self.free_after = last_use(self.ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values = {self.input: x}
        for index, (op, path) in enumerate(zip(self.ops, self.paths, strict=True)):
            if isinstance(op, Add):
                out = values[op.a] + values[op.b]
            elif isinstance(op, Scale):
                out = values[op.x] * values[op.gate]
            else:
                out = self._child(path)(values[op.x])
            values[op.out] = out
            for name in self.free_after.get(index, ()):
                if name != op.out:
                    del values[name]
        return out

    def _child(self, path: str) -> nn.Module:
        """The module now at `path` (looked up at each call, so swaps such as SyncBatchNorm's
        take effect; `_modules` directly, since get_submodule costs as much as a small op)."""
        module = self
        for part in path.split("."):
            module = module._modules[part]  # type: ignore[assignment]
        return module

    def extra_repr(self) -> str:
        """The kind, and what the addition joins (x: the block's input), which no child shows."""
        adds = [op for op in self.ops if isinstance(op, Add)]
        if not adds:
            return f"{self.kind}, no shortcut"
        (add,) = adds
        local = {self.input: "x"} | {
            op.out: path for op, path in zip(self.ops, self.paths, strict=True)
        }
        return f"{self.kind}, {local[add.a]} + {local[add.b]}"


class PlanNet(nn.Module):
    """A ResNet (or plain net): the plan's top-level steps as children, run in order."""

    def __init__(self, plan: Plan) -> None:
        super().__init__()
        self.plan = plan
        self.block_pattern = plan.spec.block_kind.layout.block_pattern
        previous = INPUT
        for name, ops in _steps(plan):
            reads, gives = self._add_step(name, ops)
            if reads != previous:
                raise ValueError(f"{name} reads {reads}, not the previous step's {previous}")
            previous = gives
        if previous != OUTPUT:
            raise ValueError(f"the last step gives {previous}, not {OUTPUT}")
        _draw_as_before(plan)
        self.reset_parameters()

    def _add_step(self, name: str, ops: list[Op]) -> tuple[str, str]:
        """A block joins its stage's nn.Sequential, any other op is a child of its own (in
        nn.Sequentials where its name is dotted: timm's `conv1.0`, `stem.conv`, `head.fc`); the
        tensor the step reads and the one it gives."""
        match = self.block_pattern.fullmatch(f"{name}.")
        if match is None:
            (op,) = ops
            module = _module_for(op)
            assert module is not None, f"{name} is not a step of its own"
            _add_nested(self, name, module, container=nn.Sequential)
            return inputs(op)[0], op.out
        stage, index = match[1], match[2]
        block = Block(name, ops, self.plan.spec.block)
        if not _has(self, stage):
            _add_nested(self, stage, nn.Sequential(), container=nn.Sequential)
        layer = self.get_submodule(stage)
        assert isinstance(layer, nn.Sequential) and int(index) == len(layer), name
        layer.append(block)
        return block.input, block.output

    @property
    def spec(self) -> Spec:
        return self.plan.spec

    def reset_parameters(self) -> None:
        """He initialisation (kaiming normal, fan_out) for convs, BN at identity, torch's fc default."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d) and not isinstance(module, ConvClassifier):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d) and module.affine:
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for step in self.children():
            x = step(x)
        return x


def _steps(plan: Plan) -> Iterator[tuple[str, list[Op]]]:
    """The plan's ops in order, each block's (`layerS.I.*`) gathered under its prefix."""
    pattern = plan.spec.block_kind.layout.block_pattern
    ops: list[Op]
    prefix, ops = "", []
    for op in plan.ops:
        match = pattern.match(op.name)
        name = f"{match[1]}.{match[2]}" if match else op.name
        if name != prefix and ops:
            yield prefix, ops
            ops = []
        prefix = name
        ops.append(op)
    if ops:
        yield prefix, ops


def _draw_as_before(plan: Plan) -> None:
    """Draw from torch's generator what constructing every conv and fc a second time draws.

    The module of earlier versions did that construction (and threw the modules away); doing
    the same draws keeps a seed's initial weights, and so the training runs docs/experiments.md
    reports, what they were."""
    for op in plan.ops:
        if isinstance(op, Conv | Linear):
            _module_for(op)


def _add_nested(
    root: nn.Module, dotted: str, module: nn.Module, *, container: type[nn.Module] | None = None
) -> None:
    """`module` at the dotted path, creating containers on the way: `container`, or an
    nn.Sequential where children are numbered (as `downsample.0`) and a plain nn.Module where
    they are named (a Block's forward runs its ops by path, not its containers)."""
    *parents, leaf = dotted.split(".")
    parts = [*parents, leaf]
    parent = root
    for depth, part in enumerate(parents):
        child = parent._modules.get(part)
        if child is None:
            numbered = parts[depth + 1].isdigit()
            child = (container or (nn.Sequential if numbered else nn.Module))()
            parent.add_module(part, child)
        parent = child
    parent.add_module(leaf, module)


def _has(root: nn.Module, dotted: str) -> bool:
    module: nn.Module | None = root
    for part in dotted.split("."):
        module = module._modules.get(part) if module is not None else None
    return module is not None


def build_model(spec_or_plan: Spec | Plan, *, fold: bool = False) -> PlanNet:
    plan = spec_or_plan if isinstance(spec_or_plan, Plan) else expand(spec_or_plan)
    return PlanNet(fold_bn(plan) if fold else plan)


def model_from_onnx(path: str | Path) -> PlanNet:
    """Rebuild the network a graphgen ONNX file describes: spec from metadata, weights from initializers.

    Raises `graphgen.errors.GraphError` for files graphgen did not make.
    """
    from graphgen.onnx_io import read_graphgen_model

    plan, weights = read_graphgen_model(path)
    model = PlanNet(plan)
    state = {k: torch.from_numpy(v.astype("float32")) for k, v in weights.items()}
    model.load_state_dict(state, strict=False)
    missing = set(plan.tensor_shapes()) - set(state)
    if missing:
        from graphgen.errors import GraphError

        raise GraphError(f"{path}: initializers missing for {sorted(missing)[:3]}")
    return model
