"""Golden outputs from code this project did not write, for tests/test_golden.py.

Runs in a venv with torch, torchvision and timm (scripts/make-golden-fixtures.sh; never the
project's, which has neither). Each source network gets the seeded weights of tests/golden.py
by name, runs in float64 on committed images, and its outputs are saved; the weights are not
saved (ResNet-50's are 100 MB), only their SHA-256, so the test regenerates them and a changed
generator fails loudly. The sources:

- torchvision's resnet18 and resnet50 (v1.5: the bottleneck strides on its 3x3);
- timm's resnet26 (bottleneck units [2, 2, 2, 2], stride on the 3x3, 100 classes);
- akamaster/pytorch_resnet_cifar10's `resnet20` (option A: `x[:, :, ::2, ::2]`, then
  `planes // 4` zero channels on each side), imported from the file given on the command line;
- fb.resnet.torch's CIFAR ResNet-20 with shortcutType 'A' (zeros after the identity channels).
  That one is Lua and cannot run here: `FbCifarResNet` below is our own torch transcription of
  its models/resnet.lua, independent of graphgen's plan but written by us;
- one small net per zoo family of graphgen.archs, built by the library's own classes with one
  unit a stage (and timm's narrow stages), on 48 px images (ResNet-D's pooled shortcut then
  meets a 3x3 map, where ceil mode's last window overhangs): torchvision's ResNeXt; timm's wide
  bottleneck with SE and a deep stem, ResNet-D (deep stem, average-pooled shortcut), tiered
  stem with ECA, ResNet-RS (conv stem pool, SE 1/4), ResNetV2 and ResNetV2-D.

`--onnx` (alone, no akamaster file needed) writes tests/fixtures/golden/onnx/: torch.onnx's
exports, TorchScript and dynamo, of one `graphgen build --arch` preset per family, freshly
initialised (BN statistics 0 and 1, so the TorchScript exporter's folded biases are equal and
stored once behind Identity nodes) at 32 px. Their float tensors of more than KEEP_VALUES values
are stripped (the files would be hundreds of MB); tests/test_zoo_routes.py refills them from a
seed by name and checks the import against the refilled graph itself: the exporters' structure
(node kinds, attributes, aliases, shape constants) is theirs as exported (the per-node stack
traces and doc strings, most of a dynamo file's bytes, are dropped).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import importlib.metadata
import importlib.util
import json
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import timm
import torch
import torch.nn.functional as F
import torchvision
from timm.layers import BatchNormAct2d, create_conv2d, get_attn
from timm.models.resnet import BasicBlock as TimmBasic
from timm.models.resnet import Bottleneck as TimmBottleneck
from timm.models.resnet import ResNet as TimmResNet
from timm.models.resnetv2 import ResNetV2
from torch import nn
from torchvision.models.resnet import Bottleneck as TvBottleneck
from torchvision.models.resnet import ResNet as TvResNet

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.golden import golden_weights, images, weights_sha256  # noqa: E402

AKAMASTER_REPO = "https://github.com/akamaster/pytorch_resnet_cifar10"
AKAMASTER_COMMIT = "d5489e8995e81e91ce6b1d69dcc98ad579b0b153"  # master, 2021-07-20
AKAMASTER_BLOB = "0a252bf6339f82a1c2e3f2317c6ab86b6ad5b1af"  # git hash-object resnet.py there
FB_REPO = "https://github.com/facebookarchive/fb.resnet.torch"
FB_COMMIT = "985e569d468d23baeef5b952954dcdf3c61c5e73"  # master, 2019-10-29
BATCH, IMAGENET_SIZE, CIFAR_SIZE, SMALL_SIZE, IMAGE_SEED = 2, 64, 32, 48, 0
# The zoo families' small nets: one unit a stage; timm's with narrow stages.
ONE_UNIT, NARROW, WIDTHS = (1, 1, 1, 1), (16, 32, 64, 128), [16, 32, 64, 128]


class FbCifarResNet(nn.Module):
    """fb.resnet.torch's CIFAR-10 ResNet (models/resnet.lua, `opt.dataset == 'cifar10'`,
    shortcutType 'A'), transcribed: a 3x3 conv of 16, BN, ReLU; three stages of n basic units
    (16, 32, 64 planes; the 2nd and 3rd stride 2 in their first unit's first conv); 8x8 average
    pooling; a 64-in linear layer. Where a unit changes the channel count the shortcut is
    `nn.SpatialAveragePooling(1, 1, stride, stride)` followed by `nn.Concat(2)` of
    `nn.Identity()` and `nn.MulConstant(0)`: the subsampled input, then as many zero channels,
    after it. Convs have no bias (cudnn >= 4 drops it there). Modules carry torchvision's names
    so that the generator's weights load by name."""

    def __init__(self, depth: int = 20, classes: int = 10) -> None:
        super().__init__()
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        channels = 16
        for stage, (planes, stride) in enumerate(((16, 1), (32, 2), (64, 2)), 1):
            units = []
            for i in range(n):
                units.append(_FbBasicUnit(channels, planes, stride if i == 0 else 1))
                channels = planes
            self.add_module(f"layer{stage}", nn.Sequential(*units))
        self.fc = nn.Linear(64, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = F.avg_pool2d(x, 8, 1)  # Avg(8, 8, 1, 1) on the 8x8 map
        return self.fc(x.view(x.size(0), 64))  # nn.View(64)


class _FbBasicUnit(nn.Module):
    def __init__(self, cin: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.cin, self.planes, self.stride = cin, planes, stride

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.cin == self.planes:
            return x  # nn.Identity()
        x = F.avg_pool2d(x, 1, self.stride)  # nn.SpatialAveragePooling(1, 1, stride, stride)
        return torch.cat([x, x * 0], 1)  # nn.Concat(2): Identity, then MulConstant(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(branch + self.shortcut(x))  # CAddTable, ReLU


def _akamaster(path: Path) -> Any:
    data = path.read_bytes()
    blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    if blob != AKAMASTER_BLOB:
        raise SystemExit(
            f"{path} is not resnet.py of {AKAMASTER_REPO} at {AKAMASTER_COMMIT} "
            f"(git blob {blob}, expected {AKAMASTER_BLOB})"
        )
    spec = importlib.util.spec_from_file_location("akamaster_resnet", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sources(akamaster: Any) -> dict[str, dict[str, Any]]:
    """Each fixture: how to make the source network, its provenance, graphgen's spec for it."""
    tv, tm = f"torchvision {torchvision.__version__}", f"timm {timm.__version__}"
    imagenet = {"image_size": IMAGENET_SIZE}
    return {
        "torchvision-resnet18": dict(
            make=lambda: torchvision.models.resnet18(weights=None),
            source=tv,
            constructor="torchvision.models.resnet18(weights=None)",
            spec={"depth": 18, **imagenet},
            seed=18,
        ),
        "torchvision-resnet50": dict(
            make=lambda: torchvision.models.resnet50(weights=None),
            source=tv,
            constructor="torchvision.models.resnet50(weights=None)",
            spec={"depth": 50, "stride_at": "3x3", **imagenet},
            seed=50,
        ),
        "timm-resnet26": dict(
            make=lambda: timm.create_model("resnet26", pretrained=False, num_classes=100),
            source=tm,
            constructor="timm.create_model('resnet26', pretrained=False, num_classes=100)",
            spec={
                "layers": [2, 2, 2, 2],
                "widths": [64, 128, 256, 512],
                "block": "bottleneck",
                "stride_at": "3x3",
                "classes": 100,
                **imagenet,
            },
            seed=26,
        ),
        "akamaster-resnet20": dict(
            make=akamaster.resnet20,
            source=f"akamaster/pytorch_resnet_cifar10 resnet.py, run on torch {torch.__version__}",
            code={
                "repository": AKAMASTER_REPO,
                "commit": AKAMASTER_COMMIT,
                "file": "resnet.py",
                "git_blob": AKAMASTER_BLOB,
            },
            constructor="resnet.resnet20()",
            names={"linear.": "fc."},
            zero_pad="symmetric: F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes//4, planes//4))",
            spec={"depth": 20, "dataset": "cifar10"},
            seed=20,
        ),
        "fb-resnet20-end": dict(
            make=FbCifarResNet,
            source="our torch transcription (scripts/golden_fixtures.py FbCifarResNet) of "
            f"fb.resnet.torch, which is Lua and cannot run here; run on torch {torch.__version__}",
            code={
                "repository": FB_REPO,
                "commit": FB_COMMIT,
                "file": "models/resnet.lua",
                "options": "dataset cifar10, depth 20, shortcutType A",
            },
            constructor="FbCifarResNet(depth=20, classes=10)",
            zero_pad="end: cat(subsampled x, zeros) (nn.Concat of Identity and MulConstant(0))",
            spec={"depth": 20, "dataset": "cifar10", "zero_pad": "end"},
            seed=21,
        ),
        **_families(tv, tm),
    }


def _families(tv: str, tm: str) -> dict[str, dict[str, Any]]:
    """The zoo families (graphgen.archs) at small size, each from its library's own classes."""
    small = {"layers": list(ONE_UNIT), "stride_at": "3x3", "classes": 10, "image_size": SMALL_SIZE}
    narrow = {**small, "widths": WIDTHS, "block": "bottleneck"}
    timm_resnet = "timm.models.resnet.ResNet"
    v2 = {"conv_layer": create_conv2d, "norm_layer": BatchNormAct2d, "num_classes": 10}
    rs_se = partial(get_attn("se"), rd_ratio=0.25)
    return {
        "torchvision-resnext": dict(
            make=lambda: TvResNet(TvBottleneck, list(ONE_UNIT), 10, groups=32, width_per_group=4),
            source=tv,
            constructor="torchvision.models.resnet.ResNet(Bottleneck, [1, 1, 1, 1], "
            "num_classes=10, groups=32, width_per_group=4)",
            spec={
                **small,
                "widths": [64, 128, 256, 512],
                "block": "bottleneck",
                "groups": 32,
                "width_per_group": 4,
            },
            seed=32,
        ),
        "timm-wide-se-deep-stem": dict(
            make=lambda: TimmResNet(
                TimmBottleneck,
                ONE_UNIT,
                10,
                channels=NARROW,
                base_width=128,
                stem_width=16,
                stem_type="deep",
                block_args={"attn_layer": "se"},
            ),
            source=tm,
            constructor=f"{timm_resnet}(Bottleneck, (1, 1, 1, 1), 10, channels=(16, 32, 64, "
            "128), base_width=128, stem_width=16, stem_type='deep', "
            "block_args={'attn_layer': 'se'})",
            spec={
                **narrow,
                "width_per_group": 128,
                "stem_type": "deep",
                "stem_width": 16,
                "attention": "se",
            },
            seed=128,
        ),
        "timm-resnet-d": dict(
            make=lambda: TimmResNet(
                TimmBasic,
                ONE_UNIT,
                10,
                channels=NARROW,
                stem_width=16,
                stem_type="deep",
                avg_down=True,
            ),
            source=tm,
            constructor=f"{timm_resnet}(BasicBlock, (1, 1, 1, 1), 10, channels=(16, 32, 64, "
            "128), stem_width=16, stem_type='deep', avg_down=True)",
            spec={
                **small,
                "widths": WIDTHS,
                "block": "basic",
                "stem_type": "deep",
                "stem_width": 16,
                "downsample": "avg",
            },
            seed=181,
        ),
        "timm-eca-tiered-stem": dict(
            make=lambda: TimmResNet(
                TimmBottleneck,
                ONE_UNIT,
                10,
                channels=NARROW,
                stem_width=32,
                stem_type="deep_tiered",
                avg_down=True,
                block_args={"attn_layer": "eca"},
            ),
            source=tm,
            constructor=f"{timm_resnet}(Bottleneck, (1, 1, 1, 1), 10, channels=(16, 32, 64, "
            "128), stem_width=32, stem_type='deep_tiered', avg_down=True, "
            "block_args={'attn_layer': 'eca'})",
            spec={
                **narrow,
                "stem_type": "deep_tiered",
                "stem_width": 32,
                "downsample": "avg",
                "attention": "eca",
            },
            seed=26,
        ),
        "timm-resnet-rs": dict(
            make=lambda: TimmResNet(
                TimmBottleneck,
                ONE_UNIT,
                10,
                channels=NARROW,
                stem_width=16,
                stem_type="deep",
                replace_stem_pool=True,
                avg_down=True,
                block_args={"attn_layer": rs_se},
            ),
            source=tm,
            constructor=f"{timm_resnet}(Bottleneck, (1, 1, 1, 1), 10, channels=(16, 32, 64, "
            "128), stem_width=16, stem_type='deep', replace_stem_pool=True, avg_down=True, "
            "block_args={'attn_layer': partial(get_attn('se'), rd_ratio=0.25)})",
            spec={
                **narrow,
                "stem_type": "deep",
                "stem_width": 16,
                "stem_pool": "conv",
                "downsample": "avg",
                "attention": "se",
                "se_ratio": 0.25,
            },
            seed=250,
        ),
        "timm-resnetv2": dict(
            make=lambda: ResNetV2(list(ONE_UNIT), channels=(64, 128, 256, 512), stem_chs=16, **v2),
            source=tm,
            constructor="timm.models.resnetv2.ResNetV2([1, 1, 1, 1], channels=(64, 128, 256, "
            "512), stem_chs=16, conv_layer=create_conv2d, norm_layer=BatchNormAct2d, "
            "num_classes=10)",
            spec={**narrow, "block": "resnetv2_bottleneck", "stem_width": 16},
            seed=2,
        ),
        "timm-resnetv2-d": dict(
            make=lambda: ResNetV2(
                list(ONE_UNIT),
                channels=(64, 128, 256, 512),
                stem_chs=32,
                stem_type="deep",
                avg_down=True,
                **v2,
            ),
            source=tm,
            constructor="timm.models.resnetv2.ResNetV2([1, 1, 1, 1], channels=(64, 128, 256, "
            "512), stem_chs=32, stem_type='deep', avg_down=True, conv_layer=create_conv2d, "
            "norm_layer=BatchNormAct2d, num_classes=10)",
            spec={
                **narrow,
                "block": "resnetv2_bottleneck",
                "stem_type": "deep",
                "stem_width": 16,
                "downsample": "avg",
            },
            seed=22,
        ),
    }


def _load(model: nn.Module, seed: int, names: dict[str, str]) -> dict[str, np.ndarray]:
    """Give `model` the generator's weights (keyed by graphgen's names); return them."""

    def ours(key: str) -> str:
        for theirs, mine in names.items():
            key = key.replace(theirs, mine)
        return key

    state = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    weights = golden_weights({ours(k): tuple(v.shape) for k, v in state.items()}, seed)
    theirs = {ours(k): k for k in state}
    missing, unexpected = model.load_state_dict(
        {theirs[k]: torch.from_numpy(v) for k, v in weights.items()}, strict=False
    )
    assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing), missing
    return weights


def _run(model: nn.Module, x: np.ndarray) -> np.ndarray:
    model = model.double().eval()
    with torch.no_grad():
        out: np.ndarray = model(torch.from_numpy(x).double()).numpy()
    return out


def make(out: Path, akamaster_path: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)  # nothing here draws from torch, but constructors initialise weights
    inputs = {
        "imagenet": images(IMAGE_SEED, BATCH, IMAGENET_SIZE),
        "cifar": images(IMAGE_SEED, BATCH, CIFAR_SIZE),
        "small": images(IMAGE_SEED, BATCH, SMALL_SIZE),
    }
    outputs: dict[str, np.ndarray] = {}
    fixtures: dict[str, dict[str, Any]] = {}
    for name, source in _sources(_akamaster(akamaster_path)).items():
        make_model: Callable[[], nn.Module] = source["make"]
        model = make_model()
        weights = _load(model, source["seed"], source.get("names", {}))
        size = source["spec"].get("image_size")
        kind = "cifar" if source["spec"].get("dataset") == "cifar10" else "imagenet"
        kind = "small" if size == SMALL_SIZE else kind
        outputs[name] = _run(model, inputs[kind])
        fixtures[name] = {
            "source": source["source"],
            "constructor": source["constructor"],
            **{k: source[k] for k in ("code", "zero_pad") if k in source},
            **({"renamed": source["names"]} if "names" in source else {}),
            "graphgen_spec": source["spec"],
            "images": kind,
            "image_size": inputs[kind].shape[-1],
            "seed": source["seed"],
            "tensors": len(weights),
            "weights_sha256": weights_sha256(weights),
            "output_std": round(float(outputs[name].std()), 4),
        }
        print(f"{name}: output {outputs[name].shape}, std {outputs[name].std():.3g}", flush=True)
    np.savez(out / "images.npz", **inputs)
    np.savez(out / "outputs.npz", **outputs)
    meta = {
        "made_by": "scripts/make-golden-fixtures.sh (scripts/golden_fixtures.py)",
        "weights": "tests/golden.py golden_weights(shapes, seed): not stored, regenerated",
        "date": datetime.date.today().isoformat(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": np.__version__,
        "precision": "source networks run in float64 on float32 images; outputs float64",
        "images": f"tests/golden.py images({IMAGE_SEED}, {BATCH}, size): uniform pixels, "
        "ImageNet mean/std; images.npz",
        "fixtures": fixtures,
    }
    (out / "golden.json").write_text(json.dumps(meta, indent=2) + "\n")


# One preset per family feature (grouped conv, deep stem + avg shortcut, tiered stem... ECA,
# conv stem pool + SE, ResNetV2-D), few enough for CI's time; docs/variants.md has every preset.
ONNX_PRESETS = (
    "resnet18", "resnext50_32x4d", "resnet50d", "ecaresnet50d", "resnetrs50", "resnetv2_50d",
)  # fmt: skip
ONNX_SIZE, KEEP_VALUES = 32, 64


def _export(model: nn.Module, path: Path, *, dynamo: bool) -> None:
    import warnings

    x = torch.zeros(1, 3, ONNX_SIZE, ONNX_SIZE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (x,), str(path), input_names=["input"], output_names=["logits"],
            opset_version=18 if dynamo else 17, dynamo=dynamo,
            **({"external_data": False} if dynamo else {}),
        )  # fmt: skip


def _strip(path: Path) -> int:
    """Clear the data of every float initializer past KEEP_VALUES values; their count."""
    import onnx

    model = onnx.load(str(path))
    stripped = []
    for t in model.graph.initializer:
        size = int(np.prod(t.dims)) if t.dims else 1
        if t.data_type == onnx.TensorProto.FLOAT and size > KEEP_VALUES:
            t.ClearField("raw_data")
            t.ClearField("float_data")
            stripped.append(t.name)
    for node in model.graph.node:  # the dynamo exporter's stack traces: most of its bytes
        node.ClearField("metadata_props")
        node.doc_string = ""
    onnx.helper.set_model_props(model, {"golden.stripped": json.dumps(stripped)})
    onnx.save(model, str(path))
    return len(stripped)


def make_onnx(out: Path) -> None:
    from graphgen.archs import ARCHS

    folder = out / "onnx"
    folder.mkdir(parents=True, exist_ok=True)
    entries: dict[str, dict[str, Any]] = {}
    for name in ONNX_PRESETS:
        library = ARCHS[name].libraries[0]
        torch.manual_seed(0)
        model = (
            torchvision.models.get_model(name, weights=None)
            if library == "torchvision"
            else timm.create_model(name, pretrained=False)
        ).eval()
        for exporter in ("ts", "dynamo"):
            path = folder / f"{name}.{exporter}.onnx"
            _export(model, path, dynamo=exporter == "dynamo")
            entries[path.name] = {
                "preset": name,
                "library": f"{library} {importlib.metadata.version(library)}",
                "exporter": "torch.onnx.export(dynamo=True)" if exporter == "dynamo"
                else "torch.onnx.export (TorchScript)",
                "image_size": ONNX_SIZE,
                "stripped": _strip(path),
                "bytes": path.stat().st_size,
            }  # fmt: skip
            print(f"{path.name}: {entries[path.name]}", flush=True)
    meta = {
        "made_by": "scripts/golden_fixtures.py --onnx",
        "torch": torch.__version__,
        "date": datetime.date.today().isoformat(),
        "exports": entries,
    }
    (folder / "onnx.json").write_text(json.dumps(meta, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "akamaster",
        type=Path,
        nargs="?",
        help=f"resnet.py of {AKAMASTER_REPO} at {AKAMASTER_COMMIT}",
    )
    parser.add_argument("--out", type=Path, required=True, help="the fixtures' folder")
    parser.add_argument("--onnx", action="store_true", help="only the exporters' graphs")
    args = parser.parse_args()
    if args.onnx:
        make_onnx(args.out)
        return
    if args.akamaster is None:
        parser.error("the akamaster resnet.py is needed (or --onnx alone)")
    make(args.out, args.akamaster)


if __name__ == "__main__":
    main()
