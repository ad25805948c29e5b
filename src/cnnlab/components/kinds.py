"""Which kind of layer a module is, as inspect, diagnostics and their plots group them."""

from __future__ import annotations

from torch import nn

from cnnlab.components.activations import Activation
from cnnlab.components.init import WEIGHT_TYPES
from cnnlab.components.norms import is_norm


def layer_kind(module: nn.Module) -> str | None:
    """'activation', 'norm', 'linear' or 'conv'; None for containers and everything else."""
    if isinstance(module, Activation):
        return "activation"
    if is_norm(module):
        return "norm"
    if isinstance(module, nn.Linear):
        return "linear"
    if isinstance(module, WEIGHT_TYPES):
        return "conv"
    return None
