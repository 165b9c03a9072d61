"""Every `graphgen build --arch` preset against its own library, over every route: docs/variants.md.

Runs in a venv with torch, torchvision, timm, onnx, onnxruntime and onnxscript beside the project
(never the project's venv, which has neither torchvision nor timm):

    /work/refvenv/bin/python scripts/variants_table.py --image-size 64 --out docs/variants.md

For each preset (graphgen/archs.py) the source network is built by the library that ships it
(torchvision where both do), given random weights with non-trivial BN statistics (running means
and variances drawn away from 0 and 1, affine BN parameters away from 1 and 0, seeded), and run
in float64 on seeded images. Each route then makes a graphgen graph of it, run on onnxruntime
(float32), and its rel. L2 against the library's output is recorded:

- build+inject: `graphgen build --arch NAME`, the state_dict injected by name;
- state_dict: `graphgen import` of the state_dict (.safetensors) with `--arch NAME`;
- onnx-ts: `graphgen import` of torch.onnx.export's TorchScript export (BN folded into the convs);
- onnx-dynamo: `graphgen import` of torch.onnx.export(dynamo=True)'s export.

A route that refuses is recorded with the first line of its refusal. Params and MACs are
graphgen's plan counts at 224 px (tests/test_archs.py checks them against torch's and fvcore's).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import io
import json
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import timm
import torch
import torchvision
from safetensors.torch import save_file
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from graphgen.archs import ARCHS, arch_spec  # noqa: E402
from graphgen.importers.common import rel_l2, run_onnx  # noqa: E402
from graphgen.importing import import_model  # noqa: E402
from graphgen.inject import inject  # noqa: E402
from graphgen.onnx_io import build as build_graph  # noqa: E402
from graphgen.onnx_io import save  # noqa: E402
from graphgen.plan import expand  # noqa: E402

ROUTES = ("build+inject", "state_dict", "onnx-ts", "onnx-dynamo")
BATCH, SEED = 2, 0


def source_model(name: str) -> tuple[str, nn.Module]:
    library = ARCHS[name].libraries[0]
    if library == "torchvision":
        return library, torchvision.models.get_model(name, weights=None)
    return library, timm.create_model(name, pretrained=False)


def randomise(model: nn.Module, seed: int) -> None:
    """Seeded weights with BN statistics and affine parameters far from their defaults, so that
    a BN read as the wrong one (or dropped) shows in the outputs; conv weights scaled so the
    activations neither vanish nor explode through the depth."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                c = module.num_features
                module.running_mean.copy_(torch.randn(c, generator=g) * 0.2)
                module.running_var.copy_(torch.rand(c, generator=g) * 1.5 + 0.5)
                if module.affine:
                    module.weight.copy_(torch.rand(c, generator=g) * 0.5 + 0.5)
                    module.bias.copy_(torch.randn(c, generator=g) * 0.2)
            elif isinstance(module, nn.Conv2d | nn.Conv1d | nn.Linear):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=g) / fan_in**0.5)
                if module.bias is not None:
                    module.bias.copy_(torch.randn(module.bias.shape, generator=g) * 0.1)


def routes(name: str, size: int, work: Path) -> dict[str, Any]:
    library, model = source_model(name)
    randomise(model, SEED)
    model.eval()
    x = np.random.default_rng(SEED).standard_normal((BATCH, 3, size, size)).astype(np.float32)
    with torch.inference_mode():
        truth = model.double()(torch.from_numpy(x.astype(np.float64))).numpy()
    model.float()
    state = {k: v.contiguous() for k, v in model.state_dict().items() if "num_batches" not in k}
    weights = work / f"{name}.safetensors"
    save_file(state, str(weights))
    row: dict[str, Any] = {"library": library}
    spec = arch_spec(name, image_size=size)
    row["params"], row["macs"] = (lambda p: (p.params, p.macs))(expand(arch_spec(name)))

    def record(route: str, make: Any) -> None:
        start = time.perf_counter()
        try:
            out = make()
            row[route] = rel_l2(run_onnx(str(out), x), truth)
        except Exception as err:  # noqa: BLE001 - a refusal is a result here
            lines = str(err).strip().splitlines() or [type(err).__name__]
            row[route] = f"{type(err).__name__}: {lines[0]}"
        row[f"{route}.s"] = time.perf_counter() - start

    def built() -> Path:
        out = work / f"{name}.injected.onnx"
        arrays = {k: v.numpy() for k, v in state.items()}
        graph = build_graph(spec, seed=1)
        save(inject(graph, arrays, source=weights.name, stride_at=spec.stride_at), out)
        return out

    def imported(source: Path, **kw: Any) -> Path:
        out = work / f"{source.stem}.imported.onnx"
        import_model(source, out, **kw)
        return out

    def exported(dynamo: bool) -> Path:
        path = work / f"{name}.{'dynamo' if dynamo else 'ts'}.onnx"
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (torch.from_numpy(x),),
                str(path),
                input_names=["input"],
                output_names=["logits"],
                opset_version=18 if dynamo else 17,
                dynamo=dynamo,
                **({"external_data": False} if dynamo else {}),
            )
        return path

    record("build+inject", built)
    record("state_dict", lambda: imported(weights, arch=name, image_size=size))
    for route, dynamo in (("onnx-ts", False), ("onnx-dynamo", True)):
        try:
            source = exported(dynamo)
        except Exception as err:  # noqa: BLE001
            row[route] = f"export failed: {str(err).strip().splitlines()[0]}"
            continue
        record(route, lambda s=source: imported(s))
    return row


def cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.1e}"
    text = str(value).replace("|", "\\|")
    return f"refused: {text}" if not text.startswith("export failed") else text


def markdown(rows: dict[str, dict[str, Any]], size: int, seconds: float) -> str:
    versions = ", ".join(
        f"{m} {importlib.metadata.version(m)}"
        for m in ("torch", "torchvision", "timm", "onnx", "onnxruntime", "onnxscript")
    )
    lines = [
        "# Every preset against its library, over every route",
        "",
        "Made by `scripts/variants_table.py` (read its docstring for the method):",
        "",
        "    /work/refvenv/bin/python scripts/variants_table.py "
        f"--image-size {size} --out docs/variants.md",
        "",
        f"Rel. L2 of the graphgen graph (onnxruntime, float32, batch {BATCH}, {size}x{size} "
        "seeded images) against the source library's network (float64) with the same random "
        "weights and non-trivial BN statistics. Params and MACs are graphgen's plan counts at "
        "224 px (equal to torch's parameter count and fvcore's conv + linear MACs: "
        "tests/test_archs.py).",
        "",
        f"{versions}; {platform.python_version()}, {platform.machine()}; "
        f"{datetime.date.today().isoformat()}; the routes took {seconds:.0f} s in all.",
        "",
        "How each route reads a zoo variant: the importers recognise ResNeXt, Wide, the deep "
        "stems, ResNet-D, SE/ECA, ResNet-RS and ResNetV2 as these presets (a state_dict by "
        "`--arch NAME` or by names only a preset explains; an ONNX graph by pairing every node "
        "with a preset's plan), not by inferring their fields. A variant of a depth or width no "
        "preset has is refused by name, naming the closest preset and where it differs. "
        "`graphgen quantize` quantizes grouped convs per output channel (axis 0 of the "
        "(cout, cin / groups, k, k) weight) and keeps SE's and ECA's sigmoid and multiply (and "
        "ECA's 1-d conv) in float, as its output line and the file's "
        "`graphgen.quant.kept_float` say; tests/test_zoo_routes.py checks `--fold-bn` and fp16 "
        "builds of every preset (one unit a stage, 32 px) against the fp32 graph on "
        "onnxruntime.",
        "",
        "| preset | source | params | MACs (224) | " + " | ".join(ROUTES) + " |",
        "|---|---|--:|--:|" + "---|" * len(ROUTES),
    ]
    for name, row in rows.items():
        cells = [cell(row.get(route, "")) for route in ROUTES]
        lines.append(
            f"| {name} | {row['library']} | {row['params']:,} | {row['macs'] / 1e9:.2f} G | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--only", nargs="*", help="presets (default: all)")
    parser.add_argument("--out", type=Path, help="the Markdown table (default: print it)")
    parser.add_argument("--work", type=Path, help="keep the exports here")
    parser.add_argument(
        "--rows",
        type=Path,
        help="a JSON file of finished rows: read first (those presets are not run again), "
        "rewritten after each preset, so an interrupted run resumes",
    )
    args = parser.parse_args()
    torch.manual_seed(SEED)
    rows: dict[str, dict[str, Any]] = {}
    if args.rows and args.rows.exists():
        rows = json.loads(args.rows.read_text())
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for name in args.only or list(ARCHS):
            if name in rows:
                continue
            rows[name] = routes(name, args.image_size, work)
            if args.rows:
                args.rows.write_text(json.dumps(rows, indent=1) + "\n")
            print(name, {k: v for k, v in rows[name].items() if not k.endswith(".s")},
                  file=sys.stderr, flush=True)  # fmt: skip
    order = [name for name in ARCHS if name in rows]
    seconds = sum(v for row in rows.values() for k, v in row.items() if k.endswith(".s"))
    text = markdown({n: rows[n] for n in order}, args.image_size, seconds)
    if args.out:
        args.out.write_text(text)
    else:
        print(text)


if __name__ == "__main__":
    main()
