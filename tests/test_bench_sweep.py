"""Sweeps on real engines with a tiny model: streaming, resume, failures, skips."""

import json
import os
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from reports.results import read_records
from runtimes.sweep import Sweep, SweepConfig
from runtimes.timing import LoopConfig

TINY = "cifar-resnet20"
FAST = LoopConfig(warmup=1, warmup_s=None, iterations=5, duration_s=None)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models")


def config(out: Path, cache: Path, **kw) -> SweepConfig:
    base = dict(models=[TINY], runtimes=["ort-cpu"], batches=[1, 2], loop=FAST, out=out)
    return SweepConfig(**{**base, "model_cache": cache, **kw})


def lines(out: Path) -> list[str]:
    return (out / "results.jsonl").read_text().splitlines()


def unloadable_model(path: Path) -> Path:
    """A valid ONNX file whose only op no engine implements: a real load failure."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 32, 32])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])
    node = helper.make_node("NoSuchOp", ["input"], ["logits"], domain="com.example")
    graph = helper.make_graph([node], "broken", [x], [y])
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)]
    onnx.save(helper.make_model(graph, opset_imports=opsets), path)
    return path


def test_records_stream_with_statistics_and_parity(tmp_path, cache):
    records = Sweep(config(tmp_path, cache)).run()
    assert [r["batch"] for r in records] == [1, 2]
    assert len(lines(tmp_path)) == 2  # one line per record, written as it finished
    r = records[1]
    assert r["status"] == "ok" and r["timing"]["iterations"] == 5
    assert r["timing"]["mode"] == "host" and r["timing"]["clock"] == "perf_counter_ns"
    lat = r["latency_ms"]
    assert lat["min"] <= lat["median"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert r["throughput_ips"] > 0 and r["gflops"] > 0 and r["load_time_s"] > 0
    assert r["runner"]["provider"] == "CPUExecutionProvider"
    assert r["parity"]["passed"] and r["parity"]["rel_l2"] < 1e-4
    assert r["parity"]["reference"] == "torch (fp64)"


def test_resume_skips_done_keys_and_survives_a_torn_line(tmp_path, cache):
    Sweep(config(tmp_path, cache, batches=[1], parity=False)).run()
    good = lines(tmp_path)[0]
    # A kill mid-write: a garbage line and a torn record without its newline.
    with open(tmp_path / "results.jsonl", "a") as f:
        f.write("{not json\n" + good[: len(good) // 2])
    sweep = Sweep(config(tmp_path, cache, batches=[1, 2], resume=True, parity=False))
    new = sweep.run()
    assert [r["batch"] for r in new] == [2]  # batch 1 was done: skipped
    assert len(sweep.warnings) == 2 and "corrupt" in sweep.warnings[0]
    text = lines(tmp_path)
    assert text[0] == good and text[1] == "{not json"  # nothing is ever rewritten
    records, warnings = read_records(tmp_path / "results.jsonl")
    assert sorted(r["batch"] for r in records) == [1, 2] and len(warnings) == 2


def test_fresh_run_without_resume_starts_over(tmp_path, cache):
    Sweep(config(tmp_path, cache, batches=[1], parity=False)).run()
    Sweep(config(tmp_path, cache, batches=[2], parity=False)).run()
    assert [json.loads(x)["batch"] for x in lines(tmp_path)] == [2]


def test_failing_engine_is_recorded_and_the_sweep_goes_on(tmp_path, cache):
    broken = unloadable_model(tmp_path / "broken.onnx")
    cfg = config(
        tmp_path / "out", cache, models=[str(broken), TINY], runtimes=["ort-cpu", "openvino"],
        batches=[1], parity=False,
    )  # fmt: skip
    records = Sweep(cfg).run()
    status = {(Path(r["model"]).name, r["runtime"]): r["status"] for r in records}
    assert status == {
        ("broken.onnx", "ort-cpu"): "failed",
        ("broken.onnx", "openvino"): "failed",
        (TINY, "ort-cpu"): "ok",
        (TINY, "openvino"): "ok",
    }
    failed = records[0]
    assert "NoSuchOp" in failed["reason"] and "\n" not in failed["reason"]
    assert len(lines(tmp_path / "out")) == 4


def test_unsupported_precision_and_big_models_are_skipped_with_reason(tmp_path, cache):
    cfg = config(
        tmp_path, cache, runtimes=["onnx-ref"], precisions=["fp16"], batches=[1], parity=False
    )
    (record,) = Sweep(cfg).run()
    assert record["status"] == "skipped" and "does not support fp16" in record["reason"]
    cfg = config(tmp_path, cache, runtimes=["onnx-ref"], batches=[64], parity=False)
    (record,) = Sweep(cfg).run()
    assert record["status"] == "skipped" and "MMAC limit" in record["reason"]


def _died_mid_job(out: Path, batch: int, *, crash: str | None = None) -> None:
    """What a process that died measuring `batch` leaves: its in-flight marker (with a pid no
    process has) and, when an engine crashed it, faulthandler's stack in crash.log."""
    from tests.test_hardening_common import dead_pid

    started = {"model": TINY, "runtime": "ort-cpu", "precision": "fp32", "batch": batch}
    (out / "inflight.json").write_text(json.dumps({**started, "image_size": 32, "pid": dead_pid()}))
    if crash is not None:
        (out / "crash.log").write_text(crash)


