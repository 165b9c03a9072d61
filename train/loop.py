"""Training and evaluation: one code path for CPU, one GPU, and DistributedDataParallel.

On CUDA the loop uses mixed precision and channels-last; on the CPU it runs the same steps in
fp32. Under torchrun every process trains its shard (DistributedSampler) with nccl on GPUs and
gloo on CPUs; rank 0 writes the run folder. `fit(config)` is the in-process entry point the CLI
and the experiments call.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from graphgen.spec import Spec, spec_from_mapping
from graphgen.torch_module import build_model
from resnet_common.cli import SEED_LIMIT
from resnet_common.errors import UserError
from resnet_common.fileio import atomic_write_text, check_replaceable, remove_debris
from resnet_common.limits import SizeLimits
from resnet_common.locks import folder_lock
from train import checkpoint as ckpt
from train import metrics, sizes
from train.data import DataBundle, TensorSet, iterate_batches, load_data
from train.export import VERIFICATION
from train.recipe import LrController, Recipe, scaled_to_epochs

CONFIG = "config.json"
DATA_INFO = "data.json"
SUMMARY = "summary.json"
# Every file a run writes: a restart clears them, and their temporary names are debris.
RUN_FILES = (
    CONFIG, DATA_INFO, SUMMARY, VERIFICATION, metrics.METRICS, metrics.CURVE,
    ckpt.LAST, ckpt.LAST_WEIGHTS, ckpt.BEST_WEIGHTS,
)  # fmt: skip
# Settings that do not change what a run computes: a restart may differ in them.
NOT_THE_RUN = ("out", "progress", "workers", "device", "export", "export_fold_bn")


def limit_hint(key: str) -> str:
    return f"--size-limit {key}=N"


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

    `--resume` follows only the relative form (see `train.cli.resume_config`), so a moved or
    crafted run folder never writes outside itself unless the user names the file again.
    """
    if export is None:
        return None
    target, folder = Path(export).resolve(), out.resolve()
    if target.is_relative_to(folder):
        return str(target.relative_to(folder))
    return str(target)


@dataclass
class FitResult:
    run_dir: Path
    records: list[dict[str, Any]] = field(default_factory=list)
    best_val_error: float | None = None
    test_error: float | None = None
    verification: dict[str, Any] | None = None
    # epochs this call trained; 0 on a `--resume` of a run that had already reached its end
    trained_epochs: int = 0


@dataclass
class _Dist:
    world: int = 1
    rank: int = 0
    local_rank: int = 0
    owned: bool = False

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


def _init_distributed(device_kind: str) -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    owned = not dist.is_initialized()
    if owned:
        dist.init_process_group("nccl" if device_kind == "cuda" else "gloo")
    return _Dist(world, dist.get_rank(), int(os.environ.get("LOCAL_RANK", "0")), owned)


def _device(choice: str, local_rank: int) -> torch.device:
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda":
        if not torch.cuda.is_available():
            raise UserError("--device cuda: no CUDA device is visible")
        return torch.device("cuda", local_rank)
    if choice != "cpu":
        raise UserError(f"unknown --device {choice!r}; choose auto, cpu or cuda")
    return torch.device("cpu")


def fit(config: TrainConfig, *, resume: bool = False) -> FitResult:
    """Train (or continue) one run; returns the run folder and its per-epoch records."""
    kind = "cuda" if config.device in ("auto", "cuda") and torch.cuda.is_available() else "cpu"
    dd = _init_distributed(kind)
    try:
        with contextlib.ExitStack() as stack:
            return _fit(config, dd, _device(config.device, dd.local_rank), resume, stack)
    finally:
        if dd.owned:
            dist.destroy_process_group()


def check_sizes(config: TrainConfig) -> sizes.NetworkSize:
    """The network and the synthetic set against the size limits, before anything is made."""
    limits = SizeLimits().raised(config.size_limits)
    size = sizes.network_size(config.spec, limits, hint=limit_hint)
    if config.dataset == "synthetic":
        sizes.check_synthetic_memory(
            config.synthetic_train + config.synthetic_val,
            config.spec.image_size,
            limits,
            hint=limit_hint,
        )
    return size


