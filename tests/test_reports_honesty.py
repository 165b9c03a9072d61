"""What the report says, checked against what was measured (issue 23), and the report's
robustness to names and installs (issue 21): a model file named like mathtext, a `pip install .`
without matplotlib, the verdict's speedup inside its own interval, precision ratios, shared bar
scales, a log depth axis, Markdown that reads as typed, RSS labelled by its scope, and what
top-1 agreement on a few random images means. Real sweeps on onnxruntime and OpenVINO where the
numbers matter; hand-made records where only the shape does."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from reports.render import _md_cell, render, to_markdown
from reports.schema import load_report, make_report
from tests.test_reports_render import _report, record

ROOT = Path(__file__).resolve().parents[1]
QUICK = ["--warmup", "1", "--iterations", "8"]


def bench(argv: list[str]) -> int:
    from runtimes.cli import main

    return main(argv)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A real interleaved sweep: ResNet-20 on onnxruntime and OpenVINO, fp32 and int8."""
    out = tmp_path_factory.mktemp("sweep") / "out"
    argv = ["run", "--models", "cifar-resnet20", "--runtimes", "ort-cpu,openvino"]
    assert bench([*argv, "--precision", "fp32,int8", *QUICK, "--out", str(out)]) == 0
    return load_report(out / "report.json") | {"_out": out}


# -- names and installs -------------------------------------------------------------------------


def test_a_model_file_named_like_mathtext_is_measured_and_reported(tmp_path, monkeypatch):
    """matplotlib read `$\\foo$` as math and the report crashed after the sweep had measured."""
    from graphgen.onnx_io import build_file
    from graphgen.spec import variant

    monkeypatch.setenv("GRAPHGEN_CACHE", str(tmp_path / "cache"))
    name = tmp_path / "r$\\foo$.onnx"
    build_file(variant("cifar-resnet20"), name)
    out = tmp_path / "out"
    argv = ["run", "--models", str(name), "--runtimes", "ort-cpu", "--batch", "1,2"]
    assert bench([*argv, "--no-parity", *QUICK, "--out", str(out)]) == 0
    assert {"latency_per_engine.png", "throughput_vs_batch.png"} <= {
        p.name for p in out.glob("*.png")
    }
    md = (out / "report.md").read_text()
    assert "r\\$\\\\foo\\$.onnx" in md  # Markdown (GitHub math too) shows it as typed
    assert "r$\\foo$.onnx" in (out / "report.html").read_text()


BLOCKER = '''
import sys


class _NoMatplotlib:
    """`pip install .` without the reports extra: matplotlib cannot be imported."""

    def find_spec(self, name, path=None, target=None):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _NoMatplotlib())
'''


