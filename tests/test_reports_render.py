"""Rendering and merging result folders; no engines run here (records are written by hand)."""

import json
import re
from pathlib import Path

import pytest

from reports.render import render
from reports.schema import load_report
from resnet_common.records import SCHEMA_VERSION, new_record
from runtimes.timing import summarize

EVIL = "<script>alert(1)</script>"


def record(model: str, runtime: str, batch: int, ms: float, **kw) -> dict:
    s = summarize([ms, ms * 1.01, ms * 0.99, ms * 1.02, ms, ms, ms * 1.5])
    fields = dict(
        latency_ms=s.latency_dict(),
        stability={"cov": s.cov, "median_ci95_ms": list(s.median_ci95), "unstable": s.unstable},
        throughput_ips=batch / s.median * 1e3,
        gflops=1.0,
        depth=kw.pop("depth", 20),
        macs=40_000_000,
        parity={"rel_l2": 3e-7, "top1": 1.0, "passed": True},
    )
    fields.update(kw)
    return new_record(
        model=model, runtime=runtime, precision="fp32", batch=batch, image_size=32,
        status="ok", **fields,
    )  # fmt: skip


def folder(path: Path, machine: str, records: list[dict]) -> Path:
    path.mkdir(parents=True)
    (path / "environment.json").write_text(
        json.dumps({"machine": machine, "cpu": {"model": "x"}, "matmul_peak_gflops": 50.0})
    )
    with open(path / "results.jsonl", "w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    return path


def sample_records(scale: float = 1.0) -> list[dict]:
    return [
        record("cifar-resnet20", "ort-cpu", 1, 1.0 * scale),
        record("cifar-resnet20", "ort-cpu", 8, 5.0 * scale),
        record("cifar-resnet56", "ort-cpu", 1, 3.0 * scale, depth=56),
        record(EVIL, "openvino", 1, 2.0 * scale),
        new_record(
            model="cifar-resnet20",
            runtime="openvino",
            precision="fp32",
            batch=1,
            image_size=32,
            status="failed",
            reason=f"RunnerError: <b>{EVIL}</b> & co",
        ),  # fmt: skip
    ]


def test_render_writes_three_files_with_inline_plots_and_escaped_text(tmp_path):
    out = folder(tmp_path / "a", "host-a", sample_records())
    paths = render([out], out=out)
    report = load_report(paths["json"])
    assert report["schema_version"] == SCHEMA_VERSION and len(report["records"]) == 5
    page = paths["html"].read_text()
    assert "<script" not in page.lower() and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count("data:image/png;base64,") >= 3  # depth, batch, MACs, parity heatmap
    assert "http://" not in page and "https://" not in page  # opens offline
    md = paths["md"].read_text()
    assert "| machine | model |" in md and "Max-batch view" in md and "p90 ms at batch 1" in md
    # backslash-escaped for Markdown (CommonMark renders `\<script>` as text), never bare
    assert "\\<script>" in md and not re.search(r"(?<!\\)<script", md)
    assert "unstable" in md  # CoV of the samples above is > 2.5%


def test_merge_makes_machine_a_dimension(tmp_path):
    a = folder(tmp_path / "a", "host-a", sample_records())
    b = folder(tmp_path / "b", "host-b", sample_records(scale=2.0))
    paths = render([a, b], out=tmp_path / "merged")
    report = load_report(paths["json"])
    assert set(report["machines"]) == {"host-a", "host-b"}
    assert {r["machine"] for r in report["records"]} == {"host-a", "host-b"}
    md = paths["md"].read_text()
    assert "| host-a |" in md and "| host-b |" in md


def test_same_machine_name_twice_is_kept_apart(tmp_path):
    a = folder(tmp_path / "a", "ci", sample_records())
    b = folder(tmp_path / "b", "ci", sample_records())
    report = load_report(render([a, b], out=tmp_path / "m")["json"])
    assert len(report["machines"]) == 2


def test_render_of_a_non_result_folder_is_a_user_error(tmp_path):
    from resnet_common.errors import UserError

    with pytest.raises(UserError, match="results.jsonl"):
        render([tmp_path], out=tmp_path)


def _report(records: list[dict], machine: str = "m") -> dict:
    from reports.schema import make_report

    rows = [{**r, "machine": machine} for r in records]
    env = {"machine": machine, "matmul_peak_gflops": 50.0}
    return make_report({machine: env}, rows, generated_at="now")


def test_percent_of_peak_only_for_cpu_records():
    """The peak is the host CPU's matmul rate: a GPU record's GFLOP/s over it is meaningless."""
    from reports.tables import result_rows

    cpu = record("cifar-resnet20", "ort-cpu", 1, 1.0, gflops=25.0, runner={"device": "cpu"})
    gpu = record("cifar-resnet20", "trt", 1, 1.0, gflops=900.0, runner={"device": "cuda"})
    by_runner = record("cifar-resnet20", "ort-cuda", 1, 1.0, gflops=900.0)  # registry: cuda
    rows = result_rows(_report([cpu, gpu, by_runner]))
    assert [r["% peak"] for r in rows] == ["50%", "-", "-"]


def test_image_size_is_a_column_and_a_grouping_key():
    from reports.tables import max_batch_rows, result_rows

    small = record("resnet18", "ort-cpu", 1, 1.0)
    big = {**record("resnet18", "ort-cpu", 1, 9.0), "image_size": 224}
    report = _report([small, big])
    assert [r["image"] for r in result_rows(report)] == ["32x32", "224x224"]
    rows = max_batch_rows(report)
    assert sorted((r["image"], r["p90 ms at batch 1"]) for r in rows) == [
        ("224x224", "13.500"),  # p90 of the samples `record` makes: 1.5 x median
        ("32x32", "1.500"),
    ]


def test_summary_prints_data_text_verbatim():
    """Reasons and model paths are data: "[min 1, opt 8, max 8]" must not vanish as markup and
    "[/]" must not raise MarkupError."""
    import io

    from rich.console import Console

    from reports.summary import print_summary

    failed = new_record(
        model="runs[/]x/net.onnx", runtime="trt", precision="fp32", batch=16, image_size=32,
        status="failed", reason="ProfileError: outside [min 1, opt 8, max 8]",
    )  # fmt: skip
    ok = record("runs[/]x/net.onnx", "ort-cpu", 1, 1.0, stability={"cov": 0.5})
    buf = io.StringIO()
    print_summary(_report([failed, ok]), console=Console(file=buf, width=300))
    text = buf.getvalue()
    assert "[min 1, opt 8, max 8]" in text
    assert "runs[/]x/net.onnx" in text and "runs[/]x/net.onnx ort-cpu b1" in text


def test_one_engine_keeps_its_colour_across_machines_and_machines_differ_by_style():
    """Merged plots: the colour is the engine's, the line style and hatch the machine's, so
    ort-cpu on two hosts is one colour, solid and dashed, and two engines never share one."""
    from reports.plots import _style

    a = [{**r, "machine": "host-a"} for r in sample_records() if r["status"] == "ok"]
    b = [{**r, "machine": "host-b"} for r in sample_records() if r["status"] == "ok"]
    report = {"machines": {"host-a": {}, "host-b": {}}, "records": a + b}
    style = _style(report, a + b)
    assert style["ort-cpu @ host-a"]["color"] == style["ort-cpu @ host-b"]["color"]
    assert style["ort-cpu @ host-a"]["color"] != style["openvino @ host-a"]["color"]
    assert style["ort-cpu @ host-a"]["linestyle"] != style["ort-cpu @ host-b"]["linestyle"]
    assert style["ort-cpu @ host-a"]["hatch"] != style["ort-cpu @ host-b"]["hatch"]


def test_skipped_and_failed_jobs_get_their_own_table_with_the_reason(tmp_path):
    """A reason is a sentence with a file name in it: beside twenty numeric columns it made every
    row tall and the results table wider than the page."""
    out = folder(tmp_path / "a", "host-a", sample_records())
    paths = render([out], out=out)
    page = paths["html"].read_text()
    results = page.split("<h2>Results</h2>")[1].split("<h2>")[0]
    not_measured = page.split("<h2>Skipped or failed</h2>")[1].split("<h2>")[0]
    assert "RunnerError" not in results and ">failed<" not in results
    assert "RunnerError: &lt;b&gt;" in not_measured and '<tr class="failed">' in not_measured
    assert '<td class="text">RunnerError' in not_measured  # free text wraps, numbers do not
    assert "## Skipped or failed" in paths["md"].read_text()


def test_the_verdict_says_when_the_results_under_it_are_unstable(tmp_path):
    """The warning at the bottom of the page is too late: the caveat sits under the verdict."""
    out = folder(tmp_path / "a", "host-a", sample_records())  # every sample's CoV is > 2.5%
    page = render([out], out=out)["html"].read_text()
    verdict = page.split("<h2>Verdict</h2>")[1].split("<h2>")[0]
    assert "4 of 4 results are unstable" in verdict
    steady = record("cifar-resnet20", "ort-cpu", 1, 1.0, stability={"cov": 0.01})
    quiet = folder(tmp_path / "b", "host-b", [steady])
    page = render([quiet], out=quiet)["html"].read_text()
    assert "unstable" not in page.split("<h2>Verdict</h2>")[1].split("<h2>")[0]


def test_parity_colour_scale_reaches_the_tolerance():
    """Errors 100x under the tolerance must not take the top of the colour scale (they looked
    alarming in yellow); the scale spans the tolerance and marks it."""
    from unittest import mock

    from reports import plots

    good = record("cifar-resnet20", "ort-cpu", 1, 1.0, parity={"rel_l2": 4e-7, "rtol": 1e-4})
    worse = record("cifar-resnet20", "openvino", 1, 1.0, parity={"rel_l2": 8e-7, "rtol": 1e-4})
    seen = {}

    def spy(fig, image, **kw):
        seen["norm"] = image.norm
        seen["bar"] = real_colorbar(fig, image, **kw)
        return seen["bar"]

    import matplotlib.figure

    real_colorbar = matplotlib.figure.Figure.colorbar
    with mock.patch.object(matplotlib.figure.Figure, "colorbar", spy):
        assert plots.parity_heatmap(_report([good, worse])) is not None
    assert seen["norm"].vmax > 1e-4 and seen["norm"].vmin <= 4e-7
    assert [line.get_ydata()[0] for line in seen["bar"].ax.lines] == [1e-4]
