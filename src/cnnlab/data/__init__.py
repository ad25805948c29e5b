"""From `data:` config to training, validation and test images plus what the model needs to know."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cnnlab.data.arrays import ImageSet, channel_statistics, check_labels, stratified_split, \
    stratified_subset
from cnnlab.data.sources import DATASETS, RawData
from cnnlab.errors import DataError
from cnnlab.seeding import generator


# The smallest image side accepted: a 3x3 convolution and one 2x2 pooling still fit.
MIN_IMAGE_SIDE = 4


@dataclass
class DataBundle:
    train: ImageSet
    val: ImageSet
    test: ImageSet
    classes: list[str]
    mean: list[float]
    std: list[float]
    val_is_test: bool
    cache_hit: bool = False

    @property
    def in_channels(self) -> int:
        return self.train.shape[0]

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.train.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def convert_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """Grey -> RGB by repetition, RGB -> grey by ITU-R 601 luma; other counts are errors."""
    have = images.shape[1]
    if have == channels:
        return images
    if have == 1 and channels == 3:
        return images.repeat(1, 3, 1, 1)
    if have == 3 and channels == 1:
        weights = torch.tensor([0.299, 0.587, 0.114])[None, :, None, None]
        return (images.float() * weights).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
    raise DataError(f"cannot convert {have}-channel images to {channels} channels; set "
                    "data.channels to auto")


def resize(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(images.shape[2:]) == tuple(size):
        return images
    resized = F.interpolate(images.float(), size=size, mode="bilinear", align_corners=False,
                            antialias=True)
    return resized.round().clamp(0, 255).to(torch.uint8)


def _conform(images: ImageSet, cfg) -> ImageSet:
    """Apply data.channels and data.image_size to an in-memory set."""
    if not images.in_memory:
        return images
    pixels = images.images
    if cfg.channels != "auto":
        pixels = convert_channels(pixels, int(cfg.channels))
    if cfg.image_size is not None:
        size = (cfg.image_size,) * 2 if isinstance(cfg.image_size, int) else tuple(cfg.image_size)
        pixels = resize(pixels, size)
    return ImageSet(images.labels, pixels)


def _statistics_sample(images: ImageSet, limit: int = 5000) -> torch.Tensor:
    if images.in_memory:
        return images.images
    from cnnlab.data.loaders import FileImages

    order = torch.randperm(len(images), generator=generator(0, "statistics"))[:limit]
    files = FileImages(images)
    return torch.stack([files[i][0] for i in order.tolist()])


def _check_two_classes(train: ImageSet, classes: list[str], cfg) -> None:
    """One class trains to accuracy 1.0 and learns nothing: refuse it before training."""
    present = sorted(set(train.labels.tolist()))
    if len(classes) >= 2 and len(present) >= 2:
        return
    where = f"data.root {cfg.root}" if cfg.root else f"the {cfg.dataset} data"
    shown = [classes[i] for i in present if i < len(classes)] or classes
    fix = ("add a sub-folder of images for each other class" if cfg.dataset == "imagefolder"
           else "add images of at least one other class")
    raise DataError(f"{where} has {len(present)} class ({', '.join(shown)}) in its training "
                    f"images; a classifier needs at least two classes, so {fix}")


def load_data(cfg, raw: RawData | None = None) -> DataBundle:
    """Load, split and check the configured data (or `raw`, data given in Python and already
    converted); normalization statistics come from the training split unless the config gives
    them."""
    raw = raw or DATASETS.get(cfg.dataset).factory(cfg)
    train, test = _conform(raw.train, cfg), _conform(raw.test, cfg)
    given_val = _conform(raw.val, cfg) if raw.val is not None else None
    classes = raw.classes
    if cfg.num_classes is not None:
        classes = classes[:cfg.num_classes] + [str(i) for i in range(len(classes),
                                                                       cfg.num_classes)]
    num_classes = len(classes)
    if len(train) == 0:
        raise DataError(f"the {cfg.dataset} training split is empty; give data with images in "
                        "it")
    check_labels(train.labels, num_classes, f"the {cfg.dataset} training split")
    check_labels(test.labels, num_classes, f"the {cfg.dataset} test split")
    if given_val is not None:
        check_labels(given_val.labels, num_classes, f"the {cfg.dataset} validation split")
    if min(train.shape[1:]) < MIN_IMAGE_SIDE:
        raise DataError(f"the {cfg.dataset} images are {train.shape[2]}x{train.shape[1]} pixels; "
                        f"a convolutional network needs at least {MIN_IMAGE_SIDE}x"
                        f"{MIN_IMAGE_SIDE} (set data.image_size to enlarge them)")
    _check_two_classes(train, classes, cfg)
    for name, images in (("test", test), ("validation", given_val)):
        if images is not None and images.shape != train.shape:
            raise DataError(f"{cfg.dataset}: {name} images are {images.shape} but training "
                            f"images are {train.shape} (C, H, W); set data.image_size to "
                            "resize both")

    if cfg.train_subset is not None:
        if cfg.train_subset < num_classes:
            raise DataError(f"data.train_subset={cfg.train_subset} is fewer images than the "
                            f"{num_classes} classes, so some classes would have none; use at "
                            f"least {num_classes}")
        train = train.subset(stratified_subset(train.labels, cfg.train_subset, cfg.split_seed))
    if given_val is not None:
        val = given_val  # the data brought its own validation split
    elif cfg.val_split > 0:
        kept, held = stratified_split(train.labels, cfg.val_split, cfg.split_seed, "val-split")
        if len(held) == 0 or len(kept) == 0:
            raise DataError(f"data.val_split={cfg.val_split} leaves no validation or no training "
                            f"images out of {len(train)}; use a larger value or 0 (validate on "
                            "the test split)")
        train, val = train.subset(kept), train.subset(held)
    else:
        val = test

    if cfg.normalize == "none":
        mean, std = [0.0] * train.shape[0], [1.0] * train.shape[0]
    elif cfg.normalize == "auto":
        mean, std = channel_statistics(_statistics_sample(train))
    else:
        mean, std = list(cfg.normalize.mean), list(cfg.normalize.std)
        if len(mean) != train.shape[0] or len(std) != train.shape[0]:
            raise DataError(f"data.normalize gives {len(mean)} means and {len(std)} stds but the "
                            f"images have {train.shape[0]} channels; give one per channel")
    return DataBundle(train, val, test, classes, mean, std,
                      given_val is None and cfg.val_split == 0, raw.cache_hit)
