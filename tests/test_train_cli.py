"""resnet-train's command line: one-line errors for user mistakes, --resume's flags, recipes."""

from __future__ import annotations

import json

import pytest

# ruff: noqa: E402
# Everything below needs torch (directly or through train/): without it the module is
# skipped, so that `pytest -m gpu` still collects where torch is missing.
pytest.importorskip("torch")

from train import cli
from train.cli import fit
from train.data import step_seed
from train.recipe import Recipe, cifar_recipe, scaled_to_epochs

TINY_ARGS = ["--depth", "8", "--image-size", "16", "--synthetic-train", "64", "--synthetic-val",
             "32", "--batch-size", "32", "--workers", "0", "--quiet"]  # fmt: skip


def _one_line_error(capsys, argv) -> str:
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    return err


def _parse_error(capsys, argv) -> str:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert len(err.strip().splitlines()) == 1, err
    return err


def test_user_milestones_are_not_rescaled():
    recipe = cifar_recipe(20).replace(milestones=[100, 200], scale_milestones=False, epochs=10)
    scaled = scaled_to_epochs(recipe, epochs=10, iters_per_epoch=15)
    assert scaled.milestones == (100, 200) and scaled.max_iters == 150
    default = scaled_to_epochs(cifar_recipe(20), epochs=10, iters_per_epoch=16)
    assert default.milestones == (80, 120)  # 50% and 75% of 160


def test_cli_keeps_user_milestones_with_epochs(tmp_path):
    args = fit.make_parser().parse_args(
        [*TINY_ARGS, "--epochs", "10", "--milestones", "100,200", "--out", str(tmp_path / "r")]
    )
    recipe = fit.config_from_args(args).recipe
    assert recipe.milestones == (100, 200) and not recipe.scale_milestones
    assert scaled_to_epochs(recipe, epochs=10, iters_per_epoch=15).milestones == (100, 200)


def test_epochs_with_max_iters_is_refused(tmp_path, capsys):
    err = _one_line_error(
        capsys, [*TINY_ARGS, "--epochs", "2", "--max-iters", "5", "--out", str(tmp_path / "r")]
    )
    assert "--epochs or --max-iters, not both" in err


def test_max_iters_alone_counts_iterations(tmp_path):
    args = fit.make_parser().parse_args([*TINY_ARGS, "--max-iters", "5", "--out", str(tmp_path)])
    recipe = fit.config_from_args(args).recipe
    assert recipe.max_iters == 5 and recipe.epochs is None


@pytest.mark.parametrize(
    "flag, value, needle",
    [
        ("--momentum", "-1", "--momentum must be in [0, 1)"),
        ("--momentum", "1", "--momentum must be in [0, 1)"),
        ("--weight-decay", "-1", "--weight-decay must be >= 0"),
        ("--gamma", "0", "--gamma must be in (0, 1]"),
        ("--gamma", "2", "--gamma must be in (0, 1]"),
        ("--lr", "0", "--lr must be positive"),
        ("--milestones", "200,100", "--milestones must be positive"),
        ("--milestones", "0,100", "--milestones must be positive"),
        ("--warmup-lr", "-0.1", "--warmup-lr must be positive"),
    ],
)
def test_bad_recipe_values_are_one_line_errors(tmp_path, capsys, flag, value, needle):
    err = _one_line_error(
        capsys, [*TINY_ARGS, "--epochs", "1", flag, value, "--out", str(tmp_path / "r")]
    )
    assert needle in err
    assert not (tmp_path / "r").exists()


def test_negative_workers_is_a_usage_error(tmp_path, capsys):
    err = _parse_error(capsys, [*TINY_ARGS, "--workers", "-1", "--out", str(tmp_path)])
    assert "--workers" in err and ">= 0" in err


def test_recipe_validates_itself():
    with pytest.raises(Exception, match="--epochs must be"):
        Recipe(epochs=0)
    with pytest.raises(Exception, match="--max-iters must be"):
        Recipe(max_iters=0)
    Recipe(milestones=(1, 1), max_iters=2)  # a scaled short run may put both drops together


