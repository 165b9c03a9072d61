"""Why interleave: two identical engines, timed sequentially and interleaved, while a background
load starts halfway.

The same model runs on two ort-cpu sessions, A and B. Sequentially, A is timed first and B
second; the background load (CPU-burning processes) starts when A is done, so it lands on B
alone and B looks slower: a spurious difference between identical engines. Interleaved, both
sessions are loaded together and timed in shuffled rounds; the load starts halfway through the
rounds and falls on both alike, so the paired ratio's 95% interval contains 1.

    python benchmarks/interleave_noise.py [--model cifar-resnet56] [--seconds 6] [--burners 2]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time

from resnet_common.stats import median, median_ci, paired_ratio
from runtimes import registry
from runtimes.inputs import feeds
from runtimes.interleave import SLOT_S, Slot, run_rounds
from runtimes.models import resolve
from runtimes.timing import LoopConfig, bound_step, timed_loop


def burn(stop_at: float) -> None:
    x = 0
    while time.time() < stop_at:
        x = (x * 31 + 7) % 1000003


def start_load(n: int, seconds: float) -> list[mp.Process]:
    stop_at = time.time() + seconds
    procs = [mp.Process(target=burn, args=(stop_at,), daemon=True) for _ in range(n)]
    for p in procs:
        p.start()
    return procs


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="cifar-resnet56")
    p.add_argument("--seconds", type=float, default=6.0, help="timed seconds per engine")
    p.add_argument("--burners", type=int, default=2, help="background CPU-burning processes")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()

    model = resolve(args.model)
    x = feeds(model.input_name, 1, model.image_size)
    loop = LoopConfig(warmup=None, warmup_s=0.5)

    def session() -> Slot:
        runner = registry.create("ort-cpu", model.path, threads=args.threads)
        slot = Slot(f"ort-cpu #{id(runner)}", runner, x)
        slot.start(loop)
        return slot

    # Sequential: A, then B with the load.
    a, b = session(), session()
    seq_a = sorted(timed_loop(bound_step(a.runner), None, args.seconds))
    procs = start_load(args.burners, args.seconds + 1)
    seq_b = sorted(timed_loop(bound_step(b.runner), None, args.seconds))
    for proc in procs:
        proc.join()
    a.runner.deactivate()
    b.runner.deactivate()

    # Interleaved: both together; the load starts halfway through the rounds.
    a, b = session(), session()
    rounds = max(20, round(args.seconds / SLOT_S))
    run_rounds([a, b], rounds // 2, seed=1)
    procs = start_load(args.burners, args.seconds + 1)
    run_rounds([a, b], rounds - rounds // 2, seed=2)
    for proc in procs:
        proc.join()
    a.runner.deactivate()
    b.runner.deactivate()

    ma, mb = median(seq_a), median(seq_b)
    lo_a, hi_a = median_ci(seq_a)
    lo_b, hi_b = median_ci(seq_b)
    print(f"model {args.model}, ort-cpu x2, {args.threads} thread(s), {args.burners} burners")
    print(
        f"sequential : A {ma:.3f} ms [{lo_a:.3f}, {hi_a:.3f}], B {mb:.3f} ms [{lo_b:.3f}, "
        f"{hi_b:.3f}] -> B / A = {mb / ma:.3f}"
        + ("  (intervals separate: a spurious difference)" if lo_b > hi_a or lo_a > hi_b else "")
    )
    found = paired_ratio(b.round_medians_ms, a.round_medians_ms)
    if found is None:
        print("interleaved: too few rounds for an interval")
        return 1
    ratio, lo, hi = found
    verdict = "contains 1: no difference" if lo <= 1 <= hi else "excludes 1"
    print(
        f"interleaved: B / A = {ratio:.3f}, 95% CI [{lo:.3f}, {hi:.3f}] over "
        f"{len(a.round_medians_ms)} rounds ({verdict})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
