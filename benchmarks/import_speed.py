"""MXNet's own ONNX export against `graphgen import` of it, interleaved on ort-cpu.

MXNet's exporter lists every initializer as a graph input too (as ONNX IR 3 required), so
onnxruntime must treat the weights as overridable inputs and cannot fold BN into the convs; the
graphgen graph of the same weights has plain initializers. Both files are loaded together and
timed in shuffled rounds (runtimes.interleave), so the machine's slow phases fall on both alike,
and the paired per-round ratio comes with a distribution-free 95% interval.

    bash scripts/make-gluon-fixtures.sh --full /tmp/gluon-full    # MXNet side venv, once
    python benchmarks/import_speed.py /tmp/gluon-full/resnet50_v1.onnx [--seconds 20]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from graphgen.cli import main as graphgen
from resnet_common.stats import median, paired_ratio
from runtimes import registry
from runtimes.inputs import feeds
from runtimes.interleave import SLOT_S, Slot, run_rounds
from runtimes.models import resolve
from runtimes.timing import LoopConfig


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mxnet_onnx", type=Path, help="mx.onnx.export_model's file (batch 1)")
    p.add_argument("--seconds", type=float, default=20.0, help="timed seconds per engine")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    args = p.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        ours = Path(tmp) / "graphgen.onnx"
        if graphgen(["import", str(args.mxnet_onnx), "--batch", "1", "-o", str(ours)]) != 0:
            return 1
        slots = []
        for label, path in (("mxnet", args.mxnet_onnx), ("graphgen", ours)):
            model = resolve(path)
            x = feeds(model.input_name, 1, model.image_size)
            runner = registry.create("ort-cpu", model.path, threads=args.threads)
            slot = Slot(label, runner, x)
            slot.start(LoopConfig(warmup=None, warmup_s=1.0))
            slots.append(slot)
        rounds = max(20, round(args.seconds / SLOT_S))
        errors = run_rounds(slots, rounds, seed=0)
        for slot in slots:
            slot.runner.deactivate()
    if errors:
        print(f"failed: {errors}")
        return 1
    mx, gg = slots
    found = paired_ratio(mx.round_medians_ms, gg.round_medians_ms)
    print(f"{args.mxnet_onnx.name}, batch 1, ort-cpu, {args.threads} thread(s), {rounds} rounds")
    print(
        f"median latency: MXNet export {median(sorted(mx.samples_ms)):.2f} ms, "
        f"graphgen import {median(sorted(gg.samples_ms)):.2f} ms"
    )
    if found is None:
        print("too few rounds for an interval")
        return 1
    ratio, lo, hi = found
    print(f"MXNet export / graphgen import = {ratio:.3f}x, 95% CI [{lo:.3f}, {hi:.3f}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
