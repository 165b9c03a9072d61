"""One process or many: the process group under torchrun, the device, and each process's share
of an epoch. Under torchrun every process trains its shard (DistributedSampler) with nccl on
GPUs and gloo on CPUs; rank 0 writes the run folder."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from resnet_common.errors import UserError


@dataclass
class Dist:
    world: int = 1
    rank: int = 0
    local_rank: int = 0
    owned: bool = False  # this process made the process group, so it destroys it

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def sum(self, values: list[float], device: torch.device) -> list[float]:
        t = torch.tensor(values, dtype=torch.float64, device=device)
        if self.world > 1:
            dist.all_reduce(t)
        return t.tolist()


def init_distributed(device_kind: str) -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    owned = not dist.is_initialized()
    if owned:
        dist.init_process_group("nccl" if device_kind == "cuda" else "gloo")
    return Dist(world, dist.get_rank(), int(os.environ.get("LOCAL_RANK", "0")), owned)


def pick_device(choice: str, local_rank: int) -> torch.device:
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda":
        if not torch.cuda.is_available():
            raise UserError("--device cuda: no CUDA device is visible")
        return torch.device("cuda", local_rank)
    if choice != "cpu":
        raise UserError(f"unknown --device {choice!r}; choose auto, cpu or cuda")
    return torch.device("cpu")


def shard(n: int, dd: Dist, *, seed: int, epoch: int) -> list[int]:
    """This process's share of one epoch: torch's DistributedSampler, one process or many."""
    sampler = torch.utils.data.DistributedSampler(  # type: ignore[var-annotated]
        range(n),  # type: ignore[arg-type]
        num_replicas=dd.world,
        rank=dd.rank,
        shuffle=True,
        seed=seed,
    )
    sampler.set_epoch(epoch)
    return list(sampler)


def sync_buffers(model: torch.nn.Module, dd: Dist) -> None:
    """DDP broadcasts rank 0's buffers at each forward, then every rank updates its BN
    statistics with its own batch: before evaluating, all ranks take rank 0's (the ones that
    are saved)."""
    if dd.world > 1:
        for buffer in model.buffers():
            dist.broadcast(buffer, 0)
