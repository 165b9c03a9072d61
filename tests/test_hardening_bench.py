"""bench-runtimes hardening: the bad-input battery, one writer per --out, kills and debris.

The battery is `tests.test_bad_inputs`'s machinery with bench-runtimes cases: each is one line on
stderr, exit code 2, no traceback, and nothing created or changed under the test's folder (the
graph cache included: `GRAPHGEN_CACHE` points inside it). From the repository root,
`python -m tests.test_hardening_bench --count [ROOT]` runs every case in a child process against
the tree at ROOT, which is how the count of cases already clean before the fixes is measured.
The other tests run real processes on onnxruntime with CIFAR ResNet-20 (a few seconds each).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.test_bad_inputs import Case, run_case

B = "bench-runtimes"
TINY = ("--models", "cifar-resnet20", "--runtimes", "ort-cpu", "--warmup", "1")
TINY += ("--iterations", "5")
OUT = ("--out", "{d}/out")


# --- inputs the cases need ---------------------------------------------------------------------


def foreign_file(name: str) -> Callable[[Path], None]:
    """CIFAR ResNet-20 with graphgen's metadata stripped: an ONNX file graphgen did not make."""

    def make(d: Path) -> None:
        import onnx

        from graphgen.onnx_io import build
        from graphgen.spec import variant

        model = build(variant("cifar-resnet20"))
        del model.metadata_props[:]
        onnx.save(model, d / name)

    return make


def results_file(folder: str, text: str) -> Callable[[Path], None]:
    def make(d: Path) -> None:
        (d / folder).mkdir(parents=True, exist_ok=True)
        (d / folder / "results.jsonl").write_text(text)

    return make


def report_file(name: str, **changes: object) -> Callable[[Path], None]:
    """A report.json of no records, with `changes` applied."""

    def make(d: Path) -> None:
        from reports.schema import make_report

        report = make_report({}, [], generated_at="2026-01-01T00:00:00+00:00")
        (d / name).write_text(json.dumps({**report, **changes}))

    return make


def a_file(name: str, text: str) -> Callable[[Path], None]:
    def make(d: Path) -> None:
        (d / name).write_text(text)

    return make


_OK_RECORD = json.dumps(
    {"schema_version": 1, "model": "m", "runtime": "ort-cpu", "precision": "fp32",
     "batch": 1, "image_size": 32, "status": "skipped", "reason": "x"}
)  # fmt: skip
STRING_VERSION = json.dumps(
    {"schema_version": "1", "model": "m", "runtime": "ort-cpu", "precision": "fp32",
     "batch": 1, "image_size": 32, "status": "skipped"}
)  # fmt: skip

