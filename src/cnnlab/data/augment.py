"""Augmentation of whole batches on the training device.

Random crops with padding and flips run on the uint8 batch with two gathers and one `where`, and
cutout masks the normalized batch, so no image is touched one at a time in Python. Random draws
come from a CPU generator seeded per (seed, epoch, step), which makes every batch a pure function
of where it is in training: a resumed run sees exactly the batches it would have seen.

A process of a distributed run augments only its rows of the global batch: `part=(offset,
total)` says the images are rows offset.. of a batch of `total`, and every random draw is made
for all `total` rows and then sliced, so each row is augmented exactly as in a single process.

Alternating flip (`flip: alternate`) decides per dataset image, not per batch row: an image's
first-epoch coin is a hash of (seed, its index in the training set), and in every later epoch
the image is mirrored iff that coin XOR the epoch's parity. It needs the batch's `BatchOrigin`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cnnlab.seeding import derive_seed

# (offset, total): the images are rows offset.. of a global batch of `total` (None: all of it).
Part = tuple[int, int] | None
MASK32 = 0xFFFFFFFF


@dataclass(frozen=True)
class BatchOrigin:
    """Where a training batch's images come from: the run's seed, the epoch (0-based) and each
    row's index in the training set."""

    seed: int
    epoch: int
    indices: torch.Tensor


def _draw(sample, n: int, part: Part) -> torch.Tensor:
    """`sample(count)` draws one value per row of the global batch; these are this process's
    `n` rows of them."""
    if part is None:
        return sample(n)
    offset, total = part
    return sample(total)[offset:offset + n]


def random_crop(images: torch.Tensor, padding: int, gen: torch.Generator,
                mode: str = "zeros", part: Part = None) -> torch.Tensor:
    """Pad by `padding` on every side and crop back at a random offset per image."""
    if padding <= 0:
        return images
    n, c, h, w = images.shape
    if mode == "reflect":
        padded = F.pad(images.float(), (padding,) * 4, mode="reflect").to(images.dtype)
    else:
        padded = F.pad(images, (padding,) * 4)
    def offsets(count: int) -> torch.Tensor:
        return torch.randint(0, 2 * padding + 1, (count,), generator=gen)

    dy = _draw(offsets, n, part).to(images.device)
    dx = _draw(offsets, n, part).to(images.device)
    rows = (dy[:, None] + torch.arange(h, device=images.device))[:, None, :, None]
    padded = torch.gather(padded, 2, rows.expand(n, c, h, w + 2 * padding))
    cols = (dx[:, None] + torch.arange(w, device=images.device))[:, None, None, :]
    return torch.gather(padded, 3, cols.expand(n, c, h, w))


def random_flip(images: torch.Tensor, gen: torch.Generator, part: Part = None) -> torch.Tensor:
    """Mirror a random half of the batch left-right."""
    coins = _draw(lambda count: torch.rand(count, generator=gen), images.shape[0], part)
    flip = (coins < 0.5).to(images.device)
    return torch.where(flip[:, None, None, None], images.flip(3), images)


def mirror(images: torch.Tensor, which: torch.Tensor) -> torch.Tensor:
    """Mirror left-right the images whose entry of the boolean `which` is true."""
    return torch.where(which.to(images.device)[:, None, None, None], images.flip(3), images)


def image_coins(seed: int, indices: torch.Tensor) -> torch.Tensor:
    """One fixed coin per training image, a pure function of (seed, image index): a 32-bit
    integer hash (two multiply-xorshift rounds, which spread every input bit over every output
    bit) rather than a drawn table, so it costs nothing to keep in a checkpoint, needs no table
    the size of the dataset, and every process of a distributed run finds the same coin."""
    key = derive_seed(seed, "flip-coins") & MASK32
    x = (indices.to(torch.int64) & MASK32) ^ key
    for _ in range(2):
        # x < 2**32 and the multiplier < 2**27: the product stays inside int64.
        x = (((x >> 16) ^ x) * 0x45D9F3B) & MASK32
    x = (x >> 16) ^ x
    return (x & 1).bool()


def alternating_flips(origin: BatchOrigin) -> torch.Tensor:
    """airbench's alternating flip (Jordan 2024): epoch 0 mirrors a random half of the images
    (each image's own coin), every later epoch mirrors an image iff its coin XOR the epoch is
    odd, so any two consecutive epochs show every image once each way."""
    return image_coins(origin.seed, origin.indices) ^ bool(origin.epoch % 2)


def cutout(x: torch.Tensor, size: int, gen: torch.Generator, part: Part = None) -> torch.Tensor:
    """DeVries & Taylor 2017: zero a size x size square at a random centre (may overhang)."""
    if size <= 0:
        return x
    n, _, h, w = x.shape
    cy = _draw(lambda count: torch.randint(0, h, (count,), generator=gen), n, part).to(x.device)
    cx = _draw(lambda count: torch.randint(0, w, (count,), generator=gen), n, part).to(x.device)
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
        return s.crop_padding > 0 or s.flip is not False or s.cutout > 0

    def __call__(self, images: torch.Tensor, gen: torch.Generator, part: Part = None,
                 origin: BatchOrigin | None = None) -> torch.Tensor:
        """Augment one batch; `origin` is needed by `flip: alternate` only (its images'
        dataset indices, already this process's share when `part` is given)."""
        s = self.spec
        images = random_crop(images, s.crop_padding, gen, s.crop_mode, part)
        if s.flip == "alternate":
            if origin is None:
                raise ValueError("flip: alternate needs the batch's origin (its dataset indices)")
            images = mirror(images, alternating_flips(origin))
        elif s.flip is True:
            images = random_flip(images, gen, part)
        x = self.normalize(images)
        return cutout(x, s.cutout, gen, part)
