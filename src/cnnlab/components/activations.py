"""Activation functions, each with its init gain and its own definition of dead and saturated units.

A unit's input x is *saturated* where the activation's derivative is below 1e-2 in magnitude: at
both ends for sigmoid, tanh and hard sigmoid; only at the top for relu6 (x >= 6). For the
rectifier family (relu, elu, gelu, silu, ...) the flat negative region is "off", not saturation:
a unit is *dead* when its input lies in that low flat region for the whole batch (for relu: it
outputs zero for every example). Leaky ReLU and PReLU have no flat region, so they never die.

The regions are computed once per activation from its derivative on a dense grid, so each entry's
definition follows from the function itself rather than from a hand-written constant.

Gains (the factor an initializer multiplies its std by) follow the literature where it fixes
them: sigmoid 1, tanh 5/3, relu sqrt(2), leaky relu sqrt(2/(1+a^2)) (He et al. 2015), selu 1 with
LeCun's 1/fan_in variance (Klambauer et al. 2017). For every other activation the gain is
1/sqrt(E[f(z)^2]) with z ~ N(0, 1), computed by quadrature: the factor that keeps the second
moment of a layer's pre-activations at 1 through f, which is how sqrt(2) arises for relu.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import torch
from pydantic import Field, ValidationError
from torch import nn

from cnnlab.errors import UserError
from cnnlab.options import Options, entry_options, options_of, tagged_union
from cnnlab.registry import Registry

SATURATION_DERIVATIVE = 1e-2


class LeakyReluOptions(Options):
    negative_slope: float = Field(0.01, ge=0.0)


class PReluOptions(Options):
    per_channel: bool = True
    init: float = 0.25


class AlphaOptions(Options):
    alpha: float = Field(1.0, gt=0.0)


class GeluOptions(Options):
    approximate: Literal["none", "tanh"] = "none"


class SoftplusOptions(Options):
    beta: float = Field(1.0, gt=0.0)


@dataclass(frozen=True)
class ActivationInfo:
    """What init and diagnostics need to know about an activation besides its factory
    (`build(options, channels) -> nn.Module`)."""

    # The init gain where the literature fixes it, from the entry's options; None: computed
    # numerically (`second_moment_gain`).
    gain: Callable[[Options | None], float] | None = None
    # Whether the low flat region counts as saturation (sigmoid, tanh) rather than "off" (relu).
    saturates_low: bool = False


ACTIVATIONS: Registry[ActivationInfo] = Registry("activation", "activations", ActivationInfo)


def _leaky_gain(negative_slope: float) -> float:
    """He et al. 2015: sqrt(2/(1+a^2)) for a rectifier whose negative side has slope a."""
    return math.sqrt(2.0 / (1.0 + negative_slope**2))


ACTIVATIONS.register("sigmoid", "logistic 1/(1+e^-x): saturates at both ends; gain 1",
                     info=ActivationInfo(gain=lambda o: 1.0, saturates_low=True))(
    lambda o, c: nn.Sigmoid())
ACTIVATIONS.register("hard_sigmoid", "piecewise-linear sigmoid relu6(x+3)/6: flat outside [-3, 3]",
                     info=ActivationInfo(saturates_low=True))(
    lambda o, c: nn.Hardsigmoid())
ACTIVATIONS.register("tanh", "hyperbolic tangent: zero-centred, saturates at both ends; gain 5/3",
                     info=ActivationInfo(gain=lambda o: 5.0 / 3.0, saturates_low=True))(
    lambda o, c: nn.Tanh())
ACTIVATIONS.register("relu", "max(0, x) (Nair & Hinton 2010): units can die; gain sqrt(2)",
                     info=ActivationInfo(gain=lambda o: math.sqrt(2.0)))(
    lambda o, c: nn.ReLU())
ACTIVATIONS.register("relu6", "min(max(0, x), 6): relu clipped at 6, flat above it")(
    lambda o, c: nn.ReLU6())
ACTIVATIONS.register("leaky_relu", "x if x > 0 else negative_slope*x (Maas et al. 2013): never "
                     "dies", LeakyReluOptions,
                     info=ActivationInfo(gain=lambda o: _leaky_gain(o.negative_slope)))(
    lambda o, c: nn.LeakyReLU(o.negative_slope))
ACTIVATIONS.register("prelu", "leaky relu with a learned slope, per channel or shared (He et al. "
                     "2015)", PReluOptions,
                     info=ActivationInfo(gain=lambda o: _leaky_gain(o.init)))(
    lambda o, c: nn.PReLU(c if o.per_channel else 1, init=o.init))
ACTIVATIONS.register("elu", "x if x > 0 else alpha*(e^x - 1) (Clevert et al. 2016): smooth, "
                     "negative outputs", AlphaOptions)(
    lambda o, c: nn.ELU(o.alpha))
ACTIVATIONS.register("celu", "continuously differentiable elu (Barron 2017)", AlphaOptions)(
    lambda o, c: nn.CELU(o.alpha))
ACTIVATIONS.register("selu", "scaled elu (Klambauer et al. 2017): self-normalizing with LeCun "
                     "init; gain 1", info=ActivationInfo(gain=lambda o: 1.0))(
    lambda o, c: nn.SELU())
ACTIVATIONS.register("gelu", "x*Phi(x) (Hendrycks & Gimpel 2016), exact or tanh approximation",
                     GeluOptions)(
    lambda o, c: nn.GELU(approximate=o.approximate))
ACTIVATIONS.register("silu", "x*sigmoid(x), a.k.a. swish (Ramachandran et al. 2017)")(
    lambda o, c: nn.SiLU())
ACTIVATIONS.register("mish", "x*tanh(softplus(x)) (Misra 2019)")(
    lambda o, c: nn.Mish())
ACTIVATIONS.register("hardswish", "x*relu6(x+3)/6 (Howard et al. 2019): piecewise swish")(
    lambda o, c: nn.Hardswish())
ACTIVATIONS.register("softplus", "log(1+e^(beta*x))/beta: a smooth relu", SoftplusOptions)(
    lambda o, c: nn.Softplus(o.beta))


@dataclass(frozen=True)
class ActivationProfile:
    """What init and diagnostics need to know about one configured activation."""

    name: str
    gain: float
    low: float  # inputs <= low lie in the flat low region (-inf: none)
    high: float  # inputs >= high lie in the flat high region (+inf: none)
    saturates_low: bool  # whether the low region counts as saturation (else it means "off")


class Activation(nn.Module):
    """An activation function carrying its profile, so hooks can classify its inputs."""

    def __init__(self, fn: nn.Module, profile: ActivationProfile):
        super().__init__()
        self.fn = fn
        self.profile = profile

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)

    def extra_repr(self) -> str:
        return f"gain={self.profile.gain:.4g}"

    def saturated(self, x: torch.Tensor) -> torch.Tensor:
        """Boolean mask of inputs where the derivative is below 1e-2 (see module docstring)."""
        return saturated_mask(self.profile, x)

    def off(self, x: torch.Tensor) -> torch.Tensor:
        """Boolean mask of inputs in the low flat region; a unit off for a whole batch is dead."""
        return off_mask(self.profile, x)


def saturated_mask(profile: ActivationProfile, x: torch.Tensor) -> torch.Tensor:
    """Inputs where the activation's derivative is below 1e-2 (see the module docstring); a
    function of the profile, so torch's own activation modules are judged the same way."""
    mask = x >= profile.high
    if profile.saturates_low:
        mask = mask | (x <= profile.low)
    return mask


