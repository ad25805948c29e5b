"""Data given in Python (`data=`): a map-style Dataset, arrays `(x, y)` or a dict of splits.

Everything is converted once into uint8 images in memory (`RawData`), so normalization
statistics, augmentation, splits and checks are those of every other source. The config then
says `data.dataset: python` with a description, so the run folder tells what it trained on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cnnlab.data.arrays import ImageSet
from cnnlab.data.imagefolder import GRAY_MODES
from cnnlab.data.sources import RawData, split_off_test, to_nchw, to_uint8
from cnnlab.errors import DataError

SPLITS = ("train", "val", "test")
ACCEPTED = ("a map-style Dataset of (image, label), a pair of arrays (x, y), or a dict "
            "{'train': ..., 'val': ..., 'test': ...} of those")


def _is_array(value) -> bool:
    return isinstance(value, (np.ndarray, torch.Tensor))


def _is_pair(data) -> bool:
    return (isinstance(data, tuple) and len(data) == 2 and all(_is_array(v) for v in data)
            and data[0].ndim >= 3)


def _numpy(value) -> np.ndarray:
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


def _integer_labels(labels: np.ndarray, where: str) -> np.ndarray:
    if np.issubdtype(labels.dtype, np.integer) and labels.dtype != np.bool_:
        return labels.astype(np.int64)
    if (np.issubdtype(labels.dtype, np.floating) and np.all(np.isfinite(labels))
            and np.all(np.mod(labels, 1) == 0)):
        return labels.astype(np.int64)
    raise DataError(f"{where} holds labels of type {labels.dtype}; labels must be integer class "
                    "indices 0..K-1")


def _from_arrays(x, y, cfg, where: str) -> ImageSet:
    images = to_uint8(to_nchw(_numpy(x), cfg.layout, "x", where), "x", where)
    labels = _integer_labels(_numpy(y).reshape(-1), f"{where}: y")
    if len(labels) != len(images):
        raise DataError(f"{where}: x has {len(images)} images but y has {len(labels)} labels; "
                        "give one label per image")
    if images.shape[1] not in (1, 3):
        raise DataError(f"{where}: the images have {images.shape[1]} channels; cnnlab trains on "
                        "1 (grey) or 3 (RGB) channels")
    return ImageSet(torch.from_numpy(labels), torch.from_numpy(np.ascontiguousarray(images)))


def _image(image, where: str) -> torch.Tensor:
    """One image as uint8 C x H x W: a PIL image, a CHW tensor or an HWC/CHW array."""
    if hasattr(image, "convert") and hasattr(image, "mode"):  # a PIL image
        array = np.asarray(image.convert("L" if image.mode in GRAY_MODES else "RGB"))
        array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    elif _is_array(image):
        array = _numpy(image)
        if array.ndim == 2:
            array = array[None]
        elif array.ndim == 3 and array.shape[0] not in (1, 3) and array.shape[2] in (1, 3, 4):
            # numpy images are usually H x W x C; tensors are C x H x W
            array = array.transpose(2, 0, 1)
        if array.ndim != 3:
            raise DataError(f"{where} is an image of shape {tuple(array.shape)}; an image is "
                            "C x H x W (tensor), H x W x C (array) or H x W")
        if (np.issubdtype(array.dtype, np.floating) and array.size
                and np.isfinite(array).all() and (array.min() < 0.0 or array.max() > 1.0)):
            raise DataError(f"{where} is a float image with values from {array.min():.3g} to "
                            f"{array.max():.3g}; give pixels in [0, 1] or uint8 (cnnlab "
                            "normalizes by itself, so leave Normalize out of the transform)")
        array = to_uint8(array, "the image", where)
    else:
        raise DataError(f"{where} has an image of type {type(image).__name__}; images must be "
                        "tensors, numpy arrays or PIL images")
    if array.shape[0] not in (1, 3):
        raise DataError(f"{where} is an image with {array.shape[0]} channels (shape "
                        f"{tuple(array.shape)}); cnnlab trains on 1 (grey) or 3 (RGB) channels")
    return torch.from_numpy(np.ascontiguousarray(array))


def _label(label, where: str) -> int:
    if isinstance(label, torch.Tensor) and label.numel() == 1:
        label = label.item()
    elif isinstance(label, np.ndarray) and label.size == 1:
        label = label.item()
    if isinstance(label, (bool, np.bool_)) or not isinstance(label, (int, np.integer)):
        raise DataError(f"{where} has label {str(label)[:40]!r} ({type(label).__name__}); labels "
                        "must be integer class indices 0..K-1")
    return int(label)


def _from_dataset(dataset, cfg, where: str) -> ImageSet:
    from cnnlab.data import resize

    try:
        count = len(dataset)
    except TypeError:
        raise DataError(f"{where} is a {type(dataset).__name__} without a length; give "
                        f"{ACCEPTED}") from None
    size = None
    if cfg.image_size is not None:
        size = (cfg.image_size,) * 2 if isinstance(cfg.image_size, int) else tuple(cfg.image_size)
    images, labels = [], []
    for index in range(count):
        item = dataset[index]
        at = f"{where} item {index}"
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise DataError(f"{at} is a {type(item).__name__}; a dataset must return (image, "
                            "label) pairs")
        image = _image(item[0], at)
        if size is not None:
            image = resize(image[None], size)[0]
        elif images and image.shape[1:] != images[0].shape[1:]:
            first, now = images[0].shape, image.shape
            raise DataError(f"{where} has images of different sizes (item 0 is {first[2]}x"
                            f"{first[1]}, item {index} is {now[2]}x{now[1]}); set "
                            f"data.image_size (e.g. {min(first[1], now[1])}) to resize them all")
        images.append(image)
        labels.append(_label(item[1], at))
    if not images:
        return ImageSet(torch.zeros(0, dtype=torch.long), torch.zeros(0, 1, 1, 1, dtype=torch.uint8))
    if len({image.shape[0] for image in images}) > 1:  # grey among colour: repeat to RGB
        images = [image.expand(3, -1, -1) for image in images]
    return ImageSet(torch.tensor(labels, dtype=torch.long), torch.stack(images))


def _describe(data) -> str:
    if _is_pair(data):
        return f"arrays x {tuple(data[0].shape)} {str(data[0].dtype).replace('torch.', '')}"
    return type(data).__name__


def class_names(data) -> list[str] | None:
    """Names from a dataset's `.classes` (a list) or `.class_to_idx` (name -> index)."""
    classes = getattr(data, "classes", None)
    if isinstance(classes, (list, tuple)) and classes:
        return [str(name) for name in classes]
    mapping = getattr(data, "class_to_idx", None)
    if isinstance(mapping, dict) and mapping:
        return [str(name) for name, _ in sorted(mapping.items(), key=lambda kv: kv[1])]
    return None


