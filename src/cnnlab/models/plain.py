"""A deep stack of equal convolutions without shortcuts, for init and activation studies.

Signals through `depth` conv layers are what He et al. (2015, Fig. 3) and Glorot & Bengio (2010)
studied: without residual connections, each layer's scale multiplies.
"""

from __future__ import annotations

from pydantic import Field
from torch import nn

from cnnlab.models.base import MODELS, BuildContext, ConvNormAct, Head, ModelBase, Network


class PlainOptions(ModelBase):
    depth: int = Field(20, ge=2, description="convolution layers")
    width: int = Field(64, ge=1)
    kernel_size: int = Field(3, ge=1)
    downsample: bool = Field(True, description="stride 2 at one and two thirds of the depth")


class Plain(Network):
    def __init__(self, ctx: BuildContext, options: PlainOptions):
        super().__init__()
        size = ctx.image_size
        strided = {options.depth // 3, 2 * options.depth // 3} if options.downsample else set()
        layers = []
        channels = ctx.in_channels
        for index in range(options.depth):
            stride = 2 if index in strided and index > 0 and min(size) >= 8 else 1
            if stride == 2:
                size = ((size[0] + 1) // 2, (size[1] + 1) // 2)
            layers.append(ConvNormAct(ctx, channels, options.width, options.kernel_size, stride))
            channels = options.width
        self.body = nn.Sequential(*layers)
        self.head = Head(ctx, channels, [], pooling="avg")
        self.classifier = nn.Linear(self.head.out_features, ctx.num_classes)


MODELS.register("plain", "a deep plain conv net: depth conv layers of width channels, no "
                "shortcuts (for init/activation studies)", PlainOptions)(Plain)
