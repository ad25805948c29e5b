"""Which kind of layer a module is, as inspect, diagnostics and their plots group them."""

from __future__ import annotations

from torch import nn

from cnnlab.components.activations import Activation
from cnnlab.components.init import WEIGHT_TYPES
from cnnlab.components.norms import is_norm
from cnnlab.components.torch_activations import is_torch_activation


def layer_kind(module: nn.Module) -> str | None:
    """'activation' (cnnlab's or torch's), 'norm', 'linear' or 'conv'; None for containers and
    everything else."""
    if isinstance(module, Activation) or is_torch_activation(module):
        return "activation"
    if is_norm(module):
        return "norm"
    if isinstance(module, nn.Linear):
        return "linear"
    if isinstance(module, WEIGHT_TYPES):
        return "conv"
    return None


def kinded_modules(model: nn.Module) -> list[tuple[str, str, nn.Module]]:
    """(module name, kind, module) of every layer with a kind, in registration order. The
    function inside an activation module (cnnlab's `Activation` wraps an `nn.ReLU`) is part of
    that layer, not a second one."""
    inside: set[int] = set()
    layers = []
    for name, module in model.named_modules():
        if id(module) in inside:
            continue
        kind = layer_kind(module)
        if kind is None:
            continue
        layers.append((name, kind, module))
        if kind == "activation":
            inside.update(id(m) for m in module.modules() if m is not module)
    return layers
