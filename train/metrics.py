"""Per-epoch metrics as JSON lines, and the training-curve PNG drawn from them."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

from resnet_common.fileio import append_durable, atomic_write_bytes, atomic_write_text

METRICS = "metrics.jsonl"
CURVE = "curve.png"


def append(path: Path, record: dict[str, Any]) -> None:
    """One line per epoch, flushed to disk before the checkpoint that follows it."""
    append_durable(path, json.dumps(record) + "\n")


def read(path: Path) -> list[dict[str, Any]]:
    if not Path(path).is_file():
        return []
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut short by a kill
            break
    return records


def keep_before(path: Path, epoch: int) -> list[dict[str, Any]]:
    """On resume: keep the epochs the checkpoint covers, drop any written after it.

    Each epoch is kept once (the last line written for it, the one its checkpoint followed),
    so a file that an older version appended to twice is mended too.
    """
    by_epoch: dict[int, dict[str, Any]] = {}
    for r in read(path):
        e = r.get("epoch") if isinstance(r, dict) else None
        if isinstance(e, int) and 0 <= e < epoch:
            by_epoch[e] = r
    records = [by_epoch[e] for e in sorted(by_epoch)]
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in records))
    return records


def lr_drops(records: list[dict[str, Any]]) -> list[tuple[int, float]]:
    """(1-based epoch, factor) for each epoch that ended with a lower learning rate."""
    drops = []
    for prev, cur in zip(records, records[1:], strict=False):
        if cur["lr"] < prev["lr"]:
            drops.append((cur["epoch"] + 1, prev["lr"] / cur["lr"]))
    return drops


def diverged(records: list[dict[str, Any]]) -> bool:
    """Training loss risen past where it started (a sign of a learning rate too high)."""
    losses = [r["train_loss"] for r in records if math.isfinite(r.get("train_loss", math.nan))]
    if len(losses) != len(records):
        return bool(records)
    return len(losses) >= 2 and losses[-1] > losses[0]


def plot(records: list[dict[str, Any]], path: Path, *, title: str = "") -> None:
    """Error (%) as the paper's Figures 1, 4 and 6 draw it, over the loss, against epochs; the
    learning-rate drops are marked, a diverging run says so in the title."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [r["epoch"] + 1 for r in records]
    fig, (err_ax, loss_ax) = plt.subplots(
        2, 1, figsize=(6, 6), dpi=100, sharex=True, gridspec_kw={"height_ratios": [3, 2]}
    )
    err_ax.plot(epochs, [100 * r["train_error"] for r in records], "--", label="train error")
    loss_ax.plot(epochs, [r["train_loss"] for r in records], "--", label="train loss")
    for ax, key, scale, label in (
        (err_ax, "val_error", 100, "val error"),
        (loss_ax, "val_loss", 1, "val loss"),
    ):
        val = [(e, r[key]) for e, r in zip(epochs, records, strict=True) if r.get(key) is not None]
        if val:
            ax.plot([e for e, _ in val], [scale * v for _, v in val], "-", lw=2, label=label)
    for epoch, factor in lr_drops(records):
        for ax in (err_ax, loss_ax):
            ax.axvline(epoch - 0.5, color="grey", ls=":", lw=1)
        err_ax.annotate(
            f"lr /{factor:.3g}", (epoch - 0.5, 0.02), xycoords=("data", "axes fraction"),
            xytext=(3, 0), textcoords="offset points", ha="left", va="bottom", fontsize=8,
            color="dimgrey",
        )  # fmt: skip
    err_ax.set_ylabel("error (%)")
    losses = [v for r in records for v in (r["train_loss"], r.get("val_loss")) if v]
    if losses and min(losses) > 0 and max(losses) / min(losses) > 20:
        loss_ax.set_yscale("log")  # one diverged epoch would flatten the rest
    loss_ax.set_ylabel("cross-entropy loss")
    loss_ax.set_xlabel("epoch")
    loss_ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    err_ax.set_title(f"{title}  (diverging: loss above its start)" if diverged(records) else title)
    for ax in (err_ax, loss_ax):
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right", fontsize=8)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
