"""Training data: CIFAR-10 python batches, ImageFolder trees, and a built-in synthetic set.

In-memory sets (CIFAR-10, synthetic) are uint8 tensors [N, 3, H, W], batched and augmented on the
CPU in the training process (section 4.2: 4-pixel pad, random crop, flip) before the batch moves
to the device. ImageFolder trees decode with PIL in DataLoader workers (section 3.4: scale
augmentation, crop, flip, colour). Every random choice is seeded from (seed, rank, epoch, step or
index), so a resumed run sees the same batches and no two processes or seeds share a stream.
Normalisation (per-channel mean and std on the 0..1 scale) is stored with the run.
"""

from __future__ import annotations

import pickle
import struct
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from resnet_common.errors import UserError, first_line, typed_line
from resnet_common.limits import MAX_IMAGE_PIXELS
from train.config import DATASETS

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# AlexNet's "standard colour augmentation": PCA of ImageNet RGB pixels (Krizhevsky et al. 2012).
PCA_EIGVAL = (0.2175, 0.0188, 0.0045)
PCA_EIGVEC = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".webp", ".tif", ".tiff"}
SPLIT_SEED = 20151210  # the 45k/5k split does not change with the training seed


class DataError(UserError):
    """A `--data` folder that is missing, in the wrong layout, or holds unreadable files."""


@dataclass
class TensorSet:
    """Images as uint8 [N, 3, H, W] and int64 labels, held in memory."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class FolderSet(torch.utils.data.Dataset):
    """(path, label) pairs decoded on demand; items are keyed by (index, augmentation seed)."""

    items: list[tuple[Path, int]]
    image_size: int
    train: bool

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, int]:
        index, seed = key
        path, label = self.items[index]
        image = _open_image(path)
        rng = np.random.default_rng([seed, index])
        if self.train:
            return _imagenet_train_view(image, self.image_size, rng), label
        return _imagenet_eval_view(image, self.image_size), label


@dataclass
class DataBundle:
    """What the loop needs: train/val(/test) sets, class count, normalisation, augmentation kind."""

    name: str
    train: TensorSet | FolderSet
    val: TensorSet | FolderSet
    classes: int
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    test: TensorSet | FolderSet | None = None
    class_names: list[str] = field(default_factory=list)


def load_data(
    dataset: str,
    data_dir: str | Path | None,
    *,
    image_size: int,
    classes: int | None = None,
    val_split: int = 5000,
    seed: int = 0,
    synthetic_train: int = 2000,
    synthetic_val: int = 500,
) -> DataBundle:
    """Open `dataset`; raises `DataError` with one actionable line for a bad `--data` folder."""
    if dataset == "synthetic":
        return synthetic_data(
            train=synthetic_train,
            val=synthetic_val,
            classes=classes or 10,
            image_size=image_size,
            seed=seed,
        )
    if data_dir is None:
        raise DataError(f"--dataset {dataset} needs --data DIR")
    root = Path(data_dir)
    if not root.is_dir():
        raise DataError(f"--data {root}: no such folder")
    if dataset == "cifar10":
        return cifar10_data(root, val_split=val_split, image_size=image_size)
    if dataset == "imagefolder":
        return folder_data(root, image_size=image_size)
    raise DataError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")


# --- synthetic ---------------------------------------------------------------------------------


def synthetic_data(
    *, train: int, val: int, classes: int, image_size: int, seed: int = 0
) -> DataBundle:
    """A deterministic, learnable image set: each class is an oriented colour grating.

    Samples shift the grating's phase, jitter contrast and colour, and add pixel noise, so a
    classifier must learn orientation and frequency rather than memorise pixels.
    """
    images, labels = _synthetic_images(train + val, classes, image_size, seed)
    tr = TensorSet(images[:train], labels[:train])
    va = TensorSet(images[train:], labels[train:])
    mean, std = channel_stats(tr.images)
    return DataBundle("synthetic", tr, va, classes, image_size, mean, std)  # type: ignore[arg-type]


def _synthetic_images(n: int, classes: int, size: int, seed: int) -> tuple[torch.Tensor, ...]:
    rng = np.random.default_rng([seed, 7])
    angles = np.pi * np.arange(classes) / classes
    freqs = 2.0 + 2.0 * (np.arange(classes) % 3)
    colours = rng.uniform(0.2, 0.8, (classes, 3))
    labels = rng.integers(0, classes, n)
    yy, xx = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    coords = np.stack([xx, yy]).reshape(2, -1) / size  # [2, S*S]
    direction = np.stack([np.cos(angles[labels]), np.sin(angles[labels])], 1)  # [n, 2]
    phase = rng.uniform(0, 2 * np.pi, (n, 1))
    wave = np.sin(2 * np.pi * freqs[labels, None] * (direction @ coords) + phase)  # [n, S*S]
    contrast = rng.uniform(0.15, 0.35, (n, 1, 1))
    colour = colours[labels][:, :, None] + rng.normal(0, 0.08, (n, 3, 1))
    pixels = colour + contrast * wave[:, None, :] + rng.normal(0, 0.1, (n, 3, size * size))
    pixels = np.clip(pixels, 0, 1).reshape(n, 3, size, size)
    images = torch.from_numpy(np.round(pixels * 255).astype(np.uint8))
    return images, torch.from_numpy(labels.astype(np.int64))


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std on the 0..1 scale."""
    x = images.to(torch.float64).div_(255).transpose(0, 1).reshape(3, -1)
    mean = tuple(round(float(v), 6) for v in x.mean(1))
    std = tuple(round(float(v), 6) for v in x.std(1).clamp_min(1e-3))
    return mean, std


