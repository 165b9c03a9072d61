"""Per-epoch metrics as JSON lines, and the training-curve PNG drawn from them."""

from __future__ import annotations

import io
import json
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


def plot(records: list[dict[str, Any]], path: Path, *, title: str = "") -> None:
    """Train and val error (%) against epochs, as the paper's Figures 1, 4 and 6 show them."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    epochs = [r["epoch"] + 1 for r in records]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.plot(epochs, [100 * r["train_error"] for r in records], "--", label="train error")
    val = [
        (e, r["val_error"])
        for e, r in zip(epochs, records, strict=True)
        if r.get("val_error") is not None
    ]
    if val:
        ax.plot([e for e, _ in val], [100 * v for _, v in val], "-", lw=2, label="val error")
    ax.set_xlabel("epoch")
    ax.set_ylabel("error (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
