"""Against torchvision itself, where it is installed (it is not in CI: torchvision's wheels need a
newer torch than the CPU build CI pins). Run with torchvision present to check the naming
contract end to end: torchvision's state_dict injects unchanged into graphgen's graph and the
outputs match torchvision's model."""

import numpy as np
import pytest

from graphgen.inject import inject
from graphgen.onnx_io import build
from graphgen.plan import expand
from graphgen.spec import imagenet_spec
from tests._graphs import run_ort

torch = pytest.importorskip("torch")
models = pytest.importorskip("torchvision.models", reason="torchvision not installed")

DEPTHS = [18, 34, 50, 101, 152]


@pytest.mark.parametrize("depth", DEPTHS)
def test_state_dict_layout_matches(depth):
    tv = getattr(models, f"resnet{depth}")(weights=None)
    plan = expand(imagenet_spec(depth, stride_at="3x3"))  # torchvision is "v1.5"
    state = {
        k: tuple(v.shape)
        for k, v in tv.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    assert state == {k: tuple(s) for k, s in plan.tensor_shapes().items()}
    assert sum(p.numel() for p in tv.parameters()) == plan.params


@pytest.mark.parametrize("depth", [18, 50])
def test_torchvision_weights_give_torchvision_outputs(depth):
    torch.manual_seed(depth)
    tv = getattr(models, f"resnet{depth}")(weights=None)
    with torch.no_grad():  # non-trivial BN statistics, as a trained model has
        for module in tv.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.2, 1.0)
    tv.eval()
    spec = imagenet_spec(depth, stride_at="3x3", image_size=64)
    weights = {k: v.numpy() for k, v in tv.state_dict().items()}  # num_batches_tracked included
    model = inject(build(spec), weights, stride_at="3x3")  # a .pth records no spec
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64), dtype=np.float32)
    with torch.no_grad():
        ref = tv(torch.from_numpy(x)).numpy()
    y = run_ort(model, x)
    assert np.linalg.norm(y - ref) / np.linalg.norm(ref) < 1e-5
