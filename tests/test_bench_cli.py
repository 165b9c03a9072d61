"""`bench-runtimes run` and `render` from the command line: real ort-cpu, a tiny model."""

from pathlib import Path

import pytest

from runtimes.cli import main as _main


def main(argv: list[str]) -> int:
    """The CLI's exit code, whether it returned it or argparse exited with it."""
    try:
        return _main(argv)
    except SystemExit as exit:
        return int(exit.code)


TINY = ["--models", "cifar-resnet20", "--runtimes", "ort-cpu", "--iterations", "5"]
TINY += ["--warmup", "1"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--batch", "0"], "positive integer"),
        (["--batch", "1,x"], "got 'x'"),
        (["--runtimes", "nope"], "unknown runtime 'nope'"),
        (["--models", "resnet7"], "unknown model 'resnet7'"),
        (["--models", "missing.onnx"], "no such model file"),
        (["--precision", "fp8"], "unknown precision 'fp8'"),
        (["--iterations", "5", "--duration-s", "1"], "not allowed with"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, message, capsys, tmp_path):
    assert main(["run", *args, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_unwritable_out_is_exit_2(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["run", *TINY, "--out", str(blocker / "sub")]) == 2
    err = capsys.readouterr().err
    assert "cannot write to --out" in err and err.count("\n") == 1


def test_run_writes_results_reports_and_summary(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GRAPHGEN_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "res"
    assert main(["run", *TINY, "--batch", "1,2", "--no-parity", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "max-batch view" in text and "ort-cpu" in text
    for name in ("results.jsonl", "environment.json", "report.json", "report.md", "report.html"):
        assert (out / name).is_file()
    assert main(["run", *TINY, "--batch", "1,2", "--resume", "--out", str(out)]) == 0
    assert "0 result(s) this run" in capsys.readouterr().out
    assert main(["render", str(out), str(out), "--out", str(tmp_path / "r")]) == 0
    assert Path(tmp_path / "r" / "report.html").is_file()


def test_only_unavailable_engines_is_exit_2(tmp_path, capsys):
    from runtimes import registry

    gone = [n for n in ("ort-cuda", "ort-trt", "trt") if registry.availability(n) is not None]
    if not gone:
        pytest.skip("every GPU engine is usable here")
    argv = ["run", "--models", "cifar-resnet20", "--runtimes", ",".join(gone)]
    assert main([*argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no usable engine among those asked for" in err and err.count("\n") == 1
    assert not (tmp_path / "results.jsonl").exists()


def test_repeated_models_and_runtimes_run_once(tmp_path, capsys):
    argv = ["run", *TINY, "--no-parity", "--out", str(tmp_path)]
    argv[argv.index("cifar-resnet20")] = "cifar-resnet20,cifar-resnet20"
    argv[argv.index("ort-cpu")] = "ort-cpu,ort-cpu"
    assert main(argv) == 0
    assert len((tmp_path / "results.jsonl").read_text().splitlines()) == 1


def test_a_folder_with_results_is_kept_unless_resume_or_overwrite(tmp_path, capsys):
    """Rerunning into a folder that holds results (maybe `compare`'s baseline) used to replace
    them silently."""
    out = tmp_path / "res"
    argv = ["run", *TINY, "--no-parity", "--out", str(out)]
    assert main(argv) == 0
    before = (out / "results.jsonl").read_text()
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "already holds results" in err and "--overwrite" in err and err.count("\n") == 1
    assert (out / "results.jsonl").read_text() == before
    assert main([*argv, "--overwrite"]) == 0
    assert main([*argv, "--overwrite", "--resume"]) == 2


def test_without_a_terminal_progress_is_plain_lines_and_the_report_says_how_to_reproduce(
    tmp_path, capsys
):
    out = tmp_path / "res"
    assert main(["run", *TINY, "--no-parity", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "[1/1] cifar-resnet20 · ort-cpu · fp32 · batch 1: ok, median" in err
    md = (out / "report.md").read_text()
    assert "bench-runtimes run --models cifar-resnet20 --runtimes ort-cpu" in md