def convert(data, cfg) -> tuple[RawData, str]:
    """`data` as RawData (test split off with data.test_split when not given), and a one-line
    description for the config."""
    given = data if isinstance(data, dict) else {"train": data}
    unknown = sorted(str(key) for key in set(given) - set(SPLITS))
    if unknown or "train" not in given:
        raise DataError(f"data= is a dict with keys {sorted(map(str, given))}; it needs 'train' "
                        "and may have 'val' and 'test'")
    splits: dict[str, ImageSet] = {}
    parts = []
    for split in SPLITS:
        if given.get(split) is None:
            continue
        value = given[split]
        where = f"data= {split}" if isinstance(data, dict) else "data="
        if _is_pair(value):
            images = _from_arrays(value[0], value[1], cfg, where)
        elif isinstance(value, (str, Path)) or not hasattr(value, "__getitem__"):
            raise DataError(f"{where} is a {type(value).__name__}; give {ACCEPTED}")
        else:
            images = _from_dataset(value, cfg, where)
        if len(images) == 0:
            raise DataError(f"{where} holds no images; give a dataset with at least one "
                            "(image, label) per class")
        splits[split] = images
        parts.append(f"{split}: {_describe(value)}, {len(images)} images")
    names = class_names(given["train"])
    labels = torch.cat([images.labels for images in splits.values()])
    if int(labels.min()) < 0:
        raise DataError(f"data= has label {int(labels.min())}; labels must be class indices "
                        "0..K-1")
    if names is None:
        names = [str(i) for i in range(int(labels.max()) + 1)]
    train, test = splits["train"], splits.get("test")
    if test is None:
        train, test = split_off_test(train, cfg)
    shape = "x".join(str(side) for side in train.shape)
    description = f"{'; '.join(parts)}; images {shape}, {len(names)} classes"
    return RawData(train, test, names, False, splits.get("val")), description


def use_data(cfg, data):
    """(cfg, None) when `data` is None; otherwise the config saying `dataset: python` with
    the data's description, and the converted data."""
    if data is None:
        return cfg, None
    raw, description = convert(data, cfg.data)
    changed = cfg.model_copy(deep=True)
    changed.data.dataset = "python"
    changed.data.root = None
    changed.data.description = description
    return changed, raw


def data_again(cfg, data, api: str):
    """The converted `data` for a run that trained on data given in Python (`api` is
    cnnlab.resume or cnnlab.evaluate_run), checked against the description its config saved;
    None for other runs."""
    if cfg.data.dataset != "python":
        if data is not None:
            raise DataError(f"this run trained on the {cfg.data.dataset} data of its config, "
                            f"which {api} reads again; call it without data=")
        return None
    if data is None:
        raise DataError(f"this run trained on data given in Python ({cfg.data.description}), "
                        f"which no file holds; call {api}(run_dir, data=...) from Python with "
                        "the same data")
    raw, description = convert(data, cfg.data)
    if description != cfg.data.description:
        raise DataError(f"data= is {description}, but the run trained on "
                        f"{cfg.data.description}; pass the data the run trained on")
    return raw
