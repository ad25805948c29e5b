"""Regularizers and averaging that act on batches or weights during training."""

import copy

from torch import nn


def frozen_copy(model: nn.Module) -> nn.Module:
    """A copy of `model` for holding averaged weights: in eval mode, with no gradients."""
    average = copy.deepcopy(model).eval()
    for param in average.parameters():
        param.requires_grad_(False)
    return average
