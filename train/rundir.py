"""The run folder: one writer (a lock), a start that never mixes with another run, and the files
each epoch and the end of a run write (the checkpoint last: it is what resume trusts)."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from resnet_common.documents import read_document
from resnet_common.errors import UserError
from resnet_common.fileio import atomic_write_text, check_replaceable, remove_debris
from resnet_common.locks import LOCK_NAME, folder_lock
from train import checkpoint as ckpt
from train import metrics
from train.config import CONFIG, TrainConfig
from train.data import DataBundle
from train.export import VERIFICATION
from train.state import TrainState

DATA_INFO = "data.json"
SUMMARY = "summary.json"
# Every file a run writes: a restart clears them, and their temporary names are debris.
RUN_FILES = (
    CONFIG, DATA_INFO, SUMMARY, VERIFICATION, metrics.METRICS, metrics.CURVE,
    ckpt.LAST, ckpt.LAST_WEIGHTS, ckpt.BEST_WEIGHTS,
)  # fmt: skip
# Settings that do not change what a run computes: a restart may differ in them.
NOT_THE_RUN = ("out", "progress", "workers", "device", "export", "export_fold_bn")


def check_export_target(export: Path | None, out: Path) -> None:
    """`--export FILE` must be writable before hours of training, not after."""
    if export is None:
        return
    export = Path(export)
    folder = export.parent
    if export.is_dir():
        raise UserError(f"--export {export} is a folder; give a file name such as model.onnx")
    if export.name in (*RUN_FILES, LOCK_NAME) and folder.resolve() == out.resolve():
        raise UserError(
            f"--export {export} is the run's own {export.name}, which the run writes; give "
            "another name, such as model.onnx"
        )
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
def claim_run_dir(out: Path, config: TrainConfig, resume: bool) -> Iterator[None]:
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
                saved = read_document(out / CONFIG, what="run config")
            except UserError:  # unreadable, huge, a pipe: not this run's
                saved = None
            if not _same_run(saved, config):
                raise UserError(
                    f"{out} holds an unfinished run with other settings (no checkpoint yet): "
                    f"continue it with --resume {out}, or pick another --out"
                )
        yield


def start_run_files(out: Path, config: TrainConfig, *, restart: bool) -> None:
    """config.json, and on a (re)start from epoch 0 nothing left of an earlier attempt."""
    if restart:
        for name in RUN_FILES:
            if name != CONFIG:
                (out / name).unlink(missing_ok=True)
        atomic_write_text(out / metrics.METRICS, "")
    atomic_write_text(out / CONFIG, json.dumps(config.to_dict(), indent=2) + "\n")


def write_data_info(out: Path, data: DataBundle) -> None:
    """data.json: the data's facts and normalisation (best effort: a run does not need it)."""
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
    with contextlib.suppress(OSError):
        atomic_write_text(out / DATA_INFO, json.dumps(info, indent=2) + "\n")


def weights_metadata(config: TrainConfig, data: DataBundle) -> dict[str, str]:
    """The safetensors metadata of the run's weights: the spec, normalisation and data set."""
    return {
        "graphgen.spec": config.spec.to_json(),
        "normalisation": json.dumps({"mean": list(data.mean), "std": list(data.std)}),
        "dataset": data.name,
    }


def save_epoch(
    out: Path, state: TrainState, record: dict[str, Any], *, improved: bool, meta: dict[str, str]
) -> None:
    """Metrics line, weights, checkpoint (the checkpoint last: it is what resume trusts)."""
    metrics.append(out / metrics.METRICS, record)
    tagged = {**meta, "epoch": str(state.epoch)}
    ckpt.save_weights(out / ckpt.LAST_WEIGHTS, state.model, tagged)
    if improved:
        ckpt.save_weights(out / ckpt.BEST_WEIGHTS, state.model, tagged)
    ckpt.save_checkpoint(out / ckpt.LAST, state.checkpoint())


def write_summary(out: Path, summary: dict[str, Any]) -> None:
    atomic_write_text(out / SUMMARY, json.dumps(summary, indent=2) + "\n")
