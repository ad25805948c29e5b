"""Networks cnnlab did not write: torchvision and timm models by name, a factory in the user's own
file, and a network given in Python (`model=`). Their config keys, tagged by `arch` like the
built-in models', and how torchvision and timm models are built and adapted to the data.

A foreign network keeps its own initialization, activations and normalization unless the config
sets `model.init`, `model.activation` or `model.norm` (see cnnlab.foreign_model).
"""

from __future__ import annotations

from functools import cache
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator
from torch import nn

from cnnlab.components.activations import ActivationSpec
from cnnlab.components.init import InitConfig
from cnnlab.components.norms import NormSpec
from cnnlab.errors import UserError, did_you_mean
from cnnlab.options import Options, member_tag

TORCHVISION = "torchvision."
TIMM = "timm."
# How messages and `cnnlab list models` name the foreign forms of model.arch.
FOREIGN_ARCHS = ("torchvision.NAME", "timm.NAME", "file")
TIMM_EXTRA = "pip install 'cnnlab[timm]'"
# Builders whose defaults do not fit a plain classifier: GoogLeNet and Inception return auxiliary
# logits while training and warn about their init unless told.
TORCHVISION_KWARGS = {"googlenet": {"aux_logits": False, "init_weights": True},
                      "inception_v3": {"aux_logits": False, "init_weights": True}}


class ForeignModel(Options):
    """Keys every network cnnlab did not write takes; None keeps the network's own choice."""

    init: InitConfig | None = Field(None, description="default: the network's own init")
    activation: ActivationSpec | None = Field(None, description="replace the network's "
                                              "activations; default: keep them")
    norm: NormSpec | None = Field(None, description="replace the network's norm layers; "
                                  "default: keep them")


@cache
def torchvision_names() -> tuple[str, ...]:
    import torchvision

    return tuple(torchvision.models.list_models(module=torchvision.models))


class TorchvisionModel(ForeignModel):
    """`arch: torchvision.NAME`: any torchvision classification builder, built with weights=None,
    its classifier sized to the data and its first convolution to the data's channels."""

    union_tag: ClassVar[str] = "torchvision"
    arch: str
    small_input: bool = Field(False, description="small-image stem (3x3 stride-1 first conv, no "
                              "max-pool) for 32x32-sized images")

    @field_validator("arch")
    @classmethod
    def _known(cls, arch: str) -> str:
        name = arch[len(TORCHVISION):]
        names = torchvision_names()
        if name not in names:
            raise ValueError(f"model.arch: unknown torchvision model '{name}'"
                             f"{did_you_mean(name, names, most=3)}; accepted: torchvision.NAME "
                             "for a NAME of torchvision.models.list_models(), e.g. "
                             "torchvision.resnet18")
        return arch


def timm_module():
    """timm, or one sentence naming the extra that installs it."""
    try:
        import timm
    except ImportError:
        raise UserError(f"model.arch timm.NAME needs the timm package, which is not installed; "
                        f"install it with {TIMM_EXTRA}") from None
    return timm


class TimmModel(ForeignModel):
    """`arch: timm.NAME`: timm.create_model(NAME, pretrained=False, num_classes=..., in_chans=...)."""

    union_tag: ClassVar[str] = "timm"
    arch: str
    small_input: bool = Field(False, description="small-image stem, where the model has one "
                              "cnnlab knows (ResNet-style conv1 + maxpool, or a 3x3 stride-2 "
                              "first conv)")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="timm's drop_rate")
    drop_path: float = Field(0.0, ge=0.0, lt=1.0, description="timm's drop_path_rate")

    @field_validator("arch")
    @classmethod
    def _known(cls, arch: str) -> str:
        try:
            timm = timm_module()
        except UserError as error:
            raise ValueError(str(error)) from None
        name = arch[len(TIMM):]
        if not timm.is_model(name):
            raise ValueError(f"model.arch: unknown timm model '{name}'"
                             f"{did_you_mean(name, timm.list_models(), most=3)}; accepted: "
                             "timm.NAME for a NAME of timm.list_models(), e.g. timm.resnet18")
        return arch


class FileModel(ForeignModel):
    """`arch: file`: a factory in the user's own Python file, called as
    factory(in_channels, num_classes, **kwargs). This runs the user's code."""

    arch: Literal["file"] = "file"
    path: str = Field(description="the Python file; relative to the config file's folder")
    factory: str = Field("build", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                         description="a function or nn.Module class in that file")
    kwargs: dict[str, Any] = Field(default_factory=dict,
                                   description="more keyword arguments for the factory")


