"""Calibration images: seeded uniform pixels, a .npy file or a folder of images, each normalised
as the graph's input expects."""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from graphgen.onnx_io import metadata
from graphgen.plan import Plan
from resnet_common.arrays import load_npy
from resnet_common.errors import TooLargeError, UserError, shown, typed_line
from resnet_common.limits import MAX_IMAGE_PIXELS, SizeLimits, check_memory

DEFAULT_CALIBRATION_IMAGES = 32
# Calibration wants hundreds of images, not millions: past this a count is a typo (and the
# numpy pass over 10,000 ResNet-50 images takes hours already).
MAX_CALIBRATION_IMAGES = 10_000
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
    check_count(count, s)
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
    if count is not None:
        check_count(count, s)
    if path.is_dir():
        data = _normalised(_read_folder(path, s, count), mean, std)
    elif path.is_file() and path.suffix.lower() == ".npy":
        # memory-mapped once its header is checked: only the images kept are read
        array = load_npy(path, what="--calibration-data")
        if array.ndim in (3, 4):
            array = array[None] if array.ndim == 3 else array
            check_count(min(len(array), count or len(array)), s, what=f"{path} holds")
            array = array[: count or len(array)]
        data = _from_array(np.asarray(array), path, s)
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


def check_count(count: int, size: int, *, what: str = "--calibration-images") -> None:
    """Refuse a calibration set past MAX_CALIBRATION_IMAGES, or one the machine's memory cannot
    hold (the images as float32, twice: pixels and normalised)."""
    if count > MAX_CALIBRATION_IMAGES:
        raise TooLargeError(
            f"{what} {count:,} calibration images, past the {MAX_CALIBRATION_IMAGES:,} that "
            "calibration reads (a few hundred calibrate well); give --calibration-images N"
        )
    check_memory(
        2 * count * size * size * 3 * 4,
        what=f"{count:,} calibration images of {size}x{size}",
        limits=SizeLimits(),
        hint=lambda key: "--calibration-images N",
    )


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
        raise UserError(
            f"--calibration-data {path}: dtype {shown(str(array.dtype))}; use uint8 or float"
        )
    with np.errstate(over="ignore"):  # float64 past float32's range: Inf, refused next
        array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise UserError(f"--calibration-data {path}: holds NaN or Inf (as float32)")
    return array


def _read_folder(folder: Path, s: int, count: int | None) -> np.ndarray:
    try:
        from PIL import Image  # noqa: F401
    except ImportError:
        raise UserError(
            "reading an image folder needs Pillow (pip install pillow), or pass a .npy"
        ) from None
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    limit = count if count is not None else MAX_CALIBRATION_IMAGES
    if count is None:  # all of them: as many as there are files, at most
        check_count(min(len(files), limit), s, what=f"{folder} holds up to")
    out: list[np.ndarray] = []
    for file in files:
        if len(out) >= limit:
            break
        rgb = read_image(file, what="--calibration-data")
        if rgb is None:
            continue  # not an image: folders hold labels and notes too
        w, h = rgb.size
        scale = s / min(w, h)
        rgb = rgb.resize((max(s, round(w * scale)), max(s, round(h * scale))))
        left, top = (rgb.size[0] - s) // 2, (rgb.size[1] - s) // 2
        out.append(np.asarray(rgb.crop((left, top, left + s, top + s)), np.uint8))
    if not out:
        raise UserError(f"--calibration-data {folder}: no readable images in the folder")
    return np.stack(out)


def read_image(path: Path, *, what: str, max_pixels: int = MAX_IMAGE_PIXELS) -> Any:
    """An image file as RGB (a PIL image), or None when it is no image PIL knows. An image
    whose header claims more than `max_pixels` (a decompression bomb: 2 KB claiming 2.5 G
    pixels) is refused before it is decoded, as is one that is damaged (a truncated BMP, a PPM
    with maxval 0): one line naming the file."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                check_pixels(image.size, path, what=what, max_pixels=max_pixels)
                image.load()
                return image.convert("RGB")
    except UnidentifiedImageError:
        return None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise UserError(f"{what}: {path} claims too many pixels ({shown(str(err), 100)})") from None
    except UserError:
        raise
    except Exception as err:  # PIL's decoders raise OSError, ValueError, SyntaxError, ...
        raise UserError(
            f"{what}: {path} is a damaged image ({shown(typed_line(err), 100)}); remove or "
            "replace it"
        ) from None


def check_pixels(size: tuple[int, int], path: Path, *, what: str, max_pixels: int) -> None:
    w, h = size
    if w * h > max_pixels:
        raise UserError(
            f"{what}: {path} is {w:,} x {h:,} pixels, past the {max_pixels:,} pixels an image "
            "may have here (a decompression bomb?); scale it down"
        )
