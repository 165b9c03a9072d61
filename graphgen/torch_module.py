"""The torch module, built by walking the plan: no second description of the network.

Modules nest by the plan's dotted names (`layer1.0.conv1`), so `state_dict()` keys equal the ONNX
graph's initializer names and torchvision's keys (plus torch's `num_batches_tracked` counters).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from graphgen.plan import (
    Add,
    BatchNorm,
    Conv,
    GlobalAvgPool,
    Linear,
    MaxPool,
    Plan,
    Relu,
    ZeroPadShortcut,
    expand,
    fold_bn,
    last_use,
)
from graphgen.spec import Spec


class PlanNet(nn.Module):
    """A ResNet (or plain net) whose forward pass interprets the plan's op list."""

    def __init__(self, plan: Plan) -> None:
        super().__init__()
        self.plan = plan
        for op in plan.ops:
            module = _module_for(op)
            if module is not None:
                _add_nested(self, op.name, module)
        self._modules_by_op = {
            op.name: self.get_submodule(op.name) for op in plan.ops if _module_for(op) is not None
        }
        # op index -> activations no later op reads: forward drops them (autograd keeps what it
        # saved for backward), so only the live ones stay in memory, not every block's output.
        self._free_after = {
            i: tuple(n for n in names if n != "logits") for i, names in last_use(plan).items()
        }
        self.reset_parameters()

    @property
    def spec(self) -> Spec:
        return self.plan.spec

    def reset_parameters(self) -> None:
        """He initialisation (kaiming normal, fan_out) for convs, BN at identity, torch's fc default."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d) and module.affine:
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values: dict[str, torch.Tensor] = {"input": x}
        for index, op in enumerate(self.plan.ops):
            values[op.out] = self._run_op(op, values)
            for name in self._free_after.get(index, ()):
                del values[name]
        return values["logits"]

    def _run_op(self, op: object, values: dict[str, torch.Tensor]) -> torch.Tensor:
        if isinstance(op, Add):
            return values[op.a] + values[op.b]
        x = values[op.x]  # type: ignore[attr-defined]
        if isinstance(op, Relu):
            return F.relu(x)
        if isinstance(op, MaxPool):
            return F.max_pool2d(x, op.kernel, op.stride, op.pad)
        if isinstance(op, ZeroPadShortcut):
            x = x[:, :, :: op.stride, :: op.stride]
            return F.pad(x, (0, 0, 0, 0, op.pad_before, op.pad_after))
        if isinstance(op, GlobalAvgPool):
            return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        out: torch.Tensor = self._modules_by_op[op.name](x)  # type: ignore[attr-defined]
        return out


def _module_for(op: object) -> nn.Module | None:
    if isinstance(op, Conv):
        return nn.Conv2d(op.cin, op.cout, op.kernel, op.stride, op.pad, bias=op.bias)
    if isinstance(op, BatchNorm):
        return nn.BatchNorm2d(op.channels, affine=op.affine)
    if isinstance(op, Linear):
        return nn.Linear(op.in_features, op.out_features)
    return None


def _add_nested(root: nn.Module, dotted: str, module: nn.Module) -> None:
    *parents, leaf = dotted.split(".")
    parent = root
    for part in parents:
        child = parent._modules.get(part)
        if child is None:
            child = nn.Module()
            parent.add_module(part, child)
        parent = child
    parent.add_module(leaf, module)


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
