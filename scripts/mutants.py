#!/usr/bin/env python3
"""Deliberate bugs the test suite must catch: a curated list, one mutant at a time.

Each mutant replaces one exact snippet of one file with a plausible bug and names the tests
that should fail because of it. The script copies the repository's files (what git tracks, plus
untracked files it does not ignore) into a scratch folder, applies each mutant there in turn,
runs its tests with the project's venv (`pytest -x -q`, a timeout per mutant) and prints a
table. Exit 1 when any mutant survives, does not apply, or could not be judged. The working
tree is never modified. docs/mutants.md says how to add one.

    python scripts/mutants.py                  # every mutant (about 6 minutes on 2 cores)
    python scripts/mutants.py fold-shift-unscaled parity-error-counts-as-pass
    python scripts/mutants.py --list           # names, files, descriptions
    python scripts/mutants.py --check          # does every snippet still apply? (no tests)
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TIMEOUT_S = 300


@dataclass(frozen=True)
class Mutant:
    name: str
    file: str  # relative to the repository root
    old: str  # must occur exactly once in the file
    new: str
    why: str  # one line: the bug this stands for
    tests: tuple[str, ...]  # pytest arguments: the tests that should catch it
    note: str = ""  # a caveat the table repeats (e.g. which branch brings the catching test)


MUTANTS: tuple[Mutant, ...] = (
    # -- the plan ---------------------------------------------------------------------------
    Mutant(
        "plan-downsample-last-unit",
        "graphgen/plan.py",
        "stride = 2 if stage > 0 and index == 0 else 1",
        "stride = 2 if stage > 0 and index == blocks - 1 else 1",
        "each stage downsamples in its last unit instead of its first",
        ("tests/test_graphgen_counts.py",),
    ),
    Mutant(
        "plan-relu-before-add",
        "graphgen/blocks.py",
        '        if i < len(convs):\n            b.relu(f"{prefix}.{layout.relu.format(i)}")\n    write_attention',
        '        if i <= len(convs):\n            b.relu(f"{prefix}.{layout.relu.format(i)}")\n    write_attention',
        "a ReLU on the residual branch before the addition (the paper has it after)",
        ("tests/test_import_gluon.py::test_import_matches_mxnet_outputs",),
    ),
    Mutant(
        "plan-fold-drops-conv-bias",
        "graphgen/plan.py",
        "op = dataclasses.replace(op, bias=True)",
        "op = dataclasses.replace(op, bias=op.bias)",
        "fold_bn removes each BN but gives its conv no bias (the BN shift is lost)",
        ("tests/test_graphgen_build.py::test_folded_bn_matches_unfolded",),
    ),
    # -- BN folding and BN eps ----------------------------------------------------------------
    Mutant(
        "fold-shift-unscaled",
        "graphgen/weights.py",
        'folded[f"{conv}.bias"] = (beta - mean * scale).astype(np.float32)',
        'folded[f"{conv}.bias"] = (beta - mean).astype(np.float32)',
        "folded bias beta - mean, without the BN scale",
        ("tests/test_graphgen_build.py::test_folded_bn_matches_unfolded",),
    ),
    Mutant(
        "fold-conv-bias-sign",
        "graphgen/weights.py",
        'mean = mean - weights[f"{conv}.bias"].astype(np.float64)',
        'mean = mean + weights[f"{conv}.bias"].astype(np.float64)',
        "a conv's own bias (Gluon v1) folded into the BN mean with the wrong sign",
        ("tests/test_flavors.py::test_conv_bias_folds_into_bn_mean_exactly",),
    ),
    Mutant(
        "fold-variance-not-rooted",
        "graphgen/weights.py",
        "scale = gamma / np.sqrt(var + BN_EPS)\n",
        "scale = gamma / (var + BN_EPS)\n",
        "folding divides by the variance instead of the standard deviation",
        ("tests/test_graphgen_build.py::test_folded_bn_matches_unfolded",),
    ),
    Mutant(
        "bn-eps",
        "graphgen/plan.py",
        "BN_EPS = 1e-5  #",
        "BN_EPS = 1e-3  #",
        "BN epsilon 1e-3 (Keras') in the graphs and folding instead of 1e-5 (torch's, MXNet's)",
        ("tests/test_import_gluon.py::test_import_matches_mxnet_outputs",),
    ),
    # -- shortcut option A ----------------------------------------------------------------------
    Mutant(
        "optionA-pad-placement",
        "graphgen/plan.py",
        'return 0 if self.zero_pad == "end" else (self.cout - self.cin) // 2',
        "return 0",
        "option A puts every zero channel behind the identity instead of half in front",
        ("tests/test_golden.py",),
        note="caught by tests/test_golden.py (the golden branch); the rest of the suite passes it",
    ),
    Mutant(
        "optionA-subsample-odd",
        "graphgen/onnx_emit.py",
        'self.const(f"{op.name}.starts", [0, 0])',
        'self.const(f"{op.name}.starts", [1, 1])',
        "option A's ONNX Slice keeps the odd rows and columns instead of the even ones",
        ("tests/test_parity.py::test_cpu_engines_agree_fp32[cifar20-A]",),
    ),
    # -- stride placement -----------------------------------------------------------------------
    Mutant(
        "stride-at-swapped",
        "graphgen/blocks.py",
        's1, s3 = (stride, 1) if spec.stride_at == "1x1" else (1, stride)',
        's1, s3 = (1, stride) if spec.stride_at == "1x1" else (stride, 1)',
        "stride_at 1x1 strides the 3x3 and 3x3 strides the 1x1",
        ("tests/test_graphgen_counts.py",),
    ),
    Mutant(
        "stride-at-default",
        "graphgen/spec.py",
        'stride_at: str = "1x1"',
        'stride_at: str = "3x3"',
        "a spec strides on the 3x3 (v1.5) by default instead of the paper's first 1x1",
        ("tests/test_graphgen_counts.py",),
    ),
    # -- counts ---------------------------------------------------------------------------------
    Mutant(
        "macs-kernel-once",
        "graphgen/plan.py",
        "self.cin // self.groups * self.kernel**2",
        "self.cin // self.groups * self.kernel",
        "a conv's MACs count the kernel size once instead of squared",
        ("tests/test_graphgen_counts.py",),
    ),
    Mutant(
        "params-count-bn-statistics",
        "graphgen/plan.py",
        "return sum(_numel(s) for s in self.param_shapes().values())",
        "return sum(_numel(s) for s in self.tensor_shapes().values())",
        "a plan's params include BN running statistics",
        ("tests/test_graphgen_counts.py",),
    ),
    Mutant(
        "graph-macs-ignore-cin",
        "graphgen/cost.py",
        "math.prod(int(d) for d in w[1:])",
        "math.prod(int(d) for d in w[2:])",
        "counting a graph's conv MACs leaves out the input channels",
        ("tests/test_graphgen_counts.py",),
    ),
    Mutant(
        "graph-params-count-bn-statistics",
        "graphgen/cost.py",
        "        if n not in bn_stats\n        and n not in qparams",
        "        if n not in qparams",
        "counting a graph's params includes BN running statistics",
        ("tests/test_graphgen_counts.py",),
    ),
    # -- parity judging -------------------------------------------------------------------------
    Mutant(
        "parity-error-counts-as-pass",
        "runtimes/parity/results.py",
        'return self.status in ("pass", "skipped")',
        'return self.status in ("pass", "skipped", "error")',
        "an engine that could not run the model counts as passing",
        ("tests/test_parity_judging.py",),
    ),
    Mutant(
        "parity-structure-not-judged",
        "runtimes/parity/reference.py",
        '        if self.structure is not None:\n            failures.append(f"structure: ',
        '        if False:\n            failures.append(f"structure: ',
        "an engine whose numbers agree passes although the graph's structure is not its spec's",
        ("tests/test_parity_judging.py",),
    ),
    Mutant(
        "parity-structure-op-types-only",
        "graphgen/structure.py",
        "    for index, (a, b) in enumerate(zip(expected, found, strict=False)):\n        if a != b:",
        "    for index, (a, b) in enumerate(zip(expected, found, strict=False)):\n        if a.op_type != b.op_type:",
        "the structure check compares op types, not wiring: a rewired graph passes",
        ("tests/test_parity_judging.py",),
    ),
    Mutant(
        "parity-max-abs-not-judged",
        "runtimes/parity/judge.py",
        "if tolerance.min_top1 is None and not metrics.max_abs <= bound:",
        "if False and not metrics.max_abs <= bound:",
        "the element-wise bound is not judged: one wild logit passes on relative L2 alone",
        ("tests/test_parity_judging.py",),
    ),
    # -- resume ---------------------------------------------------------------------------------
    Mutant(
        "resume-reruns-crashes",
        "runtimes/sweep/resume.py",
        'return interrupted.get("how") == "killed" and interrupted.get("count") == 1',
        'return interrupted.get("how") in ("killed", "crash")',
        "--resume measures a job again that crashed the process (and would crash it again)",
        ("tests/test_bench_sweep.py::test_an_engine_crash_mid_job_is_failed_and_not_run_again",),
    ),
    Mutant(
        "resume-crash-log-ignored",
        "runtimes/sweep/resume.py",
        "reason, extra = _crashed(stack, pid) if stack else _killed(before, pid)",
        "reason, extra = _killed(before, pid)",
        "a job that crashed the process (crash log present) is called killed from outside",
        ("tests/test_bench_sweep.py::test_an_engine_crash_mid_job_is_failed_and_not_run_again",),
    ),
    Mutant(
        "resume-kill-count-reset",
        "runtimes/sweep/resume.py",
        'count = previous.get("count", 0) + 1 if previous.get("how") == "killed" else 1',
        "count = 1",
        "a job killed on every attempt is measured again forever (the count never grows)",
        ("tests/test_bench_sweep.py::test_a_kill_mid_job_is_measured_again_once",),
    ),
    Mutant(
        "resume-written-record-marked-died",
        "runtimes/sweep/resume.py",
        "if before is not None and not due_again(before, retry_failed=retry_failed):",
        "if False:",
        "a job whose record was written (only the marker's removal was lost) is marked died",
        ("tests/test_resume_bookkeeping.py",),
    ),
    Mutant(
        "resume-reruns-skipped",
        "runtimes/sweep/resume.py",
        'if record["status"] != "failed":\n        return False',
        'if record["status"] == "ok":\n        return False',
        "--retry-failed runs skipped jobs again (only ok records count as done)",
        ("tests/test_resume_bookkeeping.py",),
    ),
    # -- int8 quantization ----------------------------------------------------------------------
    Mutant(
        "quant-per-tensor-weight-scale",
        "graphgen/quantize/qdq.py",
        "flat = np.abs(w.reshape(w.shape[0], -1)).max(axis=1)",
        "flat = np.full(w.shape[0], np.abs(w).max())",
        "one weight scale per tensor, repeated per channel, where per-channel is documented",
        ("tests/test_quantize_scheme.py",),
    ),
    Mutant(
        "quant-activation-zero-point",
        "graphgen/quantize/qdq.py",
        "np.array(0, np.uint8 if unsigned else np.int8)",
        "np.array(int(unsigned), np.uint8 if unsigned else np.int8)",
        "uint8 activations get zero point 1 where every zero point is documented as 0",
        ("tests/test_quantize_scheme.py",),
    ),
    # -- Gluon / torchvision-timm name maps -----------------------------------------------------
    Mutant(
        "gluon-gamma-beta-swapped",
        "graphgen/importers/gluon.py",
        '    "weight": "gamma",\n    "bias": "beta",',
        '    "weight": "beta",\n    "bias": "gamma",',
        "Gluon's BN gamma read as the shift and beta as the scale (same shapes)",
        ("tests/test_import_gluon.py::test_import_matches_mxnet_outputs",),
    ),
    Mutant(
        "gluon-v1-body-skips-relu",
        "graphgen/importers/gluon.py",
        r're.fullmatch(r"(conv|bn|relu)\d", parts[2])',
        r're.fullmatch(r"(conv|bn)\d", parts[2])',
        "v1 body indices skip the ReLUs Gluon counts (body.2 read where body.3 is)",
        ("tests/test_import_gluon.py::test_import_matches_mxnet_outputs",),
    ),
    Mutant(
        "state-dict-ignores-conv-bias",
        "graphgen/importers/state_dict.py",
        'bottleneck_bias=kind.takes_bottleneck_bias and "layer1.0.conv1.bias" in weights,',
        "bottleneck_bias=False,",
        "a state_dict with Gluon v1's bottleneck biases is imported as torchvision's layout",
        ("tests/test_import_state_dict.py::test_state_dict_import_round_trips",),
    ),
    # -- import checks (graphgen/cli/importing.py, importers/common.py) ------------------------
    Mutant(
        "import-check-threshold-ignored",
        "graphgen/importers/common.py",
        "if np.isfinite(error) and error < limit:",
        "if np.isfinite(error):",
        "import writes and says verified whatever the rel. L2 against the source",
        (
            "tests/test_import_gluon.py::"
            "test_wrong_expected_outputs_fail_the_check_and_write_nothing",
        ),
    ),
    Mutant(
        "import-stride-placement-guessed",
        "graphgen/importers/common.py",
        "    if stride_at is None:\n        raise StridePlacementError(",
        "    if stride_at is None:\n        return spec\n        raise StridePlacementError(",
        "a bottleneck state_dict's stride placement is guessed (the spec's default), not asked for",
        ("tests/test_import_state_dict.py",),
    ),
    Mutant(
        "import-onnx-checked-against-itself",
        "graphgen/importing.py",
        "check(model, x, expected=expected, against=source.name,",
        "check(model, x, expected=run_float64(model, x), against=source.name,",
        "an ONNX import is verified against graphgen's own numpy pass, not the source graph",
        ("tests/test_import_onnx.py", "tests/test_import_checks_the_source.py"),
    ),
    # -- inject ---------------------------------------------------------------------------------
    Mutant(
        "inject-accepts-another-network",
        "graphgen/inject.py",
        "    if differ:\n        shown = ",
        "    if False:\n        shown = ",
        "weights that record another architecture (option A into a plain net) are injected",
        ("tests/test_hardening_graphgen.py::test_bad_input[inject-residual-into-plain]",),
    ),
    Mutant(
        "inject-ignores-unexpected-names",
        "graphgen/inject.py",
        "if missing or unexpected or wrong:",
        "if missing or wrong:",
        "weights with names the graph does not have are injected, the extras dropped",
        ("tests/test_inject.py::test_unexpected_names_are_listed",),
    ),
    # -- ResNet variants (groups, stems, ResNet-D, SE/ECA; judged by torchvision/timm goldens) --
    Mutant(
        "onnx-groups-dropped",
        "graphgen/onnx_emit.py",
        'group = {"group": op.groups} if op.groups != 1 else {}',
        "group = {}",
        "a grouped conv (ResNeXt) written to ONNX as a dense one",
        ("tests/test_golden.py",),
    ),
    Mutant(
        "se-channels-rounded-down",
        "graphgen/attention.py",
        "return max(divisor, int(value + divisor / 2) // divisor * divisor)",
        "return max(divisor, int(value) // divisor * divisor)",
        "SE's squeeze width rounded down, not to the nearest multiple of the divisor (timm)",
        ("tests/test_attention_sizes.py", "tests/test_archs.py"),
    ),
    Mutant(
        "eca-kernel-even",
        "graphgen/attention.py",
        "return max(t if t % 2 else t + 1, 3)",
        "return max(t, 3)",
        "ECA's adaptive kernel left even (timm makes it odd)",
        ("tests/test_golden.py",),
    ),
    Mutant(
        "avg-down-floor-mode",
        "graphgen/onnx_emit.py",
        "ceil_mode=1,",
        "ceil_mode=0,",
        "ResNet-D's average-pool shortcut drops the last row and column at odd sizes",
        ("tests/test_golden.py",),
    ),
    Mutant(
        "deep-stem-not-tiered",
        "graphgen/stems.py",
        "return 3 * (w // 4), w, 2 * w  # resnet.py",
        "return w, w, 2 * w  # resnet.py",
        "a tiered deep stem (ResNet-T) given the plain deep stem's widths",
        ("tests/test_archs.py", "tests/test_golden.py"),
    ),
    Mutant(
        "wide-resnet-width",
        "graphgen/archs.py",
        '"wide_resnet50_2": (BOTH, 50, {**V1_5, "width_per_group": 128}),',
        '"wide_resnet50_2": (BOTH, 50, {**V1_5, "width_per_group": 64}),',
        "the wide_resnet50_2 preset is a plain resnet50",
        ("tests/test_archs.py",),
    ),
    # -- untrusted documents (issue 21) ---------------------------------------------------------
    Mutant(
        "output-replaces-its-input",
        "resnet_common/fileio.py",
        "        if same_file(out, given):\n",
        "        if False:\n",
        "graphgen build --spec s.yaml -o s.yaml replaces the spec it reads",
        ("tests/test_hardening_second.py",),
    ),
    Mutant(
        "document-duplicate-key-accepted",
        "resnet_common/documents.py",
        "        if key in out:\n",
        "        if False:\n",
        "a key given twice in a JSON document: the last value wins silently",
        ("tests/test_hardening_second.py",),
    ),
    # -- atomic writes --------------------------------------------------------------------------
    Mutant(
        "atomic-write-in-place",
        "resnet_common/fileio.py",
        "        fd, tmp = _create_temp(path)\n",
        "        fd, tmp = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666), path\n",
        "an 'atomic' write truncates and writes the final file itself",
        ("tests/test_atomic_writes.py",),
    ),
    Mutant(
        "atomic-failed-write-keeps-temp",
        "resnet_common/fileio.py",
        "    except BaseException:\n        Path(tmp).unlink(missing_ok=True)\n        raise",
        "    except BaseException:\n        raise",
        "a write that fails half-way leaves its temporary file behind",
        ("tests/test_hardening_common.py::test_a_failed_write_leaves_no_temp",),
    ),
)


@dataclass
class Outcome:
    mutant: Mutant
    status: str  # caught, SURVIVED, did-not-apply, NO TESTS, TIMEOUT, ERROR
    seconds: float
    detail: str = ""  # the first failure that caught it, or why it could not be judged

    @property
    def ok(self) -> bool:
        return self.status == "caught"


def apply(text: str, mutant: Mutant) -> str:
    """The text with the mutant's snippet replaced; ValueError unless it occurs exactly once."""
    count = text.count(mutant.old)
    if count != 1:
        raise ValueError(f"did not apply: the snippet occurs {count} times in {mutant.file}")
    return text.replace(mutant.old, mutant.new)


