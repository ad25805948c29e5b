import math

import pytest
import torch
from pydantic import TypeAdapter

from cnnlab.components.activations import ACTIVATIONS, ActivationSpec, activation_profile, \
    build_activation, second_moment_gain

SPEC = TypeAdapter(ActivationSpec)


@pytest.mark.parametrize("name", ACTIVATIONS.names())
def test_every_activation_builds_runs_and_has_a_profile(name):
    spec = SPEC.validate_python(name)
    act = build_activation(spec, channels=3)
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    act(x).sum().backward()
    assert x.grad is not None
    profile = activation_profile(spec)
    assert profile.gain > 0
    assert profile.low < profile.high


@pytest.mark.parametrize("name,gain", [("sigmoid", 1.0), ("tanh", 5 / 3), ("relu", math.sqrt(2)),
                                       ("selu", 1.0)])
def test_gains_fixed_by_the_literature(name, gain):
    assert activation_profile(SPEC.validate_python(name)).gain == pytest.approx(gain)


def test_leaky_relu_gain_follows_its_slope():
    spec = SPEC.validate_python({"name": "leaky_relu", "negative_slope": 0.2})
    assert activation_profile(spec).gain == pytest.approx(math.sqrt(2 / 1.04))


def test_numerical_gain_reproduces_relu_sqrt2():
    assert second_moment_gain(torch.nn.ReLU()) == pytest.approx(math.sqrt(2), rel=1e-6)


def test_saturation_regions_come_from_the_derivative():
    sigmoid = activation_profile(SPEC.validate_python("sigmoid"))
    # sigmoid'(x) = s(1-s) = 0.01 where s = (1 + sqrt(0.96)) / 2, i.e. |x| = log(s / (1 - s))
    s = (1 + math.sqrt(0.96)) / 2
    edge = math.log(s / (1 - s))
    assert sigmoid.high == pytest.approx(edge, abs=2e-3)
    assert sigmoid.low == pytest.approx(-edge, abs=2e-3)
    relu = activation_profile(SPEC.validate_python("relu"))
    assert relu.low == 0.0 and relu.high == math.inf and not relu.saturates_low
    leaky = activation_profile(SPEC.validate_python("leaky_relu"))
    assert leaky.low == -math.inf  # a leaky unit always passes gradient: it cannot die
    relu6 = activation_profile(SPEC.validate_python("relu6"))
    assert relu6.high == pytest.approx(6.0, abs=2e-3)


def test_dead_and_saturated_masks():
    relu = build_activation(SPEC.validate_python("relu"), 1)
    x = torch.tensor([-1.0, 0.0, 2.0])
    assert relu.off(x).tolist() == [True, True, False]
    assert relu.saturated(x).tolist() == [False, False, False]
    tanh = build_activation(SPEC.validate_python("tanh"), 1)
    assert tanh.saturated(torch.tensor([-5.0, 0.0, 5.0])).tolist() == [True, False, True]
