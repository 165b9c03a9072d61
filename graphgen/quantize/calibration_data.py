"""Calibration images: seeded uniform pixels, a .npy file or a folder of images, each normalised
as the graph's input expects."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from graphgen.onnx_io import metadata
from graphgen.plan import Plan
from resnet_common.errors import UserError

DEFAULT_CALIBRATION_IMAGES = 32
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Calibration:
    """NHWC float32 images as the graph's input takes them (normalised), and where they came
    from, for the metadata."""

    images: np.ndarray
    source: dict[str, object]


def normalisation(model: onnx.ModelProto) -> tuple[np.ndarray, np.ndarray]:
    """The input normalisation the graph was trained with (its metadata), else ImageNet's."""
    meta = metadata(model)
    try:
        mean = json.loads(meta["graphgen.normalize_mean"])
        std = json.loads(meta["graphgen.normalize_std"])
    except (KeyError, json.JSONDecodeError):
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    return np.asarray(mean, np.float32), np.asarray(std, np.float32)


def seeded_calibration(
    model: onnx.ModelProto, plan: Plan, *, count: int = DEFAULT_CALIBRATION_IMAGES, seed: int = 0
) -> Calibration:
    """Uniform pixels in [0, 1), normalised as the graph expects: the distribution
    `bench-runtimes` feeds, from another seed stream than its inputs."""
    mean, std = normalisation(model)
    s = plan.spec.image_size
    rng = np.random.default_rng([seed, 8])
    pixels = rng.random((count, s, s, 3), dtype=np.float32)
    images = ((pixels - mean) / std).astype(np.float32)
    return Calibration(images, {"source": "seeded uniform pixels", "seed": seed, "images": count})


def load_calibration(
    path: str | Path, model: onnx.ModelProto, plan: Plan, *, count: int | None = None
) -> Calibration:
    """Images from a .npy file or a folder of image files.

    A .npy holds N images, NCHW or NHWC at the graph's size: uint8 pixels (normalised with the
    graph's normalisation) or floats already normalised as the graph's input. A folder's images
    (any format Pillow reads) are resized (shorter side) and centre-cropped to the graph's size.
    `count` keeps the first N (all by default).
    """
    path = Path(path)
    s = plan.spec.image_size
    mean, std = normalisation(model)
    if path.is_dir():
        data = _normalised(_read_folder(path, s, count), mean, std)
    elif path.is_file() and path.suffix.lower() == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as err:
            raise UserError(f"--calibration-data {path}: not a readable .npy ({err})") from None
        data = _from_array(array, path, s)
        if data.dtype == np.uint8:
            data = _normalised(data, mean, std)
    elif path.exists():
        raise UserError(f"--calibration-data {path}: give a folder of images or a .npy file")
    else:
        raise UserError(f"--calibration-data {path}: no such file or folder")
    if count is not None:
        data = data[:count]
    if not len(data):
        raise UserError(f"--calibration-data {path}: no images")
    digest = hashlib.sha256(np.ascontiguousarray(data).tobytes()).hexdigest()[:16]
    source = {"source": str(path), "images": int(len(data)), "sha256": digest}
    return Calibration(np.ascontiguousarray(data, np.float32), source)


def _normalised(pixels: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """uint8 pixels as the graph's input: on the 0..1 scale, less the mean, over the std."""
    images: np.ndarray = ((pixels.astype(np.float32) / 255.0 - mean) / std).astype(np.float32)
    return images


def _from_array(array: np.ndarray, path: Path, s: int) -> np.ndarray:
    """A .npy's images as NHWC: uint8 pixels as they are, floats as float32."""
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4 or not (array.shape[1:] == (3, s, s) or array.shape[1:] == (s, s, 3)):
        raise UserError(
            f"--calibration-data {path}: shape {array.shape}; expected N images of "
            f"3x{s}x{s} (NCHW) or {s}x{s}x3 (NHWC)"
        )
    if array.shape[1:] == (3, s, s) and array.shape[-1] != 3:
        array = array.transpose(0, 2, 3, 1)
    if array.dtype == np.uint8:
        return array
    if not np.issubdtype(array.dtype, np.floating):
        raise UserError(f"--calibration-data {path}: dtype {array.dtype}; use uint8 or float")
    if not np.isfinite(array).all():
        raise UserError(f"--calibration-data {path}: holds NaN or Inf")
    return array.astype(np.float32)


def _read_folder(folder: Path, s: int, count: int | None) -> np.ndarray:
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise UserError(
            "reading an image folder needs Pillow (pip install pillow), or pass a .npy"
        ) from None
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    out: list[np.ndarray] = []
    for file in files:
        if count is not None and len(out) >= count:
            break
        try:
            with Image.open(file) as image:
                rgb = image.convert("RGB")
        except (UnidentifiedImageError, OSError):
            continue  # not an image: folders hold labels and notes too
        w, h = rgb.size
        scale = s / min(w, h)
        rgb = rgb.resize((max(s, round(w * scale)), max(s, round(h * scale))))
        left, top = (rgb.size[0] - s) // 2, (rgb.size[1] - s) // 2
        out.append(np.asarray(rgb.crop((left, top, left + s, top + s)), np.uint8))
    if not out:
        raise UserError(f"--calibration-data {folder}: no readable images in the folder")
    return np.stack(out)
