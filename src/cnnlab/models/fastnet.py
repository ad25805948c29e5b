"""A fast CIFAR net in the spirit of the ResNet-9 (Page 2018) and airbench (Jordan 2024) recipes.

A small 2x2 stem, then three groups of conv -> pool -> norm -> act -> conv -> norm -> act, global
max pooling, and a bias-free classifier whose logits are scaled down (airbench used 1/9), which
keeps early softmax outputs soft without label-dependent tuning.
"""

from __future__ import annotations

import torch
from pydantic import Field, PositiveInt
from torch import nn

from cnnlab.components.activations import ActivationSpec
from cnnlab.models.base import MODELS, BuildContext, Head, ModelBase, Network, pool_or_identity


class FastnetOptions(ModelBase):
    activation: ActivationSpec = "gelu"
    widths: list[PositiveInt] = Field(default_factory=lambda: [64, 256, 256], min_length=1)
    stem_width: int = Field(24, ge=1)
    logit_scale: float = Field(1.0 / 9.0, gt=0.0)


class ConvGroup(nn.Module):
    def __init__(self, ctx: BuildContext, in_channels: int, out_channels: int,
                 size: tuple[int, int]):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=not ctx.has_norm)
        self.pool, self.size = pool_or_identity("max", size)
        self.norm1 = ctx.norm(out_channels)
        self.act1 = ctx.act(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=not ctx.has_norm)
        self.norm2 = ctx.norm(out_channels)
        self.act2 = ctx.act(out_channels)
        self.dropout = ctx.spatial_dropout()
        self.norm_first = ctx.norm_first

    def _norm_act(self, x, norm, act):
        return act(norm(x)) if self.norm_first else norm(act(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._norm_act(self.pool(self.conv1(x)), self.norm1, self.act1)
        return self.dropout(self._norm_act(self.conv2(x), self.norm2, self.act2))


class Fastnet(Network):
    def __init__(self, ctx: BuildContext, options: FastnetOptions):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(ctx.in_channels, options.stem_width, 2, bias=True),
                                  ctx.act(options.stem_width))
        size = (ctx.image_size[0] - 1, ctx.image_size[1] - 1)
        groups, channels = [], options.stem_width
        for width in options.widths:
            group = ConvGroup(ctx, channels, width, size)
            groups.append(group)
            size, channels = group.size, width
        self.groups = nn.Sequential(*groups)
        self.head = Head(ctx, channels, [], pooling="max")
        self.classifier = nn.Linear(self.head.out_features, ctx.num_classes, bias=False)
        self.logit_scale = options.logit_scale

    def body(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self.groups(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.head(self.body(x))) * self.logit_scale


MODELS.register("fastnet", "fast CIFAR net after ResNet-9/airbench: 2x2 stem, 3 conv groups "
                "64/256/256, max pooling, scaled logits", FastnetOptions)(Fastnet)
