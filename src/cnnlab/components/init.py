"""Weight initialization: named initializers, per-layer rules, LSUV, Fixup and zero-init residual.

A config names one initializer for every convolution and linear layer (`model.init: NAME`), or a
default plus rules (`{default: ..., rules: [{match: ..., init: ...}], bias: ...}`); the first
matching rule wins. Norm layers start at scale 1 and shift 0 unless a rule matching them says
otherwise.

The gain of the scaled initializers follows the model's activation (see `activations.py`); the
final classifier, which no activation follows, gets gain 1. Xavier and LeCun keep their papers'
fixed variance (gain 1) unless a gain is given, so "Xavier with ReLU" means what He et al. (2015)
tested. All draws come from one generator seeded per model build, so the same seed gives the
same weights whatever else used the global random state before.

An initializer that needs a step over the whole model once every layer is drawn (LSUV, Fixup,
whitening) carries it in its registration (`InitInfo.post_step`, with its `Stage`), so adding
one touches only its own entry.
"""

from __future__ import annotations

import fnmatch
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from cnnlab.components.activations import ActivationProfile, activation_gain, activation_profile
from cnnlab.components.norms import is_norm
from cnnlab.errors import UserError
from cnnlab.options import Options, entry_options, tagged_union
from cnnlab.registry import Registry


class Stage(IntEnum):
    """When a whole-model post-step runs; `initialize` runs them in this order."""

    STRUCTURE = 1  # rescales weights from the architecture alone (Fixup)
    RESIDUAL_ZERO = 2  # model.init.zero_init_residual, a config flag rather than an initializer
    DATA = 3  # sets weights from a batch of training data (whitening)
    CALIBRATION = 4  # measures the finished model on data (LSUV): last, so it sees every change


# The uniform signature of a post-step: (model, [(name, layer) it initialized], its validated
# options, a batch of training images or None when it needs none).
PostStepFn = Callable[[nn.Module, list[tuple[str, nn.Module]], Any, torch.Tensor | None], None]


@dataclass(frozen=True)
class PostStep:
    """A whole-model step an initializer runs once, after every layer got its per-layer draw."""

    apply: PostStepFn
    stage: Stage
    needs_data: bool = False


@dataclass(frozen=True)
class InitInfo:
    """What `initialize` needs to know about an initializer besides its per-layer factory
    (`fill(tensor, options, ctx)`), so that adding one touches only its registration."""

    # Whether its `gain: auto` follows the activation (so a forced gain is checked against it);
    # Xavier and LeCun keep their papers' gain 1.
    uses_gain: bool = False
    # Whether it also fills biases, by its own rule, when model.init.bias is not given.
    fills_bias: bool = False
    post_step: PostStep | None = None


INITS: Registry[InitInfo] = Registry("initializer", "inits", InitInfo)

WEIGHT_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
TYPE_KEYWORDS = {
    "conv": (nn.Conv1d, nn.Conv2d, nn.Conv3d),
    "linear": (nn.Linear,),
}


@dataclass
class LayerContext:
    """What an initializer needs to know about the tensor it fills."""

    name: str
    fan_in: int
    fan_out: int
    gain: float  # the gain of the activation that follows this layer (1 for the classifier)
    activation: str
    generator: torch.Generator


def fans(tensor: torch.Tensor) -> tuple[int, int]:
    if tensor.dim() < 2:
        return tensor.numel(), tensor.numel()
    receptive = math.prod(tensor.shape[2:]) if tensor.dim() > 2 else 1
    return tensor.shape[1] * receptive, tensor.shape[0] * receptive


# ---------------------------------------------------------------------------------------------
# Options of the initializers. A `gain` of "auto" takes the activation's gain; `nonlinearity`
# takes the gain of another activation instead, which is how a user forces a mismatch.


class ConstantOptions(Options):
    value: float = 0.0


class NormalOptions(Options):
    mean: float = 0.0
    std: float = Field(0.01, ge=0.0)


class UniformOptions(Options):
    a: float = -0.05
    b: float = 0.05


class TruncNormalOptions(Options):
    mean: float = 0.0
    std: float = Field(0.02, ge=0.0)
    truncate: float = Field(2.0, gt=0.0, description="cut-off in standard deviations")


class GainOptions(Options):
    gain: float | Literal["auto"] = "auto"
    nonlinearity: str | None = None


class FixedGainOptions(Options):
    gain: float | Literal["auto"] = 1.0
    nonlinearity: str | None = None


