"""Mixup (Zhang et al. 2018) and CutMix (Yun et al. 2019) on whole batches, on the device.

Each mixes a batch with a shuffled copy of itself: mixup blends whole images with weight
lam ~ Beta(alpha, alpha); CutMix pastes a box covering 1 - lam of the image, then sets lam to the
box's exact area. The loss mixes the two targets with the same weight, which composes with label
smoothing. Draws come from a generator of their own, seeded per (seed, epoch, step), so turning
mixing off (alpha 0) leaves every other random draw, and the run, bit-identical.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass
class MixedBatch:
    images: torch.Tensor
    targets: torch.Tensor  # the original labels
    partners: torch.Tensor  # the labels mixed in
    lam: float  # weight of `targets`


def _beta(alpha: float, gen: torch.Generator) -> float:
    # torch.distributions cannot draw from a given generator; NumPy's Beta seeded from it can.
    seed = int(torch.randint(0, 2**62, (), generator=gen))
    return float(np.random.default_rng(seed).beta(alpha, alpha))


def mix(images: torch.Tensor, labels: torch.Tensor, spec, gen: torch.Generator
        ) -> MixedBatch | None:
    """Mix the batch as `spec` (train config) says, or return None to leave it alone."""
    use_mixup, use_cutmix = spec.mixup > 0, spec.cutmix > 0
    if not (use_mixup or use_cutmix):
        return None
    if float(torch.rand((), generator=gen)) >= spec.mix_prob:
        return None
    if use_mixup and use_cutmix:
        use_cutmix = float(torch.rand((), generator=gen)) < spec.mix_switch_prob
        use_mixup = not use_cutmix
    perm = torch.randperm(images.shape[0], generator=gen).to(images.device)
    partners = labels[perm]
    if use_mixup:
        lam = _beta(spec.mixup, gen)
        return MixedBatch(images * lam + images[perm] * (1.0 - lam), labels, partners, lam)
    lam = _beta(spec.cutmix, gen)
    height, width = images.shape[-2:]
    cut = (1.0 - lam) ** 0.5
    box_h, box_w = int(height * cut), int(width * cut)
    cy = int(torch.randint(0, height, (), generator=gen))
    cx = int(torch.randint(0, width, (), generator=gen))
    top, bottom = max(cy - box_h // 2, 0), min(cy + box_h - box_h // 2, height)
    left, right = max(cx - box_w // 2, 0), min(cx + box_w - box_w // 2, width)
    mixed = images.clone()
    mixed[..., top:bottom, left:right] = images[perm][..., top:bottom, left:right]
    lam = 1.0 - (bottom - top) * (right - left) / (height * width)
    return MixedBatch(mixed, labels, partners, lam)


def mixed_loss(logits: torch.Tensor, batch: MixedBatch, label_smoothing: float) -> torch.Tensor:
    return (batch.lam * F.cross_entropy(logits, batch.targets, label_smoothing=label_smoothing)
            + (1.0 - batch.lam) * F.cross_entropy(logits, batch.partners,
                                                  label_smoothing=label_smoothing))


def mixed_correct(logits: torch.Tensor, batch: MixedBatch) -> torch.Tensor:
    """Training accuracy against mixed labels: a prediction of either source counts by its
    weight, so an image that is 70% cat scores 0.7 for "cat"."""
    predicted = logits.argmax(1)
    return (batch.lam * (predicted == batch.targets).float()
            + (1.0 - batch.lam) * (predicted == batch.partners).float()).sum()
