"""Image folders (one sub-folder per class), decoded once into a cache.

The cache key is a hash of every file's relative path, size and modification time plus the decode
options, so a second run starts in seconds and any change to the files rebuilds it. Decoding runs
in worker processes; a file that cannot be decoded stops the run with its name.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from cnnlab.atomic import replace_atomically
from cnnlab.data.arrays import ImageSet
from cnnlab.errors import DataError

EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
GRAY_MODES = {"1", "L", "LA", "I", "I;16", "F"}
CACHE_VERSION = 1


def default_cache_dir() -> Path:
    return Path(os.environ.get("CNNLAB_CACHE", Path.home() / ".cache" / "cnnlab"))


def scan(root: Path, classes: list[str] | None = None) -> tuple[list[Path], list[int], list[str]]:
    """Files and labels of a folder of class sub-folders; `classes` fixes the label order."""
    if not root.is_dir():
        raise DataError(f"data.root: {root} is not a folder; an image folder holds one "
                        "sub-folder of images per class")
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not found:
        raise DataError(f"data.root: {root} has no class sub-folders; put each class's images in "
                        "a folder named after the class (root/cat/1.jpg, root/dog/2.jpg)")
    if classes is None:
        classes = found
    else:
        unknown = sorted(set(found) - set(classes))
        if unknown:
            raise DataError(f"{root} has classes {unknown} that the training folder lacks; "
                            "train and test must have the same class folders")
    files, labels = [], []
    for label, name in enumerate(classes):
        folder = root / name
        if not folder.is_dir():
            continue
        images = sorted(p for p in folder.rglob("*") if p.suffix.lower() in EXTENSIONS
                        and p.is_file())
        if not images:
            raise DataError(f"class folder {folder} holds no images (accepted extensions: "
                            f"{', '.join(sorted(EXTENSIONS))}); remove it or add images")
        files.extend(images)
        labels.extend([label] * len(images))
    return files, labels, classes


# The most pixels an image may have: Pillow's own decompression-bomb threshold (89,478,485, a
# 0.25 GiB RGB image, about 9,459 x 9,459), which Pillow only warns about below twice that.
# Training images are far smaller; a file beyond it is a mistake or a decompression bomb.
MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS


def _too_large(path: str, width: int, height: int) -> str | None:
    if width * height <= MAX_IMAGE_PIXELS:
        return None
    return (f"image {path} is {width}x{height} pixels, over the limit of {MAX_IMAGE_PIXELS:,} "
            "(a decompression bomb, or a photo far larger than a network trains on); shrink "
            "or remove it")


def _open(path: str):
    """Pillow's open, its decompression-bomb warning silenced: the caller checks the size."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return Image.open(path)


def _probe(path: str) -> tuple[str, int, int]:
    try:
        with _open(path) as image:
            too_large = _too_large(path, image.width, image.height)
            if too_large:
                return f"large:{too_large}", 0, 0
            return image.mode, image.width, image.height
    except Image.DecompressionBombError as error:
        return f"large:image {path} is a decompression bomb ({error}); remove it", 0, 0
    except (UnidentifiedImageError, OSError) as error:
        return f"error:{error}", 0, 0


def probe_all(files: list[Path], workers: int, resized: bool) -> tuple[int, tuple[int, int]]:
    """(channels, (height, width)) read from the file headers; mixed sizes are an error unless
    the images will be `resized`, and a corrupt file is named."""
    results = _map(_probe, [str(f) for f in files], workers)
    sizes: dict[tuple[int, int], Path] = {}
    gray = True
    for path, (mode, width, height) in zip(files, results):
        if mode.startswith("error:"):
            raise DataError(f"cannot decode image {path} ({mode[6:]}); delete or replace the file")
        if mode.startswith("large:"):
            raise DataError(mode[6:])
        sizes.setdefault((height, width), path)
        gray = gray and mode in GRAY_MODES
    if len(sizes) > 1 and not resized:
        (a, path_a), (b, path_b) = list(sizes.items())[:2]
        raise DataError(
            f"images have different sizes ({path_a} is {a[1]}x{a[0]}, {path_b} is "
            f"{b[1]}x{b[0]}); set data.image_size (e.g. {min(a[0], b[0])}) to resize them all"
        )
    return (1 if gray else 3), next(iter(sizes))


