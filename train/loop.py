"""Training and evaluation: one code path for CPU, one GPU, and DistributedDataParallel.

`fit(config)` is the in-process entry point the CLI and the experiments call. It checks every
input first (`_settle`: sizes, data, batch, memory), then claims the run folder, builds or
restores the `TrainState`, trains epoch by epoch (`train.epoch`), and ends with the summary and
the export. The run folder's files are `train.rundir`'s; processes and devices are
`train.distributed`'s.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from resnet_common.errors import UserError
from resnet_common.limits import SizeLimits
from train import checkpoint as ckpt
from train import metrics, sizes
from train.config import CONFIG, TrainConfig
from train.data import DataBundle, TensorSet, iterate_batches, load_data
from train.distributed import Dist, init_distributed, pick_device, sync_buffers
from train.epoch import Normalise, epoch_line, evaluate, train_one_epoch
from train.recipe import Recipe, scaled_to_epochs
from train.rundir import (
    DATA_INFO,
    RUN_FILES,
    SUMMARY,
    check_export_target,
    claim_run_dir,
    save_epoch,
    start_run_files,
    weights_metadata,
    write_data_info,
    write_summary,
)
from train.state import RunSetup, TrainState


def limit_hint(key: str) -> str:
    return f"--size-limit {key}=N"


@dataclass
class FitResult:
    run_dir: Path
    records: list[dict[str, Any]] = field(default_factory=list)
    best_val_error: float | None = None
    test_error: float | None = None
    verification: dict[str, Any] | None = None
    # epochs this call trained; 0 on a `--resume` of a run that had already reached its end
    trained_epochs: int = 0


def fit(config: TrainConfig, *, resume: bool = False) -> FitResult:
    """Train (or continue) one run; returns the run folder and its per-epoch records.

    Everything is validated (sizes, data, batch) before the run folder is claimed, so a start
    that fails on bad input creates nothing."""
    kind = "cuda" if config.device in ("auto", "cuda") and torch.cuda.is_available() else "cpu"
    dd = init_distributed(kind)
    try:
        run = _settle(config, dd, pick_device(config.device, dd.local_rank))
        with contextlib.ExitStack() as stack:
            if dd.main:
                stack.enter_context(claim_run_dir(run.out, config, resume))
            dd.barrier()
            state = _start(run, resume=resume)
            norm = Normalise(run.data, run.device, channels_last=run.cuda)
            trained = _train(run, state, norm)
            result = _finish(run, state, norm, trained)
            dd.barrier()
            return result
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


def _settle(config: TrainConfig, dd: Dist, device: torch.device) -> RunSetup:
    """Every input checked (sizes, export target, data, batch, processes, memory) and the
    schedule scaled to the data: the run's fixed facts."""
    size = check_sizes(config)
    if dd.main:
        check_export_target(config.export, Path(config.out))
    data = _load_data(config)
    local_batch, iters, recipe, epochs = _batching(config, dd, len(data.train))
    if dd.world > 1 and config.sync_bn and device.type != "cuda":
        raise UserError("--sync-bn needs GPUs: torch's SyncBatchNorm has no CPU kernel")
    free = torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else None
    limits = SizeLimits().raised(config.size_limits)
    sizes.check_training_memory(size, local_batch, limits, hint=limit_hint, available=free)
    return RunSetup(config, dd, device, data, recipe, local_batch, iters, epochs)


def _load_data(config: TrainConfig) -> DataBundle:
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
    return data


def _batching(config: TrainConfig, dd: Dist, images: int) -> tuple[int, int, Recipe, int]:
    """(images per process and step, steps per epoch, the recipe scaled to its epochs, the
    epochs) for `images` training images split over the processes."""
    batch = config.recipe.batch_size
    if batch % dd.world:
        raise UserError(f"batch {batch} does not split over {dd.world} processes")
    local_batch = batch // dd.world
    per_rank = math.ceil(images / dd.world)
    if per_rank < local_batch:
        raise UserError(f"batch {batch} is larger than the {images} training images")
    iters = per_rank // local_batch
    recipe = config.recipe
    if recipe.epochs is not None:
        recipe = scaled_to_epochs(recipe, epochs=recipe.epochs, iters_per_epoch=iters)
    epochs = recipe.epochs or math.ceil(recipe.max_iters / iters)  # type: ignore[operator]
    if config.bn_replicas > 1 and (dd.world > 1 or batch % config.bn_replicas):
        raise UserError("--bn-replicas emulates DDP in one process and must divide the batch")
    return local_batch, iters, recipe, epochs


def _start(run: RunSetup, *, resume: bool) -> TrainState:
    """The state to train from: fresh, or the checkpoint's when the folder has one; rank 0
    (re)writes config.json and keeps the metrics of the epochs the checkpoint holds."""
    out, dd = run.out, run.dd
    restart = not (out / ckpt.LAST).is_file()
    if resume and restart and dd.main and run.config.progress:
        print(f"{out}: no checkpoint yet (killed in its first epoch): starting from epoch 0")
    state = TrainState.create(run)
    if not restart:
        state.restore(out / ckpt.LAST)
    if dd.main:
        start_run_files(out, run.config, restart=restart)
        if not restart:
            state.records = metrics.keep_before(out / metrics.METRICS, state.epoch)
        write_data_info(out, run.data)
    dd.barrier()
    return state


