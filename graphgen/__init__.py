"""graphgen: ResNet specs compiled into ONNX graphs, with no torch and no MXNet.

The Python API (graphgen.api) is exported here and imported on first use, so `import graphgen`
stays light: `graphgen.build(20)`, `graphgen.load(path)`, `graphgen.import_model(src, out)`,
`graphgen.info(path)`.
"""

from typing import TYPE_CHECKING

from resnet_common.lazy import lazy_exports

__version__ = "0.1.0"
__all__ = ["build", "import_model", "info", "load"]
__getattr__, __dir__ = lazy_exports(__name__, "graphgen.api", __all__)

if TYPE_CHECKING:
    from graphgen.api import build, import_model, info, load