# --- CIFAR-10 ----------------------------------------------------------------------------------

CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST = "test_batch"


def cifar10_data(root: Path, *, val_split: int = 5000, image_size: int = 32) -> DataBundle:
    """CIFAR-10 python batches; the last `val_split` of a fixed permutation is the val set."""
    folder = _cifar_folder(root)
    if image_size != 32:
        raise DataError(f"CIFAR-10 images are 32x32; --image-size {image_size} does not fit")
    parts = [_read_cifar_batch(folder / name) for name in CIFAR_TRAIN]
    images = torch.cat([p[0] for p in parts])
    labels = torch.cat([p[1] for p in parts])
    test = TensorSet(*_read_cifar_batch(folder / CIFAR_TEST))
    if not 0 <= val_split < len(labels):
        raise DataError(f"--val-split {val_split} must be below {len(labels)} training images")
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(SPLIT_SEED))
    train_idx, val_idx = order[: len(labels) - val_split], order[len(labels) - val_split :]
    train = TensorSet(images[train_idx], labels[train_idx])
    val = TensorSet(images[val_idx], labels[val_idx]) if val_split else test
    mean, std = channel_stats(train.images)
    return DataBundle("cifar10", train, val, 10, 32, mean, std, test=test)  # type: ignore[arg-type]


def _cifar_folder(root: Path) -> Path:
    for folder in (root, root / "cifar-10-batches-py"):
        if all((folder / n).is_file() for n in (*CIFAR_TRAIN, CIFAR_TEST)):
            return folder
    raise DataError(
        f"--data {root} is not CIFAR-10 in the python layout: expected data_batch_1..5 and "
        "test_batch there or in cifar-10-batches-py/ (from cifar-10-python.tar.gz)"
    )


