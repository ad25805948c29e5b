"""What every model shares: its config keys and the blocks built from them.

Every model ends in a linear layer named `classifier`, so init rules and LR multipliers can name
it (`classifier`, `classifier.*`) whatever the architecture. Activation, normalization and
initialization are config choices for every model; input channels and class count come from the
data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from pydantic import Field
from torch import nn

from cnnlab.components.activations import ActivationSpec, build_activation
from cnnlab.components.init import InitConfig
from cnnlab.components.norms import NormSpec, build_norm
from cnnlab.options import Options
from cnnlab.registry import Registry


@dataclass(frozen=True)
class ModelInfo:
    """What code needs to know about an architecture besides its factory
    (`build(BuildContext, options) -> nn.Module`)."""

    # Whether it has residual branches (`residual_branches()`): drop_path, Fixup and zero-init
    # residual need them.
    residual: bool = False


MODELS: Registry[ModelInfo] = Registry("model", "models", ModelInfo)


class ModelBase(Options):
    """Keys every model takes; each architecture adds its own."""

    activation: ActivationSpec = "relu"
    norm: NormSpec = "batch"
    norm_position: Literal["before_activation", "after_activation"] = "before_activation"
    init: InitConfig = Field(default_factory=InitConfig)
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout before the classifier")
    dropout2d: float = Field(0.0, ge=0.0, lt=1.0,
                             description="spatial dropout of whole channels in conv blocks")
    drop_path: float = Field(0.0, ge=0.0, lt=1.0,
                             description="stochastic depth of residual branches (last block's "
                             "rate; earlier blocks scale linearly)")
    in_channels: int | None = Field(None, ge=1, description="default: the data's channels")
    num_classes: int | None = Field(None, ge=2, description="default: the data's classes")


@dataclass
class BuildContext:
    """The config of one model build plus what the data says about its input."""

    spec: ModelBase
    in_channels: int
    num_classes: int
    image_size: tuple[int, int]

    def act(self, channels: int) -> nn.Module:
        return build_activation(self.spec.activation, channels)

    def norm(self, channels: int) -> nn.Module:
        return build_norm(self.spec.norm, channels)

    def spatial_dropout(self) -> nn.Module:
        return nn.Dropout2d(self.spec.dropout2d) if self.spec.dropout2d > 0 else nn.Identity()

    @property
    def has_norm(self) -> bool:
        return self.spec.norm.name != "none"

    @property
    def norm_first(self) -> bool:
        return self.spec.norm_position == "before_activation"


class ConvNormAct(nn.Module):
    """conv -> norm -> activation (or conv -> activation -> norm)."""

    def __init__(self, ctx: BuildContext, in_channels: int, out_channels: int, kernel_size: int = 3,
                 stride: int = 1, padding: int | None = None, activation: bool = True):
        super().__init__()
        padding = kernel_size // 2 if padding is None else padding
        # A norm right after the convolution subtracts any bias, so the bias would be dead weight.
        bias = not (ctx.has_norm and ctx.norm_first)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=bias)
        self.norm = ctx.norm(out_channels)
        self.act = ctx.act(out_channels) if activation else nn.Identity()
        self.dropout = ctx.spatial_dropout() if activation else nn.Identity()
        self.norm_first = ctx.norm_first

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        x = self.act(self.norm(x)) if self.norm_first else self.norm(self.act(x))
        return self.dropout(x)


def pool_or_identity(kind: str, size: tuple[int, int]) -> tuple[nn.Module, tuple[int, int]]:
    """A 2x2 pooling while the map is at least 2x2; identity after that, so deep stacks still fit
    small images (8x8 digits) without a shape error."""
    if min(size) < 2:
        return nn.Identity(), size
    pool = nn.MaxPool2d(2) if kind == "max" else nn.AvgPool2d(2)
    return pool, (size[0] // 2, size[1] // 2)


class Head(nn.Module):
    """Global pooling (or flatten), hidden fully connected layers and dropout: everything between
    the convolutions and the classifier. `out_features` is the classifier's input width."""

    def __init__(self, ctx: BuildContext, in_features: int, hidden: list[int],
                 pooling: Literal["avg", "max", "flatten"] = "avg"):
        super().__init__()
        if pooling == "avg":
            self.pool: nn.Module = nn.AdaptiveAvgPool2d(1)
        elif pooling == "max":
            self.pool = nn.AdaptiveMaxPool2d(1)
        else:
            self.pool = nn.Identity()
        layers: list[nn.Module] = []
        width = in_features
        for size in hidden:
            layers += [nn.Linear(width, size), ctx.act(size)]
            width = size
        self.fc = nn.Sequential(*layers)
        self.dropout = nn.Dropout(ctx.spec.dropout) if ctx.spec.dropout > 0 else nn.Identity()
        self.out_features = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.pool(x), 1)
        return self.dropout(self.fc(x))


class Network(nn.Module):
    """body -> head -> classifier, with the classifier at the top level under that name."""

    body: nn.Module
    head: Head
    classifier: nn.Linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.head(self.body(x)))
