"""The one conversion between `optim.lr` (config units) and the LR the optimizer uses.

With `optim.scale_lr: linear` or `sqrt`, `optim.lr` is the LR for `optim.base_batch_size` images
per optimizer step (Goyal et al. 2017; Hoffer et al. 2017), and the optimizer uses it scaled to
the images one step really averages over: `data.batch_size x train.accumulate`. The optimizer,
the schedule, the LR finder and `lr-find --apply` all convert here, so a suggestion written back
into a config is never scaled twice.
"""

from __future__ import annotations

import math


def images_per_step(cfg) -> int:
    """Images whose gradients one optimizer step averages (the global batch in DDP)."""
    return cfg.data.batch_size * cfg.train.accumulate


def lr_scale(options, images: int) -> float:
    """The factor from `optim.lr` to the optimizer's LR at `images` images per step."""
    ratio = images / options.base_batch_size
    if options.scale_lr == "linear":
        return ratio
    if options.scale_lr == "sqrt":
        return math.sqrt(ratio)
    return 1.0


def optimizer_lr(cfg) -> float:
    """The LR the optimizer uses (before schedule and per-group multipliers) for `optim.lr`."""
    return cfg.optim.lr * lr_scale(cfg.optim, images_per_step(cfg))


def config_lr(cfg, lr: float) -> float:
    """The `optim.lr` that makes the optimizer use `lr`: the inverse of `optimizer_lr`."""
    return lr / lr_scale(cfg.optim, images_per_step(cfg))
