"""Optimization profiles and engine caches, shared by the TensorRT-based runners (`trt` and
`ort-trt`): the batch range an engine is built for, the key that names a built engine (model
bytes, engine version, GPU, options) and the on-disk cache that holds it. Pure logic: no engine
import, tested on any machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resnet_common.fileio import atomic_write_bytes
from runtimes.base import UnsupportedError

DEFAULT_WORKSPACE_BYTES = 4 << 30
CACHE_ENV = "BENCH_RUNTIMES_CACHE"


class ProfileError(UnsupportedError):
    """A batch the engine's optimization profile does not cover: rebuild with that batch."""


@dataclass(frozen=True)
class BatchProfile:
    """min/opt/max of the batch dimension. Kernels are tuned for `opt`; narrow ranges run faster
    (NVIDIA/TensorRT#1166), so the profile spans exactly the requested batches."""

    min: int
    opt: int
    max: int

    def covers(self, batch: int) -> bool:
        return self.min <= batch <= self.max

    def check(self, batch: int, *, what: str = "engine") -> None:
        if not self.covers(batch):
            raise ProfileError(
                f"batch {batch} is outside the {what}'s optimization profile "
                f"[min {self.min}, opt {self.opt}, max {self.max}]; "
                f"ask for batch sizes that include {batch} so the engine is rebuilt for them"
            )

    def shapes(self, input_shape: Sequence[int]) -> tuple[tuple[int, ...], ...]:
        """(min, opt, max) full input shapes: the batch dim replaced, the others kept."""
        rest = tuple(int(d) for d in input_shape[1:])
        if any(d < 0 for d in rest):
            raise UnsupportedError(
                f"input shape {tuple(input_shape)} has a dynamic dimension besides the batch; "
                "build the graph with a fixed --image-size"
            )
        return tuple((b, *rest) for b in (self.min, self.opt, self.max))


def batch_profile(
    batch_sizes: Sequence[int], *, fixed_batch: int | None = None, opt: int | None = None
) -> BatchProfile:
    """The profile for the requested batches: min and max are their extremes, opt is the largest
    (throughput is what big batches are for) unless given. A graph with a fixed batch admits
    only that batch."""
    batches = sorted({int(b) for b in batch_sizes})
    if not batches or batches[0] < 1:
        raise UnsupportedError(f"batch sizes must be positive integers, got {list(batch_sizes)}")
    if fixed_batch is not None and fixed_batch > 0:
        if batches != [fixed_batch]:
            raise ProfileError(
                f"the graph has a fixed batch of {fixed_batch} but batches {batches} were asked "
                "for; build it with --batch dynamic"
            )
        return BatchProfile(fixed_batch, fixed_batch, fixed_batch)
    chosen = batches[-1] if opt is None else int(opt)
    if not batches[0] <= chosen <= batches[-1]:
        raise UnsupportedError(f"opt batch {chosen} lies outside [{batches[0]}, {batches[-1]}]")
    return BatchProfile(batches[0], chosen, batches[-1])


