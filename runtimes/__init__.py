"""runtimes: graphgen's graphs on every engine, checked against each other and timed.

The Python API (runtimes.api) is exported here and imported on first use, so `import runtimes`
loads no engine: `runtimes.check_parity(models, runtimes)`, `runtimes.run(models, runtimes)`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["check_parity", "run"]

if TYPE_CHECKING:
    from runtimes.api import check_parity, run


def __getattr__(name: str) -> Any:
    if name in __all__:
        from runtimes import api

        return getattr(api, name)
    raise AttributeError(f"module 'runtimes' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
