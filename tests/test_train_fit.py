"""resnet-train on CPU: learning on the synthetic set, exact resume, export parity, bad data."""

from __future__ import annotations

import json
import pickle
import signal

import numpy as np
import pytest

# ruff: noqa: E402
# Everything below needs torch (directly or through train/): without it the module is
# skipped, so that `pytest -m gpu` still collects where torch is missing.
pytest.importorskip("torch")

import torch
from safetensors.torch import load_file

from graphgen.spec import spec_for_depth
from graphgen.torch_module import build_model
from train import cli
from train.data import synthetic_data
from train.export import export_onnx
from train.loop import TrainConfig, fit
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
    config = tiny_config(tmp_path / "run", epochs=4, synthetic_train=384, synthetic_val=128)
    result = fit(config)
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
    straight = fit(tiny_config(tmp_path / "a", epochs=2, synthetic_train=128))
    fit(tiny_config(tmp_path / "b", epochs=1, synthetic_train=128))
    config = TrainConfig.from_dict(json.loads((tmp_path / "b/config.json").read_text()))
    config.recipe = config.recipe.replace(epochs=2)
    resumed = fit(config, resume=True)
    a, b = load_file(tmp_path / "a/last.safetensors"), load_file(tmp_path / "b/last.safetensors")
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0)
    assert [r["epoch"] for r in resumed.records] == [0, 1]
    assert resumed.records[1]["train_loss"] == straight.records[1]["train_loss"]


class _Killed(Exception):
    pass


def test_resume_mid_schedule_is_bit_exact(tmp_path, monkeypatch):
    """Step schedule with warm-up, stopped after epoch 1 with the config unchanged, then resumed.

    The stop comes right after epoch 1's checkpoint (as a SIGKILL there would); the resumed run
    must end with the uninterrupted run's weights, lr and schedule position, bit for bit.
    """
    import train.loop

    recipe = Recipe(batch_size=32, epochs=3, val_split=0, lr=0.1, warmup_lr=0.01,
                    warmup_until_error=0.95)  # fmt: skip
    config = dict(recipe=recipe, synthetic_train=128, synthetic_val=32)
    straight = fit(tiny_config(tmp_path / "a", **config))
    # 4 iterations per epoch, 12 in all: the paper's drops at 50%/75% land at 6 and 9
    assert [r["lr"] for r in straight.records][1:] == pytest.approx([0.01, 0.001])
    real_end = train.loop._end_of_epoch

    def end_then_die(*args, **kwargs):
        real_end(*args, **kwargs)
        if args[0].epoch == 0:  # the TrainState
            raise _Killed

    monkeypatch.setattr(train.loop, "_end_of_epoch", end_then_die)
    with pytest.raises(_Killed):
        fit(tiny_config(tmp_path / "b", **config))
    monkeypatch.setattr(train.loop, "_end_of_epoch", real_end)
    state = torch.load(tmp_path / "b/last.pt", weights_only=True)
    assert state["epoch"] == 0 and state["schedule"]["iteration"] == 4
    saved = TrainConfig.from_dict(json.loads((tmp_path / "b/config.json").read_text()))
    assert saved.recipe == recipe
    resumed = fit(saved, resume=True)
    a, b = load_file(tmp_path / "a/last.safetensors"), load_file(tmp_path / "b/last.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert resumed.records == [
        {**r, "images_per_s": m["images_per_s"], "seconds": m["seconds"]}
        for r, m in zip(straight.records, resumed.records, strict=True)
    ]
    end_a = torch.load(tmp_path / "a/last.pt", weights_only=True)
    end_b = torch.load(tmp_path / "b/last.pt", weights_only=True)
    assert end_a["schedule"] == end_b["schedule"]
    assert end_a["schedule"]["iteration"] == 12
    for x, y in zip(end_a["optimizer"]["state"].values(), end_b["optimizer"]["state"].values(),
                    strict=True):  # fmt: skip
        assert torch.equal(x["momentum_buffer"], y["momentum_buffer"])


def _image_tree(root, *, bad: bytes | None = None):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for name in ("cat", "dog"):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(4):
                pixels = rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    if bad is not None:
        (root / "train/dog/3.png").write_bytes(bad)
    return root


def _truncated_png() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    pixels = np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()[:200]  # the header reads, the pixels do not


IMAGEFOLDER_ARGS = ["--depth", "18", "--image-size", "32", "--batch-size", "4", "--epochs", "1",
                    "--quiet", "--workers", "2"]  # fmt: skip


def test_corrupt_image_is_named_before_training(tmp_path, capsys):
    root = _image_tree(tmp_path / "imgs", bad=b"not an image at all")
    argv = [*IMAGEFOLDER_ARGS, "--dataset", "imagefolder", "--data", str(root), "--out",
            str(tmp_path / "run")]  # fmt: skip
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert "train/dog/3.png is not a readable image" in err


@pytest.fixture
def dataloader_workers(monkeypatch):
    """torch's DataLoader installs a SIGCHLD handler the first time worker processes start in a
    process, and keeps it for the process's life; a test that runs workers in pytest's process
    puts back the handler and torch's flag saying it is installed."""
    from torch.utils.data._utils import signal_handling

    monkeypatch.setattr(
        signal_handling, "_SIGCHLD_handler_set", signal_handling._SIGCHLD_handler_set
    )
    previous = signal.getsignal(signal.SIGCHLD)
    yield
    signal.signal(signal.SIGCHLD, previous)


def test_image_failing_in_a_worker_keeps_its_path(tmp_path, capsys, dataloader_workers):
    """A file whose header reads but whose pixels do not fails in a DataLoader worker."""
    root = _image_tree(tmp_path / "imgs", bad=_truncated_png())
    argv = [*IMAGEFOLDER_ARGS, "--dataset", "imagefolder", "--data", str(root), "--out",
            str(tmp_path / "run")]  # fmt: skip
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert "train/dog/3.png is not a readable image" in err and "Caught" not in err


def test_existing_run_is_not_overwritten(tmp_path, capsys):
    fit(tiny_config(tmp_path / "run", epochs=1))
    argv = ["--depth", "8", "--image-size", "16", "--synthetic-train", "64", "--batch-size",
            "32", "--workers", "0", "--out", str(tmp_path / "run"), "--epochs", "1"]  # fmt: skip
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
    import onnx

    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    data = json.loads((tmp_path / "run/data.json").read_text())
    assert json.loads(props["graphgen.normalize_mean"]) == data["mean"]
    assert json.loads(props["graphgen.normalize_std"]) == data["std"]


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