# fmt: off
CASES: list[Case] = [
    # seeds: resnet_common's one parser
    Case("run-seed-negative", B, ("run", *TINY, "--seed=-1", *OUT), "seed must be in"),
    Case("run-seed-2**63", B, ("run", *TINY, "--seed", str(2**63), *OUT), "seed must be in"),
    Case("run-seed-text", B, ("run", *TINY, "--seed", "x", *OUT), "expected an integer seed"),
    Case("parity-seed-negative", B, ("parity", "--models", "cifar-resnet20", "--seed=-1"),
         "seed must be in"),
    Case("parity-seed-huge", B, ("parity", "--models", "cifar-resnet20", "--seed", "9" * 30),
         "seed must be in"),
    Case("loadgen-seed-negative", B, ("loadgen", "--seed=-1", *OUT), "seed must be in"),
    # absurd batches and sizes: estimated against the machine's memory before anything is built
    Case("run-batch-1e8-default-models", B, ("run", "--batch", "100000000", *OUT), "of memory"),
    Case("run-batch-list-with-1e8", B, ("run", *TINY, "--batch", "1,8,100000000", *OUT),
         "at batch 100,000,000"),
    Case("run-batch-1e8-no-parity", B,
         ("run", *TINY, "--batch", "100000000", "--no-parity", *OUT), "of memory"),
    Case("run-batch-1e8-file", B, ("run", "--models", "{d}/f.onnx", "--batch", "100000000",
                                   *OUT), "of memory", (foreign_file("f.onnx"),)),
    Case("run-image-size-1e6", B, ("run", *TINY, "--image-size", "1000000", *OUT),
         "1000000x1000000 px"),
    Case("run-size-limit-other-key", B, ("run", *TINY, "--size-limit", "params=5", *OUT),
         "only the memory limit"),
    Case("run-size-limit-memory-small", B,
         ("run", *TINY, "--size-limit", "memory=1000", *OUT), "more than the 1000 B"),
    Case("parity-batch-1e8", B, ("parity", "--models", "resnet18", "--batch", "100000000"),
         "of memory"),
    Case("parity-image-size-1e6", B,
         ("parity", "--models", "resnet18", "--image-size", "1000000"), "of memory"),
    Case("loadgen-samples-1e9", B, ("loadgen", "--samples", "1000000000", *OUT), "of memory"),
    # numbers that never end or always pass
    Case("run-duration-inf", B, ("run", *TINY[:-2], "--duration-s", "inf", *OUT),
         "expected a positive number"),
    Case("loadgen-target-qps-inf", B, ("loadgen", "--target-qps", "inf", *OUT),
         "expected a positive number"),
    Case("parity-rtol-inf", B, ("parity", "--models", "cifar-resnet20", "--rtol", "inf"),
         "expected a finite non-negative number"),
    Case("compare-threshold-nan", B, ("compare", "{d}/a.json", "{d}/a.json", "--threshold",
                                      "nan"), "expected a threshold", (report_file("a.json"),)),
    # parity with nothing to compare: no torch reference for a foreign file, and one engine
    Case("parity-foreign-one-engine", B,
         ("parity", "--models", "{d}/f.onnx", "--runtimes", "ort-cpu"),
         "needs two engines to compare", (foreign_file("f.onnx"),)),
    Case("parity-foreign-torch-skipped", B,
         ("parity", "--models", "{d}/f.onnx", "--runtimes", "torch,ort-cpu"),
         "only ort-cpu can run it", (foreign_file("f.onnx"),)),
    # render and compare: nothing readable is an error, not an empty report
    Case("render-all-garbage", B, ("render", "{d}/res"), "holds no readable result record",
         (results_file("res", "{not json\n\x00\x01garbage\n[1, 2]\n"),)),
    Case("render-empty-results", B, ("render", "{d}/res"), "(the file is empty)",
         (results_file("res", ""),)),
    Case("render-string-schema-version", B, ("render", "{d}/res"),
         "schema_version '1' (a str), not the integer 1",
         (results_file("res", STRING_VERSION + "\n"),)),
    Case("compare-string-schema-version", B, ("compare", "{d}/a.json", "{d}/a.json"),
         "schema_version '1' (a str), not the integer 1",
         (report_file("a.json", schema_version="1"),)),
    Case("compare-no-schema-version", B, ("compare", "{d}/a.json", "{d}/a.json"),
         "schema_version none, not the integer 1",
         (report_file("a.json", schema_version=None),)),
    Case("render-out-dev-null", B, ("render", "{d}/res", "--out", "/dev/null"),
         "cannot write to --out /dev/null", (results_file("res", _OK_RECORD + "\n"),)),
    # model files that cannot run
    Case("run-garbage-onnx", B, ("run", *TINY[2:], "--models", "{d}/g.onnx", *OUT),
         "is not an ONNX model", (a_file("g.onnx", "garbage"),)),
    Case("run-empty-onnx", B, ("run", *TINY[2:], "--models", "{d}/e.onnx", *OUT),
         "is an empty file, not an ONNX model", (a_file("e.onnx", ""),)),
    Case("run-out-dev-null", B, ("run", *TINY, "--out", "/dev/null"),
         "cannot write to --out /dev/null"),
    # flags that contradict each other
    Case("run-retry-failed-overwrite", B, ("run", *TINY, "--retry-failed", "--overwrite", *OUT),
         "--retry-failed keeps OUT's results and --overwrite replaces them"),
    Case("loadgen-unknown-scenario", B, ("loadgen", "--scenario", "Bogus", *OUT),
         "unknown scenario 'Bogus'"),
    # names with rich markup are data in messages too
    Case("run-missing-bracketed-file", B, ("run", "--models", "x[/]y.onnx", *OUT),
         "no such model file: x[/]y.onnx"),
    Case("render-missing-bracketed-folder", B, ("render", "r[v2]"),
         "no such result folder: r[v2]"),
]
# fmt: on


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAPHGEN_CACHE", str(tmp_path / "cache"))
    _, text, problem = run_case(case, tmp_path)
    assert problem is None, f"{problem}; stderr: {text[-2000:]}"