class ScaledOptions(GainOptions):
    mode: Literal["fan_in", "fan_out"] = "fan_in"


class WhiteningOptions(Options):
    eps: float = Field(5e-4, gt=0.0, description="added to each eigenvalue before 1/sqrt")


class LsuvOptions(Options):
    tolerance: float = Field(0.05, gt=0.0, lt=1.0, description="accepted |variance - 1|")
    max_iterations: int = Field(10, ge=1)


def _gain(options, ctx: LayerContext) -> float:
    if getattr(options, "nonlinearity", None) is not None:
        return activation_gain(options.nonlinearity)
    if options.gain == "auto":
        return ctx.gain
    return float(options.gain)


def _normal_std(tensor: torch.Tensor, std: float, ctx: LayerContext) -> None:
    tensor.normal_(0.0, std, generator=ctx.generator)


def _uniform_std(tensor: torch.Tensor, std: float, ctx: LayerContext) -> None:
    bound = math.sqrt(3.0) * std  # a uniform on [-b, b] has std b/sqrt(3)
    tensor.uniform_(-bound, bound, generator=ctx.generator)


@INITS.register("zeros", "all weights 0: every unit of a layer stays identical (a classic failure)")
def zeros(tensor, options, ctx):
    tensor.zero_()


@INITS.register("constant", "all weights equal to `value`: as symmetric as zeros", ConstantOptions)
def constant(tensor, options, ctx):
    tensor.fill_(options.value)


@INITS.register("normal", "N(mean, std^2) with a fixed std, ignoring the layer's size",
                NormalOptions)
def normal(tensor, options, ctx):
    tensor.normal_(options.mean, options.std, generator=ctx.generator)


@INITS.register("uniform", "U(a, b) with fixed bounds, ignoring the layer's size", UniformOptions)
def uniform(tensor, options, ctx):
    tensor.uniform_(options.a, options.b, generator=ctx.generator)


@INITS.register("trunc_normal", "N(mean, std^2) cut at +-truncate std, as in ViT/timm",
                TruncNormalOptions)
def trunc_normal(tensor, options, ctx):
    cut = options.truncate * options.std
    nn.init.trunc_normal_(tensor, options.mean, options.std, options.mean - cut, options.mean + cut,
                          generator=ctx.generator)


def _xavier_std(options, tensor, ctx) -> float:
    fan_in, fan_out = ctx.fan_in, ctx.fan_out
    return _gain(options, ctx) * math.sqrt(2.0 / (fan_in + fan_out))


@INITS.register("xavier_uniform", "Glorot & Bengio 2010: var 2/(fan_in+fan_out), uniform; gain 1 "
                "unless set", FixedGainOptions)
def xavier_uniform(tensor, options, ctx):
    _uniform_std(tensor, _xavier_std(options, tensor, ctx), ctx)


@INITS.register("xavier_normal", "Glorot & Bengio 2010: var 2/(fan_in+fan_out), normal; gain 1 "
                "unless set", FixedGainOptions)
def xavier_normal(tensor, options, ctx):
    _normal_std(tensor, _xavier_std(options, tensor, ctx), ctx)


def _kaiming_std(options, ctx) -> float:
    fan = ctx.fan_in if options.mode == "fan_in" else ctx.fan_out
    return _gain(options, ctx) / math.sqrt(fan)


@INITS.register("kaiming_uniform", "He et al. 2015: var gain^2/fan (fan_in or fan_out), uniform; "
                "gain from the activation", ScaledOptions, InitInfo(uses_gain=True))
def kaiming_uniform(tensor, options, ctx):
    _uniform_std(tensor, _kaiming_std(options, ctx), ctx)


@INITS.register("kaiming_normal", "He et al. 2015: var gain^2/fan (fan_in or fan_out), normal; "
                "gain from the activation", ScaledOptions, InitInfo(uses_gain=True))
def kaiming_normal(tensor, options, ctx):
    _normal_std(tensor, _kaiming_std(options, ctx), ctx)


@INITS.register("lecun_uniform", "LeCun et al. 1998: var 1/fan_in, uniform (the SELU init)",
                FixedGainOptions)
def lecun_uniform(tensor, options, ctx):
    _uniform_std(tensor, _gain(options, ctx) / math.sqrt(ctx.fan_in), ctx)


@INITS.register("lecun_normal", "LeCun et al. 1998: var 1/fan_in, normal (the SELU init)",
                FixedGainOptions)
