"""cnnlab's techniques on a model it did not build: a torchvision or timm model, or the user's own.

`prepare_foreign_model` applies the config's choices to any `nn.Module`, each only when given
(None keeps the model's own):

1. `model.activation`: every activation module (torch's `nn.ReLU`, ..., and cnnlab's) is
   replaced by the configured one. A functional call in a forward (`F.relu(x)`) cannot be
   replaced: that is refused, naming the calls, rather than left silently.
2. `model.norm`: every plain norm module (BatchNorm, GroupNorm, LayerNorm, InstanceNorm) that sees
   channels first is replaced by the configured norm; `none` makes them `nn.Identity`. Functional
   norm calls are refused as above; modules that cannot take the replacement (a LayerNorm over
   the last dimension, a norm fused with other layers) are kept and listed.
3. `model.init`: the config's rules applied to every layer, each weight layer's gain following
   the activation traced after it (`cnnlab.activation_trace`); the classifier, with none after
   it, gets gain 1. A layer whose activation the trace cannot tell gets relu's gain, sqrt(2):
   the usual hidden activation of a CNN, and what torchvision's own ResNet init assumes; the
   notes name such layers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from cnnlab.activation_trace import UNKNOWN, Trace, trace
from cnnlab.components.activations import ActivationSpec, build_activation
from cnnlab.components.init import Assignment, InitConfig, initialize, weight_layers
from cnnlab.components.norms import NormSpec, build_norm, is_norm
from cnnlab.components.torch_activations import gain_of, label, module_activation
from cnnlab.errors import UserError

# The gain of a layer whose activation the trace cannot tell (see the module docstring).
UNKNOWN_GAIN_ACTIVATION = ("relu", {})
# Norm classes whose modules can be swapped whole: exactly these types, not subclasses, which may
# fuse an activation (timm's BatchNormAct2d) or permute inside.
PLAIN_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.GroupNorm,
               nn.LayerNorm, nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)


@dataclass
class PreparedModel:
    model: nn.Module
    assignments: list[Assignment]
    notes: list[str]  # lines for the user, printed by the caller (stderr)
    activations: dict[str, str]  # weight-layer module name -> activation that follows it


def traced_gains(traced: Trace) -> dict[str, float]:
    """Each weight layer's init gain from the activation traced after it."""
    return {name: gain_of(UNKNOWN_GAIN_ACTIVATION if follow == UNKNOWN else follow)
            for name, follow in traced.follows.items()}


def _owner_name(model: nn.Module) -> str:
    return type(model).__name__


def _slots(model: nn.Module, wanted: Callable[[nn.Module], bool]
           ) -> list[tuple[str, nn.Module]]:
    """(name, module) of every registration of a wanted module, shared ones under each name."""
    return [(n, m) for n, m in model.named_modules(remove_duplicate=False) if n and wanted(m)
            and not _inside_activation(model, n)]


def _inside_activation(model: nn.Module, name: str) -> bool:
    """Whether `name` lies inside an activation module (cnnlab's Activation wraps nn.ReLU)."""
    parts = name.split(".")
    for depth in range(1, len(parts)):
        if module_activation(model.get_submodule(".".join(parts[:depth]))) is not None:
            return True
    return False


