"""runtimes: graphgen's graphs on every engine, checked against each other and timed.

The Python API (runtimes.api) is exported here and imported on first use, so `import runtimes`
loads no engine: `runtimes.check_parity(models, runtimes)`, `runtimes.run(models, runtimes)`.
"""

from typing import TYPE_CHECKING

from resnet_common.lazy import lazy_exports

__all__ = ["check_parity", "run"]
__getattr__, __dir__ = lazy_exports(__name__, "runtimes.api", __all__)

if TYPE_CHECKING:
    from runtimes.api import check_parity, run