def lecun_normal(tensor, options, ctx):
    _normal_std(tensor, _gain(options, ctx) / math.sqrt(ctx.fan_in), ctx)


@INITS.register("orthogonal", "Saxe et al. 2014: a random orthogonal matrix (rows x fan_in) times "
                "the activation's gain", GainOptions, InitInfo(uses_gain=True))
def orthogonal(tensor, options, ctx):
    nn.init.orthogonal_(tensor, _gain(options, ctx), generator=ctx.generator)


class DiracOptions(Options):
    noise: float = Field(0.0, ge=0.0, description="std of the Gaussian added to every weight, "
                         "in units of 1/sqrt(fan_in): N(0, noise^2/fan_in); 0 adds none")
    extra_channels: Literal["zeros", "torch_default"] = Field(
        "zeros", description="output channels beyond the input channels (out > in): 0, or "
        "PyTorch's default U(+-1/sqrt(fan_in)) as airbench does")


@INITS.register("dirac", "identity: each convolution passes its input through (output channel i "
                "copies input channel i); linear layers get the identity matrix. Output channels "
                "beyond the inputs: `extra_channels` zeros (default) or torch_default (airbench); "
                "`noise` adds N(0, noise^2/fan_in) to every weight, so a conv's output is its "
                "input plus a term of variance noise^2 x mean square input", DiracOptions)
def dirac(tensor, options, ctx):
    options = options if options is not None else DiracOptions()
    if tensor.dim() == 2:
        nn.init.eye_(tensor)
    else:
        nn.init.dirac_(tensor)
    inputs = tensor.shape[1]
    if options.extra_channels == "torch_default" and tensor.shape[0] > inputs:
        torch_default(tensor[inputs:], None, ctx)
    if options.noise > 0.0:
        # Scaled like LeCun normal, so `noise` means the same for every width and kernel size:
        # the noise term of a conv's output has variance noise^2 times the input's mean square.
        noise = torch.empty_like(tensor).normal_(0.0, options.noise / math.sqrt(ctx.fan_in),
                                                 generator=ctx.generator)
        tensor.add_(noise)


@INITS.register("torch_default", "what PyTorch does today: kaiming_uniform with a=sqrt(5), i.e. "
                "U(+-1/sqrt(fan_in)), biases U(+-1/sqrt(fan_in)); ignores the activation",
                info=InitInfo(fills_bias=True))
def torch_default(tensor, options, ctx):
    bound = 1.0 / math.sqrt(ctx.fan_in) if ctx.fan_in > 0 else 0.0
    tensor.uniform_(-bound, bound, generator=ctx.generator)


# ---------------------------------------------------------------------------------------------
# Whole-model initializers: a per-layer draw, then a post-step over the model. Each carries its
# post-step in its registration; `initialize` runs it without knowing which initializer it is.


def residual_branches(model: nn.Module, why: str) -> list:
    branches = getattr(model, "residual_branches", None)
    if branches is None:
        raise UserError(
            f"{why} needs a residual model (resnet20, resnet32, resnet56, resnet18, resnet34); "
            f"{type(model).__name__} has no residual branches"
        )
    return branches()


def apply_zero_init_residual(model: nn.Module, layers: list[tuple[str, nn.Module]] | None = None,
                             options: None = None, batch: torch.Tensor | None = None) -> None:
    """Goyal et al. 2017: the last norm of every residual branch starts at scale 0.

    It takes a post-step's arguments (`PostStepFn`) and uses only the model."""
    for branch in residual_branches(model, "model.init.zero_init_residual"):
        norm = branch.last_norm
        if norm is None or getattr(norm, "weight", None) is None:
            raise UserError(
                "model.init.zero_init_residual needs a norm layer at the end of each residual "
                "branch, but model.norm is none; use init fixup for residual nets without norms"
            )
        with torch.no_grad():
            norm.weight.zero_()


ZERO_INIT_RESIDUAL = PostStep(apply_zero_init_residual, Stage.RESIDUAL_ZERO)


