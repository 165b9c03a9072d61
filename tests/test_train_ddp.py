"""DistributedDataParallel on 2 CPU processes (gloo) against 1 process with the same batch.

BN normalises each process's half-batch under DDP (SyncBatchNorm has no CPU kernel), so the
1-process reference uses `--bn-replicas 2`: BN over the same two interleaved half-batches that
DistributedSampler hands the two ranks, gradients averaged, running statistics from "rank 0"
only. With augmentation off, both runs then compute the same steps up to float reduction order.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# ruff: noqa: E402
# Everything below needs torch (directly or through train/): without it the module is
# skipped, so that `pytest -m gpu` still collects where torch is missing.
pytest.importorskip("torch")

import torch
import torch.distributed as dist
from safetensors.torch import load_file

from train.cli import main

ARGS = ["--depth", "8", "--image-size", "16", "--synthetic-train", "128", "--synthetic-val",
        "64", "--batch-size", "32", "--epochs", "2", "--no-augment", "--workers", "0",
        "--lr", "0.05", "--quiet"]  # fmt: skip


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="no gloo")
def test_ddp_two_cpu_processes_match_one(tmp_path):
    ddp, single = tmp_path / "ddp", tmp_path / "single"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--standalone", "-m", "train", *ARGS, "--device", "cpu", "--out", str(ddp)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)  # a hang guard
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert main([*ARGS, "--bn-replicas", "2", "--out", str(single)]) == 0
    a, b = load_file(ddp / "last.safetensors"), load_file(single / "last.safetensors")
    assert set(a) == set(b)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-5, msg=name)
    ma = [json.loads(x) for x in (ddp / "metrics.jsonl").read_text().splitlines()]
    mb = [json.loads(x) for x in (single / "metrics.jsonl").read_text().splitlines()]
    for ra, rb in zip(ma, mb, strict=True):
        assert ra["train_loss"] == pytest.approx(rb["train_loss"], rel=1e-4)
        assert ra["val_error"] == pytest.approx(rb["val_error"], abs=1 / 64)
    assert json.loads((ddp / "summary.json").read_text())["world_size"] == 2
