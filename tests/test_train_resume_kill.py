"""A run killed with SIGKILL mid-run resumes from its last checkpoint and loses nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import torch

from train.cli import main

ARGS = ["--depth", "8", "--image-size", "16", "--synthetic-train", "256", "--synthetic-val",
        "64", "--batch-size", "32", "--epochs", "40", "--workers", "0"]  # fmt: skip


def test_resume_after_sigkill(tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "train", *ARGS, "--out", str(run)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not (run / "last.pt").exists():
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no checkpoint within 60 s"
            time.sleep(0.05)
        time.sleep(0.3)  # into the next epoch
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    lines = (run / "metrics.jsonl").read_text().splitlines()
    before = [json.loads(line) for line in lines]
    assert before
    state = torch.load(run / "last.pt", weights_only=True)  # intact under its final name
    assert state["epoch"] >= 0
    best = (run / "best.safetensors").read_bytes()
    # finish a short run: the same run, extended only as far as the kill left it plus one epoch
    done = len(before)
    assert main(["--resume", str(run), "--epochs", str(done + 1), "--quiet"]) == 0
    after = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in after] == list(range(done + 1))
    assert after[: len(before) - 1] == before[: len(before) - 1]  # history kept
    assert (run / "best.safetensors").stat().st_size == len(best)
    assert json.loads((run / "summary.json").read_text())["epochs"] == done + 1
