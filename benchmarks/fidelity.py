"""Do bench-runtimes' numbers match the engines' own tools? The same file, precision, threads,
hint and batch through `bench-runtimes run` and through the engine's tool, alternately (each
repeat runs the two in a new random order, so a busy phase of the machine falls on both), and
the ratio of the two per repeat.

- OpenVINO: its `benchmark_app` (installed with openvino), `-hint latency|throughput`,
  `-shape`, `-t`, and the threads and inference precision in a `-load_config` file (its UI
  refuses `-nthreads` beside `-hint`); its median latency and its throughput (FPS: images)
  are read from its output.
- onnxruntime: `onnxruntime_perf_test` where it is on PATH (it is not in the PyPI wheels: a
  source build has it); else a bare InferenceSession loop in a process of its own (`run` on
  the same inputs, with several threads calling it in throughput mode), said as such.
- TensorRT: `trtexec` where it and a GPU are here (`--infStreams` for throughput); else skipped.

Goal (issue 22): ours within 3% of the tool at batch-1 latency and within 5% of its throughput.
Each row says met or missed from the median of the per-repeat ratios; nothing is claimed for a
row that did not run.

    python benchmarks/fidelity.py [--model resnet50] [--repeats 3] [--seconds 5] [--threads 2]
        [--configs openvino:int8-bf16:latency:1,openvino:int8-bf16:throughput:8,...]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from resnet_common.stats import median

BIN = Path(sys.executable).parent
GOALS = {"latency": 0.03, "throughput": 0.05}
DEFAULT_CONFIGS = (
    "openvino:fp32:latency:1",
    "openvino:int8-bf16:latency:1",
    "openvino:bf16:latency:1",
    "openvino:int8-bf16:throughput:8",
    "openvino:fp32:throughput:8",
    "ort-cpu:fp32:latency:1",
    "ort-cpu:fp32:throughput:8",
)
OV_HINT = {"fp32": "f32", "fp16": "f32", "bf16": "bf16", "int8": "f32", "int8-bf16": "bf16"}


@dataclass(frozen=True)
class Config:
    engine: str
    precision: str
    mode: str
    batch: int

    @classmethod
    def parse(cls, text: str) -> Config:
        engine, precision, mode, batch = text.split(":")
        return cls(engine, precision, mode, int(batch))

    @property
    def label(self) -> str:
        return f"{self.engine} {self.precision} {self.mode} b{self.batch}"


@dataclass
class Figure:
    """One run's headline: median latency (ms) in latency mode, images/s in throughput."""

    value: float
    tool: str


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


# -- ours ---------------------------------------------------------------------------------------
def ours(model: str, c: Config, *, seconds: float, threads: int, work: Path) -> Figure:
    out = work / "bench"
    cmd = [str(BIN / "bench-runtimes"), "run", "--models", model, "--runtimes", c.engine,
           "--precision", c.precision, "--mode", c.mode, "--batch", str(c.batch),
           "--threads", str(threads), "--duration-s", str(seconds), "--warmup-s", "1",
           "--no-parity", "--no-interleave", "--overwrite", "--out", str(out)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    records = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines() if x]
    record = records[-1] if records else {}
    if done.returncode != 0 or record.get("status") != "ok":
        raise RuntimeError(f"bench-runtimes failed: {record.get('reason') or done.stderr[-400:]}")
    if c.mode == "throughput":
        return Figure(float(record["throughput_ips"]), "bench-runtimes")
    return Figure(float(record["latency_ms"]["median"]), "bench-runtimes")


# -- the engines' own tools ---------------------------------------------------------------------
def benchmark_app(path: Path, c: Config, *, seconds: float, threads: int, size: int) -> Figure:
    exe = shutil.which("benchmark_app", path=str(BIN)) or shutil.which("benchmark_app")
    if exe is None:
        raise RuntimeError("benchmark_app not found (it is installed with openvino)")
    config = {"CPU": {"INFERENCE_NUM_THREADS": threads,
                      "INFERENCE_PRECISION_HINT": OV_HINT[c.precision]}}  # fmt: skip
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(config, f)
    cmd = [exe, "-m", str(path), "-d", "CPU", "-hint", c.mode, "-load_config", f.name,
           "-t", str(int(seconds)), "-shape", f"[{c.batch},3,{size},{size}]"]  # fmt: skip
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    finally:
        os.unlink(f.name)
    text = done.stdout + done.stderr
    if done.returncode != 0:
        raise RuntimeError(f"benchmark_app failed: {text[-400:]}")
    if c.mode == "throughput":
        found = re.search(r"Throughput:\s*([\d.]+)\s*FPS", text)
        # benchmark_app's FPS counts images: requests x the batch of its -shape.
        return Figure(float(found.group(1)) if found else float("nan"), "benchmark_app")
    found = re.search(r"Median:\s*([\d.]+)\s*ms", text)
    return Figure(float(found.group(1)) if found else float("nan"), "benchmark_app")


BARE_LOOP = r"""
import sys, threading, time, numpy as np, onnxruntime as ort
path, batch, size, threads, streams, seconds = sys.argv[1], *map(int, sys.argv[2:6]), float(sys.argv[6])
opts = ort.SessionOptions(); opts.intra_op_num_threads = max(1, threads // streams)
opts.log_severity_level = 3
s = ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
x = {s.get_inputs()[0].name: np.random.default_rng(1).standard_normal((batch, 3, size, size)).astype(np.float32)}
for _ in range(5): s.run(None, x)
lat, lock, count = [], threading.Lock(), [0]
def work():
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter_ns(); s.run(None, x); d = (time.perf_counter_ns() - t) * 1e-6
        with lock: lat.append(d); count[0] += 1
t0 = time.perf_counter()
ts = [threading.Thread(target=work) for _ in range(streams)]
[t.start() for t in ts]; [t.join() for t in ts]
wall = time.perf_counter() - t0
print(f"median_ms {sorted(lat)[len(lat) // 2]:.4f} images_per_s {count[0] * batch / wall:.2f}")
"""


