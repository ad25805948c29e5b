"""The classic CNN: blocks of convolution -> activation -> pooling, then fully connected layers."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt
from torch import nn

from cnnlab.models.base import MODELS, BuildContext, ConvNormAct, Head, ModelBase, Network, \
    pool_or_identity


class SimpleCnnOptions(ModelBase):
    widths: list[PositiveInt] = Field(default_factory=lambda: [32, 64], min_length=1)
    kernel_size: int = Field(3, ge=1)
    convs_per_block: int = Field(1, ge=1)
    pooling: Literal["max", "avg"] = "max"
    fc: list[PositiveInt] = Field(default_factory=lambda: [128], description="hidden layer sizes")


class SimpleCnn(Network):
    def __init__(self, ctx: BuildContext, options: SimpleCnnOptions):
        super().__init__()
        blocks: list[nn.Module] = []
        size, channels = ctx.image_size, ctx.in_channels
        for width in options.widths:
            layers: list[nn.Module] = []
            for _ in range(options.convs_per_block):
                layers.append(ConvNormAct(ctx, channels, width, options.kernel_size))
                channels = width
            pool, size = pool_or_identity(options.pooling, size)
            layers.append(pool)
            blocks.append(nn.Sequential(*layers))
        self.body = nn.Sequential(*blocks)
        self.head = Head(ctx, channels * size[0] * size[1], options.fc, pooling="flatten")
        self.classifier = nn.Linear(self.head.out_features, ctx.num_classes)


MODELS.register("simple_cnn", "conv-act-pool blocks then fully connected layers (LeNet/"
                "Keras-tutorial style); widths, kernel_size, pooling, fc",
                SimpleCnnOptions)(SimpleCnn)