def _fit(
    config: TrainConfig,
    dd: _Dist,
    device: torch.device,
    resume: bool,
    stack: contextlib.ExitStack,
) -> FitResult:
    """Validate everything (sizes, data, batch), then claim the run folder, then train: a start
    that fails on bad input creates nothing."""
    out = Path(config.out)
    cuda = device.type == "cuda"
    size = check_sizes(config)
    if dd.main:
        _check_export_target(config.export, out)
    data = load_data(
        config.dataset,
        config.data,
        image_size=config.spec.image_size,
        classes=config.spec.classes,
        val_split=config.recipe.val_split,
        seed=config.seed,
        synthetic_train=config.synthetic_train,
        synthetic_val=config.synthetic_val,
    )
    if data.classes != config.spec.classes:
        raise UserError(
            f"the data has {data.classes} classes but the network has {config.spec.classes}; "
            f"pass --classes {data.classes}"
        )
    batch = config.recipe.batch_size
    if batch % dd.world:
        raise UserError(f"batch {batch} does not split over {dd.world} processes")
    local_batch = batch // dd.world
    per_rank = math.ceil(len(data.train) / dd.world)
    if per_rank < local_batch:
        raise UserError(f"batch {batch} is larger than the {len(data.train)} training images")
    iters = per_rank // local_batch
    recipe = config.recipe
    if recipe.epochs is not None:
        recipe = scaled_to_epochs(recipe, epochs=recipe.epochs, iters_per_epoch=iters)
    epochs = recipe.epochs or math.ceil(recipe.max_iters / iters)  # type: ignore[operator]
    if config.bn_replicas > 1 and (dd.world > 1 or batch % config.bn_replicas):
        raise UserError("--bn-replicas emulates DDP in one process and must divide the batch")
    if dd.world > 1 and config.sync_bn and not cuda:
        raise UserError("--sync-bn needs GPUs: torch's SyncBatchNorm has no CPU kernel")
    free = torch.cuda.mem_get_info(device)[0] if cuda else None
    limits = SizeLimits().raised(config.size_limits)
    sizes.check_training_memory(size, local_batch, limits, hint=limit_hint, available=free)
    if dd.main:
        stack.enter_context(_claim_run_dir(out, config, resume))
    dd.barrier()
    restart = not (out / ckpt.LAST).is_file()
    if resume and restart and dd.main and config.progress:
        print(f"{out}: no checkpoint yet (killed in its first epoch): starting from epoch 0")

    torch.manual_seed(config.seed)
    model: nn.Module = build_model(config.spec).to(device)
    if cuda:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    if dd.world > 1:
        if config.sync_bn:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if cuda else None
        )
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=recipe.lr,
        momentum=recipe.momentum,
        weight_decay=recipe.weight_decay,
    )
    scaler = torch.amp.GradScaler("cuda", enabled=cuda)
    control = LrController(recipe)
    start_epoch, best = 0, None
    records: list[dict[str, Any]] = []
    if not restart:
        state = ckpt.load_checkpoint(out / ckpt.LAST)
        start_epoch, best = ckpt.restore(
            out / ckpt.LAST, state, ckpt.unwrap(model), optimizer, scaler, control
        )
    if dd.main:
        _start_run_files(out, config, restart=restart)
        if not restart:
            records = metrics.keep_before(out / metrics.METRICS, start_epoch)
    dd.barrier()

    # DDP broadcasts rank 0's buffers at each forward, then every rank updates its BN statistics
    # with its own batch: before evaluating, all ranks take rank 0's (the ones that are saved).
    def sync_buffers() -> None:
        if dd.world > 1:
            for buffer in ckpt.unwrap(model).buffers():
                dist.broadcast(buffer, 0)

    norm = _Normalise(data, device, channels_last=cuda)
    meta = _weights_metadata(config, data, write=dd.main)
    trained, warned = 0, False
    for epoch in range(start_epoch, epochs):
        if control.done():
            break
        tic = time.perf_counter()
        indices = _shard(len(data.train), dd, seed=config.seed, epoch=epoch)
        loss, error, seen = _train_epoch(
            model, optimizer, scaler, control, data, indices, norm,
            config=config, dd=dd, device=device, epoch=epoch, local_batch=local_batch,
            iters=iters, epochs=epochs,
        )  # fmt: skip
        seconds = time.perf_counter() - tic
        sync_buffers()
        val_error, val_loss = evaluate(
            ckpt.unwrap(model), data.val, norm, dd=dd, device=device, batch=local_batch,
            workers=config.workers,
        )  # fmt: skip
        control.epoch_end(val_error)
        record = {
            "epoch": epoch,
            "iteration": control.iteration,
            "train_loss": loss,
            "train_error": error,
            "val_loss": val_loss,
            "val_error": val_error,
            "lr": optimizer.param_groups[0]["lr"],
            "images_per_s": seen / seconds,
            "seconds": seconds,
        }
        improved = best is None or val_error < best
        best = val_error if improved else best
        records.append(record)
        trained += 1
        if dd.main and not warned and metrics.diverged(records):
            warned = True
            print(
                f"warning: epoch {epoch + 1}'s training loss {loss:.3g} is above the first "
                f"epoch's {records[0]['train_loss']:.3g}: the run is diverging (try a lower --lr)",
                file=sys.stderr,
            )
        if dd.main:
            _end_of_epoch(out, model, optimizer, scaler, control, epoch, best, record, records,  # type: ignore[arg-type]
                          improved, meta, config)  # fmt: skip
            if config.progress:
                print(_epoch_line(record, epochs), flush=True)
        dd.barrier()

    result = FitResult(out, records if dd.main else [], best, trained_epochs=trained)
    if data.test is not None and data.test is not data.val:
        result.test_error, _ = evaluate(
            ckpt.unwrap(model), data.test, norm, dd=dd, device=device, batch=local_batch,
            workers=config.workers,
        )  # fmt: skip
    if dd.main:
        summary = {
            "epochs": len(records),
            "iterations": control.iteration,
            "best_val_error": best,
            "final_val_error": records[-1]["val_error"] if records else None,
            "test_error": result.test_error,
            "world_size": dd.world,
            "device": str(device),
        }
        # written before the export, so a failed export (or a kill during it) keeps the summary
        atomic_write_text(out / SUMMARY, json.dumps(summary, indent=2) + "\n")
        if config.export is not None:
            from train.export import export_onnx, normalisation_props

            images, _ = next(
                iterate_batches(data.val, list(range(min(16, len(data.val)))), 16,
                                train=False, augment=False, seed=0, epoch=0)
            )  # fmt: skip
            provenance = {
                "graphgen.weights": f"resnet-train {out}",
                **normalisation_props(data.mean, data.std),
            }
            result.verification = export_onnx(
                model, config.export, images=norm(images.to(device)).float().cpu(), run_dir=out,
                fold=config.export_fold_bn, provenance=provenance,
            )  # fmt: skip
            summary["export"] = str(config.export)
            atomic_write_text(out / SUMMARY, json.dumps(summary, indent=2) + "\n")
    dd.barrier()
    return result


