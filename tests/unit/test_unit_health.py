"""One definition of dead units and saturated inputs (issue 16, item 7): the fractions on tensors
whose answer is known, the limits, and `cnnlab inspect` and the training diagnostics giving the
same numbers for the same module input."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import TypeAdapter
from torch import nn

from cnnlab.components.activations import ActivationSpec, build_activation
from cnnlab.diagnostics import SAMPLE_IMAGES, Diagnostics
from cnnlab.propagation import measure
from cnnlab.unit_health import (DEAD_LIMIT, SATURATED_LIMIT, channel_units, dead_fraction,
                                is_dead, is_saturated, saturated_fraction)


def activation(name: str, channels: int = 4):
    return build_activation(TypeAdapter(ActivationSpec).validate_python(name), channels)


def test_a_unit_is_a_channel_over_every_sample_and_position():
    x = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2)
    units = channel_units(x)
    assert units.shape == (3, 8)
    assert units[1].tolist() == x[:, 1].flatten().tolist()
    assert channel_units(torch.tensor([1.0, -1.0])).shape == (1, 2)  # 1-d: one unit


def test_dead_counts_channels_off_for_the_whole_batch_only():
    x = torch.ones(2, 4, 3, 3)
    x[:, 0] = -1.0  # off everywhere: dead
    x[:, 1] = 0.0  # relu outputs exactly zero: dead too
    x[0, 2] = -1.0  # off for one sample only: alive
    assert float(dead_fraction(activation("relu"), x)) == 0.5
    # A linear layer's units are its features: (batch, features).
    features = torch.tensor([[-1.0, 2.0, -3.0], [-1.0, -2.0, -3.0]])
    assert float(dead_fraction(activation("relu", 3), features)) == pytest.approx(2 / 3)
    # Leaky relu has no flat region, so nothing it sees is dead.
    assert float(dead_fraction(activation("leaky_relu"), x)) == 0.0


def test_saturated_counts_single_inputs_in_the_flat_region():
    x = torch.tensor([[-10.0, -0.5, 0.0, 0.5], [10.0, 0.1, 8.0, -0.2]])  # 3 of 8 far out
    assert float(saturated_fraction(activation("tanh"), x)) == pytest.approx(3 / 8)
    assert float(saturated_fraction(activation("sigmoid"), x)) == pytest.approx(3 / 8)
    # For relu the flat negative region means off, not saturated.
    assert float(saturated_fraction(activation("relu"), x)) == 0.0


def test_the_limits_are_strict_and_nan_is_never_trouble():
    assert not is_dead(DEAD_LIMIT) and is_dead(DEAD_LIMIT + 1e-6)
    assert not is_saturated(SATURATED_LIMIT) and is_saturated(SATURATED_LIMIT + 1e-6)
    assert not is_dead(math.nan) and not is_saturated(math.nan)


@pytest.mark.parametrize("name", ["relu", "tanh"])
def test_inspect_and_training_diagnostics_report_the_same_fractions(name):
    torch.manual_seed(0)
    act = activation(name, 6)
    model = nn.Sequential(nn.Conv2d(3, 6, 3), act, nn.Flatten(), nn.Linear(6 * 4 * 4, 5))
    with torch.no_grad():
        model[0].weight.mul_(8.0)  # drive tanh's inputs into its flat ends
        model[0].bias[:3] = -100.0  # three of six relu channels die
    images = torch.randn(SAMPLE_IMAGES, 3, 6, 6)  # diagnostics read all of them too
    labels = torch.randint(0, 5, (SAMPLE_IMAGES,))
    with torch.no_grad():
        pre = model[0](images)
    expected_dead = float(dead_fraction(act, pre))
    expected_saturated = float(saturated_fraction(act, pre))
    assert (expected_dead, expected_saturated) != (0.0, 0.0)  # the test exercises something

    layers, _ = measure(model, images, labels)
    (inspected,) = [layer for layer in layers if layer.kind == "activation"]

    diagnostics = Diagnostics(model, every=1)
    with diagnostics.capture():
        model(images).square().mean().backward()
    diagnostics.before_update(model)
    diagnostics.after_update(0, lr=0.1, judge_updates=False)
    index = [layer.name for layer in diagnostics.layers].index(inspected.name)
    record = diagnostics.records[-1]

    assert inspected.dead == float(record["dead"][index]) == expected_dead
    assert inspected.saturated == float(record["saturated"][index]) == expected_saturated
