"""One epoch of training and one pass of evaluation, on one process or many.

On CUDA the steps run in mixed precision and channels-last; on the CPU the same steps run in
fp32. Totals (loss, errors, images) are summed over processes.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from train.data import DataBundle, iterate_batches
from train.distributed import Dist, shard
from train.state import RunSetup, TrainState


class Normalise:
    """Per-channel mean/std from the training split (stored with the run), on the device."""

    def __init__(self, data: DataBundle, device: torch.device, *, channels_last: bool) -> None:
        self.device = device
        self.mean = torch.tensor(data.mean, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(data.std, device=device).view(1, 3, 1, 1)
        self.channels_last = channels_last

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def train_one_epoch(
    state: TrainState, run: RunSetup, norm: Normalise, epoch: int
) -> tuple[float, float, int]:
    """(mean loss, error, images seen) of one epoch over this process's shard, summed over
    processes; the schedule steps every iteration and may end the epoch early."""
    config, dd, device = run.config, run.dd, run.device
    model, optimizer, scaler, control = state.model, state.optimizer, state.scaler, state.control
    model.train()
    totals = torch.zeros(3, dtype=torch.float64, device=device)  # loss sum, wrong, images
    indices = shard(len(run.data.train), dd, seed=config.seed, epoch=epoch)
    batches = iterate_batches(
        run.data.train, indices, run.local_batch, train=True, augment=config.augment,
        seed=config.seed, rank=dd.rank, epoch=epoch, workers=config.workers,
    )  # fmt: skip
    title = f"epoch {epoch + 1}/{run.epochs}"
    with progress(dd.main and config.progress, title, run.iters) as advance:
        for x, y in batches:
            x, y = norm(x.to(device, non_blocking=True)), y.to(device, non_blocking=True)
            for group in optimizer.param_groups:
                group["lr"] = control.lr()
            optimizer.zero_grad(set_to_none=True)
            loss_sum, wrong = forward_backward(state, x, y, config.bn_replicas)
            scaler.step(optimizer)
            scaler.update()
            totals += torch.stack([loss_sum, wrong, torch.tensor(len(y), device=device)]).double()
            batch_error = 0.0
            if control.warming_up:
                w, n = dd.sum([float(wrong), float(len(y))], device)
                batch_error = w / n
            control.step(batch_error)
            advance()
            if control.done():
                break
    loss_sum, wrong, seen = dd.sum(totals.tolist(), device)  # type: ignore[assignment]
    return loss_sum / max(seen, 1), wrong / max(seen, 1), int(seen)  # type: ignore[return-value]


def forward_backward(
    state: TrainState, x: torch.Tensor, y: torch.Tensor, replicas: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss and gradients for one batch; with `replicas` > 1, BN sees interleaved sub-batches.

    That is what `replicas` DDP processes compute (per-process BN statistics, gradients averaged),
    with running statistics from the first sub-batch only, as DDP broadcasts rank 0's buffers.
    """
    model, scaler = state.model, state.scaler
    loss_sum = torch.zeros((), device=x.device)
    wrong = torch.zeros((), device=x.device)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in bns]
    try:
        for c in range(replicas):
            xc, yc = (x[c::replicas], y[c::replicas]) if replicas > 1 else (x, y)
            if c == 1:
                for m in bns:
                    m.momentum = 0.0  # running stats unchanged: only "rank 0" updates them
            with autocast(x.device):
                logits = model(xc)
                loss = F.cross_entropy(logits, yc)
            scaler.scale(loss / replicas).backward()
            loss_sum = loss_sum + loss.detach().float() * len(yc)
            wrong = wrong + (logits.detach().argmax(1) != yc).sum()
    finally:
        for m, momentum in zip(bns, momenta, strict=True):
            m.momentum = momentum
    return loss_sum, wrong


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: Any,
    norm: Normalise,
    *,
    dd: Dist | None = None,
    batch: int = 256,
    workers: int = 0,
) -> tuple[float, float]:
    """(error, loss) in eval mode, on `norm`'s device; each process takes every world-th
    image, totals are summed."""
    dd = dd or Dist()
    device = norm.device
    model.eval()
    indices = list(range(dd.rank, len(data), dd.world))
    totals = torch.zeros(3, dtype=torch.float64, device=device)
    for x, y in iterate_batches(
        data, indices, batch, train=False, augment=False, seed=0, epoch=0, workers=workers
    ):
        x, y = norm(x.to(device)), y.to(device)
        with autocast(device):
            logits = model(x).float()
        loss = F.cross_entropy(logits, y, reduction="sum")
        totals += torch.stack(
            [loss, (logits.argmax(1) != y).sum(), torch.tensor(len(y), device=device)]
        ).double()
    loss_sum, wrong, n = dd.sum(totals.tolist(), device)
    return wrong / max(n, 1), loss_sum / max(n, 1)


def epoch_line(r: dict[str, Any], epochs: int) -> str:
    return (
        f"epoch {r['epoch'] + 1}/{epochs}  loss {r['train_loss']:.3f}  "
        f"train err {100 * r['train_error']:.2f}%  val err {100 * r['val_error']:.2f}%  "
        f"lr {r['lr']:.4g}  {r['images_per_s']:.0f} img/s"
    )


@contextlib.contextmanager
def progress(enabled: bool, description: str, total: int) -> Iterator:
    if not (enabled and sys.stderr.isatty()):
        yield lambda: None
        return
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda: bar.advance(task)
