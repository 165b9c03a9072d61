"""The Python API (graphgen.build/load/import_model/info, runtimes.check_parity/run): the README's
example runs as written, the API and the command lines make the same files, and importing the
packages loads no engine."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import graphgen
import runtimes
from graphgen.cli import main as graphgen_main
from resnet_common.errors import UserError

README = Path(__file__).resolve().parents[1] / "README.md"


def _readme_example() -> str:
    section = README.read_text().split("## Python API", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "the Python API section holds one example"
    return blocks[0]


def test_the_readme_example_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GRAPHGEN_CACHE", str(tmp_path / "cache"))
    exec(compile(_readme_example(), "README.md (Python API)", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert printed[:3] == ["272474", "logits", "onnx-source verified: rel. L2 0 against r20-b.onnx"]
    median, html = printed[3].split()
    assert float(median) > 0 and Path(html) == Path("bench-demo/report.html")
    assert (tmp_path / "r20-copy.onnx").is_file() and (tmp_path / html).is_file()


def test_build_makes_the_bytes_the_command_makes(tmp_path):
    cli = tmp_path / "cli.onnx"
    argv = ["build", "--depth", "14", "--shortcut", "C", "--dtype", "fp16", "--seed", "3"]
    assert graphgen_main([*argv, "-o", str(cli)]) == 0
    api = graphgen.build(14, shortcut="C", dtype="fp16", seed=3, output=tmp_path / "api.onnx")
    assert api == tmp_path / "api.onnx" and api.read_bytes() == cli.read_bytes()
    in_memory = graphgen.build(14, shortcut="C", dtype="float16", seed=3)
    assert in_memory.SerializeToString() == graphgen.load(cli).SerializeToString()


def test_build_takes_an_arch_as_the_command_does(tmp_path):
    cli = tmp_path / "cli.onnx"
    argv = ["build", "--arch", "timm:resnet18d", "--image-size", "32", "--classes", "3"]
    assert graphgen_main([*argv, "-o", str(cli)]) == 0
    api = graphgen.build(arch="timm:resnet18d", image_size=32, classes=3)
    assert api.SerializeToString() == graphgen.load(cli).SerializeToString()


def test_api_errors_are_the_commands_typed_errors(tmp_path):
    with pytest.raises(UserError, match="6n\\+2"):
        graphgen.build(17)
    with pytest.raises(UserError, match="give a depth, a spec or an arch"):
        graphgen.build()
    with pytest.raises(UserError, match="unknown architecture 'resnet51'"):
        graphgen.build(arch="resnet51")
    with pytest.raises(TypeError, match="widths"):
        graphgen.build(20, widths=[8, 16, 32])  # a spec file's key, not a build flag
    with pytest.raises(UserError, match="no such file"):
        graphgen.load(tmp_path / "missing.onnx")
    with pytest.raises(UserError, match="unknown runtime 'nope'"):
        runtimes.check_parity("cifar-resnet20", runtimes=["nope"])
    with pytest.raises(TypeError, match="'iteration'"):
        runtimes.run("cifar-resnet20", iteration=3)


def test_importing_the_packages_loads_no_engine():
    code = (
        "import sys, graphgen, runtimes\n"
        "graphgen.build(8)\n"
        "assert callable(runtimes.run) and callable(runtimes.check_parity)\n"
        "print(sorted(m for m in ('torch', 'onnxruntime', 'openvino') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "[]"
