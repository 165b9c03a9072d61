"""`torch`: the plan's own nn.Module (train/model.py), rebuilt from a graphgen file, eager on the CPU.

The module is rebuilt from the spec in the file's metadata, not from the graph, so it is an
independent check of the graph's structure (a rewired shortcut in the file does not follow).
Precision "fp64" exists for the parity reference: float64 arithmetic makes the reference's own
rounding error (~1e-15) negligible next to any engine's.
"""

from __future__ import annotations

import importlib.util
from typing import Any, ClassVar

import numpy as np

from graphgen.errors import GraphError
from runtimes.base import Runner, RunnerError

# bf16: the fp32 graph's module in bfloat16 (graphs have no bf16 weights; the Python API
# and scripts/gpu-check.sh use it, `bench-runtimes --precision` knows the graphs' precisions).
DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16", "fp64": "float64"}


class TorchRunner(Runner):
    """Eager PyTorch on the CPU."""

    name = "torch"
    packages: ClassVar[tuple[str, ...]] = ("torch",)
    precisions: ClassVar[tuple[str, ...]] = ("fp32", "fp16", "bf16", "fp64")
    needs_graphgen = True

    @classmethod
    def availability(cls) -> str | None:
        if importlib.util.find_spec("torch") is None:
            return "torch not installed"
        return None

    def activate_impl(self) -> None:
        import torch

        from train.model import model_from_onnx

        try:
            model = model_from_onnx(self.model_path)
        except GraphError as err:
            raise GraphError(f"{self.name} cannot rebuild {self.model_path}: {err}") from None
        self.dtype = getattr(torch, DTYPES[self.precision])
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        self.model = self.prepare(model.to(self.dtype).eval())

    def prepare(self, model: Any) -> Any:
        """Hook for subclasses that transform the module (torch.compile)."""
        return model

    def infer_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        if len(feeds) != 1:
            raise RunnerError(f"{self.name}: expected one input, got {sorted(feeds)}")
        (array,) = feeds.values()
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(array)).to(self.dtype)
            y = self.model(x)
        # The graphs' I/O is float32 at every precision; the reference keeps its float64.
        out = y.numpy() if self.precision == "fp64" else y.float().numpy()
        return {"logits": out}

    def deactivate_impl(self) -> None:
        self.model = None  # tolerates a model that was never built

    def describe(self) -> dict[str, Any]:
        import torch

        info = super().describe()
        info.update(
            threads=torch.get_num_threads(),
            dtype=DTYPES[self.precision],
            version=f"torch {torch.__version__}",
        )
        return info
