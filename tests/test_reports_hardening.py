"""Hand-edited and hostile result files against `render` and `compare` (issue 21).

Every case starts from real records (one small interleaved sweep of CIFAR ResNet-20 on
onnxruntime, made once), edits one thing, and must give one line on stderr naming the file (and
line, and field), exit code 2, no traceback, no hang, and nothing new under the test's folder:
the check runs before any report file, plot or lock is written. `python -m
tests.test_reports_hardening --count [ROOT]` runs each case in a child process against the tree
at ROOT (how the count of cases clean before the fixes is measured).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import io
import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests._hostile import a_fifo, a_symlink, sparse_file
from tests.test_bad_inputs import Case, run_case

B = "bench-runtimes"
Maker = Callable[[Path], None]


@functools.cache
def real_sweep() -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The records and environment of a real two-job interleaved sweep (a few seconds)."""
    from runtimes.cli import main

    made = os.environ.get("REPORTS_HARDENING_SWEEP")  # `--count`: one sweep for every child
    if made:
        lines = Path(made, "results.jsonl").read_text().splitlines()
        return [json.loads(line) for line in lines], json.loads(
            Path(made, "environment.json").read_text()
        )
    with tempfile.TemporaryDirectory() as d:
        argv = ["run", "--models", "cifar-resnet20", "--runtimes", "ort-cpu", "--batch", "1,2"]
        argv += ["--interleave", "--warmup", "1", "--iterations", "6", "--out", f"{d}/out"]
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            assert main(argv) == 0  # quiet: `--count` reads each child's first line
        lines = Path(d, "out", "results.jsonl").read_text().splitlines()
        env = json.loads(Path(d, "out", "environment.json").read_text())
    return [json.loads(line) for line in lines], env


