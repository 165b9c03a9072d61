"""`torch-cuda`: the `torch` runner's module on the first CUDA device, timed with CUDA events."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from runtimes.engines.torch_eager import TorchRunner


class TorchCudaRunner(TorchRunner):
    """Eager PyTorch on the first CUDA device; timed with CUDA events on device-resident inputs.

    fp16 here is the module in half precision (cuDNN's fp16 kernels), float32 I/O as elsewhere.
    """

    name = "torch-cuda"
    device = "cuda"
    precisions: ClassVar[tuple[str, ...]] = ("fp32", "fp16", "bf16", "fp64")

    @property
    def clock(self) -> str:
        return "cuda events"  # both modes: events bracket the copies too in end-to-end

    def activate_impl(self) -> None:
        import torch

        from runtimes.engines.cuda_util import MemoryMeter

        # The peak is per record: without a reset it would carry the largest earlier model's.
        # torch's counters cover every torch tensor of the process, so the meter subtracts what
        # was allocated before and stops when another torch-cuda runner loads (an interleaved
        # group); the other engines allocate outside torch and do not move these counters.
        torch.cuda.reset_peak_memory_stats()
        self._memory: Any = MemoryMeter(
            torch.cuda.max_memory_allocated,
            what="torch's allocator in this process (torch.cuda.max_memory_allocated)",
            domain="torch",
        )
        super().activate_impl()
        self._memory.sample()

    @classmethod
    def availability(cls) -> str | None:
        reason = super().availability()
        if reason is not None:
            return reason
        import torch

        if torch.version.cuda is None:
            return f"torch {torch.__version__} is a CPU build (no CUDA)"
        if not torch.cuda.is_available():
            return (
                f"no CUDA device (torch {torch.__version__}, CUDA {torch.version.cuda}: "
                "torch.cuda.is_available() is False)"
            )
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
        self._x: Any = torch.from_numpy(np.ascontiguousarray(array)).to("cuda", self.dtype)

    def timed_run(self) -> float:
        import torch

        if self._bound is None:
            raise RuntimeError("torch-cuda: timed_run() called before bind()")
        start = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
        end = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
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
        return float(start.elapsed_time(end)) * 1e-3

    def deactivate_impl(self) -> None:
        self._x = None
        super().deactivate_impl()

    def peak_device_memory_bytes(self) -> int | None:
        memory = getattr(self, "_memory", None)
        if memory is None:
            return None
        if self.is_active:
            memory.sample()
        return int(memory.peak)

    def describe(self) -> dict[str, Any]:
        import torch

        info = super().describe()
        # Only a loaded runner has a device to name (describe() must work before activate).
        gpu = torch.cuda.get_device_name(0) if self.is_active else None
        memory = getattr(self, "_memory", None)
        info.update(gpu=gpu, tf32=False, device_memory=None if memory is None else memory.scope)
        return info
