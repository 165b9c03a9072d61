"""`torch-compile`: torch.compile (inductor) of the `torch` runner's module."""

from __future__ import annotations

import shutil
from typing import Any, ClassVar

from runtimes.engines.torch_eager import TorchRunner


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