class PythonModel(ForeignModel):
    """`arch: python`: the network given in Python as `model=`; `name` records which one."""

    arch: Literal["python"] = "python"
    name: str = Field("model", description="the qualified name of the class or factory")


FOREIGN_SPECS: tuple[type[ForeignModel], ...] = (TorchvisionModel, TimmModel, FileModel,
                                                 PythonModel)


def arch_family(arch: str) -> str:
    """The union tag of a model.arch: `torchvision.resnet18` -> `torchvision`, else itself."""
    for prefix in (TORCHVISION, TIMM):
        if arch.startswith(prefix) and len(arch) > len(prefix):
            return prefix[:-1]
    return arch


def foreign_spec_class(arch: object) -> type[ForeignModel] | None:
    """The spec class that takes `arch`, when it is a foreign one."""
    if not isinstance(arch, str):
        return None
    family = arch_family(arch)
    return next((c for c in FOREIGN_SPECS if member_tag(c, "arch") == family), None)


# ------------------------------------------------------------------------------------------
# Building and adapting torchvision and timm models


def first_conv(model: nn.Module) -> tuple[str, nn.Conv2d] | None:
    return next(((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)


def _conv_like(conv: nn.Conv2d, in_channels: int, **changes: Any) -> nn.Conv2d:
    settings = {"kernel_size": conv.kernel_size, "stride": conv.stride, "padding": conv.padding,
                "dilation": conv.dilation, "groups": conv.groups, "bias": conv.bias is not None,
                "padding_mode": conv.padding_mode, **changes}
    return nn.Conv2d(in_channels, conv.out_channels, **settings)


def adapt_input_channels(model: nn.Module, in_channels: int, arch: str) -> None:
    """Give the first convolution `in_channels` inputs (torchvision builds 3)."""
    found = first_conv(model)
    if found is None:
        raise UserError(f"model {arch} has no Conv2d whose input channels cnnlab could set to "
                        f"the data's {in_channels}; set data.channels=3 to convert the images")
    name, conv = found
    if conv.in_channels != in_channels:
        model.set_submodule(name, _conv_like(conv, in_channels))


SMALL_INPUT_FAMILIES = ("ResNet, ResNeXt, Wide ResNet and DenseNet (3x3 stride-1 stem, no "
                        "max-pool), MobileNet, EfficientNet, RegNet, MNASNet and others whose "
                        "first conv is 3x3 stride 2 (made stride 1)")


def small_image_stem(model: nn.Module, arch: str) -> None:
    """The small-image stem of CIFAR-style networks: keep the resolution in the first layer."""
    for conv_name, pool_name in (("conv1", "maxpool"), ("features.conv0", "features.pool0")):
        try:
            conv, pool = model.get_submodule(conv_name), model.get_submodule(pool_name)
        except AttributeError:
            continue
        if isinstance(conv, nn.Conv2d) and isinstance(pool, nn.MaxPool2d):
            model.set_submodule(conv_name, _conv_like(conv, conv.in_channels, kernel_size=3,
                                                      stride=1, padding=1))
            model.set_submodule(pool_name, nn.Identity())
            return
    found = first_conv(model)
    if found is not None and found[1].kernel_size == (3, 3) and found[1].stride == (2, 2):
        found[1].stride = (1, 1)
        return
    raise UserError(f"model.small_input is supported for {SMALL_INPUT_FAMILIES}, and {arch} has "
                    "none of these stems; remove model.small_input or set data.image_size")


def build_torchvision(spec: TorchvisionModel, in_channels: int, num_classes: int) -> nn.Module:
    import torchvision

    name = spec.arch[len(TORCHVISION):]
    model = torchvision.models.get_model(name, weights=None, num_classes=num_classes,
                                         **TORCHVISION_KWARGS.get(name, {}))
    if spec.small_input:
        small_image_stem(model, spec.arch)
    adapt_input_channels(model, in_channels, spec.arch)
    return model


def build_timm(spec: TimmModel, in_channels: int, num_classes: int) -> nn.Module:
    timm = timm_module()
    extra = {}
    if spec.dropout:
        extra["drop_rate"] = spec.dropout
    if spec.drop_path:
        extra["drop_path_rate"] = spec.drop_path
    name = spec.arch[len(TIMM):]
    try:
        model = timm.create_model(name, pretrained=False, num_classes=num_classes,
                                  in_chans=in_channels, **extra)
    except TypeError as error:
        raise UserError(f"timm model {name} does not take {', '.join(sorted(extra))} "
                        f"({error}); remove model.dropout/model.drop_path") from None
    if spec.small_input:
        small_image_stem(model, spec.arch)
    return model
