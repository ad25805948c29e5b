"""Which activation follows each weight layer of any model, found by running its forward once.

A model cnnlab did not build may apply its activations as modules (`nn.ReLU`) or as functional
calls in its `forward` (`F.relu(self.bn1(self.conv1(x)))`), so the module tree alone cannot say
which activation follows a layer. The trace runs one forward pass on an example input with
forward hooks on the weight, norm and activation modules and a `TorchFunctionMode` that sees every
torch function call, and follows the data:

- a conv/linear layer's output is *produced* by that layer;
- ops that carry a signal without deciding its scale (norms, dropout, pooling, add, mul, cat,
  reshape, flatten, slicing, padding, ...) pass their inputs' producers on to their output;
- the first activation applied to a produced tensor (a module or a functional call) is the
  activation of its producers;
- a weight layer (or F.conv2d / F.linear / matmul) that takes a produced tensor directly, and the
  model's output, make its producers "linear" (gain 1: the classifier, a linear bottleneck);
- any other op on a produced tensor (one the trace does not know) makes its producers "unknown",
  and so does a layer the forward never called. Tensor identity through these ops is an
  approximation of data flow, which is enough for the CNNs cnnlab trains.

The trace also lists the functional activation and norm calls it saw (`F.relu in
SmallNet.forward (my_nets.py:20)`), which `model.activation` and `model.norm` cannot replace.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from cnnlab.components.init import WEIGHT_TYPES
from cnnlab.components.norms import is_norm
from cnnlab.components.torch_activations import (
    FUNCTION_NAMES, Named, checked, label, module_activation)

LINEAR = ("linear", {})  # no activation: gain 1
UNKNOWN = "unknown"

# Ops that carry a signal on without deciding its scale: their output keeps the producers of
# their inputs. Names are the function's name without underscores, so `__iadd__`, `add_` and
# `torch.add` are one entry.
PASS_THROUGH = {
    "add", "iadd", "radd", "sub", "isub", "rsub", "mul", "imul", "rmul", "div", "idiv",
    "truediv", "itruediv", "neg", "pos", "flatten", "view", "viewas", "reshape", "reshapeas",
    "permute", "transpose", "t", "contiguous", "getitem", "squeeze", "unsqueeze", "expand",
    "expandas", "repeat", "cat", "concat", "concatenate", "stack", "chunk", "split", "unbind",
    "narrow", "select", "clone", "detach", "to", "float", "half", "double", "bfloat16", "type",
    "typeas", "batchnorm", "layernorm", "groupnorm", "instancenorm", "localresponsenorm",
    "normalize", "rmsnorm", "dropout", "dropout1d", "dropout2d", "dropout3d", "alphadropout",
    "featurealphadropout", "maxpool1d", "maxpool2d", "maxpool3d", "maxpool1dwithindices",
    "maxpool2dwithindices", "maxpool3dwithindices", "avgpool1d", "avgpool2d", "avgpool3d",
    "adaptiveavgpool1d", "adaptiveavgpool2d", "adaptiveavgpool3d", "adaptivemaxpool1d",
    "adaptivemaxpool2d", "adaptivemaxpool3d", "adaptivemaxpool2dwithindices", "lppool1d",
    "lppool2d", "mean", "sum", "amax", "pad", "interpolate", "upsample", "pixelshuffle",
    "pixelunshuffle", "channelshuffle", "roll", "flip", "movedim", "moveaxis", "swapaxes",
    "unflatten", "tensorsplit", "unfold", "split_with_sizes", "splitwithsizes",
}
# Linear ops: a produced tensor going straight into one had no activation.
LINEAR_CONSUMERS = {"conv1d", "conv2d", "conv3d", "convtranspose1d", "convtranspose2d",
                    "linear", "matmul", "mm", "bmm", "rmatmul", "einsum",
                    "scaleddotproductattention"}
# Ops that read a tensor without carrying its signal (shape queries, `zeros_like`, checks).
IGNORED = {"emptylike", "zeroslike", "oneslike", "fulllike", "randlike", "randnlike",
           "newempty", "newzeros", "newones", "newfull", "newtensor", "size", "dim", "numel",
           "isfinite", "isnan", "isinf", "all", "any", "eq", "ne", "item", "tolist", "get"}
NORM_FUNCTIONS = {"batchnorm", "layernorm", "groupnorm", "instancenorm", "rmsnorm"}
# FUNCTION_NAMES under the same key as the ops above (`leaky_relu_` -> `leakyrelu`).
ACTIVATION_FUNCTIONS = {name.replace("_", ""): read for name, read in FUNCTION_NAMES.items()}


@dataclass
class CallSite:
    """A functional call in some module's forward: what `model.activation`/`model.norm` cannot
    replace, named for the user."""

    function: str  # F.relu, torch.tanh, Tensor.sigmoid
    owner: str  # e.g. "SmallNet.forward" or "layer1.0 (BasicBlock.forward)"
    location: str  # file:line of the call, "" when not found
    after: list[str] = field(default_factory=list)  # weight layers it follows

    def describe(self) -> str:
        after = f" after {_and(self.after)}" if self.after else ""
        where = f" ({self.location})" if self.location else ""
        return f"{self.function}{after} in {self.owner}{where}"


@dataclass
class Trace:
    """What one traced forward pass found."""

    # weight layer -> (registry name, options) of the activation after it, or UNKNOWN
    follows: dict[str, Named | str]
    functional_activations: list[CallSite]
    functional_norms: list[CallSite]
    # shape of the input each called activation/norm module saw (by module name, first call)
    input_shapes: dict[str, list[tuple[int, ...]]]

    def labels(self) -> dict[str, str]:
        return {name: follow if isinstance(follow, str) else
                ("linear" if follow == LINEAR else label(follow))
                for name, follow in self.follows.items()}

    def unknown(self) -> list[str]:
        return [name for name, follow in self.follows.items() if follow == UNKNOWN]


def _and(names: list[str], most: int = 4) -> str:
    if len(names) > most:
        return ", ".join(names[:most - 1]) + f" and {len(names) - most + 1} more"
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _key(func) -> str:
    return getattr(func, "__name__", "").replace("_", "").lower()


def _display(func) -> str:
    name = getattr(func, "__name__", repr(func))
    module = getattr(func, "__module__", None) or ""
    if module.startswith("torch.nn") or module.startswith("torch._C._nn"):
        return f"F.{name}"
    if getattr(func, "__qualname__", "").startswith("TensorBase."):
        return f"Tensor.{name}"
    return f"torch.{name}"


def _tensors(value) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for item in value for t in _tensors(item)]
    if isinstance(value, dict):
        return [t for item in value.values() for t in _tensors(item)]
    return []


_TORCH_DIR = os.path.dirname(torch.__file__) + os.sep  # the separator: not torchvision


def _caller_location() -> str:
    """file:line of the first frame outside torch and this module: the user's call."""
    frame = inspect.currentframe().f_back
    while frame is not None:
        path = frame.f_code.co_filename
        if not path.startswith(_TORCH_DIR) and path != __file__:
            return f"{os.path.basename(path)}:{frame.f_lineno}"
        frame = frame.f_back
    return ""