def test_case_ids_are_unique() -> None:
    assert len({c.id for c in CASES}) == len(CASES)


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "--count":
        from tests.test_bad_inputs import _count

        root = Path(sys.argv[2] if len(sys.argv) > 2 else Path(__file__).parents[1]).resolve()
        _count(root, module="test_hardening_bench", cases=CASES)


def test_the_memory_estimate_reads_a_file_as_its_variant(tmp_path):
    """A graphgen file is sized from the plan in its metadata, as its variant name is; a file
    graphgen did not make from its initializers and input."""
    from graphgen.onnx_io import build_file
    from graphgen.spec import variant
    from runtimes.footprint import footprint

    build_file(variant("cifar-resnet20"), tmp_path / "m.onnx")
    named = footprint("cifar-resnet20", image_size=None)
    assert named is not None and named == footprint(str(tmp_path / "m.onnx"), image_size=None)
    assert named.input == 3 * 32 * 32 and named.largest == 16 * 32 * 32
    foreign_file("f.onnx")(tmp_path)
    foreign = footprint(str(tmp_path / "f.onnx"), image_size=None)
    assert foreign is not None and foreign.weights == named.weights
    one, two = (named.bytes_needed(batch=b, precision="fp32", parity=True) for b in (1, 2))
    assert two - one == one - named.bytes_needed(batch=0, precision="fp32", parity=True) > 0


# --- user strings through rich -----------------------------------------------------------------

ANSI = __import__("re").compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def main(argv: list[str]) -> int:
    from runtimes.cli import main as bench

    try:
        return bench(argv)
    except SystemExit as exit:
        return int(exit.code or 0)


def test_bracketed_file_names_show_verbatim_everywhere(tmp_path, monkeypatch, capsys):
    """`a[/]b.onnx` raised MarkupError in run's progress line and `resnet[v2].onnx` showed as
    `resnet.onnx`: every user string goes through rich as data. FORCE_COLOR makes rich treat the
    captured streams as a terminal, the path where progress and tables are drawn."""
    from graphgen.onnx_io import build_file
    from graphgen.spec import variant

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GRAPHGEN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "250")  # rows on one line
    Path("a[").mkdir()
    names = ["a[/]b.onnx", "resnet[v2].onnx"]
    for name in names:
        build_file(variant("cifar-resnet20"), name)
    outs = ["res[/]x", "res[v2]"]
    for name, out in zip(names, outs, strict=True):  # one job a run: its line is always drawn
        assert main(["run", *TINY, "--no-parity", "--out", out, "--models", name]) == 0
        captured = capsys.readouterr()
        err, text = ANSI.sub("", captured.err), ANSI.sub("", captured.out)
        assert "MarkupError" not in err
        assert f"{name} · ort-cpu · fp32 · batch 1" in err  # the progress line
        assert f"│ {name}" in text  # the summary table
    out = "merged[/]"
    assert main(["render", *outs, "--out", out]) == 0
    assert main(["compare", out, out]) == 0
    text = ANSI.sub("", capsys.readouterr().out)
    assert all(f"{name}|ort-cpu|fp32|1|32" in text for name in names), text
    argv = ["parity", "--models", names[1], "--runtimes", "ort-cpu"]
    assert main(argv) == 0
    assert f"{names[1]}  fp32  batch 2" in ANSI.sub("", capsys.readouterr().out)
    argv = ["loadgen", "--models", names[1], "--scenario", "SingleStream", "--out", out]
    assert main([*argv, "--min-duration-ms", "50", "--min-query-count", "5"]) == 0
    assert f"LoadGen SingleStream: {names[1]} on ort-cpu" in ANSI.sub("", capsys.readouterr().err)


