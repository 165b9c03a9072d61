"""Throughput mode, the load each record carries, per-precision peaks, schema 2 beside schema 1,
and the report's verdict within an accuracy budget."""

from __future__ import annotations

import json

import numpy as np
import pytest

from resnet_common.records import SCHEMA_VERSION, check_record, new_record, record_key
from runtimes import registry
from runtimes.models import resolve

SMALL = "cifar-resnet20"


def _feeds(batch: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"input": rng.standard_normal((batch, 3, 32, 32), dtype=np.float32)}


@pytest.mark.parametrize("engine", ["ort-cpu", "openvino"])
def test_a_burst_keeps_every_stream_busy_and_counts_what_completed(engine, model_cache):
    model = resolve(SMALL, cache_dir=model_cache)
    runner = registry.create(engine, model.path, threads=2, mode="throughput")
    with runner:
        runner.bind(_feeds(2))
        streams = runner.streams()
        burst = runner.burst(count=6 * streams)
        info = runner.describe()
    assert streams >= 1 and info["mode"] == "throughput" and info["streams"] == streams
    assert burst.completed >= 6 * streams
    assert len(burst.latencies_ms) == burst.completed  # one latency per request
    assert 0 < burst.steady_completed <= burst.completed
    assert 0 < burst.steady_s <= burst.wall_s
    assert burst.rate > 0


def test_engines_without_a_throughput_mode_refuse_it_with_the_reason():
    reason = registry.refusal("torch", "fp32", mode="throughput")
    assert reason is not None and "no throughput mode" in reason
    assert registry.refusal("openvino", "fp32", mode="throughput") is None


@pytest.mark.slow
def test_run_records_both_modes_the_load_and_the_precisions_peak(
    tmp_path, model_cache, monkeypatch
):
    from runtimes.cli import main as bench_main

    monkeypatch.setenv("GRAPHGEN_CACHE", str(model_cache))
    out = tmp_path / "out"
    argv = ["run", "--models", SMALL, "--runtimes", "ort-cpu,openvino,torch", "--precision",
            "fp32,int8", "--mode", "latency,throughput", "--batch", "2", "--iterations", "20",
            "--warmup", "2", "--threads", "2", "--out", str(out)]  # fmt: skip
    assert bench_main(argv) == 0
    records = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    by = {(r["runtime"], r["precision"], r["mode"]): r for r in records}
    assert len(by) == 12 and len({record_key(r) for r in records}) == 12
    assert all(r["schema_version"] == SCHEMA_VERSION for r in records)
    assert by[("torch", "fp32", "throughput")]["status"] == "skipped"
    assert by[("torch", "int8", "latency")]["status"] == "skipped"
    env = json.loads((out / "environment.json").read_text())
    assert {"fp32", "int8"} <= set(env["matmul_peaks"])  # int8 asked for: its peak measured
    for engine in ("ort-cpu", "openvino"):
        for precision in ("fp32", "int8"):
            thr = by[(engine, precision, "throughput")]
            lat = by[(engine, precision, "latency")]
            assert thr["status"] == "ok" and lat["status"] == "ok", (thr, lat)
            block = thr["throughput"]
            assert block["images"] == block["completed"] * 2 and block["streams"] >= 1
            assert thr["throughput_ips"] > 0 and thr["parity"]["passed"]
            assert "throughput" not in lat
            for r in (thr, lat):
                peak = r["peak"]
                assert peak["precision"] == precision and peak["gflops"] > 0
                assert peak["fraction"] == pytest.approx(r["gflops"] / peak["gflops"])
                load = r["load"]
                assert load["scope"] == "interleaved group" and load["usable_cores"] >= 1
                assert set(load) >= {"before", "during", "after", "oversubscribed", "busy"}
                assert load["during"]["seconds"] > 0
    report = json.loads((out / "report.json").read_text())
    from reports.ratios import paired_ratios

    kinds = {r.kind for r in paired_ratios(report)}
    assert {"engines", "precisions", "modes"} <= kinds
    precision_pairs = [r for r in paired_ratios(report) if r.kind == "precisions"]
    assert all((r.a, r.b) == ("int8", "fp32") for r in precision_pairs)
    markdown = (out / "report.md").read_text()
    assert "## Fastest within the accuracy budget" in markdown
    assert "accuracy_frontier.png" in markdown and (out / "accuracy_frontier.png").is_file()


def test_version_1_records_are_read_as_latency_mode():
    v1 = {k: v for k, v in new_record(
        model="m", runtime="ort-cpu", precision="fp32", batch=1, image_size=32, status="skipped"
    ).items() if k != "mode"}  # fmt: skip
    v1["schema_version"] = 1
    assert check_record(v1) is v1
    v2 = new_record(
        model="m", runtime="ort-cpu", precision="fp32", batch=1, image_size=32, status="skipped"
    )
    assert record_key(v1) == record_key(v2)
    thr = new_record(model="m", runtime="ort-cpu", precision="fp32", batch=1, image_size=32,
                     status="skipped", mode="throughput")  # fmt: skip
    assert record_key(thr) != record_key(v2)


