"""A run's two halves: what stays fixed once its inputs are checked (`RunSetup`), and what
training changes and a checkpoint saves, so that a resumed run goes on bit for bit
(`TrainState`, the objects torchvision's reference `train_one_epoch` takes)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from graphgen.torch_module import build_model
from train import checkpoint as ckpt
from train.config import TrainConfig
from train.data import DataBundle
from train.distributed import Dist
from train.recipe import LrController, Recipe


@dataclass(frozen=True)
class RunSetup:
    """One run's fixed facts, settled before its folder is claimed: its settings, processes,
    device and data, and the batch and schedule they give."""

    config: TrainConfig
    dd: Dist
    device: torch.device
    data: DataBundle
    recipe: Recipe  # the config's, scaled to `epochs` when it names epochs
    local_batch: int  # images per process and step
    iters: int  # steps per epoch (per process)
    epochs: int

    @property
    def out(self) -> Path:
        return Path(self.config.out)

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"


@dataclass
class TrainState:
    """What training changes: the model (DDP-wrapped when distributed), optimizer, AMP scaler
    and schedule, the epoch being trained, the best validation error and the epochs' records."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    control: LrController
    epoch: int = 0
    best: float | None = None
    records: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def create(cls, run: RunSetup) -> TrainState:
        """A fresh model from the spec (seeded), on the run's device, and its optimizer."""
        config, recipe = run.config, run.recipe
        torch.manual_seed(config.seed)
        model: nn.Module = build_model(config.spec).to(run.device)
        if run.cuda:
            model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        if run.dd.world > 1:
            if config.sync_bn:
                model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            model = nn.parallel.DistributedDataParallel(
                model, device_ids=[run.device.index] if run.cuda else None
            )
        optimizer = torch.optim.SGD(
            model.parameters(),
            lr=recipe.lr,
            momentum=recipe.momentum,
            weight_decay=recipe.weight_decay,
        )
        scaler = torch.amp.GradScaler("cuda", enabled=run.cuda)
        return cls(model, optimizer, scaler, LrController(recipe))

    @property
    def network(self) -> nn.Module:
        """The model itself, without its DDP wrapper: what is evaluated, saved and exported."""
        return ckpt.unwrap(self.model)

    def restore(self, path: Path) -> None:
        """Continue from a checkpoint: every state, the RNG, and the epoch after its own."""
        saved = ckpt.load_checkpoint(path)
        self.epoch, self.best = ckpt.restore(
            path, saved, self.network, self.optimizer, self.scaler, self.control
        )

    def add(self, record: dict[str, Any]) -> bool:
        """Keep an epoch's record; True when its validation error is the best so far."""
        improved = self.best is None or record["val_error"] < self.best
        self.best = record["val_error"] if improved else self.best
        self.records.append(record)
        return improved

    def checkpoint(self) -> dict[str, Any]:
        """What `restore` reads back (the RNG as it is now)."""
        return {
            "model": self.network.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "schedule": self.control.state_dict(),
            "rng": ckpt.rng_state(),
            "epoch": self.epoch,
            "best_val_error": self.best,
        }
