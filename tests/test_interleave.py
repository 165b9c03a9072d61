"""Interleaved sweeps: the same records as a sequential sweep, per-round medians, paired ratios
with intervals, crash markers naming every loaded job. Real engines (ort-cpu, openvino) on a
CIFAR ResNet-20; no timing assertion (the machine is noisy)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from reports.ratios import paired_ratios, ratio_rows
from reports.render import render
from reports.schema import load_report
from resnet_common.records import INFLIGHT_FILE, record_key
from runtimes.interleave import Slot, plan_rounds, run_rounds
from runtimes.sweep import Sweep, SweepConfig
from runtimes.sweep.resume import died_records
from runtimes.timing import LoopConfig
from tests._process import sigaltstack, stack_problem

TINY = "cifar-resnet20"
LOOP = LoopConfig(warmup=2, warmup_s=None, iterations=24, duration_s=None)


def config(tmp_path, name, **kw) -> SweepConfig:
    base = dict(
        models=[TINY, "cifar-resnet32"],
        runtimes=["ort-cpu", "openvino"],
        batches=[1],
        loop=LOOP,
        out=tmp_path / name,
        model_cache=tmp_path / "cache",
    )
    return SweepConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sweeps")
    sequential = Sweep(config(tmp, "seq")).run()
    with pytest.MonkeyPatch.context() as patch:  # one group, however full this machine's memory
        patch.setattr("runtimes.interleave.has_room", lambda: True)
        interleaved = Sweep(config(tmp, "int", interleave=True)).run()
    return tmp, sequential, interleaved


def test_interleaved_sweep_gives_the_same_records_as_the_sequential_one(sweeps):
    _, sequential, interleaved = sweeps
    assert sorted(map(record_key, sequential)) == sorted(map(record_key, interleaved))
    assert {r["status"] for r in interleaved} == {"ok"}
    for seq, inter in zip(
        sorted(sequential, key=record_key), sorted(interleaved, key=record_key), strict=True
    ):
        assert set(seq) <= set(inter) | {"peak_host_rss_mb_scope"}
        assert inter["parity"]["passed"] and seq["parity"]["passed"]
        assert inter["timing"]["iterations"] >= LOOP.iterations
        assert inter["threads"] == seq["threads"]  # every CPU engine, the same count


def test_every_job_keeps_its_per_round_medians(sweeps):
    _, _, interleaved = sweeps
    rounds = {r["timing"]["interleaved"]["rounds"] for r in interleaved}
    assert len(rounds) == 1  # one group: all four jobs were loaded together
    (n,) = rounds
    for r in interleaved:
        inter = r["timing"]["interleaved"]
        assert inter["jobs"] == 4 and len(inter["round_medians_ms"]) == n
        assert min(inter["round_medians_ms"]) >= r["latency_ms"]["min"]


def test_the_report_pairs_engines_and_models_with_intervals(sweeps):
    tmp, _, _ = sweeps
    report = load_report(render([tmp / "int"], out=tmp / "int")["json"])
    ratios = paired_ratios(report)
    kinds = {(r.kind, r.a, r.b) for r in ratios}
    assert ("engines", "ort-cpu", "openvino") in kinds
    assert ("models", TINY, "cifar-resnet32") in kinds
    for r in ratios:
        assert r.lo <= r.ratio <= r.hi and r.rounds >= 6
    assert "Paired ratios" in (tmp / "int" / "report.md").read_text()
    assert all(row["verdict"] for row in ratio_rows(report))
    # a sequential report has no rounds, so no pairs: its records were not timed together
    assert paired_ratios(load_report(render([tmp / "seq"], out=tmp / "seq")["json"])) == []


def test_rounds_are_shuffled_and_a_failing_engine_leaves_only_its_own_record(tmp_path):
    class Step:
        def __init__(self, name, log, fail_at=None):
            self.name, self.log, self.fail_at, self.calls = name, log, fail_at, 0

        def __call__(self):
            self.calls += 1
            if self.fail_at is not None and self.calls >= self.fail_at:
                raise RuntimeError("engine crashed")
            self.log.append(self.name)
            return 1.0

    log: list[str] = []
    slots = []
    for name, fail in (("a", None), ("b", None), ("c", 5)):
        slot = Slot(name, runner=None, feeds={})  # type: ignore[arg-type]
        slot.step = Step(name, log, fail)
        slots.append(slot)
    errors = run_rounds(slots, 12, seed=3)
    assert set(errors) == {"c"} and "crashed" in str(errors["c"])
    firsts = [log[i] for i in range(0, 12, 3)][:4]
    assert len(set(firsts)) > 1  # not the same job first every round
    assert len(slots[0].round_medians_ms) == 12 and len(slots[2].round_medians_ms) == 4
    assert plan_rounds(slots[:2], LOOP) >= 24  # count mode: every job gets its iterations


def test_a_kill_in_an_interleaved_group_is_charged_to_the_job_running_only(tmp_path):
    """The marker names every loaded job; a kill while one is being loaded is charged to that
    one only, a kill while the group is timed in rounds to none (each is measured again), and a
    marker of an older version, which does not say, to all of them."""
    cfg = config(tmp_path, "out", interleave=True, models=[TINY])
    sweep = Sweep(cfg)
    out = tmp_path / "out"
    out.mkdir()
    loaded = _jobs(cfg)

    def died(**running):
        sweep.mark_inflight(out / INFLIGHT_FILE, loaded, **running)
        warnings: list[str] = []
        records = died_records(
            out / INFLIGHT_FILE, out / "crash.log", {}, retry_failed=False, warnings=warnings
        )
        return sorted(r["runtime"] for r in records), warnings

    charged, _ = died()  # the last one was being loaded
    assert charged == [loaded[-1].runtime]
    charged, warnings = died(running=[])  # the group was timed in rounds
    assert charged == [] and "measured again with no interruption charged" in warnings[-1]
    marker = json.loads((out / INFLIGHT_FILE).read_text())
    assert len(marker["jobs"]) == 2 and marker["running"] == []
    del marker["running"]
    (out / INFLIGHT_FILE).write_text(json.dumps(marker))
    records = died_records(out / INFLIGHT_FILE, out / "crash.log", {}, retry_failed=False,
                           warnings=[])  # fmt: skip
    assert sorted(r["runtime"] for r in records) == ["openvino", "ort-cpu"]
    assert all(r["status"] == "failed" and r["interrupted"]["how"] == "killed" for r in records)


def _jobs(cfg):
    from runtimes.sweep import jobs

    return list(jobs(cfg))


def test_signals_are_still_handled_after_an_interleaved_openvino_sweep(
    tmp_path, model_cache, monkeypatch
):
    """Each OpenVINO Core used to install an alternate signal stack and free it when destroyed;
    an interleaved sweep releases its runners in load order, which left the main thread's
    signal stack on freed memory, and the next handled signal killed the process (exit 139).
    After a sweep with two OpenVINO jobs loaded together, the stack is mapped, Ctrl-C raises
    KeyboardInterrupt and a child's SIGCHLD reaches its Python handler, in this process."""
    sweep = SweepConfig(
        models=[TINY], runtimes=["openvino"], batches=[1, 2], loop=LOOP, interleave=True,
        out=tmp_path / "ov", model_cache=model_cache,
    )  # fmt: skip
    monkeypatch.setattr("runtimes.interleave.has_room", lambda: True)  # however full memory is
    records = Sweep(sweep).run()
    assert [r["status"] for r in records] == ["ok", "ok"]
    assert {r["timing"]["interleaved"]["jobs"] for r in records} == {2}  # loaded together
    assert stack_problem(sigaltstack()) is None  # before a signal makes it a crash
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, previous)
    reaped: list[int] = []
    previous = signal.signal(signal.SIGCHLD, lambda signum, frame: reaped.append(signum))
    try:
        assert subprocess.run([sys.executable, "-c", "pass"], check=False).returncode == 0
        for _ in range(500):  # the handler runs at the next bytecode boundary; 5 s at most
            if reaped:
                break
            time.sleep(0.01)
    finally:
        signal.signal(signal.SIGCHLD, previous)
    assert signal.SIGCHLD in reaped