def test_machine_load_monitor_reads_proc():
    from runtimes.machine_load import monitored

    with monitored(threads=64) as load:
        sum(i * i for i in range(2_000_000))
    result = load.result()
    assert result["usable_cores"] >= 1 and result["during"]["seconds"] > 0
    if result["during"]["busy_cores"] is not None:  # Linux: /proc/stat read
        assert 0 <= result["during"]["others_cores"] <= result["usable_cores"]
        assert result["oversubscribed"] is True  # 64 threads on this machine's free cores
        assert 0 <= result["during"]["steal_fraction"] <= 1


def test_matmul_peaks_measure_each_unit_with_the_engines_kernels():
    from runtimes.environment import matmul_peaks

    peaks = matmul_peaks(["int8-bf16", "bf16"], seconds=0.3, trials=1)
    assert set(peaks) == {"fp32", "bf16", "int8"}
    for entry in peaks.values():
        assert entry["gflops"] == max(entry["by"].values()) > 0
        for name in entry["by"]:  # a kernel that ran another precision is labelled with it
            assert name in ("numpy", "torch", "onnxruntime", "openvino") or "(ran " in name


def _report(records: list[dict], env: dict | None = None) -> dict:
    from reports.schema import make_report

    rows = [{**r, "machine": "m"} for r in records]
    return make_report({"m": env or {"machine": "m"}}, rows, generated_at="now")


def _ok(runtime, precision, batch, mode, ms, *, rel, passed=True, ips=None, **extra):
    r = new_record(model="resnet50", runtime=runtime, precision=precision, batch=batch,
                   image_size=224, status="ok", mode=mode, device="cpu")  # fmt: skip
    stats = dict.fromkeys(("mean", "median", "p90", "p95", "p99", "min", "max"), ms)
    r.update(latency_ms={**stats, "std": 0.0}, stability={"cov": 0.01},
             throughput_ips=ips or batch / ms * 1e3,
             parity={"rel_l2": rel, "top1": 1.0, "decisive_top1": None, "passed": passed},
             **extra)  # fmt: skip
    return r


def test_the_fastest_configuration_is_chosen_inside_the_budget():
    from reports.fastest import Budget, fastest_rows

    records = [
        _ok("ort-cpu", "fp32", 1, "latency", 40.0, rel=1e-7),
        _ok("openvino", "int8-bf16", 1, "latency", 6.0, rel=0.04),
        _ok("openvino", "int8", 1, "latency", 4.0, rel=0.5, passed=False),  # outside
        _ok("ort-cpu", "fp32", 8, "latency", 400.0, rel=1e-7),
        _ok("openvino", "int8-bf16", 8, "throughput", 30.0, rel=0.04, ips=340.0),
    ]
    rows = fastest_rows(_report(records))
    latency = next(r for r in rows if r["goal"].startswith("lowest latency"))
    assert latency["fastest within budget"].startswith("openvino · int8-bf16 · b1")
    assert latency["vs ort-cpu fp32 (same batch)"].startswith("6.67x (medians, unpaired)")
    most = next(r for r in rows if r["goal"] == "highest throughput")
    assert most["fastest within budget"] == "openvino · int8-bf16 · b8 · throughput"
    assert most["vs ort-cpu fp32 (same batch)"].startswith("17.00x")
    strict = fastest_rows(_report(records), Budget(max_rel_l2=1e-3))
    assert all("int8" not in r["fastest within budget"] for r in strict)


def test_percent_of_peak_is_the_precisions_own():
    from reports.tables import result_rows

    env = {"machine": "m", "matmul_peak_gflops": 100.0}
    own = _ok("openvino", "int8", 1, "latency", 5.0, rel=0.04, gflops=400.0,
              peak={"precision": "int8", "gflops": 2000.0, "fraction": 0.2})  # fmt: skip
    old_int8 = _ok("openvino", "int8", 1, "latency", 5.0, rel=0.04, gflops=400.0)
    old_fp32 = _ok("openvino", "fp32", 1, "latency", 5.0, rel=1e-7, gflops=50.0)
    rows = result_rows(_report([own, old_int8, old_fp32], env))
    assert [r["% peak"] for r in rows] == ["20%", "-", "50%"]


def test_a_busy_machine_is_said_beside_the_verdict():
    from reports.fastest import load_caveat

    busy = {"usable_cores": 2, "oversubscribed": True, "busy": True,
            "during": {"others_cores": 1.4, "loadavg_1m_mean": 5.1}}  # fmt: skip
    quiet = {"usable_cores": 2, "oversubscribed": False, "busy": False,
             "during": {"others_cores": 0.1, "loadavg_1m_mean": 0.3}}  # fmt: skip
    text = load_caveat(_report([_ok("ort-cpu", "fp32", 1, "latency", 4.0, rel=1e-7, load=busy)]))
    assert "busy" in text and "1.4" in text and "may not hold" in text
    assert "oversubscribed" in text
    assert (
        load_caveat(_report([_ok("ort-cpu", "fp32", 1, "latency", 4.0, rel=1e-7, load=quiet)]))
        == ""
    )
