"""A word a command does not know is named as such, with what was probably meant, before any
"is required": `graphgen build resnet50` names a network, `--depht 50` is a typo of --depth."""

from __future__ import annotations

import pytest

import graphgen.cli
import runtimes.cli
import train.cli

MAINS = {"graphgen": graphgen.cli.main, "bench-runtimes": runtimes.cli.main,
         "resnet-train": train.cli.main}  # fmt: skip


def _error(prog: str, argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        MAINS[prog](argv)
    assert exit_info.value.code == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize(
    ("argv", "meant"),
    [
        (["resnet50"], "did you mean --depth 50 for the paper's resnet50 or --arch resnet50"),
        (["resnext50_32x4d"], "did you mean --arch resnext50_32x4d?"),
        (["timm:resnet50d"], "did you mean --arch timm:resnet50d?"),
        (["cifar-plain20"], "did you mean --depth 20 --shortcut none?"),
        (["56"], "did you mean --depth 56?"),
        (["my-net.yaml"], "did you mean --spec my-net.yaml?"),
        (["--depht", "50"], "did you mean --depth?"),
    ],
)
def test_build_names_the_unknown_word_and_what_was_meant(argv, meant, capsys, tmp_path):
    err = _error("graphgen", ["build", *argv, "-o", str(tmp_path / "x.onnx")], capsys)
    assert f"unrecognized arguments: {' '.join(argv)}" in err
    assert meant in err and "required" not in err
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_word_with_nothing_close_is_named_without_a_guess(capsys):
    err = _error("graphgen", ["build", "wombat"], capsys)
    assert "unrecognized arguments: wombat (see --help)" in err


def test_several_typos_each_get_their_flag(capsys):
    err = _error("graphgen", ["build", "--depth", "20", "--famly", "x", "--sed", "1"], capsys)
    assert "--famly: did you mean --family?; --sed: did you mean --seed?" in err


def test_a_missing_choice_with_no_unknown_word_still_says_what_is_required(capsys):
    err = _error("graphgen", ["build", "--fold-bn"], capsys)
    assert "one of the arguments --depth --spec --arch --all is required" in err


@pytest.mark.parametrize(
    ("prog", "argv", "meant"),
    [
        ("resnet-train", ["--depth", "20", "--epocs", "2"], "did you mean --epochs?"),
        ("resnet-train", ["fit", "--dpeth", "20"], "did you mean --depth?"),
        ("bench-runtimes", ["run", "--modles", "resnet18"], "did you mean --models?"),
    ],
)
def test_every_command_line_suggests_the_close_flag(prog, argv, meant, capsys):
    assert meant in _error(prog, argv, capsys)