def _put(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def _placed_like(new: nn.Module, old: nn.Module, model: nn.Module) -> nn.Module:
    reference = next(old.parameters(), None)
    if reference is None:
        reference = next(model.parameters(), None)
    if reference is None:
        return new
    return new.to(device=reference.device, dtype=reference.dtype)


def _channels(traced: Trace, name: str) -> set[int]:
    return {shape[1] for shape in traced.input_shapes.get(name, []) if len(shape) > 1}


def _refuse_functional_calls(model: nn.Module, key: str, sites: list, example: str) -> None:
    """`model.<key>` replaces modules; calls the forward makes itself cannot be, so they are
    refused by name rather than silently left as they are."""
    if sites:
        calls = "; ".join(site.describe() for site in sites)
        raise UserError(
            f"model.{key} cannot replace the functional calls {calls}; use {key} modules "
            f"({example} as attributes of {_owner_name(model)}) in the model, or remove "
            f"model.{key} to keep the model's own")


def replace_activations(model: nn.Module, spec, traced: Trace) -> list[str]:
    """Every activation module replaced by `spec`'s; refused when the forward also applies
    functional activations. Returns the note for the user."""
    _refuse_functional_calls(model, "activation", traced.functional_activations, "nn.ReLU()")
    replaced: Counter[str] = Counter()
    for name, module in _slots(model, lambda m: module_activation(m) is not None):
        widths = _channels(traced, name)
        if getattr(spec, "per_channel", False) and len(widths) > 1:
            raise UserError(
                f"model.activation {spec.name} with per_channel needs one module per width, but "
                f"{name} is applied to {sorted(widths)} channels; set "
                f"model.activation.per_channel=false")
        new = build_activation(spec, min(widths) if widths else 1)
        _put(model, name, _placed_like(new, module, model))
        replaced[label(module_activation(module))] += 1
    if not replaced:
        return [f"model.activation {spec.name}: {_owner_name(model)} has no activation modules "
                f"to replace"]
    counts = ", ".join(f"{kind} x{count}" for kind, count in replaced.items())
    return [f"model.activation {spec.name} replaced {sum(replaced.values())} activation "
            f"modules ({counts})"]


def _norm_channels(module: nn.Module, traced: Trace, name: str) -> int | None:
    """The channel count a channels-first replacement needs, or None where it cannot fit."""
    declared = getattr(module, "num_features", None) or getattr(module, "num_channels", None)
    if isinstance(module, nn.LayerNorm):
        shape = tuple(module.normalized_shape)
        declared = shape[0] if len(shape) == 1 else None
    shapes = traced.input_shapes.get(name, [])
    if declared is None or any(len(s) < 2 or s[1] != declared for s in shapes):
        return None  # normalizes another dimension than dim 1 (a channels-last LayerNorm)
    return int(declared)


def _fits(new: nn.Module, shapes: list[tuple[int, ...]]) -> bool:
    """Whether the replacement takes the inputs the old module saw (BatchNorm2d needs 4-d)."""
    try:
        with torch.no_grad():
            new.eval()
            for shape in shapes:
                probe = (2,) + tuple(shape[1:])
                if new(torch.zeros(probe)).shape != probe:
                    return False
    except RuntimeError:
        return False
    finally:
        new.train()
    return True


def replace_norms(model: nn.Module, spec, traced: Trace) -> list[str]:
    """Every plain norm module replaced by `spec`'s (nn.Identity for `none`); refused when the
    forward calls norm functions itself. Returns the notes for the user."""
    _refuse_functional_calls(model, "norm", traced.functional_norms, "nn.BatchNorm2d")
    replaced, kept = 0, []
    for name, module in _slots(model, is_norm):
        if spec.name == "none":
            _put(model, name, nn.Identity())
            replaced += 1
            continue
        channels = _norm_channels(module, traced, name) if type(module) in PLAIN_NORMS else None
        new = build_norm(spec, channels) if channels is not None else None
        if new is None or not _fits(new, traced.input_shapes.get(name, [])):
            kept.append(f"{name} ({type(module).__name__})")
            continue
        _put(model, name, _placed_like(new, module, model))
        replaced += 1
    notes = [f"model.norm {spec.name} replaced {replaced} norm modules"]
    if kept:
        notes.append(f"model.norm {spec.name} could not replace {', '.join(kept)}: they are "
                     f"not plain channels-first norms, and keep the model's own")
    return notes


def _check_post_steps(model: nn.Module, init: InitConfig) -> None:
    """Whole-model steps that need cnnlab's residual branches, refused up front for a model
    that does not declare them."""
    if hasattr(model, "residual_branches"):
        return
    named = [init.default] + [r.init for r in init.rules if r.init is not None]
    wanted = (["model.init.zero_init_residual"] if init.zero_init_residual else []) + \
        [f"init {s.name}" for s in named if s.name == "fixup"]
    if wanted:
        raise UserError(
            f"{wanted[0]} needs residual branches that cnnlab can find (a residual_branches() "
            f"method, as cnnlab's resnets have), and {_owner_name(model)} has none; remove it "
            f"(torchvision's resnets take zero_init_residual=True when built)")


def _init_notes(model: nn.Module, init: InitConfig | None, traced: Trace) -> list[str]:
    if init is None:
        return [f"kept the model's own initialization of {_owner_name(model)}"]
    counts = Counter(traced.labels().values())
    gains = ", ".join(f"{name} x{count}" for name, count in counts.most_common())
    rules = f" with {len(init.rules)} rules" if init.rules else ""
    notes = [f"init {init.default.name}{rules} applied to {len(weight_layers(model))} weight "
             f"layers; each gain follows the activation traced after it ({gains})"]
    unknown = traced.unknown()
    if unknown:
        notes.append(f"activation unknown after {', '.join(unknown)}: the trace could not "
                     f"follow their output, so they take relu's gain sqrt(2)")
    return notes


def prepare_foreign_model(model: nn.Module, *, init: InitConfig | None,
                          activation: ActivationSpec | None, norm: NormSpec | None,
                          example_input: torch.Tensor, generator: torch.Generator,
                          sample_batch: Callable[[], torch.Tensor] | None = None
                          ) -> PreparedModel:
    """Apply model.activation, model.norm and model.init to any model (None: keep its own), in
    that order, tracing the forward on `example_input` to find each layer's activation."""
    traced = trace(model, example_input)
    notes: list[str] = []
    if activation is not None:
        notes += replace_activations(model, activation, traced)
    if norm is not None:
        notes += replace_norms(model, norm, traced)
    if activation is not None or norm is not None:
        traced = trace(model, example_input)  # the gains follow the new activations
    assignments: list[Assignment] = []
    if init is not None:
        _check_post_steps(model, init)
        assignments = initialize(model, init, None, generator, sample_batch,
                                 gains=traced_gains(traced))
    notes += _init_notes(model, init, traced)
    return PreparedModel(model, assignments, notes, traced.labels())