def _statuses(out: Path) -> list[tuple[int, str]]:
    records, _ = read_records(out / "results.jsonl")
    return sorted((r["batch"], r["status"]) for r in records)


def test_an_engine_crash_mid_job_is_failed_and_not_run_again(tmp_path, cache):
    """A segfault leaves the marker and a crash log; --resume records that job as failed (the
    crash would repeat) and runs the rest; --retry-failed measures it again."""
    Sweep(config(tmp_path, cache, batches=[1], parity=False)).run()
    assert not (tmp_path / "inflight.json").exists()  # removed once the record is written
    _died_mid_job(tmp_path, 2, crash="Fatal Python error: Segmentation fault\n\nThread 0x1")
    sweep = Sweep(config(tmp_path, cache, batches=[1, 2, 4], resume=True, parity=False))
    new = sweep.run()
    assert [(r["batch"], r["status"]) for r in new] == [(2, "failed"), (4, "ok")]
    assert "crashed during this measurement (Segmentation fault)" in new[0]["reason"]
    assert new[0]["interrupted"]["how"] == "crash" and "Thread 0x1" in new[0]["traceback"]
    assert any("crashed" in w for w in sweep.warnings)
    assert not (tmp_path / "inflight.json").exists() and not (tmp_path / "crash.log").exists()
    assert _statuses(tmp_path) == [(1, "ok"), (2, "failed"), (4, "ok")]
    # A second resume neither re-runs nor re-records anything.
    assert Sweep(config(tmp_path, cache, batches=[1, 2, 4], resume=True, parity=False)).run() == []
    retry = config(tmp_path, cache, batches=[1, 2, 4], resume=True, retry_failed=True)
    assert [(r["batch"], r["status"]) for r in Sweep(retry).run()] == [(2, "ok")]


