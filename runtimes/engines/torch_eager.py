"""`torch`: the plan's own nn.Module (graphgen.torch_module), rebuilt from a graphgen file, eager
on the CPU.

The module is rebuilt from the spec in the file's metadata, not from the graph, so it is an
independent check of the graph's structure (a rewired shortcut in the file does not follow).
Precision "fp64" exists for the parity reference: float64 arithmetic makes the reference's own
rounding error (~1e-15) negligible next to any engine's. bf16 is the module in bfloat16 (from
graphgen's bfloat16 graph, whose weights are the fp32 ones rounded to nearest even, so it is the
fp32 module cast): oneDNN runs its convolutions on AMX or AVX-512 BF16 where the CPU has them,
and emulates them elsewhere (slower, the same numbers); the record says which.
"""

from __future__ import annotations

import importlib.util
from typing import Any, ClassVar

import numpy as np

from graphgen.errors import GraphError
from resnet_common.extras import install_command
from runtimes.base import Runner, RunnerError

DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16", "fp64": "float64"}


class _ThreadLease:
    """torch's intra-op thread count is one setting for the whole process: runners that ask for
    a count set it while any of them is active, and the last one out puts back what was there
    before the first came in, whatever order they are released in (an interleaved sweep
    releases in load order). Runners active together share the count; sweeps give every CPU
    engine the same one."""

    def __init__(self) -> None:
        self.holders = 0
        self.before = 0

    def take(self, threads: int) -> None:
        import torch

        if self.holders == 0:
            self.before = torch.get_num_threads()
        self.holders += 1
        torch.set_num_threads(threads)

    def give_back(self) -> None:
        import torch

        self.holders -= 1
        if self.holders == 0 and torch.get_num_threads() != self.before:
            torch.set_num_threads(self.before)


_THREADS = _ThreadLease()


class TorchRunner(Runner):
    """Eager PyTorch on the CPU."""

    name = "torch"
    packages: ClassVar[tuple[str, ...]] = ("torch",)
    precisions: ClassVar[tuple[str, ...]] = ("fp32", "fp16", "bf16", "fp64")
    needs_graphgen = True
    holds_threads = False  # True while this runner holds _THREADS

    @classmethod
    def availability(cls) -> str | None:
        if importlib.util.find_spec("torch") is None:
            return f"torch not installed ({install_command('torch')})"
        return None

    def activate_impl(self) -> None:
        import torch

        from graphgen.torch_module import model_from_onnx

        try:
            model = model_from_onnx(self.model_path)
        except GraphError as err:
            raise GraphError(f"{self.name} cannot rebuild {self.model_path}: {err}") from None
        self.dtype = getattr(torch, DTYPES[self.precision])
        if self.threads is not None:
            _THREADS.take(self.threads)
            self.holds_threads = True
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
        if self.holds_threads:
            _THREADS.give_back()
            self.holds_threads = False

    def describe(self) -> dict[str, Any]:
        import torch

        info = super().describe()
        info.update(
            threads=torch.get_num_threads(),
            dtype=DTYPES[self.precision],
            version=f"torch {torch.__version__}",
        )
        if self.precision == "bf16" and self.device == "cpu":
            from runtimes.environment import BF16_FLAGS, cpu_flags

            info["onednn_bf16"] = onednn_bf16()
            info["bf16_units"] = [f for f in cpu_flags() if f in BF16_FLAGS]  # empty: emulated
        return info


def onednn_bf16() -> bool | None:
    """Whether torch's oneDNN has bf16 kernels here (AVX-512 and newer; native on AMX or
    AVX-512 BF16, emulated on plain AVX-512); None where this torch cannot say."""
    import torch

    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    if check is None or not torch.backends.mkldnn.is_available():  # type: ignore[no-untyped-call]
        return None
    try:
        return bool(check())
    except RuntimeError:
        return None
