"""The paper's training recipes as data, and the learning-rate controller that follows them.

He et al. 2015, section 3.4 (ImageNet) and section 4.2 (CIFAR-10). Every field can be overridden
from the command line; the controller's state goes into checkpoints so `--resume` continues at the
same point of the schedule.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from resnet_common.errors import UserError

SCHEDULES = ("step", "plateau", "constant")

# Epochs on the built-in synthetic set when none are given (a demo, not the paper's 64k iterations).
SYNTHETIC_DEFAULT_EPOCHS = 10


@dataclass(frozen=True)
class Recipe:
    """Optimiser and schedule settings; milestones and `max_iters` count iterations."""

    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: str = "step"
    milestones: tuple[int, ...] = (32_000, 48_000)
    gamma: float = 0.1
    max_iters: int | None = 64_000
    epochs: int | None = None
    warmup_lr: float | None = None
    warmup_until_error: float = 0.8
    plateau_patience: int = 5
    plateau_threshold: float = 1e-3
    min_lr: float = 1e-5
    val_split: int = 5_000
    # With `epochs`, milestones move to the same fractions of the shorter run (the paper's shape);
    # False for milestones the user gave, which are iterations of this run as they stand.
    scale_milestones: bool = True

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise UserError(f"unknown schedule {self.schedule!r}; choose {', '.join(SCHEDULES)}")
        checks = (
            (self.batch_size >= 1, f"--batch-size must be at least 1, got {self.batch_size}"),
            (self.lr > 0, f"--lr must be positive, got {self.lr}"),
            (0 <= self.momentum < 1, f"--momentum must be in [0, 1), got {self.momentum}"),
            (self.weight_decay >= 0, f"--weight-decay must be >= 0, got {self.weight_decay}"),
            (0 < self.gamma <= 1, f"--gamma must be in (0, 1], got {self.gamma}"),
            (
                all(m > 0 for m in self.milestones)
                and list(self.milestones) == sorted(self.milestones),
                f"--milestones must be positive iterations in increasing order, "
                f"got {','.join(map(str, self.milestones))}",
            ),
            (self.epochs is None or self.epochs >= 1, f"--epochs must be >= 1, got {self.epochs}"),
            (
                self.max_iters is None or self.max_iters >= 1,
                f"--max-iters must be >= 1, got {self.max_iters}",
            ),
            (
                self.warmup_lr is None or self.warmup_lr > 0,
                f"--warmup-lr must be positive, got {self.warmup_lr}",
            ),
            (self.plateau_patience >= 1, "--plateau-patience must be at least 1"),
            (self.val_split >= 0, f"--val-split must be >= 0, got {self.val_split}"),
        )
        for ok, message in checks:
            if not ok:
                raise UserError(message)
        if self.max_iters is None and self.epochs is None:
            raise UserError("a recipe needs --epochs or --max-iters")

    def replace(self, **changes: Any) -> Recipe:
        changes = {k: v for k, v in changes.items() if v is not None}
        if "milestones" in changes:
            changes["milestones"] = tuple(changes["milestones"])
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recipe:
        return cls(**{**data, "milestones": tuple(data.get("milestones", ()))})


def cifar_recipe(depth: int) -> Recipe:
    """Section 4.2: batch 128, lr 0.1 /10 at 32k and 48k, stop at 64k, 45k/5k split.

    ResNet-110 (and deeper) starts at 0.01 until the training error is below 80% (Traps 0.1).
    """
    return Recipe(warmup_lr=0.01 if depth >= 110 else None)


def imagenet_recipe() -> Recipe:
    """Section 3.4: batch 256, lr 0.1 divided by 10 when the validation error plateaus."""
    return Recipe(
        batch_size=256,
        schedule="plateau",
        milestones=(),
        max_iters=600_000,
        val_split=0,
    )


def scaled_to_epochs(recipe: Recipe, *, epochs: int, iters_per_epoch: int) -> Recipe:
    """With `--epochs`, keep the paper's schedule shape: milestones at the same fractions of the run.

    64k iterations with drops at 32k and 48k become drops at 50% and 75% of the requested run.
    Milestones the user gave (`scale_milestones` False) are iterations and stay as they are.
    """
    total = epochs * iters_per_epoch
    if not recipe.scale_milestones or recipe.schedule != "step" or recipe.max_iters is None:
        return dataclasses.replace(recipe, epochs=epochs, max_iters=total)
    ratio = total / recipe.max_iters
    milestones = tuple(max(1, round(m * ratio)) for m in recipe.milestones)
    return dataclasses.replace(recipe, epochs=epochs, max_iters=total, milestones=milestones)


@dataclass
class LrController:
    """Where the run is in its schedule: iteration, warm-up and plateau state (checkpointed)."""

    recipe: Recipe
    iteration: int = 0
    warming_up: bool = False
    plateau_scale: float = 1.0
    plateau_best: float = float("inf")
    plateau_bad_epochs: int = 0
    recent_errors: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.iteration == 0 and self.recipe.warmup_lr is not None:
            self.warming_up = True

    def lr(self) -> float:
        r = self.recipe
        if self.warming_up:
            return float(r.warmup_lr)  # type: ignore[arg-type]
        if r.schedule == "step":
            drops = sum(1 for m in r.milestones if self.iteration >= m)
            return r.lr * r.gamma**drops
        if r.schedule == "plateau":
            return max(r.lr * self.plateau_scale, r.min_lr)
        return r.lr

    def step(self, batch_error: float) -> None:
        """After one iteration; warm-up ends once the recent training error is below the bar."""
        self.iteration += 1
        if self.warming_up:
            self.recent_errors = (self.recent_errors + [batch_error])[-20:]
            if len(self.recent_errors) >= 5:
                mean = sum(self.recent_errors) / len(self.recent_errors)
                if mean < self.recipe.warmup_until_error:
                    self.warming_up = False

    def epoch_end(self, val_error: float | None) -> None:
        """Plateau schedule: divide by 10 after `plateau_patience` epochs without improvement."""
        if self.recipe.schedule != "plateau" or val_error is None:
            return
        if val_error < self.plateau_best - self.recipe.plateau_threshold:
            self.plateau_best = val_error
            self.plateau_bad_epochs = 0
        else:
            self.plateau_bad_epochs += 1
            if self.plateau_bad_epochs >= self.recipe.plateau_patience:
                self.plateau_scale *= self.recipe.gamma
                self.plateau_bad_epochs = 0

    def done(self) -> bool:
        return self.recipe.max_iters is not None and self.iteration >= self.recipe.max_iters

    def state_dict(self) -> dict[str, Any]:
        return {
            "iteration": self.iteration,
            "warming_up": self.warming_up,
            "plateau_scale": self.plateau_scale,
            "plateau_best": self.plateau_best,
            "plateau_bad_epochs": self.plateau_bad_epochs,
            "recent_errors": list(self.recent_errors),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, value)
