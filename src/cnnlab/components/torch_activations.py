"""PyTorch's own activation modules and functional calls, under cnnlab's activation names.

A model cnnlab did not build uses `nn.ReLU`, `nn.GELU(approximate="tanh")` or `F.leaky_relu(x,
0.2)` rather than cnnlab's `Activation`. This module names each of them as a registry entry
with its options (`("leaky_relu", {"negative_slope": 0.2})`), so that their init gain and their
dead/saturated definitions are the registry's (see `activations.py`), computed the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from pydantic import ValidationError
from torch import nn

from cnnlab.components.activations import (
    ACTIVATIONS, Activation, ActivationProfile, _options_key, _profile, activation_gain)

# (registry name, options) for one activation, e.g. ("gelu", {"approximate": "tanh"}).
Named = tuple[str, dict]

# torch's activation modules: class -> its registry name and options read from the instance.
MODULE_NAMES: dict[type[nn.Module], Callable[[nn.Module], Named]] = {
    nn.ReLU: lambda m: ("relu", {}),
    nn.ReLU6: lambda m: ("relu6", {}),
    nn.LeakyReLU: lambda m: ("leaky_relu", {"negative_slope": float(m.negative_slope)}),
    nn.PReLU: lambda m: ("prelu", {"init": float(m.weight.detach().float().mean()),
                                   "per_channel": m.num_parameters > 1}),
    nn.ELU: lambda m: ("elu", {"alpha": float(m.alpha)}),
    nn.CELU: lambda m: ("celu", {"alpha": float(m.alpha)}),
    nn.SELU: lambda m: ("selu", {}),
    nn.GELU: lambda m: ("gelu", {"approximate": m.approximate}),
    nn.SiLU: lambda m: ("silu", {}),
    nn.Mish: lambda m: ("mish", {}),
    nn.Hardswish: lambda m: ("hardswish", {}),
    nn.Hardsigmoid: lambda m: ("hard_sigmoid", {}),
    nn.Sigmoid: lambda m: ("sigmoid", {}),
    nn.Tanh: lambda m: ("tanh", {}),
    nn.Softplus: lambda m: ("softplus", {"beta": float(m.beta)}),
}

# Functional activations by the function's name (F.relu, torch.relu, Tensor.relu and their
# in-place forms share one), with the options read from the call's arguments.
FUNCTION_NAMES: dict[str, Callable[[tuple, dict], Named]] = {
    "relu": lambda a, k: ("relu", {}),
    "relu6": lambda a, k: ("relu6", {}),
    "leaky_relu": lambda a, k: ("leaky_relu", {"negative_slope": float(
        k.get("negative_slope", a[1] if len(a) > 1 else 0.01))}),
    "elu": lambda a, k: ("elu", {"alpha": float(k.get("alpha", a[1] if len(a) > 1 else 1.0))}),
    "celu": lambda a, k: ("celu", {"alpha": float(k.get("alpha", a[1] if len(a) > 1 else 1.0))}),
    "selu": lambda a, k: ("selu", {}),
    "gelu": lambda a, k: ("gelu", {"approximate": k.get("approximate", "none")}),
    "silu": lambda a, k: ("silu", {}),
    "mish": lambda a, k: ("mish", {}),
    "hardswish": lambda a, k: ("hardswish", {}),
    "hardsigmoid": lambda a, k: ("hard_sigmoid", {}),
    "sigmoid": lambda a, k: ("sigmoid", {}),
    "tanh": lambda a, k: ("tanh", {}),
    "softplus": lambda a, k: ("softplus", {"beta": float(k.get("beta", a[1] if len(a) > 1
                                                                 else 1.0))}),
}


def checked(named: Named) -> Named | None:
    """`named` when the registry accepts its options; None otherwise (a LeakyReLU with a
    negative slope is not an activation cnnlab has a gain or a dead-unit definition for)."""
    name, options = named
    entry = ACTIVATIONS.get(name)
    try:
        if entry.options is not None:
            entry.options(**options)
    except ValidationError:
        return None
    return named


def is_torch_activation(module: nn.Module) -> bool:
    return not isinstance(module, Activation) and module_activation(module) is not None


def module_activation(module: nn.Module) -> Named | None:
    """The registry name and options of an activation module (cnnlab's or torch's); None for
    any other module."""
    if isinstance(module, Activation):
        return module_activation(module.fn)  # cnnlab's wrap torch's, options and all
    for cls in type(module).__mro__:
        if cls in MODULE_NAMES:
            return checked(MODULE_NAMES[cls](module))
    return None


def label(named: Named) -> str:
    """`relu`, `leaky_relu(negative_slope=0.2)`: how a traced activation is shown."""
    name, options = named
    if name == "linear":
        return name
    entry = ACTIVATIONS.get(name)
    defaults = entry.options().model_dump() if entry.options else {}
    shown = {k: v for k, v in options.items() if k != "per_channel" and defaults.get(k) != v}
    if not shown:
        return name
    return name + "(" + ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                                  for k, v in shown.items()) + ")"


def gain_of(named: Named) -> float:
    """The registry's init gain for a named activation (`activations.activation_gain`); 1 for
    "linear", no activation at all."""
    name, options = named
    if name == "linear":
        return 1.0
    return activation_gain(name, **options)


def profile_of(module: nn.Module) -> ActivationProfile | None:
    """The dead/saturated profile of an activation module, cnnlab's or torch's (None: not one)."""
    if isinstance(module, Activation):
        return module.profile
    named = module_activation(module)
    if named is None:
        return None
    name, options = named
    if name == "prelu":
        # Its slope is learned: reading it would sync the device and compute a new profile at
        # every sample. A leaky slope has no flat region whatever its value, as the default's.
        options = {}
    entry = ACTIVATIONS.get(name)
    validated = entry.options(**options) if entry.options else None
    return _profile(name, _options_key(validated))


@contextmanager
def out_of_place(modules: Iterable[nn.Module]) -> Iterator[None]:
    """torch's activation modules among `modules` run out of place inside the block, so a
    forward hook still sees their input (an in-place ReLU overwrites it with its output);
    restored on exit."""
    changed = [m for m in modules if getattr(m, "inplace", False) and is_torch_activation(m)]
    for module in changed:
        module.inplace = False
    try:
        yield
    finally:
        for module in changed:
            module.inplace = True
