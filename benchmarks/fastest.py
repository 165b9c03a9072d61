"""The suite's fastest ResNet-50 configuration against onnxruntime fp32, in one interleaved run.

One `bench-runtimes run` (one process, every job loaded together and timed in shuffled rounds):
ResNet-50 at 224x224 on ort-cpu and OpenVINO, at fp32, bf16, int8 and int8-bf16, batch 1 and 8,
in latency and throughput mode, each with parity against torch fp64 (on the fp32 graph for the
lower precisions). Then, per batch, the fastest configuration inside the accuracy budget (parity
passed; `--max-rel-l2` / `--min-top1` for a stricter one) against ort-cpu fp32 in latency mode
at the same batch, as the paired ratio of their round figures with its 95% interval, plus the
paired int8/fp32 and bf16/fp32 ratios of each engine.

Goals (issue 22, on an AMX Xeon): >= 7x at batch 8 (throughput) and >= 4.5x at batch 1. On a
CPU without AMX or VNNI the same script runs and prints what it finds; a goal is judged on the
paired ratio's median, and the CPU flags and the machine's load are printed beside it.

    python benchmarks/fastest.py [--out fastest-results] [--duration-s 3] [--threads 2]
        [--runtimes ort-cpu,openvino] [--max-rel-l2 0.1] [--min-top1 0.99]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent
GOALS = {1: 4.5, 8: 7.0}  # speedup over ort-cpu fp32 (latency mode, same batch)


def main(argv: list[str] | None = None) -> int:
    from reports.fastest import BASELINE, Budget, accuracy, configuration, per_image_ms
    from reports.ratios import pair, paired_ratios
    from reports.render import render
    from reports.schema import load_report
    from resnet_common.records import mode_of
    from runtimes.environment import cpu_flags, cpu_model

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("fastest-results"))
    p.add_argument("--model", default="resnet50")
    p.add_argument("--runtimes", default="ort-cpu,openvino")
    p.add_argument("--precisions", default="fp32,bf16,int8,int8-bf16")
    p.add_argument("--duration-s", dest="duration_s", default="3")
    p.add_argument("--threads", default="2")
    p.add_argument("--max-rel-l2", dest="max_rel_l2", type=float)
    p.add_argument("--min-top1", dest="min_top1", type=float)
    args = p.parse_args(argv)
    flags = cpu_flags()
    print(f"CPU: {cpu_model()}; flags: {' '.join(flags) or 'none of note'}")
    if not {"amx_bf16", "amx_int8"} <= set(flags):
        print(
            "note: the goals below were set for an AMX Xeon; this CPU has no AMX, so they are "
            "judged as they are and say what this CPU does, nothing more"
        )
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    cmd = [str(BIN / "bench-runtimes"), "run", "--models", args.model, "--runtimes",
           args.runtimes, "--precision", args.precisions, "--batch", ",".join(map(str, GOALS)),
           "--mode", "latency,throughput", "--threads", args.threads, "--duration-s",
           args.duration_s, "--interleave", "--overwrite", "--out", str(args.out)]  # fmt: skip
    print("$ " + " ".join(cmd), flush=True)
    done = subprocess.run(cmd, stdout=subprocess.DEVNULL, check=False)
    if done.returncode != 0:
        print(f"bench-runtimes exited {done.returncode}")
        return 2
    report = load_report(render([args.out], out=args.out)["json"])
    records = [r for r in report["records"] if r["status"] == "ok"]
    budget = Budget(args.max_rel_l2, args.min_top1)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"accuracy budget: {budget.describe()}\n")
    missed = 0
    print("| batch | fastest within budget | per image | accuracy vs fp32 | vs ort-cpu fp32 "
          "(paired, 95% CI) | goal |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for batch, goal in GOALS.items():
        here = [r for r in records if r["batch"] == batch]
        base = next(
            (r for r in here
             if (r["runtime"], r["precision"]) == BASELINE and mode_of(r) == "latency"), None,
        )  # fmt: skip
        inside = [r for r in here if budget.admits(r)]
        if batch == 1:  # batch 1 answers the latency question: one request at a time
            inside = [r for r in inside if mode_of(r) == "latency"]
        if base is None or not inside:
            print(f"| {batch} | nothing to compare (baseline or budget) | | | | not judged |")
            continue
        best = min(inside, key=per_image_ms)
        found = pair(base, best)
        rel, top1 = accuracy(best)
        if found is None:
            ratio_text, ratio = "not paired", per_image_ms(base) / per_image_ms(best)
        else:
            ratio, lo, hi, rounds = found
            ratio_text = f"{ratio:.2f}x [{lo:.2f}, {hi:.2f}], {rounds} rounds"
        verdict = "met" if ratio >= goal else "MISSED"
        missed += verdict == "MISSED"
        acc = f"relL2 {rel:.1e}, top-1 {top1:.0%}" if rel is not None and top1 is not None else "-"
        print(
            f"| {batch} | {configuration(best)} | {per_image_ms(best):.2f} ms | {acc} | "
            f"{ratio_text} | >= {goal}x: {verdict} |"
        )
    print("\nprecision ratios of one engine (paired, per-inference time A / B; < 1: A faster)")
    for r in paired_ratios(report):
        if r.kind == "precisions" and r.b == "fp32":
            print(f"  {r.context}: {r.a} / {r.b} = {r.ratio:.3f} [{r.lo:.3f}, {r.hi:.3f}]")
    loads = [r.get("load") or {} for r in records]
    others = [x for d in loads if (x := (d.get("during") or {}).get("others_cores")) is not None]
    if others:
        print(f"\nother processes used {min(others):.1f}-{max(others):.1f} of the cores meanwhile")
    print(f"\nreport: {args.out / 'report.md'}; records: {args.out / 'results.jsonl'}")
    summary = {"missed": missed, "out": str(args.out)}
    print(json.dumps(summary))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
