"""`resnet-train experiment`: a tiny degradation run end to end, and one-line bad-input errors.

These check that the report is consistent with the runs' metrics, never the scientific outcome.
"""

from __future__ import annotations

import json

import pytest

# ruff: noqa: E402
# Everything below needs torch (directly or through train/): without it the module is
# skipped, so that `pytest -m gpu` still collects where torch is missing.
pytest.importorskip("torch")


from train import cli, metrics
from train.experiments import findings

TINY = [
    "--epochs", "1", "--image-size", "8", "--synthetic-train", "64", "--synthetic-val", "32",
    "--batch-size", "32", "--workers", "0", "--quiet",
]  # fmt: skip


def _exit_code(argv: list[str]) -> int:
    """The CLI's status, whether it returns it or argparse exits with it."""
    try:
        return cli.main(argv)
    except SystemExit as exit:
        return int(exit.code)


def test_tiny_degradation_report_matches_metrics(tmp_path, capsys):
    out = tmp_path / "exp"
    args = ["experiment", "degradation", "--depths", "8,14", *TINY, "--out", str(out)]
    assert cli.main(args) == 0
    for name in ("results.json", "curves.png", "report.md"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    doc = json.loads((out / "results.json").read_text())
    assert doc["experiment"] == "degradation"
    assert {(r["family"], r["depth"], r["shortcut"]) for r in doc["runs"]} == {
        ("plain", 8, "none"), ("plain", 14, "none"), ("resnet", 8, "A"), ("resnet", 14, "A"),
    }  # fmt: skip
    report = (out / "report.md").read_text()
    for run in doc["runs"]:
        records = metrics.read(out / run["name"] / metrics.METRICS)
        assert records, run["name"]
        assert run["final_train_error"] == records[-1]["train_error"]
        assert run["final_val_error"] == records[-1]["val_error"]
        assert [c["train_error"] for c in run["curves"]] == [r["train_error"] for r in records]
        row = (
            f"| {run['name']} | {run['depth']} | {run['shortcut']} | {run['params']:,} | "
            f"{100 * run['final_train_error']:.2f} | {100 * run['final_val_error']:.2f} |"
        )
        assert row in report
    # Plain and option-A nets of a depth have the same parameters (§4.2).
    params = {(r["family"], r["depth"]): r["params"] for r in doc["runs"]}
    assert params["plain", 14] == params["resnet", 14] > params["plain", 8]
    # The statements are recomputed from the stored numbers, so they cannot drift from the table.
    assert doc["findings"] == findings("degradation", doc["runs"])
    verdict = "**yes**" if doc["findings"]["degradation_appears"] else "**no**"
    assert f"trains worse than plain-8 by more than 1 point): {verdict}" in report
    # A second call reuses the finished run folders and rewrites the same report.
    assert cli.main(args) == 0
    assert (
        json.loads((out / "results.json").read_text())["runs"][0]["curves"]
        == doc["runs"][0]["curves"]
    )
    assert "reusing" in capsys.readouterr().out
    # --json: one object on stdout (the "reusing" lines go to stderr)
    assert cli.main([*args, "--json"]) == 0
    printed = capsys.readouterr()
    assert json.loads(printed.out)["findings"] == doc["findings"] and "reusing" in printed.err


@pytest.mark.parametrize(
    "args",
    [
        ["degradation", "--depths", "8,9"],
        ["degradation", "--depths", "8,x"],
        ["degradation", "--depths", "20"],
        ["degradation", "--epochs", "0"],
        ["shortcuts", "--depth", "21"],
        ["degradation", "--dataset", "cifar10"],
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path, capsys, args):
    assert _exit_code(["experiment", *args, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err


def test_unwritable_out_is_one_line_exit_2(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert cli.main(["experiment", "degradation", *TINY, "--out", str(blocker / "x")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "cannot write" in err


def test_findings_allow_one_seed_of_noise():
    def run(family, depth, err):
        return {"family": family, "depth": depth, "final_train_error": err}

    runs = [run("plain", 20, 0.10), run("plain", 56, 0.30), run("resnet", 20, 0.020)]
    within = findings("degradation", [*runs, run("resnet", 56, 0.029)])
    assert within["deeper_resnet_not_worse"] and within["residual_removes_degradation"]
    beyond = findings("degradation", [*runs, run("resnet", 56, 0.031)])
    assert not beyond["deeper_resnet_not_worse"] and not beyond["residual_removes_degradation"]
    flat = findings("degradation", [run("plain", 20, 0.10), run("plain", 56, 0.105),
                                    run("resnet", 20, 0.02), run("resnet", 56, 0.02)])  # fmt: skip
    assert not flat["degradation_appears"]
