"""The `--arch` presets against their libraries: params, MACs and state_dict names and shapes as
torchvision and timm measure them (tests/fixtures/arch_counts.json, made by
scripts/make-arch-counts.sh with the libraries and fvcore; neither runs here)."""

import hashlib
import json
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import onnx
import pytest

from graphgen.archs import ARCHS, LIBRARIES, arch, arch_spec
from graphgen.cli import main
from graphgen.cost import graph_cost
from graphgen.errors import SpecError
from graphgen.onnx_emit import emit_model
from graphgen.plan import expand
from graphgen.spec import STANDARD_VARIANTS, spec_from_mapping

COUNTS = json.loads((Path(__file__).parent / "fixtures" / "arch_counts.json").read_text())
MEASURED = COUNTS["archs"]


def _names_sha256(shapes) -> str:
    text = "".join(f"{k}:{list(v)};" for k, v in sorted(shapes.items()))
    return hashlib.sha256(text.encode()).hexdigest()


def test_every_preset_was_measured():
    assert list(MEASURED) == list(ARCHS)
    for name, preset in ARCHS.items():
        assert set(preset.libraries) <= set(LIBRARIES)
        assert {k for k in MEASURED[name] if k in LIBRARIES} == set(preset.libraries), name


@pytest.mark.parametrize("name", list(ARCHS))
def test_counts_and_names_are_the_librarys(name):
    """Params = torch's sum(p.numel()), MACs = fvcore's conv + linear count at 224, and the
    plan's tensors = the library's state_dict keys with their shapes: its weights inject by name."""
    plan = expand(ARCHS[name].spec)
    assert plan.spec.image_size == 224 and plan.spec.classes == 1000
    for library in ARCHS[name].libraries:
        measured = MEASURED[name][library]
        assert plan.params == measured["params"], f"{library}:{name} params"
        assert plan.macs == measured["macs"], f"{library}:{name} MACs"
        assert len(plan.tensor_shapes()) == measured["tensors"]
        assert _names_sha256(plan.tensor_shapes()) == measured["names_sha256"], (
            f"{library}:{name}: graphgen's tensor names or shapes are not the state_dict's"
        )


def test_issue_numbers():
    """The numbers issue 25 quotes: ResNeXt-50 32x4d 25,028,904 params and 4.23 G MACs, Wide
    ResNet-50-2 68,883,240 and 11.4 G."""
    resnext, wide = expand(ARCHS["resnext50_32x4d"].spec), expand(ARCHS["wide_resnet50_2"].spec)
    assert (resnext.params, round(resnext.macs / 1e9, 2)) == (25_028_904, 4.23)
    assert (wide.params, round(wide.macs / 1e9, 1)) == (68_883_240, 11.4)


@pytest.mark.parametrize("name", [n for n, a in ARCHS.items() if len(a.libraries) == 2])
def test_names_both_libraries_ship_are_one_network(name):
    same = MEASURED[name]["torchvision_vs_timm"]
    assert same["same_state_dict"] and same["max_abs_diff_float64"] == 0.0


@pytest.mark.parametrize("name", ["resnext50_32x4d", "resnetrs50", "resnetv2_50d"])
def test_the_graph_counts_what_the_plan_counts(name):
    """`graphgen info` (graph_cost walks the ONNX graph) agrees with the plan: grouped convs,
    SE's convs and ResNetV2's conv head counted as fvcore counts them."""
    plan = expand(ARCHS[name].spec)
    stand_in = {k: np.zeros(v, np.float32) for k, v in plan.tensor_shapes().items()}
    cost = graph_cost(emit_model(plan, stand_in))  # the graph's structure; weights do not count
    assert (cost.params, cost.macs) == (plan.params, plan.macs)


def test_names_and_library_prefixes():
    assert arch("timm:resnext50_32x4d") is arch("torchvision:resnext50_32x4d")
    assert arch("resnet50d").spec.name == "resnet50d"
    # The paper's resnet50 strides on the 1x1; the libraries' is the paper's v1.5.
    assert arch("resnet50").spec.name == "resnet50-v1.5" != STANDARD_VARIANTS["resnet50"].name
    assert arch("resnet18").spec == STANDARD_VARIANTS["resnet18"]
    with pytest.raises(SpecError, match="torchvision does not ship 'resnet50d' here; timm does"):
        arch("torchvision:resnet50d")
    with pytest.raises(SpecError, match="unknown architecture 'resnet51'; choose one of resnet18"):
        arch("resnet51")


def test_a_preset_keeps_its_name_at_another_size():
    """Other classes or image size are the same network: the name stays (the CLI's file name adds
    -64px, -10cls); a spec file that spells out a preset gets its name too."""
    spec = arch_spec("resnext50_32x4d", image_size=64, classes=10)
    assert spec.name == "resnext50_32x4d" and spec.image_size == 64
    data = dict(ARCHS["ecaresnet50d"].spec.to_dict(), classes=10, image_size=96)
    del data["name"]
    assert spec_from_mapping(data).name == "ecaresnet50d"
    assert arch_spec("resnet50d", downsample="conv").name == "resnet50c"


# --- graphgen build --arch, graphgen list ------------------------------------------------------


def test_build_arch_writes_the_presets_graph(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["build", "--arch", "timm:resnet26t", "--image-size", "64", "--classes", "10"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("wrote resnet26t-64px-10cls.onnx  (resnet26t, timm's: 26 layers")
    model = onnx.load(tmp_path / "resnet26t-64px-10cls.onnx")
    names = {t.name for t in model.graph.initializer}
    assert {"conv1.0.weight", "conv1.1.running_var", "layer2.0.downsample.1.weight"} <= names
    spec = json.loads({p.key: p.value for p in model.metadata_props}["graphgen.spec"])
    assert spec["stem_type"] == "deep_tiered" and spec["downsample"] == "avg"
    assert main(["build", "--arch", "resnet50", "--image-size", "32", "--json"]) == 0
    built = json.loads(capsys.readouterr().out)
    assert (built["name"], built["arch"]) == ("resnet50-v1.5", "resnet50")
    assert built["path"] == "resnet50-v1.5-32px.onnx"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--arch", "resnet51"], "unknown architecture 'resnet51'; choose one of resnet18"),
        (["--arch", "torchvision:seresnet50"], "torchvision does not ship 'seresnet50' here"),
        (["--arch", "resnet50d", "--flavor", "gluon-v1"], "--flavor does not go with --arch"),
        (["--arch", "resnet50d", "--depth", "50"], "not allowed with argument"),
    ],
)
def test_build_arch_refusals_are_one_line(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) if "--depth" in argv else nullcontext():
        assert main(["build", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and not list(tmp_path.iterdir())


def test_list_shows_every_preset_once(capsys):
    assert main(["list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    by_arch = {row["arch"]: row for row in rows if "arch" in row}
    assert list(by_arch) == list(ARCHS)  # resnet18 and resnet34 are standard variants too
    assert by_arch["resnet50"]["name"] == "resnet50-v1.5"
    assert by_arch["resnet18"] is next(r for r in rows if r["name"] == "resnet18")
    assert by_arch["resnext50_32x4d"]["params"] == 25_028_904
    assert by_arch["resnetv2_50d"]["libraries"] == ["timm"]
    assert len({row["name"] for row in rows}) == len(rows)
    assert main(["list"]) == 0
    text = capsys.readouterr().out
    assert "wide_resnet101_2" in text and "resnet50 as resnet50-v1.5" in text
