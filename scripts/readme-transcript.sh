#!/usr/bin/env bash
# The README as a new user meets it: clone this repository's HEAD fresh into a temporary folder,
# run the commands of the README's ```bash blocks in order there, and write docs/transcript.md
# (each command, its exit code, its wall time and the tail of its output).
#
#   bash scripts/readme-transcript.sh              # 30 minutes or more on 2 shared cores
#   RUN_LONG=1 bash scripts/readme-transcript.sh   # also the suite, benchmarks and experiments
#   TIMEOUT=600 bash scripts/readme-transcript.sh  # seconds per command (default 300; 1200 for
#                                                  # the scripts that install: SETUP_TIMEOUT)
#
# The first command (the quickstart) is run twice: a second run must work too. Commands whose
# words are placeholders (DIR, MODEL.onnx, hostA/ ...) are listed as not run, with the word;
# `[--json]`-style optional parts are left out; my-net.yaml is written from the README's own
# YAML block. Long commands (the test suite, benchmarks/, the experiments, torchrun, the bf16
# sweep) are listed as not run unless RUN_LONG=1. After the run, if Chromium is here, the
# quickstart's report is shot to docs/screenshots/quickstart-report.png
# (scripts/screenshot-report.sh). Exit 0 when the transcript was written, whatever the exit
# codes in it: it is a record to read.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
git clone -q --no-local "$root" "$work/clone"
mkdir -p "$root/docs"
GRAPHGEN_CACHE="$work/cache" RUN_LONG="${RUN_LONG:-0}" TIMEOUT="${TIMEOUT:-300}" \
  SETUP_TIMEOUT="${SETUP_TIMEOUT:-1200}" \
  python3 - "$work/clone" "$root/docs/transcript.md" <<'EOF'
import contextlib
import datetime
import os
import platform
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

clone, out = Path(sys.argv[1]), Path(sys.argv[2])
readme = (clone / "README.md").read_text()
timeout = int(os.environ["TIMEOUT"])
setup_timeout = int(os.environ["SETUP_TIMEOUT"])  # the scripts that install first
run_long = os.environ["RUN_LONG"] == "1"
PLACEHOLDERS = ("DIR", "MODEL.onnx", "some-model.onnx", "hostA/", "old/report.json",
                "PATH/TO", "FILE.npy", "trained.onnx", "resnet50.pth", "r50-v1.5.onnx",
                "resnet50_v1.onnx", "resnet50_v1-0000.params", "best.safetensors")
LONG = (r"^bash scripts/test\.sh", r"^python benchmarks/", r"resnet-train experiment",
        r"^torchrun", r"--precision fp32,bf16,int8,int8-bf16")


def commands() -> list[str]:
    found, block, pending = [], False, ""
    for line in readme.splitlines():
        if line.startswith("```"):
            block = line.strip() == "```bash"
            continue
        if not block:
            continue
        text = pending + line.strip()
        if text.endswith("\\"):
            pending = text[:-1] + " "
            continue
        pending = ""
        text = re.sub(r"\s+#.*$", "", text).strip()  # a trailing comment
        if text and not text.startswith("#"):
            found.append(text)
    return found


def yaml_blocks() -> None:
    """The README's YAML examples that name their file (`# my-net.yaml`), written there."""
    for body in re.findall(r"```yaml\n(.*?)```", readme, re.S):
        first = body.splitlines()[0]
        match = re.fullmatch(r"#\s*(\S+\.ya?ml)", first.strip())
        if match:
            (clone / match.group(1)).write_text(body)


def cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


yaml_blocks()
env = {**os.environ, "PATH": f"{clone / '.venv' / 'bin'}:{os.environ['PATH']}"}
env.pop("VIRTUAL_ENV", None)
head = subprocess.run(["git", "-C", str(clone), "log", "-1", "--format=%h %s"],
                      capture_output=True, text=True, check=True).stdout.strip()
flags = next((l for l in Path("/proc/cpuinfo").read_text().splitlines()
              if l.startswith("flags")), "")
shown_flags = [f for f in flags.split() if re.match(r"(avx2|avx512f|avx512_vnni|amx_\w+)$", f)]
lines = [
    "# The README's commands on a fresh clone",
    "",
    f"Written by `bash scripts/readme-transcript.sh` on "
    f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC: a fresh clone of "
    f"`{head}`, each command of the README's bash blocks run in order in the clone's folder, "
    f"with the clone's `.venv/bin` first on PATH (the quickstart makes it) and a model cache of "
    f"its own. CPU: {cpu()} ({os.cpu_count()} cores; {' '.join(shown_flags)}); load average "
    f"at the start {os.getloadavg()[0]:.1f}. Per-command limit {timeout} s"
    + ("." if run_long else "; long commands not run (RUN_LONG=1 runs them)."),
    "",
    "| # | command | exit | wall s |",
    "|---|---|---|---|",
]
details: list[str] = []


def write(status: str) -> None:
    """The transcript so far, after every command: a run cut short still leaves a record."""
    text = [*lines, "", status, "", "## The tail of each command's output (12 lines at most)",
            "", *details]
    out.write_text("\n".join(text) + "\n")


todo = commands()
todo.insert(1, todo[0])  # the quickstart, twice in a row
start_all = time.monotonic()
for i, command in enumerate(todo, 1):
    runnable = re.sub(r"\s*\[[^\]]*\]", "", command)  # optional parts left out
    placeholder = next((w for w in PLACEHOLDERS if w in shlex.split(runnable)
                        or any(t.startswith(w) for t in shlex.split(runnable))), None)
    why = None
    if placeholder:
        why = f"not run: `{placeholder}` is a placeholder"
    elif not run_long and any(re.search(p, runnable) for p in LONG):
        why = "not run: long (RUN_LONG=1)"
    if why:
        lines.append(f"| {i} | `{command}` | {why} | |")
        continue
    print(f"[{i}/{len(todo)}] {runnable}", file=sys.stderr, flush=True)
    t0 = time.monotonic()
    # A session of its own: on timeout the whole command goes (the quickstart's bench-runtimes
    # too, not only its bash), so nothing of it keeps loading the machine.
    limit = setup_timeout if runnable.startswith("bash scripts/") else timeout
    proc = subprocess.Popen(["bash", "-c", runnable], cwd=clone, env=env, text=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, errors="replace", start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=limit)
        rc = str(proc.returncode)
    except subprocess.TimeoutExpired:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                output, _ = proc.communicate(timeout=10)
                break
        rc = f"timed out ({limit} s)"
    wall = time.monotonic() - t0
    shown_cmd = runnable if runnable == command else f"{runnable}` (from `{command}`)"
    lines.append(f"| {i} | `{shown_cmd}` | {rc} | {wall:.0f} |")
    tail = [l for l in output.splitlines() if not l.startswith("WARNING: Location")][-12:]
    details += [f"### {i}. `{runnable}`: exit {rc}, {wall:.0f} s", "", "```text",
                *[l[:200] for l in tail], "```", ""]
    write(f"Stopped after command {i} of {len(todo)}: the transcript is being written.")
write(f"Total {time.monotonic() - start_all:.0f} s.")
print(f"wrote {out}", file=sys.stderr)
EOF
# The report of the quickstart (its newest folder) as a user's browser shows it.
latest="$work/clone/bench-results/latest"
if [ -f "$latest/report.html" ] && command -v chromium >/dev/null; then
  mkdir -p "$root/docs/screenshots"
  bash "$root/scripts/screenshot-report.sh" "$latest/report.html" \
    "$root/docs/screenshots/quickstart-report.png" 1400x5200
fi