def test_without_matplotlib_run_writes_the_report_and_names_the_extra(tmp_path):
    """The sweep measured, then died writing the report. Now the tables are written without
    plots and one line names the extra that brings matplotlib (read from pyproject.toml)."""
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reports_extra = extras["optional-dependencies"]["reports"]
    assert any(req.startswith("matplotlib") for req in reports_extra)
    (tmp_path / "block").mkdir()
    (tmp_path / "block" / "sitecustomize.py").write_text(BLOCKER)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path / "block"), str(ROOT)]),
        "GRAPHGEN_CACHE": str(tmp_path / "cache"),
    }
    probe = subprocess.run(
        [sys.executable, "-c", "import matplotlib"], env=env, capture_output=True, text=True
    )
    assert probe.returncode != 0 and "No module named 'matplotlib'" in probe.stderr
    out = tmp_path / "out"
    code = "import sys; from runtimes.cli import main; sys.exit(main(sys.argv[1:]))"
    argv = ["run", "--models", "cifar-resnet20", "--runtimes", "ort-cpu", *QUICK]
    done = subprocess.run(
        [sys.executable, "-c", code, *argv, "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    said = [line for line in done.stderr.splitlines() if "matplotlib" in line]
    assert len(said) == 1 and "pip install 'resnet-graphgen[reports]'" in said[0], said
    md = (out / "report.md").read_text()
    assert "## Results" in md and "None: matplotlib is not installed" in md
    assert not list(out.glob("*.png"))
    assert "data:image/png" not in (out / "report.html").read_text()
    assert load_report(out)["records"][0]["status"] == "ok"


# -- the verdict and the ratios -----------------------------------------------------------------


def _speedups(rows: list[dict[str, str]]) -> list[tuple[float, float, float]]:
    found = []
    for row in rows:
        m = re.fullmatch(r"([\d.]+)x \[([\d.]+), ([\d.]+)\]", row["speedup"])
        if m:
            found.append(tuple(float(v) for v in m.groups()))
    return found


def _interleaved(rec: dict[str, Any], rounds: list[float], group: int = 1) -> dict[str, Any]:
    rec["timing"] = {"interleaved": {"group": group, "round_medians_ms": rounds}}
    return rec


def test_the_verdict_speedup_is_the_paired_median_inside_its_interval():
    """Issue 23's report said 1.73x with its paired interval [1.24, 1.78] (median 1.46): the
    speedup was the ratio of the two medians. Here the medians' ratio is 2x, the rounds say
    about 1.46x: the verdict says the paired figure, inside its interval."""
    from reports.tables import verdict_rows

    rounds_next = [1.46, 1.5, 1.4, 1.45, 1.6, 1.3, 1.47, 1.44, 1.48, 1.52, 1.46]
    fast = _interleaved(record("cifar-resnet20", "ort-cpu", 1, 1.0), [1.0] * 11)
    slow = _interleaved(record("cifar-resnet20", "openvino", 1, 2.0), rounds_next)
    rows = verdict_rows(_report([fast, slow]))
    [(value, lo, hi)] = _speedups(rows)
    assert rows[0]["fastest"] == "ort-cpu" and value == 1.46 and lo <= value <= hi < 2.0


def test_the_paired_verdict_orders_the_pair_by_its_rounds():
    """Medians say A is faster, every round says B is: the verdict follows the rounds, so its
    speedup is never below 1 beside an interval above it."""
    from reports.tables import verdict_rows

    a = _interleaved(record("cifar-resnet20", "ort-cpu", 1, 1.0), [2.0] * 9)
    b = _interleaved(record("cifar-resnet20", "openvino", 1, 1.1), [1.0] * 9)
    [row] = verdict_rows(_report([a, b]))
    assert row["fastest"] == "openvino" and row["speedup"] == "2.00x [2.00, 2.00]"


def test_real_sweep_verdicts_lie_inside_their_intervals(sweep):
    from reports.tables import verdict_rows

    rows = verdict_rows(sweep)
    found = _speedups(rows)
    assert len(found) == len(rows) == 2  # fp32 and int8, both engines timed together
    assert all(lo <= value <= hi for value, lo, hi in found)


def test_precision_ratios_show_in_the_default_report(sweep):
    """int8 / fp32 of each engine, paired with its interval: timed together, so said."""
    from reports.ratios import precision_rows

    rows = precision_rows(sweep)
    assert sorted(r["runtime"] for r in rows) == ["openvino", "ort-cpu"]
    for row in rows:
        assert row["A / B"] == "int8 / fp32" and row["how"].startswith("paired, ")
        lo, hi = (float(v) for v in row["95% CI"].strip("[]").split(", "))
        assert lo <= float(row["latency ratio"]) <= hi
        assert row["accuracy of A"].startswith("relL2 ")
    md = (sweep["_out"] / "report.md").read_text()
    section = md.split("## Precisions")[1].split("\n## ")[0]
    assert section.count("| int8 / fp32 |") == 2


def test_precisions_timed_apart_get_the_medians_ratio_said_as_such():
    from reports.ratios import precision_rows

    fp32 = record("cifar-resnet20", "ort-cpu", 1, 2.0)
    int8 = {**record("cifar-resnet20", "ort-cpu", 1, 1.0), "precision": "int8"}
    bf16 = {**record("cifar-resnet20", "ort-cpu", 1, 1.6), "precision": "bf16"}
    rows = precision_rows(_report([int8, fp32, bf16]))
    assert [(r["A / B"], r["latency ratio"], r["95% CI"]) for r in rows] == [
        ("bf16 / fp32", "0.800", "-"),
        ("int8 / fp32", "0.500", "-"),
    ]
    assert rows[1]["verdict"] == "int8 2.00x faster (not shown real: timed apart)"


# -- plots --------------------------------------------------------------------------------------


def _figures(draw, report: dict[str, Any]) -> list[Any]:
    from reports import plots

    seen: list[Any] = []
    with mock.patch.object(plots, "_png", lambda fig: seen.append(fig) or b"png"):
        assert draw(report) == b"png"
    return seen


def test_bar_panels_of_one_figure_share_one_latency_scale():
    from reports import plots

    fp32 = [
        record("cifar-resnet20", "ort-cpu", 1, 40.0),
        record("cifar-resnet20", "openvino", 1, 30),
    ]
    int8 = [{**r, "precision": "int8"} for r in (record("cifar-resnet20", "ort-cpu", 1, 2.0),)]
    [fig] = _figures(plots.latency_bars, _report([*fp32, *int8]))
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 2 and axes[0].get_ylim() == axes[1].get_ylim()
    assert axes[1].get_ylim()[1] > 40  # the small int8 bar on the fp32 panel's scale


def test_latency_vs_depth_is_on_a_log_axis():
    from reports import plots

    recs = [
        record("cifar-resnet20", "ort-cpu", 1, 1.0, depth=20),
        record("cifar-resnet56", "ort-cpu", 1, 3.0, depth=56),
        record("cifar-resnet20", "openvino", 1, 20.0, depth=20),
        record("cifar-resnet56", "openvino", 1, 60.0, depth=56),
    ]
    [fig] = _figures(plots.latency_vs_depth, _report(recs))
    assert [ax.get_yscale() for ax in fig.axes if ax.get_visible()] == ["log"]


# -- text ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "cell"),
    [
        ("p99 <= 5 ms", "p99 <= 5 ms"),  # was `p99 &lt;= 5 ms`
        ("R&D a < b > c", "R&D a < b > c"),
        ("<script>x</script>", "\\<script>x\\</script>"),
        ("&lt;b&gt;", "\\&lt;b\\&gt;"),
        ("[click](http://x)", "[click\\](http://x)"),
        ("r$\\foo$.onnx", "r\\$\\\\foo\\$.onnx"),
        ("a|b\nc", "a\\|b c"),
        ("resnet[v2].onnx", "resnet[v2].onnx"),
    ],
)
def test_markdown_cells_read_as_typed_and_carry_no_markup(text, cell):
    assert _md_cell(text) == cell


def test_no_html_entity_shows_in_report_md():
    row = {"model": "m", "runtime": "ort-cpu", "precision": "fp32", "scenario": "Server",
           "machine": "m", "headline": {"metric": "p99 ms", "value": 3.0}, "result": "VALID",
           "settings": {"target_qps": 100, "target_latency_ms": 10, "min_duration_ms": 100}}  # fmt: skip
    rows = [{**r, "machine": "m"} for r in [record("cifar-resnet20", "ort-cpu", 1, 1.0)]]
    report = make_report({"m": {"machine": "m"}}, rows, generated_at="now", loadgen=[row])
    md = to_markdown(report)
    assert "p99 <= 10 ms" in md
    assert not re.search(r"&(lt|gt|amp|quot);", md)


def test_rss_is_labelled_by_whose_peak_it_is():
    """Interleaved jobs share one process: its peak is every job's number. Say so, from the
    record's own scope, or for older records from their being interleaved."""
    from reports.tables import RSS_NOTE, results_note, rss_cell

    base = record("cifar-resnet20", "ort-cpu", 1, 1.0, peak_host_rss_mb=512.4)
    grouped = _interleaved(dict(base), [1.0] * 5)
    assert rss_cell(base) == "512"
    assert rss_cell({**base, "peak_host_rss_mb_scope": "this job"}) == "512"
    assert rss_cell({**base, "peak_host_rss_mb_scope": "process"}) == "512 (process)"
    assert rss_cell({**grouped, "peak_host_rss_mb_scope": "interleaved group"}).endswith(
        "(interleaved group)"
    )
    assert rss_cell(grouped) == "512 (interleaved group)"  # a record from before the field
    assert rss_cell({**grouped, "peak_host_rss_mb_scope": "this job"}) == "512"
    assert RSS_NOTE in results_note(_report([grouped])) and RSS_NOTE not in results_note(
        _report([base])
    )


def test_the_report_says_what_top1_agreement_on_a_few_random_images_means(sweep):
    md = (sweep["_out"] / "report.md").read_text()
    results = md.split("## Results")[1].split("\n## ")[0]
    assert "top1 100% of 1" in results or "top1 0% of 1" in results
    assert "on 1 seeded random image(s)" in results and "it is not accuracy" in results


def test_the_schema_page_states_the_compare_rule_the_code_applies():
    """docs/report-schema.md described `compare` as medians past the threshold alone."""
    from reports import compare

    doc = (ROOT / "docs" / "report-schema.md").read_text()
    rule = doc.split("## `compare")[1].lower()
    assert "intervals separate" in rule and "within noise" in rule
    assert "failed, skipped or missing" in rule
    assert "intervals separate" in compare.__doc__


def test_render_writes_nothing_when_a_later_record_is_bad(tmp_path):
    """The check comes first: with a report already in the folder, a bad line leaves it as it
    was (before, report.json was rewritten and the Markdown then crashed)."""
    from reports.validate import RecordError
    from tests.test_reports_render import folder, sample_records

    out = folder(tmp_path / "a", "host-a", sample_records())
    render([out], out=out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    bad = {**record("cifar-resnet20", "ort-cpu", 2, 1.0), "parity": {"rel_l2": "tiny"}}
    with open(out / "results.jsonl", "a") as f:
        f.write(json.dumps(bad) + "\n")
    with pytest.raises(RecordError, match=r"results.jsonl:6: field parity.rel_l2 is 'tiny'"):
        render([out], out=out)
    after = {p.name: p.read_bytes() for p in out.iterdir()}
    assert after.keys() == before.keys()
    assert all(after[k] == before[k] for k in before if k != "results.jsonl")


def test_every_plot_draws_dollar_text_from_any_field_literally():
    """Model, engine, precision and machine are all data: each may hold `$...$`. Every plot is
    drawn (ties between configurations included: the frontier compared records to sort them)
    and each data label comes out as typed, while matplotlib's own log ticks stay math."""
    from reports import plots

    recs = []
    for model, depth in (("r$\\foo$.onnx", 20), ("n$\\bar$", 56)):
        for runtime in ("ort$\\x$", "openvino"):
            for batch in (1, 2):
                r = record(model, runtime, batch, 1.0 + depth * batch / 10, depth=depth)
                recs.append(_interleaved({**r, "precision": "fp$32$"}, [1.0] * 6))
    report = _report(recs, machine="m$\\a$")
    assert set(plots.all_plots(report)) == set(plots.PLOTS)
    [fig] = _figures(plots.accuracy_frontier, report)
    titles = sorted(ax.get_title() for ax in fig.axes if ax.get_visible())
    assert titles == ["n\\$\\bar\\$, 32px", "r\\$\\foo\\$.onnx, 32px"]  # escaped: drawn as typed
    fig.canvas.draw()  # parses every text: a `$\foo$` read as math raises here
