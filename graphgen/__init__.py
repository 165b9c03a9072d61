"""graphgen: ResNet specs compiled into ONNX graphs, with no torch and no MXNet.

The Python API (graphgen.api) is exported here and imported on first use, so `import graphgen`
stays light: `graphgen.build(20)`, `graphgen.load(path)`, `graphgen.import_model(src, out)`,
`graphgen.info(path)`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["build", "import_model", "info", "load"]

if TYPE_CHECKING:
    from graphgen.api import build, import_model, info, load


def __getattr__(name: str) -> Any:
    if name in __all__:
        from graphgen import api

        return getattr(api, name)
    raise AttributeError(f"module 'graphgen' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
