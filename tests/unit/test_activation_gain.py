"""`activation_gain`, the public gain of an activation, against torch.nn.init.calculate_gain."""

from __future__ import annotations

import math

import pytest
from pydantic import TypeAdapter
from torch.nn import init

from cnnlab.components.activations import ACTIVATIONS, ActivationSpec, activation_gain, \
    activation_profile
from cnnlab.errors import UserError

SPEC = TypeAdapter(ActivationSpec)


@pytest.mark.parametrize("name, options, torch_args", [
    ("sigmoid", {}, ("sigmoid",)),
    ("tanh", {}, ("tanh",)),
    ("relu", {}, ("relu",)),
    ("leaky_relu", {}, ("leaky_relu", 0.01)),  # both default to slope 0.01
    ("leaky_relu", {"negative_slope": 0.2}, ("leaky_relu", 0.2)),
    ("leaky_relu", {"negative_slope": 0.0}, ("leaky_relu", 0.0)),
])
def test_equals_torchs_calculate_gain_where_torch_has_the_nonlinearity(name, options, torch_args):
    assert activation_gain(name, **options) == init.calculate_gain(*torch_args)


def test_selu_is_lecuns_gain_1_not_torchs_three_quarters():
    assert init.calculate_gain("selu") == pytest.approx(0.75)
    assert activation_gain("selu") == 1.0


def test_prelu_follows_its_initial_slope():
    assert activation_gain("prelu", init=0.25) == pytest.approx(math.sqrt(2 / 1.0625))


@pytest.mark.parametrize("name", ACTIVATIONS.names())
def test_is_the_gain_initializers_use(name):
    assert activation_gain(name) == activation_profile(SPEC.validate_python(name)).gain


@pytest.mark.parametrize("call, message", [
    (lambda: activation_gain("rellu"), "did you mean 'relu'"),
    (lambda: activation_gain("relu", negative_slope=0.1), "relu takes no options"),
    (lambda: activation_gain("leaky_relu", slope=0.1), "it accepts negative_slope"),
    (lambda: activation_gain("leaky_relu", negative_slope=-1.0), "leaky_relu received"),
])
def test_bad_names_and_options_are_user_errors(call, message):
    with pytest.raises(UserError, match=message):
        call()
