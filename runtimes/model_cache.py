"""Building into the shared graph cache: one builder per model, and no debris from kills.

Two sweeps that need the same variant at once would both build it and rename over each other;
a build killed halfway left its hidden temporary folder in the cache for good (up to 231 MB a
ResNet-152). A build now holds an exclusive lock on the model's own lock file and waits for
another builder of the same model, then reuses its file; it builds inside a pid-tagged
temporary folder of the cache (`resnet_common.fileio`), which the next build removes once that
process is gone.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from resnet_common.fileio import make_temp_dir, remove_debris, replace_into
from resnet_common.locks import exclusive_lock


def lock_path(path: Path) -> Path:
    return path.parent / f".{path.name}.lock"


def build_cached(path: Path, build: Callable[[Path], object]) -> Path:
    """`path`, built by `build(target)` unless it exists; concurrent builders of one model wait
    for each other and the later ones reuse the first one's file."""
    if path.is_file():
        return path
    remove_debris(path.parent)  # what killed builds left: their pid is gone
    with exclusive_lock(lock_path(path), what=f"the cached model {path.name}", wait=True):
        if path.is_file():  # built by the process we waited for
            return path
        tmp = make_temp_dir(path.parent, path.name)
        try:
            build(tmp / path.name)
            # external data first (graphgen names it by content hash, `NAME.onnx.<sha>.data`),
            # so the model never points at missing data
            for data in sorted(tmp.iterdir()):
                if data.name != path.name:
                    replace_into(data, path.parent / data.name)
            replace_into(tmp / path.name, path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return path
