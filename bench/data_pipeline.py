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


def torchvision_rate(images, labels, batch: int, batches: int, workers: int
                     ) -> tuple[float, float]:
    import torchvision.transforms as T

    transform = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                           T.Normalize(MEAN, STD)])
    loader = DataLoader(PerSample(images, labels, transform), batch_size=batch, shuffle=True,
                        num_workers=workers, drop_last=True, persistent_workers=False)
    iterator = iter(loader)
    # Drain what the workers prefetched while starting (2 batches each), so the timed batches
    # are made while we wait for them: the steady-state rate.
    for _ in range(1 + 2 * workers):
        next(iterator)
    return timed(iterator, batch, batches)


def timed(iterator, batch: int, batches: int) -> tuple[float, float]:
    """(images/s of wall time, images per CPU-second of this process, all its threads)."""
    started, cpu_started = time.perf_counter(), time.process_time()
    for _ in range(batches):
        next(iterator)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return batch * batches / wall, batch * batches / max(cpu, 1e-9)


def cnnlab_rate(images, labels, batch: int, batches: int) -> tuple[float, float]:
    cfg = cnnlab.load_config({"data": {"augment": {"crop_padding": 4, "flip": True}}})
    normalizer = Normalizer(MEAN, STD, torch.device("cpu"), channels_last=True)
    stream = TrainBatches(ImageSet(labels, images), batch, seed=0, device=torch.device("cpu"),
                          augmenter=Augmenter(cfg.data.augment, normalizer))
    iterator = stream.epoch(0)
    next(iterator)
    return timed(iterator, batch, batches)


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
    ours, ours_cpu = cnnlab_rate(images, labels, args.batch, args.batches)
    print(f"data: {source}, batch {args.batch}, {args.batches} batches timed")
    print(f"cnnlab batched augmentation      {ours:10.0f} images/s "
          f"({ours_cpu:.0f} per CPU-second of all its threads)")
    for workers in (0, 2):
        theirs, theirs_cpu = torchvision_rate(images, labels, args.batch,
                                              max(8, args.batches // 2), workers)
        cpu = (f"; per CPU-second {theirs_cpu:.0f}, ratio {ours_cpu / theirs_cpu:.1f}x"
               if workers == 0 else "; its workers are other processes, busy on the cores "
               "that training needs")
        print(f"torchvision DataLoader, {workers} workers {theirs:10.0f} images/s   ratio "
              f"{ours / theirs:.1f}x (target >= 8x){cpu}")
    if not args.skip_cache:
        cache_startup()


if __name__ == "__main__":
    main()
