"""Where images come from: every name `data.dataset` accepts.

Each source returns its training images, its test images (or None when the data has no test
split, which is then carved out of the training images with `data.test_split`) and class names.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cnnlab.data.archives import Limits, extract, is_archive
from cnnlab.data.arrays import ImageSet, stratified_split
from cnnlab.data.imagefolder import default_cache_dir, load_files, load_folder
from cnnlab.errors import DataError
from cnnlab.registry import Registry
from cnnlab.seeding import generator


@dataclass(frozen=True)
class DatasetInfo:
    """What config validation needs to know about a dataset besides its loader (`load(cfg)`)."""

    needs_root: bool = False  # read from data.root (a file or folder), which is then required


DATASETS: Registry[DatasetInfo] = Registry("dataset", "datasets", DatasetInfo)


@dataclass
class RawData:
    train: ImageSet
    test: ImageSet | None
    classes: list[str]
    cache_hit: bool = False
    val: ImageSet | None = None  # given by the data itself; None: split off with data.val_split


def split_off_test(images: ImageSet, cfg) -> tuple[ImageSet, ImageSet]:
    kept, held = stratified_split(images.labels, cfg.test_split, cfg.split_seed, "test-split")
    return images.subset(kept), images.subset(held)


@DATASETS.register("synthetic", "generated in memory: class prototypes (smooth random patterns) "
                   "plus noise and shifts; deterministic, learnable, no files")
def synthetic(cfg) -> RawData:
    s = cfg.synthetic
    gen = generator(s.seed, "synthetic")
    size = s.image_size
    coarse = torch.rand(s.num_classes, s.channels, 4, 4, generator=gen)
    prototypes = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)

    def sample(count: int, purpose: str) -> ImageSet:
        g = generator(s.seed, purpose)
        labels = torch.arange(count) % s.num_classes
        labels = labels[torch.randperm(count, generator=g)]
        images = prototypes[labels] + s.noise * torch.randn(count, s.channels, size, size,
                                                            generator=g)
        shifts = torch.randint(-2, 3, (count, 2), generator=g)
        for i in range(count):  # small random translations so a conv net has something to learn
            images[i] = torch.roll(images[i], shifts=tuple(shifts[i].tolist()), dims=(1, 2))
        pixels = (images.clamp(0, 1) * 255).round().to(torch.uint8)
        return ImageSet(labels, pixels)

    classes = [f"class{i}" for i in range(s.num_classes)]
    return RawData(sample(s.train_size, "synthetic-train"), sample(s.test_size, "synthetic-test"),
                   classes)


@DATASETS.register("digits", "scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 "
                   "classes); no download")
def digits(cfg) -> RawData:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # Pixel values are 0..16; spread them over 0..255 so normalization sees the usual scale.
    pixels = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None, :, :]
    images = ImageSet(torch.from_numpy(bunch.target.astype(np.int64)), torch.from_numpy(pixels))
    train, test = split_off_test(images, cfg)
    return RawData(train, test, [str(d) for d in range(10)])


def to_nchw(array: np.ndarray, layout: str, key: str, path: Path | str) -> np.ndarray:
    if array.ndim == 3:
        return array[:, None, :, :]
    if array.ndim != 4:
        raise DataError(f"{path}: {key} has shape {array.shape}; expected N x H x W, "
                        "N x H x W x C or N x C x H x W")
    if layout == "auto":
        channels_last = array.shape[3] in (1, 3, 4) and array.shape[1] not in (1, 3, 4)
        channels_first = array.shape[1] in (1, 3, 4) and array.shape[3] not in (1, 3, 4)
        if not (channels_last or channels_first):
            raise DataError(f"{path}: cannot tell whether {key} with shape {array.shape} is NHWC "
                            "or NCHW; set data.layout to nhwc or nchw")
        layout = "nhwc" if channels_last else "nchw"
    return array.transpose(0, 3, 1, 2) if layout == "nhwc" else array


def _array(archive, key: str, path: Path) -> np.ndarray:
    try:
        return archive[key]
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        if "allow_pickle" in str(error):
            raise DataError(f"{path}: {key} holds Python objects, which cnnlab does not unpickle "
                            "(it could run code); store it as a numeric array") from None
        raise DataError(f"{path}: cannot read {key} ({error}); save the arrays again with "
                        "numpy.savez") from None


def label_ranges(values: list[int]) -> str:
    """Sorted distinct labels written compactly: [0, 1, 2, 3, 255] -> '0..3, 255'."""
    runs: list[list[int]] = []
    for value in values:
        if runs and value == runs[-1][1] + 1:
            runs[-1][1] = value
        else:
            runs.append([value, value])
    shown = [str(a) if a == b else f"{a}, {b}" if b == a + 1 else f"{a}..{b}" for a, b in runs]
    return ", ".join(shown[:8]) + (", ..." if len(shown) > 8 else "")


def _classes_from_labels(labels: torch.Tensor, path: Path) -> int:
    """The class count of labels 0..K-1; a gap means a stray label or a missing class, which
    only data.num_classes can say."""
    present = torch.unique(labels).tolist()
    if not present:
        return 0
    count = int(present[-1]) + 1
    if present[0] >= 0 and len(present) < count:
        raise DataError(f"{path}: the labels are {label_ranges(present)} ({len(present)} distinct "
                        f"values), so {count - len(present)} of the classes 0..{count - 1} have no "
                        f"images; fix the stray labels, or set data.num_classes={count} if those "
                        "classes are real")
    return count


def to_uint8(array: np.ndarray, key: str, path: Path | str) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if np.issubdtype(array.dtype, np.floating):
        bad = int(array.size - np.count_nonzero(np.isfinite(array)))
        if bad:
            raise DataError(f"{path}: {key} holds {bad:,} NaN or infinite values out of "
                            f"{array.size:,}; pixels must be finite, uint8 0..255 or floats in "
                            "[0, 1]")
        if array.size and (array.min() < 0.0 or array.max() > 1.0):
            raise DataError(f"{path}: {key} holds floats outside [0, 1]; store pixels as uint8 "
                            "0..255 or floats in [0, 1]")
        return np.round(array * 255.0).astype(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        if array.size and (array.min() < 0 or array.max() > 255):
            raise DataError(f"{path}: {key} holds integers outside 0..255; store pixels as uint8")
        return array.astype(np.uint8)
    raise DataError(f"{path}: {key} has dtype {array.dtype}; expected uint8 or float pixels")


@DATASETS.register("npz", "a NumPy .npz file in Keras layout (x_train, y_train, x_test, y_test); "
                   "NHWC or NCHW, uint8 or floats in [0, 1]", info=DatasetInfo(needs_root=True))
def npz(cfg) -> RawData:
    path = Path(cfg.root).expanduser()
    if not path.is_file():
        raise DataError(f"data.root: {path} is not a file; the npz dataset needs the path of a "
                        ".npz file with x_train and y_train")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        reason = str(error) or type(error).__name__
        raise DataError(f"data.root: cannot read {path} as .npz ({reason}); save the arrays "
                        "with numpy.savez") from None
    with archive:
        missing = [k for k in ("x_train", "y_train") if k not in archive.files]
        if missing:
            raise DataError(f"{path} lacks {', '.join(missing)} (it has "
                            f"{', '.join(archive.files) or 'no arrays'}); expected x_train, "
                            "y_train and optionally x_test, y_test")

        def read(x_key: str, y_key: str) -> ImageSet:
            x = to_uint8(to_nchw(_array(archive, x_key, path), cfg.layout, x_key, path),
                          x_key, path)
            y = _array(archive, y_key, path).reshape(-1)
            if not np.issubdtype(y.dtype, np.integer):
                if np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0):
                    y = y.astype(np.int64)
                else:
                    raise DataError(f"{path}: {y_key} must hold integer class indices, found "
                                    f"{y.dtype}")
            if len(y) != len(x):
                raise DataError(f"{path}: {x_key} has {len(x)} images but {y_key} has {len(y)} "
                                "labels")
            return ImageSet(torch.from_numpy(y.astype(np.int64)),
                            torch.from_numpy(np.ascontiguousarray(x)))

        train = read("x_train", "y_train")
        test = read("x_test", "y_test") if "x_test" in archive.files else None
    if test is not None and test.shape[1:] != train.shape[1:]:
        raise DataError(f"{path}: x_test images are {test.shape} but x_train images are "
                        f"{train.shape} (C, H, W); both splits must have the same shape")
    labels = torch.cat([train.labels] + ([test.labels] if test is not None else []))
    count = cfg.num_classes or _classes_from_labels(labels, path)
    if test is None:
        train, test = split_off_test(train, cfg)
    return RawData(train, test, [str(i) for i in range(count)])


@DATASETS.register("imagefolder", "a folder (or .tar.gz/.zip of one) with train/ and test/ or "
                   "just class folders, one per class; decoded once into a cache",
                   info=DatasetInfo(needs_root=True))
def imagefolder(cfg) -> RawData:
    root = Path(cfg.root).expanduser()
    if not root.exists():
        raise DataError(f"data.root: {root} does not exist; point it at a folder of class "
                        "sub-folders (or with train/ and test/ inside), or at an archive of one")
    channels = None if cfg.channels == "auto" else int(cfg.channels)
    size = _size(cfg.image_size)
    cache_dir = Path(cfg.cache_dir).expanduser() if cfg.cache_dir else None
    if is_archive(root):
        limits = Limits(max_bytes=int(cfg.archive_max_gb * 10**9),
                        max_files=cfg.archive_max_files)
        root = extract(root, cache_dir or default_cache_dir(), limits)
    in_memory = None if cfg.in_memory == "auto" else bool(cfg.in_memory)
    workers = cfg.workers if cfg.workers is not None else min(8, _cpus())
    train_root = root / "train" if (root / "train").is_dir() else root
    train, classes, hit = load_folder(train_root, None, channels, size, cache_dir,
                                      in_memory, workers)
    in_memory = train.in_memory  # the test split follows the training split's choice
    channels = channels or train.shape[0]
    size = size or tuple(train.shape[1:])
    test = None
    if (root / "test").is_dir() and train_root != root:
        test, _, test_hit = load_folder(root / "test", classes, channels, size, cache_dir,
                                        in_memory, workers)
        hit = hit and test_hit
    if test is None:
        train, test = split_off_test(train, cfg)
    return RawData(train, test, classes, hit)


@DATASETS.register("filelist", "a CSV or JSON list of path,label[,split] (data.root: the list "
                   "file; paths relative to it); decoded and cached like image folders",
                   info=DatasetInfo(needs_root=True))
def filelist(cfg) -> RawData:
    from cnnlab.data.filelist import read_list

    path = Path(cfg.root).expanduser()
    listed = read_list(path)
    channels = None if cfg.channels == "auto" else int(cfg.channels)
    size = _size(cfg.image_size)
    cache_dir = Path(cfg.cache_dir).expanduser() if cfg.cache_dir else None
    in_memory = None if cfg.in_memory == "auto" else bool(cfg.in_memory)
    workers = cfg.workers if cfg.workers is not None else min(8, _cpus())
    splits, hits = {}, []
    for split in ("train", "val", "test"):
        if not listed.files[split]:
            splits[split] = None
            continue
        images, hit = load_files(path.parent, listed.files[split], listed.labels[split],
                                 channels, size, cache_dir, in_memory, workers)
        # Later splits follow the training split's channels, size and memory choice.
        channels, size = images.shape[0], tuple(images.shape[1:])
        in_memory = images.in_memory
        splits[split] = images
        hits.append(hit)
    train, test = splits["train"], splits["test"]
    if test is None:
        train, test = split_off_test(train, cfg)
    return RawData(train, test, listed.classes, all(hits), splits["val"])


@DATASETS.register("python", "data given in Python, cnnlab.train(cfg, data=...): a Dataset, "
                   "arrays (x, y) or a dict of splits; cnnlab records it, a config cannot hold it")
def python(cfg) -> RawData:
    what = f" ({cfg.description})" if cfg.description else ""
    raise DataError(f"data.dataset is python{what}: data given in Python, which no config "
                    "file holds; call cnnlab.train(cfg, data=...) (cnnlab.resume and "
                    "cnnlab.evaluate_run take data= too), or choose another data.dataset")


def _size(image_size) -> tuple[int, int] | None:
    if image_size is None:
        return None
    if isinstance(image_size, int):
        return (image_size, image_size)
    return tuple(image_size)


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _torchvision(name: str, cls_name: str, classes: list[str] | None, split_kw: str):
    def load(cfg) -> RawData:
        import torchvision.datasets as tvd

        root = Path(cfg.root).expanduser() if cfg.root else default_cache_dir() / "datasets"
        cls = getattr(tvd, cls_name)

        def get(train: bool):
            kwargs = {"train": train} if split_kw == "train" else {"split": "train" if train
                                                                     else "test"}
            try:
                return cls(str(root), download=cfg.download, **kwargs)
            except RuntimeError as error:
                if cfg.download:
                    raise DataError(f"could not download {name} into {root} ({error})") from None
                raise DataError(
                    f"no {name} files under {root}; set data.download=true to fetch them (needs "
                    f"internet) or data.root to the folder that holds them"
                ) from None

        train, test = get(True), get(False)
        return RawData(_tv_images(train), _tv_images(test),
                       list(getattr(train, "classes", None) or classes or []))

    return load


def _tv_images(dataset) -> ImageSet:
    data = dataset.data
    data = data.numpy() if isinstance(data, torch.Tensor) else np.asarray(data)
    if data.ndim == 3:
        data = data[:, None]
    elif data.shape[-1] in (1, 3) and data.shape[1] not in (1, 3):
        data = data.transpose(0, 3, 1, 2)
    labels = getattr(dataset, "targets", None)
    if labels is None:
        labels = dataset.labels
    labels = labels.numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    return ImageSet(torch.from_numpy(labels.astype(np.int64)),
                    torch.from_numpy(np.ascontiguousarray(data, dtype=np.uint8)))


for _name, _cls, _split, _desc in [
    ("mnist", "MNIST", "train", "MNIST handwritten digits, 28x28 grey, 60k/10k"),
    ("fashion_mnist", "FashionMNIST", "train", "Fashion-MNIST clothing, 28x28 grey, 60k/10k"),
    ("kmnist", "KMNIST", "train", "Kuzushiji-MNIST cursive Japanese, 28x28 grey, 60k/10k"),
    ("cifar10", "CIFAR10", "train", "CIFAR-10, 32x32 colour, 10 classes, 50k/10k"),
    ("cifar100", "CIFAR100", "train", "CIFAR-100, 32x32 colour, 100 classes, 50k/10k"),
    ("svhn", "SVHN", "split", "SVHN house numbers, 32x32 colour, 73k/26k"),
]:
    DATASETS.register(_name, f"{_desc} (torchvision; data.download=true fetches it)")(
        _torchvision(_name, _cls, [str(i) for i in range(10)], _split))
