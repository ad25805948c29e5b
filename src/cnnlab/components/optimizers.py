"""Optimizers by name, with parameter groups: no weight decay on biases and norm parameters by
default, per-group learning-rate multipliers chosen by parameter-name globs, and per-role settings
and freezing (`optim.groups`, roles read from the modules: cnnlab.components.param_roles)."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from cnnlab.components.lamb import Lamb
from cnnlab.components.lion import Lion
from cnnlab.components.muon import Muon
from cnnlab.components.param_roles import GroupRule, check_rules, first_rule, parameter_roles
from cnnlab.lr_units import LrUnits, torch_weight_decay
from cnnlab.options import Options, tagged_union
from cnnlab.registry import Registry


@dataclass(frozen=True)
class OptimizerInfo:
    """What code needs to know about an optimizer besides its factory
    (`build(param_groups, options) -> torch.optim.Optimizer`)."""

    # Which hyperparameter cyclic schedules move: "momentum", the first of "betas", or None when
    # the optimizer has none.
    momentum: Literal["momentum", "betas"] | None
    # How weight decay acts: added to the gradient (L2, "coupled") or to the weights directly.
    decay: Literal["coupled", "decoupled"]


OPTIMIZERS: Registry[OptimizerInfo] = Registry("optimizer", "optimizers", OptimizerInfo)


class LrMultiplier(Options):
    match: str = Field(description="glob on parameter names, e.g. 'classifier.*'")
    mult: float = Field(gt=0.0)


class OptimizerBase(Options):
    """Keys every optimizer takes."""

    lr: float = Field(0.001, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    # Decay on biases and norm scales pulls them toward 0 for no benefit (Goyal et al. 2017).
    decay_bias_and_norm: bool = False
    lr_mult: list[LrMultiplier] = Field(default_factory=list)
    # Scale lr with the batch size relative to `base_batch_size` (Goyal et al.: linear; sqrt for
    # adaptive methods, Hoffer et al. 2017).
    scale_lr: Literal["none", "linear", "sqrt"] = "none"
    base_batch_size: int = Field(256, ge=1)
    groups: list[GroupRule] = Field(
        default_factory=list,
        description="settings by parameter role, first matching rule wins: [{role: bias, "
                    "lr_mult: 64}, {role: norm_scale, frozen: true}, {role: stem, freeze: "
                    "{after_epoch: 3}}]")

    @model_validator(mode="after")
    def _roles_once(self):
        check_rules(self.groups)
        return self


class SgdOptions(OptimizerBase):
    lr: float = Field(0.1, gt=0.0)
    momentum: float = Field(0.0, ge=0.0, lt=1.0)
    dampening: float = Field(0.0, ge=0.0, le=1.0)
    nesterov: bool = False
    convention: Literal["torch", "decoupled"] = Field(
        "torch", description="decoupled: lr and weight_decay per 1024 examples as airbench "
        "gives them, the decay independent of the LR (formula: cnnlab.lr_units)")

    @model_validator(mode="after")
    def _scaled_once(self):
        if self.convention == "decoupled" and self.scale_lr != "none":
            raise ValueError(f"convention decoupled already scales the LR with the batch size, "
                             f"received scale_lr {self.scale_lr} too; set scale_lr: none")
        return self


class AdamOptions(OptimizerBase):
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0.0)


class AdamAmsOptions(AdamOptions):
    amsgrad: bool = False


class AdamWOptions(AdamAmsOptions):
    weight_decay: float = Field(0.01, ge=0.0)


class NAdamOptions(AdamOptions):
    lr: float = Field(0.002, gt=0.0)
    momentum_decay: float = Field(0.004, ge=0.0)
    decoupled_weight_decay: bool = False


class RAdamOptions(AdamOptions):
    decoupled_weight_decay: bool = False


class AdamaxOptions(AdamOptions):
    lr: float = Field(0.002, gt=0.0)


class RmspropOptions(OptimizerBase):
    lr: float = Field(0.01, gt=0.0)
    alpha: float = Field(0.99, gt=0.0, lt=1.0)
    eps: float = Field(1e-8, gt=0.0)
    momentum: float = Field(0.0, ge=0.0, lt=1.0)
    centered: bool = False


class AdagradOptions(OptimizerBase):
    lr: float = Field(0.01, gt=0.0)
    lr_decay: float = Field(0.0, ge=0.0)
    eps: float = Field(1e-10, gt=0.0)
    initial_accumulator_value: float = Field(0.0, ge=0.0)


class AdadeltaOptions(OptimizerBase):
    lr: float = Field(1.0, gt=0.0)
    rho: float = Field(0.9, gt=0.0, lt=1.0)
    eps: float = Field(1e-6, gt=0.0)


class LambOptions(OptimizerBase):
    weight_decay: float = Field(0.01, ge=0.0)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(1e-6, gt=0.0)
    bias_correction: bool = True


class LionOptions(OptimizerBase):
    lr: float = Field(1e-4, gt=0.0)
    betas: tuple[float, float] = (0.9, 0.99)


class MuonOptions(OptimizerBase):
    lr: float = Field(0.02, gt=0.0, description=(
        "LR of the Muon part (conv filters); the SGD part takes lr * sgd_lr_mult"))
    momentum: float = Field(0.95, ge=0.0, lt=1.0, description=(
        "Muon's momentum; the one cyclic schedules move"))
    nesterov: bool = Field(True, description="Nesterov momentum for the Muon part")
    ns_steps: int = Field(5, ge=1, le=50, description=(
        "Newton-Schulz steps that orthogonalise each conv filter's update"))
    sgd_lr_mult: float = Field(1.0, gt=0.0, description=(
        "LR of the SGD part (every tensor that is not a conv filter) relative to lr"))
    sgd_momentum: float = Field(0.9, ge=0.0, lt=1.0, description="momentum of the SGD part")
    sgd_nesterov: bool = Field(True, description="Nesterov momentum for the SGD part")


COMMON_KEYS = set(OptimizerBase.model_fields)


def _torch_kwargs(options: Options) -> dict:
    data = options.model_dump()
    for key in COMMON_KEYS | {"name", "convention"}:
        data.pop(key, None)
    if "betas" in data:
        data["betas"] = tuple(data["betas"])
    return data


def _torch_factory(cls: type[torch.optim.Optimizer]):
    def factory(groups, options):
        return cls(groups, lr=options.lr, **_torch_kwargs(options))

    return factory


OPTIMIZERS.register("sgd", "stochastic gradient descent with heavy-ball or Nesterov momentum",
                    SgdOptions, OptimizerInfo("momentum", "coupled"))(
    _torch_factory(torch.optim.SGD))
OPTIMIZERS.register("adam", "Adam (Kingma & Ba 2015); weight decay added to the gradient (L2)",
                    AdamAmsOptions, OptimizerInfo("betas", "coupled"))(
    _torch_factory(torch.optim.Adam))
OPTIMIZERS.register("adamw", "Adam with decoupled weight decay (Loshchilov & Hutter 2019)",
                    AdamWOptions, OptimizerInfo("betas", "decoupled"))(
    _torch_factory(torch.optim.AdamW))
OPTIMIZERS.register("nadam", "Adam with Nesterov momentum (Dozat 2016)",
                    NAdamOptions, OptimizerInfo("betas", "coupled"))(
    _torch_factory(torch.optim.NAdam))
OPTIMIZERS.register("radam", "rectified Adam: variance-corrected warm start (Liu et al. 2020)",
                    RAdamOptions, OptimizerInfo("betas", "coupled"))(
    _torch_factory(torch.optim.RAdam))
OPTIMIZERS.register("rmsprop", "RMSprop (Hinton 2012): gradient scaled by a running RMS",
                    RmspropOptions, OptimizerInfo("momentum", "coupled"))(
    _torch_factory(torch.optim.RMSprop))
OPTIMIZERS.register("adagrad", "Adagrad (Duchi et al. 2011): per-parameter rates from summed "
                    "squared gradients", AdagradOptions, OptimizerInfo(None, "coupled"))(
    _torch_factory(torch.optim.Adagrad))
OPTIMIZERS.register("adadelta", "Adadelta (Zeiler 2012): Adagrad with a decaying window, "
                    "unit-free steps", AdadeltaOptions, OptimizerInfo(None, "coupled"))(
    _torch_factory(torch.optim.Adadelta))
OPTIMIZERS.register("adamax", "Adamax (Kingma & Ba 2015): Adam with an infinity-norm second "
                    "moment", AdamaxOptions, OptimizerInfo("betas", "coupled"))(
    _torch_factory(torch.optim.Adamax))
OPTIMIZERS.register("lamb", "LAMB (You et al. 2020): Adam steps rescaled per tensor by a trust "
                    "ratio, for large batches", LambOptions, OptimizerInfo("betas", "decoupled"))(
    _torch_factory(Lamb))
OPTIMIZERS.register("lion", "Lion (Chen et al. 2023): sign of interpolated momentum; use ~1/5 "
                    "of AdamW's LR", LionOptions, OptimizerInfo("betas", "decoupled"))(
    _torch_factory(Lion))
OPTIMIZERS.register("muon", "Muon (Jordan et al. 2024): momentum orthogonalised by Newton-Schulz "
                    "for conv filters, SGD (sgd_*) for every other tensor",
                    MuonOptions, OptimizerInfo("momentum", "decoupled"))(
    _torch_factory(Muon))


def no_decay(name: str, param: torch.Tensor) -> bool:
    """Biases, norm scales and shifts, PReLU slopes: every parameter with at most one dimension."""
    return param.ndim <= 1


def effective_lr(options: OptimizerBase, batch_size: int) -> float:
    """`options.lr` scaled for `batch_size` images per optimizer step (see cnnlab.lr_units)."""
    return LrUnits.from_options(options, batch_size).optimizer_lr


def parameter_groups(model: nn.Module, options: OptimizerBase) -> list[dict]:
    """The optimizer's groups: parameters with the same weight decay, LR multiplier and
    `optim.groups` rule share one. A group a role rule decides has `role`, and one that freezes
    has `trainable_from` / `trainable_until` (0-based epochs, see param_roles.trainable)."""
    roles = parameter_roles(model) if options.groups else {}
    groups: dict[tuple, dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        rule = first_rule(options.groups, roles.get(id(param), ()))
        decay = options.weight_decay
        if not options.decay_bias_and_norm and no_decay(name, param):
            decay = 0.0
        mult = 1.0
        for glob in options.lr_mult:
            if fnmatch.fnmatchcase(name, glob.match):
                mult = glob.mult
                break
        if rule is not None and rule.weight_decay is not None:
            decay = rule.weight_decay
        if rule is not None and rule.lr_mult is not None:
            mult *= rule.lr_mult
        decay = torch_weight_decay(options, decay, mult)
        key = (decay, mult, None if rule is None else rule.role)
        group = groups.get(key)
        if group is None:
            group = groups[key] = {"params": [], "names": [], "weight_decay": decay,
                                   "lr_mult": mult}
            if rule is not None:
                group["role"] = rule.role
                first, stop = rule.trainable_epochs()
                if (first, stop) != (0, None):
                    group["trainable_from"], group["trainable_until"] = first, stop
        group["params"].append(param)
        group["names"].append(name)
    return list(groups.values())


def build_optimizer(spec: OptimizerBase, model: nn.Module,
                    batch_size: int) -> torch.optim.Optimizer:
    """The optimizer `spec` names over `model`'s parameter groups, at the LR `spec.lr` means for
    `batch_size` images per optimizer step (`cnnlab.lr_units.images_per_step`)."""
    entry = OPTIMIZERS.get(spec.name)
    groups = parameter_groups(model, spec)
    optimizer = entry.factory(groups, spec)
    set_lr(optimizer, effective_lr(spec, batch_size))
    return optimizer


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Every group at `lr` times its multiplier (`optim.lr_mult`; 1 for a group without one)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_mult", 1.0)


def momentum_key(spec) -> str | None:
    key = OPTIMIZERS.get(spec.name).info.momentum
    if key == "momentum" and getattr(spec, "momentum", 0.0) == 0.0:
        return None  # plain SGD / RMSprop without momentum: nothing to cycle
    return key


def base_momentum(spec) -> float | None:
    key = momentum_key(spec)
    if key is None:
        return None
    return spec.betas[0] if key == "betas" else spec.momentum


def set_hyperparameters(optimizer: torch.optim.Optimizer, lr: float, momentum: float | None,
                        key: str | None) -> None:
    set_lr(optimizer, lr)
    for group in optimizer.param_groups:
        if momentum is not None and key is not None:
            if key == "betas":
                group["betas"] = (momentum, group["betas"][1])
            else:
                group["momentum"] = momentum


OptimizerSpec = tagged_union(OPTIMIZERS, default="sgd")
