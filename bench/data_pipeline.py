"""cnnlab's in-memory batched augmentation against torchvision's DataLoader with per-sample
transforms, on CIFAR-10 images; then the image-folder cache, first start against second.

    python bench/data_pipeline.py [--batches 40] [--batch 512] [--synthetic] [--skip-cache]

Both pipelines produce normalized, randomly cropped (padding 4) and flipped float batches. The
DataLoader side holds the same uint8 images as HWC arrays and converts each to PIL, as
torchvision.datasets.CIFAR10 does, then RandomCrop, RandomHorizontalFlip, ToTensor, Normalize.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

import cnnlab
from benchlib import SHARED_CIFAR, cifar_images, header
from cnnlab.data.augment import Augmenter, Normalizer
from cnnlab.data.loaders import TrainBatches
from cnnlab.data.arrays import ImageSet

MEAN, STD = [0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]


class PerSample(Dataset):
    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform):
        self.images = images.permute(0, 2, 3, 1).contiguous().numpy()
        self.labels = labels.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        return self.transform(Image.fromarray(self.images[index])), self.labels[index]


def torchvision_rate(images, labels, batch: int, batches: int, workers: int) -> float:
    import torchvision.transforms as T

    transform = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                           T.Normalize(MEAN, STD)])
    loader = DataLoader(PerSample(images, labels, transform), batch_size=batch, shuffle=True,
                        num_workers=workers, drop_last=True, persistent_workers=False)
    iterator = iter(loader)
    next(iterator)  # workers started, first batch served
    started = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batch * batches / (time.perf_counter() - started)


def cnnlab_rate(images, labels, batch: int, batches: int) -> float:
    cfg = cnnlab.load_config({"data": {"augment": {"crop_padding": 4, "flip": True}}})
    normalizer = Normalizer(MEAN, STD, torch.device("cpu"), channels_last=True)
    stream = TrainBatches(ImageSet(labels, images), batch, seed=0, device=torch.device("cpu"),
                          augmenter=Augmenter(cfg.data.augment, normalizer))
    iterator = stream.epoch(0)
    next(iterator)
    started = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batch * batches / (time.perf_counter() - started)


def cache_startup() -> None:
    from cnnlab.data import load_data

    if not SHARED_CIFAR.exists():
        print("image-folder cache: skipped, needs ../shared/datasets/cifar10-jpeg.tar.gz")
        return
    cache = tempfile.mkdtemp(prefix="bench-cache-")
    cfg = cnnlab.load_config({"data": {"dataset": "imagefolder", "root": str(SHARED_CIFAR),
                                       "cache_dir": cache, "val_split": 0}})
    times = []
    for _ in range(2):
        started = time.perf_counter()
        load_data(cfg.data)
        times.append(time.perf_counter() - started)
    shutil.rmtree(cache, ignore_errors=True)
    print(f"image-folder cache (60,000 CIFAR-10 JPEGs from the archive): first start "
          f"{times[0]:.1f} s (extract + decode), second {times[1]:.1f} s; ratio "
          f"{times[0] / times[1]:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--synthetic", action="store_true")
    parser.add_argument("--skip-cache", action="store_true")
    args = parser.parse_args()
    header("data pipeline: batched augmentation vs per-sample DataLoader")
    images, labels, source = cifar_images(None, args.synthetic)
    ours = cnnlab_rate(images, labels, args.batch, args.batches)
    print(f"data: {source}, batch {args.batch}, {args.batches} batches timed")
    print(f"cnnlab batched augmentation      {ours:10.0f} images/s")
    for workers in (0, 2):
        theirs = torchvision_rate(images, labels, args.batch, max(4, args.batches // 8), workers)
        print(f"torchvision DataLoader, {workers} workers {theirs:10.0f} images/s   ratio "
              f"{ours / theirs:.1f}x (target >= 8x)")
    if not args.skip_cache:
        cache_startup()


if __name__ == "__main__":
    main()
