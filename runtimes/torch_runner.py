"""The torch runners: the plan's own nn.Module (train/model.py), rebuilt from a graphgen file.

The module is rebuilt from the spec in the file's metadata, not from the graph, so it is an
independent check of the graph's structure (a rewired shortcut in the file does not follow).
Precision "fp64" exists for the parity reference: float64 arithmetic makes the reference's own
rounding error (~1e-15) negligible next to any engine's.
"""

from __future__ import annotations

import importlib.util
import shutil
from typing import Any, ClassVar

import numpy as np

from graphgen.errors import GraphError
from runtimes.base import Runner, RunnerError, check_timing

DTYPES = {"fp32": "float32", "fp16": "float16", "fp64": "float64"}


class TorchRunner(Runner):
    """Eager PyTorch on the CPU."""

    name = "torch"
    precisions = ("fp32", "fp16", "fp64")
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


class TorchCompileRunner(TorchRunner):
    """torch.compile (inductor) of the same module; compiles on the first inference."""

    name = "torch-compile"
    precisions: ClassVar[tuple[str, ...]] = ("fp32", "fp16")

    @classmethod
    def availability(cls) -> str | None:
        reason = super().availability()
        if reason is None and not (shutil.which("cc") or shutil.which("gcc")):
            return "no C compiler found for torch.compile's CPU backend"
        return reason

    def prepare(self, model: Any) -> Any:
        import torch

        return torch.compile(model)


class TorchCudaRunner(TorchRunner):
    """Eager PyTorch on the first CUDA device; timed with CUDA events on device-resident inputs.

    fp16 here is the module in half precision (cuDNN's fp16 kernels), float32 I/O as elsewhere.
    """

    name = "torch-cuda"
    device = "cuda"
    precisions: ClassVar[tuple[str, ...]] = ("fp32", "fp16", "fp64")
    clock = "cuda events"  # both modes: events bracket the copies too in end-to-end

    def __init__(self, *args: Any, timing: str = "device", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.timing = check_timing(timing)

    def activate_impl(self) -> None:
        import torch

        # The peak is per record: without a reset it would carry the largest earlier model's.
        torch.cuda.reset_peak_memory_stats()
        super().activate_impl()

    @classmethod
    def availability(cls) -> str | None:
        reason = super().availability()
        if reason is not None:
            return reason
        import torch

        if not torch.cuda.is_available():
            return "no CUDA device (torch.cuda.is_available() is False)"
        return None

    def prepare(self, model: Any) -> Any:
        import torch

        # TF32 off, as for the other engines' parity runs (torch enables it for cuDNN convs).
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
        return model.to("cuda")

    def infer_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        (array,) = feeds.values()
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(array)).to("cuda", self.dtype)
            y = self.model(x)
        out = y.double() if self.precision == "fp64" else y.float()
        return {"logits": out.cpu().numpy()}

    def bind(self, feeds: dict[str, np.ndarray]) -> None:
        import torch

        super().bind(feeds)
        (array,) = feeds.values()
        self._x = torch.from_numpy(np.ascontiguousarray(array)).to("cuda", self.dtype)

    def timed_run(self) -> float:
        import torch

        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        with torch.inference_mode():
            if self.timing == "end-to-end":
                (array,) = self._bound.values()
                start.record()
                x = torch.from_numpy(array).to("cuda", self.dtype, non_blocking=False)
                self.model(x).float().cpu()
                end.record()
            else:
                start.record()
                self.model(self._x)
                end.record()
        end.synchronize()
        return start.elapsed_time(end) * 1e-3

    def deactivate_impl(self) -> None:
        self._x = None
        super().deactivate_impl()

    def peak_device_memory_bytes(self) -> int:
        import torch

        return int(torch.cuda.max_memory_allocated())

    def describe(self) -> dict[str, Any]:
        import torch

        info = super().describe()
        info.update(timing=self.timing, gpu=torch.cuda.get_device_name(0), tf32=False)
        return info
