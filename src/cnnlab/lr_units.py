"""The one conversion between `optim.lr` (config units) and the LR the optimizer uses.

With `optim.scale_lr: linear` or `sqrt`, `optim.lr` is the LR for `optim.base_batch_size` images
per optimizer step (Goyal et al. 2017; Hoffer et al. 2017), and the optimizer uses it scaled to
the images one step really averages over: `data.batch_size x train.accumulate`. The optimizer,
the schedule, the LR finder and `lr-find --apply` all convert here, so a suggestion written back
into a config is never scaled twice.

With `optim.convention: decoupled` (SGD only) `optim.lr` and `optim.weight_decay` are given as
airbench gives them (Jordan 2024, airbench94.py): per 1024 examples, with the step size made
independent of the momentum and the weight decay independent of the LR. airbench sums its loss
over a batch of B images and sets torch SGD to lr/K and weight decay (wd*B/K)/(lr/K) with
K = 1024 (1 + 1/(1 - momentum)). cnnlab's loss is the batch mean (its gradient is the sum's
divided by B), so the same update needs, at B images per optimizer step,

    torch lr           = optim.lr * B / K
    torch weight_decay = optim.weight_decay / (optim.lr * lr_mult)

and then each step shrinks the weights by torch lr x torch weight_decay = optim.weight_decay *
B / K (times the schedule's factor): per example a fixed amount whatever the LR, the batch size
or a group's LR multiplier. K uses the configured `optim.momentum` (a cyclic momentum schedule
does not change it). Suggestions of the LR finder stay in `optim.lr` units through `scale`; its
sweep keeps the weight decay that the configured `optim.lr` gives.
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


# airbench's unit: hyperparameters are per this many examples.
DECOUPLED_EXAMPLES = 1024


def kilostep_scale(momentum: float) -> float:
    """airbench's K: 1024 examples times the factor (1 + 1/(1 - momentum)) by which, for a
    gradient constant in time, Nesterov momentum enlarges the step."""
    return DECOUPLED_EXAMPLES * (1.0 + 1.0 / (1.0 - momentum))


def decoupled(options: OptimizerBase) -> bool:
    return getattr(options, "convention", "torch") == "decoupled"


def lr_scale(options: OptimizerBase, images: int) -> float:
    """The factor from `optim.lr` to the optimizer's LR at `images` images per step."""
    if decoupled(options):
        return images / kilostep_scale(options.momentum)
    ratio = images / options.base_batch_size
    if options.scale_lr == "linear":
        return ratio
    if options.scale_lr == "sqrt":
        return math.sqrt(ratio)
    return 1.0


def conversion_name(options: OptimizerBase) -> str:
    """What turns `optim.lr` into the optimizer's LR, as messages name it."""
    return "optim.convention decoupled" if decoupled(options) else \
        f"optim.scale_lr {options.scale_lr}"


def torch_weight_decay(options: OptimizerBase, weight_decay: float, lr_mult: float) -> float:
    """The optimizer's weight decay for a group with `weight_decay` in config units and LR
    multiplier `lr_mult`: the same number by default; with the decoupled convention the value
    whose product with the group's LR is `weight_decay * images / K` at any `optim.lr`."""
    if not decoupled(options):
        return weight_decay
    if lr_mult == 0.0 or weight_decay == 0.0:
        return 0.0  # a group at LR 0 never moves, so its decay cannot act either
    return weight_decay / (options.lr * lr_mult)


@dataclass(frozen=True)
class LrUnits:
    """One run's learning rate in both units: `config_lr` as `optim.lr` says it, and
    `optimizer_lr`, what the optimizer uses before the schedule and per-group multipliers."""

    config_lr: float
    images_per_step: int
    scale: float  # optimizer_lr / config_lr

    @classmethod
    def from_options(cls, options: OptimizerBase, images: int) -> LrUnits:
        """From the optimizer options (`lr`, `scale_lr`, `base_batch_size`, `convention`) at
        `images` per step."""
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