# --- a full disk in render ---------------------------------------------------------------------


def _result_folder(path: Path) -> dict[str, bytes]:
    """A result folder of real-looking records; returns its files' bytes."""
    from tests.test_reports_render import folder, sample_records

    folder(path, "m", sample_records())
    return {p.name: p.read_bytes() for p in path.iterdir()}


def _no_temp_left(path: Path) -> bool:
    from resnet_common.fileio import is_temp_name

    return not any(is_temp_name(p.name) for p in path.iterdir())


def test_render_on_a_full_disk_is_one_line_and_keeps_the_results(tmp_path, capsys):
    from tests.test_hardening_common import tiny_tmpfs

    with tiny_tmpfs(tmp_path, "96k") as mount:
        res = mount / "res"
        kept = _result_folder(res)
        assert main(["render", str(res)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: no space left on device writing {res}/"), err
        assert len(err.splitlines()) == 1 and "Traceback" not in err
        assert {name: (res / name).read_bytes() for name in kept} == kept
        assert _no_temp_left(res)


def test_a_run_filling_the_disk_stops_in_one_line_keeping_its_records(tmp_path, capsys):
    from reports.results import read_records
    from tests.test_hardening_common import tiny_tmpfs

    with tiny_tmpfs(tmp_path, "16k") as mount:
        out = mount / "out"
        batches = ",".join(str(b) for b in range(1, 9))  # eight records: more than 16 kB
        assert main(["run", *TINY, "--no-parity", "--batch", batches, "--out", str(out)]) == 2
        last = capsys.readouterr().err.strip().splitlines()[-1]
        assert last.startswith(f"error: no space left on device writing {out}/"), last
        records, _ = read_records(out / "results.jsonl")
        assert all(r["status"] == "ok" for r in records)
        assert not (out / "inflight.json").exists()  # a full disk is not a crash
        assert _no_temp_left(out)


# render in a child whose file-size limit is 20 kB (ulimit -f), with SIGXFSZ ignored as a
# shell's `ulimit -f` user may have it: writes past the limit fail with EFBIG.
FSIZE_LIMITED_RENDER = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))
from runtimes.cli import main
sys.exit(main(["render", sys.argv[1]]))
"""


def test_render_past_the_file_size_limit_is_one_line_and_keeps_the_results(tmp_path):
    import subprocess

    res = tmp_path / "res"
    kept = _result_folder(res)
    done = subprocess.run(
        [sys.executable, "-c", FSIZE_LIMITED_RENDER, str(res)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"error: cannot write {res}/"), done.stderr
    assert done.stderr.rstrip().endswith("File too large") and len(done.stderr.splitlines()) == 1
    assert {name: (res / name).read_bytes() for name in kept} == kept
    assert _no_temp_left(res)


# --- one writer per --out; kills and crashes mid-job --------------------------------------------

ROOT = Path(__file__).resolve().parents[1]
LONG = ["--models", "cifar-resnet20", "--runtimes", "ort-cpu", "--warmup", "1", "--no-parity"]
LONG += ["--duration-s", "300"]  # far longer than any test waits: killed or stopped by then

# bench-runtimes in a child whose ort-cpu job at batch 2 segfaults (a real SIGSEGV, as an
# engine's native code would raise), inside the sweep's measurement.
SEGFAULT_AT_BATCH_2 = """
import faulthandler, sys
from runtimes.sweep import Sweep
real = Sweep.run_job
def run_job(self, job):
    if job.batch == 2:
        faulthandler._sigsegv()
    return real(self, job)
