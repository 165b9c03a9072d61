"""Which jobs `--resume` counts as done: every recorded job but the interrupted ones due a
measurement, whatever the previous run left behind after writing a record."""

from __future__ import annotations

import json
from pathlib import Path

from reports.results import read_records
from runtimes.sweep import Sweep, SweepConfig
from runtimes.timing import LoopConfig
from tests.test_hardening_common import dead_pid

TINY = "cifar-resnet20"
FAST = LoopConfig(warmup=1, warmup_s=None, iterations=3, duration_s=None)


def _config(out: Path, cache: Path, **kw: object) -> SweepConfig:
    base: dict[str, object] = dict(
        models=[TINY], runtimes=["ort-cpu"], batches=[1], loop=FAST, out=out, parity=False
    )
    return SweepConfig(**{**base, "model_cache": cache, **kw})  # type: ignore[arg-type]


def _statuses(out: Path) -> list[tuple[int, str]]:
    records, _ = read_records(out / "results.jsonl")
    return [(r["batch"], r["status"]) for r in records]


def test_a_marker_left_after_its_record_was_written_changes_nothing(
    tmp_path: Path, model_cache: Path
) -> None:
    """Killed between writing a job's record and removing its in-flight marker (with a crash
    log from an earlier death beside it): the record stands, nothing is marked died or re-run."""
    Sweep(_config(tmp_path, model_cache)).run()
    assert _statuses(tmp_path) == [(1, "ok")]
    marker = {"model": TINY, "runtime": "ort-cpu", "precision": "fp32", "batch": 1}
    (tmp_path / "inflight.json").write_text(
        json.dumps({**marker, "image_size": 32, "pid": dead_pid()})
    )
    (tmp_path / "crash.log").write_text("Fatal Python error: Segmentation fault\n")
    assert Sweep(_config(tmp_path, model_cache, resume=True)).run() == []
    assert _statuses(tmp_path) == [(1, "ok")]
    assert not (tmp_path / "inflight.json").exists()


def test_skipped_jobs_are_done_even_for_retry_failed(tmp_path: Path, model_cache: Path) -> None:
    """A skipped job (here: onnx-ref has no fp16) is done, as an ok one is: neither --resume
    nor --resume --retry-failed runs it again (retry is for failed records only)."""
    cfg = _config(tmp_path, model_cache, runtimes=["onnx-ref", "ort-cpu"], precisions=["fp16"])
    first = Sweep(cfg).run()
    assert [(r["runtime"], r["status"]) for r in first] == [
        ("onnx-ref", "skipped"),
        ("ort-cpu", "ok"),
    ]
    cfg.resume = True
    assert Sweep(cfg).run() == []
    cfg.retry_failed = True
    assert Sweep(cfg).run() == []
    assert len(_statuses(tmp_path)) == 2
