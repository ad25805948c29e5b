"""VGG-style nets (Simonyan & Zisserman 2015): stacks of 3x3 convolutions between poolings."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt
from torch import nn

from cnnlab.models.base import MODELS, BuildContext, ConvNormAct, Head, ModelBase, Network, \
    pool_or_identity

# Convolutions per stage; widths are width * (1, 2, 4, 8, 8).
STAGES = {11: [1, 1, 2, 2, 2], 13: [2, 2, 2, 2, 2], 16: [2, 2, 3, 3, 3], 19: [2, 2, 4, 4, 4]}


class VggOptions(ModelBase):
    variant: Literal[11, 13, 16, 19] = 11
    width: int = Field(64, ge=1, description="channels of the first stage")
    fc: list[PositiveInt] = Field(default_factory=list,
                                  description="hidden layer sizes after pooling")


class Vgg(Network):
    def __init__(self, ctx: BuildContext, options: VggOptions):
        super().__init__()
        size, channels = ctx.image_size, ctx.in_channels
        stages = []
        for convs, mult in zip(STAGES[options.variant], (1, 2, 4, 8, 8)):
            width = options.width * mult
            layers: list[nn.Module] = []
            for _ in range(convs):
                layers.append(ConvNormAct(ctx, channels, width, 3))
                channels = width
            pool, size = pool_or_identity("max", size)
            layers.append(pool)
            stages.append(nn.Sequential(*layers))
        self.body = nn.Sequential(*stages)
        self.head = Head(ctx, channels, options.fc, pooling="avg")
        self.classifier = nn.Linear(self.head.out_features, ctx.num_classes)


MODELS.register("vgg", "VGG-style (Simonyan & Zisserman 2015): variant 11/13/16/19 stacks of 3x3 "
                "convs, global pooling, classifier", VggOptions)(Vgg)