def test_a_kill_mid_job_is_measured_again_once(tmp_path, cache):
    """Killed from outside (no crash log): --resume records it as interrupted and measures it
    again; killed again in that measurement, it stays failed until --retry-failed."""
    cfg = config(tmp_path, cache, batches=[1, 2], resume=True, parity=False)
    Sweep(config(tmp_path, cache, batches=[1], parity=False)).run()
    _died_mid_job(tmp_path, 2)
    new = Sweep(cfg).run()
    assert [(r["batch"], r["status"]) for r in new] == [(2, "failed"), (2, "ok")]
    assert new[0]["interrupted"] == {"how": "killed", "pid": new[0]["interrupted"]["pid"],
                                     "count": 1}  # fmt: skip
    assert "killed from outside" in new[0]["reason"]
    # Killed a second time, measuring it again: recorded, not re-run.
    lines_before = lines(tmp_path)
    (tmp_path / "results.jsonl").write_text("\n".join(lines_before[:2]) + "\n")
    _died_mid_job(tmp_path, 2)
    new = Sweep(cfg).run()
    assert [(r["batch"], r["interrupted"]["count"]) for r in new] == [(2, 2)]
    assert "interrupted 2 times" in new[0]["reason"] and "--retry-failed" in new[0]["reason"]
    assert Sweep(cfg).run() == []
    retry = config(tmp_path, cache, batches=[1, 2], resume=True, retry_failed=True, parity=False)
    assert [(r["batch"], r["status"]) for r in Sweep(retry).run()] == [(2, "ok")]


def test_ctrl_c_is_not_a_crash_resume_measures_that_job_again(tmp_path, cache):
    class Interrupted(Sweep):
        def run_job(self, job):
            if job.batch == 2:  # mid-measurement: the in-flight marker is on disk
                assert (tmp_path / "inflight.json").exists()
                raise KeyboardInterrupt
            return super().run_job(job)

    with pytest.raises(KeyboardInterrupt):
        Interrupted(config(tmp_path, cache, batches=[1, 2], parity=False)).run()
    assert not (tmp_path / "inflight.json").exists()
    new = Sweep(config(tmp_path, cache, batches=[1, 2], resume=True, parity=False)).run()
    assert [(r["batch"], r["status"]) for r in new] == [(2, "ok")]


def test_result_files_get_ordinary_permissions(tmp_path, cache):
    Sweep(config(tmp_path, cache, batches=[1], parity=False)).run()
    from reports.render import render

    render([tmp_path], out=tmp_path)
    umask = os.umask(0)
    os.umask(umask)
    for name in ("report.json", "report.md", "report.html"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask


def test_resume_skips_models_that_failed_to_resolve(tmp_path, cache):
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not an onnx file")
    cfg = dict(models=[str(garbage)], batches=[1], parity=False)
    (first,) = Sweep(config(tmp_path / "out", cache, **cfg)).run()
    assert first["status"] == "failed" and first["image_size"] == 0
    assert Sweep(config(tmp_path / "out", cache, resume=True, **cfg)).run() == []
    assert len(lines(tmp_path / "out")) == 1  # no duplicate on resume


def test_peak_rss_does_not_include_what_runs_after_timing(tmp_path, cache):
    """The parity reference runs in `on_active`, after the timed loop: its memory must not be
    attributed to the engine (resnet50 b8 read 3 GB with parity, 0.8 GB without)."""
    import numpy as np

    from runtimes.inputs import feeds as make_feeds
    from runtimes.models import resolve
    from runtimes.sweep import Job, make_runner
    from runtimes.timing import measure, peak_rss_mb, reset_peak_rss

    if not reset_peak_rss():
        pytest.skip("the kernel's peak RSS cannot be reset here (/proc/self/clear_refs)")
    model = resolve(TINY, precision="fp32", cache_dir=cache)
    feeds = make_feeds(model.input_name, 1, model.image_size, seed=1)
    hog = 400  # MB, touched page by page so it is resident

    def reference(_runner) -> None:
        block = np.ones(hog * 2**20, dtype=np.uint8)
        assert block.sum() > 0

    runner = make_runner(
        Job(TINY, "ort-cpu", "fp32", 1), model, config(tmp_path, cache, batches=[1], threads=1)
    )
    m = measure(runner, feeds, FAST, on_active=reference)
    assert peak_rss_mb() >= m.peak_host_rss_mb + hog * 0.9  # the hog was resident afterwards
    records = Sweep(config(tmp_path, cache, batches=[1])).run()
    assert records[0]["parity"]["passed"]  # parity still ran inside the sweep
