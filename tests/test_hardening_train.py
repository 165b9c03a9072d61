"""resnet-train's crash safety and one writer per run folder, with real processes and kills.

Small nets and tiny synthetic sets: each test is a few seconds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

# ruff: noqa: E402
# Everything below needs torch (directly or through train/): without it the module is
# skipped, so that `pytest -m gpu` still collects where torch is missing.
pytest.importorskip("torch")


from resnet_common import fileio
from tests.test_hardening_common import tiny_tmpfs
from train import cli, metrics

TINY = ["--depth", "8", "--image-size", "16", "--synthetic-train", "64", "--synthetic-val",
        "32", "--batch-size", "32", "--workers", "0", "--quiet"]  # fmt: skip
ROOT = Path(__file__).resolve().parents[1]

# resnet-train in a child that SIGKILLs itself at the rename of its first last.pt: the kill
# lands inside epoch 0's first checkpoint, with the temporary file written and not yet renamed.
KILL_AT_FIRST_CHECKPOINT = """
import os, signal, sys
real = os.replace
def replace(src, dst, *args, **kwargs):
    if os.path.basename(str(dst)) == "last.pt":
        os.kill(os.getpid(), signal.SIGKILL)
    return real(src, dst, *args, **kwargs)
os.replace = replace
from train.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _epochs(run: Path) -> list[int]:
    return [r["epoch"] for r in metrics.read(run / metrics.METRICS)]


def _debris(run: Path) -> list[str]:
    return [p.name for p in run.iterdir() if p.name.endswith(".tmp")]


def _killed_in_first_checkpoint(run: Path, epochs: int) -> None:
    argv = [*TINY, "--epochs", str(epochs), "--out", str(run)]
    done = subprocess.run(
        [sys.executable, "-c", KILL_AT_FIRST_CHECKPOINT, *argv], cwd=ROOT, capture_output=True
    )
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()
    assert not (run / "last.pt").exists()
    assert _epochs(run) == [0]  # the metrics line went to disk before the checkpoint
    assert any(name.startswith(".last.pt.") for name in _debris(run))


@pytest.mark.parametrize("how", ["rerun", "resume"])
def test_kill_inside_the_first_checkpoint(tmp_path, capsys, how):
    run = tmp_path / "run"
    _killed_in_first_checkpoint(run, epochs=2)
    if how == "rerun":  # the first command again: the same settings start the run over
        assert cli.main([*TINY, "--epochs", "2", "--out", str(run)]) == 0
    else:  # --resume: nothing to resume yet, so it starts from epoch 0
        assert cli.main(["--resume", str(run)]) == 0
    assert _epochs(run) == [0, 1]  # never an epoch twice
    assert _debris(run) == []
    assert json.loads((run / "summary.json").read_text())["epochs"] == 2


def test_unfinished_run_with_other_settings_is_refused(tmp_path, capsys):
    run = tmp_path / "run"
    _killed_in_first_checkpoint(run, epochs=2)
    config = (run / "config.json").read_bytes()
    code = cli.main([*TINY, "--epochs", "2", "--seed", "5", "--out", str(run)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "unfinished run with other settings" in err and f"--resume {run}" in err
    assert (run / "config.json").read_bytes() == config
    assert _epochs(run) == [0]


def _start_long_run(run: Path) -> subprocess.Popen[bytes]:
    argv = [*TINY, "--epochs", "500", "--out", str(run)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "train", *argv], cwd=ROOT, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 600  # only keeps a broken child from hanging the suite
    while not (run / "last.pt").exists():
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        assert time.monotonic() < deadline, "no checkpoint within 600 s"
        time.sleep(0.05)
    return proc


def test_one_writer_per_run_folder(tmp_path, capsys):
    run = tmp_path / "run"
    proc = _start_long_run(run)
    try:
        for argv in ([*TINY, "--epochs", "2", "--out", str(run)], ["--resume", str(run)]):
            code = cli.main(argv)
            err = capsys.readouterr().err
            assert code == 2 and len(err.strip().splitlines()) == 1, err
            assert f"run folder {run} is in use by pid {proc.pid}" in err
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    # the kill released the lock: the run resumes, each epoch recorded once
    done = len(_epochs(run))
    assert cli.main(["--resume", str(run), "--epochs", str(done + 1)]) == 0
    assert _epochs(run) == list(range(done + 1))
    assert _debris(run) == []


def test_disk_full_is_one_line_and_keeps_what_was_written(tmp_path, capsys):
    with tiny_tmpfs(tmp_path, "128k") as mount:
        run = mount / "run"
        code = cli.main([*TINY, "--epochs", "2", "--out", str(run)])
        err = capsys.readouterr().err
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert err.startswith(f"error: no space left on device writing {run}/"), err
        assert "Traceback" not in err
        assert json.loads((run / "config.json").read_text())["seed"] == 0  # kept, whole
        assert not any(fileio.is_temp_name(p.name) for p in run.iterdir())


def test_export_path_is_kept_inside_the_run_folder(tmp_path, monkeypatch):
    run = tmp_path / "run"
    monkeypatch.chdir(tmp_path)
    assert cli.main([*TINY, "--epochs", "1", "--out", "run", "--export", "run/m.onnx"]) == 0
    assert json.loads((run / "config.json").read_text())["export"] == "m.onnx"
    (run / "m.onnx").unlink()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # resumed from another folder, it still writes in the run
    assert cli.main(["--resume", str(run), "--epochs", "2"]) == 0
    assert (run / "m.onnx").is_file() and list(elsewhere.iterdir()) == []


def test_metrics_keep_each_epoch_once(tmp_path):
    path = tmp_path / metrics.METRICS
    lines = [{"epoch": 0, "v": "stale"}, {"epoch": 0, "v": "new"}, {"epoch": 1}, {"epoch": 2}]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"epoch": 3, "cut')
    kept = metrics.keep_before(path, 2)
    assert kept == [{"epoch": 0, "v": "new"}, {"epoch": 1}]
    assert metrics.read(path) == kept