def test_resume_refuses_flags_it_does_not_honour(tmp_path, capsys):
    run = tmp_path / "r1"
    assert cli.main([*TINY_ARGS, "--epochs", "1", "--out", str(run)]) == 0
    err = _one_line_error(
        capsys, ["--resume", str(run), "--lr", "5", "--batch-size", "7", "--depth", "56"]
    )
    assert "--depth, --batch-size, --lr not allowed with --resume" in err
    assert "--quiet" in err
    err = _one_line_error(capsys, ["--resume", str(run), "--max-iters", "9"])
    assert "counts epochs" in err
    assert cli.main(["--resume", str(run), "--epochs", "2", "--workers", "0", "--quiet"]) == 0
    assert json.loads((run / "summary.json").read_text())["epochs"] == 2
    capsys.readouterr()
    assert cli.main(["--resume", str(run), "--epochs", "2", "--workers", "0"]) == 0
    out = capsys.readouterr().out
    assert "had already finished (2 epochs" in out and "--epochs 12" in out, out
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2


def _records(losses, lrs):
    return [
        {"epoch": i, "train_loss": loss, "train_error": 0.5, "val_error": 0.5, "val_loss": loss,
         "lr": lr}
        for i, (loss, lr) in enumerate(zip(losses, lrs, strict=True))
    ]  # fmt: skip


def test_curve_marks_lr_drops_and_divergence(tmp_path):
    from train import metrics

    calm = _records([2.3, 1.9, 1.2, 1.1], [0.1, 0.1, 0.01, 0.001])
    assert metrics.lr_drops(calm) == [(3, pytest.approx(10)), (4, pytest.approx(10))]
    assert not metrics.diverged(calm)
    assert metrics.diverged(_records([2.3, 1.9, 2.5], [0.1] * 3))
    assert metrics.diverged(_records([2.3, float("nan")], [0.1] * 2))
    metrics.plot(calm, tmp_path / "curve.png", title="t")
    assert (tmp_path / "curve.png").read_bytes()[:4] == b"\x89PNG"


def test_imagenet_depth_with_cifar_family_suggests_family(tmp_path, capsys):
    err = _one_line_error(
        capsys, ["--depth", "18", "--dataset", "synthetic", "--out", str(tmp_path)]
    )
    assert "add --family imagenet" in err and "ImageNet depths are" not in err


def test_help_documents_every_flag_and_resume(capsys):
    with pytest.raises(SystemExit):
        cli.main(["fit", "--help"])
    text = capsys.readouterr().out
    parser = fit.make_parser()
    for action in parser._actions:
        assert action.help, action.option_strings
    assert "(default: 2)" in text  # --workers
    assert "honours only --epochs" in text and "Examples:" in text
    with pytest.raises(SystemExit):  # the flat form's help is fit's
        cli.main(["--depth", "20", "--help"])
    assert capsys.readouterr().out == text


def test_help_lists_the_commands_and_the_default(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # argparse wraps help lines at the terminal's width
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "fit" in text and "experiment" in text and "Examples:" in text
    assert "the default (`resnet-train ARGS` is `resnet-train fit ARGS`)" in text


def test_export_folder_is_checked_before_training(tmp_path, capsys):
    out = tmp_path / "missing" / "m.onnx"
    err = _one_line_error(
        capsys, [*TINY_ARGS, "--epochs", "1", "--out", str(tmp_path / "r"), "--export", str(out)]
    )
    assert "--export" in err and "no folder" in err
    assert not (tmp_path / "r" / "last.pt").exists()


def test_summary_survives_a_failed_export(tmp_path, monkeypatch):
    import train.export

    def broken(*args, **kwargs):
        raise train.export.ExportCheckFailed("exported graph disagrees with torch")

    monkeypatch.setattr(train.export, "export_onnx", broken)
    argv = [*TINY_ARGS, "--epochs", "1", "--out", str(tmp_path / "r"), "--export",
            str(tmp_path / "m.onnx")]  # fmt: skip
    assert cli.main(argv) == 1
    assert json.loads((tmp_path / "r/summary.json").read_text())["epochs"] == 1


def test_rank_seeds_do_not_collide():
    """The old `seed + 1000 * rank` made seed 1000 rank 0 equal seed 0 rank 1."""
    assert step_seed(1000, 0, 0, rank=0) != step_seed(0, 0, 0, rank=1)
    assert step_seed(0, 0, 0, rank=1) != step_seed(1, 0, 0, rank=0)


def test_data_with_synthetic_is_refused(tmp_path, capsys):
    err = _one_line_error(
        capsys, ["--depth", "8", "--data", str(tmp_path), "--out", str(tmp_path / "run")]
    )
    assert "the synthetic set is built in" in err
