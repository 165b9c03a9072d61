"""graphgen vs torch.onnx.export vs the floor, for ResNet-152, in one run.

Each job runs in its own process, launched by a tiny wrapper that reports the child's wall time
and peak RSS, so the numbers are whole-process (imports included) and comparable:

- graphgen:      `graphgen build --depth 152`
- torch-dynamo:  torch.onnx.export(..., dynamo=True), the default exporter (needs onnxscript:
                 `pip install -e '.[bench]'`)
- torch-legacy:  torch.onnx.export(..., dynamo=False), the TorchScript exporter
- floor:         draw 60.2M float32 normals with numpy and write those 240 MB to disk

The torch model is the plan's own PlanNet (the same network, same parameter count); it is put in
eval mode and exported at batch 1, 224x224. Goals (issue 2): graphgen >= 10x faster than the
default exporter, >= 5x faster than the legacy one, within 2x of the floor, peak memory <= 3x the
model's size.

    python benchmarks/graphgen_export.py [--depth 152] [--repeat 1] [--skip-dynamo]

A peer that fails prints its last error line; every goal is printed as met, MISSED or NOT
MEASURED, and the exit status is 1 when any goal is not met. Without torch, or without onnxscript
for the default exporter, it says which extra to install (`bench`, in the dev extra too) in one
line and exits 2 before measuring anything.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path

WRAPPER = r"""
import json, resource, subprocess, sys, time
start = time.perf_counter()
child = subprocess.run(sys.argv[1:], capture_output=True, text=True)
wall = time.perf_counter() - start
rss_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
lines = [l for l in child.stderr.strip().splitlines() if l.strip()]
print(json.dumps({"wall_s": wall, "peak_rss_mb": rss_kb / 1024, "rc": child.returncode,
                  "error": lines[-1] if lines else ""}))
"""


TORCH_EXPORT = r"""
import sys, torch
from graphgen.spec import spec_for_depth
from graphgen.torch_module import build_model
depth, dynamo, out = int(sys.argv[1]), sys.argv[2] == "1", sys.argv[3]
spec = spec_for_depth(depth)
model = build_model(spec).eval()
x = torch.randn(1, 3, spec.image_size, spec.image_size)
with torch.no_grad():
    torch.onnx.export(model, (x,), out, dynamo=dynamo, input_names=["input"],
                      output_names=["logits"])
"""

FLOOR = r"""
import sys, numpy as np
n, out = int(sys.argv[1]), sys.argv[2]
data = np.random.default_rng(0).standard_normal(n, dtype=np.float32)
with open(out, "wb") as f:
    f.write(data.tobytes())
"""


def measure(argv: list[str]) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", WRAPPER, *argv], capture_output=True, text=True, check=True
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--depth", type=int, default=152)
    parser.add_argument("--repeat", type=int, default=1, help="runs per job; the best is kept")
    parser.add_argument("--skip-dynamo", action="store_true", help="skip the default exporter")
    args = parser.parse_args()
    missing = [m for m in ("torch", "onnxscript") if importlib.util.find_spec(m) is None]
    if args.skip_dynamo and "onnxscript" in missing:
        missing.remove("onnxscript")
    if missing:
        from resnet_common.extras import missing_module_message

        why = "; torch.onnx.export's default (dynamo) exporter needs it, or pass --skip-dynamo"
        print(f"error: {missing_module_message(missing[0], 'bench')}"
              + (why if missing == ["onnxscript"] else ""), file=sys.stderr)  # fmt: skip
        return 2

    from graphgen.plan import expand
    from graphgen.spec import spec_for_depth

    params = expand(spec_for_depth(args.depth)).params
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        jobs = {
            "graphgen": [
                sys.executable,
                "-m",
                "graphgen",
                "build",
                "--depth",
                str(args.depth),
                "-o",
                str(tmp / "graphgen.onnx"),
            ],
            "torch-legacy": [
                sys.executable,
                "-c",
                TORCH_EXPORT,
                str(args.depth),
                "0",
                str(tmp / "legacy.onnx"),
            ],
            "floor": [sys.executable, "-c", FLOOR, str(params), str(tmp / "floor.bin")],
        }
        if not args.skip_dynamo:
            jobs["torch-dynamo"] = [
                sys.executable,
                "-c",
                TORCH_EXPORT,
                str(args.depth),
                "1",
                str(tmp / "dynamo.onnx"),
            ]
        results = {}
        for name, argv in jobs.items():
            runs = [measure(argv) for _ in range(args.repeat)]
            failed = [r for r in runs if r["rc"] != 0]
            results[name] = failed[0] if failed else min(runs, key=lambda r: r["wall_s"])
        model_mb = (tmp / "graphgen.onnx").stat().st_size / 2**20

    g = results["graphgen"]
    print(f"ResNet-{args.depth}: {params:,} params, graphgen file {model_mb:.0f} MB")
    print(f"{'job':<14}{'wall s':>9}{'peak MB':>10}{'graphgen speedup':>18}")
    for name, r in results.items():
        status = "" if r["rc"] == 0 else f"  (FAILED, rc={r['rc']}: {r.get('error') or '?'})"
        speedup = r["wall_s"] / g["wall_s"]
        print(f"{name:<14}{r['wall_s']:>9.2f}{r['peak_rss_mb']:>10.0f}{speedup:>17.2f}x{status}")
    checks = []
    for peer, goal in (("torch-dynamo", 10.0), ("torch-legacy", 5.0)):
        r = results.get(peer)
        if r is None:
            continue
        if r["rc"] != 0:
            checks.append(
                (f"speedup vs {peer}", None, f">= {goal:g}x", "NOT MEASURED (peer failed)")
            )
            continue
        value = r["wall_s"] / g["wall_s"]
        checks.append((f"speedup vs {peer}", value, f">= {goal:g}x", value >= goal))
    floor = g["wall_s"] / results["floor"]["wall_s"]
    checks.append(("wall time / floor", floor, "<= 2x", floor <= 2.0))
    memory = g["peak_rss_mb"] / model_mb
    checks.append(("peak memory / model size", memory, "<= 3x", memory <= 3.0))
    missed = 0
    for what, value, goal, met in checks:
        verdict = met if isinstance(met, str) else ("met" if met else "MISSED")
        missed += verdict != "met"
        shown = "-" if value is None else f"{value:.2f}x"
        print(f"{what:<26}{shown:>9}  goal {goal:<7} {verdict}")
    print(f"{missed} goal(s) missed or not measured" if missed else "every goal met")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
