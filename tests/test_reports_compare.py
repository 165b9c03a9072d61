"""`bench-runtimes compare`: exit 0 (no regression), 1 (regression), 2 (another schema)."""

import json

import pytest

from reports.render import render
from runtimes.cli import main
from tests.test_reports_render import folder, sample_records


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("reports")
    old = render([folder(tmp_path / "old", "ci-1", sample_records())], out=tmp_path / "old")
    same = render([folder(tmp_path / "same", "ci-2", sample_records())], out=tmp_path / "same")
    slow = render([folder(tmp_path / "slow", "ci-3", sample_records(3.0))], out=tmp_path / "slow")
    noisy = render([folder(tmp_path / "noisy", "ci-4", sample_records(1.2))], out=tmp_path / "n")
    return old["json"], same["json"], slow["json"], noisy["json"]


def test_no_regression_exits_0(reports, capsys):
    old, same, *_ = reports
    assert main(["compare", str(old), str(same)]) == 0


def test_a_3x_slowdown_is_a_regression(reports, capsys):
    old, _, slow, _ = reports
    assert main(["compare", str(old), str(slow)]) == 1
    assert "REGRESSION" in capsys.readouterr().out
    assert main(["compare", str(old), str(slow), "--threshold", "250%"]) == 0


def test_a_slowdown_inside_the_noise_does_not_fail(reports, capsys):
    """1.2x by the medians, but the samples' spread (up to 1.5x) makes the 95% intervals of the
    medians overlap: the gate says 'within noise' and passes."""
    old, _, _, noisy = reports
    assert main(["compare", str(old), str(noisy)]) == 0
    out = capsys.readouterr().out
    assert "within noise" in out and "0 regression(s)" in out


def test_a_real_timing_passes_a_shift_under_the_threshold_and_fails_a_real_slowdown(
    tmp_path, capsys
):
    """One real timing of a model, compared with itself slowed by 1.25x (under the 50% gate) and
    by 3x or more. Two separate real runs are not compared here: on this shared 2-core VM the load moves
    a median by 10-60% between runs with both intervals narrow (the earlier form of this test
    failed under load), which no unpaired gate can tell from a real change; interleaved runs and
    their paired ratios are the answer for small differences (benchmarks/interleave_noise.py)."""
    from runtimes.sweep import Sweep, SweepConfig
    from runtimes.timing import LoopConfig

    loop = LoopConfig(warmup=3, warmup_s=None, iterations=60, duration_s=None)
    config = SweepConfig(
        models=["cifar-resnet20"], runtimes=["ort-cpu"], loop=loop, out=tmp_path / "a",
        parity=False, model_cache=tmp_path / "cache",
    )  # fmt: skip
    Sweep(config).run()
    base = render([tmp_path / "a"], out=tmp_path / "a")["json"]

    def slowed(factor: float) -> str:
        doc = json.loads(base.read_text())
        for r in doc["records"]:
            r["latency_ms"] = {k: v * factor for k, v in r["latency_ms"].items()}
            ci = r["stability"]["median_ci95_ms"]
            r["stability"]["median_ci95_ms"] = [v * factor for v in ci]
        path = tmp_path / f"slow-{factor}.json"
        path.write_text(json.dumps(doc))
        return str(path)

    assert main(["compare", str(base), slowed(1.25), "--threshold", "50%"]) == 0
    # A regression needs the two intervals apart: slow it past the width of its own interval
    # (under heavy load a 60-iteration interval can span more than 3x).
    lo, hi = json.loads(base.read_text())["records"][0]["stability"]["median_ci95_ms"]
    assert main(["compare", str(base), slowed(max(3.0, 2 * hi / lo)), "--threshold", "50%"]) == 1


def test_faster_is_not_a_regression(reports):
    old, _, slow, _ = reports
    assert main(["compare", str(slow), str(old)]) == 0


def test_results_that_stopped_working_or_vanished_exit_1(tmp_path, capsys):
    records = sample_records()
    broken = [dict(r) for r in records]
    broken[1] |= {"status": "failed", "reason": "RunnerError: out of memory [min 1, opt 8]"}
    del broken[2]  # cifar-resnet56 is gone from NEW
    old = render([folder(tmp_path / "old", "ci-1", records)], out=tmp_path / "old")["json"]
    new = render([folder(tmp_path / "new", "ci-2", broken)], out=tmp_path / "new")["json"]
    assert main(["compare", str(old), str(new)]) == 1
    out = capsys.readouterr().out
    assert "ok -> failed: RunnerError: out of memory [min 1, opt 8]" in out.replace("\n", "")
    assert "ok -> missing" in out and "cifar-resnet56" in out
    assert "2 result(s) ok in OLD but failed, skipped or missing in NEW" in out
    # failed -> ok is not a loss: NEW may fix what OLD could not run
    assert main(["compare", str(new), str(old)]) == 0


@pytest.mark.parametrize(("value", "message"), [("5", "did you mean 5%?"), ("-1", "negative")])
def test_threshold_without_percent_above_1_is_rejected(reports, capsys, value, message):
    old, same, *_ = reports
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", str(old), str(same), "--threshold", value])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_other_schema_version_exits_2_with_one_line(reports, tmp_path, capsys):
    old, *_ = reports
    data = json.loads(old.read_text())
    data["schema_version"] = 999
    other = tmp_path / "v999.json"
    other.write_text(json.dumps(data))
    assert main(["compare", str(old), str(other)]) == 2
    err = capsys.readouterr().err
    assert "schema version 999" in err and err.count("\n") == 1


def test_folder_argument_reads_its_report(reports):
    old, same, *_ = reports
    assert main(["compare", str(old.parent), str(same.parent)]) == 0


def test_unrelated_reports_share_nothing_exit_2(tmp_path, capsys):
    records = sample_records()
    other = [dict(r, model=f"other-{r['model']}") for r in records]
    old = render([folder(tmp_path / "old", "ci-1", records)], out=tmp_path / "old")["json"]
    new = render([folder(tmp_path / "new", "ci-1", other)], out=tmp_path / "new")["json"]
    assert main(["compare", str(old), str(new)]) == 2
    assert "share no successful result" in capsys.readouterr().err


def test_a_folder_named_twice_is_merged_once(tmp_path):
    import json

    path = folder(tmp_path / "a", "vm", sample_records())
    out = render([path, path], out=tmp_path / "merged")["json"]
    report = json.loads(out.read_text())
    assert list(report["machines"]) == ["vm"] and len(report["records"]) == len(sample_records())
