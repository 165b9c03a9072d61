"""Measure every `graphgen build --arch` preset in the library that ships it, for tests/test_archs.py.

Runs in a venv with torch, torchvision, timm and fvcore (scripts/make-arch-counts.sh; never the
project's venv, which has none of them). For each preset (graphgen/archs.py) and each library
that ships it, the library's own network (`torchvision.models.get_model(NAME, weights=None)`,
`timm.create_model(NAME, pretrained=False)`) gives:

- params: `sum(p.numel() for p in model.parameters())`;
- macs: fvcore's FlopCountAnalysis at batch 1, 224 x 224, its `conv` and `linear` counts (one per
  multiply-add; batch norm, pooling and the rest left out, as graphgen's cost model does);
- tensors and names_sha256: the state_dict's keys and shapes (num_batches_tracked aside), so the
  test checks graphgen's names against the library's without the library;
- where both libraries ship a name: whether their state_dicts have the same keys and shapes, and
  the largest output difference when one's random weights run in both (float64).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import importlib.metadata
import json
import sys
from pathlib import Path
from typing import Any

import timm
import torch
import torchvision
from fvcore.nn import FlopCountAnalysis
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from graphgen.archs import ARCHS  # noqa: E402  (graphgen needs only numpy, onnx, pyyaml here)

IMAGE_SIZE = 224


def make(library: str, name: str) -> nn.Module:
    if library == "torchvision":
        return torchvision.models.get_model(name, weights=None)
    return timm.create_model(name, pretrained=False)


def names_sha256(shapes: dict[str, tuple[int, ...]]) -> str:
    """A digest of the sorted names and shapes (tests/test_archs.py computes the same)."""
    text = "".join(f"{k}:{list(v)};" for k, v in sorted(shapes.items()))
    return hashlib.sha256(text.encode()).hexdigest()


def state_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {
        k: tuple(v.shape)
        for k, v in model.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }


def measure(model: nn.Module) -> dict[str, Any]:
    model.eval()
    flops = FlopCountAnalysis(model, torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE))
    flops.unsupported_ops_warnings(False)
    flops.uncalled_modules_warnings(False)
    by_op = flops.by_operator()
    shapes = state_shapes(model)
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "macs": int(by_op.get("conv", 0) + by_op.get("linear", 0)),
        "tensors": len(shapes),
        "names_sha256": names_sha256(shapes),
    }


def same_network(a: nn.Module, b: nn.Module) -> dict[str, Any]:
    """a's random weights in b: same keys and shapes, and the outputs' largest difference."""
    same = state_shapes(a) == state_shapes(b)
    if not same:
        return {"same_state_dict": False}
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with torch.no_grad():
        diff = (a.double().eval()(x) - b.double().eval()(x)).abs().max().item()
    return {"same_state_dict": True, "max_abs_diff_float64": diff}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.manual_seed(0)
    archs: dict[str, Any] = {}
    for name, preset in ARCHS.items():
        models = {library: make(library, name) for library in preset.libraries}
        entry: dict[str, Any] = {lib: measure(model) for lib, model in models.items()}
        if len(models) == 2:
            entry["torchvision_vs_timm"] = same_network(models["torchvision"], models["timm"])
        archs[name] = entry
        print(name, {k: v.get("params", v) for k, v in entry.items()}, flush=True)
    versions = {
        m: importlib.metadata.version(m) for m in ("torch", "torchvision", "timm", "fvcore")
    }
    meta = {
        "made_by": "scripts/make-arch-counts.sh (scripts/arch_counts.py)",
        "date": datetime.date.today().isoformat(),
        **versions,
        "params": "sum(p.numel() for p in model.parameters())",
        "macs": f"fvcore FlopCountAnalysis, batch 1, {IMAGE_SIZE}x{IMAGE_SIZE}: conv + linear",
        "names_sha256": "sha256 of 'name:[shape];' over the sorted state_dict keys, "
        "num_batches_tracked aside",
        "archs": archs,
    }
    args.out.write_text(json.dumps(meta, indent=2) + "\n")


if __name__ == "__main__":
    main()
