"""The network a weights file came from, built by its own library, to check an import against.

A state_dict or a Gluon `.params` holds names and arrays, no computation: two networks with the
same names and shapes (a bottleneck striding on its 1x1 or on its 3x3, timm's anti-aliased or
max-pooled ResNets and the plain one) fit the same file. `--arch LIB:NAME` names the source: the
library builds it (torchvision, timm, or MXNet Gluon's model zoo), the file's weights are loaded
into it strictly, and it runs in float64 on the import's seeded inputs. Each library is imported
only here and only when asked for; none is a dependency of graphgen.

`--arch NAME` alone names a `graphgen build --arch` preset (graphgen.archs): the spec is the
preset's, and the check runs against the first library that ships it and is installed; with none
installed the import says plainly that only names and shapes were checked.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np

from graphgen.errors import GraphError
from graphgen.inject import IGNORED_SUFFIXES, read_weights
from resnet_common.errors import UserError

# library -> (the module it is imported as, the distribution that versions it)
LIBRARIES = {"torchvision": "torchvision", "timm": "timm", "gluon": "mxnet"}


@dataclass(frozen=True)
class Arch:
    library: str  # a key of LIBRARIES
    name: str  # the library's own model name: resnet50, resnetaa50, resnet50_v2
    preset: str | None = None  # the graphgen.archs preset it names, if any
    required: bool = True  # False: `--arch NAME` alone, checked only where a library is here

    def __str__(self) -> str:
        return f"{self.library}:{self.name}"

    @property
    def stride_at(self) -> str:
        """Where the library's bottleneck strides: torchvision's and timm's on the 3x3 ("v1.5");
        Gluon's resnet*_v1 on the first 1x1, resnet*_v2 on the 3x3. The check against the built
        network catches any other."""
        return "1x1" if self.library == "gluon" and "_v1" in self.name else "3x3"

    @property
    def reads_params(self) -> bool:
        return self.library == "gluon"


def parse_arch(text: str) -> Arch:
    from graphgen.archs import ARCHS

    library, sep, name = text.partition(":")
    if not sep and text in ARCHS:
        ships = ARCHS[text].libraries
        here = [lib for lib in ships if importlib.util.find_spec(LIBRARIES[lib]) is not None]
        return Arch((here or list(ships))[0], text, preset=text, required=False)
    if not sep or not name or library not in LIBRARIES:
        raise UserError(
            f"--arch {text!r}: expected LIBRARY:MODEL with LIBRARY one of "
            f"{', '.join(LIBRARIES)} (e.g. torchvision:resnet50, timm:resnet50, "
            f"gluon:resnet50_v2), or a preset: {', '.join(ARCHS)}"
        )
    preset = ARCHS.get(name)
    shipped = preset is not None and library in preset.libraries
    return Arch(library, name, preset=name if shipped else None)


def available(arch: Arch) -> bool:
    """Whether the library that builds `arch` is installed (imports nothing)."""
    return importlib.util.find_spec(LIBRARIES[arch.library]) is not None


def require_library(arch: Arch) -> ModuleType:
    """The library that builds `arch`; a UserError saying what to do when it is not installed."""
    module = LIBRARIES[arch.library]
    try:
        return importlib.import_module(module)
    except ImportError:
        unchecked = (
            "or import without --arch (names and shapes only, the computation unchecked; "
            "a bottleneck net then needs --stride-at)"
        )
        if arch.library == "gluon":
            raise UserError(
                f"--arch {arch} needs MXNet (import mxnet failed); MXNet 1.9.1 installs only "
                "beside numpy<1.24, so use a side venv, or check against MXNet's stored outputs "
                f"with --expect OUT.npz, {unchecked}"
            ) from None
        raise UserError(
            f"--arch {arch} needs {module} installed (pip install {module}), {unchecked}"
        ) from None


def source_label(arch: Arch) -> str:
    """`torchvision:resnet50 (torchvision 0.29.1, run in float64)`: what the check ran against."""
    module = LIBRARIES[arch.library]
    try:
        version = importlib.metadata.version(module)
    except importlib.metadata.PackageNotFoundError:
        version = "version unknown"
    return f"{arch} ({module} {version}, run in float64)"


def source_outputs(arch: Arch, path: Path, *, classes: int, x: np.ndarray) -> np.ndarray:
    """The source network's logits on NCHW images `x`, computed in float64 by its own library
    with the weights of `path` loaded strictly (every name, every shape)."""
    lib = require_library(arch)
    if arch.reads_params:
        return _gluon_outputs(lib, arch, path, classes=classes, x=x)
    return _torch_outputs(lib, arch, path, classes=classes, x=x)


def _torch_outputs(
    lib: ModuleType, arch: Arch, path: Path, *, classes: int, x: np.ndarray
) -> np.ndarray:
    import torch

    try:
        if arch.library == "torchvision":
            model = lib.models.get_model(arch.name, weights=None, num_classes=classes)
        else:
            if not lib.is_model(arch.name):
                raise ValueError(f"unknown model {arch.name!r}")
            model = lib.create_model(arch.name, pretrained=False, num_classes=classes)
    except (ValueError, RuntimeError, KeyError, TypeError) as err:
        raise UserError(f"--arch {arch}: {arch.library} cannot build it ({err})") from None
    state = {
        name: torch.from_numpy(np.ascontiguousarray(value))
        for name, value in read_weights(path).items()
        if not name.endswith(IGNORED_SUFFIXES)
    }
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # a wrong shape
        first = str(err).strip().splitlines()[-1].strip()
        raise GraphError(f"{path} does not load into {arch}: {first}") from None
    missing = [k for k in result.missing_keys if not k.endswith(IGNORED_SUFFIXES)]
    _refuse_misfit(path, arch, missing, list(result.unexpected_keys))
    model = model.double().eval()
    with torch.inference_mode():
        out = model(torch.from_numpy(np.asarray(x, np.float64)))
    return np.asarray(out.numpy(), np.float64)


def _gluon_outputs(
    mx: ModuleType, arch: Arch, path: Path, *, classes: int, x: np.ndarray
) -> np.ndarray:
    from graphgen.importers.gluon import export_prefix
    from graphgen.importers.mxnet_params import read_params

    params = read_params(path)
    export = any(k.startswith(("arg:", "aux:")) for k in params)
    kwargs: dict[str, object] = {"classes": classes}
    if export:  # export names carry the block's prefix; build the net under the same one
        kwargs["prefix"] = export_prefix(params)
    vision = importlib.import_module("mxnet.gluon.model_zoo.vision")
    try:
        net = vision.get_model(arch.name, **kwargs)
    except (ValueError, KeyError, TypeError) as err:
        raise UserError(f"--arch {arch}: MXNet Gluon cannot build it ({err})") from None
    try:
        if export:
            net.collect_params().load(str(path), ctx=mx.cpu())
        else:
            net.load_parameters(str(path), ctx=mx.cpu())
    except (AssertionError, ValueError, RuntimeError, mx.base.MXNetError) as err:
        first = str(err).strip().splitlines()[0]
        raise GraphError(f"{path} does not load into {arch}: {first}") from None
    net.cast("float64")
    out = net(mx.nd.array(np.asarray(x, np.float64), dtype="float64"))
    return np.asarray(out.asnumpy(), np.float64)


def _refuse_misfit(path: Path, arch: Arch, missing: list[str], unexpected: list[str]) -> None:
    parts = [
        f"{label} {', '.join(names[:4])}" + (f" ({len(names)} in all)" if len(names) > 4 else "")
        for label, names in (("missing", missing), ("unexpected", unexpected))
        if names
    ]
    if parts:
        raise GraphError(f"{path} does not load into {arch}: {'; '.join(parts)}")
