"""Shared fixtures. Keep it small: one model cache per session, so each graph is built once; a
guard that fails any test leaving process-wide state changed; no time limits on examples."""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from tests._process import sigaltstack, stack_problem

# No timed assertions: how long an example takes says nothing on a loaded 2-core machine.
settings.register_profile("suite", deadline=None)
settings.load_profile("suite")

SIGNALS = [
    getattr(signal, name)
    for name in (
        "SIGINT",
        "SIGTERM",
        "SIGHUP",
        "SIGQUIT",
        "SIGCHLD",
        "SIGUSR1",
        "SIGUSR2",
        "SIGALRM",
        "SIGPIPE",
    )  # fmt: skip
    if hasattr(signal, name)
]


def _openvino_core_made() -> bool:
    module = sys.modules.get("runtimes.engines.openvino_cpu")
    return module is not None and module._core is not None


def _state() -> dict[str, Any]:
    """Process-wide settings one test can change for all the tests after it. Cheap: nothing is
    imported here (torch and numpy are read only when a test already loaded them)."""
    state: dict[str, Any] = {
        "cwd": os.getcwd(),
        "os.environ": {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"},
        "sys.path": list(sys.path),
        "signal handlers": {signal.Signals(s).name: signal.getsignal(s) for s in SIGNALS},
        "faulthandler.is_enabled()": faulthandler.is_enabled(),
        "sigaltstack": sigaltstack(),
    }
    np = sys.modules.get("numpy")
    if np is not None:
        state["np.geterr()"] = np.geterr()
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "get_num_threads"):
        state["torch.get_num_threads()"] = torch.get_num_threads()
        state["torch.get_num_interop_threads()"] = torch.get_num_interop_threads()
        state["torch.get_default_dtype()"] = torch.get_default_dtype()
        state["torch.is_grad_enabled()"] = torch.is_grad_enabled()
    return state


def _restore(key: str, value: Any) -> None:
    """Put one setting back, so that one leak fails one test, not every test after it."""
    if key == "cwd":
        os.chdir(value)
    elif key == "os.environ":
        for name in os.environ.keys() - value.keys() - {"PYTEST_CURRENT_TEST"}:
            del os.environ[name]
        os.environ.update(value)
    elif key == "sys.path":
        sys.path[:] = value
    elif key == "signal handlers":
        for name, handler in value.items():
            if handler is not None:
                signal.signal(signal.Signals[name], handler)
    elif key == "np.geterr()":
        sys.modules["numpy"].seterr(**value)
    elif key == "torch.get_num_threads()":
        sys.modules["torch"].set_num_threads(value)
    elif key == "torch.get_default_dtype()":
        sys.modules["torch"].set_default_dtype(value)
    elif key == "torch.is_grad_enabled()":
        sys.modules["torch"].set_grad_enabled(value)


def _diff(key: str, before: Any, after: Any) -> str:
    if isinstance(before, dict) and isinstance(after, dict):
        changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
        return f"{key}: {', '.join(f'{k}: {before.get(k)!r} -> {after.get(k)!r}' for k in changed)}"
    return f"{key}: {before!r} -> {after!r}"


@pytest.fixture(autouse=True)
def process_state_unchanged() -> Iterator[None]:
    """Fail a test that leaves process-wide state changed (monkeypatch undoes its own changes
    before this runs). The one change allowed: the alternate signal stack that the project's
    shared OpenVINO Core installs when it is first used; it lives as long as the process.
    torch's and numpy's settings are compared only when the test found them loaded (the suite
    loads torch early, when collecting the modules that import it)."""
    core_before = _openvino_core_made()
    before = _state()
    yield
    after = _state()
    problems = []
    problem = stack_problem(after["sigaltstack"])
    if problem is not None:
        problems.append(problem + ": the next handled signal kills the process")
    elif after["sigaltstack"] != before["sigaltstack"] and (
        core_before or not _openvino_core_made()
    ):
        problems.append(_diff("sigaltstack", before["sigaltstack"], after["sigaltstack"]))
    for key in before.keys() & after.keys() - {"sigaltstack"}:
        if before[key] != after[key]:
            problems.append(_diff(key, before[key], after[key]))
            _restore(key, before[key])
    if problems:
        pytest.fail("the test left process-wide state changed:\n" + "\n".join(problems))


@pytest.fixture(scope="session", autouse=True)
def torch_inductor_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """torch writes TORCHINDUCTOR_CACHE_DIR (absolute) into os.environ the first time it looks
    for its compile cache, in whichever test that happens: name it up front (a folder of this
    session unless the caller named one), so that write changes nothing."""
    current = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    folder = os.path.abspath(current) if current else str(tmp_path_factory.mktemp("inductor"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TORCHINDUCTOR_CACHE_DIR", folder)
        yield


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache folder for runtimes.models.resolve, shared by the whole session."""
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="session")
def foreign_model(model_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CIFAR ResNet-20 with graphgen's metadata stripped: an ONNX file graphgen did not make."""
    import onnx

    from runtimes.models import resolve

    model = onnx.load(resolve("cifar-resnet20", cache_dir=model_cache).path)
    del model.metadata_props[:]
    path = tmp_path_factory.mktemp("foreign") / "foreign.onnx"
    onnx.save(model, path)
    return path
