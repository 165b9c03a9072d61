"""scripts/gpu-check.sh on a machine without a GPU: its offline install step on an interpreter
that is itself a venv (as the lent GPU machine's `python3` is), the import check naming what is
missing, the skip reasons, absolute output folders, and shellcheck. SIMULATE=1 lets the script
run here; INSTALL_ONLY=1 stops it after the install and the import check."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests._gpu import hiding_env

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu-check.sh"
IN_A_VENV = sys.prefix != sys.base_prefix
needs_venv = pytest.mark.skipif(not IN_A_VENV, reason="the suite does not run in a venv here")


def run_script(tmp_path: Path, env: dict[str, str] | None = None, **knobs: str):
    """The script in offline SIMULATE mode with `python3` = this suite's interpreter (a venv:
    the "parent venv" of the lent machine's layout), OUT and WORK absolute under tmp_path."""
    env = dict(os.environ if env is None else env)
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}",
        SIMULATE="1",
        MODE="offline",
        OUT=str(tmp_path / "out"),
        WORK=str(tmp_path / "work"),
        WHEELS=str(tmp_path / "no-wheels"),
    )
    env.update(knobs)
    return subprocess.run(
        ["bash", str(SCRIPT)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )


def test_gpu_check_script_parses():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
@pytest.mark.parametrize("script", ["gpu-check.sh", "gpu-wheels.sh"])
def test_gpu_scripts_are_shellcheck_clean(script):
    result = subprocess.run(
        ["shellcheck", str(ROOT / "scripts" / script)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout


@needs_venv
def test_a_venv_made_from_a_venv_does_not_see_the_parent_venv(tmp_path):
    """Why the offline install makes no venv: one made with --system-site-packages from a venv's
    interpreter sees the base interpreter's packages, not the venv's (onnx is in the venv)."""
    base = getattr(sys, "_base_executable", None) or shutil.which(
        "python3", path=str(Path(sys.base_prefix) / "bin")
    )
    if base is None or not Path(base).exists():
        pytest.skip("cannot find the base interpreter")
    base_has_onnx = subprocess.run([base, "-c", "import onnx"], capture_output=True)
    if base_has_onnx.returncode == 0:
        pytest.skip("the base interpreter has onnx itself: nothing to show")
    child = tmp_path / "child"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(child)],
        check=True,
    )
    result = subprocess.run([child / "bin" / "python", "-c", "import onnx"], capture_output=True)
    assert result.returncode != 0 and b"No module named 'onnx'" in result.stderr


@needs_venv
def test_offline_install_uses_the_parent_venv_as_it_is(tmp_path):
    """The lent machine's layout: `python3` is a venv's interpreter. The install step must leave
    numpy, onnx, onnxruntime and torch importable, from that venv, and install nothing into it."""
    pytest.importorskip("torch")
    # What a previous run left: its results go (a benchmark refuses a folder with results in
    # it), its caches stay.
    stale = [tmp_path / "work" / "bench" / "results.jsonl", tmp_path / "out" / "parity-fp32.json"]
    kept = tmp_path / "work" / "models" / "resnet18.onnx"
    for path in [*stale, kept]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
    result = run_script(tmp_path, INSTALL_ONLY="1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert not any(path.exists() for path in stale) and kept.exists()
    out = result.stdout
    for module in ("numpy", "onnx", "onnxruntime", "torch", "graphgen", "runtimes", "train"):
        assert f"    ok {module} " in out, out
    venv = Path(sys.prefix).resolve()
    torch_line = next(line for line in out.splitlines() if line.startswith("    ok torch "))
    assert str(venv) in torch_line  # the parent venv's torch, not a base interpreter's
    assert f"python {Path(sys.executable).parent}" in out
    assert "install and imports ok (INSTALL_ONLY=1)" in out
    assert not (tmp_path / "work" / "site").exists()  # nothing needed from a wheel folder
    log = (tmp_path / "out" / "gpu-check.log").read_text()
    assert "install and imports ok" in log  # OUT absolute: the log is where OUT says


@needs_venv
@pytest.mark.parametrize("missing", [("torch",), ("onnx", "torch")])
def test_the_import_check_names_what_is_missing(tmp_path, missing):
    result = run_script(tmp_path, hiding_env(tmp_path, *missing), INSTALL_ONLY="1")
    assert result.returncode == 1
    named = f"cannot run: {len(missing)} missing: "
    assert named in result.stdout, result.stdout  # the script's stderr goes to its log too
    for module in missing:
        assert f"MISSING {module}: ModuleNotFoundError" in result.stdout
    assert "    ok numpy " in result.stdout
    steps = (tmp_path / "out" / "steps.tsv").read_text()
    assert steps.splitlines()[-1].startswith("imports (numpy, onnx, onnxruntime, torch")
    assert "\tFAILED\t" in steps.splitlines()[-1]


def _function(name: str) -> str:
    text = SCRIPT.read_text()
    start = text.index(f"{name}() {{")
    return text[start : text.index("\n}\n", start) + 3]


def why_not(tmp_path: Path, check: str, env: dict[str, str] | None = None) -> str:
    """The script's skip reason for `check`, run with this interpreter."""
    env = dict(os.environ if env is None else env)
    env.update(PY=sys.executable, MODE="offline", SIMULATE="1", WORK=str(tmp_path))
    return subprocess.run(
        ["bash", "-c", _function("why_not") + f"why_not {check}\n"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


@pytest.mark.parametrize("check", ["torch-cuda", "nccl"])
def test_a_missing_torch_is_the_skip_reason_not_nccl(tmp_path, check):
    reason = why_not(tmp_path, check, hiding_env(tmp_path, "torch"))
    assert reason == "torch is not installed, and cannot be installed offline"


@pytest.mark.parametrize("check", ["torch-cuda", "nccl"])
def test_a_torch_without_cuda_is_the_skip_reason(tmp_path, check):
    torch = pytest.importorskip("torch")
    reason = why_not(tmp_path, check)
    if torch.version.cuda is None:
        assert reason == f"torch {torch.__version__} is a CPU build"
    else:  # SIMULATE=1 counts no device even where one exists
        assert reason.endswith("sees no CUDA device")


def test_the_tensorrt_and_onnxruntime_gpu_skips_say_why(tmp_path):
    import importlib.util

    if importlib.util.find_spec("tensorrt") is None:
        assert why_not(tmp_path, "tensorrt") == (
            "tensorrt is not installed, and cannot be installed offline"
        )
    ort = pytest.importorskip("onnxruntime")
    reason = why_not(tmp_path, "onnxruntime-gpu")
    if "CUDAExecutionProvider" in ort.get_available_providers():
        assert reason == ""
    else:
        assert reason.startswith(f"onnxruntime {ort.__version__} has no CUDA provider")
    hidden = why_not(tmp_path, "onnxruntime-gpu", hiding_env(tmp_path, "onnxruntime"))
    assert hidden == "onnxruntime is not installed, and cannot be installed offline"


def test_gpu_check_reads_the_onnxruntime_build():
    """The script's probe of onnxruntime's CUDA and TensorRT majors, on the installed
    onnxruntime: two integers (0 0 for the CPU build, which links neither)."""
    pytest.importorskip("onnxruntime")
    probe = _function("ort_build") + "ort_build\n"
    out = subprocess.run(
        ["bash", "-c", probe],
        env={**os.environ, "PY": sys.executable},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert len(out) == 2 and all(x.isdigit() for x in out)


def test_without_a_gpu_the_script_stops_unless_simulating(tmp_path):
    if shutil.which("nvidia-smi") is not None:
        pytest.skip("nvidia-smi exists here")
    env = {**os.environ, "OUT": str(tmp_path / "out"), "WORK": str(tmp_path / "work")}
    result = subprocess.run(["bash", str(SCRIPT)], cwd=ROOT, env=env, capture_output=True)
    assert result.returncode == 2 and b"SIMULATE=1 rehearses" in result.stdout


def _wheel(folder: Path, name: str, version: str) -> Path:
    """A minimal pure-Python wheel holding one module `name` (hand-made: no network, no build)."""
    import zipfile

    info = f"{name}-{version}.dist-info"
    path = folder / f"{name}-{version}-py3-none-any.whl"
    files = {
        f"{name}/__init__.py": f"VERSION = {version!r}\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    files[f"{info}/RECORD"] = "".join(f"{f},,\n" for f in files) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as whl:
        for arcname, text in files.items():
            whl.writestr(arcname, text)
    return path


@needs_venv
def test_offline_install_takes_only_the_wheels_the_machine_lacks(tmp_path):
    """A wheel folder brought for a machine may hold what the machine has (numpy, as a
    dependency of matplotlib): only the missing distributions go into WORK/site, so nothing
    shadows the machine's own packages."""
    pytest.importorskip("torch")
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _wheel(wheels, "gpu_check_helper", "1.0")
    _wheel(wheels, "numpy", "0.0.1")  # installed here: must not be taken
    result = run_script(tmp_path, INSTALL_ONLY="1", WHEELS=str(wheels))
    assert result.returncode == 0, result.stdout
    site = tmp_path / "work" / "site"
    assert f"into {site}: gpu_check_helper-1.0-py3-none-any.whl\n" in result.stdout
    assert (site / "gpu_check_helper" / "__init__.py").exists()
    assert not (site / "numpy").exists()
    numpy_line = next(line for line in result.stdout.splitlines() if "ok numpy" in line)
    assert "0.0.1" not in numpy_line and str(site) not in numpy_line
