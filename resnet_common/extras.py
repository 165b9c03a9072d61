"""Which extra of the project brings which optional package, so that a missing one is a line
that says what to install instead of a traceback.

`pip install .` brings onnx, numpy, pyyaml and rich: enough to build, list, inspect and quantize
graphs. Everything else (an engine, torch, plots) comes with an extra of pyproject.toml; a
command that reaches for one that is not there says which, in one line (exit 2).
"""

from __future__ import annotations

# Top-level module -> the extra of pyproject.toml that installs it. Kept to the packages the
# code imports; tests/test_minimal_install.py holds it to pyproject.toml's extras.
EXTRA_OF_MODULE = {
    "onnxruntime": "ort",
    "openvino": "openvino",
    "torch": "torch",
    "safetensors": "weights",
    "matplotlib": "reports",
    "PIL": "train",
    "onnxscript": "bench",
    "mlperf_loadgen": "loadgen",
    "tensorrt": "gpu",
    "cuda": "gpu",
}
# The package a user installs for a module whose import name is not its package's name.
PACKAGE_OF_MODULE = {"PIL": "pillow", "mlperf_loadgen": "mlcommons-loadgen", "cuda": "cuda-python"}


def install_command(extra: str) -> str:
    """The command that installs `extra` into a clone of the project (an editable install)."""
    return f"pip install -e '.[{extra}]'"


def missing_module_message(module: str, extra: str | None = None) -> str | None:
    """`onnxruntime is not installed: install the ort extra (pip install -e '.[ort]')`, or None
    when `module` is no optional package of the project. `extra` names another extra that
    brings it (resnet-train asks for `train`, which brings torch and safetensors together)."""
    root = module.split(".")[0]
    extra = extra or EXTRA_OF_MODULE.get(root)
    if extra is None:
        return None
    package = PACKAGE_OF_MODULE.get(root, root)
    return f"{package} is not installed: install the {extra} extra ({install_command(extra)})"


def missing_extra(err: ImportError) -> str | None:
    """The one line for an ImportError of an optional package the project knows; None for any
    other ImportError (a module of the project itself or a broken install: a bug to show)."""
    if not isinstance(err, ModuleNotFoundError) or not err.name:
        return None
    return missing_module_message(err.name)
