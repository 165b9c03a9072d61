"""Gluon ResNets with random weights, saved every way MXNet saves them, with MXNet's outputs.

Runs in the MXNet side venv (scripts/make-gluon-fixtures.sh), never in the project's. For each
net: `NAME.params` (save_parameters names, features.5.0.body.0.weight), `NAME-0000.params`
(export names, arg:resnetv10_stage1_conv0_weight), `NAME.onnx` (mx.onnx.export_model) and
`NAME.npz` (seeded `input` and MXNet's `output`). Weights are random, conv biases non-zero and
BN statistics far from identity, so a wrong mapping or a missed field shows in the outputs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import mxnet as mx
import numpy as np
from mxnet.gluon.model_zoo import vision
from mxnet.gluon.model_zoo.vision.resnet import (
    BasicBlockV1,
    BasicBlockV2,
    BottleneckV1,
    BottleneckV2,
    ResNetV1,
    ResNetV2,
)

SMALL = {  # name: (net class, block, layers, channels, thumbnail)
    "v1_basic": (ResNetV1, BasicBlockV1, [2, 1], [8, 8, 16], False),
    "v1_bottleneck": (ResNetV1, BottleneckV1, [1, 2], [8, 16, 32], False),
    "v2_basic": (ResNetV2, BasicBlockV2, [2, 1], [8, 8, 16], False),
    "v2_bottleneck": (ResNetV2, BottleneckV2, [1, 2], [8, 16, 32], False),
    "v1_thumbnail": (ResNetV1, BasicBlockV1, [1, 1], [8, 8, 16], True),
}
SMALL_CLASSES, SMALL_SIZE, BATCH = 5, 32, 2


def randomise(net: mx.gluon.HybridBlock, seed: int, gamma: tuple[float, float]) -> None:
    """Random weights and BN statistics; v2's data BN keeps Gluon's fixed scale 1 and shift 0."""
    rng = np.random.default_rng(seed)
    params = net.collect_params()
    for name, p in params.items():
        shape = p.shape
        if name.endswith("weight") and len(shape) == 4:
            fan_out = shape[0] * shape[2] * shape[3]
            value = rng.normal(0, np.sqrt(2.0 / fan_out), shape)
        elif name.endswith("weight"):
            value = rng.uniform(-1, 1, shape) / np.sqrt(shape[1])
        elif name.endswith("bias"):
            value = rng.normal(0, 0.5, shape)
        elif name.endswith("gamma"):
            # v2's data BN (scale=False) keeps Gluon's ones: MXNet ignores it (fix_gamma), but
            # mx.onnx.export_model writes it into the ONNX BN as is.
            value = rng.uniform(*gamma, shape) if p.grad_req != "null" else np.ones(shape)
        elif name.endswith("beta"):
            value = rng.normal(0, 0.2, shape) if p.grad_req != "null" else np.zeros(shape)
        elif name.endswith("running_mean"):
            value = rng.normal(0, 0.3, shape)
        elif name.endswith("running_var"):
            value = rng.uniform(0.5, 2.0, shape)
        else:
            raise SystemExit(f"unexpected parameter {name}")
        p.set_data(mx.nd.array(value.astype(np.float32)))


def save_all(
    net: mx.gluon.HybridBlock,
    out: Path,
    name: str,
    size: int,
    onnx_out: bool,
    onnx_batch: int = BATCH,
) -> None:
    rng = np.random.default_rng(7)
    x = rng.standard_normal((BATCH, 3, size, size)).astype(np.float32)
    net.save_parameters(str(out / f"{name}.params"))
    net.hybridize(static_alloc=False)
    y = net(mx.nd.array(x)).asnumpy()
    net.export(str(out / name))  # NAME-symbol.json + NAME-0000.params (arg:/aux: names)
    np.savez(out / f"{name}.npz", input=x, output=y)
    if onnx_out:
        mx.onnx.export_model(
            str(out / f"{name}-symbol.json"),
            str(out / f"{name}-0000.params"),
            in_shapes=[(onnx_batch, 3, size, size)],
            in_types=[np.float32],
            onnx_file_path=str(out / f"{name}.onnx"),
        )
    (out / f"{name}-symbol.json").unlink()
    print(f"{name}: output std {y.std():.3g}", flush=True)


def small(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    mx.random.seed(0)
    for seed, (name, (cls, block, layers, channels, thumb)) in enumerate(SMALL.items()):
        net = cls(block, layers, channels, classes=SMALL_CLASSES, thumbnail=thumb)
        net.initialize()
        net(mx.nd.zeros((1, 3, SMALL_SIZE, SMALL_SIZE)))
        randomise(net, seed, (0.5, 1.5))
        save_all(net, out, name, SMALL_SIZE, onnx_out=not thumb)
    (out / "README.md").write_text(
        "Made by scripts/make-gluon-fixtures.sh with MXNet "
        f"{mx.__version__}; nets: {json.dumps({k: v[2:] for k, v in SMALL.items()})}, "
        f"{SMALL_CLASSES} classes, {SMALL_SIZE}px, batch {BATCH}.\n"
    )


def full(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for version in (1, 2):
        for depth in (18, 50, 101):
            name = f"resnet{depth}_v{version}"
            net = vision.get_resnet(version, depth)
            net.initialize()
            net(mx.nd.zeros((1, 3, 224, 224)))
            # Small BN scales keep a random deep net's activations O(1), as training does.
            randomise(net, depth * 10 + version, (0.2, 0.5))
            # batch 1: what benchmarks/import_speed.py times
            save_all(net, out, name, 224, onnx_out=(name == "resnet50_v1"), onnx_batch=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, help="the small fixtures' folder")
    parser.add_argument("--full", type=Path, help="a folder for the full-size zoo nets")
    args = parser.parse_args()
    if args.full:
        full(args.full)
    else:
        small(args.out)


if __name__ == "__main__":
    main()
