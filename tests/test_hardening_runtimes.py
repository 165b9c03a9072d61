"""The second bad-input battery (issue 21), bench-runtimes half, and the runtime items of issue 23.

Rows are `tests.test_hardening_second`'s machinery (`check_case`: one line on stderr, exit 2, no
traceback, no library log or warning, nothing created, changed or removed under the test's
folder, the graph cache included), grouped by class in `CLASSES`; `python -m
tests.test_hardening_runtimes --count [ROOT]` runs each in a child process against the tree at
ROOT. Kills, names, resume and progress are test functions below: real sweeps on onnxruntime
with CIFAR ResNet-20 (a few seconds each) or real processes killed mid-sweep.
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

from tests import _hostile as h
from tests.test_bad_inputs import Case, run_case  # noqa: F401 (run_case: --count)
from tests.test_hardening_second import check_case

B = "bench-runtimes"
NET = ("--models", "cifar-resnet20", "--runtimes", "ort-cpu")
TINY = (*NET, "--warmup", "1", "--iterations", "5")
OUT = ("--out", "{d}/out")
RESUME = ("run", *TINY, "--resume", *OUT)
DIGITS_5000 = "7" * 5000
VICTIM = h.text_file("victim.jsonl", "keep me\n")  # a file outside --out


def _record(**changes: object) -> str:
    from resnet_common.records import new_record

    record = new_record(model="cifar-resnet20", runtime="ort-cpu", precision="fp32", batch=1,
                        image_size=32, status="skipped", reason="x")  # fmt: skip
    return json.dumps({**record, **changes})


def results(text: str, name: str = "results.jsonl") -> h.Maker:
    """An output folder `out` holding `name` with `text`."""
    return h.text_file(f"out/{name}", text)


def marker(text: str) -> h.Maker:
    return h.chain(results(_record() + "\n"), h.text_file("out/inflight.json", text))


def environment(sweep: object) -> h.Maker:
    return h.chain(
        results(_record() + "\n"),
        h.text_file("out/environment.json", json.dumps({"command": "x", "sweep": sweep})),
    )


def foreign_external(name: str, offset: str) -> h.Maker:
    return h.with_external(name, offset)


_JOB = {"model": "cifar-resnet20", "runtime": "ort-cpu", "precision": "fp32", "batch": 2,
        "image_size": 32, "mode": "latency"}  # fmt: skip

# fmt: off
SETTINGS: list[Case] = [
    # loops that would run for years, or keep billions of samples
    Case("run-iterations-1e12", B, ("run", *NET, "--iterations", str(10**12), *OUT),
         "use --duration-s"),
    Case("run-iterations-2e6", B, ("run", *NET, "--iterations", "2000000", *OUT),
         "past the limit of 1,000,000"),
    Case("run-warmup-1e9", B, ("run", *NET, "--warmup", str(10**9), *OUT), "--warmup-s"),
    Case("run-duration-1e12", B, ("run", *NET, "--duration-s", "1e12", *OUT), "a day"),
    Case("run-duration-2-days", B, ("run", *NET, "--duration-s", "172800", *OUT), "a day"),
    Case("run-warmup-s-1e9", B, ("run", *NET, "--warmup-s", "1e9", *OUT), "--warmup-s"),
    Case("run-iterations-1e12-default-models", B, ("run", "--iterations", str(10**12), *OUT),
         "--iterations"),
    # engine settings that grow to gigabytes or crash the engine
    Case("run-threads-100000", B, ("run", *TINY, "--threads", "100000", *OUT), "--threads"),
    Case("run-threads-2**40", B, ("run", *TINY, "--threads", str(2**40), *OUT), "--threads"),
    Case("run-resume-threads-100000", B, (*RESUME, "--threads", "100000"), "--threads",
         (results(_record() + "\n"),)),
    Case("loadgen-target-qps-1e300", B, ("loadgen", "--target-qps", "1e300", *OUT),
         "--target-qps"),
    Case("loadgen-target-qps-1e300-server", B, ("loadgen", "--scenario", "Server",
                                                 "--target-qps", "1e300", *OUT), "--target-qps"),
    Case("loadgen-target-qps-1e-300", B, ("loadgen", "--scenario", "Server", "--target-qps",
                                          "1e-300", *OUT), "years"),
    Case("loadgen-qps-times-duration", B, ("loadgen", "--scenario", "Server", "--target-qps",
                                           "100000", "--min-duration-ms", "3600000", *OUT),
         "schedules"),
    Case("loadgen-min-query-count-2**62", B, ("loadgen", "--min-query-count", str(2**62), *OUT),
         "--min-query-count"),
    Case("loadgen-min-duration-ms-1e12", B, ("loadgen", "--min-duration-ms", str(10**12), *OUT),
         "--min-duration-ms"),
    Case("loadgen-target-latency-1e300", B, ("loadgen", "--target-latency-ms", "1e300", *OUT),
         "--target-latency-ms"),
    Case("loadgen-threads-100000", B, ("loadgen", "--threads", "100000", *OUT), "--threads"),
]

WRITES: list[Case] = [
    # a result folder's files planted as links to files outside it
    Case("run-resume-results-link", B, RESUME, "symbolic link",
         (VICTIM, h.a_symlink("out/results.jsonl", "victim.jsonl"))),
    Case("run-resume-results-dangling-link", B, RESUME, "symbolic link",
         (h.a_symlink("out/results.jsonl", "elsewhere/new.jsonl"),)),
    Case("run-retry-failed-results-link", B, ("run", *TINY, "--retry-failed", *OUT),
         "symbolic link", (VICTIM, h.a_symlink("out/results.jsonl", "victim.jsonl"))),
    Case("run-overwrite-crash-log-link", B, ("run", *TINY, "--overwrite", *OUT),
         "crash.log", (VICTIM, h.a_symlink("out/crash.log", "victim.jsonl"))),
    Case("run-crash-log-link", B, ("run", *TINY, *OUT), "crash.log",
         (VICTIM, h.a_symlink("out/crash.log", "victim.jsonl"))),
    Case("run-resume-inflight-link", B, RESUME, "inflight.json",
         (VICTIM, results(_record() + "\n"), h.a_symlink("out/inflight.json", "victim.jsonl"))),
    Case("run-resume-inflight-dev-zero", B, RESUME, "inflight.json",
         (results(_record() + "\n"), h.a_symlink("out/inflight.json", "/dev/zero"))),
    Case("run-environment-link", B, ("run", *TINY, *OUT), "environment.json",
         (VICTIM, h.a_symlink("out/environment.json", "victim.jsonl"))),
    Case("run-results-folder", B, ("run", *TINY, "--overwrite", *OUT), "not a regular file",
         (lambda d: (d / "out" / "results.jsonl").mkdir(parents=True),)),
    Case("loadgen-jsonl-link", B, ("loadgen", *OUT), "loadgen.jsonl",
         (VICTIM, h.a_symlink("out/loadgen.jsonl", "victim.jsonl"))),
]

FOREIGN: list[Case] = [
    # the in-flight marker: bounded, typed, named
    Case("inflight-deep", B, RESUME, "inflight.json", (marker(h.deep(100_000)),)),
    Case("inflight-deep-mapping", B, RESUME, "inflight.json",
         (marker('{"jobs": ' + h.deep(500) + "}"),)),
    Case("inflight-5000-digit-pid", B, RESUME, "inflight.json",
         (marker(json.dumps({**_JOB, "pid": 1}).replace('"pid": 1', f'"pid": {DIGITS_5000}')),)),
    Case("inflight-pid-text", B, RESUME, "pid", (marker(json.dumps({**_JOB, "pid": "1"})),)),
    Case("inflight-batch-text", B, RESUME, "batch",
         (marker(json.dumps({**_JOB, "batch": "2", "pid": 1})),)),
    Case("inflight-model-list", B, RESUME, "model",
         (marker(json.dumps({**_JOB, "model": ["a"], "pid": 1})),)),
    Case("inflight-jobs-not-list", B, RESUME, '"jobs"',
         (marker(json.dumps({**_JOB, "jobs": 5, "pid": 1})),)),
    Case("inflight-no-model", B, RESUME, "lacks model",
         (marker(json.dumps({"runtime": "ort-cpu", "precision": "fp32", "batch": 1})),)),
    Case("inflight-running-not-list", B, RESUME, '"running"',
         (marker(json.dumps({**_JOB, "running": 3, "pid": 1})),)),
    Case("inflight-array", B, RESUME, "inflight.json", (marker("[1, 2]"),)),
    Case("inflight-2mb", B, RESUME, "larger than",
         (marker('{"x": "' + "a" * 2**21 + '"}'),)),
    Case("inflight-duplicate-key", B, RESUME, "appears twice",
         (marker('{"model": "a", "model": "b"}'),)),
    # results lines a kill cannot leave: refused by name, never appended after
    Case("results-deep-line", B, RESUME, "results.jsonl:2",
         (results(_record() + "\n" + h.deep(100_000) + "\n"),)),
    Case("results-5000-digit-batch", B, RESUME, "results.jsonl:1",
         (results(_record().replace('"batch": 1', f'"batch": {DIGITS_5000}') + "\n"),)),
    Case("results-batch-text", B, RESUME, "batch '1'",
         (results(_record(batch="1") + "\n"),)),
    Case("results-model-number", B, RESUME, "model 5", (results(_record(model=5) + "\n"),)),
    Case("results-image-size-float", B, RESUME, "image_size",
         (results(_record(image_size=32.5) + "\n"),)),
    Case("results-latency-text", B, RESUME, "latency_ms.mean",
         (results(_record(status="ok", latency_ms={
             k: "1" for k in ("mean", "median", "p90", "p95", "p99", "min", "max", "std")}) + "\n"),)),
    Case("results-throughput-list", B, RESUME, "throughput_ips",
         (results(_record(throughput_ips=[1]) + "\n"),)),
    Case("results-reason-dict", B, RESUME, "reason", (results(_record(reason={"a": 1}) + "\n"),)),
    Case("results-status-list", B, RESUME, "status", (results(_record(status=["ok"]) + "\n"),)),
    Case("results-nested-record", B, RESUME, "nested",
         (results(_record(extra=json.loads(h.deep(20))) + "\n"),)),
    Case("render-only-wrong-types", B, ("render", "{d}/out"), "results.jsonl:1: result record has batch '1'",
         (results(_record(batch="1") + "\n"),)),
    # the sweep a folder records (environment.json), as --resume reads it
    Case("resume-env-sweep-batch-text", B, ("run", "--resume", *OUT), "batch",
         (environment({"batch": "8"}),)),
    Case("resume-env-sweep-models-number", B, ("run", "--resume", *OUT), "models",
         (environment({"models": 5}),)),
    Case("resume-env-no-sweep", B, ("run", "--resume", *OUT), "records no sweep",
         (results(_record() + "\n"),
          h.text_file("out/environment.json", json.dumps({"command": "bench-runtimes run"})))),
    Case("resume-env-deep", B, ("run", "--resume", *OUT), "environment.json",
         (results(_record() + "\n"), h.text_file("out/environment.json", h.deep(100_000))),),
    Case("resume-env-5000-digits", B, ("run", "--resume", *OUT), "digits",
         (environment({"seed": 1}),
          lambda d: (d / "out/environment.json").write_text(
              json.dumps({"sweep": {"seed": 1}}).replace('"seed": 1', f'"seed": {DIGITS_5000}')))),
    # external data whose offset is not a byte count
    Case("run-ext-offset-text", B, ("run", "--models", "{d}/x.onnx", "--runtimes", "ort-cpu",
                                    *OUT), "offset", (foreign_external("x.onnx", "abc"),)),
    Case("run-ext-offset-negative", B, ("run", "--models", "{d}/x.onnx", "--runtimes",
                                        "ort-cpu", *OUT), "offset",
         (foreign_external("x.onnx", "-1"),)),
    Case("parity-ext-offset-text", B, ("parity", "--models", "{d}/x.onnx"), "offset",
         (foreign_external("x.onnx", "abc"),)),
    Case("parity-ext-offset-negative", B, ("parity", "--models", "{d}/x.onnx"), "offset",
         (foreign_external("x.onnx", "-1"),)),
    Case("loadgen-ext-offset-text", B, ("loadgen", "--models", "{d}/x.onnx", *OUT), "offset",
         (foreign_external("x.onnx", "abc"),)),
]
# fmt: on

CLASSES: dict[str, list[Case]] = {
    "resource blow-ups and absurd engine settings": SETTINGS,
    "writes where they should not": WRITES,
    "unguarded foreign data": FOREIGN,
}
CASES: list[Case] = [c for cases in CLASSES.values() for c in cases]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAPHGEN_CACHE", str(tmp_path / "cache"))
    problem = check_case(case, tmp_path)
    assert problem is None, problem


def test_case_ids_are_unique() -> None:
    assert len({c.id for c in CASES}) == len(CASES)


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "--count":
        from tests.test_bad_inputs import _count

        root = Path(sys.argv[2] if len(sys.argv) > 2 else Path(__file__).parents[1]).resolve()
        _count(root, module="test_hardening_runtimes", cases=CASES)


# --- kills: an interruption is charged to the job that was running, never to every loaded one --

ROOT = Path(__file__).resolve().parents[1]
# Two jobs loaded together and timed in rounds far longer than any test waits.
GROUP = [*NET, "--batch", "1,2", "--interleave", "--no-parity", "--warmup", "1"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from runtimes.models import resolve

    path = tmp_path_factory.mktemp("graphs")
    resolve("cifar-resnet20", cache_dir=path)
    return path


def _kill_in_rounds(out: Path, cache: Path, argv: list[str]) -> int:
    """Start `bench-runtimes run ARGV --out OUT` in a child, SIGKILL it once its interleaved
    group is timed in rounds (the marker says no job runs), and return its pid."""
    env = {**os.environ, "GRAPHGEN_CACHE": str(cache)}
    proc = subprocess.Popen([sys.executable, "-m", "runtimes", "run", *argv, "--out", str(out)],
                            cwd=ROOT, env=env, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 600  # only keeps a broken child from hanging the suite
    try:
        while True:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "the group was never timed"
            try:
                if json.loads((out / "inflight.json").read_text()).get("running") == []:
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    return proc.pid


def test_two_kills_in_an_interleaved_group_charge_no_job_and_resume_measures_all(
    tmp_path, cache, capsys, monkeypatch
):
    """Killed twice while its group was timed in rounds, a sweep used to leave every loaded job
    "failed: interrupted 2 times" and the next --resume measured nothing, exit 0. The kill is
    charged to no job: each resume measures both again."""
    from runtimes.cli import main

    monkeypatch.setenv("GRAPHGEN_CACHE", str(cache))
    out = tmp_path / "out"
    _kill_in_rounds(out, cache, [*GROUP, "--duration-s", "300"])
    _kill_in_rounds(out, cache, [*GROUP, "--duration-s", "300", "--resume"])
    assert not (out / "results.jsonl").read_text().strip()  # nothing charged to anyone
    assert main(["run", "--resume", "--iterations", "5", "--out", str(out)]) == 0
    assert "no interruption charged" in capsys.readouterr().err
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [(r["batch"], r["status"]) for r in records] == [(1, "ok"), (2, "ok")]
    assert not (out / "inflight.json").exists() and not (out / "crash.log").exists()


def test_a_resume_that_leaves_a_job_killed_twice_exits_1(tmp_path, cache, capsys, monkeypatch):
    """A job killed from outside while it ran, twice, is not measured again by --resume; the
    resume says so and exits 1 (never 0 with work left); --retry-failed measures it."""
    from resnet_common.records import new_record
    from runtimes.cli import main
    from runtimes.sweep import Sweep, SweepConfig
    from runtimes.sweep.config import Job
    from runtimes.timing import LoopConfig
    from tests.test_hardening_common import dead_pid

    monkeypatch.setenv("GRAPHGEN_CACHE", str(cache))
    out = tmp_path / "out"
    argv = ["run", *TINY, "--batch", "1,2", "--no-parity", "--no-interleave", "--out", str(out)]
    config = SweepConfig(models=["cifar-resnet20"], runtimes=["ort-cpu"], batches=[1, 2],
                         loop=LoopConfig(warmup=1, iterations=5), out=out)  # fmt: skip
    assert main(argv[:-2] + ["--batch", "1", "--out", str(out)]) == 0
    killed_once = new_record(**_JOB, status="failed", reason="interrupted",
                             interrupted={"how": "killed", "pid": 1, "count": 1})  # fmt: skip
    with open(out / "results.jsonl", "a") as f:
        f.write(json.dumps(killed_once) + "\n")
    sweep = Sweep(config)
    sweep.mark_inflight(out / "inflight.json", [Job("cifar-resnet20", "ort-cpu", "fp32", 2)])
    text = json.loads((out / "inflight.json").read_text())
    (out / "inflight.json").write_text(json.dumps({**text, "pid": dead_pid()}))
    capsys.readouterr()
    assert main([*argv, "--resume"]) == 1
    err = capsys.readouterr().err
    assert "1 job(s) not measured, killed from outside twice" in err and "--retry-failed" in err
    assert main([*argv, "--retry-failed"]) == 0
    capsys.readouterr()
    latest = {r["batch"]: r["status"] for r in map(json.loads, (out / "results.jsonl").open())}
    assert latest == {1: "ok", 2: "ok"}


# --- legal names, resume of the recorded sweep, progress, help ---------------------------------


def test_a_model_named_like_tex_math_is_measured_and_resumed(tmp_path, cache, monkeypatch):
    """`r$\\foo$.onnx` is a legal file name: the sweep measures it, keys its record by the name
    as given, and a --resume finds it done."""
    from graphgen.onnx_io import build_file
    from graphgen.spec import variant
    from runtimes.sweep import Sweep, SweepConfig
    from runtimes.timing import LoopConfig

    monkeypatch.chdir(tmp_path)
    build_file(variant("cifar-resnet20"), tmp_path / "r$\\foo$.onnx", seed=1)
    config = SweepConfig(models=["r$\\foo$.onnx"], runtimes=["ort-cpu"], parity=False,
                         loop=LoopConfig(warmup=1, iterations=5), out=tmp_path / "out")  # fmt: skip
    (record,) = Sweep(config).run()
    assert record["status"] == "ok" and record["model"] == "r$\\foo$.onnx"
    config.resume = True
    assert Sweep(config).run() == []


def test_resume_continues_the_sweep_its_folder_recorded(tmp_path, cache, capsys, monkeypatch):
    """`run --resume --out DIR`, as the README shows it, continues DIR's own sweep (its models,
    engines, batches and loop), not the default one; the reproduce line stays the first
    command."""
    from runtimes.cli import main

    monkeypatch.setenv("GRAPHGEN_CACHE", str(cache))
    out = tmp_path / "out"
    first = ["run", *TINY, "--batch", "1,2,4", "--no-parity", "--no-interleave", "--out", str(out)]
    assert main(first) == 0
    lines = (out / "results.jsonl").read_text().splitlines()
    (out / "results.jsonl").write_text(lines[0] + "\n")  # as if killed after the first job
    capsys.readouterr()
    assert main(["run", "--resume", "--out", str(out)]) == 0
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [(r["model"], r["batch"]) for r in records] == [("cifar-resnet20", b) for b in (1, 2, 4)]
    assert {r["timing"]["iterations"] for r in records} == {5}
    assert all(r.get("parity") is None for r in records)
    env = json.loads((out / "environment.json").read_text())
    assert env["command"].startswith("bench-runtimes run --models cifar-resnet20")
    assert "--resume" not in env["command"]


def test_a_piped_interleaved_run_says_each_step_as_it_happens(tmp_path, cache):
    """Piped (no terminal), an interleaved run used to print nothing until its group was timed:
    it now says each load and the group before the records."""
    env = {**os.environ, "GRAPHGEN_CACHE": str(cache)}
    argv = [*GROUP, "--iterations", "5", "--out", str(tmp_path / "out")]
    done = subprocess.run([sys.executable, "-m", "runtimes", "run", *argv], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    steps = [line.split(" ")[0] for line in lines]
    assert steps[:3] == ["loading", "loading", "timing"], lines
    assert "timing group 1: 2 job(s) loaded together" in lines[2]
    assert steps[3:5] == ["[1/2]", "[2/2]"], lines


def test_list_is_not_cut_at_80_columns_when_piped():
    done = subprocess.run([sys.executable, "-m", "runtimes", "list"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "…" not in done.stdout  # rich's mark of a cut cell
    from runtimes.registry import engines

    for info in engines():
        assert info.name in done.stdout


def _parsers():
    import argparse

    from runtimes.cli import make_parser

    top = make_parser()
    sub = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


def test_help_has_no_doubled_percent_and_every_loadgen_flag_says_what_it_does():
    for name, parser in _parsers().items():
        assert "%%" not in parser.format_help(), name
    loadgen = _parsers()["loadgen"]
    bare = [a.option_strings[0] for a in loadgen._actions if a.option_strings and not a.help]
    assert bare == []


def test_loadgen_refuses_a_listed_precision_the_engine_cannot_run(tmp_path, capsys):
    from runtimes import registry
    from runtimes.cli import main

    why = registry.refusal("ort-cpu", "bf16")
    if why is None:
        pytest.skip("this onnxruntime runs bf16 on the CPU")
    out = tmp_path / "out"
    assert main(["loadgen", *NET, "--precision", "bf16", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--precision bf16" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_each_record_says_what_its_rss_covers(tmp_path, cache, monkeypatch):
    """The peak RSS is the process's: per job when timed alone, the group's when interleaved
    (the same for every job of it), and the record says which; the RSS growth across the job's
    own load is its own in both."""
    from runtimes.sweep import Sweep, SweepConfig
    from runtimes.timing import LoopConfig

    monkeypatch.setattr("runtimes.interleave.has_room", lambda: True)
    for interleave, scope in ((False, "this job"), (True, "interleaved group")):
        config = SweepConfig(models=["cifar-resnet20"], runtimes=["ort-cpu"], batches=[1, 2],
                             loop=LoopConfig(warmup=1, iterations=5), parity=False,
                             out=tmp_path / scope, interleave=interleave, model_cache=cache)  # fmt: skip
        records = Sweep(config).run()
        assert [r["peak_host_rss_mb_scope"] for r in records] == [scope, scope]
        assert all(isinstance(r["host_rss_load_mb"], float) for r in records)
