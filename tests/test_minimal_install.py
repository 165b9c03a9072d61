"""`pip install .` without extras: every command either works or says in one line which extra to
install (exit 2), never a traceback. The packages of the extras are hidden in a child Python
(`sys.modules[name] = None`: import fails as for a real absence); scripts/check-minimal-install.sh
makes the same check in a real venv that has only `pip install .`."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from resnet_common.cli import run_main
from resnet_common.extras import EXTRA_OF_MODULE, PACKAGE_OF_MODULE, missing_extra

ROOT = Path(__file__).resolve().parents[1]
HIDE = f"import sys\nfor name in {tuple(EXTRA_OF_MODULE)!r}:\n    sys.modules[name] = None\n"
MAINS = {"graphgen": "graphgen.cli", "bench-runtimes": "runtimes.cli", "resnet-train": "train.cli"}


def _minimal(prog: str, argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    code = HIDE + f"from {MAINS[prog]} import main\nsys.exit(main({argv!r}))\n"
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=cwd,
        env={"GRAPHGEN_CACHE": str(cwd / "cache"), "PATH": "/usr/bin:/bin"},
    )


def _requirements(extra: str, extras: dict[str, list[str]]) -> list[str]:
    """The requirements an extra brings, its `resnet-graphgen[...]` references expanded."""
    out = []
    for req in extras[extra]:
        if req.startswith("resnet-graphgen["):
            for inner in req.split("[", 1)[1].rstrip("]").split(","):
                out += _requirements(inner.strip(), extras)
        else:
            out.append(req)
    return out


def test_each_known_module_names_an_extra_that_brings_it():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    for module, extra in EXTRA_OF_MODULE.items():
        package = PACKAGE_OF_MODULE.get(module, module).lower()
        assert extra in extras, f"{module}: no extra {extra!r} in pyproject.toml"
        assert any(r.lower().startswith(package) for r in _requirements(extra, extras)), (
            f"the {extra} extra does not bring {package}"
        )


def _command(func):
    def build() -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser(prog="demo")
        parser.set_defaults(func=func)
        return parser

    return build


def test_a_missing_optional_package_deep_in_a_command_is_one_line(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)

    def plots(args: argparse.Namespace) -> int:
        import matplotlib  # noqa: F401

        return 0

    assert run_main(_command(plots), []) == 2
    err = capsys.readouterr().err
    assert err == (
        "error: matplotlib is not installed: install the reports extra "
        "(pip install -e '.[reports]')\n"
    )


def test_an_import_error_of_the_project_itself_is_a_bug_and_shows():
    def broken(args: argparse.Namespace) -> int:
        import graphgen.no_such_module  # noqa: F401

        return 0

    with pytest.raises(ModuleNotFoundError):
        run_main(_command(broken), [])
    assert missing_extra(ImportError("cannot import name 'x' from 'torch'")) is None


# What a user of a minimal install runs first (README order); {d} is a scratch folder.
COMMANDS = [
    ("graphgen", ["build", "--depth", "20", "-o", "{d}/r20.onnx"]),
    ("graphgen", ["list", "--json"]),
    ("graphgen", ["info", "{d}/r20.onnx"]),
    ("graphgen", ["quantize", "{d}/r20.onnx", "-o", "{d}/q.onnx"]),
    ("graphgen", ["import", "{d}/r20.onnx", "-o", "{d}/imported.onnx"]),
    ("resnet-train", ["--help"]),
    ("resnet-train", ["--depth", "20", "--dataset", "synthetic", "--out", "{d}/run"]),
    ("resnet-train", ["experiment", "shortcuts", "--out", "{d}/x"]),
    ("bench-runtimes", ["list"]),
    ("bench-runtimes", ["run", "--runtimes", "ort-cpu", "--out", "{d}/b0"]),
    (
        "bench-runtimes",
        [
            "run",
            "--models",
            "cifar-resnet20",
            "--iterations",
            "3",
            "--warmup",
            "1",
            "--out",
            "{d}/b1",
        ],
    ),  # fmt: skip
    ("bench-runtimes", ["loadgen", "--models", "cifar-resnet20", "--runtimes", "onnx-ref"]),
]


@pytest.mark.slow
def test_every_command_of_a_minimal_install_works_or_names_what_to_install(tmp_path):
    for prog, argv in COMMANDS:  # in order: info and quantize read what build wrote
        args = [a.format(d=tmp_path) for a in argv]
        done = _minimal(prog, args, tmp_path)
        shown = f"{prog} {' '.join(args)}: exit {done.returncode}\n{done.stderr[-2000:]}"
        assert "Traceback" not in done.stderr, shown
        assert done.returncode in (0, 2), shown
        if done.returncode == 2:
            lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
            assert len(lines) == 1, shown
            assert "install" in lines[0] or "cannot run" in lines[0], shown