Sweep.run_job = run_job
from runtimes.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A graph cache holding CIFAR ResNet-20, so the children start measuring at once."""
    from runtimes.models import resolve

    path = tmp_path_factory.mktemp("graphs")
    resolve("cifar-resnet20", cache_dir=path)
    return path


def _child(argv: list[str], cache: Path, code: str | None = None) -> subprocess.Popen[bytes]:
    env = {**os.environ, "GRAPHGEN_CACHE": str(cache)}
    head = [sys.executable, "-c", code] if code else [sys.executable, "-m", "runtimes"]
    return subprocess.Popen([*head, *argv], cwd=ROOT, env=env, stderr=subprocess.PIPE)


def _wait_for(path: Path, proc: subprocess.Popen[bytes]) -> None:
    """Until `path` exists (the child is measuring); the deadline only keeps a broken child
    from hanging the suite."""
    deadline = time.monotonic() + 600
    while not path.exists():
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        assert time.monotonic() < deadline, f"no {path.name} within 600 s"
        time.sleep(0.05)


def _one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


def _lines(out: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def test_a_second_writer_is_refused_naming_the_live_one(tmp_path, cache, capsys, monkeypatch):
    """Two runs into one --out: the second replaced the first's results; a --resume beside a
    live run wrote a false "process died" record. Each now refuses in one line, naming the
    pid, and leaves the folder as it was."""
    monkeypatch.setenv("GRAPHGEN_CACHE", str(cache))
    out = tmp_path / "out"
    proc = _child(["run", *LONG, "--out", str(out)], cache)
    try:
        _wait_for(out / "inflight.json", proc)
        before = sorted(p.name for p in out.iterdir())
        for argv in (
            ["run", *TINY, "--out", str(out)],
            ["run", *TINY, "--resume", "--out", str(out)],
            ["run", *TINY, "--overwrite", "--out", str(out)],
            ["render", str(out)],
            ["loadgen", "--out", str(out)],
        ):
            assert main(argv) == 2, argv
            assert f"--out {out} is in use by pid {proc.pid}" in _one_line(capsys), argv
        assert sorted(p.name for p in out.iterdir()) == before
        assert proc.poll() is None  # the live run went on
    finally:
        proc.kill()
        proc.wait()


def test_a_run_killed_mid_job_is_measured_again_on_resume(tmp_path, cache, capsys, monkeypatch):
    """SIGKILL from outside (as the OOM killer sends) is not an engine crash: --resume records
    the job as interrupted, names the dead pid, and measures it again."""
    monkeypatch.setenv("GRAPHGEN_CACHE", str(cache))
    out = tmp_path / "out"
    proc = _child(["run", *LONG, "--out", str(out)], cache)
    try:
        _wait_for(out / "inflight.json", proc)
    finally:
        proc.kill()
        proc.wait()
    assert main(["run", *TINY, "--no-parity", "--resume", "--out", str(out)]) == 0
    assert "killed from outside" in capsys.readouterr().err
    killed, measured = _lines(out)
    assert killed["status"] == "failed" and killed["interrupted"] == {
        "how": "killed", "pid": proc.pid, "count": 1,
    }  # fmt: skip
    assert measured["status"] == "ok" and measured["batch"] == killed["batch"] == 1
    assert not (out / "inflight.json").exists() and not (out / "crash.log").exists()
    assert [p.name for p in out.iterdir() if p.name.endswith(".tmp")] == []


def test_an_engine_segfault_is_a_crash_not_run_again(tmp_path, cache, capsys, monkeypatch):
    """A segfault inside a measurement leaves faulthandler's stack: --resume records a crash
    (it would crash again) and runs the rest (that a crash stays unmeasured until
    --retry-failed is test_bench_sweep's, from the same marker and log)."""
    monkeypatch.setenv("GRAPHGEN_CACHE", str(cache))
    out = tmp_path / "out"
    argv = ["run", *TINY, "--no-parity", "--batch", "1,2,4", "--no-interleave"]
    proc = _child([*argv, "--out", str(out)], cache, SEGFAULT_AT_BATCH_2)
    _, err = proc.communicate()
    assert proc.returncode == -signal.SIGSEGV, err.decode()
    assert "Segmentation fault" in (out / "crash.log").read_text()
    assert main([*argv, "--resume", "--out", str(out)]) == 0
    capsys.readouterr()
    statuses = [
        (r["batch"], r["status"], (r.get("interrupted") or {}).get("how")) for r in _lines(out)
    ]
    assert statuses == [(1, "ok", None), (2, "failed", "crash"), (4, "ok", None)]
    assert "Segmentation fault" in str(_lines(out)[1]["reason"])


# --- the graph cache: kills leave no debris, two builders of one model wait -------------------

# Resolve a variant into a cache in a child that SIGKILLs itself as the built file is renamed
# into the cache: the kill lands inside the build, its temporary folder written.
KILLED_IN_BUILD = """
import os, signal, sys
real = os.replace
def replace(src, dst, *args, **kwargs):
    if str(dst).endswith(".onnx") and os.path.dirname(str(dst)) == sys.argv[1]:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(src, dst, *args, **kwargs)
os.replace = replace
from runtimes.models import resolve
resolve("cifar-resnet20", cache_dir=sys.argv[1])
"""

# Resolve a variant in a child that says when it starts waiting for the model's lock.
WAITS_FOR_THE_BUILDER = """
import sys
from runtimes import model_cache
real = model_cache.exclusive_lock
def exclusive_lock(*args, **kwargs):
    print("waiting", flush=True)
    return real(*args, **kwargs)
model_cache.exclusive_lock = exclusive_lock
from runtimes.models import resolve
print(resolve("cifar-resnet20", cache_dir=sys.argv[1]).path.stat().st_ino, flush=True)
"""


def test_a_build_killed_in_the_cache_leaves_debris_the_next_build_removes(tmp_path):
    from resnet_common.fileio import is_temp_name
    from runtimes.models import resolve

    cache = tmp_path / "cache"
    cache.mkdir()
    done = subprocess.run([sys.executable, "-c", KILLED_IN_BUILD, str(cache)], cwd=ROOT)
    assert done.returncode == -signal.SIGKILL
    debris = [p for p in cache.iterdir() if is_temp_name(p.name)]
    assert len(debris) == 1 and debris[0].is_dir() and any(debris[0].rglob("*.onnx"))
    assert not any(p.suffix == ".onnx" for p in cache.iterdir())  # nothing under a final name
    model = resolve("cifar-resnet20", cache_dir=cache)
    assert sorted(p.name for p in cache.iterdir()) == [model.path.name]
    import onnx

    onnx.checker.check_model(str(model.path), full_check=True)


def test_two_builds_of_one_cached_model_wait_and_the_second_reuses_the_first(tmp_path):
    """The test holds the model's lock as a first builder would; the child, wanting the same
    model, waits; the "first builder" puts its file in place and lets go; the child uses that
    very file (same inode) instead of building and renaming over it."""
    import shutil

    from resnet_common.locks import exclusive_lock
    from runtimes.model_cache import lock_path
    from runtimes.models import resolve

    built = resolve("cifar-resnet20", cache_dir=tmp_path / "elsewhere").path
    cache = tmp_path / "cache"
    cache.mkdir()
    path = cache / built.name  # where the child looks: the name depends on the model alone
    with exclusive_lock(lock_path(path)):
        child = subprocess.Popen(
            [sys.executable, "-c", WAITS_FOR_THE_BUILDER, str(cache)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "waiting", child.stderr
        shutil.copy(built, cache / "partial")
        os.replace(cache / "partial", path)  # the first build's file lands
        inode = path.stat().st_ino
    out, err = child.communicate()
    assert child.returncode == 0, err
    assert int(out.split()[-1]) == inode == path.stat().st_ino
    assert sorted(p.name for p in cache.iterdir()) == [path.name]
