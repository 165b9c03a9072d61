"""A training run's settings, saved as config.json so `--resume DIR` needs nothing else."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from graphgen.spec import Spec, spec_from_mapping
from resnet_common.cli import SEED_LIMIT
from resnet_common.documents import check_bounded
from resnet_common.limits import SizeLimits
from train.recipe import Recipe

CONFIG = "config.json"
# What `dataset` names (resnet-train --dataset): the training data, not the spec family.
DATASETS = ("synthetic", "cifar10", "imagefolder")


@dataclass
class TrainConfig:
    """Everything a run needs; saved as config.json so `--resume DIR` needs nothing else."""

    spec: Spec
    dataset: str
    out: Path
    recipe: Recipe
    data: str | None = None
    seed: int = 0
    workers: int = 2
    device: str = "auto"
    augment: bool = True
    sync_bn: bool = False
    bn_replicas: int = 1
    synthetic_train: int = 2000
    synthetic_val: int = 500
    export: Path | None = None
    export_fold_bn: bool = False
    progress: bool = True
    size_limits: dict[str, int] = field(default_factory=dict)  # raised with --size-limit

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d.update(
            spec=self.spec.to_dict(),
            recipe=self.recipe.to_dict(),
            out=str(self.out),
            export=_export_entry(self.export, Path(self.out)),
            size_limits=dict(self.size_limits),
        )
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        check_bounded(d, source=CONFIG)  # nesting, 4000-digit integers: refused, not run
        d = dict(d)
        d["spec"] = spec_from_mapping(d["spec"], source=CONFIG)
        d["recipe"] = Recipe.from_dict(d["recipe"])
        d["out"] = Path(d["out"])
        d["export"] = Path(d["export"]) if d.get("export") else None
        seed = d.get("seed", 0)
        if not isinstance(seed, int) or not 0 <= seed < SEED_LIMIT:
            raise ValueError(f"seed {seed!r} is not in 0 .. 2**63-1")
        SizeLimits().raised(d.get("size_limits") or {})
        return cls(**d)


def _export_entry(export: Path | None, out: Path) -> str | None:
    """config.json's export: relative to the run folder when inside it, else absolute.

    `--resume` follows only the relative form (see `train.cli.fit.resume_config`), so a moved or
    crafted run folder never writes outside itself unless the user names the file again.
    """
    if export is None:
        return None
    target, folder = Path(export).resolve(), out.resolve()
    if target.is_relative_to(folder):
        return str(target.relative_to(folder))
    return str(target)
