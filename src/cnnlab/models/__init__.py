"""Model catalogue and the one function that builds and initializes a model from its config."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from cnnlab.components.init import Assignment, initialize
from cnnlab.errors import UserError
from cnnlab.models import fastnet, plain, resnet, simple_cnn, vgg  # noqa: F401 - registers models
from cnnlab.models.base import MODELS, BuildContext, ModelBase
from cnnlab.options import tagged_union
from cnnlab.seeding import generator

ModelSpec = tagged_union(MODELS, tag="arch", base=ModelBase, default="simple_cnn")


def check_input(spec: ModelBase, in_channels: int, num_classes: int, dataset: str) -> None:
    if spec.in_channels is not None and spec.in_channels != in_channels:
        convert = "data.channels=3" if spec.in_channels == 3 else f"data.channels={spec.in_channels}"
        raise UserError(
            f"model.in_channels is {spec.in_channels} but the {dataset} images have {in_channels} "
            f"channel{'s' if in_channels != 1 else ''}; remove model.in_channels to follow the "
            f"data, or set {convert} to convert the images"
        )
    if spec.num_classes is not None and spec.num_classes != num_classes:
        raise UserError(
            f"model.num_classes is {spec.num_classes} but the {dataset} data has {num_classes} "
            f"classes; remove model.num_classes to follow the data"
        )


def build_model(
    spec: ModelBase,
    in_channels: int,
    num_classes: int,
    image_size: tuple[int, int],
    seed: int,
    sample_batch: Callable[[], torch.Tensor] | None = None,
    dataset: str = "input",
) -> tuple[nn.Module, list[Assignment]]:
    """Build the configured architecture and initialize it from its own seeded generator."""
    check_input(spec, in_channels, num_classes, dataset)
    entry = MODELS.get(spec.arch)
    if spec.drop_path > 0 and not entry.info.residual:
        residual = ", ".join(e.name for e in MODELS if e.info.residual)
        raise UserError(f"model.drop_path drops residual branches, and {spec.arch} has none; "
                        f"use it with {residual}, or model.dropout/model.dropout2d here")
    ctx = BuildContext(spec, in_channels, num_classes, tuple(image_size))
    model = entry.factory(ctx, spec)
    try:
        with torch.no_grad():
            model.eval()
            model(torch.zeros(2, in_channels, *image_size))
    except RuntimeError as error:
        raise UserError(
            f"model {spec.arch} cannot take {image_size[0]}x{image_size[1]} images with "
            f"{in_channels} channel(s) ({str(error).splitlines()[0]}); choose a model for this "
            f"image size or set data.image_size"
        ) from None
    model.train()
    assignments = initialize(model, spec.init, spec.activation, generator(seed, "init"),
                             sample_batch)
    return model, assignments


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