def off_mask(profile: ActivationProfile, x: torch.Tensor) -> torch.Tensor:
    """Inputs in the activation's low flat region; a unit off for a whole batch is dead."""
    return x <= profile.low


def _options_key(options: Options | None) -> tuple:
    # Without the tag: options may be the config's tagged spec itself (see `entry_options`).
    return tuple(sorted(options_of(options).items())) if options is not None else ()


def second_moment_gain(fn: nn.Module) -> float:
    """1/sqrt(E[f(z)^2]) for z ~ N(0, 1), by the trapezoid rule on [-12, 12]."""
    z = torch.linspace(-12.0, 12.0, 480_001, dtype=torch.float64)
    density = torch.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    with torch.no_grad():
        second_moment = torch.trapezoid(fn(z) ** 2 * density, z)
    return float(1.0 / torch.sqrt(second_moment))


def flat_regions(fn: nn.Module) -> tuple[float, float]:
    """The (low, high) thresholds beyond which |f'(x)| < 1e-2 for every x, on a 1e-3 grid."""
    # Profiles are first asked for anywhere, inside no_grad blocks too: the derivative needs
    # autograd whatever the caller's mode.
    with torch.enable_grad():
        x = torch.linspace(-60.0, 60.0, 120_001, dtype=torch.float64, requires_grad=True)
        (derivative,) = torch.autograd.grad(fn(x).sum(), x)
    flat = (derivative.abs() < SATURATION_DERIVATIVE).tolist()
    grid = x.detach().tolist()
    low = -math.inf
    if flat[0]:
        i = 0
        while i + 1 < len(flat) and flat[i + 1]:
            i += 1
        low = round(grid[i], 3)  # to the grid's resolution: relu's region ends at exactly 0
    high = math.inf
    if flat[-1]:
        j = len(flat) - 1
        while j - 1 >= 0 and flat[j - 1]:
            j -= 1
        high = round(grid[j], 3)
    return low, high


