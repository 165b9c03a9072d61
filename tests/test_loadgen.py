"""`bench-runtimes loadgen`: MLPerf LoadGen driving ort-cpu on a CIFAR ResNet-20, with short
minimum durations. LoadGen itself decides VALID/INVALID; the test checks that its logs exist,
that our report shows its numbers, and that LoadGen's own latency statistics are sane."""

from __future__ import annotations

import importlib.util
import json

import pytest

from reports.schema import load_report
from runtimes.cli import main

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("mlperf_loadgen") is None,
    reason="MLPerf LoadGen not installed (pip install mlcommons-loadgen)",
)


def test_singlestream_offline_and_server_through_loadgen(tmp_path, capsys):
    out = tmp_path / "lg"
    rc = main(
        [
            "loadgen", "--models", "cifar-resnet20", "--runtimes", "ort-cpu",
            "--scenario", "SingleStream,Offline,Server", "--min-duration-ms", "600",
            "--min-query-count", "20", "--batch", "4", "--target-qps", "30",
            "--threads", "1", "--out", str(out),
        ]
    )  # fmt: skip
    assert rc == 0
    rows = [json.loads(line) for line in (out / "loadgen.jsonl").read_text().splitlines()]
    assert [r["scenario"] for r in rows] == ["SingleStream", "Offline", "Server"]
    for r in rows:
        assert "error" not in r, r.get("error")
        assert r["result"] in ("VALID", "INVALID")
        for log in r["logs"].values():
            assert (tmp_path / log).exists() or __import__("pathlib").Path(log).exists()
        summary = r["summary"]
        assert summary["Scenario"] == r["scenario"] and summary["Mode"] == "PerformanceOnly"
        assert 0 < summary["Min latency (ns)"] <= summary["Max latency (ns)"]
    single, offline, server = rows
    assert single["headline"]["metric"] == "p90 latency ms" and single["headline"]["value"] > 0
    assert offline["headline"]["metric"] == "samples/s" and offline["headline"]["value"] > 0
    assert server["settings"]["target_qps"] == 30
    assert server["headline"]["value"] > 0
    report = load_report(out / "report.json")
    assert len(report["loadgen"]) == 3
    md = (out / "report.md").read_text()
    assert "## MLPerf LoadGen" in md and "p90 latency ms" in md and "Server" in md


def test_unknown_scenario_is_bad_input(tmp_path, capsys):
    rc = main(["loadgen", "--scenario", "Streaming", "--out", str(tmp_path / "x")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "unknown scenario 'Streaming'" in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists()