def ort_tool(path: Path, c: Config, *, seconds: float, threads: int, size: int) -> Figure:
    perf_test = shutil.which("onnxruntime_perf_test")
    if perf_test is not None:
        concurrent = threads if c.mode == "throughput" else 1
        intra = max(1, threads // concurrent)
        cmd = [perf_test, "-e", "cpu", "-t", str(int(seconds)), "-x", str(intra),
               "-c", str(concurrent), str(path)]  # fmt: skip
        text = subprocess.run(cmd, capture_output=True, text=True, check=False).stdout
        if c.mode == "throughput":
            found = re.search(r"Number of inferences per second:\s*([\d.]+)", text)
            value = float(found.group(1)) * c.batch if found else float("nan")
        else:
            found = re.search(r"P50 Latency:\s*([\d.]+)\s*s", text)
            value = float(found.group(1)) * 1e3 if found else float("nan")
        return Figure(value, "onnxruntime_perf_test")
    streams = threads if c.mode == "throughput" else 1
    cmd = [sys.executable, "-c", BARE_LOOP, str(path), str(c.batch), str(size), str(threads),
           str(streams), str(seconds)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    found = re.search(r"median_ms ([\d.]+) images_per_s ([\d.]+)", done.stdout)
    if found is None:
        raise RuntimeError(f"the bare session loop failed: {done.stderr[-400:]}")
    value = float(found.group(2) if c.mode == "throughput" else found.group(1))
    return Figure(value, "bare InferenceSession loop (no onnxruntime_perf_test here)")


def trtexec(path: Path, c: Config, *, seconds: float, threads: int, size: int) -> Figure:
    exe = shutil.which("trtexec")
    if exe is None:
        raise RuntimeError("skipped: trtexec not found (it ships with TensorRT's tarball)")
    cmd = [exe, f"--onnx={path}", f"--shapes=input:{c.batch}x3x{size}x{size}",
           f"--duration={int(seconds)}", "--stronglyTyped"]  # fmt: skip
    if c.mode == "throughput":
        cmd.append("--infStreams=2")  # the trt runner's default streams
    text = subprocess.run(cmd, capture_output=True, text=True, check=False).stdout
    if c.mode == "throughput":
        found = re.search(r"Throughput:\s*([\d.]+)\s*qps", text)
        return Figure(float(found.group(1)) * c.batch if found else float("nan"), "trtexec")
    found = re.search(r"Latency:.*?median = ([\d.]+) ms", text)
    return Figure(float(found.group(1)) if found else float("nan"), "trtexec")


TOOLS = {"openvino": benchmark_app, "ort-cpu": ort_tool, "trt": trtexec}


# -- the comparison -----------------------------------------------------------------------------
def compare(model: str, c: Config, args: argparse.Namespace, rng: random.Random) -> str:
    from runtimes.models import resolve

    resolved = resolve(model, precision=c.precision)
    tool = TOOLS[c.engine]
    ratios, theirs, mine, tool_name = [], [], [], "-"
    with tempfile.TemporaryDirectory(prefix="fidelity-") as tmp:
        for _ in range(args.repeats):
            order = ["ours", "tool"]
            rng.shuffle(order)
            got: dict[str, Figure] = {}
            for who in order:
                if who == "ours":
                    got[who] = ours(
                        model, c, seconds=args.seconds, threads=args.threads, work=Path(tmp)
                    )
                else:
                    got[who] = tool(
                        resolved.path, c, seconds=args.seconds, threads=args.threads,
                        size=resolved.image_size,
                    )  # fmt: skip
            tool_name = got["tool"].tool
            mine.append(got["ours"].value)
            theirs.append(got["tool"].value)
            ratios.append(got["ours"].value / got["tool"].value)
    ratio = median(sorted(ratios))
    # latency: ours / theirs > 1 means we report slower; throughput: < 1 means less throughput
    off = abs(ratio - 1)
    verdict = "met" if off <= GOALS[c.mode] else "MISSED"
    unit = "img/s" if c.mode == "throughput" else "ms"
    return (
        f"| {c.label} | {median(sorted(mine)):.2f} {unit} | {median(sorted(theirs)):.2f} {unit} "
        f"| {tool_name} | {ratio:.3f} [{min(ratios):.3f}, {max(ratios):.3f}] | "
        f"within {GOALS[c.mode]:.0%}: {verdict} |"
    )


def main(argv: list[str] | None = None) -> int:
    from runtimes.environment import cpu_flags, cpu_model

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="resnet50")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--configs", default=",".join(DEFAULT_CONFIGS))
    args = p.parse_args(argv)
    configs = [Config.parse(x) for x in args.configs.split(",") if x]
    print(f"CPU: {cpu_model()}; flags: {' '.join(cpu_flags())}; threads {args.threads}")
    print(f"load average before: {load_average()}")
    print(f"{args.model}, {args.repeats} alternating repeats of {args.seconds:g} s each\n")
    print("| configuration | bench-runtimes | engine's tool | tool | ours / tool, median "
          "[min, max] | goal |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    rng = random.Random(args.seed)
    missed = 0
    for c in configs:
        try:
            line = compare(args.model, c, args, rng)
        except RuntimeError as err:
            line = f"| {c.label} | - | - | - | not run: {err} | - |"
        missed += "MISSED" in line
        print(line, flush=True)
    print(f"\nload average after: {load_average()}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
