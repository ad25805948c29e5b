"""Augmentation of whole batches on the training device.

Random crops with padding and flips run on the uint8 batch with two gathers and one `where`, and
cutout masks the normalized batch, so no image is touched one at a time in Python. Random draws
come from a CPU generator seeded per (seed, epoch, step), which makes every batch a pure function
of where it is in training: a resumed run sees exactly the batches it would have seen.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop(images: torch.Tensor, padding: int, gen: torch.Generator,
                mode: str = "zeros") -> torch.Tensor:
    """Pad by `padding` on every side and crop back at a random offset per image."""
    if padding <= 0:
        return images
    n, c, h, w = images.shape
    if mode == "reflect":
        padded = F.pad(images.float(), (padding,) * 4, mode="reflect").to(images.dtype)
    else:
        padded = F.pad(images, (padding,) * 4)
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=gen).to(images.device)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=gen).to(images.device)
    rows = (dy[:, None] + torch.arange(h, device=images.device))[:, None, :, None]
    padded = torch.gather(padded, 2, rows.expand(n, c, h, w + 2 * padding))
    cols = (dx[:, None] + torch.arange(w, device=images.device))[:, None, None, :]
    return torch.gather(padded, 3, cols.expand(n, c, h, w))


def random_flip(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Mirror a random half of the batch left-right."""
    flip = (torch.rand(images.shape[0], generator=gen) < 0.5).to(images.device)
    return torch.where(flip[:, None, None, None], images.flip(3), images)


def cutout(x: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    """DeVries & Taylor 2017: zero a size x size square at a random centre (may overhang)."""
    if size <= 0:
        return x
    n, _, h, w = x.shape
    cy = torch.randint(0, h, (n,), generator=gen).to(x.device)
    cx = torch.randint(0, w, (n,), generator=gen).to(x.device)
    half_low, half_high = size // 2, size - size // 2
    ys = torch.arange(h, device=x.device)[None, :, None]
    xs = torch.arange(w, device=x.device)[None, None, :]
    inside = ((ys >= (cy - half_low)[:, None, None]) & (ys < (cy + half_high)[:, None, None])
              & (xs >= (cx - half_low)[:, None, None]) & (xs < (cx + half_high)[:, None, None]))
    return x.masked_fill(inside[:, None], 0.0)


class Normalizer:
    """uint8 -> float, (x/255 - mean) / std per channel, in the model's memory format."""

    def __init__(self, mean: list[float], std: list[float], device: torch.device,
                 channels_last: bool):
        mean_t = torch.tensor(mean, dtype=torch.float32, device=device)[None, :, None, None]
        std_t = torch.tensor(std, dtype=torch.float32, device=device)[None, :, None, None]
        self.scale = 1.0 / (255.0 * std_t)
        self.shift = -mean_t / std_t
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = images.to(torch.float32, memory_format=self.memory_format)
        return x.mul_(self.scale).add_(self.shift)


class Augmenter:
    def __init__(self, spec, normalizer: Normalizer):
        self.spec = spec
        self.normalize = normalizer

    @property
    def active(self) -> bool:
        s = self.spec
        return s.crop_padding > 0 or s.flip or s.cutout > 0

    def __call__(self, images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        s = self.spec
        images = random_crop(images, s.crop_padding, gen, s.crop_mode)
        if s.flip:
            images = random_flip(images, gen)
        x = self.normalize(images)
        return cutout(x, s.cutout, gen)