def copy_repo(dest: Path) -> None:
    """Copy what git tracks (and untracked files it does not ignore) into `dest`."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout
    for name in sorted(set(listed.decode().split("\0")) - {""}):
        src = ROOT / name
        if not src.is_file() and not src.is_symlink():
            continue  # deleted in the working tree, or a submodule
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target, follow_symlinks=False)


def missing_tests(tests: tuple[str, ...], root: Path) -> list[str]:
    """Test files a selection names that do not exist in `root`."""
    paths = [t.split("::", 1)[0] for t in tests if not t.startswith("-")]
    return [p for p in paths if p.startswith("tests") and not (root / p).exists()]


def run_tests(
    python: str, scratch: Path, tests: tuple[str, ...], label: str, timeout: float
) -> tuple[int | None, str]:
    """pytest on `tests` in the scratch copy: (exit code or None on timeout, output)."""
    env = dict(os.environ)
    env.update(
        PYTHONPATH=str(scratch),  # the copy's packages, not the editable install's
        PYTHONDONTWRITEBYTECODE="1",  # a stale .pyc of the same size and second would hide a mutant
        GRAPHGEN_CACHE=str(scratch / ".work" / label / "cache"),  # graphs built from this code
    )
    work = scratch / ".work" / label
    work.mkdir(parents=True, exist_ok=True)
    argv = [python, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider"]
    argv += [f"--basetemp={work / 'tmp'}", *tests]
    proc = subprocess.Popen(
        argv,
        cwd=scratch,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: a timeout ends every child it started
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
        return proc.returncode, out.decode(errors="replace")
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        return None, out.decode(errors="replace")
    except BaseException:  # Ctrl-C reaches only this process group: end the tests' too
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise


def first_failure(output: str) -> str:
    for line in output.splitlines():
        if line.startswith(("FAILED ", "ERROR ")):
            return line
    return ""


def judge(mutant: Mutant, python: str, scratch: Path, timeout: float) -> Outcome:
    start = time.monotonic()
    path = scratch / mutant.file
    try:
        original = path.read_text()
        mutated = apply(original, mutant)
    except (OSError, ValueError) as err:
        return Outcome(mutant, "did-not-apply", 0.0, str(err))
    absent = missing_tests(mutant.tests, scratch)
    if absent:
        return Outcome(mutant, "NO TESTS", 0.0, f"not in this checkout: {', '.join(absent)}")
    path.write_text(mutated)
    try:
        rc, output = run_tests(python, scratch, mutant.tests, mutant.name, timeout)
    finally:
        path.write_text(original)
    seconds = time.monotonic() - start
    if rc is None:
        return Outcome(mutant, "TIMEOUT", seconds, f"tests ran past {timeout:g} s")
    if rc in (1, 2):  # tests failed, or collection failed (the mutant broke an import)
        return Outcome(mutant, "caught", seconds, first_failure(output))
    if rc == 0:
        return Outcome(mutant, "SURVIVED", seconds, "every selected test passed")
    if rc == 5:
        return Outcome(mutant, "NO TESTS", seconds, "the selection collected no tests")
    tail = " | ".join(output.strip().splitlines()[-3:])
    return Outcome(mutant, "ERROR", seconds, f"pytest exit {rc}: {tail}")


def baseline(python: str, scratch: Path, mutants: list[Mutant], timeout: float) -> str | None:
    """Run every selection once on the unmutated copy: a mutant only counts as caught by
    tests that pass without it. None when they pass, else why not."""
    tests: list[str] = []
    for m in mutants:
        if not missing_tests(m.tests, scratch):
            tests += [t for t in m.tests if t not in tests]
    whole = {t for t in tests if "::" not in t}  # a whole file covers its node ids
    tests = [t for t in tests if t.split("::", 1)[0] not in whole or "::" not in t]
    if not tests:
        return None
    rc, output = run_tests(python, scratch, tuple(tests), "baseline", timeout)
    if rc == 0:
        return None
    why = "timed out" if rc is None else f"exit {rc}: {first_failure(output) or output[-500:]}"
    return f"the selected tests fail without any mutant ({why})"


def table(outcomes: list[Outcome], *, details: bool) -> str:
    rows = [("mutant", "file", "tests", "result", "seconds")]
    for o in outcomes:
        tests = " ".join(t.removeprefix("tests/") for t in o.mutant.tests)
        rows.append((o.mutant.name, o.mutant.file, tests, o.status, f"{o.seconds:.0f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = []
    for index, row in enumerate(rows):
        cells = [row[i].ljust(widths[i]) for i in range(4)] + [row[4].rjust(7)]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("-" * len(lines[0]))
        elif details or not outcomes[index - 1].ok:
            o = outcomes[index - 1]
            for extra in (o.detail, o.mutant.note):
                if extra:
                    lines.append(f"    {extra}")
    return "\n".join(lines)


def check_all(mutants: list[Mutant]) -> int:
    """Whether each snippet applies to the working tree as it is; runs no tests."""
    failed = 0
    for m in mutants:
        try:
            apply((ROOT / m.file).read_text(), m)
            print(f"applies        {m.name}")
        except (OSError, ValueError) as err:
            failed += 1
            print(f"did-not-apply  {m.name}: {err}")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("names", nargs="*", metavar="MUTANT", help="run only these (default: all)")
    p.add_argument("--list", action="store_true", help="list the mutants and exit")
    p.add_argument("--check", action="store_true", help="only check that every snippet applies")
    p.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds per mutant's tests"
    )
    p.add_argument(
        "--python",
        default=str(ROOT / ".venv" / "bin" / "python"),
        help="the interpreter that runs pytest (default: the project's .venv)",
    )
    p.add_argument(
        "--no-baseline",
        dest="baseline",
        action="store_false",
        help="skip running the selected tests once without mutants first",
    )
    p.add_argument("--keep", action="store_true", help="keep the scratch copy (its path is shown)")
    p.add_argument("-v", "--verbose", action="store_true", help="say what caught each mutant")
    args = p.parse_args(argv)

    by_name = {m.name: m for m in MUTANTS}
    unknown = [n for n in args.names if n not in by_name]
    if unknown:
        print(f"unknown mutant {unknown[0]!r}; --list shows them", file=sys.stderr)
        return 2
    chosen = [by_name[n] for n in args.names] if args.names else list(MUTANTS)
    if args.list:
        for m in chosen:
            print(f"{m.name}  ({m.file})\n    {m.why}\n    tests: {' '.join(m.tests)}")
        return 0
    if args.check:
        return check_all(chosen)
    if not Path(args.python).exists():
        print(f"no python at {args.python}: run scripts/setup.sh dev first", file=sys.stderr)
        return 2

    started = time.monotonic()
    scratch = Path(tempfile.mkdtemp(prefix="mutants-"))
    try:
        copy_repo(scratch)
        if args.baseline:
            problem = baseline(args.python, scratch, chosen, args.timeout * 2)
            if problem is not None:
                print(problem, file=sys.stderr)
                return 1
        outcomes = []
        for m in chosen:
            outcome = judge(m, args.python, scratch, args.timeout)
            print(f"{outcome.status:<13} {m.name}  ({outcome.seconds:.0f} s)", flush=True)
            outcomes.append(outcome)
    finally:
        if args.keep:
            print(f"scratch copy kept: {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    print()
    print(table(outcomes, details=args.verbose))
    caught = sum(o.ok for o in outcomes)
    total = time.monotonic() - started
    print(f"\n{caught} of {len(outcomes)} caught; {total:.0f} s in all")
    return 0 if caught == len(outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