class _CifarUnpickler(pickle.Unpickler):
    """Only what a CIFAR batch holds (dicts, lists, numpy arrays): no arbitrary code."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> object:
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"forbidden global {module}.{name}")


def _read_cifar_batch(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    bad = f"{path} is not a CIFAR-10 batch file"
    try:
        with open(path, "rb") as f:
            batch = _CifarUnpickler(f, encoding="bytes").load()
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except Exception as err:  # truncated, garbage, or a pickle that is not a batch
        raise DataError(f"{bad} ({type(err).__name__}); re-extract the archive") from None
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise DataError(f"{bad}: expected data [N, 3072] and N labels")
    if labels.min(initial=0) < 0 or labels.max(initial=0) > 9:
        raise DataError(f"{bad}: labels outside 0..9")
    images = torch.from_numpy(data.reshape(-1, 3, 32, 32).copy())
    return images, torch.from_numpy(labels)


# --- ImageFolder -------------------------------------------------------------------------------


def folder_data(root: Path, *, image_size: int) -> DataBundle:
    """`root/train/<class>/*.jpg` and `root/val/<class>/*.jpg`; classes sorted by name."""
    try:
        import PIL.Image  # noqa: F401
    except ImportError:
        raise DataError("--dataset imagefolder needs Pillow: pip install pillow") from None
    splits = {}
    for split in ("train", "val"):
        folder = root / split
        if not folder.is_dir():
            raise DataError(
                f"--data {root} is not an ImageFolder tree: expected {split}/<class>/<images>"
            )
        classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
        if not classes:
            raise DataError(f"--data {root}: {folder} has no class folders")
        splits[split] = classes
    if splits["train"] != splits["val"]:
        raise DataError(f"--data {root}: train/ and val/ have different class folders")
    names = splits["train"]
    sets = {}
    for split in ("train", "val"):
        items = [
            (path, label)
            for label, name in enumerate(names)
            for path in sorted((root / split / name).iterdir())
            if path.suffix.lower() in IMAGE_SUFFIXES
        ]
        if not items:
            raise DataError(f"--data {root}: no images under {split}/")
        _check_images([path for path, _ in items])
        sets[split] = FolderSet(items, image_size, train=split == "train")
    return DataBundle(
        "imagefolder",
        sets["train"],
        sets["val"],
        len(names),
        image_size,
        IMAGENET_MEAN,
        IMAGENET_STD,
        class_names=names,
    )


def _check_images(paths: list[Path]) -> None:
    """Refuse files PIL cannot identify before training starts (a header read, not a decode),
    and files no worker should open: a named pipe (open() waits for a writer forever), an image
    whose header claims more than MAX_IMAGE_PIXELS (a decompression bomb: a few KB claiming
    billions of pixels, which a worker would decode)."""
    from PIL import Image

    def bad(path: Path) -> str | None:
        if not path.is_file():
            return f"{path} is not a regular file"
        try:
            with Image.open(path) as image:
                w, h = image.size
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
            return f"{path} claims too many pixels ({str(err)[:100]})"
        except (OSError, ValueError, SyntaxError, struct.error) as err:
            return f"{path} is not a readable image ({type(err).__name__})"
        if w * h > MAX_IMAGE_PIXELS:
            return (
                f"{path} is {w:,} x {h:,} pixels, past the {MAX_IMAGE_PIXELS:,} pixels an image "
                "may have here (a decompression bomb?); scale it down"
            )
        return None

    # PIL warns past its own limit and decodes anyway: here that is an error (the filter is
    # process-wide while the threads read, and put back after)
    with warnings.catch_warnings(), ThreadPoolExecutor(max_workers=16) as pool:
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        for message in pool.map(bad, paths):
            if message:
                raise DataError(message)


def _open_image(path: Path) -> object:
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, ValueError) as err:
        raise DataError(f"{path} is not a readable image ({typed_line(err)})") from None


def _to_tensor(image: object) -> torch.Tensor:
    array = np.asarray(image, dtype=np.float32) / 255.0
    return torch.from_numpy(array.transpose(2, 0, 1).copy())


def _resize_shorter(image: object, side: int) -> object:
    from PIL import Image

    w, h = image.size  # type: ignore[attr-defined]
    scale = side / min(w, h)
    return image.resize((max(side, round(w * scale)), max(side, round(h * scale))), Image.BILINEAR)  # type: ignore[attr-defined]


def _imagenet_train_view(image: object, size: int, rng: np.random.Generator) -> torch.Tensor:
    """Section 3.4: shorter side in [256, 480] (scaled to `size`), random crop, flip, colour."""
    lo, hi = round(size * 256 / 224), round(size * 480 / 224)
    image = _resize_shorter(image, int(rng.integers(lo, hi + 1)))
    w, h = image.size  # type: ignore[attr-defined]
    left, top = int(rng.integers(0, w - size + 1)), int(rng.integers(0, h - size + 1))
    x = _to_tensor(image.crop((left, top, left + size, top + size)))  # type: ignore[attr-defined]
    if rng.random() < 0.5:
        x = x.flip(2)
    alpha = rng.normal(0, 0.1, 3) * np.asarray(PCA_EIGVAL)
    shift = np.asarray(PCA_EIGVEC) @ alpha
    return (x + torch.tensor(shift, dtype=torch.float32)[:, None, None]).clamp_(0, 1)


def _imagenet_eval_view(image: object, size: int) -> torch.Tensor:
    """Shorter side to 256 (scaled to `size`), centre crop."""
    image = _resize_shorter(image, round(size * 256 / 224))
    w, h = image.size  # type: ignore[attr-defined]
    left, top = (w - size) // 2, (h - size) // 2
    return _to_tensor(image.crop((left, top, left + size, top + size)))  # type: ignore[attr-defined]


# --- batching and augmentation ---------------------------------------------------------------


def augment_cifar(images: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Section 4.2: pad 4 pixels per side, random crop back to size, random horizontal flip."""
    n, _, h, w = images.shape
    padded = torch.nn.functional.pad(images, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator).tolist()
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator).tolist()
    flip = torch.rand(n, generator=generator) < 0.5
    out = torch.stack(
        [padded[i, :, y : y + h, x : x + w] for i, (y, x) in enumerate(zip(dy, dx, strict=True))]
    )
    return torch.where(flip.view(n, 1, 1, 1).to(out.device), out.flip(3), out)