def decode(path: str, channels: int, size: tuple[int, int] | None) -> np.ndarray:
    """One image as uint8 C x H x W; raises DataError naming the file if it is corrupt."""
    try:
        with _open(path) as image:
            too_large = _too_large(path, image.width, image.height)
            if too_large:
                raise DataError(too_large)
            image = image.convert("L" if channels == 1 else "RGB")
            if size is not None and (image.height, image.width) != tuple(size):
                image = image.resize((size[1], size[0]), Image.BILINEAR)
            array = np.asarray(image, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as error:
        raise DataError(f"cannot decode image {path} ({error}); delete or replace the file") \
            from None
    if array.ndim == 2:
        array = array[:, :, None]
    return np.ascontiguousarray(array.transpose(2, 0, 1))


def _decode_chunk(args) -> np.ndarray | str:
    paths, channels, size = args
    try:
        return np.stack([decode(p, channels, size) for p in paths])
    except DataError as error:
        return str(error)


def _map(fn, items: list, workers: int) -> list:
    if workers <= 1 or len(items) < 256:
        return [fn(item) for item in items]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, items, chunksize=max(1, len(items) // (workers * 8))))


def decode_all(files: list[Path], channels: int, size: tuple[int, int], workers: int
               ) -> np.ndarray:
    chunk = 512
    jobs = [([str(p) for p in files[i:i + chunk]], channels, size)
            for i in range(0, len(files), chunk)]
    if workers <= 1 or len(jobs) == 1:
        results = [_decode_chunk(job) for job in jobs]
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(_decode_chunk, jobs))
    for result in results:
        if isinstance(result, str):
            raise DataError(result)
    return np.concatenate(results) if results else np.zeros((0, channels, *size), np.uint8)


def cache_key(root: Path, files: list[Path], channels: int | None,
              size: tuple[int, int] | None) -> str:
    """A hash of the files (paths relative to `root`, sizes, mtimes) and the requested decode
    options, computable without opening a single image, so a cache hit starts at once. A list
    file may name images outside its folder, hence relpath (the same string inside it)."""
    digest = hashlib.sha256()
    digest.update(json.dumps([CACHE_VERSION, str(root.resolve()), channels,
                              list(size) if size else None]).encode())
    for path in files:
        stat = path.stat()
        relative = os.path.relpath(path, root)
        digest.update(f"{relative}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:24]


def fits_in_memory(count: int, shape: tuple[int, int, int]) -> bool:
    """Whether decoded uint8 images take under a quarter of this machine's memory."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8 << 30
    return count * int(np.prod(shape)) < total // 4


def load_folder(root: Path, classes: list[str] | None, channels: int | None,
                image_size: tuple[int, int] | None, cache_dir: Path | None,
                in_memory: bool | None, workers: int) -> tuple[ImageSet, list[str], bool]:
    """Read one image folder; returns (images, class names, whether the cache was used).

    `in_memory=None` decodes into memory when the images fit (see `fits_in_memory`) and streams
    them from their files otherwise."""
    files, labels, classes = scan(root, classes)
    images, hit = load_files(root, files, labels, channels, image_size, cache_dir, in_memory,
                             workers)
    return images, classes, hit


def load_files(root: Path, files: list[Path], labels: list[int], channels: int | None,
               image_size: tuple[int, int] | None, cache_dir: Path | None,
               in_memory: bool | None, workers: int) -> tuple[ImageSet, bool]:
    """Image files with their labels, decoded (or streamed) and cached the same way whether they
    came from class folders or a list file; `root` anchors the cache key. Returns (images,
    whether the cache was used)."""
    label_tensor = torch.tensor(labels, dtype=torch.long)
    requested_size = tuple(image_size) if image_size is not None else None
    cache = (cache_dir or default_cache_dir()) / "imagefolder" / cache_key(
        root, files, channels, requested_size)
    if in_memory is not False and (cache / "images.npy").exists():
        images = np.load(cache / "images.npy", allow_pickle=False)
        return ImageSet(label_tensor, torch.from_numpy(np.array(images))), True

    detected_channels, detected_size = probe_all(files, workers, resized=image_size is not None)
    channels = channels or detected_channels
    size = requested_size or detected_size
    if in_memory is None:
        in_memory = fits_in_memory(len(files), (channels, *size))
    if not in_memory:
        return (ImageSet(label_tensor, None, files, (channels, *size),
                         {"channels": channels, "size": size}), False)
    images = decode_all(files, channels, size, workers)
    cache.mkdir(parents=True, exist_ok=True)
    # Named per process: two processes may build the same cache at once.
    replace_atomically(cache / "images.npy",
                       lambda handle: np.save(handle, images, allow_pickle=False),
                       temporary=cache / f"images.{os.getpid()}.tmp.npy")
    (cache / "meta.json").write_text(json.dumps({"root": str(root), "files": len(files)}))
    return ImageSet(label_tensor, torch.from_numpy(images)), False
