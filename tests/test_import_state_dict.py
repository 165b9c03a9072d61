"""graphgen import of torchvision-named state_dicts: the spec from names and shapes."""

import numpy as np
import pytest

# ruff: noqa: E402
# Everything below needs torch (directly or through train/): without it the module is
# skipped, so that `pytest -m gpu` still collects where torch is missing.
pytest.importorskip("torch")

import torch

from graphgen.cli import main
from graphgen.flavors import apply_flavor
from graphgen.importers.common import rel_l2, run_onnx
from graphgen.importers.state_dict import import_state_dict
from graphgen.spec import Spec, cifar_spec
from train.model import build_model

SMALL = Spec(
    layers=(1, 2), widths=(8, 16), block="bottleneck", classes=7, image_size=32, stem_width=8
)


def _save(spec, path, seed=0):
    torch.manual_seed(seed)
    net = build_model(spec).eval()
    for module in net.modules():  # non-trivial BN statistics and shifts
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.3, 0.3)
            module.running_var.uniform_(0.5, 2.0)
            if module.affine:
                module.bias.data.uniform_(-0.2, 0.2)
    torch.save(net.state_dict(), path)
    return net


@pytest.mark.parametrize(
    "spec",
    [
        SMALL.replace(stride_at="3x3"),
        apply_flavor(SMALL, "gluon-v1"),
        apply_flavor(SMALL, "gluon-v2").replace(stride_at="3x3"),
        cifar_spec(8),
        SMALL.replace(shortcut="C", stride_at="3x3"),
    ],
    ids=["v1.5", "gluon-v1", "gluon-v2", "cifar-A", "shortcut-C"],
)
def test_state_dict_import_round_trips(spec, tmp_path):
    src = tmp_path / "w.pt"
    net = _save(spec, src)
    found, _, summary = import_state_dict(src, image_size=spec.image_size, stride_at=spec.stride_at)
    assert found == spec, summary
    out = tmp_path / "r.onnx"
    args = ["import", str(src), "--image-size", str(spec.image_size), "--stride-at", spec.stride_at]
    assert main([*args, "-o", str(out)]) == 0
    x = np.random.default_rng(0).standard_normal(
        (2, 3, spec.image_size, spec.image_size), np.float32
    )
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    assert rel_l2(run_onnx(str(out), x), expected) < 1e-5


def test_foreign_state_dict_is_refused(tmp_path, capsys):
    src = tmp_path / "w.pt"
    torch.save({"encoder.weight": torch.zeros(3)}, src)
    assert main(["import", str(src), "-o", str(tmp_path / "r.onnx")]) == 2
    assert "torchvision/timm ResNet names" in capsys.readouterr().err