def _function_activation(key: str, func, args: tuple, kwargs: dict) -> Named | None:
    """The activation a functional call applies, with its options; clamp(min=0) is a relu."""
    if key in ACTIVATION_FUNCTIONS:
        return checked(ACTIVATION_FUNCTIONS[key](args, kwargs))
    if key in ("clamp", "clip", "clampmin", "hardtanh"):
        low = kwargs.get("min", kwargs.get("min_val", args[1] if len(args) > 1 else None))
        high = kwargs.get("max", kwargs.get("max_val", args[2] if len(args) > 2 else None))
        if key == "hardtanh" and len(args) < 2 and "min_val" not in kwargs:
            low, high = -1.0, 1.0
        if low == 0 and high is None:
            return ("relu", {})
        if low == 0 and high == 6:
            return ("relu6", {})
    return None


class _Tracer(TorchFunctionMode):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.names = {id(m): n for n, m in model.named_modules()}
        self.follows: dict[str, Named | str] = {}
        # id(tensor) -> (the tensor, kept alive so ids stay unique; its producers)
        self.producers: dict[int, tuple[torch.Tensor, set[str]]] = {}
        self.opaque = 0  # inside a hooked weight/activation/norm module: its hooks speak for it
        self.stack: list[nn.Module] = []  # modules whose forward is running
        self.functional_activations: list[CallSite] = []
        self.functional_norms: list[CallSite] = []
        self.input_shapes: dict[str, list[tuple[int, ...]]] = {}
        # id(module) -> producers of its inputs, one entry per running call of that module
        self.pending_inputs: dict[int, list[set[str]]] = {}

    # ------------------------------------------------------------------ producers

    def producers_of(self, values) -> set[str]:
        found: set[str] = set()
        for tensor in _tensors(values):
            entry = self.producers.get(id(tensor))
            if entry is not None and entry[0] is tensor:
                found |= entry[1]
        return found

    def set_producers(self, values, producers: set[str]) -> None:
        for tensor in _tensors(values):
            if producers or id(tensor) in self.producers:
                self.producers[id(tensor)] = (tensor, set(producers))

    def settle(self, producers: set[str], follow: Named | str) -> None:
        """The first thing that decides a producer's activation wins."""
        for name in producers:
            self.follows.setdefault(name, follow)

    def owner(self) -> str:
        module = self.stack[-1] if self.stack else None
        if module is None:
            return "the model's forward"
        name = self.names.get(id(module), "")
        method = f"{type(module).__name__}.forward"
        return f"{name} ({method})" if name else method

    # ------------------------------------------------------------------ functional calls

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        if self.opaque:
            return result
        key = _key(func)
        inputs = self.producers_of((args, kwargs))
        activation = _function_activation(key, func, args, kwargs)
        if activation is not None:
            site = CallSite(_display(func), self.owner(), _caller_location(), sorted(inputs))
            self.functional_activations.append(site)
            self.settle(inputs, activation)
            self.set_producers(result, set())
            return result
        if key in NORM_FUNCTIONS:
            self.functional_norms.append(CallSite(_display(func), self.owner(),
                                                  _caller_location(), sorted(inputs)))
        if not inputs or key in IGNORED:
            return result
        outputs = _tensors(result)
        if not outputs or not all(t.is_floating_point() for t in outputs):
            return result  # a shape, a mask or an index: no signal carried on
        if key in PASS_THROUGH:
            self.set_producers(result, inputs)
        elif key in LINEAR_CONSUMERS:
            self.settle(inputs, LINEAR)
            self.set_producers(result, set())
        else:
            self.settle(inputs, UNKNOWN)
            self.set_producers(result, set())
        return result

    # ------------------------------------------------------------------ module hooks

    def hook(self, model: nn.Module) -> list:
        handles = []
        for module in model.modules():
            handles.append(module.register_forward_pre_hook(self._enter))
            handles.append(module.register_forward_hook(self._leave))
        return handles

    def _role(self, module: nn.Module) -> str | None:
        if isinstance(module, WEIGHT_TYPES):
            return "weight"
        if module_activation(module) is not None:
            return "activation"
        if is_norm(module):
            return "norm"
        return None

    def _enter(self, module, inputs):
        self.stack.append(module)
        if self._role(module) is not None:
            if not self.opaque:
                name = self.names.get(id(module), "")
                if inputs and isinstance(inputs[0], torch.Tensor):
                    self.input_shapes.setdefault(name, []).append(tuple(inputs[0].shape))
                self.pending_inputs.setdefault(id(module), []).append(self.producers_of(inputs))
            self.opaque += 1

    def _leave(self, module, inputs, output):
        self.stack.pop()
        role = self._role(module)
        if role is None:
            return
        self.opaque -= 1
        if self.opaque:
            return  # e.g. the nn.ReLU inside cnnlab's Activation: the outer module speaks
        running = self.pending_inputs.get(id(module))
        produced = running.pop() if running else set()
        if role == "weight":
            self.settle(produced, LINEAR)
            self.set_producers(output, {self.names[id(module)]})
        elif role == "activation":
            self.settle(produced, module_activation(module))
            self.set_producers(output, set())
        else:
            self.set_producers(output, produced)


def trace(model: nn.Module, example_input: torch.Tensor) -> Trace:
    """One forward pass of `model` on `example_input` (eval mode, no gradients, the model left
    as it was), and what follows each weight layer; see the module docstring."""
    tracer = _Tracer(model)
    handles = tracer.hook(model)
    # Each module's own mode comes back (a user may keep frozen norms in eval mode).
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        with torch.no_grad(), tracer:
            output = model(example_input)
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes:
            module.training = training
    tracer.settle(tracer.producers_of(output), LINEAR)
    follows: dict[str, Named | str] = {}
    for name, module in model.named_modules():
        if isinstance(module, WEIGHT_TYPES):
            follows[name] = tracer.follows.get(name, UNKNOWN)
    return Trace(follows, tracer.functional_activations, tracer.functional_norms,
                 tracer.input_shapes)


def trace_activations(model: nn.Module, example_input: torch.Tensor) -> dict[str, str]:
    """For every conv/linear layer of `model` (by module name), the activation that follows it in
    the forward pass: a registry name (`relu`, `leaky_relu(negative_slope=0.2)`), "linear" where
    none does (the classifier) or "unknown" where the trace cannot tell."""
    return trace(model, example_input).labels()
