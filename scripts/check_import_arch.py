"""Import random-weight torchvision and timm ResNets' state_dicts with and without --arch.

Needs torch, torchvision and timm beside graphgen (not the project's environment: CI has neither
library), e.g. `PYTHONPATH=. /path/to/venv-with-timm/bin/python scripts/check_import_arch.py`.
Each net gets random weights with BN statistics and affine parameters far from identity; one line
per (net, --arch or not): graphgen's exit code and what it printed about the check. Used for the
table in docs/import.md.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import tempfile
from pathlib import Path

import torch

from graphgen.cli import main as graphgen

NETS = [
    "torchvision:resnet18",
    "torchvision:resnet50",
    "timm:resnet50",
    "timm:resnetaa50",  # anti-aliased: resnet50's names and shapes, another computation
    "timm:resnetblur50",  # blur pool: the same
    "timm:resnet50d",  # deep stem: names graphgen does not read
]


def make(arch: str, path: Path, seed: int) -> None:
    library, name = arch.split(":")
    torch.manual_seed(seed)
    if library == "torchvision":
        import torchvision

        net = torchvision.models.get_model(name, weights=None)
    else:
        import timm

        net = timm.create_model(name, pretrained=False)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) * 0.6 - 0.3)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.bias.shape, generator=g) * 0.4 - 0.2)
    torch.save(net.state_dict(), path)


def run(argv: list[str]) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = graphgen(argv)
    lines = (out.getvalue() + err.getvalue()).splitlines()
    said = [line for line in lines if line.startswith(("verified", "NOT checked", "error"))]
    return code, " | ".join(said)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument(
        "nets", nargs="*", default=NETS, help="LIBRARY:MODEL (default: %(default)s)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for seed, arch in enumerate(args.nets):
            src = Path(tmp) / f"{arch.replace(':', '-')}.pth"
            make(arch, src, seed)
            base = ["import", str(src), "--image-size", str(args.image_size), "-o"]
            base.append(str(Path(tmp) / "out.onnx"))
            for extra in (["--arch", arch], ["--stride-at", "3x3"]):
                code, said = run([*base, *extra])
                print(f"{arch} {' '.join(extra)}: exit {code}: {said}", flush=True)


if __name__ == "__main__":
    main()