def file_digest(path: str | Path) -> str:
    """sha256 of a model file and of its external-data file, when it has one."""
    path = Path(path)
    h = hashlib.sha256()
    for part in (path, path.with_name(path.name + ".data")):
        if part.exists():
            with part.open("rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
    return h.hexdigest()


def cache_key(
    *,
    model_digest: str,
    engine_version: str,
    gpu_name: str,
    compute_capability: str,
    options: dict[str, Any],
) -> str:
    """A stable hex key: any change of model bytes, engine version, GPU or option gives a new
    entry. Options are serialised canonically (sorted keys), so dict order does not matter."""
    blob = json.dumps(
        {
            "model": model_digest,
            "engine": engine_version,
            "gpu": gpu_name,
            "cc": compute_capability,
            "options": options,
        },
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def default_cache_dir() -> Path:
    env = os.environ.get(CACHE_ENV)
    base = Path(env) if env else Path.home() / ".cache" / "resnet-graphgen"
    return base


class EngineCache:
    """Serialized engines on disk, one `<key>.engine` with a `<key>.json` sidecar holding the
    key, the plan's sha256 and its size. `load` returns None (and removes the entry) when the
    sidecar is missing or unreadable, the key differs, or the bytes do not match the checksum."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def paths(self, key: str) -> tuple[Path, Path]:
        return self.folder / f"{key}.engine", self.folder / f"{key}.json"

    def load(self, key: str) -> tuple[bytes | None, str]:
        """(plan, status): status is "hit", "miss" or "corrupt: <why>"."""
        plan_path, meta_path = self.paths(key)
        if not plan_path.exists() and not meta_path.exists():
            return None, "miss"
        try:
            meta = json.loads(meta_path.read_text())
            plan = plan_path.read_bytes()
        except (OSError, ValueError) as exc:
            self.remove(key)
            return None, f"corrupt: {type(exc).__name__}"
        if not isinstance(meta, dict) or meta.get("key") != key:
            self.remove(key)
            return None, "corrupt: sidecar key mismatch"
        if meta.get("size") != len(plan) or meta.get("sha256") != hashlib.sha256(plan).hexdigest():
            self.remove(key)
            return None, "corrupt: checksum mismatch"
        return plan, "hit"

    def store(self, key: str, plan: bytes, info: dict[str, Any]) -> None:
        plan_path, meta_path = self.paths(key)
        meta = {
            "key": key,
            "size": len(plan),
            "sha256": hashlib.sha256(plan).hexdigest(),
            **info,
        }
        atomic_write_bytes(plan_path, plan)  # the plan first: a sidecar never points at nothing
        atomic_write_bytes(
            meta_path, json.dumps(meta, indent=1, sort_keys=True, default=str).encode()
        )

    def remove(self, key: str) -> None:
        for path in self.paths(key):
            path.unlink(missing_ok=True)


def trt_major(version: str) -> int:
    return int(version.split(".", 1)[0])


def onnx_input_shapes(path: str | Path) -> dict[str, list[int]]:
    """The graph inputs' declared shapes (-1 for a symbolic dimension), read without the weights:
    enough to choose a profile and a cache key before anything is parsed or built."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    initializers = {t.name for t in model.graph.initializer}
    shapes: dict[str, list[int]] = {}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = [d.dim_value if d.HasField("dim_value") else -1 for d in dims]
    return shapes


def fixed_batch_of(shapes: dict[str, list[int]]) -> int | None:
    """The batch the first input fixes, or None when it is symbolic."""
    for shape in shapes.values():
        return shape[0] if shape and shape[0] > 0 else None
    return None


def library_version(value: int, major: int) -> str:
    """TensorRT's `getInferLibVersion()` integer as "major.minor.patch". TensorRT 10 and later
    count major * 10000 + minor * 100 + patch, TensorRT 8 major * 1000 + minor * 100 + patch;
    `major` (the library's soname) tells which, so neither is assumed."""
    for scale, minors in ((10000, 100), (1000, 10)):
        if value // scale == major:
            return f"{major}.{value // 100 % minors}.{value % 100}"
    return f"{major}.? (getInferLibVersion {value})"


_LAYER_PRECISIONS = (  # TensorRT's "Format/Datatype" words; bf16 before fp32 ("BFloat16")
    ("bf16", re.compile(r"BFloat16|BF16", re.I)),
    ("fp8", re.compile(r"FP8|E4M3", re.I)),
    ("fp16", re.compile(r"\bHalf\b|FP16", re.I)),
    ("fp32", re.compile(r"\bFloat\b|FP32", re.I)),
    ("int8", re.compile(r"Int8", re.I)),
)


def layer_precisions(info: dict[str, Any]) -> dict[str, int] | None:
    """How many layers of an engine produce each precision, from the engine inspector's JSON
    (`IEngineInspector.get_engine_information(LayerInformationFormat.JSON)`); None when the
    engine was built with profiling verbosity LAYER_NAMES_ONLY (TensorRT's default; none of
    the options of onnxruntime's TensorRT provider names another), whose layers are bare names."""
    layers = info.get("Layers")
    if not isinstance(layers, list) or not layers or not all(isinstance(x, dict) for x in layers):
        return None
    counts: dict[str, int] = {}
    for layer in layers:
        outputs = layer.get("Outputs") or layer.get("Inputs") or []
        text = " ".join(str(o.get("Format/Datatype", "")) for o in outputs if isinstance(o, dict))
        kind = next((name for name, pattern in _LAYER_PRECISIONS if pattern.search(text)), "other")
        counts[kind] = counts.get(kind, 0) + 1
    return counts
