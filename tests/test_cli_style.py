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
    assert sub.description and sub.format_help()  # a help text of its own


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
    assert "pip install 'resnet-graphgen[train]'" in done.stdout.replace("-\n", "-")
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
