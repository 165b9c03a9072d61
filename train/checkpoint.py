"""Atomic checkpoints and weight files.

Everything is written to a temporary file in the target folder, flushed to disk, then renamed:
a run killed with SIGKILL leaves the previous checkpoint intact. Checkpoints are read back with
`torch.load(weights_only=True)` only, so they hold tensors and plain containers, nothing else.
"""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from resnet_common.errors import UserError
from resnet_common.fileio import atomic_write_bytes

LAST = "last.pt"
BEST_WEIGHTS = "best.safetensors"
LAST_WEIGHTS = "last.safetensors"


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: Path) -> dict[str, Any]:
    if not Path(path).is_file():
        raise UserError(
            f"no checkpoint at {path}: nothing to resume (the run never finished an epoch)"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise UserError(f"{path} is not a readable checkpoint ({type(err).__name__})") from None


def restore(
    path: Path,
    state: dict[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    control: Any,
) -> tuple[int, float | None]:
    """Load a checkpoint's state into a fresh model, optimizer, scaler and lr controller.

    Returns (first epoch to train, best val error). A checkpoint of another network (wrong or
    missing keys, other shapes) or of another format is a one-line `UserError`, never a trace.
    """
    bad = f"{path} does not belong to this run's network"
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
        raise UserError(f"{path} is not a resnet-train checkpoint (no model state)")
    expected = model.state_dict()
    given = state["model"]
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (first {missing[0]!r})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (first {unexpected[0]!r})")
        raise UserError(f"{bad}: {', '.join(parts)}")
    for key, value in given.items():
        want = expected[key]
        if not isinstance(value, torch.Tensor) or value.shape != want.shape:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise UserError(f"{bad}: {key} is {shape}, the network has {tuple(want.shape)}")
    try:
        model.load_state_dict(given)
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        control.load_state_dict(state["schedule"])
        set_rng_state(state["rng"])
        epoch, best = int(state["epoch"]), state["best_val_error"]
    except (KeyError, ValueError, TypeError, RuntimeError, IndexError) as err:
        what = f"missing {err}" if isinstance(err, KeyError) else type(err).__name__
        raise UserError(f"{path} is not a readable resnet-train checkpoint ({what})") from None
    if epoch < 0 or not (best is None or isinstance(best, float | int)):
        raise UserError(f"{path} is not a readable resnet-train checkpoint (bad epoch or best)")
    return epoch + 1, best


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model  # type: ignore[return-value]


def model_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state_dict as the graph's initializers: no `num_batches_tracked`, fp32, contiguous."""
    return {
        k: v.detach().to("cpu", torch.float32).contiguous()
        for k, v in unwrap(model).state_dict().items()
        if not k.endswith("num_batches_tracked")
    }


def save_weights(path: Path, model: nn.Module, metadata: dict[str, str]) -> None:
    """safetensors, name -> tensor, names equal to the graph's initializer names."""
    from safetensors.torch import save

    atomic_write_bytes(path, save(model_weights(model), metadata=metadata))


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch RNG states in weights_only-loadable form."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),  # type: ignore[attr-defined]
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
