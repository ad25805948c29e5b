"""Residual networks (He et al. 2016): the CIFAR family (resnet20/32/56: 3 stages of 16, 32, 64
channels) and the ImageNet family (resnet18/34: 4 stages of 64..512 channels).

When a block changes shape, its shortcut is a 1x1 convolution with a norm ("option B" in the
paper); the CIFAR results in the paper used zero-padding shortcuts ("option A").
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from cnnlab.models.base import MODELS, BuildContext, ConvNormAct, Head, ModelBase, ModelInfo, \
    Network


def drop_path(branch: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Stochastic depth (Huang et al. 2016): drop the whole branch for a random subset of the
    batch and scale the survivors by 1/(1-rate), so the expected output is unchanged."""
    if rate <= 0.0 or not training:
        return branch
    keep = torch.rand((branch.shape[0],) + (1,) * (branch.dim() - 1), device=branch.device) \
        >= rate
    return branch * keep.to(branch.dtype) / (1.0 - rate)


class BasicBlock(nn.Module):
    """conv-norm-act, conv-norm, plus the shortcut, then the activation."""

    def __init__(self, ctx: BuildContext, in_channels: int, out_channels: int, stride: int,
                 drop_rate: float = 0.0):
        super().__init__()
        self.drop_rate = drop_rate
        self.first = ConvNormAct(ctx, in_channels, out_channels, 3, stride)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=not ctx.has_norm)
        self.norm2 = ctx.norm(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=not ctx.has_norm),
                ctx.norm(out_channels),
            )
        self.act = ctx.act(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch = self.norm2(self.conv2(self.first(x)))
        branch = drop_path(branch, self.drop_rate, self.training)
        return self.act(branch + self.shortcut(x))

    # What zero-init residual and Fixup need to know about the branch.
    @property
    def convs(self) -> list[nn.Conv2d]:
        return [self.first.conv, self.conv2]

    @property
    def last_norm(self) -> nn.Module | None:
        return None if isinstance(self.norm2, nn.Identity) else self.norm2


class ResNet(Network):
    def __init__(self, ctx: BuildContext, stem: nn.Module, width: int, blocks: list[int],
                 multipliers: list[int]):
        super().__init__()
        self.stem = stem
        stages, channels = [], width
        total, done = sum(blocks), 0
        for index, (count, mult) in enumerate(zip(blocks, multipliers)):
            out = width * mult
            layers = []
            for block in range(count):
                stride = 2 if block == 0 and index > 0 else 1
                # Deeper blocks are dropped more often, up to model.drop_path for the last.
                rate = ctx.spec.drop_path * done / max(total - 1, 1)
                layers.append(BasicBlock(ctx, channels, out, stride, rate))
                channels = out
                done += 1
            stages.append(nn.Sequential(*layers))
        # Stages are top-level attributes so rules can say `layer3.*.conv2`.
        self.stage_names = []
        for index, stage in enumerate(stages, start=1):
            setattr(self, f"layer{index}", stage)
            self.stage_names.append(f"layer{index}")
        self.head = Head(ctx, channels, [], pooling="avg")
        self.classifier = nn.Linear(self.head.out_features, ctx.num_classes)

    def body(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        x = self.stem(x)
        for name in self.stage_names:
            x = getattr(self, name)(x)
        return x

    def residual_branches(self) -> list[BasicBlock]:
        return [m for m in self.modules() if isinstance(m, BasicBlock)]


class CifarResNetOptions(ModelBase):
    width: int = Field(16, ge=1, description="channels of the first stage (16 in the paper)")


def _cifar_resnet(depth: int):
    blocks = (depth - 2) // 6

    def build(ctx: BuildContext, options: CifarResNetOptions) -> ResNet:
        stem = ConvNormAct(ctx, ctx.in_channels, options.width, 3)
        return ResNet(ctx, stem, options.width, [blocks] * 3, [1, 2, 4])

    return build


for _depth in (20, 32, 56):
    MODELS.register(f"resnet{_depth}",
                    f"CIFAR ResNet-{_depth} (He et al. 2016): 3 stages x {(_depth - 2) // 6} "
                    "basic blocks, 16/32/64 channels", CifarResNetOptions,
                    ModelInfo(residual=True))(_cifar_resnet(_depth))


class ImageNetResNetOptions(ModelBase):
    width: int = Field(64, ge=1, description="channels of the first stage (64 in the paper)")
    stem: Literal["auto", "imagenet", "cifar"] = Field(
        "auto", description="imagenet: 7x7 stride 2 + max pool; cifar: 3x3 stride 1; auto: "
        "cifar below 64 pixels")


def _imagenet_resnet(blocks: list[int]):
    def build(ctx: BuildContext, options: ImageNetResNetOptions) -> ResNet:
        kind = options.stem
        if kind == "auto":
            kind = "cifar" if min(ctx.image_size) < 64 else "imagenet"
        if kind == "cifar":
            stem: nn.Module = ConvNormAct(ctx, ctx.in_channels, options.width, 3)
        else:
            stem = nn.Sequential(ConvNormAct(ctx, ctx.in_channels, options.width, 7, 2, 3),
                                 nn.MaxPool2d(3, 2, 1))
        return ResNet(ctx, stem, options.width, blocks, [1, 2, 4, 8])

    return build


MODELS.register("resnet18", "ResNet-18 (He et al. 2016): 4 stages x 2 basic blocks, 64..512 "
                "channels; ImageNet or CIFAR stem", ImageNetResNetOptions,
                ModelInfo(residual=True))(_imagenet_resnet([2, 2, 2, 2]))
MODELS.register("resnet34", "ResNet-34 (He et al. 2016): 4 stages of 3/4/6/3 basic blocks; "
                "ImageNet or CIFAR stem", ImageNetResNetOptions,
                ModelInfo(residual=True))(_imagenet_resnet([3, 4, 6, 3]))
