"""The three command lines share one style (resnet_common.cli): a registration list of command
modules, each with `register(subparsers)` and `run(args)`; --help that works without the optional
packages and says what to install; the same flags spelt the same way."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

import graphgen.cli
import runtimes.cli
import train.cli
from resnet_common.cli import OneLineParser

CLIS = {"graphgen": graphgen.cli, "bench-runtimes": runtimes.cli, "resnet-train": train.cli}
MODULES = [(prog, m) for prog, cli in CLIS.items() for m in cli.COMMANDS]
# Import names of the optional packages: none of them may be needed to show --help.
OPTIONAL = ("torch", "safetensors", "onnxruntime", "openvino", "matplotlib", "mlperf_loadgen")
HIDE = f"import sys\nfor name in {OPTIONAL!r}:\n    sys.modules[name] = None  # import fails\n"


def _hidden(prog: str, argv: list[str]) -> subprocess.CompletedProcess[str]:
    """`prog argv` in a fresh interpreter where the optional packages cannot be imported."""
    code = HIDE + f"from {CLIS[prog].__name__} import main\nsys.exit(main({argv!r}))\n"
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.parametrize(("prog", "module"), MODULES, ids=[m.__name__ for _, m in MODULES])
def test_each_command_registers_alone_and_runs_its_own_run(prog, module):
    parser: argparse.ArgumentParser = OneLineParser(prog=prog)
    sub = module.register(parser.add_subparsers())
    assert isinstance(sub, argparse.ArgumentParser)
    assert sub.get_default("func") is module.run
    assert sub.description and "Examples:\n  " in sub.epilog  # help that teaches


@pytest.mark.parametrize("prog", CLIS)
def test_help_needs_no_optional_package(prog):
    done = _hidden(prog, ["--help"])
    assert done.returncode == 0, done.stderr
    for module in CLIS[prog].COMMANDS:
        name = module.register(argparse.ArgumentParser().add_subparsers()).prog.split()[-1]
        assert f"\n    {name}" in done.stdout  # listed, whether it can run here or not


def test_resnet_train_without_torch_says_what_to_install():
    done = _hidden("resnet-train", ["--help"])
    assert "needs torch and safetensors (not installed here)" in " ".join(done.stdout.split())
    assert "install the train extra (pip install -e '.[train]')" in " ".join(done.stdout.split())
    for argv in (["--depth", "20", "--out", "run"], ["experiment", "shortcuts", "--out", "x"]):
        done = _hidden("resnet-train", argv)
        assert done.returncode == 2 and done.stdout == ""
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
        assert "needs torch" in done.stderr and "pip install" in done.stderr
    done = _hidden("resnet-train", ["fit", "--help"])
    assert done.returncode == 0 and "Needs torch" in done.stdout


@pytest.mark.parametrize("prog", CLIS)
def test_version(prog, capsys):
    with pytest.raises(SystemExit) as exit_info:
        CLIS[prog].main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith(f"{prog} ")


# --- --json: one JSON document on stdout, nothing else there --------------------------------


def _json(main, argv: list[str], capsys, code: int = 0):
    """Run `main(argv)` and read its stdout as one JSON document (json.loads refuses any text
    before or after it)."""
    import json

    assert main([*argv, "--json"]) == code, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def test_graphgen_commands_print_json(tmp_path, capsys):
    from onnx import numpy_helper
    from safetensors.numpy import save_file

    from graphgen.onnx_io import load

    main = graphgen.cli.main
    model = tmp_path / "r8.onnx"
    built = _json(main, ["build", "--depth", "8", "--image-size", "16", "-o", str(model)], capsys)
    assert built["path"] == str(model) and built["name"] == "cifar-resnet8"
    assert built["depth"] == 8 and built["spec"]["layers"] == [1, 1, 1]
    info = _json(main, ["info", str(model)], capsys)
    assert info["params"] == built["params"] and info["graphgen"]["spec"] == built["spec"]
    assert any(row["name"] == "resnet50" for row in _json(main, ["list"], capsys))
    weights = tmp_path / "w.safetensors"  # the graph's own weights, by name
    arrays = {t.name: numpy_helper.to_array(t) for t in load(model).graph.initializer}
    save_file(arrays, weights)
    injected = _json(
        main, ["inject", str(model), "--weights", str(weights), "-o", str(tmp_path / "i.onnx")],
        capsys,
    )  # fmt: skip
    assert injected["tensors"] == len(arrays) and injected["path"] == str(tmp_path / "i.onnx")
    imported = _json(main, ["import", str(model), "-o", str(tmp_path / "m.onnx")], capsys)
    assert imported["checked"] == "onnx-source" and imported["check"].startswith("verified")
    quantized = _json(main, ["quantize", str(model), "-o", str(tmp_path / "q.onnx")], capsys)
    assert quantized["path"] == str(tmp_path / "q.onnx") and quantized["calibration_images"] > 0


def test_bench_runtimes_commands_print_json(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GRAPHGEN_CACHE", str(tmp_path / "cache"))
    main = runtimes.cli.main
    engines = _json(main, ["list"], capsys)
    assert {"ort-cpu", "torch"} <= {e["name"] for e in engines}
    tiny = ["--models", "cifar-resnet20", "--runtimes", "ort-cpu", "--image-size", "16"]
    report = _json(main, ["parity", *tiny, "--precision", "float32"], capsys)  # float32 is fp32
    assert report["passed"] and report["models"][0]["precision"] == "fp32"
    out = tmp_path / "res"
    timed = ["--iterations", "3", "--warmup", "1", "--no-parity", "--out", str(out)]
    done = _json(main, ["run", *tiny, *timed], capsys)
    assert [r["status"] for r in done["records"]] == ["ok"]
    assert done["report"]["json"] == str(out / "report.json") and done["skipped"] == {}
    rendered = _json(main, ["render", str(out), "--out", str(tmp_path / "r")], capsys)
    assert rendered["html"] == str(tmp_path / "r" / "report.html")
    compared = _json(main, ["compare", str(out), str(tmp_path / "r")], capsys)
    assert compared["passed"] and compared["changes"][0]["verdict"] == "ok"
    assert compared["changes"][0]["change"] == 0 and compared["lost"] == []


def test_resnet_train_prints_json(tmp_path, capsys):
    tiny = ["--depth", "8", "--image-size", "8", "--synthetic-train", "64", "--synthetic-val",
            "32", "--batch-size", "32", "--workers", "0", "--epochs", "1"]  # fmt: skip
    done = _json(train.cli.main, [*tiny, "--out", str(tmp_path / "run")], capsys)
    assert done["run_dir"] == str(tmp_path / "run") and done["epochs"] == 1
    assert 0 <= done["best_val_error"] <= 1 and done["export"] is None
    # experiment --json: tests/test_experiments.py, where the runs exist already


def test_old_spellings_are_accepted_and_not_shown(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    build = graphgen.cli.make_parser().parse_args
    assert build(["build", "--depth", "20", "--dataset", "cifar10"]).family == "cifar10"
    assert build(["build", "--depth", "20", "--dtype", "fp16"]).dtype == "float16"
    exp = train.cli.make_parser().parse_args
    old = exp(["experiment", "shortcuts", "--train-size", "7", "--val-size", "3", "--out", "x"])
    new = exp(["experiment", "shortcuts", "--synthetic-train", "7", "--synthetic-val", "3",
               "--out", "x"])  # fmt: skip
    assert vars(old) == vars(new)
    bench = runtimes.cli.make_parser().parse_args
    assert bench(["run", "--precision", "float16,fp32"]).precision == ["fp16", "fp32"]
    assert bench(["loadgen", "--precision", "float16"]).precision == "fp16"
    for prog, argv, hidden in [
        ("graphgen", ["build", "--help"], "--dataset"),
        ("resnet-train", ["experiment", "shortcuts", "--help"], "--train-size"),
    ]:
        with pytest.raises(SystemExit):
            CLIS[prog].main(argv)
        assert hidden not in capsys.readouterr().out