def _set(record: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for name in parents:
        record = record[name]
    record[last] = value


def results(
    path: str | None = None, value: Any = None, *, raw: str | None = None, env: Any = None
) -> Maker:
    """`res/` holding the real records, the second with `path` set to `value` (or the second
    line replaced by `raw` text), and the real environment (or `env`)."""

    def make(d: Path) -> None:
        records, environment = real_sweep()
        res = d / "res"
        res.mkdir()
        edited = copy.deepcopy(records[1])
        if path is not None:
            _set(edited, path, value)
        second = raw if raw is not None else json.dumps(edited)
        (res / "results.jsonl").write_text(json.dumps(records[0]) + "\n" + second + "\n")
        shown = environment if env is None else env
        text = shown if isinstance(shown, str) else json.dumps(shown)
        (res / "environment.json").write_text(text)

    return make


def report(
    name: str, path: str | None = None, value: Any = None, *, raw: str | None = None
) -> Maker:
    """A real report.json (the real records on one machine), with the second record's `path`
    set to `value` ("" for the report itself), or the whole file replaced by `raw`."""

    def make(d: Path) -> None:
        from reports.schema import make_report

        records, env = real_sweep()
        rows = [{**r, "machine": "m"} for r in copy.deepcopy(records)]
        data = make_report({"m": {**env, "machine": "m"}}, rows, generated_at="now")
        if path == "":
            data.update(value)
        elif path is not None:
            _set(data["records"][1], path, value)
        (d / name).write_text(raw if raw is not None else json.dumps(data))

    return make


BIG = "9" * 5000  # as JSON text: Python refuses to make it an int from a string
DEEP = "[" * 100_000 + "]" * 100_000  # past Python's recursion limit
NESTED = "[" * 200 + "]" * 200  # parses, past the 32 levels a record may have
RENDER = ("render", "{d}/res")
COMPARE = ("compare", "{d}/a.json", "{d}/a.json")
LINE2 = "results.jsonl:2: field "
# Types a result record must have are checked where records are read (resnet_common.records),
# first: those refusals name the line and the record's key.
RECORD = "results.jsonl:2: result record has "
KEYED = "results.jsonl:2: ok record cifar-resnet20|ort-cpu|fp32|2|32|latency has "
KEYED_RESULT = "results.jsonl:2: result record cifar-resnet20|ort-cpu|fp32|2|32|latency has "

# fmt: off
CASES: list[Case] = [
    # -- wrong types in a record's fields (render) ---------------------------------------------
    Case("render-median-text", B, RENDER, KEYED + "latency_ms.median 'abc', not a number",
         (results("latency_ms.median", "abc"),)),
    Case("render-median-nan", B, RENDER, "latency_ms.median is nan, expected a finite number",
         (results(raw="__NAN__"),)),
    Case("render-p90-infinity", B, RENDER, LINE2 + "latency_ms.p90 is inf",
         (results(raw="__INF__"),)),
    Case("render-median-zero", B, RENDER, LINE2 + "latency_ms.median is 0",
         (results("latency_ms.median", 0),)),
    Case("render-median-negative", B, RENDER, LINE2 + "latency_ms.median is -1",
         (results("latency_ms.median", -1.0),)),
    Case("render-latency-list", B, RENDER, "results.jsonl:2: ok record",
         (results("latency_ms", [1, 2]),)),
    Case("render-status-unknown", B, RENDER, "results.jsonl:2: result record has unknown status",
         (results("status", "great"),)),
    Case("render-schema-version-3", B, RENDER, "results.jsonl:2: result record has schema "
         "version 3", (results("schema_version", 3),)),
    Case("render-batch-text", B, RENDER, RECORD + "batch '1', not an integer >= 1",
         (results("batch", "1"),)),
    Case("render-batch-float", B, RENDER, RECORD + "batch 1e+300, not an integer >= 1",
         (results("batch", 1e300),)),
    Case("render-batch-bool", B, RENDER, RECORD + "batch True, not an integer >= 1",
         (results("batch", True),)),
    Case("render-batch-zero", B, RENDER, RECORD + "batch 0, not an integer >= 1", (results("batch", 0),)),
    Case("render-image-size-negative", B, RENDER, RECORD + "image_size -1, not an integer >= 0",
         (results("image_size", -1),)),
    Case("render-model-number", B, RENDER, RECORD + "model 5 (a int, not text)",
         (results("model", 5),)),
    Case("render-runtime-list", B, RENDER, RECORD + "runtime ['ort-cpu'] (a list, not text)",
         (results("runtime", ["ort-cpu"]),)),
    Case("render-stability-list", B, RENDER, LINE2 + "stability is []",
         (results("stability", []),)),
    Case("render-cov-text", B, RENDER, LINE2 + "stability.cov is 'high'",
         (results("stability.cov", "high"),)),
    Case("render-ci-one-value", B, RENDER, LINE2 + "stability.median_ci95_ms has 1 values",
         (results("stability.median_ci95_ms", [1.0]),)),
    Case("render-ci-text", B, RENDER, LINE2 + "stability.median_ci95_ms[0] is 'a'",
         (results("stability.median_ci95_ms", ["a", 2.0]),)),
    Case("render-throughput-text", B, RENDER, KEYED_RESULT + "throughput_ips 'fast', not a number",
         (results("throughput_ips", "fast"),)),
    Case("render-gflops-dict", B, RENDER, KEYED_RESULT + "gflops {}, not a number",
         (results("gflops", {}),)),
    Case("render-rss-text", B, RENDER, KEYED_RESULT + "peak_host_rss_mb '500 MB', not a number",
         (results("peak_host_rss_mb", "500 MB"),)),
    Case("render-parity-text", B, RENDER, LINE2 + "parity is 'passed'",
         (results("parity", "passed"),)),
    Case("render-parity-rel-l2-text", B, RENDER, LINE2 + "parity.rel_l2 is 'small'",
         (results("parity.rel_l2", "small"),)),
    Case("render-parity-top1-above-one", B, RENDER, LINE2 + "parity.top1 is 7",
         (results("parity.top1", 7),)),
    Case("render-parity-passed-text", B, RENDER, LINE2 + "parity.passed is 'yes'",
         (results("parity.passed", "yes"),)),
    Case("render-runner-list", B, RENDER, LINE2 + "runner is []", (results("runner", []),)),
    Case("render-peak-number", B, RENDER, LINE2 + "peak is 5", (results("peak", 5),)),
    Case("render-load-during-text", B, RENDER, LINE2 + "load.during is 'busy'",
         (results("load.during", "busy"),)),
    Case("render-load-others-text", B, RENDER, LINE2 + "load.during.others_cores is 'x'",
         (results("load.during.others_cores", "x"),)),
    Case("render-rounds-text", B, RENDER,
         LINE2 + "timing.interleaved.round_medians_ms[0] is 'a'",
         (results("timing.interleaved.round_medians_ms", ["a", 1.0]),)),
    Case("render-rounds-zero", B, RENDER,
         LINE2 + "timing.interleaved.round_medians_ms[0] is 0",
         (results("timing.interleaved.round_medians_ms", [0, 1.0]),)),
    Case("render-group-list", B, RENDER, LINE2 + "timing.interleaved.group is [1]",
         (results("timing.interleaved.group", [1]),)),
    Case("render-timing-text", B, RENDER, LINE2 + "timing is 'host'",
         (results("timing", "host"),)),
    Case("render-depth-float", B, RENDER, LINE2 + "depth is 20.5", (results("depth", 20.5),)),
    Case("render-macs-huge", B, RENDER, LINE2 + "macs is 1e+300", (results("macs", 1e300),)),
    Case("render-rss-scope-number", B, RENDER, LINE2 + "peak_host_rss_mb_scope is 3",
         (results("peak_host_rss_mb_scope", 3),)),
    Case("render-environment-cpu-text", B, RENDER, "environment.json: field cpu is 'xeon'",
         (results(env={"machine": "m", "cpu": "xeon"}),)),
    Case("render-environment-packages-list", B, RENDER,
         "environment.json: field packages is ['numpy']",
         (results(env={"machine": "m", "packages": ["numpy"]}),)),
    Case("render-environment-peaks-text", B, RENDER,
         "environment.json: field matmul_peaks.fp32 is 'fast'",
         (results(env={"machine": "m", "matmul_peaks": {"fp32": "fast"}}),)),
    # -- resource blow-ups from small inputs ---------------------------------------------------
    Case("render-5000-digit-batch", B, RENDER, "results.jsonl:2: an integer of 5,000 digits",
         (results(raw="__BIG__"),)),
    Case("render-5000-digit-environment", B, RENDER,
         "environment.json: an integer of 5,000 digits",
         (results(env='{"machine": "m", "cpu": {"usable": ' + BIG + "}}"),)),
    Case("render-deep-record", B, RENDER, "results.jsonl:2: nested too deeply",
         (results(raw=DEEP),)),
    Case("render-nested-200", B, RENDER, "results.jsonl:2: nested too deeply",
         (results(raw="__NESTED__"),)),
    Case("render-deep-environment", B, RENDER, "environment.json: nested too deeply",
         (results(env='{"machine": "m", "cpu": ' + DEEP + "}"),)),
    Case("render-duplicate-key", B, RENDER, "results.jsonl:2: key 'batch' appears twice",
         (results(raw="__DUP__"),)),
    Case("render-results-sparse-300mb", B, RENDER, "larger than the 256.0 MB",
         (results(), sparse_file("res/results.jsonl", 300 * 2**20, b"{}\n"))),
    Case("render-environment-sparse", B, RENDER, "larger than the 1.0 MB",
         (results(), sparse_file("res/environment.json", 2**30))),
    Case("render-environment-fifo", B, RENDER, "is a named pipe",
         (results(env="{}"), lambda d: (d / "res" / "environment.json").unlink(),
          a_fifo("res/environment.json"))),
    Case("render-environment-dev-zero", B, RENDER, "is a character device",
         (results(env="{}"), lambda d: (d / "res" / "environment.json").unlink(),
          a_symlink("res/environment.json", "/dev/zero"))),
    # -- compare: report.json edited by hand ---------------------------------------------------
    Case("compare-median-text", B, COMPARE, "a.json: records[1]: ok record cifar-resnet20|ort-cpu|fp32|2|32|latency has latency_ms.median",
         (report("a.json", "latency_ms.median", "x"),)),
    Case("compare-median-nan", B, COMPARE, "records[1]: field latency_ms.median is nan",
         (report("a.json", "latency_ms.median", float("nan")),)),
    Case("compare-median-zero", B, COMPARE, "records[1]: field latency_ms.median is 0",
         (report("a.json", "latency_ms.median", 0),)),
    Case("compare-ci-text", B, COMPARE, "records[1]: field stability.median_ci95_ms is 'x'",
         (report("a.json", "stability.median_ci95_ms", "x"),)),
    Case("compare-machine-unknown", B, COMPARE, "records[1]: machine 'elsewhere' is not one",
         (report("a.json", "machine", "elsewhere"),)),
    Case("compare-machine-number", B, COMPARE, "records[1]: field machine is 5",
         (report("a.json", "machine", 5),)),
    Case("compare-records-object", B, COMPARE, "'records' a list",
         (report("a.json", "", {"records": {"a": 1}}),)),
    Case("compare-machines-list", B, COMPARE, "'machines' must be an object",
         (report("a.json", "", {"machines": ["m"]}),)),
    Case("compare-record-not-object", B, COMPARE, "records[0]: a result record must be",
         (report("a.json", "", {"records": ["x"]}),)),
    Case("compare-5000-digit", B, COMPARE, "a.json: an integer of 5,000 digits",
         (report("a.json", raw='{"kind": "bench-runtimes-report", "n": ' + BIG + "}"),)),
    Case("compare-deep", B, COMPARE, "a.json: nested too deeply", (report("a.json", raw=DEEP),)),
    Case("compare-fifo", B, COMPARE, "is a named pipe", (a_fifo("a.json"),)),
    Case("compare-dev-zero", B, COMPARE, "is a character device",
         (a_symlink("a.json", "/dev/zero"),)),
    Case("compare-sparse-1gb", B, COMPARE, "larger than the 512.0 MB",
         (sparse_file("a.json", 2**30, b"{"),)),
]
# fmt: on


def _raw_lines() -> dict[str, str]:
    """Second lines that json.dumps cannot write: NaN/Infinity literals, a 5000-digit integer,
    a key given twice, 200 levels of nesting inside a real record."""
    record = json.dumps(real_sweep()[0][1])
    return {
        "__NAN__": record.replace('"median": ', '"median": NaN, "_m": ', 1),
        "__INF__": record.replace('"p90": ', '"p90": Infinity, "_p": ', 1),
        "__BIG__": record.replace('"batch": 2', f'"batch": {BIG}', 1),
        "__DUP__": record.replace('"batch": 2', '"batch": 2, "batch": 3', 1),
        "__NESTED__": record.replace('"timing": ', f'"extra": {NESTED}, "timing": ', 1),
    }


def _fill(d: Path) -> None:
    path = d / "res" / "results.jsonl"
    if path.is_file() and path.stat().st_size < 2**20:
        text = path.read_text()
        for key, line in _raw_lines().items():
            text = text.replace(key, line)
        path.write_text(text)


def _prepared(case: Case) -> Case:
    return Case(case.id, case.cli, case.argv, case.needle, (*case.setup, _fill))


CASES = [_prepared(c) for c in CASES]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAPHGEN_CACHE", str(tmp_path / "cache"))
    _, text, problem = run_case(case, tmp_path)
    assert problem is None, f"{problem}; stderr: {text[-2000:]}"


def test_case_ids_are_unique() -> None:
    assert len({c.id for c in CASES}) == len(CASES)


def test_the_unedited_records_render_and_compare(tmp_path: Path) -> None:
    """The cases' base is valid: each failure comes from its one edit."""
    from runtimes.cli import main

    results()(tmp_path)
    report("a.json")(tmp_path)
    assert main(["render", str(tmp_path / "res")]) == 0
    assert main(["compare", str(tmp_path / "a.json"), str(tmp_path / "res")]) == 0


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "--count":
        from tests.test_bad_inputs import _count

        root = Path(sys.argv[2] if len(sys.argv) > 2 else Path(__file__).parents[1]).resolve()
        with tempfile.TemporaryDirectory() as d:
            records, env = real_sweep()
            Path(d, "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
            Path(d, "environment.json").write_text(json.dumps(env))
            os.environ["REPORTS_HARDENING_SWEEP"] = d
            _count(root, 180.0, module="test_reports_hardening", cases=CASES)


# -- any one field of a real record set to any hostile value: rendered, or refused in one line --

HOSTILE = [None, "x", "", -1, 0, 0.5, 1e300, -1e300, float("nan"), float("inf"), True, [], {},
           [1, 2], {"a": 1}, 10**20, "9" * 10_000, "$\\frac{a}{b}$", "<b>&lt;</b>"]  # fmt: skip


def _leaves(value: Any, prefix: str = "") -> list[str]:
    """Every field path of a record, objects and their members alike (list items left out)."""
    if not isinstance(value, dict):
        return []
    out = []
    for k, v in value.items():
        path = f"{prefix}.{k}" if prefix else k
        out += [path, *_leaves(v, path)]
    return out


def test_any_field_of_a_real_record_set_to_a_hostile_value_renders_or_is_refused(tmp_path):
    """Hypothesis picks a field of a real interleaved record and a hostile value for it; the
    report is either made or refused with a UserError, never a crash from inside a table or a
    plot, and a refusal leaves the folder as it was. Bounded: 20 examples, no shrinking."""
    from hypothesis import HealthCheck, Phase, example, given, settings
    from hypothesis import strategies as st

    from reports.render import render
    from resnet_common.errors import UserError

    records, env = real_sweep()
    paths = sorted(set(_leaves(records[1])) - {"schema_version"})

    @settings(
        max_examples=20,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )  # fmt: skip (no shrinking: each example renders a report with its plots)
    @example("parity.reference", float("inf"), 0)  # unchecked: report.json writes it as null
    @given(st.sampled_from(paths), st.sampled_from(HOSTILE), st.integers(0, 10**6))
    def check(path: str, value: Any, n: int) -> None:
        res = tmp_path / f"r{n}"
        res.mkdir(exist_ok=True)
        edited = copy.deepcopy(records[1])
        _set(edited, path, value)
        lines = [json.dumps(records[0]), json.dumps(edited)]
        (res / "results.jsonl").write_text("\n".join(lines) + "\n")
        (res / "environment.json").write_text(json.dumps(env))
        before = sorted(p.name for p in res.iterdir())
        try:
            render([res], out=res)
        except UserError as err:
            assert "\n" not in str(err).strip() and "results.jsonl:2" in str(err)
            assert sorted(p.name for p in res.iterdir()) == before
        else:
            assert (res / "report.md").is_file()
        for p in res.iterdir():
            p.unlink()

    check()
