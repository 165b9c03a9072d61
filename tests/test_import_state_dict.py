"""graphgen import of torchvision-named state_dicts: the spec from names and shapes.

A state_dict holds no computation: without --arch the import says that only names and shapes
were checked (never "verified"), and a bottleneck net needs --stride-at. The --arch paths run
torchvision or timm themselves; they are tested where those are installed (not in CI).
"""

import importlib.util

import numpy as np
import onnx
import pytest

# ruff: noqa: E402
# Everything below needs torch (directly or through train/): without it the module is
# skipped, so that `pytest -m gpu` still collects where torch is missing.
pytest.importorskip("torch")

import torch

from graphgen.cli import main
from graphgen.errors import StridePlacementError
from graphgen.flavors import apply_flavor
from graphgen.importers.common import CHECK_KEY, CHECKED_KEY, rel_l2, run_onnx
from graphgen.importers.source_nets import parse_arch
from graphgen.importers.state_dict import import_state_dict
from graphgen.spec import Spec, cifar_spec
from graphgen.torch_module import build_model

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
def test_state_dict_import_round_trips(spec, tmp_path, capsys):
    src = tmp_path / "w.pt"
    net = _save(spec, src)
    found, _, summary = import_state_dict(src, image_size=spec.image_size, stride_at=spec.stride_at)
    assert found == spec, summary
    out = tmp_path / "r.onnx"
    args = ["import", str(src), "--image-size", str(spec.image_size), "--stride-at", spec.stride_at]
    assert main([*args, "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "verified" not in printed.lower()
    line = next(line for line in printed.splitlines() if line.startswith("NOT checked"))
    assert f"names and shapes fit {spec.name}; the computation was not checked" in line
    meta = {p.key: p.value for p in onnx.load(out).metadata_props}
    assert meta[CHECKED_KEY] == "names-and-shapes" and meta[CHECK_KEY] == line
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


BOTTLENECK = SMALL.replace(stride_at="3x3")


def test_bottleneck_without_stride_placement_is_refused(tmp_path, capsys):
    """1x1- and 3x3-striding nets have the same names and shapes: never guessed."""
    src, out = tmp_path / "w.pt", tmp_path / "r.onnx"
    _save(BOTTLENECK, src)
    with pytest.raises(StridePlacementError, match="--stride-at 1x1 or 3x3"):
        import_state_dict(src, image_size=32)
    assert main(["import", str(src), "--image-size", "32", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and not out.exists()
    assert "weights do not show where a bottleneck strides" in err
    assert "--stride-at 1x1 or 3x3" in err and "--arch LIBRARY:MODEL" in err


def test_basic_nets_need_no_stride_placement(tmp_path, capsys):
    spec = Spec(layers=(1, 1), widths=(8, 16), classes=4, image_size=32, stem_width=8)
    src, out = tmp_path / "w.pt", tmp_path / "r.onnx"
    _save(spec, src)
    assert main(["import", str(src), "--image-size", "32", "-o", str(out)]) == 0
    assert "stride on" not in capsys.readouterr().out


def test_stride_given_is_said_in_the_found_line(tmp_path, capsys):
    src, out = tmp_path / "w.pt", tmp_path / "r.onnx"
    _save(BOTTLENECK, src)
    args = ["import", str(src), "--image-size", "32", "--stride-at", "3x3", "-o", str(out)]
    assert main(args) == 0
    assert "stride on 3x3 (--stride-at; the weights do not show it)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("arch", "message"),
    [
        ("resnet51", "expected LIBRARY:MODEL"),  # resnet50 alone names the preset
        ("keras:resnet50", "expected LIBRARY:MODEL"),
        ("gluon:resnet50_v1", "checks Gluon .params files, not a .pt file"),
    ],
)
def test_bad_arch_is_one_line(arch, message, tmp_path, capsys):
    src, out = tmp_path / "w.pt", tmp_path / "r.onnx"
    _save(BOTTLENECK, src)
    assert main(["import", str(src), "--arch", arch, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and not out.exists()


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is not None, reason="installed")
def test_arch_needs_its_library(tmp_path, capsys):
    src, out = tmp_path / "w.pt", tmp_path / "r.onnx"
    _save(BOTTLENECK, src)
    assert main(["import", str(src), "--arch", "torchvision:resnet50", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--arch torchvision:resnet50 needs torchvision installed" in err
    assert "names and shapes only" in err and not out.exists()


def _perturbed(net: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Non-trivial BN statistics and affine parameters, as a trained net has."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) * 0.6 - 0.3)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.bias.shape, generator=g) * 0.4 - 0.2)
    return net.eval()


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_torchvision_arch_checks_against_torchvision(name, tmp_path, capsys):
    """Where torchvision is installed: the source network itself is the check."""
    models = pytest.importorskip("torchvision.models", reason="torchvision not installed")
    torch.manual_seed(0)
    net = _perturbed(models.get_model(name, weights=None, num_classes=10), 1)
    src, out = tmp_path / f"{name}.pth", tmp_path / "r.onnx"
    torch.save(net.state_dict(), src)
    args = ["import", str(src), "--arch", f"torchvision:{name}", "--image-size", "64"]
    assert main([*args, "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "verified: rel. L2 " in printed
    assert f"against torchvision:{name} (torchvision " in printed
    meta = {p.key: p.value for p in onnx.load(out).metadata_props}
    assert meta[CHECKED_KEY] == f"torchvision:{name}"
    x = np.random.default_rng(2).standard_normal((2, 3, 64, 64), np.float32)
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    assert rel_l2(run_onnx(str(out), x), expected) < 1e-5


def test_weights_that_do_not_load_into_the_arch_are_refused(tmp_path, capsys):
    models = pytest.importorskip("torchvision.models", reason="torchvision not installed")
    src, out = tmp_path / "r18.pth", tmp_path / "r.onnx"
    torch.save(models.resnet18(weights=None).state_dict(), src)
    args = ["import", str(src), "--image-size", "64", "-o", str(out)]
    assert main([*args, "--arch", "torchvision:resnet34"]) == 2
    err = capsys.readouterr().err
    assert "does not load into torchvision:resnet34: missing layer1.2.conv1.weight" in err
    assert main([*args, "--arch", "torchvision:resnet19"]) == 2
    assert "torchvision cannot build it" in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize(
    ("arch", "stride"),
    [("torchvision:resnet50", "3x3"), ("timm:resnet50d", "3x3"), ("gluon:resnet50_v1", "1x1"),
     ("gluon:resnet50_v2", "3x3")],
)  # fmt: skip
def test_arch_implies_its_libraries_stride_placement(arch, stride):
    assert parse_arch(arch).stride_at == stride


def test_timm_net_graphgen_cannot_express_is_refused_or_unchecked(tmp_path, capsys):
    """timm's anti-aliased resnetaa50 has exactly resnet50's names and shapes and computes
    something else: with --arch the check fails and nothing is written; without it the import
    says it checked names and shapes only."""
    timm = pytest.importorskip("timm", reason="timm not installed")
    torch.manual_seed(0)
    net = _perturbed(timm.create_model("resnetaa50", pretrained=False, num_classes=10), 1)
    src, out = tmp_path / "aa.pth", tmp_path / "r.onnx"
    torch.save(net.state_dict(), src)
    args = ["import", str(src), "--image-size", "64", "-o", str(out)]
    assert main([*args, "--arch", "timm:resnetaa50"]) == 1
    assert "the imported graph disagrees" in capsys.readouterr().err and not out.exists()
    assert main([*args, "--stride-at", "3x3"]) == 0
    printed = capsys.readouterr().out
    assert "NOT checked" in printed and "verified" not in printed.lower()
