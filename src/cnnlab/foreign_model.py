"""Placeholder of h-anymodel's engine (init rules, traced gains, activation and norm replacement
on any nn.Module); at merge the real module replaces this file. Only the interface is fixed here:
this version applies `model.init` when it is given and otherwise leaves the model as it is."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from pydantic import TypeAdapter
from torch import nn

from cnnlab.components.activations import ActivationSpec
from cnnlab.components.init import Assignment, InitConfig, initialize
from cnnlab.components.norms import NormSpec


@dataclass
class PreparedModel:
    model: nn.Module
    assignments: list[Assignment]
    notes: list[str]  # lines for the user, printed by the caller (stderr)
    activations: dict[str, str]  # weight-layer module name -> activation that follows it


def prepare_foreign_model(model: nn.Module, *, init: InitConfig | None,
                          activation: ActivationSpec | None, norm: NormSpec | None,
                          example_input: torch.Tensor, generator: torch.Generator,
                          sample_batch: Callable[[], torch.Tensor] | None = None
                          ) -> PreparedModel:
    """Apply `init` (when given) to a model cnnlab did not build."""
    assignments = []
    if init is not None:
        # Without a traced activation, this placeholder takes ReLU's gain.
        gain_of = activation or TypeAdapter(ActivationSpec).validate_python("relu")
        assignments = initialize(model, init, gain_of, generator, sample_batch)
    return PreparedModel(model, assignments, [], {})
