"""How far bf16 (and int8 with bf16 float parts) lands from fp32, on random and trained nets:
the measurements behind bf16's parity tolerance (runtimes/parity/judge.py, docs/fastest.md).

Random He-initialised nets: `bench-runtimes parity`'s own check (torch fp64 on the fp32 graph as
the reference, seeded inputs) for each network and engine. A trained net: a ResNet-8 fitted by
resnet-train on the synthetic set (32x32, as benchmarks/int8.py does), its bf16 graph and its
int8 graph run on 2000 held-out images and compared with the fp32 graph's logits (onnxruntime):
relative L2, top-1 agreement (all, and on decisive samples) and validation error.

    python benchmarks/bf16_accuracy.py [--skip-trained] [--skip-random]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from runtimes import registry
from runtimes.environment import cpu_flags, cpu_model
from runtimes.parity import check_parity, compare

RANDOM = (
    ("cifar-resnet20", None, 8),
    ("resnet18", 64, 8),
    ("resnet50", 64, 8),
    ("resnet50", 224, 8),
)
ENGINES = ("openvino", "torch")


def random_nets() -> None:
    print("random nets (bench-runtimes parity; reference: torch fp64 on the fp32 graph)")
    print("| network | precision | engine | rel. L2 | top-1 (all) | decisive top-1 (n) |")
    print("|---|---|---|---|---|---|")
    for model, size, batch in RANDOM:
        for precision, engines in (("bf16", ENGINES), ("int8-bf16", ("openvino",))):
            report = check_parity([model], list(engines), precision=precision, batch=batch,
                                  image_size=size)  # fmt: skip
            for result in report.models:
                for engine in result.results:
                    c = engine.comparison
                    if c is None:
                        print(f"| {model} | {precision} | {engine.runtime} | {engine.reason} |")
                        continue
                    m = c.metrics
                    dec = "-" if m.decisive_top1 is None else f"{m.decisive_top1:.0%}"
                    name = f"{model} ({size or 32}px, batch {batch})"
                    print(
                        f"| {name} | {precision} | {engine.runtime} | {m.rel_l2:.4f} | "
                        f"{m.top1:.0%} | {dec} ({m.decisive}) |"
                    )


def trained_net(folder: Path) -> None:
    from graphgen.cli import main as graphgen_main
    from runtimes.models import resolve
    from train.cli import main as train_main
    from train.data import synthetic_data

    t0 = time.perf_counter()
    argv = ["--depth", "8", "--image-size", "32", "--synthetic-train", "512",
            "--synthetic-val", "128", "--batch-size", "64", "--epochs", "4", "--schedule",
            "constant", "--lr", "0.05", "--workers", "0", "--quiet", "--out",
            str(folder / "run"), "--export", str(folder / "r8.onnx")]  # fmt: skip
    if train_main(argv) != 0:
        raise SystemExit("training failed")
    print(f"\ntrained ResNet-8 in {time.perf_counter() - t0:.0f} s (synthetic, 32x32, 4 epochs)")
    data = synthetic_data(train=512, val=2000, classes=10, image_size=32, seed=0)
    np.save(folder / "calib.npy", data.train.images[:64].numpy())
    graphgen_main(["quantize", str(folder / "r8.onnx"), "--calibration-data",
                   str(folder / "calib.npy"), "-o", str(folder / "r8-int8.onnx")])  # fmt: skip
    bf16 = resolve(folder / "r8.onnx", precision="bf16", cache_dir=folder / "cache").path
    meta = {p.key: p.value for p in __import__("onnx").load(folder / "r8.onnx").metadata_props}
    mean = np.array(json.loads(meta["graphgen.normalize_mean"]), np.float32)[:, None, None]
    std = np.array(json.loads(meta["graphgen.normalize_std"]), np.float32)[:, None, None]
    x = ((data.val.images.numpy().astype(np.float32) / 255 - mean) / std).astype(np.float32)
    labels = data.val.labels.numpy()

    def logits(engine: str, path: Path, precision: str) -> np.ndarray:
        with registry.create(engine, path, precision=precision) as runner:
            return np.concatenate(
                [runner.infer({"input": x[i : i + 250]})["logits"] for i in range(0, len(x), 250)]
            )

    ref = logits("ort-cpu", folder / "r8.onnx", "fp32")
    err_ref = float((ref.argmax(1) != labels).mean())
    print(f"fp32 (ort-cpu) val. error {err_ref:.2%} on {len(x)} held-out images")
    print("| engine | precision | val. error | vs fp32 | rel. L2 | top-1 agreement | decisive |")
    print("|---|---|---|---|---|---|---|")
    runs = [("openvino", bf16, "bf16"), ("torch", bf16, "bf16"),
            ("openvino", folder / "r8-int8.onnx", "int8"),
            ("openvino", folder / "r8-int8.onnx", "int8-bf16")]  # fmt: skip
    for engine, path, precision in runs:
        out = logits(engine, path, precision)
        err = float((out.argmax(1) != labels).mean())
        m = compare(out, ref, precision=precision).metrics
        dec = "-" if m.decisive_top1 is None else f"{m.decisive_top1:.2%} of {m.decisive}"
        print(
            f"| {engine} | {precision} | {err:.2%} | {100 * (err - err_ref):+.2f} pt | "
            f"{m.rel_l2:.4f} | {m.top1:.2%} | {dec} |"
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--skip-trained", action="store_true")
    p.add_argument("--skip-random", action="store_true")
    args = p.parse_args(argv)
    print(f"CPU: {cpu_model()}; flags: {' '.join(cpu_flags())}")
    if not args.skip_random:
        random_nets()
    if not args.skip_trained:
        with tempfile.TemporaryDirectory(prefix="bf16-acc-") as tmp:
            trained_net(Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