def _check_export_target(export: Path | None, out: Path) -> None:
    """`--export FILE` must be writable before hours of training, not after."""
    if export is None:
        return
    export = Path(export)
    folder = export.parent
    if export.is_dir():
        raise UserError(f"--export {export} is a folder; give a file name such as model.onnx")
    if folder.resolve() == out.resolve() and not folder.exists():
        return  # the run folder itself, made once everything is checked
    if not folder.is_dir():
        raise UserError(f"--export {export}: no folder {folder} to write it in")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(f"--export {export}: folder {folder} is not writable")
    check_replaceable(export)


def _same_run(saved: Any, config: TrainConfig) -> bool:
    mine = json.loads(json.dumps(config.to_dict()))
    if not isinstance(saved, dict):
        return False
    return {k: v for k, v in saved.items() if k not in NOT_THE_RUN} == {
        k: v for k, v in mine.items() if k not in NOT_THE_RUN
    }


@contextlib.contextmanager
def _claim_run_dir(out: Path, config: TrainConfig, resume: bool) -> Iterator[None]:
    """One writer per run folder: lock it for the whole run, clear dead writers' temporary
    files, and refuse a start that would mix with the run already there.

    A folder with a checkpoint is resumed (`--resume`) or refused. A folder with a config but
    no checkpoint holds a run killed in its first epoch: the same settings start it over (its
    metrics are cleared, so no epoch is ever recorded twice), other settings are refused.
    """
    if resume and not (out / CONFIG).is_file():
        raise UserError(f"--resume {out}: no {CONFIG} there, so it is not a run folder")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create run folder {out}: {err.strerror or err}") from None
    with folder_lock(out, what=f"run folder {out}"):
        remove_debris(out, owned=True, legacy_bases=RUN_FILES)
        if not resume and (out / ckpt.LAST).exists():
            raise UserError(
                f"{out} already holds a run: continue it with --resume {out}, or pick --out"
            )
        if not resume and (out / CONFIG).exists():
            try:
                saved = json.loads((out / CONFIG).read_text())
            except (OSError, ValueError):
                saved = None
            if not _same_run(saved, config):
                raise UserError(
                    f"{out} holds an unfinished run with other settings (no checkpoint yet): "
                    f"continue it with --resume {out}, or pick another --out"
                )
        yield


