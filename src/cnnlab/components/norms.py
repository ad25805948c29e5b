"""Normalization layers for convolutional blocks.

`layer` and `instance` are group norms with one group and with one group per channel: for
convolutions that is layer norm over (C, H, W) and instance norm over (H, W), with a learned
per-channel scale and shift as in their papers.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field
from torch import nn

from cnnlab.options import Options, entry_options, tagged_union
from cnnlab.registry import Registry


@dataclass(frozen=True)
class NormInfo:
    """What code needs to know about a norm besides its factory: nothing yet (is_norm tells a
    norm layer by its type)."""


NORMS: Registry[NormInfo] = Registry("norm", "norms", NormInfo)

# Public torch classes only: the private bases (`_BatchNorm`, `_InstanceNorm`) move between torch
# versions. The lazy variants subclass these, so isinstance covers them too.
NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.GroupNorm,
              nn.LayerNorm, nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)


class BatchNormOptions(Options):
    momentum: float = Field(0.1, gt=0.0, le=1.0)
    eps: float = Field(1e-5, gt=0.0)


class GroupNormOptions(Options):
    groups: int = Field(32, ge=1)
    eps: float = Field(1e-5, gt=0.0)


class EpsOptions(Options):
    eps: float = Field(1e-5, gt=0.0)


def largest_divisor_at_most(channels: int, limit: int) -> int:
    """Group norm needs groups dividing channels: use the largest divisor <= the configured count."""
    for groups in range(min(limit, channels), 0, -1):
        if channels % groups == 0:
            return groups
    return 1


@NORMS.register("batch", "batch normalization (Ioffe & Szegedy 2015): batch statistics, running "
                "averages at eval", BatchNormOptions)
def _batch(options: BatchNormOptions, channels: int) -> nn.Module:
    return nn.BatchNorm2d(channels, eps=options.eps, momentum=options.momentum)


@NORMS.register("group", "group normalization (Wu & He 2018): groups of channels, batch-size "
                "independent; groups shrinks to a divisor of the width", GroupNormOptions)
def _group(options: GroupNormOptions, channels: int) -> nn.Module:
    return nn.GroupNorm(largest_divisor_at_most(channels, options.groups), channels, eps=options.eps)


@NORMS.register("layer", "layer normalization (Ba et al. 2016) over channels and positions",
                EpsOptions)
def _layer(options: EpsOptions, channels: int) -> nn.Module:
    return nn.GroupNorm(1, channels, eps=options.eps)


@NORMS.register("instance", "instance normalization (Ulyanov et al. 2016): each channel of each "
                "image over its positions", EpsOptions)
def _instance(options: EpsOptions, channels: int) -> nn.Module:
    return nn.GroupNorm(channels, channels, eps=options.eps)


@NORMS.register("none", "no normalization")
def _none(options: None, channels: int) -> nn.Module:
    return nn.Identity()


def build_norm(spec, channels: int) -> nn.Module:
    entry = NORMS.get(spec.name)
    return entry.factory(entry_options(entry, spec), channels)


def is_norm(module: nn.Module) -> bool:
    return isinstance(module, NORM_TYPES)


NormSpec = tagged_union(NORMS)
