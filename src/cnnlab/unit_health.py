"""Dead units and saturated inputs of an activation layer: the one definition that `cnnlab
inspect` (at init) and the training diagnostics (during training) both report and judge.

Which single inputs are "off" or "saturated" is each activation's own, read from its derivative
(`off_mask`, `saturated_mask` of its profile; see `cnnlab.components.activations`), for cnnlab's
`Activation` and torch's own activation modules alike (`components.torch_activations`). This module says
how those masks become a layer's fractions and when a fraction counts as trouble:

- a *unit* is a channel (dim 1 of the activation's input: a conv channel or a linear feature),
  holding every sample and position of the batch; it is *dead* when it is off for all of them,
  so `dead_fraction` is the share of such units;
- `saturated_fraction` is the share of single inputs (not units) in the flat region.

Both return 0-d tensors on the input's device, so the training hooks stay free of host syncs;
the caller decides which images to pass (inspect: its whole batch, diagnostics: the first
`SAMPLE_IMAGES`).
"""

from __future__ import annotations

import torch

from torch import nn

from cnnlab.components.activations import off_mask, saturated_mask
from cnnlab.components.torch_activations import profile_of

# Over half of an activation layer's units dead, or of its inputs saturated, is called so.
DEAD_LIMIT = 0.5
SATURATED_LIMIT = 0.5


def channel_units(x: torch.Tensor) -> torch.Tensor:
    """The activation's input as one row per unit (channel): (channels, samples x positions);
    a 1-d input is a single unit."""
    if x.dim() > 1:
        return x.transpose(0, 1).reshape(x.shape[1], -1)
    return x[None]


def dead_fraction(activation: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Share of units whose input lies in the activation's low flat region for every sample and
    position of `x` (for relu: channels that output zero for the whole batch)."""
    return off_mask(profile_of(activation), channel_units(x)).all(dim=1).float().mean()


def saturated_fraction(activation: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Share of the single inputs in `x` where the activation's derivative is below 1e-2."""
    return saturated_mask(profile_of(activation), x).float().mean()


def is_dead(fraction: float) -> bool:
    """Whether a layer with this `dead_fraction` is called dead (NaN: not)."""
    return bool(fraction > DEAD_LIMIT)


def is_saturated(fraction: float) -> bool:
    """Whether a layer with this `saturated_fraction` is called saturated (NaN: not)."""
    return bool(fraction > SATURATED_LIMIT)
