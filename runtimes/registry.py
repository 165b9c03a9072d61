"""Every engine the suite knows, by name, stored as "module:Class" so nothing imports an engine
until a runner is asked for (timm's registry pattern; Polygraphy's lazy backends).

A runner module that is not installed yet (the GPU runners ship separately) is not an error:
its engine is listed as unavailable, with the engine's own reason when a probe can tell.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from resnet_common.errors import UserError
from runtimes.base import Runner

if TYPE_CHECKING:
    from runtimes.models import ResolvedModel


class UnknownRuntimeError(UserError):
    """A runtime name the registry does not know."""


class UnavailableError(UserError):
    """A known engine that cannot run here; the message says why."""


@dataclass(frozen=True)
class Entry:
    target: str  # "module:Class"
    probe: Callable[[], str | None] | None = None  # reason used when the module is missing


def _probe_ort_provider(provider: str) -> Callable[[], str | None]:
    def probe() -> str | None:
        from runtimes.engines.ort import provider_reason

        return provider_reason(provider)

    return probe


# Left out of the no-argument sweep and parity run (asked for by name they run).
NOT_BY_DEFAULT = {
    "torch-compile": "not in the default sweep (inductor compiles for minutes on CPU); "
    "ask for it with --runtimes torch-compile",
}


def _probe_tensorrt() -> str | None:
    if importlib.util.find_spec("tensorrt") is None:
        return "tensorrt not installed"
    return None


_REGISTRY: dict[str, Entry] = {}


def register(
    name: str,
    target: str,
    *,
    probe: Callable[[], str | None] | None = None,
    replace: bool = False,
) -> None:
    """Add an engine; a duplicate name is an error unless `replace` says otherwise."""
    if name in _REGISTRY and not replace:
        raise ValueError(f"runtime {name!r} is already registered as {_REGISTRY[name].target}")
    if ":" not in target:
        raise ValueError(f"target must be 'module:Class', got {target!r}")
    _REGISTRY[name] = Entry(target, probe)


register("ort-cpu", "runtimes.engines.ort_cpu:OrtCpuRunner")
register(
    "ort-cuda",
    "runtimes.engines.ort_cuda:OrtCudaRunner",
    probe=_probe_ort_provider("CUDAExecutionProvider"),
)
register(
    "ort-trt",
    "runtimes.engines.ort_trt:OrtTrtRunner",
    probe=_probe_ort_provider("TensorrtExecutionProvider"),
)
register("trt", "runtimes.engines.trt:TensorRTRunner", probe=_probe_tensorrt)
register("torch", "runtimes.engines.torch_eager:TorchRunner")
register("torch-cuda", "runtimes.engines.torch_cuda:TorchCudaRunner")
register("torch-compile", "runtimes.engines.torch_compile:TorchCompileRunner")
register("openvino", "runtimes.engines.openvino_cpu:OpenVinoRunner")
register("onnx-ref", "runtimes.engines.onnx_ref:OnnxRefRunner")


def names() -> list[str]:
    return list(_REGISTRY)


def check_names(requested: list[str]) -> None:
    """UnknownRuntimeError (exit 2) for the first name the registry does not know."""
    unknown = [n for n in requested if n not in _REGISTRY]
    if unknown:
        raise UnknownRuntimeError(
            f"unknown runtime {unknown[0]!r}; known runtimes: {', '.join(_REGISTRY)}"
        )


def usable(*, exclude: tuple[str, ...] = ()) -> tuple[list[str], dict[str, str]]:
    """(engines usable here by default, {engine: why not}) over every registered engine."""
    ok: list[str] = []
    skipped: dict[str, str] = {}
    for name in _REGISTRY:
        if name in exclude:
            continue
        why = availability(name) or NOT_BY_DEFAULT.get(name)
        if why is None:
            ok.append(name)
        else:
            skipped[name] = why
    return ok, skipped


def _entry(name: str) -> Entry:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownRuntimeError(
            f"unknown runtime {name!r}; known runtimes are {', '.join(_REGISTRY)}"
        ) from None


def _load(name: str) -> tuple[type[Runner] | None, str | None]:
    """The runner class, or None and why not (its module is not installed)."""
    entry = _entry(name)
    module_name, class_name = entry.target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name is None or not module_name.startswith(err.name):
            raise
        reason = entry.probe() if entry.probe is not None else None
        return None, reason or f"runner module {module_name} is not installed"
    return getattr(module, class_name), None


def runner_class(name: str) -> type[Runner]:
    """The class behind a name; raises UnavailableError when its module is missing."""
    cls, reason = _load(name)
    if cls is None:
        raise UnavailableError(f"{name} is not available here: {reason}")
    return cls


def availability(name: str) -> str | None:
    """None when `name` can run here, else the reason."""
    cls, reason = _load(name)
    return reason if cls is None else cls.availability()


def refusal(
    name: str, precision: str, model: ResolvedModel | None = None, *, mode: str = "latency"
) -> str | None:
    """Why engine `name` cannot run `model` at `precision` in `mode`, known before anything is
    loaded: it is not usable here, it lacks the precision or the mode (or the engine itself
    says it cannot run that precision here), or it rebuilds networks from graphgen metadata
    that the file does not have. None when nothing stands in the way; without `model`, only
    the engine, the precision and the mode are judged. The one answer the sweep (a skipped
    record) and parity (a skipped engine) both give."""
    why = availability(name)  # unknown names raise UnknownRuntimeError
    if why is not None:
        return why
    cls = runner_class(name)
    if precision not in cls.precisions:
        runs = ", ".join(p for p in cls.precisions if p != "fp64")  # fp64 is the reference's
        return f"{name} does not support {precision} (it runs {runs})"
    if mode not in cls.modes:
        return cls.mode_refusal()
    engine_says = cls.refusal_for(precision)
    if engine_says is not None:
        return engine_says
    if model is not None and cls.needs_graphgen and not model.is_graphgen:
        return (
            f"cannot rebuild a non-graphgen file: {model.path.name} has no graphgen.spec metadata"
        )
    return None


def device_of(name: str) -> str | None:
    """ "cpu" or "cuda" for a known engine whose module imports, else None."""
    cls, _ = _load(name)
    return None if cls is None else cls.device


def create(name: str, model_path: str | Path, **kwargs: Any) -> Runner:
    """A runner for `name`, after checking it can run here (UnavailableError says why not)."""
    cls = runner_class(name)
    reason = cls.availability()
    if reason is not None:
        raise UnavailableError(f"{name} is not available here: {reason}")
    return cls(model_path, **kwargs)


@dataclass(frozen=True)
class EngineInfo:
    name: str
    available: bool
    reason: str | None
    device: str | None
    precisions: tuple[str, ...]
    target: str
    version: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "available": self.available,
            "reason": self.reason,
            "device": self.device,
            "precisions": list(self.precisions),
            "target": self.target,
            "version": self.version,
        }


def engines() -> list[EngineInfo]:
    """Every registered engine, usable here or not (the `list` command)."""
    infos = []
    for name, entry in _REGISTRY.items():
        cls, reason = _load(name)
        if cls is not None:
            reason = cls.availability()
        infos.append(
            EngineInfo(
                name,
                reason is None,
                reason,
                None if cls is None else cls.device,
                () if cls is None else cls.precisions,
                entry.target,
                None if cls is None else cls.version(),
            )
        )
    return infos