def _start_run_files(out: Path, config: TrainConfig, *, restart: bool) -> None:
    """config.json, and on a (re)start from epoch 0 nothing left of an earlier attempt."""
    if restart:
        for name in RUN_FILES:
            if name != CONFIG:
                (out / name).unlink(missing_ok=True)
        atomic_write_text(out / metrics.METRICS, "")
    atomic_write_text(out / CONFIG, json.dumps(config.to_dict(), indent=2) + "\n")


def _shard(n: int, dd: _Dist, *, seed: int, epoch: int) -> list[int]:
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


class _Normalise:
    """Per-channel mean/std from the training split (stored with the run), on the device."""

    def __init__(self, data: DataBundle, device: torch.device, *, channels_last: bool) -> None:
        self.mean = torch.tensor(data.mean, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(data.std, device=device).view(1, 3, 1, 1)
        self.channels_last = channels_last

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


def _autocast(device: torch.device) -> contextlib.AbstractContextManager:
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def _train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    control: LrController,
    data: DataBundle,
    indices: list[int],
    norm: _Normalise,
    *,
    config: TrainConfig,
    dd: _Dist,
    device: torch.device,
    epoch: int,
    local_batch: int,
    iters: int,
    epochs: int,
) -> tuple[float, float, int]:
    model.train()
    totals = torch.zeros(3, dtype=torch.float64, device=device)  # loss sum, wrong, images
    batches = iterate_batches(
        data.train, indices, local_batch, train=True, augment=config.augment,
        seed=config.seed, rank=dd.rank, epoch=epoch, workers=config.workers,
    )  # fmt: skip
    with _progress(dd.main and config.progress, f"epoch {epoch + 1}/{epochs}", iters) as advance:
        for x, y in batches:
            x, y = norm(x.to(device, non_blocking=True)), y.to(device, non_blocking=True)
            for group in optimizer.param_groups:
                group["lr"] = control.lr()
            optimizer.zero_grad(set_to_none=True)
            loss_sum, wrong = _step_forward_backward(
                model, x, y, scaler, device, config.bn_replicas
            )
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


