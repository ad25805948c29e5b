"""Parameter roles read from the modules that own the parameters, and the `optim.groups` rules
that give each role its own LR multiplier, weight decay and freezing.

Roles come from module types, never from parameter names, so they work on any `nn.Module`
(cnnlab's nets, torchvision, timm, a user's file):

- `stem`: every parameter of the first convolution in module (registration) order;
- `classifier`: every parameter of the last `nn.Linear` in module order, or, in a net without
  one, of the last convolution (the module that produces the logits of an all-conv net);
- `bias`: the bias of a convolution or linear layer (the stem's and classifier's too);
- `norm_scale` / `norm_shift`: the weight / bias of a BatchNorm, GroupNorm, LayerNorm or
  InstanceNorm layer;
- `conv` / `linear`: the weight of any other convolution / linear layer.

A parameter can have two roles (the stem's bias is `stem` and `bias`); the first rule in
`optim.groups` that names one of its roles decides its settings, like the first matching glob of
`optim.lr_mult`. A parameter no rule names keeps the optimizer's defaults.

Freezing is a pure function of the epoch (0-based inside, as the training position counts), so a
resumed run freezes exactly what the uninterrupted one did. A frozen parameter's gradient is
dropped before the optimizer step: torch optimizers skip a parameter without a gradient, so it
gets no update, no weight decay and no change to its momentum or Adam state.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from cnnlab.components.norms import NORM_TYPES
from cnnlab.options import Options

ROLES = ("stem", "classifier", "bias", "norm_scale", "norm_shift", "conv", "linear")
Role = Literal["stem", "classifier", "bias", "norm_scale", "norm_shift", "conv", "linear"]

# Public classes, not torch's private `_ConvNd` base, which is free to move between versions.
CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
              nn.ConvTranspose3d)


class FreezeWindow(Options):
    """Epochs (counted from 1 as the metrics show them) outside which the parameters stay put."""

    until_epoch: int | None = Field(None, ge=1, description="frozen for the first N epochs")
    after_epoch: int | None = Field(None, ge=1, description="trained only for the first N "
                                    "epochs, frozen after them (airbench's whitening bias: 3)")

    @model_validator(mode="after")
    def _leaves_epochs_to_train(self):
        if self.until_epoch is None and self.after_epoch is None:
            raise ValueError("freeze needs until_epoch and/or after_epoch, received neither; "
                             "e.g. {after_epoch: 3}, or use frozen: true for the whole run")
        if (self.until_epoch is not None and self.after_epoch is not None
                and self.after_epoch <= self.until_epoch):
            raise ValueError(f"freeze: until_epoch {self.until_epoch} and after_epoch "
                             f"{self.after_epoch} leave no epoch to train; set after_epoch "
                             "above until_epoch, or use frozen: true")
        return self


class GroupRule(Options):
    """One `optim.groups` entry: settings for the parameters of one role."""

    role: Role = Field(description="stem | classifier | bias | norm_scale | norm_shift | conv | "
                       "linear (read from module types; see cnnlab.components.param_roles)")
    lr_mult: float | None = Field(None, ge=0.0, description="LR multiplier, times any "
                                  "optim.lr_mult glob's; 0 stops updates")
    weight_decay: float | None = Field(None, ge=0.0, description="replaces optim.weight_decay "
                                       "(and the no-decay default of biases and norms)")
    frozen: bool = Field(False, description="never updated in this run")
    freeze: FreezeWindow | None = Field(None, description="frozen for some epochs: "
                                        "{until_epoch: N} and/or {after_epoch: N}")

    @model_validator(mode="after")
    def _one_way_to_freeze(self):
        if self.frozen and self.freeze is not None:
            raise ValueError(f"role {self.role}: received both frozen: true and freeze "
                             f"{self.freeze.model_dump(exclude_none=True)}; keep one of them")
        return self

    def trainable_epochs(self) -> tuple[int, int | None]:
        """[first, stop) in 0-based epochs; (0, 0) when frozen for the whole run."""
        if self.frozen:
            return (0, 0)
        if self.freeze is None:
            return (0, None)
        return (self.freeze.until_epoch or 0, self.freeze.after_epoch)


def check_rules(rules: list[GroupRule]) -> None:
    """A role named twice: the second rule could never apply."""
    seen = set()
    for rule in rules:
        if rule.role in seen:
            raise ValueError(f"optim.groups names role {rule.role} twice; the first rule wins, "
                             "so merge the two into one")
        seen.add(rule.role)


def parameter_roles(model: nn.Module) -> dict[int, tuple[str, ...]]:
    """id(parameter) -> its roles, in the order of `ROLES`."""
    modules = [module for _, module in model.named_modules()]
    convs = [m for m in modules if isinstance(m, CONV_TYPES)]
    linears = [m for m in modules if isinstance(m, nn.Linear)]
    stem = convs[0] if convs else None
    classifier = linears[-1] if linears else (convs[-1] if convs else None)
    roles: dict[int, list[str]] = {}

    def add(param: torch.Tensor | None, role: str) -> None:
        if isinstance(param, nn.Parameter):
            roles.setdefault(id(param), [])
            if role not in roles[id(param)]:
                roles[id(param)].append(role)

    for special, role in ((stem, "stem"), (classifier, "classifier")):
        if special is not None:
            for param in special.parameters(recurse=False):
                add(param, role)
    for module in modules:
        if isinstance(module, NORM_TYPES):
            add(getattr(module, "weight", None), "norm_scale")
            add(getattr(module, "bias", None), "norm_shift")
        elif isinstance(module, CONV_TYPES + (nn.Linear,)):
            add(getattr(module, "bias", None), "bias")
            if module is not stem and module is not classifier:
                add(module.weight, "conv" if isinstance(module, CONV_TYPES) else "linear")
    return {key: tuple(sorted(found, key=ROLES.index)) for key, found in roles.items()}


def first_rule(rules: list[GroupRule], roles: tuple[str, ...]) -> GroupRule | None:
    for rule in rules:
        if rule.role in roles:
            return rule
    return None


def trainable(group: dict, epoch: int) -> bool:
    """Whether `group`'s parameters may move in 0-based `epoch`; a group without a window
    (or from a checkpoint written before groups had one) always may."""
    first = group.get("trainable_from", 0)
    stop = group.get("trainable_until")
    return first <= epoch and (stop is None or epoch < stop)


def drop_frozen_gradients(optimizer: torch.optim.Optimizer, epoch: int) -> None:
    """Before the optimizer step: frozen groups lose their gradients, so the step skips them."""
    for group in optimizer.param_groups:
        if not trainable(group, epoch):
            for param in group["params"]:
                param.grad = None


def describe_groups(optimizer: torch.optim.Optimizer) -> list[dict]:
    """The optimizer's groups for a run's summary: role (None: no rule), parameter names, LR
    multiplier, the optimizer's weight decay, and trainable epochs (1-based, inclusive; null
    last: to the end; an empty range: frozen for the whole run)."""
    described = []
    for group in optimizer.param_groups:
        first, stop = group.get("trainable_from", 0), group.get("trainable_until")
        described.append({"role": group.get("role"), "names": list(group.get("names", [])),
                          "lr_mult": group.get("lr_mult", 1.0),
                          "weight_decay": group["weight_decay"],
                          "trainable_epochs": [first + 1, stop]})
    return described