def apply_whitening(model: nn.Module, layers: list[tuple[str, nn.Module]],
                    options: WhiteningOptions, batch: torch.Tensor) -> None:
    """Set the first convolution's filters to whiten the image patches it sees.

    With D = channels x kernel area, the patch covariance C = P^T P / n has eigenpairs
    (lambda_i, v_i); the filter v_i / sqrt(lambda_i + eps) maps a patch to a coordinate of unit
    variance, decorrelated from the others. Filters come in +- pairs (so a following ReLU-like
    activation keeps both signs), largest eigenvalues first; channels beyond 2D keep their
    random init.
    """
    for name, conv in layers:
        if not isinstance(conv, nn.Conv2d) or conv.in_channels != batch.shape[1] or \
                conv.groups != 1:
            raise UserError(f"init whitening applies to the first convolution, which sees the "
                            f"images; it matched {name}, which does not")
        patches = torch.nn.functional.unfold(batch.float(), conv.kernel_size,
                                             dilation=conv.dilation, padding=conv.padding,
                                             stride=conv.stride)  # N x D x L
        flat = patches.transpose(1, 2).reshape(-1, patches.shape[1]).double()
        covariance = flat.T @ flat / flat.shape[0]
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)  # ascending
        order = torch.argsort(eigenvalues, descending=True)
        filters = (eigenvectors[:, order] / torch.sqrt(eigenvalues[order] + options.eps)).T
        paired = torch.cat([filters, -filters]).to(conv.weight.dtype)
        count = min(conv.out_channels, paired.shape[0])
        with torch.no_grad():
            conv.weight[:count] = paired[:count].view(count, *conv.weight.shape[1:])
            if conv.bias is not None:
                conv.bias[:count].zero_()


def apply_fixup(model: nn.Module, layers: list[tuple[str, nn.Module]], options: None = None,
                batch: torch.Tensor | None = None) -> None:
    """Zhang et al. 2019, rules 1 and 2: scale branch layers by L^(-1/(2m-2)), zero branch ends.

    Only the layers Fixup drew (`layers`) change; it takes no options and no data. The paper's
    scalar multipliers and biases (rule 3) are architecture changes, not an initialization, and
    are not added here.
    """
    branches = residual_branches(model, "init fixup")
    count = len(branches)
    fixup_layers = {id(m) for _, m in layers}
    for branch in branches:
        convs = branch.convs
        m = len(convs)
        scale = count ** (-1.0 / (2 * m - 2)) if m > 1 else 1.0
        with torch.no_grad():
            for conv in convs[:-1]:
                if id(conv) in fixup_layers:
                    conv.weight.mul_(scale)
            if id(convs[-1]) in fixup_layers:
                convs[-1].weight.zero_()
    classifier = getattr(model, "classifier", None)
    if classifier is not None and id(classifier) in fixup_layers:
        with torch.no_grad():
            classifier.weight.zero_()
            if classifier.bias is not None:
                classifier.bias.zero_()


def apply_lsuv(model: nn.Module, layers: list[tuple[str, nn.Module]], options: LsuvOptions,
               batch: torch.Tensor) -> None:
    """Mishkin & Matas 2016: rescale each layer, in forward order, to unit output variance."""
    targets = {id(m): m for _, m in layers}
    order: list[nn.Module] = []
    outputs: dict[int, torch.Tensor] = {}

    def record(module, inputs, output):
        if id(module) not in outputs:
            order.append(module)
        outputs[id(module)] = output.detach()

    # BatchNorm running statistics must not learn from these probing passes.
    buffers = {name: buffer.clone() for name, buffer in model.named_buffers()}
    handles = [m.register_forward_hook(record) for m in targets.values()]
    was_training = model.training
    model.train()
    try:
        with torch.no_grad():
            model(batch)
            for module in list(order):
                for _ in range(options.max_iterations):
                    model(batch)
                    variance = float(outputs[id(module)].float().var())
                    if not math.isfinite(variance) or variance == 0.0:
                        break
                    if abs(variance - 1.0) < options.tolerance:
                        break
                    module.weight.div_(math.sqrt(variance))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
        with torch.no_grad():
            for name, buffer in model.named_buffers():
                buffer.copy_(buffers[name])


@INITS.register("lsuv", "Mishkin & Matas 2016: orthogonal, then each layer in order rescaled to "
                "unit output variance on a batch of training data", LsuvOptions,
                InitInfo(post_step=PostStep(apply_lsuv, Stage.CALIBRATION, needs_data=True)))
def lsuv(tensor, options, ctx):
    # The per-layer draw; its post-step `apply_lsuv` rescales afterwards on data.
    nn.init.orthogonal_(tensor, 1.0, generator=ctx.generator)


@INITS.register("fixup", "Zhang et al. 2019: He init, residual branches scaled by L^(-1/(2m-2)), "
                "their last layer and the classifier 0; for residual nets without normalization",
                info=InitInfo(post_step=PostStep(apply_fixup, Stage.STRUCTURE)))
