"""resnet-train on CPU: learning on the synthetic set, exact resume, export parity, bad data."""

from __future__ import annotations

import json
import pickle
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from graphgen.spec import spec_for_depth
from train import cli
from train.data import synthetic_data
from train.export import export_onnx
from train.loop import TrainConfig, fit
from train.model import build_model
from train.recipe import Recipe

TINY = spec_for_depth(8, "cifar10", image_size=16)


def tiny_config(out, **changes) -> TrainConfig:
    epochs = changes.pop("epochs", 2)
    recipe = Recipe(batch_size=32, epochs=epochs, val_split=0, schedule="constant", lr=0.05)
    base = dict(
        spec=TINY, dataset="synthetic", out=out, recipe=recipe, synthetic_train=256,
        synthetic_val=128, workers=0, progress=False,
    )  # fmt: skip
    base.update(changes)
    return TrainConfig(**base)


def test_synthetic_data_is_deterministic_and_balanced():
    a = synthetic_data(train=200, val=50, classes=10, image_size=16, seed=0)
    b = synthetic_data(train=200, val=50, classes=10, image_size=16, seed=0)
    assert torch.equal(a.train.images, b.train.images)
    assert a.train.images.dtype == torch.uint8 and a.train.images.shape == (200, 3, 16, 16)
    assert len(set(a.train.labels.tolist())) == 10


def test_short_synthetic_run_learns(tmp_path):
    """Chance is 90% error; a ResNet-8 on 384 16x16 images gets far below it in seconds."""
    tic = time.perf_counter()
    config = tiny_config(tmp_path / "run", epochs=4, synthetic_train=384, synthetic_val=128)
    result = fit(config)
    assert time.perf_counter() - tic < 60
    assert result.best_val_error < 0.5, result.records
    records = [
        json.loads(line) for line in (tmp_path / "run/metrics.jsonl").read_text().splitlines()
    ]
    assert [r["epoch"] for r in records] == list(range(4))
    assert {"train_loss", "train_error", "val_error", "lr", "images_per_s"} <= set(records[0])
    assert (tmp_path / "run/curve.png").read_bytes()[:4] == b"\x89PNG"
    data = json.loads((tmp_path / "run/data.json").read_text())
    assert len(data["mean"]) == 3 and len(data["std"]) == 3
    weights = load_file(tmp_path / "run/best.safetensors")
    assert set(weights) == set(build_model(TINY).state_dict()) - {
        k for k in build_model(TINY).state_dict() if k.endswith("num_batches_tracked")
    }


def test_resume_continues_exactly(tmp_path):
    """2 epochs straight == 1 epoch, then resume to 2: weights, optimizer, schedule, RNG."""
    straight = fit(tiny_config(tmp_path / "a", epochs=2))
    fit(tiny_config(tmp_path / "b", epochs=1))
    config = TrainConfig.from_dict(json.loads((tmp_path / "b/config.json").read_text()))
    config.recipe = config.recipe.replace(epochs=2)
    resumed = fit(config, resume=True)
    a, b = load_file(tmp_path / "a/last.safetensors"), load_file(tmp_path / "b/last.safetensors")
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0)
    assert [r["epoch"] for r in resumed.records] == [0, 1]
    assert resumed.records[1]["train_loss"] == straight.records[1]["train_loss"]


def test_existing_run_is_not_overwritten(tmp_path, capsys):
    fit(tiny_config(tmp_path / "run", epochs=1))
    argv = ["--depth", "8", "--image-size", "16", "--synthetic-train", "64", "--out",
            str(tmp_path / "run"), "--epochs", "1"]  # fmt: skip
    assert cli.main(argv) == 2
    assert "--resume" in capsys.readouterr().err


@pytest.mark.parametrize("fold", [False, True])
def test_export_parity(tmp_path, fold):
    torch.manual_seed(0)
    model = build_model(TINY)
    for name, value in model.state_dict().items():  # trained-looking BN statistics
        if name.endswith("running_var"):
            value.uniform_(0.5, 2.0)
        elif name.endswith("running_mean"):
            value.normal_(0, 0.2)
    images = torch.randn(8, 3, 16, 16)
    out = tmp_path / "m.onnx"
    result = export_onnx(model, out, images=images, run_dir=tmp_path, fold=fold)
    assert result["passed"] and result["rel_l2"] < 1e-5
    assert json.loads((tmp_path / "verification.json").read_text())["rel_l2"] == result["rel_l2"]
    assert out.is_file()


def test_cli_export_writes_verified_graph(tmp_path, capsys):
    out = tmp_path / "m.onnx"
    argv = ["--depth", "8", "--image-size", "16", "--synthetic-train", "64", "--synthetic-val",
            "32", "--batch-size", "32", "--epochs", "1", "--out", str(tmp_path / "run"),
            "--export", str(out)]  # fmt: skip
    assert cli.main(argv) == 0
    verification = json.loads((tmp_path / "run/verification.json").read_text())
    assert verification["passed"] and verification["rel_l2"] < 1e-5
    assert out.is_file()


# --- bad --data folders: one line on stderr, exit 2 ------------------------------------------


def _cifar_tree(root, *, corrupt: str | None = None):
    root.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 255, (10, 3072), dtype=np.uint8),
                 b"labels": rng.integers(0, 10, 10).tolist()}  # fmt: skip
        (root / name).write_bytes(pickle.dumps(batch) if name != corrupt else b"\x80\x04garbage")
    return root


def _bad_data_case(tmp_path, case: str) -> list[str]:
    if case == "missing":
        return ["--dataset", "cifar10", "--data", str(tmp_path / "nope")]
    if case == "wrong-layout":
        (tmp_path / "empty").mkdir()
        return ["--dataset", "cifar10", "--data", str(tmp_path / "empty")]
    if case == "corrupt-batch":
        root = _cifar_tree(tmp_path / "cifar", corrupt="data_batch_3")
        return ["--dataset", "cifar10", "--data", str(root)]
    if case == "no-data-flag":
        return ["--dataset", "cifar10"]
    if case == "imagefolder-layout":
        (tmp_path / "imgs/train/cat").mkdir(parents=True)
        return ["--dataset", "imagefolder", "--data", str(tmp_path / "imgs")]
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case", ["missing", "wrong-layout", "corrupt-batch", "no-data-flag", "imagefolder-layout"]
)
def test_bad_data_folder(tmp_path, capsys, case):
    argv = ["--depth", "8", *_bad_data_case(tmp_path, case), "--out", str(tmp_path / "run")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("error: ")


def test_malicious_cifar_pickle_is_refused(tmp_path, capsys):
    root = _cifar_tree(tmp_path / "cifar")
    (root / "test_batch").write_bytes(pickle.dumps({b"data": __import__("os").getcwd}))
    argv = [
        "--depth",
        "8",
        "--dataset",
        "cifar10",
        "--data",
        str(root),
        "--out",
        str(tmp_path / "r"),
    ]
    assert cli.main(argv) == 2
    assert "not a CIFAR-10 batch file" in capsys.readouterr().err


def test_cifar_batches_load(tmp_path):
    from train.data import cifar10_data

    data = cifar10_data(_cifar_tree(tmp_path / "cifar"), val_split=5)
    assert len(data.train) == 45 and len(data.val) == 5 and len(data.test) == 10
