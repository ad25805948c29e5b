"""Batches for training and evaluation, from memory or streamed from files.

The training order of epoch e is a permutation seeded by (seed, e), and batch k of it is
augmented with a generator seeded by (seed, e, k). Nothing about the data pipeline has to be
saved in a checkpoint beyond (epoch, step), and seed k gives the same order in every run of an
ablation.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from cnnlab.data.arrays import ImageSet
from cnnlab.data.augment import Augmenter, BatchOrigin, Normalizer
from cnnlab.data.imagefolder import decode
from cnnlab.seeding import generator


class FileImages(Dataset):
    """Decodes images from their files on demand (for data that does not fit in memory)."""

    def __init__(self, images: ImageSet):
        self.files = [str(f) for f in images.files]
        self.labels = images.labels
        self.channels = images.decode_options["channels"]
        self.size = images.decode_options["size"]

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int):
        return torch.from_numpy(decode(self.files[index], self.channels, self.size)), \
            self.labels[index]


def _stream(images: ImageSet, batches: list[torch.Tensor], workers: int, gen: torch.Generator):
    # A DataLoader draws its workers' base seed when it starts iterating, from the global RNG
    # unless given a generator; that global draw would shift dropout's masks in a run resumed
    # mid-epoch (whose loader starts at another moment), so every loader gets its own stream.
    loader = DataLoader(FileImages(images), batch_sampler=[b.tolist() for b in batches],
                        num_workers=workers, persistent_workers=False, generator=gen)
    yield from loader


def batches_per_epoch(images: int, batch_size: int) -> int:
    """Full batches per epoch: the last partial batch is dropped, since a batch of one breaks
    batch norm and equal batch sizes keep the step count a simple function of the data size."""
    return max(1, images // min(batch_size, images))


class TrainBatches:
    """Seeded, augmented training batches. With `shard=(rank, size)` (one process of a
    distributed run) every process reads and augments only its slice of each global batch,
    with the random draws of the whole batch, so the slices add up to the single-process batch
    (DistributedSampler's division of the work, without changing what is trained on)."""

    def __init__(self, images: ImageSet, batch_size: int, seed: int, device: torch.device,
                 augmenter: Augmenter, workers: int = 0, shard: tuple[int, int] = (0, 1)):
        self.source = images
        self.batch_size = min(batch_size, len(images))
        self.seed = seed
        self.device = device
        self.augment = augmenter
        self.workers = workers
        self.rank, self.shards = shard
        if images.in_memory:
            self.images = images.images.to(device)
            self.labels = images.labels.to(device)

    @property
    def steps_per_epoch(self) -> int:
        return batches_per_epoch(len(self.source), self.batch_size)

    def order(self, epoch: int) -> torch.Tensor:
        return torch.randperm(len(self.source), generator=generator(self.seed, "order", epoch))

    def epoch(self, epoch: int, start_step: int = 0, order: torch.Tensor | None = None
              ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches `start_step`.. of `epoch`; `order` is the epoch's permutation if already known
        (a checkpoint keeps it)."""
        order = self.order(epoch) if order is None else order
        steps = range(start_step, self.steps_per_epoch)
        share = self.batch_size // self.shards
        part = (self.rank * share, self.batch_size) if self.shards > 1 else None
        batches = [order[k * self.batch_size:(k + 1) * self.batch_size] for k in steps]
        if part is not None:
            batches = [b[part[0]:part[0] + share] for b in batches]
        if self.source.in_memory:
            raw = ((self.images[b.to(self.device)], self.labels[b.to(self.device)])
                   for b in batches)
        else:
            raw = ((x.to(self.device, non_blocking=True), y.to(self.device))
                   for x, y in _stream(self.source, batches, self.workers,
                                       generator(self.seed, "loader", epoch)))
        for step, indices, (images, labels) in zip(steps, batches, raw):
            origin = BatchOrigin(self.seed, epoch, indices)
            yield self.augment(images, generator(self.seed, "augment", epoch, step), part,
                               origin), labels


def eval_batches(images: ImageSet, batch_size: int, device: torch.device, normalizer: Normalizer,
                 workers: int = 0, shard: tuple[int, int] = (0, 1)
                 ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Sequential batches; with `shard=(rank, size)` this process's share of them (the sums
    are then added up across processes)."""
    rank, shards = shard
    batches = [torch.arange(i, min(i + batch_size, len(images)))
               for i in range(0, len(images), batch_size)][rank::shards]
    if images.in_memory:
        for b in batches:
            yield normalizer(images.images[b].to(device)), images.labels[b].to(device)
    else:
        for x, y in _stream(images, batches, workers, generator(0, "eval-loader")):
            yield normalizer(x.to(device)), y.to(device)
