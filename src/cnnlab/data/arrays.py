"""Image sets as uint8 tensors, and the seeded splits and statistics computed on them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from cnnlab.errors import DataError
from cnnlab.seeding import generator


@dataclass
class ImageSet:
    """Images (uint8, N x C x H x W) with int64 labels.

    A streamed set has `images=None` and decodes `files` on demand; everything else is the same.
    """

    labels: torch.Tensor
    images: torch.Tensor | None = None
    files: list[Path] | None = None
    shape: tuple[int, int, int] = (0, 0, 0)  # C, H, W
    decode_options: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.images is not None:
            self.shape = tuple(self.images.shape[1:])

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def in_memory(self) -> bool:
        return self.images is not None

    def subset(self, indices: torch.Tensor) -> ImageSet:
        indices = indices.to(torch.long)
        files = [self.files[i] for i in indices.tolist()] if self.files is not None else None
        images = self.images[indices] if self.images is not None else None
        return ImageSet(self.labels[indices], images, files, self.shape, self.decode_options)


def stratified_split(labels: torch.Tensor, fraction: float, seed: int, purpose: str
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """(kept, held-out) indices; each class contributes round(fraction * its count) to held-out."""
    if len(labels) == 0:
        empty = torch.zeros(0, dtype=torch.long)
        return empty, empty
    gen = generator(seed, purpose)
    kept, held = [], []
    for cls in torch.unique(labels).tolist():
        members = torch.nonzero(labels == cls).flatten()
        members = members[torch.randperm(len(members), generator=gen)]
        count = int(round(fraction * len(members)))
        held.append(members[:count])
        kept.append(members[count:])
    return torch.sort(torch.cat(kept)).values, torch.sort(torch.cat(held)).values


def stratified_subset(labels: torch.Tensor, size: int, seed: int) -> torch.Tensor:
    """`size` indices, classes in proportion to their counts, seeded."""
    if size >= len(labels):
        return torch.arange(len(labels))
    _, chosen = stratified_split(labels, size / len(labels), seed, "subset")
    return chosen


def check_labels(labels: torch.Tensor, num_classes: int, where: str) -> None:
    if len(labels) == 0:
        return
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        bad = low if low < 0 else high
        raise DataError(
            f"{where} has label {bad}, outside [0, {num_classes}); labels must be class indices "
            f"0..{num_classes - 1} (set data.num_classes if some classes are missing from the data)"
        )


def channel_statistics(images: torch.Tensor, chunk: int = 4096) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images, on the [0, 1] scale, accumulated in float64."""
    channels = images.shape[1]
    total = torch.zeros(channels, dtype=torch.float64)
    squares = torch.zeros(channels, dtype=torch.float64)
    count = 0
    for start in range(0, len(images), chunk):
        block = images[start:start + chunk].to(torch.float64) / 255.0
        total += block.sum(dim=(0, 2, 3))
        squares += (block * block).sum(dim=(0, 2, 3))
        count += block.shape[0] * block.shape[2] * block.shape[3]
    mean = total / count
    std = torch.sqrt(torch.clamp(squares / count - mean * mean, min=1e-12))
    return [round(float(m), 6) for m in mean], [round(float(s), 6) for s in std]
