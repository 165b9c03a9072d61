"""Against code this project did not write: torchvision, timm and akamaster's CIFAR ResNets.

Every other parity check judges the engines against a torch module built from graphgen's own
plan, so a bug in the plan passes everywhere. Here the truth is the source library's output
(tests/fixtures/golden/, made by scripts/make-golden-fixtures.sh): each source network ran in
float64 with the seeded weights of tests/golden.py, which this test regenerates by graphgen's
names, builds into graphgen's graph of the matching spec (unfolded and `--fold-bn`), and runs on
every CPU engine, and as an fp16 graph on onnxruntime. The sources include one small net per
zoo family of graphgen.archs (ResNeXt, Wide, SE, ECA, ResNet-D, tiered stem, ResNet-RS,
ResNetV2), built by torchvision's and timm's own classes. fb.resnet.torch is Lua: its fixture comes from our torch transcription of it
(scripts/golden_fixtures.py), the one source here we wrote ourselves.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from graphgen.importers.common import rel_l2
from graphgen.numpy_forward import forward_nhwc
from graphgen.onnx_io import build, save
from graphgen.plan import expand
from graphgen.spec import Spec, spec_from_mapping
from runtimes import registry
from tests.golden import golden_weights, weights_sha256

FIXTURES = Path(__file__).parent / "fixtures" / "golden"
META = json.loads((FIXTURES / "golden.json").read_text())
NETS = list(META["fixtures"])
# Every CPU engine but torch-compile, which compiles for minutes; see
# test_every_cpu_engine_is_checked.
ENGINES = ("ort-cpu", "openvino", "torch", "onnx-ref")
TOLERANCE = 1e-5  # relative L2, fp32 engines against the source's float64 outputs
# fp16 graphs (weights and activations stored in float16, 2^-11 relative rounding each) on
# onnxruntime's CPU provider: 2e-4 to 1e-3 measured on these nets (README, "fp16").
FP16_TOLERANCE = 5e-3


@cache
def _case(net: str) -> tuple[Spec, dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """The spec, the regenerated weights, the images and the source's outputs of a fixture."""
    fixture = META["fixtures"][net]
    spec = spec_from_mapping(fixture["graphgen_spec"], source=f"golden.json {net}")
    weights = golden_weights(expand(spec).tensor_shapes(), fixture["seed"])
    x = np.load(FIXTURES / "images.npz")[fixture["images"]]
    y = np.load(FIXTURES / "outputs.npz")[net]
    return spec, weights, x, y


@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory):
    """graph(net, fold) -> the path of graphgen's graph of that fixture, built once."""
    folder = tmp_path_factory.mktemp("golden")
    paths: dict[tuple[str, bool], Path] = {}

    def get(net: str, fold: bool) -> Path:
        if (net, fold) not in paths:
            spec, weights, _, _ = _case(net)
            path = folder / f"{net}{'-folded' if fold else ''}.onnx"
            paths[net, fold] = save(build(spec, weights=weights, fold=fold), path)
        return paths[net, fold]

    return get


@pytest.mark.parametrize("net", NETS)
def test_generated_weights_are_the_fixtures(net: str) -> None:
    """The weights the source ran with: same generator, same names and shapes, same bytes."""
    fixture = META["fixtures"][net]
    _, weights, x, y = _case(net)
    assert len(weights) == fixture["tensors"], f"{net}: the plan's tensors are not the source's"
    assert weights_sha256(weights) == fixture["weights_sha256"], (
        f"{net}: tests/golden.py or graphgen's names now give other weights than the source ran "
        "with; if the generator changed on purpose, rerun scripts/make-golden-fixtures.sh"
    )
    assert x.shape == (2, 3, fixture["image_size"], fixture["image_size"])
    assert y.dtype == np.float64 and np.isfinite(y).all() and y.std() > 0.1


@pytest.mark.parametrize("fold", [False, True], ids=["unfolded", "folded"])
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("net", NETS)
def test_engine_matches_the_source(net: str, engine: str, fold: bool, graph) -> None:
    _, _, x, y = _case(net)
    with registry.create(engine, graph(net, fold), batch_sizes=(len(x),)) as runner:
        (out,) = runner.infer({"input": x}).values()
    error = rel_l2(out, y)
    assert error < TOLERANCE, f"{engine} on {net}: rel. L2 {error:.2e} against the source"


@pytest.mark.parametrize("net", NETS)
def test_fp16_graph_matches_the_source_on_ort_cpu(net: str, tmp_path) -> None:
    spec, weights, x, y = _case(net)
    path = save(build(spec, weights=weights, dtype="float16"), tmp_path / "fp16.onnx")
    with registry.create("ort-cpu", path, batch_sizes=(len(x),), precision="fp16") as runner:
        (out,) = runner.infer({"input": x}).values()
    error = rel_l2(out, y)
    assert error < FP16_TOLERANCE, f"fp16 {net}: rel. L2 {error:.2e} against the source"


@pytest.mark.parametrize("net", NETS)
def test_numpy_forward_pass_matches_the_source(net: str) -> None:
    """graphgen's numpy pass (BN calibration, int8 observation, import checks) is an engine too."""
    spec, weights, x, y = _case(net)
    out = forward_nhwc(expand(spec), dict(weights), x.transpose(0, 2, 3, 1))
    assert rel_l2(out, y) < TOLERANCE


def test_every_cpu_engine_is_checked() -> None:
    cpu = {n for n in registry.names() if registry.device_of(n) == "cpu"}
    assert cpu - {"torch-compile"} == set(ENGINES)


@pytest.mark.parametrize(
    ("net", "wrong"),
    [
        ("akamaster-resnet20", {"zero_pad": "end"}),
        ("fb-resnet20-end", {"zero_pad": "symmetric"}),
        ("torchvision-resnet50", {"stride_at": "1x1"}),
    ],
    ids=["symmetric-as-end", "end-as-symmetric", "v1.5-as-paper"],
)
def test_a_wrong_placement_fails_the_check(net: str, wrong: dict[str, str], tmp_path) -> None:
    """The check can fail: the same weights in the network with option A's zeros on the other
    side, or a bottleneck striding on the 1x1, are far from the source (the names and shapes
    are identical, so nothing but the outputs can tell)."""
    spec, weights, x, y = _case(net)
    path = save(build(spec.replace(**wrong), weights=weights), tmp_path / "wrong.onnx")
    with registry.create("ort-cpu", path, batch_sizes=(len(x),)) as runner:
        (out,) = runner.infer({"input": x}).values()
    assert rel_l2(out, y) > 1000 * TOLERANCE