def fixup(tensor, options, ctx):
    # The per-layer draw (He normal); its post-step `apply_fixup` rescales the residual branches.
    _normal_std(tensor, ctx.gain / math.sqrt(ctx.fan_in), ctx)


@INITS.register("whitening", "patch whitening of the first convolution (Page 2018, airbench): "
                "filters are the eigenvectors of the image-patch covariance over "
                "sqrt(eigenvalue), +- pairs", WhiteningOptions,
                InitInfo(post_step=PostStep(apply_whitening, Stage.DATA, needs_data=True)))
def whitening(tensor, options, ctx):
    # The per-layer draw (He normal); its post-step `apply_whitening` sets the filters from data.
    _normal_std(tensor, ctx.gain / math.sqrt(ctx.fan_in), ctx)


# ---------------------------------------------------------------------------------------------
# Applying a config to a model.


@dataclass
class Assignment:
    """Which initializer (and which rule) set a layer's weights: `cnnlab inspect` shows these."""

    layer: str
    kind: str
    init: str
    rule: str  # "default", "norm default" or "rule N: MATCH"


def rule_matches(match: str, name: str, module: nn.Module) -> bool:
    """A rule matches a layer type (`Conv2d`, `Linear`, `conv`, `linear`, `norm`) or a name glob."""
    if match == "norm":
        return is_norm(module)
    if match in TYPE_KEYWORDS:
        return isinstance(module, TYPE_KEYWORDS[match])
    if match == type(module).__name__:
        return True
    return fnmatch.fnmatchcase(name, match) or fnmatch.fnmatchcase(f"{name}.weight", match)


def _options(spec) -> Options | None:
    return entry_options(INITS.get(spec.name), spec)


def _apply(spec, tensor: torch.Tensor, ctx: LayerContext) -> None:
    with torch.no_grad():
        INITS.get(spec.name).factory(tensor, _options(spec), ctx)


def _warn_mismatch(spec, layer: str, profile: ActivationProfile, ctx: LayerContext) -> None:
    options = _options(spec)
    if options is None or not hasattr(options, "gain"):
        return
    forced = options.nonlinearity is not None or options.gain != "auto"
    if not forced:
        return
    used = _gain(options, ctx)
    expected = profile.gain if INITS.get(spec.name).info.uses_gain else 1.0
    if abs(used - expected) > 0.05 * expected:
        warnings.warn(
            f"init {spec.name} on {layer} uses gain {used:.3g}, but the model's activation "
            f"{profile.name} calls for {expected:.3g}; signals may shrink or grow with depth "
            f"(remove `gain`/`nonlinearity` from model.init to follow the activation)",
            InitMismatchWarning,
            stacklevel=3,
        )


class InitMismatchWarning(UserWarning):
    """An initializer was forced to a gain that does not match the model's activation."""


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, WEIGHT_TYPES)]


