"""The one conversion between `optim.lr` (config units) and the LR the optimizer uses.

With `optim.scale_lr: linear` or `sqrt`, `optim.lr` is the LR for `optim.base_batch_size` images
per optimizer step (Goyal et al. 2017; Hoffer et al. 2017), and the optimizer uses it scaled to
the images one step really averages over: `data.batch_size x train.accumulate`. The optimizer,
the schedule, the LR finder and `lr-find --apply` all convert here, so a suggestion written back
into a config is never scaled twice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # config imports the optimizers, which import this module
    from cnnlab.components.optimizers import OptimizerBase
    from cnnlab.config import Config


def images_per_step(cfg: Config) -> int:
    """Images whose gradients one optimizer step averages (the global batch in DDP)."""
    return cfg.data.batch_size * cfg.train.accumulate


def lr_scale(options: OptimizerBase, images: int) -> float:
    """The factor from `optim.lr` to the optimizer's LR at `images` images per step."""
    ratio = images / options.base_batch_size
    if options.scale_lr == "linear":
        return ratio
    if options.scale_lr == "sqrt":
        return math.sqrt(ratio)
    return 1.0


@dataclass(frozen=True)
class LrUnits:
    """One run's learning rate in both units: `config_lr` as `optim.lr` says it, and
    `optimizer_lr`, what the optimizer uses before the schedule and per-group multipliers."""

    config_lr: float
    images_per_step: int
    scale: float  # optimizer_lr / config_lr

    @classmethod
    def from_options(cls, options: OptimizerBase, images: int) -> LrUnits:
        """From the optimizer options (`lr`, `scale_lr`, `base_batch_size`) at `images` per step."""
        return cls(config_lr=options.lr, images_per_step=images, scale=lr_scale(options, images))

    @classmethod
    def from_config(cls, cfg: Config) -> LrUnits:
        return cls.from_options(cfg.optim, images_per_step(cfg))

    @property
    def optimizer_lr(self) -> float:
        return self.config_lr * self.scale

    def to_config_units(self, lr: float) -> float:
        """The `optim.lr` that makes the optimizer use `lr`: the inverse of `optimizer_lr`."""
        return lr / self.scale


def optimizer_lr(cfg: Config) -> float:
    """The LR the optimizer uses (before schedule and per-group multipliers) for `optim.lr`."""
    return LrUnits.from_config(cfg).optimizer_lr


def config_lr(cfg: Config, lr: float) -> float:
    """The `optim.lr` that makes the optimizer use `lr`: the inverse of `optimizer_lr`."""
    return LrUnits.from_config(cfg).to_config_units(lr)