def _train(run: RunSetup, state: TrainState, norm: Normalise) -> int:
    """Epochs from the state's to the run's last (or until the schedule ends); returns how
    many were trained."""
    trained, warned = 0, False
    for epoch in range(state.epoch, run.epochs):
        if state.control.done():
            break
        state.epoch = epoch
        record = _one_epoch(run, state, norm)
        improved = state.add(record)
        trained += 1
        if run.dd.main and not warned and metrics.diverged(state.records):
            warned = True
            print(
                f"warning: epoch {epoch + 1}'s training loss {record['train_loss']:.3g} is "
                f"above the first epoch's {state.records[0]['train_loss']:.3g}: the run is "
                "diverging (try a lower --lr)",
                file=sys.stderr,
            )
        if run.dd.main:
            _end_of_epoch(state, record, run=run, improved=improved)
            if run.config.progress:
                print(epoch_line(record, run.epochs), flush=True)
        run.dd.barrier()
    return trained


def _one_epoch(run: RunSetup, state: TrainState, norm: Normalise) -> dict[str, Any]:
    """Train one epoch, then evaluate: the epoch's record."""
    tic = time.perf_counter()
    loss, error, seen = train_one_epoch(state, run, norm, state.epoch)
    seconds = time.perf_counter() - tic
    sync_buffers(state.network, run.dd)
    val_error, val_loss = _evaluate(run, state, norm, run.data.val)
    state.control.epoch_end(val_error)
    return {
        "epoch": state.epoch,
        "iteration": state.control.iteration,
        "train_loss": loss,
        "train_error": error,
        "val_loss": val_loss,
        "val_error": val_error,
        "lr": state.optimizer.param_groups[0]["lr"],
        "images_per_s": seen / seconds,
        "seconds": seconds,
    }


def _evaluate(run: RunSetup, state: TrainState, norm: Normalise, data: Any) -> tuple[float, float]:
    return evaluate(
        state.network, data, norm, dd=run.dd, batch=run.local_batch, workers=run.config.workers
    )


def _end_of_epoch(
    state: TrainState, record: dict[str, Any], *, run: RunSetup, improved: bool
) -> None:
    """Rank 0's files for the epoch just trained: metrics, weights, checkpoint, curve."""
    meta = weights_metadata(run.config, run.data)
    save_epoch(run.out, state, record, improved=improved, meta=meta)
    with contextlib.suppress(ImportError):  # matplotlib is optional for the loop itself
        metrics.plot(state.records, run.out / metrics.CURVE, title=run.config.spec.name)


def _finish(run: RunSetup, state: TrainState, norm: Normalise, trained: int) -> FitResult:
    """The test error, then rank 0's summary and export."""
    dd, data = run.dd, run.data
    records = state.records if dd.main else []
    result = FitResult(run.out, records, state.best, trained_epochs=trained)
    if data.test is not None and data.test is not data.val:
        result.test_error, _ = _evaluate(run, state, norm, data.test)
    if not dd.main:
        return result
    summary = {
        "epochs": len(state.records),
        "iterations": state.control.iteration,
        "best_val_error": state.best,
        "final_val_error": state.records[-1]["val_error"] if state.records else None,
        "test_error": result.test_error,
        "world_size": dd.world,
        "device": str(run.device),
    }
    # written before the export, so a failed export (or a kill during it) keeps the summary
    write_summary(run.out, summary)
    if run.config.export is not None:
        result.verification = _export(run, state, norm, run.config.export)
        summary["export"] = str(run.config.export)
        write_summary(run.out, summary)
    return result


def _export(run: RunSetup, state: TrainState, norm: Normalise, target: Path) -> dict[str, Any]:
    """The trained network as ONNX, verified against torch on the first validation images."""
    from train.export import export_onnx, normalisation_props

    config, data = run.config, run.data
    images, _ = next(
        iterate_batches(data.val, list(range(min(16, len(data.val)))), 16,
                        train=False, augment=False, seed=0, epoch=0)
    )  # fmt: skip
    provenance = {
        "graphgen.weights": f"resnet-train {run.out}",
        **normalisation_props(data.mean, data.std),
    }
    return export_onnx(
        state.model, target, images=norm(images.to(run.device)).float().cpu(),
        run_dir=run.out, fold=config.export_fold_bn, provenance=provenance,
    )  # fmt: skip


__all__ = [
    "CONFIG",
    "DATA_INFO",
    "RUN_FILES",
    "SUMMARY",
    "FitResult",
    "TensorSet",
    "TrainConfig",
    "check_sizes",
    "evaluate",
    "fit",
]
