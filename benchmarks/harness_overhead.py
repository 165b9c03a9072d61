"""The harness's own cost: its median latency vs a bare `session.run` loop, same process.

Both loops time the same onnxruntime session (ort-cpu, ResNet-18, 224x224, batch 1) in
alternating blocks, so drift in clock speed or machine load hits both alike. The harness path is
exactly what `bench-runtimes run` times: `timing.timed_loop` over `timing.bound_step`
(Runner.timed_run with perf_counter_ns around the runner's infer). Goal: within 2%.

    python benchmarks/harness_overhead.py [--rounds 100] [--per-round 1] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time

from runtimes import registry, timing
from runtimes.inputs import feeds as make_feeds
from runtimes.models import resolve


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet18")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--rounds", type=int, default=100)
    p.add_argument("--per-round", type=int, default=1)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()

    model = resolve(args.model, precision="fp32", image_size=args.image_size)
    feeds = make_feeds(model.input_name, 1, model.image_size, seed=1)
    runner = registry.create("ort-cpu", model.path, threads=args.threads)
    runner.activate()
    session, names = runner.session, runner.output_names
    runner.bind(feeds)
    harness_step = timing.bound_step(runner)

    def bare_step() -> float:
        t0 = time.perf_counter_ns()
        session.run(names, feeds)
        return (time.perf_counter_ns() - t0) * 1e-6

    for _ in range(3):  # warm-up, both paths
        harness_step(), bare_step()
    harness: list[float] = []
    bare: list[float] = []
    for i in range(args.rounds):  # ABBA order so neither path always goes first
        order = (harness, bare) if i % 2 == 0 else (bare, harness)
        for samples in order:
            step = harness_step if samples is harness else bare_step
            samples += timing.timed_loop(step, args.per_round, None)
    runner.deactivate()

    h, b = statistics.median(harness), statistics.median(bare)
    ratio = h / b
    k = args.per_round  # paired blocks: robust to drift between rounds
    pairs = [
        statistics.median(harness[i : i + k]) / statistics.median(bare[i : i + k])
        for i in range(0, len(harness), k)
    ]
    print(f"model {args.model} {args.image_size}x{args.image_size} batch 1, ort-cpu, ", end="")
    print(f"{len(harness)} + {len(bare)} iterations in {args.rounds} alternating rounds")
    print(f"harness median {h:.3f} ms   bare session.run median {b:.3f} ms")
    print(f"overhead ratio {ratio:.4f} ({(ratio - 1) * 100:+.2f}%)  goal: within 2%")
    paired = statistics.median(pairs)
    print(f"median of paired-round ratios {paired:.4f} ({(paired - 1) * 100:+.2f}%, the verdict)")
    return 0 if abs(paired - 1) <= 0.02 else 1


if __name__ == "__main__":
    raise SystemExit(main())
