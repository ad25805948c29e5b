"""Model catalogue and the one function that builds and initializes a model from its config.

`model.arch` names a built-in architecture (the MODELS registry) or a network cnnlab did not
write: `torchvision.NAME`, `timm.NAME`, `file` (the user's own file) or `python` (given as
`model=`); models/foreign.py holds those.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import torch
from torch import nn

from cnnlab.components.init import Assignment, initialize
from cnnlab.errors import UserError, described
from cnnlab.foreign_model import prepare_foreign_model
from cnnlab.models import fastnet, plain, resnet, simple_cnn, vgg  # noqa: F401 - registers models
from cnnlab.models.base import MODELS, BuildContext, ModelBase
from cnnlab.models.foreign import (FOREIGN_SPECS, FileModel, ForeignModel, PythonModel,
                                   TimmModel, TorchvisionModel, arch_family, build_timm,
                                   build_torchvision)
from cnnlab.models.user_code import SuppliedModel, build_from_file
from cnnlab.options import tagged_union
from cnnlab.seeding import derive_seed, generator

ModelSpec = tagged_union(MODELS, tag="arch", base=ModelBase, default="simple_cnn",
                         more=FOREIGN_SPECS, family=arch_family)


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
    supplied: SuppliedModel | None = None,
    announce: bool = True,
) -> tuple[nn.Module, list[Assignment]]:
    """Build the configured architecture and initialize it from its own seeded generator.
    `supplied` is the network given as `model=`, for `arch: python`. `announce`: print what
    was done to a foreign network (not when a trained run's network is rebuilt to load its
    weights)."""
    if isinstance(spec, ForeignModel):
        return _build_foreign(spec, in_channels, num_classes, image_size, seed, sample_batch,
                              supplied, announce)
    check_input(spec, in_channels, num_classes, dataset)
    entry = MODELS.get(spec.arch)
    if spec.drop_path > 0 and not entry.info.residual:
        residual = ", ".join(e.name for e in MODELS if e.info.residual)
        raise UserError(f"model.drop_path drops residual branches, and {spec.arch} has none; "
                        f"use it with {residual}, or model.dropout/model.dropout2d here")
    ctx = BuildContext(spec, in_channels, num_classes, tuple(image_size))
    model = entry.factory(ctx, spec)
    check_output(model, torch.zeros(2, in_channels, *image_size), num_classes,
                 f"model {spec.arch}")
    model.train()
    assignments = initialize(model, spec.init, spec.activation, generator(seed, "init"),
                             sample_batch)
    return model, assignments


def _foreign_network(spec: ForeignModel, in_channels: int, num_classes: int,
                     supplied: SuppliedModel | None) -> tuple[nn.Module, str]:
    """The network of a foreign spec, and how messages name it."""
    if isinstance(spec, TorchvisionModel):
        return build_torchvision(spec, in_channels, num_classes), f"model {spec.arch}"
    if isinstance(spec, TimmModel):
        return build_timm(spec, in_channels, num_classes), f"model {spec.arch}"
    if isinstance(spec, FileModel):
        return (build_from_file(spec, in_channels, num_classes),
                f"model {spec.factory} from {spec.path}")
    if isinstance(spec, PythonModel):
        if supplied is None:
            raise UserError(f"this config's model was given in Python (model.arch python, "
                            f"{spec.name}); pass the same network again as model= (cnnlab.train, "
                            "resume, evaluate_run, load_model and predict take it), or describe "
                            "it in a file with model: {arch: file, path: ..., factory: ...}")
        return supplied.build(in_channels, num_classes), f"model {supplied.name} (model=)"
    raise TypeError(f"no builder for model spec {type(spec).__name__}")


def check_output(model: nn.Module, example: torch.Tensor, num_classes: int, what: str) -> None:
    """One forward pass of `example` (2 images) must give (2, num_classes) logits."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(example)
    except Exception as error:  # noqa: BLE001 - a user's network may raise anything
        size = "x".join(str(s) for s in example.shape[2:])
        raise UserError(f"{what} cannot take {size} images with {example.shape[1]} channel(s) "
                        f"({described(error)}); choose a model for this image size "
                        "or set data.image_size") from None
    finally:
        model.train(was_training)
    shape = tuple(out.shape) if isinstance(out, torch.Tensor) else None
    if shape != (example.shape[0], num_classes):
        got = f"shape {shape}" if shape else f"a {type(out).__name__}"
        raise UserError(f"{what} returns {got} for a batch of {example.shape[0]} images, but the "
                        f"data has {num_classes} classes; it must return logits of shape "
                        f"(batch, {num_classes}): size its last layer with the num_classes "
                        "argument")


def _build_foreign(spec: ForeignModel, in_channels: int, num_classes: int,
                   image_size: tuple[int, int], seed: int,
                   sample_batch: Callable[[], torch.Tensor] | None,
                   supplied: SuppliedModel | None, announce: bool = True
                   ) -> tuple[nn.Module, list[Assignment]]:
    """Build a network cnnlab did not write, check it against the data, and hand it to the
    foreign-model engine, which applies model.init/activation/norm when they are given."""
    example = torch.randn(2, in_channels, *image_size, generator=generator(seed, "example"))
    # Their constructors (and lazy layers, on the first forward) draw their own init from
    # torch's global generator: seed it from the run's seed, and leave it as it was, so the
    # same seed builds the same weights.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "foreign-init") % 2**63)
        model, what = _foreign_network(spec, in_channels, num_classes, supplied)
        check_output(model, example, num_classes, what)
    model.train()
    prepared = prepare_foreign_model(model, init=spec.init, activation=spec.activation,
                                     norm=spec.norm, example_input=example,
                                     generator=generator(seed, "init"), sample_batch=sample_batch)
    for note in prepared.notes if announce else ():
        print(note, file=sys.stderr)
    return prepared.model, prepared.assignments


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