def _step_forward_backward(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    scaler: torch.amp.GradScaler,
    device: torch.device,
    replicas: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss and gradients for one batch; with `replicas` > 1, BN sees interleaved sub-batches.

    That is what `replicas` DDP processes compute (per-process BN statistics, gradients averaged),
    with running statistics from the first sub-batch only, as DDP broadcasts rank 0's buffers.
    """
    loss_sum = torch.zeros((), device=device)
    wrong = torch.zeros((), device=device)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in bns]
    try:
        for c in range(replicas):
            xc, yc = (x[c::replicas], y[c::replicas]) if replicas > 1 else (x, y)
            if c == 1:
                for m in bns:
                    m.momentum = 0.0  # running stats unchanged: only "rank 0" updates them
            with _autocast(device):
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
    norm: _Normalise,
    *,
    dd: _Dist | None = None,
    device: torch.device,
    batch: int = 256,
    workers: int = 0,
) -> tuple[float, float]:
    """(error, loss) in eval mode; each process takes every world-th image, totals are summed."""
    dd = dd or _Dist()
    model.eval()
    indices = list(range(dd.rank, len(data), dd.world))
    totals = torch.zeros(3, dtype=torch.float64, device=device)
    for x, y in iterate_batches(
        data, indices, batch, train=False, augment=False, seed=0, epoch=0, workers=workers
    ):
        x, y = norm(x.to(device)), y.to(device)
        with _autocast(device):
            logits = model(x).float()
        loss = F.cross_entropy(logits, y, reduction="sum")
        totals += torch.stack(
            [loss, (logits.argmax(1) != y).sum(), torch.tensor(len(y), device=device)]
        ).double()
    loss_sum, wrong, n = dd.sum(totals.tolist(), device)
    return wrong / max(n, 1), loss_sum / max(n, 1)


def _end_of_epoch(
    out: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    control: LrController,
    epoch: int,
    best: float,
    record: dict[str, Any],
    records: list[dict[str, Any]],
    improved: bool,
    meta: dict[str, str],
    config: TrainConfig,
) -> None:
    """Metrics line, weights, checkpoint (the checkpoint last: it is what resume trusts)."""
    metrics.append(out / metrics.METRICS, record)
    ckpt.save_weights(out / ckpt.LAST_WEIGHTS, model, {**meta, "epoch": str(epoch)})
    if improved:
        ckpt.save_weights(out / ckpt.BEST_WEIGHTS, model, {**meta, "epoch": str(epoch)})
    ckpt.save_checkpoint(
        out / ckpt.LAST,
        {
            "model": ckpt.unwrap(model).state_dict(),
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict(),
            "schedule": control.state_dict(),
            "rng": ckpt.rng_state(),
            "epoch": epoch,
            "best_val_error": best,
        },
    )
    with contextlib.suppress(ImportError):  # matplotlib is optional for the loop itself
        metrics.plot(records, out / metrics.CURVE, title=config.spec.name)


def _weights_metadata(config: TrainConfig, data: DataBundle, *, write: bool) -> dict[str, str]:
    """Normalisation and data facts: data.json in the run folder, and safetensors metadata."""
    info = {
        "dataset": data.name,
        "classes": data.classes,
        "class_names": data.class_names,
        "image_size": data.image_size,
        "mean": list(data.mean),
        "std": list(data.std),
        "train_images": len(data.train),
        "val_images": len(data.val),
    }
    if write:
        with contextlib.suppress(OSError):
            atomic_write_text(Path(config.out) / DATA_INFO, json.dumps(info, indent=2) + "\n")
    return {
        "graphgen.spec": config.spec.to_json(),
        "normalisation": json.dumps({"mean": list(data.mean), "std": list(data.std)}),
        "dataset": data.name,
    }


def _epoch_line(r: dict[str, Any], epochs: int) -> str:
    return (
        f"epoch {r['epoch'] + 1}/{epochs}  loss {r['train_loss']:.3f}  "
        f"train err {100 * r['train_error']:.2f}%  val err {100 * r['val_error']:.2f}%  "
        f"lr {r['lr']:.4g}  {r['images_per_s']:.0f} img/s"
    )


@contextlib.contextmanager
def _progress(enabled: bool, description: str, total: int) -> Iterator:
    if not (enabled and sys.stderr.isatty()):
        yield lambda: None
        return
    from rich.progress import Progress

    with Progress(transient=True) as progress:
        task = progress.add_task(description, total=total)
        yield lambda: progress.advance(task)


__all__ = ["FitResult", "TensorSet", "TrainConfig", "evaluate", "fit"]
