"""The bad-input battery: every case is one line on stderr, exit code 2, no traceback, and
nothing created, changed or left behind anywhere under the test's folder (the cwd included).

Cases are data (`CASES`): a command line, a needle the message must hold, and the inputs it
needs. Each runs in-process through the command's `main(argv)`, so the whole table takes
seconds. `python tests/test_bad_inputs.py --count [ROOT]` runs every case in a child process
(with a time and memory limit), which is how the count of cases already clean on an older
tree is measured.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import pickle
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

MAINS = {
    "resnet-train": "train.cli:main",
    "graphgen": "graphgen.cli:main",
    "bench-runtimes": "runtimes.cli:main",
}
TINY = ["--depth", "8", "--image-size", "16", "--synthetic-train", "64", "--synthetic-val",
        "32", "--batch-size", "32", "--workers", "0", "--quiet", "--epochs", "1"]  # fmt: skip
EXP = ["--epochs", "1", "--image-size", "8", "--train-size", "64", "--val-size", "32",
       "--batch-size", "32", "--workers", "0", "--quiet"]  # fmt: skip


@dataclass(frozen=True)
class Case:
    id: str
    cli: str
    argv: tuple[str, ...]  # "{d}" is the test's folder
    needle: str  # a piece of the expected message (case-sensitive)
    setup: tuple[Callable[[Path], None], ...] = field(default=())


# --- inputs the cases need, made under the test's folder before the snapshot ----------------


def spec_file(name: str, text: str) -> Callable[[Path], None]:
    def make(d: Path) -> None:
        (d / name).write_text(text)

    make.__name__ = f"spec_file({name})"
    return make


def cifar_folder(corrupt: str | None = None) -> Callable[[Path], None]:
    """CIFAR-10 python batches of ten images each (optionally one of them garbage)."""

    def make(d: Path) -> None:
        import numpy as np

        folder = d / "cifar"
        folder.mkdir()
        names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
        for name in names:
            if name == corrupt:
                (folder / name).write_bytes(b"\x80\x04not a pickle at all")
                continue
            batch = {
                b"data": np.zeros((10, 3072), np.uint8),
                b"labels": list(range(10)),
            }
            (folder / name).write_bytes(pickle.dumps(batch))

    return make


def _tiny_config(out: Path) -> dict[str, object]:
    from train.cli import fit

    args = fit.make_parser().parse_args([*TINY, "--out", str(out)])
    return fit.config_from_args(args).to_dict()


def run_folder(
    *, checkpoint: str | None = None, config: dict[str, object] | None = None
) -> Callable[[Path], None]:
    """A run folder `run/` with a config.json and, optionally, a last.pt."""

    def make(d: Path) -> None:
        run = d / "run"
        run.mkdir()
        data = _tiny_config(run)
        data.update(config or {})
        (run / "config.json").write_text(json.dumps(data))
        if checkpoint == "wrong-keys":
            import torch

            state = {"model": {"encoder.weight": torch.zeros(3)}, "epoch": 0}
            torch.save(state, run / "last.pt")
        elif checkpoint == "garbage":
            (run / "last.pt").write_bytes(b"\x00garbage" * 10)

    return make


def imagefolder_without_val(d: Path) -> None:
    (d / "images" / "train" / "cat").mkdir(parents=True)


def a_device(name: str) -> Callable[[Path], None]:
    """A character device like /dev/null in the test's folder (a named pipe where mknod is not
    allowed): a tree that renames over it, as older ones did over /dev/null as root, spoils
    nothing outside the test when `--count` runs these cases against it."""

    def make(d: Path) -> None:
        try:
            os.mknod(d / name, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        except PermissionError:
            os.mkfifo(d / name)

    return make


def a_file(name: str) -> Callable[[Path], None]:
    def make(d: Path) -> None:
        (d / name).write_text("x")

    return make


T, E = "resnet-train", ("experiment", "shortcuts", *EXP)
R = ("--out", "{d}/r")
# fmt: off
CASES: list[Case] = [
    # seeds: one parser for every command
    Case("train-seed-negative", T, (*TINY, "--seed=-1", *R), "seed must be in"),
    Case("train-seed-2**63", T, (*TINY, "--seed", str(2**63), *R), "seed must be in"),
    Case("train-seed-huge", T, (*TINY, "--seed", "9" * 40, *R), "seed must be in"),
    Case("train-seed-text", T, (*TINY, "--seed", "abc", *R), "expected an integer seed"),
    Case("exp-seed-negative", T, (*E, "--seed=-1", "--out", "{d}/e"), "seed must be in"),
    # absurd sizes, refused before anything is allocated
    Case("train-classes-1e9", T, (*TINY, "--classes", "1000000000", *R), "parameters, past the"),
    Case("train-image-size-1e6", T, (*TINY, "--image-size", "1000000", *R), "past the limit"),
    Case("train-synthetic-1e9", T, (*TINY, "--synthetic-train", "1000000000", *R), "of memory"),
    Case("train-synthetic-val-1e9", T, (*TINY, "--synthetic-val", "1000000000", *R), "memory"),
    Case("train-depth-60000002", T, ("--depth", "60000002", *R), "blocks, past the limit"),
    Case("train-spec-widths-1e9", T, ("--spec", "{d}/w.yaml", *R), "past the limit",
         (spec_file("w.yaml", "layers: [1]\nwidths: [1000000000]\n"),)),
    Case("train-spec-stem-width-1e12", T, ("--spec", "{d}/s.yaml", *R), "past the limit",
         (spec_file("s.yaml", f"depth: 20\nshortcut: B\nstem_width: {10**12}\n"),)),
    Case("train-spec-size-limit-key", T, ("--spec", "{d}/k.yaml", *R), "of memory, more than",
         (spec_file("k.yaml", "depth: 20\nclasses: 100000000\nsize_limit: {params: 1e10}\n"),)),
    Case("train-spec-layers-1e6", T, ("--spec", "{d}/l.yaml", *R), "blocks, past the limit",
         (spec_file("l.yaml", "layers: [1000000]\nwidths: [8]\n"),)),
    Case("train-size-limit-unknown", T, (*TINY, "--size-limit", "bogus=3", *R), "expected KEY=N"),
    Case("exp-image-size-1e6", T, (*E, "--image-size", "1000000", "--out", "{d}/e"),
         "past the limit"),
    Case("exp-train-size-1e9", T, (*E, "--train-size", "1000000000", "--out", "{d}/e"),
         "of memory"),
    # failed starts: everything validated before the run folder exists
    Case("train-cifar-missing", T,
         (*TINY, "--dataset", "cifar10", "--data", "{d}/nowhere", *R), "no such folder"),
    Case("train-cifar-corrupt-batch", T,
         ("--depth", "8", "--dataset", "cifar10", "--data", "{d}/cifar", "--epochs", "1", *R),
         "is not a CIFAR-10 batch file", (cifar_folder(corrupt="data_batch_3"),)),
    Case("train-cifar-bad-split", T,
         ("--depth", "8", "--dataset", "cifar10", "--data", "{d}/cifar", "--val-split",
          "100000", "--epochs", "1", *R), "--val-split 100000", (cifar_folder(),)),
    Case("train-imagefolder-no-val", T,
         ("--depth", "18", "--dataset", "imagefolder", "--data", "{d}/images", *R),
         "not an ImageFolder tree", (imagefolder_without_val,)),
    Case("train-batch-over-data", T, (*TINY, "--batch-size", "1000", *R), "larger than the"),
    Case("train-out-is-a-file", T, (*TINY, "--out", "{d}/f"), "not a folder", (a_file("f"),)),
    # outputs that must not be replaced
    Case("train-export-device", T, (*TINY, "--export", "{d}/null", *R), "not a regular file",
         (a_device("null"),)),
    Case("train-export-folder", T, (*TINY, "--export", "{d}", *R), "is a folder"),
    # --resume with a checkpoint or config that is not this run's
    Case("train-resume-wrong-keys", T, ("--resume", "{d}/run"), "missing keys",
         (run_folder(checkpoint="wrong-keys"),)),
    Case("train-resume-garbage-checkpoint", T, ("--resume", "{d}/run"),
         "not a readable checkpoint", (run_folder(checkpoint="garbage"),)),
    Case("train-resume-export-outside", T, ("--resume", "{d}/run"), "outside the run folder",
         (run_folder(config={"export": "../../evil.onnx"}),)),
    Case("train-resume-export-absolute", T, ("--resume", "{d}/run"), "outside the run folder",
         (run_folder(config={"export": "/tmp/evil.onnx"}),)),
    Case("train-resume-bad-seed", T, ("--resume", "{d}/run"), "not a readable run config",
         (run_folder(config={"seed": -1}),)),
    Case("train-resume-not-a-run", T, ("--resume", "{d}"), "not a run folder"),
    Case("train-resume-flag-refused", T, ("--resume", "{d}/run", "--seed", "3"),
         "not allowed with --resume", (run_folder(),)),
    # messages that must say what is wrong
    Case("exp-shortcuts-depth-18", T, (*E, "--depth", "18", "--out", "{d}/e"),
         "is an ImageNet depth"),
    Case("exp-degradation-depth-34", T,
         ("experiment", "degradation", *EXP, "--depths", "20,34", "--out", "{d}/e"),
         "is an ImageNet depth"),
    Case("exp-workers-negative", T, (*E, "--workers", "-1", "--out", "{d}/e"),
         "expected an integer >= 0"),
    Case("train-depth-imagenet-on-cifar", T, ("--depth", "18", *R), "ImageNet depth"),
]
# fmt: on


# --- running one case -------------------------------------------------------------------------


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under `root`, with size and mtime for files: a new, removed or rewritten file
    shows (a folder's own mtime does not: a lock file taken and removed again is no change)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            out[str((Path(dirpath) / name).relative_to(root)) + "/"] = (0, 0)
        for name in filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            out[str(path.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return out


def _main(cli: str) -> Callable[[list[str]], int]:
    module, _, name = MAINS[cli].partition(":")
    main: Callable[[list[str]], int] = getattr(importlib.import_module(module), name)
    return main


def run_case(case: Case, d: Path) -> tuple[int | None, str, str | None]:
    """(exit code, stderr, what is wrong or None) for one case run in-process in folder `d`."""
    for make in case.setup:
        make(d)
    before = _snapshot(d)
    argv = [a.replace("{d}", str(d)) for a in case.argv]
    err, out = io.StringIO(), io.StringIO()
    code: int | None
    problem = None
    cwd = os.getcwd()
    os.chdir(d)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            try:
                code = _main(case.cli)(argv)
            except SystemExit as exit:
                code = exit.code if isinstance(exit.code, int) else 2
            except BaseException as exc:  # noqa: BLE001 (an escaping exception is the finding)
                code, problem = None, f"raised {type(exc).__name__}: {exc}"[:300]
    finally:
        os.chdir(cwd)
    text = err.getvalue()
    lines = [line for line in text.splitlines() if line.strip()]
    after = _snapshot(d)
    if problem is None:
        if code != 2:
            problem = f"exit code {code}"
        elif "Traceback" in text:
            problem = "traceback on stderr"
        elif len(lines) != 1:
            problem = f"{len(lines)} lines on stderr"
        elif case.needle not in text:
            problem = f"message lacks {case.needle!r}"
        elif after != before:
            changed = sorted(set(after.items()) ^ set(before.items()))
            problem = f"files changed: {sorted({path for path, _ in changed})[:5]}"
    return code, text, problem


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAPHGEN_CACHE", str(tmp_path / "cache"))
    _, text, problem = run_case(case, tmp_path)
    assert problem is None, f"{problem}; stderr: {text[-2000:]}"


def test_case_ids_are_unique() -> None:
    assert len({c.id for c in CASES}) == len(CASES)


# --- counting clean cases on any tree (a child process per case, limited) ---------------------


def _count(
    root: Path, timeout: float = 60.0, *, module: str = "test_bad_inputs", cases: list[Case] = CASES
) -> None:
    """Run each case of `module`'s CASES in a child process against the packages under `root`
    and print which are clean."""
    import resource
    import subprocess
    import tempfile

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (6 * 2**30, 6 * 2**30))

    clean = 0
    for case in cases:
        with tempfile.TemporaryDirectory() as d:
            code = (
                f"import sys; sys.path.insert(0, {str(root)!r}); "
                f"sys.path.insert(1, {str(Path(__file__).parent)!r}); "
                f"import {module} as b; "
                f"case = next(c for c in b.CASES if c.id == {case.id!r}); "
                f"import os; os.environ['GRAPHGEN_CACHE'] = {d + '/cache'!r}; "
                f"_, text, problem = b.run_case(case, __import__('pathlib').Path({d!r})); "
                "print(problem or 'clean'); print(text[-300:].replace(chr(10), ' | '))"
            )
            try:
                done = subprocess.run(
                    [sys.executable, "-c", code],
                    capture_output=True,
                    text=True,
                    timeout=timeout,
                    cwd=d,
                    preexec_fn=limit,
                )
                lines = done.stdout.splitlines() or [f"died: {done.stderr.strip()[-200:]}"]
            except subprocess.TimeoutExpired:
                lines = [f"hung past {timeout:.0f} s"]
        verdict = lines[0]
        clean += verdict == "clean"
        print(f"{case.id:40s} {verdict}" + (f"  [{lines[1][:150]}]" if len(lines) > 1 else ""))
    print(f"{clean} of {len(cases)} clean")


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "--count":
        _count(Path(sys.argv[2] if len(sys.argv) > 2 else Path(__file__).parents[1]).resolve())