@lru_cache(maxsize=None)
def _gain(name: str, options_key: tuple) -> float:
    entry = ACTIVATIONS.get(name)
    options = entry.options(**dict(options_key)) if entry.options else None
    if entry.info.gain is not None:
        return entry.info.gain(options)
    return second_moment_gain(entry.factory(options, 1).double())


@lru_cache(maxsize=None)
def _profile(name: str, options_key: tuple) -> ActivationProfile:
    entry = ACTIVATIONS.get(name)
    options = entry.options(**dict(options_key)) if entry.options else None
    fn = entry.factory(options, 1).double()
    low, high = flat_regions(fn)
    return ActivationProfile(name, _gain(name, options_key), low, high, entry.info.saturates_low)


def activation_gain(name: str, **options: object) -> float:
    """The factor an initializer multiplies its std by so that `name` keeps the second moment
    of a layer's pre-activations: relu sqrt(2), tanh 5/3, leaky_relu sqrt(2/(1+slope^2)),
    sigmoid and selu 1 (see the module docstring), 1/sqrt(E[f(z)^2]) for the others.

    `options` are the activation's own config keys (`negative_slope=0.1`). Equal to
    `torch.nn.init.calculate_gain` where torch knows the function, except selu: torch's 3/4 is
    not Klambauer et al.'s LeCun init, which cnnlab follows.
    """
    entry = ACTIVATIONS.get(name)  # a UserError naming the accepted activations
    if entry.options is None and options:
        raise UserError(f"activation {name} takes no options, received {sorted(options)}; "
                        f"call activation_gain('{name}') alone")
    try:
        validated = entry.options(**options) if entry.options else None
    except ValidationError as error:
        accepted = ", ".join(entry.options.model_fields)  # type: ignore[union-attr]
        raise UserError(f"activation {name} received options {options} "
                        f"({error.errors()[0]['msg']}); it accepts {accepted}") from None
    return _gain(name, _options_key(validated))


def activation_profile(spec) -> ActivationProfile:
    """The profile of an activation spec (a tagged config model with `name`)."""
    options = entry_options(ACTIVATIONS.get(spec.name), spec)
    return _profile(spec.name, _options_key(options))


def build_activation(spec, channels: int) -> Activation:
    entry = ACTIVATIONS.get(spec.name)
    return Activation(entry.factory(entry_options(entry, spec), channels), activation_profile(spec))


ActivationSpec = tagged_union(ACTIVATIONS)