def initialize(
    model: nn.Module,
    init_cfg,
    activation_spec,
    generator: torch.Generator,
    sample_batch: Callable[[], torch.Tensor] | None = None,
    gains: dict[str, float] | None = None,
) -> list[Assignment]:
    """Initialize every conv, linear and norm layer of `model` as `init_cfg` says.

    Without `gains`, every hidden weight layer takes the gain of `activation_spec` and the
    layer named `classifier` gain 1 (cnnlab's own models). With `gains` (weight-layer name ->
    gain, from tracing the activation that follows each layer of any model, see
    `cnnlab.activation_trace`), each layer takes its own, `activation_spec` may be None, and a
    layer missing from `gains` takes relu's."""
    if gains is None:
        profile = activation_profile(activation_spec)
    else:
        profile = ActivationProfile("(as traced)", math.sqrt(2.0), 0.0, math.inf, False)
    classifier = getattr(model, "classifier", None) if gains is None else None
    assignments: list[Assignment] = []
    warned: set[tuple[str, str]] = set()
    # The layers each whole-model initializer drew, for its post-step.
    post_step_layers: dict[str, list[tuple[str, nn.Module]]] = {}

    for name, module in model.named_modules():
        if not (isinstance(module, WEIGHT_TYPES) or is_norm(module)):
            continue
        spec, bias_spec, label = init_cfg.default, init_cfg.bias, "default"
        matched_rule = None
        for index, rule in enumerate(init_cfg.rules):
            if rule_matches(rule.match, name, module):
                label = f"rule {index + 1}: {rule.match}"
                spec = rule.init if rule.init is not None else spec
                bias_spec = rule.bias if rule.bias is not None else bias_spec
                matched_rule = rule
                break

        if is_norm(module):
            if getattr(module, "weight", None) is None:
                continue
            if matched_rule is not None and matched_rule.init is not None:
                ctx = LayerContext(name, 1, 1, 1.0, profile.name, generator)
                _apply(spec, module.weight, ctx)
                assignments.append(Assignment(name, type(module).__name__, spec.name, label))
            else:
                with torch.no_grad():
                    module.weight.fill_(1.0)
                assignments.append(Assignment(name, type(module).__name__, "ones", "norm default"))
            if module.bias is not None:
                if matched_rule is not None and matched_rule.bias is not None:
                    # Only a rule matching the norm sets its shift; the global bias spec is for
                    # conv and linear biases.
                    ctx = LayerContext(name, 1, 1, 1.0, profile.name, generator)
                    _apply(matched_rule.bias, module.bias, ctx)
                else:
                    with torch.no_grad():
                        module.bias.zero_()
            continue

        fan_in, fan_out = fans(module.weight)
        if gains is None:
            gain = 1.0 if module is classifier else profile.gain
            layer_profile = profile
        else:
            gain = gains.get(name, profile.gain)
            layer_profile = ActivationProfile(profile.name, gain, 0.0, math.inf, False)
        ctx = LayerContext(name, fan_in, fan_out, gain, profile.name, generator)
        # A layer with no activation after it (the classifier, gain 1) is not judged.
        judged = module is not classifier and (gains is None or gain != 1.0)
        if judged and (spec.name, label) not in warned:
            warned.add((spec.name, label))
            _warn_mismatch(spec, name, layer_profile, ctx)
        _apply(spec, module.weight, ctx)
        if INITS.get(spec.name).info.post_step is not None:
            post_step_layers.setdefault(spec.name, []).append((name, module))
        if module.bias is not None:
            if bias_spec is not None:
                _apply(bias_spec, module.bias, ctx)
            elif INITS.get(spec.name).info.fills_bias:
                _apply(spec, module.bias, ctx)  # e.g. PyTorch's own rule: U(+-1/sqrt(fan_in))
            else:
                with torch.no_grad():
                    module.bias.zero_()
        assignments.append(Assignment(name, type(module).__name__, spec.name, label))

    _run_post_steps(model, init_cfg, post_step_layers, sample_batch)
    return assignments


def _run_post_steps(model: nn.Module, init_cfg, layers: dict[str, list[tuple[str, nn.Module]]],
                    sample_batch: Callable[[], torch.Tensor] | None) -> None:
    """Each whole-model initializer's post-step once, over the layers it drew, in stage order;
    zero-init residual (a config flag) takes its stage among them."""
    steps = [(INITS.get(name).info.post_step, name, drawn, _options(_spec_named(init_cfg, name)))
             for name, drawn in layers.items()]
    if init_cfg.zero_init_residual:
        steps.append((ZERO_INIT_RESIDUAL, "zero_init_residual", [], None))
    for step, name, drawn, options in sorted(steps, key=lambda item: item[0].stage):
        batch = None
        if step.needs_data:
            if sample_batch is None:
                raise UserError(f"init {name} needs a batch of training data, and none was given")
            batch = sample_batch()
        step.apply(model, drawn, options, batch)


def _spec_named(init_cfg, name: str):
    """The spec (default or first rule) that names a whole-model initializer."""
    if init_cfg.default.name == name:
        return init_cfg.default
    return next(r.init for r in init_cfg.rules if r.init is not None and r.init.name == name)


InitSpec = tagged_union(INITS)


class InitRule(Options):
    match: str = Field(description="a layer type (Conv2d, Linear, conv, linear, norm) or a "
                       "module-name glob (classifier, layer3.*.conv2)")
    init: InitSpec | None = None
    bias: InitSpec | None = None


class InitConfig(Options):
    default: InitSpec = "kaiming_normal"
    rules: list[InitRule] = Field(default_factory=list)
    # None: zeros, or PyTorch's own bias rule when the default is torch_default.
    bias: InitSpec | None = None
    zero_init_residual: bool = False

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value):
        # `kaiming_normal` and `{name: normal, std: 0.01}` stand for `{default: ...}`.
        if isinstance(value, str) or (isinstance(value, dict) and "name" in value):
            return {"default": value}
        return value