def step_seed(seed: int, epoch: int, step: int, rank: int = 0) -> int:
    """A per-(seed, rank, epoch, step) seed, so augmentation does not depend on the RNG's history.

    The words enter a SeedSequence separately, so (seed, rank) pairs never collide.
    """
    return int(np.random.SeedSequence([seed, rank, epoch, step]).generate_state(1)[0])


def iterate_batches(
    data: TensorSet | FolderSet,
    indices: list[int],
    batch_size: int,
    *,
    train: bool,
    augment: bool,
    seed: int,
    epoch: int,
    workers: int = 0,
    rank: int = 0,
):
    """Yield (images float 0..1, labels) for `indices` in order, `batch_size` at a time.

    A `DataError` raised while decoding in a worker keeps its own message (the file's path).
    """
    chunks = [indices[i : i + batch_size] for i in range(0, len(indices), batch_size)]
    if train:
        chunks = [c for c in chunks if len(c) == batch_size] or chunks[:1]  # drop the ragged tail
    if isinstance(data, TensorSet):
        for step, chunk in enumerate(chunks):
            index = torch.tensor(chunk)
            images = data.images[index]
            if augment:
                gen = torch.Generator().manual_seed(step_seed(seed, epoch, step, rank))
                images = augment_cifar(images, gen)
            yield images.float().div_(255), data.labels[index]
        return
    keys = [[(i, step_seed(seed, epoch, s, rank)) for i in c] for s, c in enumerate(chunks)]
    loader = torch.utils.data.DataLoader(
        data, batch_sampler=keys, num_workers=workers, persistent_workers=False
    )
    try:
        yield from loader
    except DataError as err:  # from a worker: "Caught DataError in DataLoader worker ..." + trace
        raise DataError(_original_message(err)) from None


def _original_message(err: DataError) -> str:
    """The worker's own message, from the last line of torch's re-raised traceback text."""
    for line in reversed(str(err).strip().splitlines()):
        _, sep, message = line.partition("DataError: ")
        if sep and message.strip():
            return message.strip()
    return first_line(err)
